"""Chat workloads: delivery latency, open streams per instance, reconnect-and-resume.

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
import json
import math
import os
import random
import resource
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from hdrh.histogram import HdrHistogram
from socialmesh.chat.v1 import chat_pb2, chat_pb2_grpc

from .loadgen import HIGHEST_US, LOWEST_US, Step, arrivals, new_histogram

DIRECT = chat_pb2.CONVERSATION_TYPE_DIRECT
HELLO = chat_pb2.STREAM_CONTROL_KIND_HELLO
#: The chat service allows 120 sends per user per 60 s (`chat-send` rate limit).
SEND_LIMIT_PER_MINUTE = 120
#: Client channel options for streams. A local subchannel pool gives each channel
#: its own TCP connection (HTTP/2 session): by default grpc-core shares one
#: subchannel between all channels with the same target and arguments, so "16
#: channels" would still be one connection.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1)]

#: What `call.read()` returns at the end of a stream (missing from grpc's type stubs).
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]

#: Times an open answered UNAVAILABLE is retried (with backoff) before giving up.
RETRIES = 5

Clock = Callable[[], float]
clock: Clock = time.perf_counter


def _micros(seconds: float) -> int:
    return min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@dataclass
class Pair:
    """One sender and one receiver sharing a direct conversation."""

    sender_token: str
    receiver_token: str
    receiver_id: int
    conversation_id: int = 0


# ---- transports ------------------------------------------------------------------


class Sender:
    """Creates conversations and sends messages; returns a status label."""

    async def direct(self, pair: Pair) -> int:
        raise NotImplementedError

    async def send(self, pair: Pair, text: str, request_id: str) -> str:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class EdgeSender(Sender):
    """REST through the edge (Envoy): the path a browser's send takes."""

    def __init__(self, edge: str, connections: int = 64, timeout: float = 10.0) -> None:
        self.edge = edge
        self._session: aiohttp.ClientSession | None = None
        self._connections, self._timeout = connections, timeout

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self.edge,
                connector=aiohttp.TCPConnector(limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            )
        return self._session

    async def direct(self, pair: Pair) -> int:
        async with self.session.post(
            "/v1/conversations",
            json={"type": "CONVERSATION_TYPE_DIRECT", "memberIds": [str(pair.receiver_id)]},
            headers={"Authorization": f"Bearer {pair.sender_token}"},
        ) as r:
            body = await r.text()
            if r.status != 200:
                raise RuntimeError(f"POST /v1/conversations: HTTP {r.status} {body[:200]}")
            return int(json.loads(body)["conversationId"])

    async def send(self, pair: Pair, text: str, request_id: str) -> str:
        async with self.session.post(
            f"/v1/conversations/{pair.conversation_id}/messages",
            params={"requestId": request_id},
            json={"text": text},
            headers={"Authorization": f"Bearer {pair.sender_token}"},
        ) as r:
            await r.read()
            return str(r.status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class GrpcSender(Sender):
    """Native gRPC `SendMessage` on one chat instance."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = chat_pb2_grpc.ChatServiceStub(self.channel)
        self.timeout = timeout

    async def direct(self, pair: Pair) -> int:
        convo = await self.stub.CreateConversation(
            chat_pb2.CreateConversationRequest(
                conversation=chat_pb2.Conversation(type=DIRECT, member_ids=[pair.receiver_id])
            ),
            metadata=bearer(pair.sender_token),
            timeout=self.timeout,
        )
        return int(convo.conversation_id)

    async def send(self, pair: Pair, text: str, request_id: str) -> str:
        try:
            await self.stub.SendMessage(
                chat_pb2.SendMessageRequest(
                    conversation_id=pair.conversation_id,
                    message=chat_pb2.Message(text=text),
                    request_id=request_id,
                ),
                metadata=bearer(pair.sender_token),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        return "200"

    async def close(self) -> None:
        await self.channel.close(None)


#: Called for each message a stream reads: (text, cursor).
OnMessage = Callable[[str, str], None]


class Receiver:
    """Opens one user's event stream; `open` returns once the HELLO arrived."""

    retries: Counter[str]

    async def open(self, token: str, since: str, on_message: OnMessage) -> StreamHandle:
        raise NotImplementedError

    async def close(self) -> None:
        return None


@dataclass
class StreamHandle:
    task: asyncio.Task[str]
    hello_cursor: str
    cursor: list[str] = field(default_factory=list)

    @property
    def last_cursor(self) -> str:
        return self.cursor[-1] if self.cursor else self.hello_cursor

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


class GrpcReceiver(Receiver):
    """Native gRPC `StreamEvents` on one chat instance, spread over `channels`."""

    def __init__(self, address: str, channels: int = 4) -> None:
        self.channels = [
            grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            for _ in range(max(channels, 1))
        ]
        self._next = 0
        #: UNAVAILABLE ("retry shortly") answers to an open, retried as a client would.
        self.retries: Counter[str] = Counter()

    async def open(self, token: str, since: str, on_message: OnMessage) -> StreamHandle:
        channel = self.channels[self._next % len(self.channels)]
        self._next += 1
        for attempt in range(RETRIES + 1):
            call = chat_pb2_grpc.ChatServiceStub(channel).StreamEvents(
                chat_pb2.StreamEventsRequest(since=since), metadata=bearer(token)
            )
            try:
                hello: Any = await call.read()
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == RETRIES:
                    raise
                self.retries[_describe(exc).split(" (trace id")[0]] += 1
                await asyncio.sleep(0.1 * 2**attempt * random.uniform(0.5, 1.5))
        if hello is EOF or not hello.HasField("control"):
            raise RuntimeError(f"stream opened without HELLO: {hello!r}")
        cursors: list[str] = []

        async def pump() -> str:
            try:
                while True:
                    event: Any = await call.read()
                    if event is EOF:
                        return "eof"
                    if event.cursor:
                        cursors[:] = [event.cursor]
                    if event.HasField("message"):
                        on_message(event.message.text, event.cursor)
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            finally:
                call.cancel()

        return StreamHandle(asyncio.create_task(pump()), hello.cursor, cursors)

    async def close(self) -> None:
        await asyncio.gather(*(c.close(None) for c in self.channels), return_exceptions=True)


class SseReceiver(Receiver):
    """`GET /v1/events:stream` through the edge, one `data: <json>` frame per event."""

    def __init__(self, edge: str) -> None:
        self.retries = Counter()
        self.session = aiohttp.ClientSession(
            base_url=edge,
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def open(self, token: str, since: str, on_message: OnMessage) -> StreamHandle:
        params = {"since": since} if since else {}
        response = await self.session.get(
            "/v1/events:stream", params=params, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status != 200:
            body = await response.text()
            response.release()
            raise RuntimeError(f"GET /v1/events:stream: HTTP {response.status} {body[:200]}")

        async def events() -> Any:
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    yield json.loads(line[len("data:") :])

        frames = events()
        hello = await anext(frames)
        if "control" not in hello:
            raise RuntimeError(f"stream opened without HELLO: {hello!r}")
        cursors: list[str] = []

        async def pump() -> str:
            try:
                async for event in frames:
                    if event.get("cursor"):
                        cursors[:] = [event["cursor"]]
                    if "message" in event:
                        on_message(event["message"].get("text", ""), event.get("cursor", ""))
                return "eof"
            except aiohttp.ClientError as exc:
                return type(exc).__name__
            finally:
                response.close()

        return StreamHandle(asyncio.create_task(pump()), hello.get("cursor", ""), cursors)

    async def close(self) -> None:
        await self.session.close()


# ---- the chat scenario -------------------------------------------------------------


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


# ---- open streams per instance -----------------------------------------------------


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


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
                dead.append(_describe(exc))

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
            return _describe(exc)
        except Exception as exc:  # grpc's ExecuteBatchError / UsageError and the like
            call.cancel()
            return _describe(exc)
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


# ---- a second chat instance for a stack -------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ChatInstance:
    """Another `socialmesh serve chat` process on the stack's PostgreSQL and Redis."""

    process: subprocess.Popen[bytes]
    address: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_second_chat(
    stack: Any, log_dir: Path | None = None, env_overrides: dict[str, str] | None = None
) -> ChatInstance:
    from services.devstack import REPO_ROOT, service_key_file, wait_for_health

    port = free_port()
    env = dict(stack.env)
    env["SOCIALMESH_GRPC_PORT"] = str(port)
    env["SERVICE_KEY_FILE"] = str(service_key_file(stack.service_keys_dir, "chat"))
    env.pop("JWT_PRIVATE_KEY_FILE", None)
    env.update(env_overrides or {})
    log = open(log_dir / "chat-2.log", "ab") if log_dir else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "chat"],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    instance = ChatInstance(process, f"127.0.0.1:{port}")

    def check() -> None:
        if process.poll() is not None:
            raise RuntimeError(f"the second chat instance exited ({process.returncode})")

    try:
        wait_for_health(instance.address, "chat", 90, check)
    except BaseException:
        instance.stop()
        raise
    return instance


# ---- the figures for `socialmesh bench` --------------------------------------------


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


def _pairs(user_ids: Sequence[int], tokens: Sequence[str], n: int, offset: int = 0) -> list[Pair]:
    """Pairs from consecutive users (sender 2k, receiver 2k+1), from `offset`."""
    out = []
    for k in range(n):
        s, r = (offset + 2 * k) % len(user_ids), (offset + 2 * k + 1) % len(user_ids)
        out.append(Pair(tokens[s], tokens[r], user_ids[r]))
    return out


def run_scenarios(
    names: Sequence[str], args: Any, stack: Any, edge: str, user_ids: list[int], tokens: list[str]
) -> tuple[list[Any], list[str]]:
    """`chat` and `chat-streams` for `socialmesh bench`: (ScenarioResults, notes).

    With a stack bench started, a second chat instance runs next to the stack's:
    receivers stream from it over native gRPC while senders go through the edge
    (Envoy -> the stack's instance), so every delivery crosses instances over
    Redis pub/sub. Against `--edge-url`, receivers use SSE through the same edge."""
    from .loadgen import ProgressBar
    from .report import ScenarioResult

    results: list[Any] = []
    notes: list[str] = []
    overrides = {}
    if stack is not None and args.chat_redis_pool:
        # redis-py reads pool settings from the URL's query string.
        url = stack.env["REDIS_URL"]
        sep = "&" if "?" in url else "?"
        overrides["REDIS_URL"] = f"{url}{sep}max_connections={args.chat_redis_pool}"
        notes.append(
            f"chat instance 2 runs with a Redis pool of {args.chat_redis_pool} connections "
            "(--chat-redis-pool; the service's default is redis-py's 100)"
        )
    second = start_second_chat(stack, getattr(stack, "log_dir", None), overrides) if stack else None
    try:
        if "chat" in names:
            n = min(args.pairs, len(user_ids) // 2)
            per_sender = args.rate * (args.duration + args.warmup) / max(n, 1)
            if per_sender > SEND_LIMIT_PER_MINUTE * 0.8:
                notes.append(
                    f"chat: {per_sender:.0f} sends per sender in this run, near the chat "
                    f"service's {SEND_LIMIT_PER_MINUTE}/min per-user send limit: use more "
                    "--pairs or a lower --rate"
                )

            async def chat_step() -> tuple[ChatRun, list[Resume]]:
                sender = EdgeSender(edge, args.connections, args.timeout)
                receiver: Receiver = (
                    GrpcReceiver(second.address, args.chat_channels)
                    if second
                    else SseReceiver(edge)
                )
                try:
                    pairs = _pairs(user_ids, tokens, n)
                    if args.warmup > 0:
                        await run_delivery(
                            sender, receiver, pairs, args.rate, args.warmup, drain=5.0, seed=7
                        )
                    run = await run_delivery(
                        sender,
                        receiver,
                        pairs,
                        args.rate,
                        args.duration,
                        arrival=args.arrival,
                        progress=ProgressBar(f"chat @ {args.rate:,.0f} msg/s", args.duration),
                    )
                    resumes = []
                    for rep in range(args.resume_repeats):
                        pair = _pairs(user_ids, tokens, 1, offset=2 * n + 2 * rep)[0]
                        resumes.append(
                            await measure_resume(sender, receiver, pair, args.resume_messages)
                        )
                    retried.update(receiver.retries)
                    return run, resumes
                finally:
                    await sender.close()
                    await receiver.close()

            retried: Counter[str] = Counter()
            run, resumes = asyncio.run(chat_step())
            if retried:
                notes.append(
                    f"chat: stream opens answered UNAVAILABLE and were retried (with backoff): "
                    f"{dict(retried)}"
                )
            where = (
                f"sends via the edge (REST -> Envoy -> chat instance 1), receivers' streams "
                f"native gRPC StreamEvents on chat instance 2 ({args.chat_channels} channels)"
                if second
                else "sends via the edge (REST), receivers' streams SSE through the same edge"
            )
            result = ScenarioResult(
                "chat",
                f"{n} sender->receiver DM pairs, {args.rate:g} msg/s total; latency = intended "
                f"send time -> event read by the receiver; {where}",
                run.step,
                [run.step],
            )
            result.extra["chat"] = {
                "pairs": n,
                "delivered": run.delivered,
                "undelivered": run.undelivered,
                "duplicates": run.duplicates,
                "send_failures": run.send_failures,
                "resume": [r.as_dict() for r in resumes],
                "stream_open_retries": dict(retried),
            }
            results.append(result)
            h = run.step.latency
            notes.append(
                f"chat: {run.delivered:,} delivered at {args.rate:g} msg/s over {n} pairs: "
                f"delivery p50 {h.get_value_at_percentile(50) / 1000:.1f} ms, p90 "
                f"{h.get_value_at_percentile(90) / 1000:.1f} ms, p99 "
                f"{h.get_value_at_percentile(99) / 1000:.1f} ms, max "
                f"{h.get_max_value() / 1000:.1f} ms; undelivered {run.undelivered}, "
                f"duplicates {run.duplicates}, send failures {run.send_failures or 'none'}"
            )
            for r in resumes:
                notes.append(
                    f"chat resume: reopened with since=<last cursor> after {r.messages} "
                    f"messages: all received in {r.seconds * 1000:.1f} ms (HELLO after "
                    f"{r.hello_seconds * 1000:.1f} ms), received {r.received}, extra {r.extra}"
                )
        if "chat-streams" in names:
            if second is None:
                notes.append("chat-streams: needs a stack bench starts (native gRPC + the pid)")
            else:
                steps = [int(s) for s in str(args.chat_streams).split(",") if s]
                before, after, hard = raise_fd_limit()
                nofile = process_nofile(second.pid)

                def say(line: str) -> None:
                    sys.stderr.write(f"\r{line:<90}")
                    sys.stderr.flush()

                baseline, rows = asyncio.run(
                    hold_streams(
                        second.address,
                        tokens,
                        second.pid,
                        steps,
                        channels=args.chat_channels,
                        batch=args.chat_open_batch,
                        hold=args.chat_hold,
                        progress=say,
                    )
                )
                sys.stderr.write("\n")
                held = max((r.held for r in rows if not r.failed), default=0)
                result = ScenarioResult(
                    "chat-streams",
                    f"idle native gRPC StreamEvents streams on one chat instance over "
                    f"{args.chat_channels} client channels, {len(set(tokens))} distinct users; "
                    f"steps {steps}",
                    None,
                    [],
                )
                result.extra["streams"] = {
                    "baseline_rss_mib": round(baseline / 2**20, 1),
                    "steps": [r.as_dict() for r in rows],
                    "largest_held_without_error": held,
                    "client_nofile": {"soft_before": before, "soft_after": after, "hard": hard},
                    "server_nofile": nofile,
                    "channels": args.chat_channels,
                }
                results.append(result)
                notes.append(
                    f"chat-streams: client RLIMIT_NOFILE soft {before} -> {after} (hard {hard}), "
                    f"server's {nofile}; " + describe_rss(baseline, rows)
                )
    finally:
        if second is not None:
            second.stop()
    return results, notes
