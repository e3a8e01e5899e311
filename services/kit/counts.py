"""Exact per-user counts (followers, following, posts) cached where profiles are read.

A profile read needs counts owned by two other services (graph, post). Asking
both on every read cost two synchronous RPCs per profile; this cache keeps them
in Redis next to the reader, exact:

* Each user has a *generation* (`counts-gen:v1:<id>`, a Redis counter) that
  every writer of a count bumps **after** its change commits (`changed`): graph
  for follows, unfollows, blocks, accepted requests and deleted accounts, post
  for created and deleted posts. The consumers of the typed events
  (`Followed`, `Unfollowed`, `PostCreated`, `PostDeleted`) bump it again, so a
  writer that died between its commit and its bump is corrected as the event
  arrives (at-least-once; an extra bump only costs one reload).
* A cached entry (`counts:v1:<id>`) is tagged with the generation read *before*
  its values were loaded, and is served only while that is still the current
  generation: one MGET of entry and generation per user, no invalidation race
  (a load that overlapped a change is tagged with the older generation and is
  never served). Entries expire after an hour; generations do not expire (a
  reset generation could match an old tag).

There is deliberately no in-process layer: an L1 copy could not see a bump
without a round trip, which is what the MGET already is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .generations import GenerationCache, bump, generation_key, tag, untag

log = logging.getLogger("socialmesh.counts")

ENTRY_TTL_SECONDS = 3600
NAMESPACE = "user-counts:v1"
GENERATIONS = "counts"


@dataclass(frozen=True)
class Counts:
    followers: int
    following: int
    posts: int


def _entry_key(user_id: int) -> str:
    return f"counts:v1:{user_id}"


def _generation_key(user_id: int) -> str:
    return generation_key(GENERATIONS, user_id)


async def changed(redis: aioredis.Redis, user_ids: Iterable[int]) -> None:
    """Call after a change of these users' counts has committed: cached counts go stale."""
    await bump(redis, [GENERATIONS], user_ids)


Loader = Callable[[list[int]], Awaitable[dict[int, Counts]]]


class CountsCache(GenerationCache):
    """Generation-checked counts in Redis, filled by `loader` (the owners' batch RPCs)."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = ENTRY_TTL_SECONDS) -> None:
        super().__init__(redis, NAMESPACE, ttl_seconds=ttl_seconds)

    async def get_many(self, user_ids: Iterable[int], loader: Loader) -> dict[int, Counts]:
        """Counts of every id: cached where the generation still matches, else loaded."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        keys: list[str] = []
        for user_id in ids:
            keys += (_entry_key(user_id), _generation_key(user_id))
        raw: Any = await self._redis.mget(keys)
        found: dict[int, Counts] = {}
        stale: dict[int, bytes] = {}
        for i, user_id in enumerate(ids):
            entry, generation = raw[2 * i], raw[2 * i + 1] or b"0"
            counts = _parse(entry, generation) if entry is not None else None
            if counts is None:
                stale[user_id] = generation
            else:
                found[user_id] = counts
        self.stats.l2_hits += len(found)
        if not stale:
            return found
        self.stats.misses += len(stale)
        loaded = await loader(list(stale))
        pipe = self._redis.pipeline(transaction=False)
        for user_id, counts in loaded.items():
            value = b"%d:%d:%d" % (counts.followers, counts.following, counts.posts)
            pipe.set(_entry_key(user_id), tag(stale[user_id], value), ex=self._ttl)
        await pipe.execute()
        found.update(loaded)
        return found


def _parse(entry: bytes, generation: bytes) -> Counts | None:
    payload = untag(entry, generation)
    if payload is None:
        return None
    followers, following, posts = payload.split(b":")
    return Counts(int(followers), int(following), int(posts))
