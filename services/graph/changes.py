"""What goes stale when the graph changes: the profiles' cached counts (kit/counts.py)
and relationships (kit/relcache.py) of the accounts involved.

Bumped after a change commits and before the reply, so the caller's next read
already sees it.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from services.kit.counts import GENERATIONS as COUNTS
from services.kit.generations import bump
from services.kit.relcache import GENERATIONS as RELATIONSHIPS


async def changed(redis: aioredis.Redis, *user_ids: int, counts: bool = True) -> None:
    """These users' cached relationships (and, unless `counts` is False, counts) are stale."""
    namespaces = [RELATIONSHIPS, COUNTS] if counts else [RELATIONSHIPS]
    await bump(redis, namespaces, user_ids)
