"""redis.asyncio client construction (TCP `redis://` or unix-socket `unix://` URLs)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis


async def connect_redis(url: str, *, attempts: int = 30) -> aioredis.Redis:
    client: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=False)
    delay = 0.2
    for attempt in range(attempts):
        try:
            await client.ping()
            return client
        except (OSError, aioredis.ConnectionError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    return client
