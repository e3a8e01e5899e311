"""Time-ordered 64-bit ids (snowflake layout) so ids sort by creation and shard well.

Layout: 41 bits of milliseconds since EPOCH_MS, 10 bits of worker id, 12 bits of
sequence. Fits a signed BIGINT for roughly 69 years past the epoch.
"""

from __future__ import annotations

import threading
import time

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
