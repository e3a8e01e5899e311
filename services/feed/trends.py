"""Trending hashtags and posts: hourly Redis buckets, merged with time decay.

Counters go into `feed:trend:<what>:<hour>` sorted sets (kept 26 hours). A list
request merges the buckets of its window with ZUNIONSTORE and weights (HOUR:
this hour, plus the previous one fading out linearly; DAY: 24 hours with a
6-hour half-life) into a snapshot that lives 5 minutes; page tokens point into
the snapshot, so pages of one listing neither repeat nor skip.

The counters are kept by the `feed-trends` consumer group (`TrendCounter`): its
own group because ZINCRBY is not idempotent, so each event counts once
(`first_delivery`). `TrendListings` pages ListTrendingTags / ListTrendingPosts.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import ClassVar

import redis.asyncio as aioredis
from socialmesh.feed.v1 import feed_pb2
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.post.v1 import post_pb2

from services.kit.consumers import EventHandlers, EventMeta, Start, first_delivery
from services.kit.errors import InvalidArgument
from services.kit.pagination import PageTokens

from .cursors import TrendAt, decode_trend, encode_trend
from .peers import Peers

BUCKET_TTL_SECONDS = 26 * 3600
SNAPSHOT_TTL_SECONDS = 300
DAY_HALF_LIFE_HOURS = 6.0

TAGS = "tags"
POSTS = "posts"
TREND_WINDOWS = {feed_pb2.TREND_WINDOW_HOUR, feed_pb2.TREND_WINDOW_DAY}


def bucket_key(what: str, hour: int) -> str:
    return f"feed:trend:{what}:{hour}"


def hour_of(when: datetime) -> int:
    return int(when.timestamp()) // 3600


def window_weights(window: int, now: float) -> dict[int, float]:
    """Bucket hour -> weight for a window at time `now`."""
    hour = int(now) // 3600
    if window == feed_pb2.TREND_WINDOW_HOUR:
        elapsed = (now - hour * 3600) / 3600
        return {hour: 1.0, hour - 1: 1.0 - elapsed}
    return {hour - age: 0.5 ** (age / DAY_HALF_LIFE_HOURS) for age in range(24)}


class Trends:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def add(self, what: str, members: dict[str, float], when: datetime) -> None:
        if not members:
            return
        key = bucket_key(what, hour_of(when))
        pipe = self._redis.pipeline(transaction=False)
        for member, amount in members.items():
            pipe.zincrby(key, amount, member)
        pipe.expire(key, BUCKET_TTL_SECONDS)
        await pipe.execute()

    async def snapshot(self, what: str, window: int) -> str:
        """Merges the window's buckets into a new snapshot; returns its id."""
        snapshot_id = uuid.uuid4().hex[:16]
        key = f"feed:trend:snap:{snapshot_id}"
        weights = {
            bucket_key(what, hour): w
            for hour, w in window_weights(window, time.time()).items()
            if w > 0
        }
        pipe = self._redis.pipeline(transaction=True)
        pipe.zunionstore(key, weights, aggregate="SUM")
        pipe.zremrangebyscore(key, "-inf", 0)
        pipe.expire(key, SNAPSHOT_TTL_SECONDS)
        await pipe.execute()
        return snapshot_id

    async def page(self, snapshot_id: str, offset: int, count: int) -> list[tuple[str, float]]:
        rows: list[tuple[bytes, float]] = await self._redis.zrevrange(  # type: ignore[assignment]
            f"feed:trend:snap:{snapshot_id}", offset, offset + count - 1, withscores=True
        )
        return [(m.decode(), float(s)) for m, s in rows]

    async def snapshot_exists(self, snapshot_id: str) -> bool:
        return bool(await self._redis.exists(f"feed:trend:snap:{snapshot_id}"))


class TrendListings:
    """Pages of trending tags and posts, each listing over one snapshot."""

    def __init__(self, trends: Trends, page_tokens: PageTokens, peers: Peers) -> None:
        self._trends = trends
        self._tokens = page_tokens
        self._peers = peers

    async def _start(self, what: str, window: int, token: str) -> TrendAt:
        """Where a listing's page starts; a new snapshot for page 1."""
        if window not in TREND_WINDOWS:
            raise InvalidArgument([("window", "must be TREND_WINDOW_HOUR or TREND_WINDOW_DAY")])
        at = decode_trend(self._tokens, what, window, token)
        if at is None:
            return TrendAt(await self._trends.snapshot(what, window), 0)
        if not await self._trends.snapshot_exists(at.snapshot):
            raise InvalidArgument([("page_token", "expired page token: list again from page 1")])
        return at

    async def tags(
        self, window: int, token: str, size: int
    ) -> tuple[list[feed_pb2.TrendingTag], str]:
        """A page of tags and the next page's token ("" at the end)."""
        at = await self._start(TAGS, window, token)
        rows = await self._trends.page(at.snapshot, at.offset, size + 1)
        more = len(rows) > size
        following = TrendAt(at.snapshot, at.offset + size)
        return (
            [feed_pb2.TrendingTag(hashtag=tag, score=score) for tag, score in rows[:size]],
            encode_trend(self._tokens, TAGS, window, following) if more else "",
        )

    async def posts(self, window: int, token: str, size: int) -> tuple[list[post_pb2.Post], str]:
        """A page of posts as the caller may see them (anonymous: PUBLIC only), and the
        next page's token ("" at the end)."""
        at = await self._start(POSTS, window, token)
        fetch = size * 2
        rows = await self._trends.page(at.snapshot, at.offset, fetch)
        visible = await self._peers.hydrate([int(p) for p, _ in rows]) if rows else {}
        posts: list[post_pb2.Post] = []
        examined = 0
        for post_id, _score in rows:
            if len(posts) == size:
                break
            examined += 1
            if int(post_id) in visible:
                posts.append(visible[int(post_id)])
        more = examined < len(rows) or len(rows) == fetch
        following = TrendAt(at.snapshot, at.offset + examined)
        return posts, encode_trend(self._tokens, POSTS, window, following) if more else ""


GROUP = "feed-trends"
#: Counts what the streams still hold (their 24 h) when the group is new.
START = Start.EARLIEST


class TrendCounter:
    """The `feed-trends` consumer: PUBLIC posts' hashtags and engagements -> hourly buckets."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, redis: aioredis.Redis, trends: Trends) -> None:
        self._redis = redis
        self._trends = trends

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(post_events.PostCreated, self.on_post_created)
        handlers.on(post_events.PostLiked, self.on_liked)
        handlers.on(post_events.PostUnliked, self.on_unliked)
        handlers.on(post_events.PostShared, self.on_shared)
        handlers.on(post_events.PostUnshared, self.on_unshared)
        handlers.on(post_events.CommentCreated, self.on_commented)
        return handlers

    async def _count(self, meta: EventMeta, what: str, members: dict[str, float]) -> None:
        if members and await first_delivery(self._redis, GROUP, meta):
            await self._trends.add(what, members, meta.occur_time)

    async def on_post_created(self, event: post_events.PostCreated, meta: EventMeta) -> None:
        if event.visibility == post_pb2.VISIBILITY_PUBLIC:
            await self._count(meta, TAGS, {tag: 1.0 for tag in event.hashtags})

    async def on_liked(self, event: post_events.PostLiked, meta: EventMeta) -> None:
        await self._count(meta, POSTS, {str(event.post_id): 1.0})

    async def on_unliked(self, event: post_events.PostUnliked, meta: EventMeta) -> None:
        await self._count(meta, POSTS, {str(event.post_id): -1.0})

    async def on_shared(self, event: post_events.PostShared, meta: EventMeta) -> None:
        await self._count(meta, POSTS, {str(event.post_id): 2.0})

    async def on_unshared(self, event: post_events.PostUnshared, meta: EventMeta) -> None:
        await self._count(meta, POSTS, {str(event.post_id): -2.0})

    async def on_commented(self, event: post_events.CommentCreated, meta: EventMeta) -> None:
        await self._count(meta, POSTS, {str(event.post_id): 1.0})
