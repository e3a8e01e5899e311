"""CPU per operation, per process, and RPCs per operation for the bench's operations.

`socialmesh bench` answers "how fast, at what latency"; this answers "where does
each operation's CPU go", which is what to compare before and after a read-path
change on a shared machine (throughput swings with the neighbours' load, CPU
per operation much less). It starts the stack `socialmesh bench` starts, seeds
socfb-Reed98 (10 posts per user), waits for the search back-fill, reads every
reader's home feed once (as the bench does), then drives each operation closed
loop (4 in flight) and reports, per process (services, Envoy, PostgreSQL,
Redis), the CPU it used per operation with its idle rate subtracted, and how
many RPCs each service handled per operation (from its Prometheus counters).

    .venv/bin/python scripts/cpu_per_op.py [--requests 1000] [--only home,user_timeline]

Compose includes the work its events cause (fan-out, consumers): it waits 3 s
after the last request before reading the counters.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from services.bench import stack_population
from services.benchkit import dataset
from services.devstack import Stack, free_stack_ports

Request = tuple[str, str, dict[str, str], str | None]
METRICS_OFFSET = 1000
HANDLED = re.compile(r'rpc_server_handled_total\{[^}]*method="([^"]+)"[^}]*\} ([0-9.e+]+)')


class MeteredStack(Stack):
    """The bench's stack with each service's Prometheus endpoint on its port + 1000."""

    def _start_service(self, service: str) -> None:
        self.env["METRICS_PORT"] = str(self.port_of(service) + METRICS_OFFSET)
        try:
            super()._start_service(service)
        finally:
            self.env.pop("METRICS_PORT", None)

    def rpc_counts(self) -> dict[str, float]:
        counts: dict[str, float] = {}
        for service in self.services:
            url = f"http://127.0.0.1:{self.port_of(service) + METRICS_OFFSET}/metrics"
            try:
                text = urllib.request.urlopen(url, timeout=5).read().decode()
            except OSError:
                continue
            for method, value in HANDLED.findall(text):
                counts[method] = counts.get(method, 0.0) + float(value)
        return counts


def processes(stack: Stack) -> dict[str, psutil.Process]:
    found = {name: psutil.Process(p.pid) for name, p in stack.processes.items()}
    data_dir = str(stack.data_dir)
    for proc in psutil.process_iter(["name", "cmdline"]):
        command = " ".join(proc.info["cmdline"] or [])
        if data_dir in command and (proc.info["name"] or "").startswith("postgres"):
            if "-D" in command:
                found["postgres"] = proc
    redis = getattr(stack, "_redis", None)
    if redis is not None and getattr(redis, "pid", None):
        found["redis"] = psutil.Process(redis.pid)
    return found


def cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


async def drive(
    base: str, request: Callable[[], Request], n: int, in_flight: int = 4
) -> list[float]:
    latencies: list[float] = []
    remaining = iter(range(n))
    async with aiohttp.ClientSession(base) as session:

        async def worker() -> None:
            for _ in remaining:
                method, path, headers, body = request()
                started = time.perf_counter()
                async with session.request(method, path, headers=headers, data=body) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{method} {path}: HTTP {r.status}")
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(in_flight)))
    return sorted(latencies)


async def backfilled(database_url: str, within: float = 300) -> None:
    """Waits for the search back-fill (it runs once after seeding and would skew CPU)."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            done = [
                await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{schema}".search_backfill)')
                for schema in ("post", "user")
            ]
            if all(done):
                return
            await asyncio.sleep(2)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--only", default="", help="comma-separated operation names")
    args = parser.parse_args()
    edge_port, admin_port, base_port = free_stack_ports()
    scratch = Path(tempfile.mkdtemp(prefix="cpu-per-op-"))
    stack = MeteredStack(
        data_dir=scratch / "data",
        log_dir=scratch / "logs",
        edge_port=edge_port,
        admin_port=admin_port,
        base_port=base_port,
        edge_rate_limit=1_000_000,
        edge_rate_limit_per_client=1_000_000,
    )
    (scratch / "logs").mkdir(parents=True)
    stack.start()
    try:
        people = stack_population(stack, dataset.reed98(), 10)
        asyncio.run(backfilled(stack.env["DATABASE_URL"]))
        rng = random.Random(7)
        zipf = dataset.Zipf(people.user_ids, s=1.0)
        auth = [{"Authorization": f"Bearer {t}"} for t in people.tokens]
        home = "/v1/feed?kind=FEED_KIND_FOLLOWING&pageSize=10"
        readers = iter(auth)
        asyncio.run(drive(stack.edge_url, lambda: ("GET", home, next(readers), None), len(auth)))
        posted = iter(range(10**9))
        operations: dict[str, Callable[[], Request]] = {
            "ceiling": lambda: ("GET", "/v1/auth:caller", rng.choice(auth), None),
            "profile": lambda: ("GET", f"/v1/users/{zipf.sample(rng)}", {}, None),
            "home": lambda: ("GET", home, rng.choice(auth), None),
            "user_timeline": lambda: (
                "GET",
                f"/v1/users/{zipf.sample(rng)}/posts?pageSize=10",
                rng.choice(auth),
                None,
            ),
            "compose": lambda: (
                "POST",
                "/v1/posts",
                {**rng.choice(auth), "Content-Type": "application/json"},
                f'{{"text": "cpu per op {next(posted)} #bench"}}',
            ),
        }
        only = {o for o in args.only.split(",") if o}
        procs = processes(stack)
        idle_from, idle_started = {k: cpu_seconds(p) for k, p in procs.items()}, time.monotonic()
        time.sleep(5)
        idle_seconds = time.monotonic() - idle_started
        idle = {k: (cpu_seconds(p) - idle_from[k]) / idle_seconds for k, p in procs.items()}
        print("idle, % of a core: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in idle.items()))
        for name, request in operations.items():
            if only and name not in only:
                continue
            n = args.requests // 4 if name == "compose" else args.requests
            asyncio.run(drive(stack.edge_url, request, 40))  # warm this path
            rpcs_before, started = stack.rpc_counts(), time.monotonic()
            before = {k: cpu_seconds(p) for k, p in procs.items()}
            latencies = asyncio.run(drive(stack.edge_url, request, n))
            took = time.monotonic() - started
            if name == "compose":
                time.sleep(3)  # the consumers' share
            elapsed = time.monotonic() - started
            per_op: dict[str, Any] = {
                k: max(cpu_seconds(p) - before[k] - idle[k] * elapsed, 0.0) * 1000 / n
                for k, p in procs.items()
            }
            rpcs = stack.rpc_counts()
            calls = {m: (v - rpcs_before.get(m, 0.0)) / n for m, v in rpcs.items()}
            p50 = statistics.median(latencies)
            print(
                f"{name}: {n} requests at {n / took:.0f}/s, p50 {p50:.1f} ms,"
                f" CPU {sum(per_op.values()):.2f} ms/op ("
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(per_op.items()) if v >= 0.01)
                + ")\n  RPCs/op: "
                + ", ".join(f"{m.split('/')[-1]} {v:.2f}" for m, v in sorted(calls.items()) if v)
            )
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
