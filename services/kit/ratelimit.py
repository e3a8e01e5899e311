"""Atomic per-key rate limits in Redis (sliding-window log in one Lua script).

Exact for small limits such as "10 profile updates per hour": every accepted
event is a member of a sorted set; the script trims, counts and admits in one
atomic step, so concurrent instances can never over-admit.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from .errors import ResourceExhausted

_SLIDING_WINDOW = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local member = ARGV[4]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, window)
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local retry = window - (now - tonumber(oldest[2]))
return {0, 0, retry}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    retry_after_seconds: float


class RateLimiter:
    """`limit` events per `window_seconds` per key."""

    def __init__(
        self, redis: aioredis.Redis, name: str, *, limit: int, window_seconds: float
    ) -> None:
        self._redis = redis
        self._name = name
        self.limit = limit
        self.window_ms = int(window_seconds * 1000)
        self._script = redis.register_script(_SLIDING_WINDOW)

    async def hit(self, key: str) -> Decision:
        now_ms = int(time.time() * 1000)
        allowed, remaining, retry_ms = await self._script(
            keys=[f"ratelimit:{self._name}:{{{key}}}"],
            args=[now_ms, self.window_ms, self.limit, f"{now_ms}-{uuid.uuid4().hex[:8]}"],
        )
        return Decision(bool(allowed), int(remaining), int(retry_ms) / 1000.0)

    async def enforce(self, key: str, what: str) -> None:
        """Consumes one unit or raises RESOURCE_EXHAUSTED (HTTP 429) with RetryInfo."""
        decision = await self.hit(key)
        if not decision.allowed:
            raise ResourceExhausted(
                f"rate limit exceeded: at most {self.limit} {what} per "
                f"{self.window_ms // 1000} seconds",
                subject=f"{self._name}:{key}",
                retry_after_seconds=decision.retry_after_seconds,
            )
