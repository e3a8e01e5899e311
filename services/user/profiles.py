"""Profiles as a viewer may see them: cached records, counts and the viewer's
relationships from their owners, and the presentation that combines them.

* Records: a two-layer cache (`user:v1`, kit/cache.py) of the store's rows, with
  their decoding kept beside the cached bytes (decoded once per version).
* Social: follower/following counts (graph) and post counts (post), cached exactly
  (kit/counts.py), and the viewer's relationships (kit/relcache.py), fetched
  concurrently.
* Presentation: accounts blocking the viewer vanish; private accounts show the
  limited view to everyone but their owner and approved followers; email and its
  verification only to the owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2

from services.kit.cache import TwoLayerCache
from services.kit.channels import peer_call
from services.kit.counts import Counts, CountsCache
from services.kit.errors import NotFound
from services.kit.relcache import RelationshipCache, graph_loader
from services.kit.timestamps import from_datetime

from .store import UserRecord, UserStore

COUNT_FIELDS = frozenset({"follower_count", "following_count", "post_count"})
#: Decoded profile records kept beside the cache's bytes (cleared when full).
MAX_DECODED = 50_000

_USER_FIELDS = user_pb2.User.DESCRIPTOR.fields_by_name


async def _nothing() -> dict[int, Counts]:
    return {}


def masked(user: user_pb2.User, paths: list[str]) -> user_pb2.User:
    """The user with only `paths` (top-level User fields, checked by the caller) set:
    what FieldMask.MergeMessage does, without its per-message tree walk."""
    partial = user_pb2.User()
    for path in paths:
        field = _USER_FIELDS[path]
        if field.has_presence and not user.HasField(path):  # type: ignore[arg-type]
            continue  # absent stays absent (counts of a limited view, no avatar)
        if field.message_type is not None:
            getattr(partial, path).CopyFrom(getattr(user, path))
        else:
            setattr(partial, path, getattr(user, path))
    return partial


@dataclass(frozen=True)
class Social:
    """What other services know about a batch of profiles."""

    counts: dict[int, Counts]
    relationships: dict[int, graph_pb2.Relationship]


class Profiles:
    """Records, counts and relationships, presented to one viewer at a time."""

    def __init__(
        self,
        store: UserStore,
        redis: aioredis.Redis,
        graph: graph_pb2_grpc.GraphServiceAsyncStub,
        posts: post_pb2_grpc.PostServiceAsyncStub,
    ) -> None:
        self._store = store
        self._graph = graph
        self._posts = posts
        self.cache = TwoLayerCache(redis, "user:v1")
        self._counts = CountsCache(redis)
        self._relationships = RelationshipCache(redis, "user-relationships:v1")
        #: user id -> (cached bytes, their decoding): an L1 hit returns the same bytes
        #: object until the entry changes, so decoding happens once per version.
        self._decoded: dict[int, tuple[bytes, UserRecord]] = {}

    async def start(self) -> None:
        await self.cache.start()
        self._counts.start()
        self._relationships.start()

    async def stop(self) -> None:
        await self.cache.stop()
        await self._counts.stop()
        await self._relationships.stop()

    async def invalidate(self, user_id: int, record: UserRecord | None = None) -> None:
        """The account's cached record is stale everywhere (replaced by `record` if given)."""
        await self.cache.invalidate(str(user_id), None if record is None else record.to_bytes())

    async def records(self, user_ids: list[int]) -> dict[int, UserRecord]:
        async def load(keys: list[str]) -> dict[str, bytes]:
            records = await self._store.load_users([int(k) for k in keys])
            return {str(r.user_id): r.to_bytes() for r in records}

        raw = await self.cache.get_many([str(u) for u in user_ids], load)
        records: dict[int, UserRecord] = {}
        decoded = self._decoded
        for key, value in raw.items():
            user_id = int(key)
            known = decoded.get(user_id)
            if known is not None and known[0] is value:
                records[user_id] = known[1]
                continue
            record = UserRecord.from_bytes(value)
            if len(decoded) >= MAX_DECODED:
                decoded.clear()
            decoded[user_id] = (value, record)
            records[user_id] = record
        return records

    async def _load_counts(self, ids: list[int]) -> dict[int, Counts]:
        """Exact counts from their owners, graph and post: two batch calls, concurrently.

        The peers' channels carry the viewer's token, or this service's own
        credential for an anonymous viewer (the counts are internal methods).
        """
        async with peer_call("graph/post"):
            follows, authored = await asyncio.gather(
                self._graph.BatchGetFollowCounts(
                    graph_pb2.BatchGetFollowCountsRequest(user_ids=ids)
                ),
                self._posts.BatchGetPostCounts(post_pb2.BatchGetPostCountsRequest(user_ids=ids)),
            )
        by_user = {c.user_id: c for c in follows.counts}
        post_counts = {c.user_id: c.post_count for c in authored.counts}
        return {
            i: Counts(
                by_user[i].follower_count if i in by_user else 0,
                by_user[i].following_count if i in by_user else 0,
                post_counts.get(i, 0),
            )
            for i in ids
        }

    async def social(self, ids: list[int], viewer_id: int | None, *, counts: bool = True) -> Social:
        """Counts and the viewer's relationships (both cached, exact: kit/counts.py,
        kit/relcache.py), concurrently."""
        others = [i for i in ids if i != viewer_id]
        calls: list[Awaitable[Any]] = [
            self._counts.get_many(ids, self._load_counts) if counts else _nothing()
        ]
        if viewer_id is not None and others:
            calls.append(self._relationships.get_many(viewer_id, others, graph_loader(self._graph)))
        async with peer_call("graph"):
            replies = await asyncio.gather(*calls)
        return Social(counts=replies[0], relationships=replies[1] if len(replies) > 1 else {})

    async def present(
        self, records: list[UserRecord], viewer_id: int | None, *, counts: bool = True
    ) -> list[user_pb2.User]:
        """Profiles as this viewer may see them; accounts blocking the viewer vanish."""
        if not records:
            return []
        social = await self.social([r.user_id for r in records], viewer_id, counts=counts)
        shown = []
        for record in records:
            rel = social.relationships.get(record.user_id)
            if rel is not None and rel.blocked_by:
                continue
            shown.append(to_proto(record, viewer_id, social, rel))
        return shown

    async def present_one(self, record: UserRecord, viewer_id: int | None) -> user_pb2.User:
        """An account its owner just changed, as the owner sees it."""
        return (await self.present([record], viewer_id))[0]

    async def profile(self, user_id: int, viewer_id: int | None) -> user_pb2.User:
        records = await self.records([user_id])
        shown = await self.present(list(records.values()), viewer_id)
        if not shown:
            raise NotFound(f"user {user_id} not found", resource="user", resource_id=user_id)
        return shown[0]


def to_proto(
    record: UserRecord,
    viewer_id: int | None,
    social: Social,
    rel: graph_pb2.Relationship | None,
) -> user_pb2.User:
    is_owner = viewer_id == record.user_id
    is_following = bool(rel and rel.following)
    limited = record.is_private and not is_owner and not is_following
    user = user_pb2.User(
        user_id=record.user_id,
        handle=record.handle,
        display_name=record.display_name,
        avatar_url=record.avatar_url,
        avatar_media_id=record.avatar_media_id or None,  # absent, never "0"
        is_private=record.is_private,
        is_limited_view=limited,
        is_following=is_following,
        # Viewer state for the profile's buttons, in the limited view too.
        followed_by=bool(rel and rel.followed_by),
        requested=bool(rel and rel.requested),
        muting=bool(rel and rel.muting),
        blocking=bool(rel and rel.blocking),
    )
    if limited:
        return user
    user.bio = record.bio
    counts = social.counts.get(record.user_id)
    if counts is not None:
        user.follower_count = counts.followers
        user.following_count = counts.following
        user.post_count = counts.posts
    user.create_time.CopyFrom(from_datetime(record.created_at))
    user.update_time.CopyFrom(from_datetime(record.updated_at))
    if is_owner:
        user.email = record.email
        user.email_verified = record.email_verified
    return user
