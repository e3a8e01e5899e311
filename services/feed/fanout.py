"""The `feed` consumer group: keeps home timelines as posts, follows, blocks and mutes happen.

A post is fanned out to its author's followers who read their feed in the last
`active_days` (ListFollowerIds pages, one pipeline per page), except for
accounts above `fanout_threshold` followers, whose posts go into one
per-author set merged at read time. Follows back-fill, unfollows, blocks,
mutes and deletions remove. Every effect is idempotent (ZADD/ZREM/SADD) and
follow/mute state is order-insensitive (`newer_than_applied`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from typing import ClassVar

import redis.asyncio as aioredis
from socialmesh.graph.v1 import events_pb2 as graph_events
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import events_pb2 as user_events

from services.kit.consumers import EventHandlers, EventMeta, Start, newer_than_applied

from .config import FeedConfig
from .peers import SHARE_KEY_TTL_SECONDS, Peers
from .timelines import (
    ACTIVE,
    CELEBRITIES,
    Entry,
    Timelines,
    author_key,
    built_key,
    celebs_key,
    deleted_key,
    muted_key,
    share_key,
    share_sort_key,
    tl_key,
)

GROUP = "feed"
#: Timelines are a rebuildable cache, but EARLIEST still fans out posts
#: published before this group existed (within the stream's 24 h).
START = Start.EARLIEST


class Fanout:
    """The `feed` consumer: post, graph and user events -> home timelines (Redis)."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(
        self,
        redis: aioredis.Redis,
        timelines: Timelines,
        peers: Peers,
        config: Callable[[], FeedConfig],
    ) -> None:
        self._redis = redis
        self._timelines = timelines
        self._peers = peers
        self._config = config

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(post_events.PostCreated, self.on_post_created)
        handlers.on(post_events.PostDeleted, self.on_post_deleted)
        handlers.on(post_events.PostShared, self.on_post_shared)
        handlers.on(post_events.PostUnshared, self.on_post_unshared)
        handlers.on(graph_events.Followed, self.on_followed)
        handlers.on(graph_events.Unfollowed, self.on_unfollowed)
        handlers.on(graph_events.Blocked, self.on_blocked)
        handlers.on(graph_events.Muted, self.on_muted)
        handlers.on(graph_events.Unmuted, self.on_unmuted)
        handlers.on(user_events.UserDeleted, self.on_user_deleted)
        return handlers

    async def _distribute(self, author_id: int, entry: Entry) -> None:
        """Hybrid fan-out: followers' timelines, or the author's own set at or above the
        threshold (sticky once crossed). The follower list the push needs also gives
        the count: one graph call per post, not two."""
        redis, tl = self._redis, self._timelines
        if await redis.sismember(CELEBRITIES, str(author_id)):
            await tl.push_author(author_id, entry)
            return
        pages = await self._peers.follower_pages(author_id)
        if sum(len(page) for page in pages) >= self._config().fanout_threshold:
            # Followers learn to merge this account first, then it becomes one: a
            # crash in between is redone on redelivery.
            for page in pages:
                await tl.merge_author(page, author_id)
            await redis.sadd(CELEBRITIES, str(author_id))
            await tl.push_author(author_id, entry)
            return
        await tl.push([author_id], [entry])
        for page in pages:
            active = await tl.active_among(page, self._config().active_seconds)
            await tl.push(active, [entry])

    async def _withdraw(self, author_id: int, entry: Entry) -> None:
        """Removes an entry wherever `_distribute` may have put it."""
        await self._redis.zrem(author_key(author_id), entry.member)
        await self._timelines.remove([author_id], [entry])
        for page in await self._peers.follower_pages(author_id):
            await self._timelines.remove(page, [entry])

    async def on_post_created(self, event: post_events.PostCreated, _: EventMeta) -> None:
        if await self._redis.exists(deleted_key(event.post_id)):
            return  # deleted before its creation was consumed
        await self._distribute(event.author_id, Entry.post(event.post_id, event.author_id))

    async def on_post_deleted(self, event: post_events.PostDeleted, _: EventMeta) -> None:
        await self._redis.set(deleted_key(event.post_id), 1, ex=7 * 86400)
        await self._withdraw(event.author_id, Entry.post(event.post_id, event.author_id))

    async def on_post_shared(self, event: post_events.PostShared, _: EventMeta) -> None:
        if event.visibility != post_pb2.VISIBILITY_PUBLIC:
            return  # a repost never widens a post's audience
        sort_key = share_sort_key(event.share_time.ToDatetime(tzinfo=UTC), event.post_id)
        await self._redis.set(
            share_key(event.post_id, event.user_id), sort_key, ex=SHARE_KEY_TTL_SECONDS
        )
        entry = Entry(sort_key, event.post_id, event.post_author_id, event.user_id)
        await self._distribute(event.user_id, entry)

    async def on_post_unshared(self, event: post_events.PostUnshared, _: EventMeta) -> None:
        raw = await self._redis.get(share_key(event.post_id, event.user_id))
        if raw is None:
            return
        entry = Entry(int(raw), event.post_id, event.post_author_id, event.user_id)
        await self._withdraw(event.user_id, entry)

    async def _stale(self, key: str, meta: EventMeta) -> bool:
        """A newer event about this key was applied already (order-insensitivity)."""
        current = await self._redis.get(key)
        if current is None:
            return False
        applied = current.decode() if isinstance(current, bytes) else str(current)
        return applied > f"{meta.event_id:020d}"

    async def on_followed(self, event: graph_events.Followed, meta: EventMeta) -> None:
        fan, idol = event.follower_id, event.followee_id
        key = f"feed:follow:{fan}:{idol}"
        if await self._stale(key, meta):
            return
        redis = self._redis
        if await redis.sismember(CELEBRITIES, str(idol)):
            await redis.sadd(celebs_key(fan), str(idol))
        elif await self._timelines.is_built(fan):  # otherwise the next read rebuilds it
            await self._timelines.push([fan], await self._peers.author_posts([idol]))
        await newer_than_applied(redis, key, meta)

    async def on_unfollowed(self, event: graph_events.Unfollowed, meta: EventMeta) -> None:
        fan, idol = event.follower_id, event.followee_id
        key = f"feed:follow:{fan}:{idol}"
        if await self._stale(key, meta):
            return
        await self._redis.srem(celebs_key(fan), str(idol))
        await self._timelines.remove_involving(fan, idol)
        await newer_than_applied(self._redis, key, meta)

    async def on_blocked(self, event: graph_events.Blocked, _: EventMeta) -> None:
        a, b = event.blocker_id, event.blocked_id
        await self._redis.srem(celebs_key(a), str(b))
        await self._redis.srem(celebs_key(b), str(a))
        await self._timelines.remove_involving(a, b)
        await self._timelines.remove_involving(b, a)

    async def on_muted(self, event: graph_events.Muted, meta: EventMeta) -> None:
        key = f"feed:mute:{event.muter_id}:{event.muted_id}"
        if await self._stale(key, meta):
            return
        await self._redis.sadd(muted_key(event.muter_id), str(event.muted_id))
        await self._timelines.remove_involving(event.muter_id, event.muted_id)
        await newer_than_applied(self._redis, key, meta)

    async def on_unmuted(self, event: graph_events.Unmuted, meta: EventMeta) -> None:
        key = f"feed:mute:{event.muter_id}:{event.muted_id}"
        if await self._stale(key, meta):
            return
        await self._redis.srem(muted_key(event.muter_id), str(event.muted_id))
        await newer_than_applied(self._redis, key, meta)

    async def on_user_deleted(self, event: user_events.UserDeleted, _: EventMeta) -> None:
        user = event.user_id
        await self._redis.delete(tl_key(user), built_key(user), celebs_key(user), muted_key(user))
        await self._redis.zrem(ACTIVE, str(user))
