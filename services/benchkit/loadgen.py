"""Open-loop load at a fixed or Poisson arrival rate, measured from the intended send time.

wrk2 semantics without wrk2 (Debian ships only wrk, whose Lua cannot pace
requests): request i has an *intended* send time fixed in advance by the arrival
schedule (t0 + i/rate, or exponential gaps for Poisson). The scheduler fires
every request whose time has come, whether or not earlier ones have answered,
and a request's latency is `completion - intended`. If the system stalls, the
requests that should have gone out during the stall are charged the time they
spent waiting (in the schedule, or for a free connection), which a closed loop
that only sends when a connection is idle would never see (coordinated
omission). Latencies go into HdrHistograms (1 µs .. 60 s, 3 significant digits).

The generator runs on asyncio + uvloop with aiohttp (a maintained HTTP/1.1 client
several times cheaper per request than httpx), in one process or several
(`workers`): each worker takes rate/workers of the schedule, and the results are
merged exactly (HdrHistograms add). Each worker reports its own CPU time and how
late it fired requests (send lag): on a 2-core machine the generator competes with
the system under test, and a high send lag means the generator, not the target,
was the limit.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
#: Status recorded when a request raised instead of answering.
TIMEOUT = -1
TRANSPORT_ERROR = 0


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT)


def decode_histogram(encoded: bytes) -> HdrHistogram:
    histogram = new_histogram()
    if encoded:
        histogram.decode_and_add(encoded)
    return histogram


def status_label(status: int) -> str:
    if status == TIMEOUT:
        return "timeout"
    if status == TRANSPORT_ERROR:
        return "transport_error"
    return str(status)


class Workload(Protocol):
    """What the generator drives: one operation (one or more HTTP requests) per arrival."""

    name: str
    base_url: str

    async def op(self, session: aiohttp.ClientSession, rng: random.Random) -> tuple[str, int]:
        """Performs one operation; returns (kind, HTTP status of the operation)."""
        ...


def arrivals(rate: float, duration: float, arrival: str, rng: random.Random) -> Iterator[float]:
    """Intended send offsets (seconds from t0) in [0, duration)."""
    if rate <= 0:
        return
    if arrival == "fixed":
        for i in range(math.ceil(rate * duration)):
            offset = i / rate
            if offset >= duration:
                return
            yield offset
    elif arrival == "poisson":
        offset = rng.expovariate(rate)
        while offset < duration:
            yield offset
            offset += rng.expovariate(rate)
    else:
        raise ValueError(f"unknown arrival process {arrival!r}")


@dataclass
class WorkerResult:
    """One worker's share of a step; plain data so it crosses process boundaries."""

    sent: int = 0
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latency: bytes = b""  # encoded HdrHistogram of successful operations (µs)
    send_lag: bytes = b""  # how late the scheduler fired each request (µs)
    kinds: dict[str, bytes] = field(default_factory=dict)
    kind_counts: dict[str, int] = field(default_factory=dict)
    #: per second of the schedule: (ok, errors, encoded histogram)
    timeline: list[tuple[int, int, bytes]] = field(default_factory=list)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    last_completion: float = 0.0  # seconds after t0


async def drive(
    workload: Workload,
    rate: float,
    duration: float,
    *,
    connections: int = 64,
    arrival: str = "fixed",
    seed: int = 1,
    start_at: float | None = None,
    request_timeout: float = 10.0,
    progress: Callable[[float, int, int, int, bool], None] | None = None,
) -> WorkerResult:
    """Runs one open-loop step in this event loop (see the module docstring)."""
    # perf_counter, not loop.time(): uvloop's clock has 1 ms resolution and is cached
    # per loop iteration, which would round every latency.
    clock = time.perf_counter
    rng = random.Random(seed)
    schedule = list(arrivals(rate, duration, arrival, random.Random(seed + 1_000_003)))
    latency, lag = new_histogram(), new_histogram()
    kinds: dict[str, HdrHistogram] = {}
    kind_counts: Counter[str] = Counter()
    seconds = max(math.ceil(duration), 1)
    per_second = [new_histogram() for _ in range(seconds)]
    per_second_ok = [0] * seconds
    per_second_err = [0] * seconds
    statuses: Counter[str] = Counter()
    counters = {"ok": 0, "err": 0}
    last_done = [0.0]
    connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    async with aiohttp.ClientSession(
        base_url=workload.base_url, connector=connector, timeout=timeout
    ) as session:
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_started = time.process_time()
        t0 = clock()

        async def one(intended: float) -> None:
            try:
                kind, status = await workload.op(session, rng)
            except TimeoutError:
                kind, status = "timeout", TIMEOUT
            except (aiohttp.ClientError, OSError):
                kind, status = "error", TRANSPORT_ERROR
            done = clock()
            last_done[0] = max(last_done[0], done - t0)
            second = min(int(intended - t0), seconds - 1)
            statuses[status_label(status)] += 1
            if 200 <= status < 300:
                micros = max(int((done - intended) * 1e6), LOWEST_US)
                latency.record_value(min(micros, HIGHEST_US))
                per_second[second].record_value(min(micros, HIGHEST_US))
                per_second_ok[second] += 1
                kind_counts[kind] += 1
                kinds.setdefault(kind, new_histogram()).record_value(min(micros, HIGHEST_US))
                counters["ok"] += 1
            else:
                per_second_err[second] += 1
                counters["err"] += 1

        tasks: set[asyncio.Task[None]] = set()
        next_report = 0.0
        i = 0
        while i < len(schedule):
            now = clock()
            while i < len(schedule) and t0 + schedule[i] <= now:
                intended = t0 + schedule[i]
                lag.record_value(min(max(int((now - intended) * 1e6), LOWEST_US), HIGHEST_US))
                task = asyncio.create_task(one(intended))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if progress is not None and now - t0 >= next_report:
                progress(now - t0, i, counters["ok"], counters["err"], False)
                next_report += 0.25
            if i < len(schedule):
                await asyncio.sleep(max(0.0, t0 + schedule[i] - clock()))
        if tasks:
            # Every request already carries its own timeout; this is a backstop.
            _, pending = await asyncio.wait(tasks, timeout=request_timeout + 1)
            for task in pending:
                task.cancel()
            for _ in pending:
                statuses[status_label(TIMEOUT)] += 1
        if progress is not None:
            progress(max(clock() - t0, duration), i, counters["ok"], counters["err"], True)
        cpu = time.process_time() - cpu_started
        wall = clock() - t0
    return WorkerResult(
        sent=len(schedule),
        ok=counters["ok"],
        statuses=dict(statuses),
        latency=latency.encode(),
        send_lag=lag.encode(),
        kinds={k: h.encode() for k, h in kinds.items()},
        kind_counts=dict(kind_counts),
        timeline=[
            (per_second_ok[s], per_second_err[s], per_second[s].encode()) for s in range(seconds)
        ],
        cpu_seconds=cpu,
        wall_seconds=wall,
        last_completion=last_done[0],
    )


class ProgressBar:
    """One line on stderr, redrawn in place, for one step."""

    def __init__(self, label: str, duration: float, scale: int = 1) -> None:
        self.label, self.duration, self.scale = label, duration, scale

    def __call__(self, elapsed: float, sent: int, ok: int, errors: int, done: bool) -> None:
        filled = int(30 * min(elapsed / self.duration, 1.0))
        s = self.scale
        sys.stderr.write(
            f"\r{self.label:<28} [{'#' * filled}{'.' * (30 - filled)}] "
            f"{min(elapsed, self.duration):4.1f}/{self.duration:.0f}s "
            f"sent {sent * s:>7,} ok {ok * s:>7,} err {errors * s:>5,}"
        )
        if done:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _run_worker(
    workload: Workload,
    rate: float,
    duration: float,
    connections: int,
    arrival: str,
    seed: int,
    start_at: float,
    request_timeout: float,
    label: str,
    scale: int,
) -> WorkerResult:
    """Entry point of a worker process (and of the in-process path)."""
    import uvloop

    bar = ProgressBar(label, duration, scale) if label else None
    return uvloop.run(
        drive(
            workload,
            rate,
            duration,
            connections=connections,
            arrival=arrival,
            seed=seed,
            start_at=start_at,
            request_timeout=request_timeout,
            progress=bar,
        )
    )


@dataclass
class Step:
    """One measured rate: every worker's results merged."""

    offered_rate: float
    duration: float
    arrival: str
    workers: int
    sent: int
    ok: int
    statuses: dict[str, int]
    latency: HdrHistogram
    send_lag: HdrHistogram
    kinds: dict[str, HdrHistogram]
    kind_counts: dict[str, int]
    timeline: list[tuple[int, int, HdrHistogram]]
    cpu_seconds: float
    wall_seconds: float
    last_completion: float

    @property
    def errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if not code.startswith("2"))

    @property
    def error_rate(self) -> float:
        return self.errors / self.sent if self.sent else 0.0

    @property
    def throughput(self) -> float:
        """Successful operations per second over the schedule (or longer, if it drained late)."""
        return self.ok / max(self.duration, self.last_completion, 1e-9)

    def percentile_ms(self, pct: float) -> float:
        return float(self.latency.get_value_at_percentile(pct)) / 1000.0

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99.0) if self.ok else math.inf

    def summary(self, cores: int) -> dict[str, Any]:
        latency = {
            f"p{pct:g}": round(self.percentile_ms(pct), 3) if self.ok else None
            for pct in PERCENTILES
        }
        latency["max"] = round(self.latency.get_max_value() / 1000.0, 3) if self.ok else None
        latency["mean"] = round(self.latency.get_mean_value() / 1000.0, 3) if self.ok else None
        return {
            "offered_rate": self.offered_rate,
            "duration_s": self.duration,
            "arrival": self.arrival,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 5),
            "statuses": dict(sorted(self.statuses.items())),
            "throughput_rps": round(self.throughput, 1),
            "latency_ms": latency,
            "by_kind": {
                kind: {
                    "ok": self.kind_counts.get(kind, 0),
                    "p50_ms": round(h.get_value_at_percentile(50.0) / 1000.0, 3),
                    "p99_ms": round(h.get_value_at_percentile(99.0) / 1000.0, 3),
                }
                for kind, h in sorted(self.kinds.items())
            },
            "timeline": [
                {
                    "second": s,
                    "ok": ok,
                    "errors": err,
                    "p50_ms": round(h.get_value_at_percentile(50.0) / 1000.0, 3) if ok else None,
                    "p99_ms": round(h.get_value_at_percentile(99.0) / 1000.0, 3) if ok else None,
                    "max_ms": round(h.get_max_value() / 1000.0, 3) if ok else None,
                }
                for s, (ok, err, h) in enumerate(self.timeline)
            ],
            "generator": {
                "workers": self.workers,
                "cpu_seconds": round(self.cpu_seconds, 3),
                "cpu_share_of_one_core": round(self.cpu_seconds / max(self.wall_seconds, 1e-9), 3),
                "cpu_share_of_machine": round(
                    self.cpu_seconds / max(self.wall_seconds, 1e-9) / max(cores, 1), 3
                ),
                "send_lag_ms": {
                    "p99": round(self.send_lag.get_value_at_percentile(99.0) / 1000.0, 3),
                    "max": round(self.send_lag.get_max_value() / 1000.0, 3),
                },
            },
            "hdr_latency_us": self.latency.encode().decode() if self.ok else "",
        }


def merge(results: list[WorkerResult], offered_rate: float, duration: float, arrival: str) -> Step:
    latency, lag = new_histogram(), new_histogram()
    kinds: dict[str, HdrHistogram] = {}
    kind_counts: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    seconds = max((len(r.timeline) for r in results), default=0)
    ok_per_second, err_per_second = [0] * seconds, [0] * seconds
    per_second = [new_histogram() for _ in range(seconds)]
    for r in results:
        if r.ok:
            latency.decode_and_add(r.latency)
        if r.sent:
            lag.decode_and_add(r.send_lag)
        statuses.update(r.statuses)
        kind_counts.update(r.kind_counts)
        for kind, encoded in r.kinds.items():
            kinds.setdefault(kind, new_histogram()).decode_and_add(encoded)
        for s, (ok, err, encoded) in enumerate(r.timeline):
            ok_per_second[s] += ok
            err_per_second[s] += err
            if ok:
                per_second[s].decode_and_add(encoded)
    return Step(
        offered_rate=offered_rate,
        duration=duration,
        arrival=arrival,
        workers=len(results),
        sent=sum(r.sent for r in results),
        ok=sum(r.ok for r in results),
        statuses=dict(statuses),
        latency=latency,
        send_lag=lag,
        kinds=kinds,
        kind_counts=dict(kind_counts),
        timeline=list(zip(ok_per_second, err_per_second, per_second, strict=True)),
        cpu_seconds=sum(r.cpu_seconds for r in results),
        wall_seconds=max((r.wall_seconds for r in results), default=0.0),
        last_completion=max((r.last_completion for r in results), default=0.0),
    )


class Generator:
    """Runs steps in this process (workers=1) or in a pool of worker processes."""

    def __init__(
        self,
        *,
        workers: int = 1,
        connections: int = 64,
        arrival: str = "fixed",
        request_timeout: float = 10.0,
        show_progress: bool = True,
    ) -> None:
        self.workers = max(workers, 1)
        self.connections = connections
        self.arrival = arrival
        self.request_timeout = request_timeout
        self.show_progress = show_progress
        self._pool: ProcessPoolExecutor | None = None
        self._seed = 0

    @classmethod
    def from_args(cls, args: Any) -> Generator:
        """The generator `socialmesh bench`'s options describe."""
        return cls(
            workers=args.workers,
            connections=args.connections,
            arrival=args.arrival,
            request_timeout=args.timeout,
        )

    def __enter__(self) -> Generator:
        if self.workers > 1:
            import multiprocessing

            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def run(self, workload: Workload, rate: float, duration: float, label: str = "") -> Step:
        self._seed += 1
        per_worker_connections = max(self.connections // self.workers, 1)
        label = label or f"{workload.name} @ {rate:,.0f}/s"
        if self._pool is None:
            result = _run_worker(
                workload,
                rate,
                duration,
                per_worker_connections,
                self.arrival,
                self._seed,
                time.time(),
                self.request_timeout,
                label if self.show_progress else "",
                1,
            )
            return merge([result], rate, duration, self.arrival)
        start_at = time.time() + 1.0  # every worker has its session ready by then
        futures = [
            self._pool.submit(
                _run_worker,
                workload,
                rate / self.workers,
                duration,
                per_worker_connections,
                self.arrival,
                self._seed * 1000 + w,
                start_at,
                self.request_timeout,
                label if (self.show_progress and w == 0) else "",
                self.workers,
            )
            for w in range(self.workers)
        ]
        return merge([f.result() for f in futures], rate, duration, self.arrival)


@dataclass
class FindMax:
    """The highest offered rate that met the bound, and every step that led there."""

    bound_ms: float
    best: Step | None
    steps: list[Step]


def passes(step: Step, bound_ms: float, max_error_rate: float = 0.01) -> bool:
    """A rate is sustained if p99 (from intended send time) stays under the bound, at
    most 1 % of operations fail, and completions keep up with the schedule."""
    return (
        step.ok > 0
        and step.p99_ms <= bound_ms
        and step.error_rate <= max_error_rate
        and step.throughput >= 0.9 * step.offered_rate * (1 - step.error_rate)
    )


def find_max(
    measure: Callable[[float], Step],
    *,
    bound_ms: float = 50.0,
    start_rate: float = 100.0,
    factor: float = 2.0,
    refine: int = 2,
    max_rate: float = 50_000.0,
    min_rate: float = 1.0,
) -> FindMax:
    """Doubles the rate until a step fails (or halves it, down to `min_rate`, if the
    start rate already fails), then bisects between the last good and the first bad
    rate `refine` times."""
    steps: list[Step] = []
    good: Step | None = None
    bad_rate: float | None = None
    rate = start_rate
    while rate <= max_rate:
        step = measure(rate)
        steps.append(step)
        if passes(step, bound_ms):
            good = step
            rate *= factor
        else:
            bad_rate = rate
            break
    if good is None:
        # The start rate already failed: halve it until one passes (or min_rate).
        rate = start_rate / factor
        while rate >= min_rate:
            step = measure(rate)
            steps.append(step)
            if passes(step, bound_ms):
                good = step
                break
            bad_rate = rate
            rate /= factor
    if good is not None and bad_rate is not None:
        low, high = good.offered_rate, bad_rate
        for _ in range(refine):
            mid = round((low + high) / 2)
            if mid <= low or mid >= high:
                break
            step = measure(mid)
            steps.append(step)
            if passes(step, bound_ms):
                good, low = step, mid
            else:
                high = mid
    return FindMax(bound_ms, good, steps)
