"""Atomic per-key rate limits in Redis (sliding-window log in one Lua script).

Exact for small limits such as "10 profile updates per hour": every accepted
event is a member of a sorted set; the script trims, counts and admits in one
atomic step, so concurrent instances can never over-admit.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

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

#: Counts without admitting: for limits on failures, checked before the work and
#: recorded (with `_RECORD`) only when the attempt failed.
_PEEK = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  return {1, limit - count, 0}
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return {0, 0, window - (now - tonumber(oldest[2]))}
"""

_RECORD = """
redis.call('ZADD', KEYS[1], tonumber(ARGV[1]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

#: Keys longer than this (or with unprintable characters) are stored as their SHA-256,
#: so whatever a client sends, a limiter key stays small.
MAX_PLAIN_KEY = 64


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
        self._peek = redis.register_script(_PEEK)
        self._record = redis.register_script(_RECORD)

    def redis_key(self, key: str) -> str:
        if len(key) > MAX_PLAIN_KEY or not key.isprintable():
            key = "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return f"ratelimit:{self._name}:{{{key}}}"

    def _args(self) -> list[int | str]:
        now_ms = int(time.time() * 1000)
        return [now_ms, self.window_ms, self.limit, f"{now_ms}-{uuid.uuid4().hex[:8]}"]

    async def hit(self, key: str) -> Decision:
        allowed, remaining, retry_ms = await self._script(
            keys=[self.redis_key(key)], args=self._args()
        )
        return Decision(bool(allowed), int(remaining), int(retry_ms) / 1000.0)

    async def peek(self, key: str) -> Decision:
        """Whether another event would be admitted, without recording one."""
        allowed, remaining, retry_ms = await self._peek(
            keys=[self.redis_key(key)], args=self._args()[:3]
        )
        return Decision(bool(allowed), int(remaining), int(retry_ms) / 1000.0)

    async def record(self, key: str) -> None:
        """Counts one event whatever the limit (e.g. a failed login, after the fact)."""
        await self._record(keys=[self.redis_key(key)], args=self._args())

    async def enforce(self, key: str, what: str) -> None:
        """Consumes one unit or raises RESOURCE_EXHAUSTED (HTTP 429) with RetryInfo."""
        self._refuse_unless(await self.hit(key), key, what)

    async def enforce_below(self, key: str, what: str) -> None:
        """RESOURCE_EXHAUSTED if the window is full, consuming nothing (pair with `record`)."""
        self._refuse_unless(await self.peek(key), key, what)

    def _refuse_unless(self, decision: Decision, key: str, what: str) -> None:
        if not decision.allowed:
            raise ResourceExhausted(
                f"rate limit exceeded: at most {self.limit} {what} per "
                f"{self.window_ms // 1000} seconds",
                subject=self.redis_key(key).removeprefix("ratelimit:"),
                retry_after_seconds=decision.retry_after_seconds,
                limit=self.limit,
                window_seconds=self.window_ms // 1000,
            )


def client_address(metadata: Any, peer: str) -> str | None:
    """The address a per-client limit is keyed on, or None for a local direct caller.

    Through the edge: Envoy (`use_remote_address`, `xff_num_trusted_hops: 0`) sets
    `x-envoy-external-address` for external clients and appends the socket peer to
    `x-forwarded-for`, so its last entry is the address Envoy saw, whatever a client
    put in front of it. Called directly: the gRPC peer. Only the edge and the mesh
    reach a service (network policies), so both headers are trusted here; a direct
    call from this host (local tools, tests, seeding) has no client to attribute.
    """
    external = forwarded = ""
    for key, value in metadata or ():
        if key == "x-envoy-external-address" and isinstance(value, str):
            external = value.strip()
        elif key == "x-forwarded-for" and isinstance(value, str):
            forwarded = value  # the last header wins: Envoy appends to it
    if external:
        return external[:64]
    if forwarded:
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last[:64]
    host = _peer_host(peer)
    if host is None:
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        return None
    return host


def _peer_host(peer: str) -> str | None:
    """`ipv4:10.0.0.1:5000` -> 10.0.0.1, `ipv6:[::1]:5000` -> ::1; unix sockets -> None."""
    if peer.startswith("ipv4:"):
        return peer[5:].rsplit(":", 1)[0]
    if peer.startswith("ipv6:"):
        return unquote(peer[5:]).rsplit(":", 1)[0].strip("[]")
    return None
