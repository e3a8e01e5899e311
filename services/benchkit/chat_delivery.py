"""Chat delivery latency and reconnect-and-resume (the `chat` scenario's measurements).

* `chat`: N sender -> receiver pairs, one direct conversation each. Every
  receiver holds a stream (native gRPC `StreamEvents` on one chat instance, or
  Server-Sent Events through the edge); senders send at a fixed total open-loop
  rate (`loadgen.arrivals`, round-robin over the pairs), through the edge's REST
  `POST /v1/conversations/{id}/messages` or native gRPC `SendMessage` on another
  instance. A message's delivery latency runs from its *intended* send time to
  the moment its receiver reads it off the stream (no coordinated omission: a
  slow send still charges every message scheduled behind it), into an
  HdrHistogram. A message whose send failed counts under its status; a message
  sent but never seen within the drain window counts as `undelivered`; one seen
  twice as `duplicate`.
* reconnect-and-resume: a receiver closes its stream, its sender sends M
  messages, the receiver reopens with `since=<last cursor>`; timed from the
  reopen call to the M-th message, and the messages received are counted
  (exactly M expected: none lost, none repeated).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from hdrh.histogram import HdrHistogram

from .chat_clients import Pair, Receiver, Sender, StreamHandle, clock
from .loadgen import HIGHEST_US, LOWEST_US, Step, arrivals, new_histogram


def _micros(seconds: float) -> int:
    return min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US)


@dataclass
class ChatRun:
    """What one delivery-latency step measured."""

    step: Step
    delivered: int
    undelivered: int
    duplicates: int
    send_failures: dict[str, int]
    pairs: int
    send_ack: HdrHistogram


async def create_conversations(sender: Sender, pairs: Sequence[Pair], parallel: int = 16) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(pair: Pair) -> None:
        async with gate:
            pair.conversation_id = await sender.direct(pair)

    await asyncio.gather(*(one(p) for p in pairs if not p.conversation_id))


async def run_delivery(
    sender: Sender,
    receiver: Receiver,
    pairs: Sequence[Pair],
    rate: float,
    duration: float,
    *,
    arrival: str = "fixed",
    drain: float = 10.0,
    seed: int = 1,
    open_parallel: int = 20,
    progress: Callable[[float, int, int, int, bool], None] | None = None,
) -> ChatRun:
    """One open-loop step: receivers' streams open first, then sends at `rate`."""
    await create_conversations(sender, pairs)
    tag = uuid.uuid4().hex[:8]
    intended_at: dict[str, float] = {}
    seen: set[str] = set()
    duplicates = [0]
    delivery, ack, lag = new_histogram(), new_histogram(), new_histogram()
    seconds = max(math.ceil(duration), 1)
    per_second = [new_histogram() for _ in range(seconds)]
    per_second_ok = [0] * seconds
    per_second_err = [0] * seconds
    statuses: Counter[str] = Counter()
    all_seen = asyncio.Event()
    expected = [0]
    t0_box = [0.0]
    last_done = [0.0]

    def on_message(text: str, cursor: str) -> None:
        now = clock()
        if text in seen:
            duplicates[0] += 1
            return
        intended = intended_at.get(text)
        if intended is None:  # not this run's (or read before the send was scheduled)
            return
        seen.add(text)
        micros = _micros(now - intended)
        delivery.record_value(micros)
        second = min(max(int(intended - t0_box[0]), 0), seconds - 1)
        per_second[second].record_value(micros)
        per_second_ok[second] += 1
        last_done[0] = max(last_done[0], now - t0_box[0])
        if len(seen) >= expected[0] and sends_done.is_set():
            all_seen.set()

    sends_done = asyncio.Event()
    # Opened a few at a time: a burst of hundreds of simultaneous opens is a
    # reconnect storm (measured separately by chat-streams), not this figure.
    gate = asyncio.Semaphore(open_parallel)

    async def open_one(pair: Pair) -> StreamHandle:
        async with gate:
            return await receiver.open(pair.receiver_token, "", on_message)

    handles = await asyncio.gather(*(open_one(p) for p in pairs))
    schedule = list(arrivals(rate, duration, arrival, random.Random(seed)))
    cpu_started = time.process_time()
    t0 = t0_box[0] = clock()
    tasks: set[asyncio.Task[None]] = set()
    failed: Counter[str] = Counter()

    async def one(i: int, intended: float) -> None:
        pair = pairs[i % len(pairs)]
        text = f"bench {tag} {i}"
        intended_at[text] = intended
        try:
            status = await sender.send(pair, text, f"{tag}-{i}")
        except TimeoutError:
            status = "timeout"
        except (aiohttp.ClientError, OSError) as exc:
            status = type(exc).__name__
        ack.record_value(_micros(clock() - intended))
        if status in ("200", "OK"):
            expected[0] += 1
        else:
            failed[status] += 1
            per_second_err[min(int(intended - t0), seconds - 1)] += 1
            intended_at.pop(text, None)

    next_report = 0.0
    i = 0
    while i < len(schedule):
        now = clock()
        while i < len(schedule) and t0 + schedule[i] <= now:
            intended = t0 + schedule[i]
            lag.record_value(_micros(now - intended))
            task = asyncio.create_task(one(i, intended))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if progress is not None and now - t0 >= next_report:
            progress(now - t0, i, len(seen), sum(failed.values()), False)
            next_report += 0.25
        if i < len(schedule):
            await asyncio.sleep(max(0.0, t0 + schedule[i] - clock()))
    if tasks:
        await asyncio.wait(tasks)
    sends_done.set()
    if len(seen) >= expected[0]:
        all_seen.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_seen.wait(), drain)
    if progress is not None:
        progress(max(clock() - t0, duration), i, len(seen), sum(failed.values()), True)
    wall = clock() - t0
    cpu = time.process_time() - cpu_started
    await asyncio.gather(*(h.close() for h in handles))
    undelivered = expected[0] - len(seen)
    statuses["200 delivered"] = len(seen)
    statuses.update({f"send {k}": v for k, v in failed.items()})
    if undelivered:
        statuses["undelivered"] = undelivered
    if duplicates[0]:
        statuses["duplicate"] = duplicates[0]
    step = Step(
        offered_rate=rate,
        duration=duration,
        arrival=arrival,
        workers=1,
        sent=len(schedule),
        ok=len(seen),
        statuses=dict(statuses),
        latency=delivery,
        send_lag=lag,
        kinds={"delivery": delivery, "send_ack": ack},
        kind_counts={"delivery": len(seen), "send_ack": expected[0]},
        timeline=[(per_second_ok[s], per_second_err[s], per_second[s]) for s in range(seconds)],
        cpu_seconds=cpu,
        wall_seconds=wall,
        last_completion=last_done[0],
    )
    return ChatRun(
        step, len(seen), undelivered, duplicates[0], dict(failed), len(pairs), send_ack=ack
    )


def delivered_ok(statuses: dict[str, int]) -> bool:
    return set(statuses) <= {"200 delivered"}


# ---- reconnect-and-resume ----------------------------------------------------------


@dataclass
class Resume:
    messages: int
    received: int
    extra: int
    seconds: float
    hello_seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "received": self.received,
            "extra": self.extra,
            "resume_ms": round(self.seconds * 1000, 2),
            "hello_ms": round(self.hello_seconds * 1000, 2),
        }


async def measure_resume(
    sender: Sender,
    receiver: Receiver,
    pair: Pair,
    messages: int,
    *,
    wait: float = 30.0,
    settle: float = 0.3,
) -> Resume:
    """Stream, read one message, close; send `messages`; reopen from the last cursor."""
    await create_conversations(sender, [pair])
    tag = uuid.uuid4().hex[:8]
    first_seen = asyncio.Event()

    def before(text: str, cursor: str) -> None:
        if text == f"resume {tag} first":
            first_seen.set()

    handle = await receiver.open(pair.receiver_token, "", before)
    status = await sender.send(pair, f"resume {tag} first", f"{tag}-first")
    if status not in ("200", "OK"):
        raise RuntimeError(f"send failed: {status}")
    await asyncio.wait_for(first_seen.wait(), wait)
    cursor = handle.last_cursor
    await handle.close()
    wanted = {f"resume {tag} {i}" for i in range(messages)}
    for i in range(messages):
        status = await sender.send(pair, f"resume {tag} {i}", f"{tag}-{i}")
        if status not in ("200", "OK"):
            raise RuntimeError(f"send {i} failed: {status}")
    got: list[str] = []
    done = asyncio.Event()
    arrived = [0.0]

    def after(text: str, cursor: str) -> None:
        got.append(text)
        if wanted <= set(got) and not done.is_set():
            arrived[0] = clock()
            done.set()

    started = clock()
    resumed = await receiver.open(pair.receiver_token, cursor, after)
    hello = clock() - started
    try:
        await asyncio.wait_for(done.wait(), wait)
        await asyncio.sleep(settle)  # a repeat or a stray would show up now
    finally:
        await resumed.close()
    received = len([t for t in got if t in wanted])
    return Resume(messages, received, len(got) - received, arrived[0] - started, hello)
