"""redis.asyncio client construction (TCP `redis://` or unix-socket `unix://` URLs).

The pool *waits* for a free connection (up to `POOL_TIMEOUT_SECONDS`) instead of
failing at once: redis-py's default pool raises `MaxConnectionsError` the moment 100
commands are in flight, which under a burst (chat streams opening after a drain, every
stream's heartbeat landing together) surfaced as UNAVAILABLE and cut idle streams.
"""

from __future__ import annotations

import os

import redis.asyncio as aioredis

from .tasks import retry_with_backoff

#: Connections per process (REDIS_MAX_CONNECTIONS); pub/sub listeners hold one each.
DEFAULT_MAX_CONNECTIONS = 256
POOL_TIMEOUT_SECONDS = 5.0


async def connect_redis(
    url: str, *, attempts: int = 30, max_connections: int | None = None
) -> aioredis.Redis:
    size = max_connections or int(
        os.environ.get("REDIS_MAX_CONNECTIONS", str(DEFAULT_MAX_CONNECTIONS))
    )
    pool = aioredis.BlockingConnectionPool.from_url(
        url, decode_responses=False, max_connections=size, timeout=POOL_TIMEOUT_SECONDS
    )
    client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
    await retry_with_backoff(
        client.ping, retry_on=(OSError, aioredis.ConnectionError), attempts=attempts
    )
    return client
