"""Generation-tagged cache entries: exact caches of data another service owns.

The owner of some data bumps a per-user *generation* (a Redis counter) after a
change commits and before it answers; a reader tags what it caches with the
generation it read *before* loading, and serves an entry only while that is
still the current generation. A load that overlapped a change carries the
older tag and is never served, so there is no invalidation race, and a change
is seen by the very next read (read-your-writes). The owner's typed events bump
again, so a writer that died between commit and bump is corrected when its
event is consumed. Generations never expire (a reset one could match an old
tag); entries do.

Used by kit/counts.py (profile counts), kit/relcache.py (viewer relationships)
and kit/cards.py (account cards).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis

from .cache import CacheStats, StatsReporter


def generation_key(namespace: str, user_id: int) -> str:
    return f"{namespace}-gen:v1:{user_id}"


async def bump(redis: aioredis.Redis, namespaces: Sequence[str], user_ids: Iterable[int]) -> None:
    """Call after a change of these users' data has committed: their entries in every
    one of `namespaces` go stale (one round trip)."""
    ids = sorted(set(user_ids))
    if not ids or not namespaces:
        return
    pipe = redis.pipeline(transaction=False)
    for namespace in namespaces:
        for user_id in ids:
            pipe.incr(generation_key(namespace, user_id))
    await pipe.execute()


def tag(generation: bytes | None, payload: bytes) -> bytes:
    """An entry carrying the generation read before its payload was loaded."""
    return (generation or b"0") + b":" + payload


def untag(entry: bytes | None, generation: bytes | None) -> bytes | None:
    """The payload if the entry is current, else None (missing or stale)."""
    if entry is None:
        return None
    stored, _, payload = entry.partition(b":")
    return payload if stored == (generation or b"0") else None


class GenerationCache:
    """What every generation-checked cache holds: its Redis, its entries' lifetime
    and its hit counters (published as `cache-stats:<stats_namespace>`)."""

    def __init__(self, redis: aioredis.Redis, stats_namespace: str, *, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self.stats = CacheStats()
        self._reporter = StatsReporter(redis, stats_namespace, self.stats)

    def start(self) -> None:
        self._reporter.start()

    async def stop(self) -> None:
        await self._reporter.stop()
