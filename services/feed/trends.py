"""Trending hashtags and posts: hourly Redis buckets, merged with time decay.

Counters go into `feed:trend:<what>:<hour>` sorted sets (kept 26 hours). A list
request merges the buckets of its window with ZUNIONSTORE and weights (HOUR:
this hour, plus the previous one fading out linearly; DAY: 24 hours with a
6-hour half-life) into a snapshot that lives 5 minutes; page tokens point into
the snapshot, so pages of one listing neither repeat nor skip.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import redis.asyncio as aioredis
from socialmesh.feed.v1 import feed_pb2

BUCKET_TTL_SECONDS = 26 * 3600
SNAPSHOT_TTL_SECONDS = 300
DAY_HALF_LIFE_HOURS = 6.0

TAGS = "tags"
POSTS = "posts"


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
