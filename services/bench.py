"""`socialmesh bench`: open-loop load through the edge, figures relative to a ceiling.

Against a stack this command starts (seeded with COPY, tokens signed with the
stack's key) or any `--edge-url`. Scenarios (`--scenario a,b,...` or `all`):

* ceiling: `GET /v1/auth:caller` signed in — the cheapest authenticated RPC
  through the same edge filters and service interceptors, no storage. Always
  measured first; every other figure is also given as a ratio to it.
* mix: the DeathStarBench socialNetwork mix on socfb-Reed98 (or `--graph
  powerlaw --users N`): 60 % home timeline, 30 % user timeline, 10 % compose.
* profile: anonymous `GET /v1/users/{id}`, ids Zipf-distributed; with the cache
  hit rate the user service instances saw.
* graph: ListFollowers plus follow/unfollow churn; post: BatchGetPosts(100) plus
  CreatePost.
* fanout (opt-in): one author with `--fanout-followers` K followers: CreatePost to
  visible in every follower's feed, the Redis writes per post, feed read latency
  (services/benchkit/fanout.py).

Open loop at `--rate` (fixed or `--arrival poisson`), latency from the intended
send time, HdrHistogram percentiles; `--find-max` steps the rate up to the highest
one whose p99 stays under `--p99-bound-ms`. See services/benchkit/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from services.benchkit import dataset, fanout, report
from services.benchkit.loadgen import Generator, Step, Workload, find_max
from services.benchkit.workloads import (
    Ceiling,
    GraphOps,
    Mix,
    PostOps,
    Primed,
    Profile,
    bearer,
    prime,
)

SCENARIOS = ("ceiling", "mix", "profile", "graph", "post", "chat", "chat-streams", "fanout")
#: Run by services/benchkit/chat.py (streams, not the request/response generator).
CHAT = frozenset({"chat", "chat-streams"})
#: Run by services/benchkit/fanout.py on a graph of its own (one author, K followers).
FANOUT = frozenset({"fanout"})
#: Scenarios that need the data set loaded (and tokens signed) in a stack bench started.
SEEDED = frozenset({"mix", "graph", "post"})


def parse_scenarios(value: str) -> list[str]:
    """`all` (every request/response scenario; chat and fanout are opt-in) or a
    comma-separated list; `ceiling` is always measured, first."""
    if value == "all":
        names = [n for n in SCENARIOS if n not in CHAT | FANOUT]
    else:
        names = [v.strip() for v in value.split(",") if v]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; choose from {SCENARIOS}")
    return ["ceiling", *[n for n in dict.fromkeys(names) if n != "ceiling"]]


@dataclass
class Population:
    """Who the workloads act as: user ids, one access token each, seeded posts."""

    user_ids: list[int]
    tokens: list[str]
    post_ids: list[int] = field(default_factory=list)
    description: dict[str, Any] | None = None


async def _seed(
    database_url: str, graph: dataset.Graph, posts_per_user: int, seed: int
) -> tuple[list[int], list[int]]:
    """Users, follows and posts through each service's own seeder (COPY)."""
    from services.kit.ids import IdGenerator
    from services.seed import load

    n_posts = graph.users * posts_per_user
    seeded = await load(
        database_url,
        graph.users,
        graph.follows,
        ids=IdGenerator(1022),
        rng=random.Random(seed),
        posts=n_posts,
        likes=n_posts * 2,
        comments=n_posts // 2,
    )
    return seeded.user_ids, seeded.post_ids


def stack_population(stack: Any, graph: dataset.Graph, posts_per_user: int) -> Population:
    from services.kit.auth import TokenSigner, load_private_key

    started = time.monotonic()
    user_ids, post_ids = asyncio.run(
        _seed(stack.env["DATABASE_URL"], graph, posts_per_user, seed=42)
    )
    seconds = time.monotonic() - started
    signer = TokenSigner(
        load_private_key(stack.env["JWT_PRIVATE_KEY_FILE"]),
        issuer="socialmesh",
        audience="socialmesh-api",
        ttl=3600,
    )
    tokens = [signer.sign(uid, 1) for uid in user_ids]
    print(
        f"seeded {graph.name}: {graph.users:,} users, {len(graph.follows):,} follows "
        f"({graph.undirected_edges:,} undirected edges), {len(post_ids):,} posts "
        f"in {seconds:.1f}s (COPY)",
        flush=True,
    )
    return Population(
        user_ids,
        tokens,
        post_ids,
        {
            "graph": graph.name,
            "source": graph.source,
            "users": graph.users,
            "undirected_edges": graph.undirected_edges,
            "follows": len(graph.follows),
            "posts": len(post_ids),
            "seed_seconds": round(seconds, 1),
        },
    )


def edge_population(edge: str, n_users: int) -> Population:
    """Registers accounts through the edge (for `--edge-url`: no database access)."""
    user_ids, tokens = [], []
    password = "bench-password-" + uuid.uuid4().hex[:8]
    with httpx.Client(base_url=edge, timeout=30) as client:
        for _ in range(n_users):
            handle = f"bench{uuid.uuid4().hex[:12]}"
            created = client.post(
                "/v1/users",
                json={"handle": handle, "email": f"{handle}@example.com", "password": password},
            )
            created.raise_for_status()
            login = client.post("/v1/auth:login", json={"handle": handle, "password": password})
            login.raise_for_status()
            user_ids.append(int(created.json()["userId"]))
            tokens.append(login.json()["accessToken"])
    return Population(user_ids, tokens, [], {"graph": f"{n_users} accounts registered via edge"})


def feed_available(edge: str, token: str) -> bool:
    with httpx.Client(base_url=edge, timeout=10) as client:
        response = client.get("/v1/feed?pageSize=1", headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 200


def _cache_stats(redis_url: str, namespace: str = "user:v1") -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(redis_url)
    totals = {"l1_hits": 0, "l2_hits": 0, "misses": 0}
    for raw in client.hvals(f"cache-stats:{namespace}"):
        for k, v in json.loads(raw).items():
            totals[k] = totals.get(k, 0) + int(v)
    return totals


#: The user service's caches the profile read goes through: its records, and the
#: counts kept exact by generation (services/kit/counts.py).
PROFILE_CACHES = {"cache": "user:v1", "counts_cache": "user-counts:v1"}
#: The caches a timeline page's visibility is decided from, in the post service
#: (account cards and viewer relationships, exact by generation: kit/cards.py,
#: kit/relcache.py).
MIX_CACHES = {
    "post_cards_cache": "post-cards:v1",
    "post_relationships_cache": "post-relationships:v1",
}
SCENARIO_CACHES = {"profile": PROFILE_CACHES, "mix": MIX_CACHES}


def _primed(name: str, edge: str, people: Population, use_feed: bool) -> Primed | None:
    """Before measuring, read what a long-running deployment would have warm: every
    profile once (profile: its records and counts caches), every reader's home feed
    once (mix: timelines are rebuilt on a reader's first visit). Their latencies are
    reported as the cold figures."""
    if name == "profile":
        return prime(
            edge,
            [(f"/v1/users/{uid}", {}) for uid in people.user_ids],
            "every profile read once (cold caches)",
        )
    if name == "mix" and use_feed:
        return prime(
            edge,
            [("/v1/feed?pageSize=10", bearer(t)) for t in people.tokens],
            "every reader's first home feed (cold timeline rebuilds)",
        )
    return None


def measure(gen: Generator, workload: Workload, args: argparse.Namespace) -> report.ScenarioResult:
    description = getattr(workload, "description", workload.name)
    if args.warmup > 0:
        gen.run(workload, args.start_rate if args.find_max else args.rate, args.warmup, "warm-up")
    if not args.find_max:
        step = gen.run(workload, args.rate, args.duration)
        return report.ScenarioResult(workload.name, description, step, [step])

    def one(rate: float) -> Step:
        return gen.run(workload, rate, args.duration)

    found = find_max(
        one,
        bound_ms=args.p99_bound_ms,
        start_rate=args.start_rate,
        factor=args.step_factor,
        refine=args.refine,
        max_rate=args.max_rate,
    )
    return report.ScenarioResult(workload.name, description, found.best, found.steps, found)


def main(args: argparse.Namespace) -> int:
    from services.devstack import Stack, free_stack_ports

    try:
        scenarios = parse_scenarios(args.scenario)
    except ValueError as exc:
        print(f"socialmesh bench: {exc}", file=sys.stderr)
        return 2
    if args.edge_url and SEEDED & set(scenarios):
        print(
            "socialmesh bench: mix/graph/post load their data set into a stack bench starts: "
            "run them without --edge-url",
            file=sys.stderr,
        )
        return 2
    if args.edge_url and FANOUT & set(scenarios):
        print(
            "socialmesh bench: fanout seeds its graph and reads the feed's Redis in a stack "
            "bench starts: run it without --edge-url",
            file=sys.stderr,
        )
        return 2
    if FANOUT & set(scenarios):
        graph = fanout.graph(args.fanout_followers)
    else:
        graph = dataset.reed98() if args.graph == "reed98" else dataset.powerlaw(args.users)
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
            edge_rate_limit_per_client=args.edge_rate_limit_per_client,
        )
        stack.start()
        edge = stack.edge_url
    notes: list[str] = []
    results: list[report.ScenarioResult] = []
    try:
        if stack is not None:
            people = stack_population(stack, graph, args.posts_per_user)
        else:
            people = edge_population(edge, args.edge_users)
        ids = people.user_ids
        zipf = dataset.Zipf(ids, s=args.zipf_s)
        workloads: dict[str, Workload] = {
            "ceiling": Ceiling(edge, people.tokens),
            "profile": Profile(edge, zipf),
        }
        feed_served = False
        if "mix" in scenarios:
            use_feed = feed_served = feed_available(edge, people.tokens[0])
            mix = Mix(
                edge,
                ids,
                people.tokens,
                zipf,
                use_feed=use_feed,
                feed_kind=f"FEED_KIND_{args.mix_feed_kind.upper()}",
            )
            workloads["mix"] = mix
            if use_feed:
                notes.append(
                    f"mix: GET /v1/feed is served, so the home timeline reads the feed's "
                    f"{args.mix_feed_kind.upper()} tab"
                )
            else:
                notes.append(
                    "mix: the feed service is not running (GET /v1/feed is not served), so the "
                    "home timeline is measured as followed accounts' recent posts: "
                    + mix.description
                )
        if "graph" in scenarios:
            workloads["graph"] = GraphOps(edge, ids, people.tokens, zipf)
        if "post" in scenarios:
            workloads["post"] = PostOps(edge, ids, people.tokens, people.post_ids)
        with Generator.from_args(args) as gen:
            for name in [s for s in scenarios if s not in CHAT | FANOUT]:
                primed = _primed(name, edge, people, feed_served)
                if primed is not None:
                    notes.append(
                        f"{name}: before measuring, {primed.what}: {primed.summary()} (not counted)"
                    )
                caches = SCENARIO_CACHES.get(name, {}) if stack else {}
                if caches:
                    time.sleep(2.5)  # instances publish their counters every 2 s
                redis_url = stack.env["REDIS_URL"] if stack is not None else ""
                before = {k: _cache_stats(redis_url, ns) for k, ns in caches.items()}
                result = measure(gen, workloads[name], args)
                if primed is not None:
                    result.extra["cold"] = primed.summary()
                if before and stack is not None:
                    time.sleep(2.5)  # instances publish their counters every 2 s
                    for key, namespace in caches.items():
                        after = _cache_stats(stack.env["REDIS_URL"], namespace)
                        delta = {k: after.get(k, 0) - before[key].get(k, 0) for k in after}
                        total = sum(delta.values())
                        hits = delta.get("l1_hits", 0) + delta.get("l2_hits", 0)
                        result.extra[key] = delta
                        result.extra[f"{key}_hit_rate"] = round(hits / total, 4) if total else None
                results.append(result)
        if CHAT & set(scenarios):
            from services.benchkit import chat

            found, chat_notes = chat.run_scenarios(
                scenarios, args, stack, edge, people.user_ids, people.tokens
            )
            results.extend(found)
            notes.extend(chat_notes)
        if FANOUT & set(scenarios):
            found, fanout_notes = fanout.run(
                args, stack, edge, people.user_ids, people.tokens, measure
            )
            results.extend(found)
            notes.extend(fanout_notes)
    finally:
        if stack is not None:
            stack.stop()
    settings = {
        k: v for k, v in vars(args).items() if k != "func" and not callable(v) and k != "command"
    }
    built = report.build(
        results,
        command=["socialmesh", *sys.argv[1:]] if sys.argv[0].endswith("socialmesh") else sys.argv,
        target=edge if args.edge_url else "stack started by bench",
        settings=settings,
        dataset=people.description,
        notes=notes,
        cores=report.environment()["cores"] or 1,
    )
    out_dir = Path(args.out) / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    print()
    print(report.table(built))
    report.write_json(built, out_dir / "report.json")
    print(f"\nJSON: {out_dir / 'report.json'}")
    if not args.no_plots:
        for path in report.plot(built, results, out_dir):
            print(f"plot: {path}")
    return 0
