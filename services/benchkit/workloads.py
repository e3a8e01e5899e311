"""The operations `socialmesh bench` drives through the edge (one per arrival).

Every workload is plain data (ids, tokens, URLs) so it can be shipped to worker
processes; `op` returns (kind, HTTP status). A composite operation (the home
timeline before the feed service exists) fails with the first non-2xx status.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .dataset import Zipf

JSON = {"Content-Type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _get(session: aiohttp.ClientSession, path: str, headers: dict[str, str]) -> int:
    async with session.get(path, headers=headers) as response:
        await response.read()
        return response.status


async def _get_json(
    session: aiohttp.ClientSession, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with session.get(path, headers=headers) as response:
        if response.status != 200:
            await response.read()
            return response.status, {}
        return response.status, await response.json()


async def _post(
    session: aiohttp.ClientSession, path: str, headers: dict[str, str], body: str
) -> int:
    async with session.post(path, headers={**headers, **JSON}, data=body) as response:
        await response.read()
        return response.status


@dataclass
class Ceiling:
    """`GET /v1/auth:caller` (GetCaller): authenticated, same edge filters and service
    interceptors (token verification, revocation check), no storage in the servicer."""

    base_url: str
    tokens: list[str]
    name: str = "ceiling"
    description: str = "GET /v1/auth:caller (GetCaller) signed in: auth + interceptors, no storage"

    async def op(self, session: aiohttp.ClientSession, rng: random.Random) -> tuple[str, int]:
        headers = bearer(self.tokens[rng.randrange(len(self.tokens))])
        return "caller", await _get(session, "/v1/auth:caller", headers)


@dataclass
class Profile:
    """Anonymous `GET /v1/users/{id}` with Zipf-distributed ids (s=1)."""

    base_url: str
    users: Zipf
    name: str = "profile"
    description: str = "GET /v1/users/{id} anonymous, ids Zipf(s=1) over every user"

    async def op(self, session: aiohttp.ClientSession, rng: random.Random) -> tuple[str, int]:
        return "profile", await _get(session, f"/v1/users/{self.users.sample(rng)}", {})


@dataclass
class Mix:
    """DeathStarBench socialNetwork mix: 60 % home timeline, 30 % user timeline,
    10 % compose post. Viewers and authors are uniform over the users (as in
    DeathStarBench's scripts); user-timeline targets are Zipf-distributed.

    Home timeline: `GET /v1/feed` when the feed service serves it; until then the
    followed accounts' recent posts through the RPCs that exist: ListFollowing of
    the viewer (`home_fanin` accounts) and ListUserPosts of each, concurrently.
    The feed tab is FOLLOWING by default: DeathStarBench's ReadHomeTimeline is the
    reverse-chronological timeline; RANKED ("For you") is measured with `feed_kind`.
    """

    base_url: str
    user_ids: list[int]
    tokens: list[str]
    targets: Zipf
    use_feed: bool = False
    feed_kind: str = "FEED_KIND_FOLLOWING"
    home_fanin: int = 3
    page_size: int = 10
    name: str = "mix"
    description: str = ""
    _counter: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def __post_init__(self) -> None:
        home = (
            f"GET /v1/feed?kind={self.feed_kind}"
            if self.use_feed
            else f"ListFollowing(viewer, {self.home_fanin}) + ListUserPosts of each "
            f"({1 + self.home_fanin} edge requests; feed service not running)"
        )
        per_op = 0.6 * (1 if self.use_feed else 1 + self.home_fanin) + 0.4
        self.description = (
            f"60% home timeline [{home}], 30% user timeline [ListUserPosts(Zipf user, "
            f"{self.page_size})], 10% compose post [CreatePost]; rates are operations/s, "
            f"{per_op:.1f} edge requests per operation on average"
        )

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_counter", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._counter = itertools.count()

    async def op(self, session: aiohttp.ClientSession, rng: random.Random) -> tuple[str, int]:
        roll = rng.random()
        viewer = rng.randrange(len(self.user_ids))
        headers = bearer(self.tokens[viewer])
        if roll < 0.6:
            return "home_timeline", await self._home(session, self.user_ids[viewer], headers)
        if roll < 0.9:
            path = f"/v1/users/{self.targets.sample(rng)}/posts?pageSize={self.page_size}"
            return "user_timeline", await _get(session, path, headers)
        n = next(self._counter)
        body = f'{{"text": "bench mix post {n} #bench"}}'
        return "compose_post", await _post(session, "/v1/posts", headers, body)

    async def _home(
        self, session: aiohttp.ClientSession, viewer: int, headers: dict[str, str]
    ) -> int:
        if self.use_feed:
            return await _get(
                session, f"/v1/feed?kind={self.feed_kind}&pageSize={self.page_size}", headers
            )
        status, body = await _get_json(
            session, f"/v1/users/{viewer}/following?pageSize={self.home_fanin}", headers
        )
        if status != 200:
            return status
        followed = [e["userId"] for e in body.get("following", [])]
        statuses = await asyncio.gather(
            *(
                _get(session, f"/v1/users/{uid}/posts?pageSize={self.page_size}", headers)
                for uid in followed
            )
        )
        return next((s for s in statuses if s != 200), 200)


@dataclass
class GraphOps:
    """80 % ListFollowers (Zipf user, pageSize 50), 10 % follow, 10 % unfollow;
    signed-in viewers uniform over the users."""

    base_url: str
    user_ids: list[int]
    tokens: list[str]
    targets: Zipf
    name: str = "graph"
    description: str = (
        "80% ListFollowers(Zipf user, 50), 10% FollowUser, 10% UnfollowUser (uniform pairs)"
    )

    async def op(self, session: aiohttp.ClientSession, rng: random.Random) -> tuple[str, int]:
        roll = rng.random()
        viewer = rng.randrange(len(self.user_ids))
        headers = bearer(self.tokens[viewer])
        if roll < 0.8:
            path = f"/v1/users/{self.targets.sample(rng)}/followers?pageSize=50"
            return "list_followers", await _get(session, path, headers)
        other = self.user_ids[rng.randrange(len(self.user_ids))]
        if other == self.user_ids[viewer]:
            other = self.user_ids[(viewer + 1) % len(self.user_ids)]
        verb = "follow" if roll < 0.9 else "unfollow"
        return verb, await _post(session, f"/v1/users/{other}:{verb}", headers, "{}")


@dataclass
class PostOps:
    """90 % BatchGetPosts(100 random seeded posts) as a signed-in viewer, 10 % CreatePost."""

    base_url: str
    user_ids: list[int]
    tokens: list[str]
    post_ids: list[int]
    batch: int = 100
    name: str = "post"
    description: str = "90% BatchGetPosts(100 random posts) signed in, 10% CreatePost"
    _counter: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_counter", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._counter = itertools.count()

    async def op(self, session: aiohttp.ClientSession, rng: random.Random) -> tuple[str, int]:
        viewer = rng.randrange(len(self.user_ids))
        headers = bearer(self.tokens[viewer])
        if rng.random() < 0.9:
            ids = rng.sample(self.post_ids, min(self.batch, len(self.post_ids)))
            query = "&".join(f"postIds={i}" for i in ids)
            return "batch_get_posts", await _get(session, f"/v1/posts:batchGet?{query}", headers)
        n = next(self._counter)
        body = f'{{"text": "bench post {n} #bench"}}'
        return "create_post", await _post(session, "/v1/posts", headers, body)


@dataclass
class Primed:
    """What reading every key once before measuring cost (cold caches, cold timelines)."""

    what: str
    count: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def summary(self) -> dict[str, Any]:
        ms = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(ms[min(len(ms) - 1, int(len(ms) * p))], 2) if ms else 0.0

        return {
            "what": self.what,
            "requests": self.count,
            "errors": self.errors,
            "seconds": round(self.seconds, 1),
            "p50_ms": pct(0.5),
            "p90_ms": pct(0.9),
            "p99_ms": pct(0.99),
            "max_ms": round(ms[-1], 2) if ms else 0.0,
        }


def prime(
    base_url: str,
    requests: list[tuple[str, dict[str, str]]],
    what: str,
    concurrency: int = 4,
    timeout: float = 60.0,
) -> Primed:
    """Sends each GET once, `concurrency` at a time (closed loop: this is set-up, not a
    measurement of throughput), and returns their latencies."""

    async def run() -> Primed:
        import time

        latencies: list[float] = []
        errors = 0
        pending = iter(requests)
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        started = time.perf_counter()
        async with aiohttp.ClientSession(base_url, timeout=client_timeout) as session:

            async def worker() -> None:
                nonlocal errors
                for path, headers in pending:
                    sent = time.perf_counter()
                    try:
                        status = await _get(session, path, headers)
                    except (aiohttp.ClientError, TimeoutError):
                        status = 0
                    latencies.append((time.perf_counter() - sent) * 1000)
                    errors += status != 200

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return Primed(what, len(requests), errors, time.perf_counter() - started, latencies)

    return asyncio.run(run())
