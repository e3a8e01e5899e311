"""`socialmesh bench`: drive the edge with wrk and print figures (never asserted in tests).

Scenarios (all through Envoy, against a stack this command starts unless
--edge-url is given):
* profile: `GET /v1/users/{id}` — requests/s, p50/p99 and the profile cache's hit
  rate as the user service instances saw it.
* graph: seeds a power-law graph with COPY (`socialmesh seed`'s generator), then
  `ListFollowers` p99 for the celebrity's first and 100th page, and follow/unfollow
  throughput from many accounts.
* post: on the same seeded stack, `CreatePost` throughput from many authors and
  `BatchGetPosts(100)` as a signed-in viewer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis

from services.devstack import Stack, free_stack_ports
from services.kit.auth import TokenSigner, load_private_key
from services.seed import Seeded

SCENARIOS = ("profile", "graph", "post")


def parse_wrk(output: str) -> dict[str, str]:
    figures: dict[str, str] = {}
    if match := re.search(r"Requests/sec:\s+([\d.]+)", output):
        figures["requests_per_second"] = match.group(1)
    for pct in ("50", "99"):
        if match := re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", output, re.MULTILINE):
            figures[f"p{pct}"] = match.group(1)
    if match := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        figures["non_2xx"] = match.group(1)
    return figures


def run_wrk(
    url: str,
    args: argparse.Namespace,
    *,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> dict[str, str]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    command = [wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    shown = " ".join(c if "Bearer" not in c else "'Authorization: Bearer …'" for c in command)
    print(f"$ {shown}")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    print(result.stdout)
    return parse_wrk(result.stdout)


def report(title: str, figures: dict[str, str]) -> None:
    print(title)
    for key, value in figures.items():
        print(f"  {key:<22} {value}")
    print()


def _cache_stats(redis_url: str) -> dict[str, int]:
    client = redis.Redis.from_url(redis_url)
    totals = {"l1_hits": 0, "l2_hits": 0, "misses": 0}
    for raw in client.hvals("cache-stats:user:v1"):
        for k, v in json.loads(raw).items():
            totals[k] = totals.get(k, 0) + int(v)
    return totals


def bench_profile(edge: str, args: argparse.Namespace, stack: Stack | None) -> None:
    handle = f"bench{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=edge, timeout=10) as client:
        created = client.post(
            "/v1/users",
            json={"handle": handle, "email": f"{handle}@example.com", "password": "benchmark-pw"},
        )
        created.raise_for_status()
        user_id = created.json()["userId"]
    figures = run_wrk(f"{edge}/v1/users/{user_id}", args)
    if stack is not None:
        time.sleep(2.5)  # instances publish their counters every 2 s
        stats = _cache_stats(stack.env["REDIS_URL"])
        total = sum(stats.values())
        hits = stats["l1_hits"] + stats["l2_hits"]
        figures["cache_hit_rate"] = f"{hits / total:.4f}" if total else "n/a"
        figures["cache"] = json.dumps(stats)
    report("GET /v1/users/{id} (anonymous) through the edge:", figures)


def seed_stack(args: argparse.Namespace, stack: Stack) -> tuple[Seeded, float]:
    from services.seed import seed

    seed_args = argparse.Namespace(
        users=args.seed_users,
        follows=args.seed_follows,
        celebrity_followers=args.seed_celebrity_followers,
        private_every=0,
        random_seed=42,
        posts=args.seed_posts,
        likes=args.seed_likes,
        comments=args.seed_comments,
    )
    started = time.monotonic()
    seeded = asyncio.run(seed(seed_args, stack.env["DATABASE_URL"]))
    seconds = time.monotonic() - started
    report(
        "socialmesh seed (COPY):",
        {
            "users": f"{args.seed_users:,}",
            "follows": f"{args.seed_follows:,}",
            "celebrity_followers": f"{args.seed_celebrity_followers:,}",
            "posts": f"{args.seed_posts:,}",
            "likes": f"{args.seed_likes:,}",
            "comments": f"{args.seed_comments:,}",
            "seconds": f"{seconds:.1f}",
        },
    )
    return seeded, seconds


def _signer(stack: Stack) -> TokenSigner:
    return TokenSigner(
        load_private_key(stack.env["JWT_PRIVATE_KEY_FILE"]),
        issuer="socialmesh",
        audience="socialmesh-api",
        ttl=3600,
    )


def _lua_tokens(signer: TokenSigner, user_ids: list[int]) -> str:
    return "local tokens = {" + ", ".join(f'"{signer.sign(u, 1)}"' for u in user_ids) + "}\n"


def bench_graph(edge: str, args: argparse.Namespace, stack: Stack, seeded: Seeded) -> None:
    signer = _signer(stack)
    user_ids = seeded.user_ids
    celebrity = user_ids[0]
    auth = {"Authorization": f"Bearer {signer.sign(celebrity, 1)}"}
    base = f"{edge}/v1/users/{celebrity}/followers?pageSize=50"
    first = run_wrk(base, args, headers=auth)
    with httpx.Client(timeout=30, headers=auth) as client:
        token = ""
        for _ in range(99):
            page = client.get(base + (f"&pageToken={token}" if token else ""))
            page.raise_for_status()
            token = page.json()["nextPageToken"]
    hundredth = run_wrk(f"{base}&pageToken={token}", args, headers=auth)

    rng = random.Random(1)
    actors = rng.sample(user_ids[1:], 200)
    targets = rng.sample(user_ids[1:], 200)
    lua = Path(tempfile.mkdtemp()) / "follow.lua"
    target_list = ", ".join(f'"{t}"' for t in targets)
    lua.write_text(
        _lua_tokens(signer, actors) + f"local targets = {{{target_list}}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  local verb = (n % 2 == 0) and 'unfollow' or 'follow'\n"
        "  local who = tokens[math.random(#tokens)]\n"
        "  local path = '/v1/users/' .. targets[math.random(#targets)] .. ':' .. verb\n"
        "  return wrk.format('POST', path, {['Authorization'] = 'Bearer ' .. who,"
        " ['Content-Type'] = 'application/json'}, '{}')\n"
        "end\n"
    )
    churn = run_wrk(f"{edge}/", args, script=lua)
    report("ListFollowers(celebrity) page 1, pageSize=50:", first)
    report("ListFollowers(celebrity) page 100, pageSize=50:", hundredth)
    report("Follow/Unfollow mix (200 accounts x 200 targets):", churn)


def bench_post(edge: str, args: argparse.Namespace, stack: Stack, seeded: Seeded) -> None:
    signer = _signer(stack)
    rng = random.Random(2)
    # 30 posts/minute/user: enough distinct authors that the limiter never trips.
    authors = rng.sample(seeded.user_ids[1:], 3000)
    lua = Path(tempfile.mkdtemp()) / "create.lua"
    lua.write_text(
        _lua_tokens(signer, authors) + "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  local body = '{\"text\": \"bench post ' .. n .. ' #bench\"}'\n"
        "  return wrk.format('POST', '/v1/posts', {['Authorization'] = 'Bearer ' ..\n"
        "    tokens[math.random(#tokens)], ['Content-Type'] = 'application/json'}, body)\n"
        "end\n"
    )
    create = run_wrk(f"{edge}/", args, script=lua)
    ids = rng.sample(seeded.post_ids, 100)
    query = "&".join(f"postIds={i}" for i in ids)
    viewer = {"Authorization": f"Bearer {signer.sign(seeded.user_ids[7], 1)}"}
    with httpx.Client(timeout=30) as client:
        check = client.get(f"{edge}/v1/posts:batchGet?{query}", headers=viewer)
        check.raise_for_status()
        returned = len(check.json()["posts"])
    batch = run_wrk(f"{edge}/v1/posts:batchGet?{query}", args, headers=viewer)
    report("CreatePost (3,000 authors, text + hashtag):", create)
    report(f"BatchGetPosts(100) as a signed-in viewer ({returned} returned):", batch)


def main(args: argparse.Namespace) -> int:
    if not shutil.which("wrk"):
        print("wrk not found: `make bench` installs it (apt-get install wrk)")
        return 2
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    stack = None
    edge = args.edge_url
    if not edge:
        edge_port, admin_port, base_port = free_stack_ports()
        stack = Stack(
            data_dir=Path(tempfile.mkdtemp(prefix="socialmesh-bench-")),
            edge_port=edge_port,
            admin_port=admin_port,
            base_port=base_port,
            log_dir=Path(tempfile.mkdtemp(prefix="socialmesh-bench-logs-")),
            edge_rate_limit=args.edge_rate_limit,
        )
        stack.start()
        edge = stack.edge_url
    try:
        if "profile" in scenarios:
            bench_profile(edge, args, stack)
        if {"graph", "post"} & set(scenarios):
            if stack is None:
                print("graph/post scenarios seed their own stack: run without --edge-url")
                return 2
            seeded, _ = seed_stack(args, stack)
            if "graph" in scenarios:
                bench_graph(edge, args, stack, seeded)
            if "post" in scenarios:
                bench_post(edge, args, stack, seeded)
    finally:
        if stack is not None:
            stack.stop()
    return 0
