"""`fanout`: one author, K followers; time until a post is in every follower's feed,
the Redis writes that cost, and feed read latency through the edge on that graph.

Opt-in (`--scenario fanout`, not in `all`), only against a stack bench starts:
it seeds the graph with COPY and reads the stack's Redis.

* The graph is `socialmesh seed`'s power-law generator on K+1 users with user 0
  (the author) followed by all K others (`graph`), loaded through each service's
  seeder like every bench data set.
* Fan-out only reaches *active* followers: those in `feed:active` (user -> last
  feed read, what `Timelines.open_read` writes on every GET /v1/feed) within
  FEED_ACTIVE_DAYS. All K followers are marked active with one ZADD per 10,000
  (the entry a read would leave), and `--fanout-warm` of them also read their
  feed once through the edge, which builds their timeline (cold-start rebuild):
  those are the "warm" followers whose reads are sampled and measured.
* Whether the author is fanned out to (K < FEED_FANOUT_THRESHOLD) or merged at
  read time (K >= threshold: `feed:author:<id>` plus `feed:celebs:<follower>`)
  is the feed service's call; the stack inherits FEED_FANOUT_THRESHOLD from
  bench's environment.

Per post (`--fanout-posts` N, two rounds):

1. Redis round: INFO commandstats before; CreatePost through the edge; a Lua
   check over every follower (`ZSCORE feed:tl:<f> <member>`, or for a
   read-time-merged author `ZSCORE feed:author:<a>` and `SISMEMBER
   feed:celebs:<f> <a>`, in full once, after which the post's ZSCORE in the
   author's set is the moment all see it; 10,000 keys per call) until all K
   see it (a probe of 200 random followers is polled every 2 ms first, so the
   full check, which would slow the fan-out it watches, runs only once they
   do); commandstats after. Writes = the delta of the commands fan-out uses
   (ZADD, ZREMRANGEBYRANK, EXPIRE, SADD; commands a script runs count too),
   for the whole stack's Redis during the window (the post service's rate
   limiter and the event bus are in there too: a handful).
2. Edge round: CreatePost, then `--fanout-sample` warm followers read
   `GET /v1/feed?kind=FEED_KIND_FOLLOWING` through the edge every 200 ms until
   the post is on their first page (what a user sees, when that read
   answers), while the Redis check runs too.

Then `feed-follow` and `feed-ranked`: GET /v1/feed for the warm followers
through the generator (open loop, latency from intended send time, `--rate` or
`--find-max` with `--p99-bound-ms`).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from . import dataset
from .loadgen import Generator, Workload
from .report import ScenarioResult
from .workloads import _get, bearer

#: Keys one visibility-check script call looks at.
CHECK_CHUNK = 10_000
#: Followers polled cheaply before each full visibility check.
PROBE = 200
#: Seconds between a sampled follower's feed reads through the edge.
EDGE_POLL_SECONDS = 0.2
#: Commands a fan-out (or a read-time-merge post) writes with.
WRITE_COMMANDS = ("zadd", "zremrangebyrank", "expire", "sadd")
#: Count of KEYS[i] holding ARGV[1] as a sorted-set member.
_COUNT_ZMEMBER = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[1]) then n = n + 1 end
end
return n
"""
#: Count of KEYS[i] (sets) containing ARGV[1].
_COUNT_SMEMBER = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('SISMEMBER', key, ARGV[1]) == 1 then n = n + 1 end
end
return n
"""
FOLLOWING = "FEED_KIND_FOLLOWING"
RANKED = "FEED_KIND_RANKED"


def graph(followers: int, seed: int = 42) -> dataset.Graph:
    """K+1 users, user 0 followed by all K others, plus power-law follows among
    everyone (5 per user, `socialmesh seed`'s generator and ratio)."""
    from services.seed import power_law_edges

    users = followers + 1
    follows = power_law_edges(users, max(users * 5, followers), followers, random.Random(seed))
    assert sum(1 for _, b in follows if b == 0) == followers
    return dataset.Graph(
        f"fanout-{followers}",
        users,
        len(follows),
        follows,
        f"socialmesh seed generator: user 0 followed by all {followers:,} others",
    )


@dataclass
class FeedRead:
    """`GET /v1/feed?kind=<kind>&pageSize=20` as a warm follower (uniform)."""

    base_url: str
    tokens: list[str]
    kind: str
    name: str = "feed"
    description: str = ""

    def __post_init__(self) -> None:
        tab = "FOLLOWING" if self.kind == FOLLOWING else "RANKED"
        self.name = f"feed-{'follow' if self.kind == FOLLOWING else 'ranked'}"
        self.description = (
            f"GET /v1/feed?kind={self.kind}&pageSize=20 (first page, {tab}) as one of "
            f"{len(self.tokens):,} warm followers of the fanout author (uniform)"
        )

    async def op(self, session: aiohttp.ClientSession, rng: random.Random) -> tuple[str, int]:
        headers = bearer(self.tokens[rng.randrange(len(self.tokens))])
        path = f"/v1/feed?kind={self.kind}&pageSize=20"
        return self.name, await _get(session, path, headers)


# ---- Redis side --------------------------------------------------------------------


class Visibility:
    """Counts the followers whose FOLLOWING feed holds a post (server-side scripts)."""

    def __init__(self, redis: Any, author_id: int, followers: Sequence[int]) -> None:
        from services.feed.timelines import celebs_key, tl_key

        self.redis = redis
        self.author_id = author_id
        self.total = len(followers)
        self._tl = [tl_key(f) for f in followers]
        self._celebs = [celebs_key(f) for f in followers]
        self._z = redis.register_script(_COUNT_ZMEMBER)
        self._s = redis.register_script(_COUNT_SMEMBER)
        #: EVALSHA calls the checks made (subtracted from the stack's count).
        self.script_calls = 0
        #: Every follower's feed:celebs holds the author (checked in full once;
        #: nothing in the run removes it): from then on a post in feed:author is
        #: in every follower's FOLLOWING read, and only that ZSCORE is polled.
        self.merging_all = False

    def count(self, post_id: int, only: Sequence[int] | None = None) -> tuple[int, str]:
        """(followers who see it, how): in their timeline, or merged at read.
        `only`: indexes of the followers to look at (default: all)."""
        from services.feed.timelines import Entry, author_key

        member = Entry.post(post_id, self.author_id).member
        merged = self.redis.zscore(author_key(self.author_id), member) is not None
        if merged and self.merging_all:
            return self.total, "read-time merge"
        keys = self._celebs if merged else self._tl
        if only is not None:
            keys = [keys[i] for i in only]
        script, arg = (self._s, str(self.author_id)) if merged else (self._z, member)
        seen = 0
        for i in range(0, len(keys), CHECK_CHUNK):
            seen += int(script(keys=keys[i : i + CHECK_CHUNK], args=[arg]))
            self.script_calls += 1
        if merged and only is None and seen == self.total:
            self.merging_all = True
        return seen, "read-time merge" if merged else "fan-out"

    def wait_all(
        self, post_id: int, timeout: float
    ) -> tuple[float | None, float | None, str, int, list[float]]:
        """Polls until every follower sees the post: (first seen, all seen) as
        perf_counter times (None: not within `timeout`), how, last count, and the
        durations of the full checks (their resolution).

        A full check of 10,000 keys takes long enough to slow the fan-out it
        watches, so a probe of `PROBE` random followers is polled first (every
        2 ms) and the full check runs once they all see the post, again until it
        counts everyone. "All seen" is when the passing full check *ended*: every
        key it read was visible by then (an upper bound, never an underestimate)."""
        deadline = time.perf_counter() + timeout
        first: float | None = None
        polls: list[float] = []
        how, seen = "", 0
        probe = random.Random(post_id).sample(range(self.total), min(PROBE, self.total))
        while time.perf_counter() < deadline:
            seen_probe, how = self.count(post_id, probe)
            if seen_probe and first is None:
                first = time.perf_counter()
            if seen_probe < len(probe):
                time.sleep(0.002)
                continue
            started = time.perf_counter()
            seen, how = self.count(post_id)
            now = time.perf_counter()
            polls.append(now - started)
            if seen >= self.total:
                return first, now, how, seen, polls
            time.sleep(0.002)
        return first, None, how, seen, polls


def commandstats(redis: Any) -> dict[str, int]:
    stats = redis.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: after[k] - before.get(k, 0) for k in after}
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v}


# ---- edge side ---------------------------------------------------------------------


async def create_post(session: aiohttp.ClientSession, token: str, text: str) -> int:
    async with session.post("/v1/posts", json={"text": text}, headers=bearer(token)) as response:
        body = await response.json(content_type=None)
        if response.status != 200:
            raise RuntimeError(f"POST /v1/posts: HTTP {response.status} {body}")
        return int(body["postId"])


async def read_feed(
    session: aiohttp.ClientSession, token: str, kind: str = FOLLOWING, page_size: int = 20
) -> tuple[int, dict[str, Any]]:
    async with session.get(
        f"/v1/feed?kind={kind}&pageSize={page_size}", headers=bearer(token)
    ) as response:
        body = await response.json(content_type=None) if response.status == 200 else {}
        return response.status, body


async def warm(edge: str, tokens: Sequence[str], concurrency: int = 16) -> dict[str, int]:
    """Each follower reads their feed (FOLLOWING) until it is no longer `partial`
    (at most 3 reads): the timeline is built and they are active readers."""
    results: dict[str, int] = {"reads": 0, "partial_after_3": 0, "errors": 0}
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(
        base_url=edge, timeout=aiohttp.ClientTimeout(total=60)
    ) as session:

        async def one(token: str) -> None:
            async with gate:
                for attempt in range(3):
                    status, body = await read_feed(session, token, page_size=5)
                    results["reads"] += 1
                    if status != 200:
                        results["errors"] += 1
                        return
                    if not body.get("partial"):
                        return
                    await asyncio.sleep(0.2 * (attempt + 1))
                results["partial_after_3"] += 1

        await asyncio.gather(*(one(t) for t in tokens))
    return results


async def edge_visible(
    session: aiohttp.ClientSession, tokens: Sequence[str], post_id: int, within: float
) -> list[float | None]:
    """perf_counter time at which each follower's FOLLOWING first page showed the post
    (when that read answered). Each follower reads, waits EDGE_POLL_SECONDS, reads
    again: polling flat out would load the feed service (whose consumer does the
    fan-out) and slow what is measured."""

    async def one(token: str) -> float | None:
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline:
            status, body = await read_feed(session, token, page_size=10)
            if status == 200 and any(
                int(item.get("postId", 0)) == post_id for item in body.get("items", [])
            ):
                return time.perf_counter()
            await asyncio.sleep(EDGE_POLL_SECONDS)
        return None

    return list(await asyncio.gather(*(one(t) for t in tokens)))


# ---- the scenario ------------------------------------------------------------------


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _p50_max(values: Sequence[float | None]) -> dict[str, float | None]:
    got = [v for v in values if v is not None]
    return {
        "p50": round(statistics.median(got), 1) if got else None,
        "max": round(max(got), 1) if got else None,
        "missing": len(values) - len(got),
    }


def run(
    args: Any,
    stack: Any,
    edge: str,
    user_ids: list[int],
    tokens: list[str],
    measure: Callable[[Generator, Workload, Any], ScenarioResult],
) -> tuple[list[ScenarioResult], list[str]]:
    """The `fanout` scenario (see the module docstring): (results, notes).

    `user_ids[0]` is the author and every other id follows it (`graph`);
    `tokens` are parallel to `user_ids`."""
    import redis

    author, author_token = user_ids[0], tokens[0]
    followers = user_ids[1:]
    k = len(followers)
    threshold = int(os.environ.get("FEED_FANOUT_THRESHOLD", "10000"))
    expected = "fan-out" if k < threshold else "read-time merge"
    rng = random.Random(11)
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    notes: list[str] = []

    from services.feed.timelines import ACTIVE, CELEBRITIES

    now = time.time()
    for i in range(0, k, 10_000):
        client.zadd(ACTIVE, {str(f): now for f in followers[i : i + 10_000]})
    n_warm = min(args.fanout_warm, k)
    warm_idx = rng.sample(range(1, len(user_ids)), n_warm)
    warm_tokens = [tokens[i] for i in warm_idx]
    started = time.monotonic()
    warmed = asyncio.run(warm(edge, warm_tokens))
    warm_seconds = time.monotonic() - started
    print(
        f"fanout: {k:,} followers marked active (feed:active); {n_warm:,} warmed by reading "
        f"their feed through the edge in {warm_seconds:.1f}s: {warmed}",
        flush=True,
    )
    visibility = Visibility(client, author, followers)
    sample = warm_tokens[: min(args.fanout_sample, n_warm)]
    timeout = args.fanout_timeout

    async def posts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        redis_rows: list[dict[str, Any]] = []
        edge_rows: list[dict[str, Any]] = []
        async with aiohttp.ClientSession(
            base_url=edge, timeout=aiohttp.ClientTimeout(total=30)
        ) as session:
            for n in range(args.fanout_posts):
                before = commandstats(client)
                own_calls = visibility.script_calls
                sent = time.perf_counter()
                post_id = await create_post(session, author_token, f"fanout bench {n}")
                answered = time.perf_counter()
                first, done, how, seen, polls = await asyncio.to_thread(
                    visibility.wait_all, post_id, timeout
                )
                used = delta(before, commandstats(client))
                # The checks' own EVALSHAs (their ZSCORE/SISMEMBER reads are not writes).
                used["evalsha"] = used.get("evalsha", 0) - (visibility.script_calls - own_calls)
                writes = {c: used.get(c, 0) for c in WRITE_COMMANDS}
                redis_rows.append(
                    {
                        "post_id": post_id,
                        "path": how,
                        "create_post_ms": _ms(answered - sent),
                        "first_visible_ms_from_response": _ms(
                            None if first is None else first - answered
                        ),
                        "all_visible_ms_from_response": _ms(
                            None if done is None else done - answered
                        ),
                        "all_visible_ms_from_send": _ms(None if done is None else done - sent),
                        "visible_in": seen,
                        "check_poll_ms_median": _ms(statistics.median(polls)) if polls else None,
                        "writes": writes,
                        "writes_total": sum(writes.values()),
                        "evalsha_calls": used.get("evalsha", 0),
                        "redis_commands": used,
                    }
                )
                print(
                    f"fanout post {n + 1}/{args.fanout_posts} ({how}): visible in "
                    f"{seen:,}/{k:,} after {redis_rows[-1]['all_visible_ms_from_response']} ms "
                    f"from the CreatePost response; writes {writes}",
                    flush=True,
                )
            for n in range(args.fanout_posts):
                sent = time.perf_counter()
                post_id = await create_post(session, author_token, f"fanout bench edge {n}")
                answered = time.perf_counter()
                seen_at, (_, done, how, seen, _) = await asyncio.gather(
                    edge_visible(session, sample, post_id, timeout),
                    asyncio.to_thread(visibility.wait_all, post_id, timeout),
                )
                edge_ms = [None if t is None else (t - answered) * 1000 for t in seen_at]
                got = [v for v in edge_ms if v is not None]
                edge_rows.append(
                    {
                        "post_id": post_id,
                        "path": how,
                        "sample": len(sample),
                        "sample_saw_it": len(got),
                        "sample_p50_ms_from_response": round(statistics.median(got), 1)
                        if got
                        else None,
                        "sample_max_ms_from_response": round(max(got), 1)
                        if len(got) == len(sample) and got
                        else None,
                        "redis_all_visible_ms_from_response": _ms(
                            None if done is None else done - answered
                        ),
                        "visible_in": seen,
                    }
                )
        return redis_rows, edge_rows

    redis_rows, edge_rows = asyncio.run(posts())
    celebrity = bool(client.sismember(CELEBRITIES, str(author)))
    all_visible = [r["all_visible_ms_from_response"] for r in redis_rows]
    writes_per_post = [r["writes_total"] for r in redis_rows]
    summary: dict[str, Any] = {
        "followers": k,
        "active_followers": k,
        "warm_followers": n_warm,
        "warm_up": {**warmed, "seconds": round(warm_seconds, 1)},
        "fanout_threshold": threshold,
        "expected_path": expected,
        "author_in_feed_celebrities": celebrity,
        "posts": args.fanout_posts,
        "redis_check": {
            "all_visible_ms_from_response": _p50_max(all_visible),
            "all_visible_ms_from_send": _p50_max(
                [r["all_visible_ms_from_send"] for r in redis_rows]
            ),
            "create_post_ms": _p50_max([r["create_post_ms"] for r in redis_rows]),
            "writes_per_post": writes_per_post,
            "evalsha_calls_per_post": [r["evalsha_calls"] for r in redis_rows],
            "per_post": redis_rows,
        },
        "edge_sample": {
            "sample": len(sample),
            "sample_max_ms_from_response": _p50_max(
                [r["sample_max_ms_from_response"] for r in edge_rows]
            ),
            "redis_all_visible_ms_from_response": _p50_max(
                [r["redis_all_visible_ms_from_response"] for r in edge_rows]
            ),
            "per_post": edge_rows,
        },
    }
    paths = sorted({r["path"] for r in redis_rows + edge_rows})
    result = ScenarioResult(
        "fanout",
        f"one author with {k:,} active followers ({n_warm:,} warm), {args.fanout_posts} posts "
        f"x 2 rounds; {', '.join(paths)} (FEED_FANOUT_THRESHOLD {threshold:,}); visible-in-all "
        "= every follower's timeline (Redis check), sample = warm followers' FOLLOWING page "
        "through the edge; writes = Redis ZADD/ZREMRANGEBYRANK/EXPIRE/SADD calls per post",
        None,
        [],
    )
    result.extra["fanout"] = summary
    results = [result]
    rc = summary["redis_check"]["all_visible_ms_from_response"]
    es = summary["edge_sample"]["sample_max_ms_from_response"]
    notes.append(
        f"fanout: {k:,} followers, {', '.join(paths)}: visible in all (Redis check) p50 "
        f"{rc['p50']} ms, max {rc['max']} ms after the CreatePost response over "
        f"{args.fanout_posts} posts (missing: {rc['missing']}); {len(sample)} warm followers "
        f"reading FOLLOWING through the edge all saw it: p50 {es['p50']} ms, max {es['max']} "
        f"ms; Redis writes per post {writes_per_post} (evalsha "
        f"{summary['redis_check']['evalsha_calls_per_post']})"
    )
    if expected == "read-time merge" and writes_per_post and writes_per_post[0] >= k:
        notes.append(
            "fanout: the first post after the author crossed FEED_FANOUT_THRESHOLD adds the "
            "author to every follower's feed:celebs (once, sticky); later posts write O(1)"
        )
    kinds = [s.strip() for s in str(args.fanout_reads).split(",") if s.strip()]
    if kinds and kinds != ["none"] and warm_tokens:
        with Generator.from_args(args) as gen:
            for kind in kinds:
                tab = {"following": FOLLOWING, "ranked": RANKED}.get(kind)
                if tab is None:
                    print(f"fanout: unknown --fanout-reads kind {kind!r}", file=sys.stderr)
                    continue
                results.append(measure(gen, FeedRead(edge, warm_tokens, tab), args))
    return results, notes
