"""redis.asyncio client construction (TCP `redis://` or unix-socket `unix://` URLs)."""

from __future__ import annotations

import redis.asyncio as aioredis

from .tasks import retry_with_backoff


async def connect_redis(url: str, *, attempts: int = 30) -> aioredis.Redis:
    client: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=False)
    await retry_with_backoff(
        client.ping, retry_on=(OSError, aioredis.ConnectionError), attempts=attempts
    )
    return client
