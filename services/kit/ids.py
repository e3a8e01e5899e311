"""Time-ordered 64-bit ids (snowflake layout) so ids sort by creation and shard well.

Layout: 41 bits of milliseconds since EPOCH_MS, 10 bits of worker id, 12 bits of
sequence. Fits a signed BIGINT for roughly 69 years past the epoch.
"""

from __future__ import annotations

import threading
import time
import zlib
from typing import Any

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1


class IdGenerator:
    """Thread-safe snowflake generator; never hands out the same id twice per worker."""

    def __init__(self, worker_id: int) -> None:
        if not 0 <= worker_id <= MAX_WORKER:
            raise ValueError(f"worker_id must be within 0..{MAX_WORKER}")
        self._worker = worker_id
        self._lock = threading.Lock()
        self._last_ms = -1
        self._sequence = 0

    def rebind(self, worker_id: int) -> None:
        """Switches to a newly leased worker id (stores keep this same object)."""
        if not 0 <= worker_id <= MAX_WORKER:
            raise ValueError(f"worker_id must be within 0..{MAX_WORKER}")
        with self._lock:
            self._worker = worker_id

    def next_id(self) -> int:
        with self._lock:
            now = max(int(time.time() * 1000) - EPOCH_MS, self._last_ms)
            if now == self._last_ms:
                self._sequence = (self._sequence + 1) & MAX_SEQUENCE
                if self._sequence == 0:  # exhausted this millisecond: borrow the next
                    now = self._last_ms + 1
            else:
                self._sequence = 0
            self._last_ms = now
            return (
                (now << (WORKER_BITS + SEQUENCE_BITS))
                | (self._worker << SEQUENCE_BITS)
                | (self._sequence)
            )


def timestamp_ms(snowflake: int) -> int:
    """Unix milliseconds at which an id was minted."""
    return (snowflake >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS


async def lease_worker_id(redis: Any, owner: str, *, ttl_seconds: int = 60) -> int:
    """Claims a free worker id in Redis so no two live processes share one.

    The lease expires unless renewed (see `renew_worker_id`), so ids of crashed
    processes come back. Starts probing at a hash of the owner to spread claims.
    """
    start = zlib.crc32(owner.encode()) % (MAX_WORKER + 1)
    for offset in range(MAX_WORKER + 1):
        candidate = (start + offset) % (MAX_WORKER + 1)
        if await redis.set(f"worker-id:{candidate}", owner, nx=True, ex=ttl_seconds):
            return candidate
    raise RuntimeError("all 1024 snowflake worker ids are leased")


async def renew_worker_id(redis: Any, worker_id: int, owner: str, ttl_seconds: int = 60) -> bool:
    """Extends our lease; False if someone else holds it now (we must re-lease)."""
    key = f"worker-id:{worker_id}"
    holder = await redis.get(key)
    if holder is not None and holder.decode() != owner:
        return False
    await redis.set(key, owner, ex=ttl_seconds)
    return True
