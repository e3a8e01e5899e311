"""Small asyncio building blocks the kit's long-running pieces share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("socialmesh.tasks")


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


async def cancel_and_wait(
    task: asyncio.Task[Any], *, attempts: int = 20, wait_seconds: float = 0.25
) -> None:
    """Cancels a task and waits until it has really ended.

    redis-py 8 can swallow a cancellation that arrives while a command is in
    flight (the task carries on with its loop), so a single `cancel()` + `await`
    may wait forever: cancel again until the task ends, then give up loudly
    rather than hang a shutdown.
    """
    for _ in range(attempts):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=wait_seconds)
    if not task.done():
        log.error("task %s did not stop after %d cancellations", task.get_name(), attempts)
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()


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
            await cancel_and_wait(self._task)
            self._task = None
