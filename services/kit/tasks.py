"""Small asyncio building blocks the kit's long-running pieces share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def retry_with_backoff(
    attempt_once: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[BaseException], ...],
    attempts: int = 30,
    first_delay: float = 0.2,
    max_delay: float = 2.0,
) -> T:
    """Keeps trying while a dependency is still coming up (pods start in any order)."""
    delay = first_delay
    for attempt in range(attempts):
        try:
            return await attempt_once()
        except retry_on:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
    raise RuntimeError("attempts must be at least 1")


class BackgroundLoop:
    """Owns one named task running `run()`; start/stop are idempotent."""

    _task: asyncio.Task[None] | None = None

    def task_name(self) -> str:
        return type(self).__name__

    async def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.task_name())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
