"""`socialmesh bench`: load the edge with wrk and print figures (never asserted in tests).

Starts its own stack unless --edge-url is given, creates a user, then drives
`GET /v1/users/{id}` through Envoy and reports requests/s, p50/p99 latency and
the profile cache's hit rate as the user service instances saw it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import httpx
import redis

from services.devstack import Stack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parse_wrk(output: str) -> dict[str, str]:
    figures: dict[str, str] = {}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        figures["requests_per_second"] = match.group(1)
    for pct in ("50", "99"):
        if match := re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.MULTILINE):
            figures[f"p{pct}"] = match.group(1)
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        figures["non_2xx"] = match.group(1)
    return figures


def _cache_stats(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    totals = {"l1_hits": 0, "l2_hits": 0, "misses": 0}
    for raw in client.hvals("cache-stats:user:v1"):
        for k, v in json.loads(raw).items():
            totals[k] = totals.get(k, 0) + int(v)
    return totals


def main(args: argparse.Namespace) -> int:
    wrk = shutil.which("wrk")
    if not wrk:
        print("wrk not found: `make bench` installs it (apt-get install wrk)")
        return 2
    stack = None
    edge = args.edge_url
    if not edge:
        stack = Stack(
            data_dir=Path(tempfile.mkdtemp(prefix="socialmesh-bench-")),
            edge_port=_free_port(),
            admin_port=_free_port(),
            base_port=_free_port() + 10,
            log_dir=Path(tempfile.mkdtemp(prefix="socialmesh-bench-logs-")),
            edge_rate_limit=args.edge_rate_limit,
        )
        stack.start()
        edge = stack.edge_url
    try:
        handle = f"bench{uuid.uuid4().hex[:10]}"
        with httpx.Client(base_url=edge, timeout=10) as client:
            created = client.post(
                "/v1/users",
                json={
                    "handle": handle,
                    "email": f"{handle}@example.com",
                    "password": "benchmark-pw",
                },
            )
            created.raise_for_status()
            user_id = created.json()["userId"]
        url = f"{edge}/v1/users/{user_id}"
        print(f"wrk -t2 -c{args.connections} -d{args.duration}s --latency {url}")
        result = subprocess.run(
            [wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url],
            capture_output=True,
            text=True,
            check=True,
        )
        print(result.stdout)
        figures = _parse_wrk(result.stdout)
        if stack is not None:
            import time

            time.sleep(2.5)  # let instances publish their counters
            stats = _cache_stats(stack.env["REDIS_URL"])
            total = sum(stats.values())
            hits = stats["l1_hits"] + stats["l2_hits"]
            figures["cache_hit_rate"] = f"{hits / total:.4f}" if total else "n/a"
            figures["cache"] = json.dumps(stats)
        print("GET /v1/users/{id} through the edge:")
        for key, value in figures.items():
            print(f"  {key:<20} {value}")
    finally:
        if stack is not None:
            stack.stop()
    return 0
