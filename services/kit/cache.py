"""Two-layer cache: in-process TTL L1 in front of Redis L2.

Invalidation reaches every instance: `invalidate` deletes the L2 entry and
publishes the key on a Redis pub/sub channel; every instance's listener drops
its L1 copy. Values are bytes (callers serialize), so L1 and L2 hold the same
thing. Hit/miss counters feed the benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from .metrics import CACHE_HIT_RATE
from .tasks import cancel_and_wait

log = logging.getLogger("socialmesh.cache")


@dataclass
class CacheStats:
    l1_hits: int = 0
    l2_hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.l1_hits + self.l2_hits + self.misses
        return (self.l1_hits + self.l2_hits) / total if total else 0.0


class StatsReporter:
    """Publishes one cache instance's hit counters to `cache-stats:<namespace>` every
    2 s (a hash field per instance: `socialmesh bench` sums them) and as a gauge."""

    def __init__(self, redis: aioredis.Redis, namespace: str, stats: CacheStats) -> None:
        self._redis = redis
        self._ns = namespace
        self._stats = stats
        self._instance = f"{socket.gethostname()}:{os.getpid()}:{id(stats):x}"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"stats-{self._ns}")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self, every_seconds: float = 2.0) -> None:
        key = f"cache-stats:{self._ns}"
        while True:
            await asyncio.sleep(every_seconds)
            CACHE_HIT_RATE.labels(self._ns).set(self._stats.hit_rate)
            try:
                await self._redis.hset(key, self._instance, json.dumps(self._stats.__dict__))
                await self._redis.expire(key, 3600)
            except (OSError, aioredis.ConnectionError):
                log.debug("could not publish %s cache stats", self._ns)


class LocalTTLCache:
    """Bounded LRU with per-entry expiry; the L1 layer."""

    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._ttl = ttl_seconds

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < time.monotonic():
            self._data.pop(key, None)
            return None
        self._data.move_to_end(key)
        return value

    def set(self, key: str, value: bytes) -> None:
        self._data[key] = (time.monotonic() + self._ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()


Loader = Callable[[list[str]], Awaitable[dict[str, bytes]]]


class TwoLayerCache:
    """L1 (process) -> L2 (Redis) -> loader (PostgreSQL), batch-first."""

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        *,
        l1_ttl_seconds: float = 30.0,
        l1_max_entries: int = 50_000,
        l2_ttl_seconds: int = 3600,
    ) -> None:
        self._redis = redis
        self._ns = namespace
        self._l1 = LocalTTLCache(l1_max_entries, l1_ttl_seconds)
        self._l2_ttl = l2_ttl_seconds
        self._channel = f"cache-invalidate:{namespace}"
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.stats = CacheStats()
        self._reporter = StatsReporter(redis, namespace, self.stats)

    def _key(self, key: str) -> str:
        return f"cache:{self._ns}:{key}"

    async def start(self) -> None:
        """Subscribes to invalidations; returns once the subscription is live."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name=f"cache-{self._ns}")
            await asyncio.wait_for(self._ready.wait(), timeout=10)
        self._reporter.start()

    async def stop(self) -> None:
        if self._listener is not None:
            await cancel_and_wait(self._listener)
            self._listener = None
        await self._reporter.stop()

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                # Anything cached before (re)subscribing may have missed an invalidation.
                self._l1.clear()
                self._ready.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._l1.delete(message["data"].decode())
            except asyncio.CancelledError:
                await pubsub.aclose()
                raise
            except (OSError, aioredis.ConnectionError):
                log.warning("cache invalidation subscription lost; retrying")
                self._l1.clear()
                await asyncio.sleep(0.5)

    async def get_many(self, keys: Iterable[str], loader: Loader) -> dict[str, bytes]:
        """Values for the keys found at any layer; missing keys are absent."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        l2_needed = []
        for key in wanted:
            value = self._l1.get(key)
            if value is not None:
                found[key] = value
                self.stats.l1_hits += 1
            else:
                l2_needed.append(key)
        if not l2_needed:
            return found
        raw_values: Any = await self._redis.mget([self._key(k) for k in l2_needed])
        values: list[bytes | None] = raw_values
        db_needed = []
        for key, value in zip(l2_needed, values, strict=True):
            if value is not None:
                found[key] = value
                self._l1.set(key, value)
                self.stats.l2_hits += 1
            else:
                db_needed.append(key)
        if db_needed:
            self.stats.misses += len(db_needed)
            loaded = await loader(db_needed)
            if loaded:
                pipe = self._redis.pipeline(transaction=False)
                for key, value in loaded.items():
                    pipe.set(self._key(key), value, ex=self._l2_ttl)
                    self._l1.set(key, value)
                await pipe.execute()
                found.update(loaded)
        return found

    async def get(self, key: str, loader: Loader) -> bytes | None:
        return (await self.get_many([key], loader)).get(key)

    async def invalidate(self, key: str, new_value: bytes | None = None) -> None:
        """Call after the change commits; writes through when the new value is known."""
        if new_value is None:
            await self._redis.delete(self._key(key))
            self._l1.delete(key)
        else:
            await self._redis.set(self._key(key), new_value, ex=self._l2_ttl)
            self._l1.set(key, new_value)
        await self._redis.publish(self._channel, key)
