"""Open streams per instance (the `chat-streams` scenario's measurement).

* `chat-streams`: K idle native gRPC `StreamEvents` streams (spread over several
  channels, i.e. HTTP/2 connections) to one chat instance, K stepped up; after
  each step the instance's RSS (psutil, by pid) and RSS per stream over the
  baseline. Stops at the first step where a stream failed and reports that
  error.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from socialmesh.chat.v1 import chat_pb2, chat_pb2_grpc

from .chat_clients import CHANNEL_OPTIONS, EOF, bearer, clock, describe_error


def raise_fd_limit() -> tuple[int, int, int]:
    """Raises this process's soft RLIMIT_NOFILE to its hard limit: (before, after, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard


def process_rss(pid: int) -> int:
    """Resident set size in bytes; 0 if it cannot be read (e.g. out of file descriptors)."""
    import psutil

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.Error, OSError):
        return 0


def process_cpu(pid: int) -> float | None:
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, OSError):
        return None
    return float(times.user + times.system)


def process_fds(pid: int) -> int | None:
    import psutil

    try:
        return int(psutil.Process(pid).num_fds())
    except (psutil.Error, OSError, AttributeError):
        return None


def process_nofile(pid: int) -> tuple[int, int] | None:
    import psutil

    try:
        soft, hard = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
    except (psutil.Error, OSError, AttributeError):
        return None
    return int(soft), int(hard)


@dataclass
class StreamStep:
    target: int
    held: int
    failed: int
    open_seconds: float
    rss_bytes: int
    rss_per_stream_bytes: float | None
    client_rss_bytes: int
    server_fds: int | None
    first_error: str | None = None
    #: seconds the step's streams were held idle after opening (one heartbeat or more)
    held_seconds: float = 0.0
    #: the chat instance's CPU use while they were held, share of one core
    server_cpu_share: float | None = None
    error_kinds: dict[str, int] = field(default_factory=dict)
    #: of `failed`: opens refused, and streams that ended after opening
    open_failures: int = 0
    died: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "held": self.held,
            "failed": self.failed,
            "open_seconds": round(self.open_seconds, 2),
            "server_rss_mib": round(self.rss_bytes / 2**20, 1),
            "rss_per_stream_kib": (
                None
                if self.rss_per_stream_bytes is None
                else round(self.rss_per_stream_bytes / 1024, 2)
            ),
            "client_rss_mib": round(self.client_rss_bytes / 2**20, 1),
            "server_fds": self.server_fds,
            "first_error": self.first_error,
            "held_seconds": round(self.held_seconds, 1),
            "server_cpu_share_while_held": self.server_cpu_share,
            "error_kinds": self.error_kinds,
            "open_failures": self.open_failures,
            "died_after_open": self.died,
        }


async def hold_streams(
    address: str,
    tokens: Sequence[str],
    pid: int,
    steps: Sequence[int],
    *,
    channels: int = 16,
    batch: int = 250,
    settle: float = 2.0,
    hold: float = 0.0,
    hello_timeout: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> tuple[int, list[StreamStep]]:
    """Opens idle StreamEvents streams up to each of `steps` (cumulative); returns
    (baseline RSS, one row per step). Stops after the first step with a failure."""
    gc.collect()
    await asyncio.sleep(0.5)
    baseline = process_rss(pid)
    pool = [
        grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) for _ in range(max(channels, 1))
    ]
    calls: list[Any] = []
    watchers: list[asyncio.Task[None]] = []
    dead: list[str] = []
    rows: list[StreamStep] = []

    async def watch(call: Any) -> None:
        try:
            while (event := await call.read()) is not EOF:
                del event
            dead.append("EOF: the server ended the stream")
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                dead.append(describe_error(exc))

    async def open_one(n: int) -> str | None:
        call = chat_pb2_grpc.ChatServiceStub(pool[n % len(pool)]).StreamEvents(
            chat_pb2.StreamEventsRequest(), metadata=bearer(tokens[n % len(tokens)])
        )
        try:
            hello = await asyncio.wait_for(call.read(), hello_timeout)
        except TimeoutError:
            call.cancel()
            return f"no HELLO within {hello_timeout:g}s"
        except grpc.aio.AioRpcError as exc:
            return describe_error(exc)
        except Exception as exc:  # grpc's ExecuteBatchError / UsageError and the like
            call.cancel()
            return describe_error(exc)
        if hello is EOF:
            return "EOF before HELLO"
        calls.append(call)
        watchers.append(asyncio.create_task(watch(call)))
        return None

    try:
        for target in steps:
            started = clock()
            errors: list[str] = []
            while len(calls) < target and not errors:
                n0 = len(calls)
                results = await asyncio.gather(
                    *(open_one(n) for n in range(n0, min(target, n0 + batch)))
                )
                errors.extend(r for r in results if r is not None)
                if progress is not None:
                    progress(f"streams: {len(calls):,}/{target:,} open")
            opened = clock() - started
            cpu_before, held_from = process_cpu(pid), clock()
            await asyncio.sleep(settle + hold)
            held_for = clock() - held_from
            cpu_after = process_cpu(pid)
            cpu_share = (
                round((cpu_after - cpu_before) / held_for, 3)
                if cpu_before is not None and cpu_after is not None
                else None
            )
            gc.collect()
            rss = process_rss(pid)
            failed = len(errors) + len(dead)
            held = len(calls) - len(dead)
            row = StreamStep(
                target=target,
                held=held,
                failed=failed,
                open_seconds=opened,
                rss_bytes=rss,
                rss_per_stream_bytes=(rss - baseline) / held if held else None,
                client_rss_bytes=process_rss(os.getpid()),
                server_fds=process_fds(pid),
                first_error=next(iter(errors or dead), None),
                held_seconds=held_for,
                server_cpu_share=cpu_share,
                error_kinds=dict(Counter(e.split(" (trace id")[0] for e in errors + dead)),
                open_failures=len(errors),
                died=len(dead),
            )
            rows.append(row)
            if progress is not None:
                progress(
                    f"streams: {held:,} held, server RSS {rss / 2**20:.0f} MiB"
                    + (f", first error {row.first_error}" if row.first_error else "")
                )
            if failed:
                break
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await asyncio.gather(*(c.close(None) for c in pool), return_exceptions=True)
    return baseline, rows


def describe_rss(baseline: int, rows: Sequence[StreamStep]) -> str:
    parts = [f"baseline {baseline / 2**20:.0f} MiB"]
    for row in rows:
        per = row.rss_per_stream_bytes
        parts.append(
            f"{row.held:,}/{row.target:,} held -> {row.rss_bytes / 2**20:.0f} MiB"
            + (f" ({per / 1024:.1f} KiB/stream)" if per is not None else "")
            + (f" [first error: {row.first_error}]" if row.first_error else "")
        )
    return "; ".join(parts)
