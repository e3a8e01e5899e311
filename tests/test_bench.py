"""The benchmark instrument: behaviour, never speed (no figure is asserted).

Open-loop scheduling against a tiny local HTTP server, find-max on a fake
target, the shipped Reed98 data set, the Zipf sampler, the report's shape, and
GetCaller (the RPC the `ceiling` scenario calls).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import jwt
import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.bench import parse_scenarios
from services.benchkit import dataset, report
from services.benchkit.loadgen import (
    Generator,
    Step,
    arrivals,
    drive,
    find_max,
    new_histogram,
    passes,
)
from services.benchkit.workloads import Mix

from .conftest import RunningService, unique
from .helpers import auth

STALL_SECONDS = 1.0


class StallOnce:
    """A local HTTP server that answers at once, except request #10, which stalls."""

    def __init__(self) -> None:
        self.seen = 0
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen += 1
        self.paths.append(request.path_qs)
        if self.seen == 10:
            await asyncio.sleep(STALL_SECONDS)
        return web.json_response({})


@pytest_asyncio.fixture
async def stall_server() -> AsyncIterator[tuple[str, StallOnce]]:
    target = StallOnce()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", target.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", target
    await runner.cleanup()


class Ping:
    name = "ping"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    async def op(self, session: ClientSession, rng: random.Random) -> tuple[str, int]:
        async with session.get("/ping") as response:
            await response.read()
            return "ping", response.status


async def test_open_loop_charges_the_stall_to_every_request_scheduled_during_it(stall_server):
    base_url, target = stall_server
    rate, duration = 100, 2.0
    result = await drive(Ping(base_url), rate, duration, connections=1, arrival="fixed")
    step_latency = new_histogram()
    step_latency.decode_and_add(result.latency)
    assert result.sent == 200 and result.ok == 200 and result.statuses == {"200": 200}
    slow = sum(
        item.count_added_in_this_iter_step
        for item in step_latency.get_recorded_iterator()
        if item.value_iterated_to > 100_000
    )
    # Requests intended during the 1 s stall waited for it: about rate x stall of
    # them are charged, the first nearly the full second.
    assert slow >= 0.6 * rate * STALL_SECONDS
    assert step_latency.get_max_value() >= 0.9 * STALL_SECONDS * 1e6
    # ...while those scheduled after it are fast again (p10, not p50: on a loaded
    # 2-core machine the generator itself can run late for a while).
    assert step_latency.get_value_at_percentile(10.0) < 100_000

    # The same server measured closed-loop (send when the previous answer is back,
    # time from the actual send) shows the stall once: coordinated omission.
    target.seen = 0
    closed: list[float] = []
    async with ClientSession(base_url) as session:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            sent = time.monotonic()
            async with session.get("/ping") as response:
                await response.read()
            closed.append(time.monotonic() - sent)
    assert sum(1 for latency in closed if latency > 0.1) == 1


async def test_worker_processes_split_the_schedule_and_merge_exactly(stall_server):
    base_url, target = stall_server
    target.seen = 100  # no stall
    with Generator(workers=2, connections=4, arrival="fixed", show_progress=False) as gen:
        step = await asyncio.to_thread(gen.run, Ping(base_url), 100, 1.0)
    assert step.workers == 2 and step.sent == 100 and step.ok == 100
    assert step.latency.get_total_count() == 100 and step.statuses == {"200": 100}
    assert sum(ok for ok, _, _ in step.timeline) == 100 and step.cpu_seconds > 0


async def test_poisson_and_fixed_arrivals_follow_the_rate():
    fixed = list(arrivals(50, 2.0, "fixed", random.Random(1)))
    assert len(fixed) == 100 and fixed[1] - fixed[0] == pytest.approx(0.02)
    poisson = list(arrivals(1000, 5.0, "poisson", random.Random(1)))
    assert 4700 < len(poisson) < 5300 and poisson == sorted(poisson)
    gaps = [b - a for a, b in itertools.pairwise(poisson)]
    assert len(set(round(g, 6) for g in gaps)) > 1000  # not a fixed pace


def fake_step(
    rate: float, latencies_ms: list[float], *, errors: int = 0, throughput_share: float = 1.0
) -> Step:
    latency = new_histogram()
    for ms in latencies_ms:
        latency.record_value(int(ms * 1000))
    ok = int(len(latencies_ms) * throughput_share)
    return Step(
        offered_rate=rate,
        duration=1.0,
        arrival="fixed",
        workers=1,
        sent=len(latencies_ms) + errors,
        ok=ok,
        statuses={"200": ok, **({"503": errors} if errors else {})},
        latency=latency,
        send_lag=new_histogram(),
        kinds={"ping": latency},
        kind_counts={"ping": ok},
        timeline=[(ok, errors, latency)],
        cpu_seconds=0.1,
        wall_seconds=1.0,
        last_completion=1.0 / throughput_share,
    )


class FakeTarget:
    """Saturates at `capacity` req/s: p99 5 ms below it, 400 ms above."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.asked: list[float] = []

    def __call__(self, rate: float) -> Step:
        self.asked.append(rate)
        tail = 5.0 if rate <= self.capacity else 400.0
        n = max(int(rate), 100)  # (at least) one second of answers at the offered rate
        return fake_step(rate, [1.0] * (n - n // 20) + [tail] * (n // 20))


def test_find_max_doubles_then_bisects_to_the_highest_passing_rate():
    target = FakeTarget(capacity=1000)
    found = find_max(target, bound_ms=50, start_rate=100, factor=2, refine=2)
    assert target.asked == [100, 200, 400, 800, 1600, 1200, 1000]
    assert found.best is not None and found.best.offered_rate == 1000
    assert [s.offered_rate for s in found.steps] == target.asked

    more = find_max(FakeTarget(capacity=1000), bound_ms=50, start_rate=100, refine=4)
    assert more.best is not None and 1000 <= more.best.offered_rate < 1100

    low = FakeTarget(capacity=10)
    below = find_max(low, bound_ms=50, start_rate=100, refine=2)
    assert low.asked == [100, 50, 25, 12.5, 6.25, 9, 11]
    assert below.best is not None and below.best.offered_rate == 9

    never = find_max(FakeTarget(capacity=1), bound_ms=50, start_rate=100, min_rate=10)
    assert never.best is None and [s.offered_rate for s in never.steps] == [100, 50, 25, 12.5]

    capped = find_max(FakeTarget(capacity=10**9), start_rate=100, max_rate=800)
    assert capped.best is not None and capped.best.offered_rate == 800


def test_a_step_fails_on_errors_or_falling_behind_even_with_a_good_p99():
    assert passes(fake_step(100, [1.0] * 100), 50)
    assert not passes(fake_step(100, [1.0] * 100, errors=5), 50)
    assert not passes(fake_step(100, [1.0] * 100, throughput_share=0.5), 50)
    assert not passes(fake_step(100, [1.0] * 90 + [80.0] * 10), 50)


def test_reed98_ships_with_its_attribution_and_counts():
    graph = dataset.reed98()
    assert (graph.users, graph.undirected_edges) == (962, 18_812)
    assert len(graph.follows) == 2 * 18_812  # a follow in each direction
    follows = set(graph.follows)
    assert all((b, a) in follows for a, b in follows)
    assert all(0 <= a < 962 and 0 <= b < 962 and a != b for a, b in follows)
    readme = (dataset.REED98_DIR / "README.md").read_text()
    assert "Rossi and Ahmed" in readme and "Network Data Repository" in readme
    assert sum(len(f) for f in graph.following()) == len(graph.follows)


def test_zipf_picks_are_skewed_towards_a_few_hot_ids():
    ids = list(range(1000, 1962))
    zipf = dataset.Zipf(ids, s=1.0, seed=3)
    rng = random.Random(5)
    counts = Counter(zipf.sample(rng) for _ in range(50_000))
    assert set(counts) <= set(ids)
    harmonic = sum(1 / k for k in range(1, len(ids) + 1))
    hottest = zipf.items[0]
    assert counts[hottest] / 50_000 == pytest.approx(1 / harmonic, rel=0.1)
    top_10 = sum(n for _, n in counts.most_common(10)) / 50_000
    assert top_10 > 0.35  # a uniform pick would give 1 %
    assert hottest != ids[0] or zipf.items[1] != ids[1]  # ranks are shuffled
    assert dataset.Zipf(ids, s=1.0, seed=3).items == zipf.items  # and reproducible


async def test_mix_issues_the_deathstarbench_shares_through_existing_rpcs(stall_server):
    base_url, target = stall_server
    target.seen = 100  # no stall
    ids = [11, 12, 13]
    mix = Mix(base_url, ids, ["t1", "t2", "t3"], dataset.Zipf(ids), home_fanin=3)
    assert "feed service not running" in mix.description
    rng = random.Random(9)
    kinds: Counter[str] = Counter()
    async with ClientSession(base_url) as session:
        for _ in range(1000):
            kind, status = await mix.op(session, rng)
            assert status == 200
            kinds[kind] += 1
    assert 550 < kinds["home_timeline"] < 650
    assert 250 < kinds["user_timeline"] < 350
    assert 70 < kinds["compose_post"] < 130
    paths = Counter(p.split("?")[0].rsplit("/", 1)[-1] for p in target.paths)
    assert paths["following"] == kinds["home_timeline"]
    assert paths["posts"] == kinds["user_timeline"] + kinds["compose_post"]
    assert Mix(base_url, ids, ["t"] * 3, dataset.Zipf(ids), use_feed=True).description.count(
        "GET /v1/feed"
    )


def test_scenarios_always_start_with_ceiling():
    assert parse_scenarios("profile") == ["ceiling", "profile"]
    assert parse_scenarios("profile,ceiling,mix") == ["ceiling", "profile", "mix"]
    assert parse_scenarios("all") == ["ceiling", "mix", "profile", "graph", "post"]
    with pytest.raises(ValueError, match="nope"):
        parse_scenarios("nope")


def test_report_has_every_figure_ratios_to_ceiling_and_the_environment(tmp_path):
    ceiling = fake_step(400, [2.0] * 99 + [4.0])
    profile_steps = [fake_step(100, [4.0] * 99 + [8.0]), fake_step(200, [6.0] * 99 + [90.0])]
    results = [
        report.ScenarioResult("ceiling", "GetCaller", ceiling, [ceiling]),
        report.ScenarioResult(
            "profile",
            "GetUser Zipf",
            profile_steps[0],
            profile_steps,
            find_max=find_max(lambda r: profile_steps[0] if r < 150 else profile_steps[1]),
            extra={"cache_hit_rate": 0.99, "post_cards_cache_hit_rate": 0.98},
        ),
    ]
    results[0].find_max = find_max(lambda r: ceiling, start_rate=400, max_rate=400)
    built = report.build(
        results,
        command=["socialmesh", "bench"],
        target="stack started by bench",
        settings={"duration": 1.0},
        dataset={"graph": "socfb-Reed98"},
        notes=["a note"],
        cores=2,
    )
    loaded = json.loads(json.dumps(built))
    assert set(loaded) >= {
        "command",
        "environment",
        "generator",
        "scenarios",
        "settings",
        "dataset",
        "notes",
    }
    env = loaded["environment"]
    assert env["cores"] and env["python"] and "aiohttp" in env["packages"]
    assert "git_commit" in env and "load_average" in env
    profile = loaded["scenarios"]["profile"]
    assert profile["mode"] == "find-max" and profile["figures"]["max_rate"] == 100
    assert profile["ratio_to_ceiling"]["max_rate"] == 0.25
    assert profile["ratio_to_ceiling"]["p50"] == pytest.approx(2.0, rel=0.01)
    assert set(profile["result"]["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "mean"}
    assert profile["result"]["statuses"] == {"200": 100}
    assert profile["result"]["generator"]["cpu_share_of_one_core"] == 0.1
    assert profile["cache_hit_rate"] == 0.99
    assert len(profile["steps"]) == 2 and profile["result"]["timeline"][0]["ok"] == 100
    assert loaded["generator"]["cpu_share_of_machine"] is not None
    text = report.table(built)
    assert "x ceiling" in text and "note: a note" in text and "cache_hit_rate: 0.99" in text
    assert "post_cards_cache_hit_rate: 0.98" in text  # every cache a scenario reads
    written = report.plot(built, results, tmp_path)
    assert {p.name for p in written} == {
        "latency_over_time.png",
        "latency_cdf.png",
        "throughput_vs_offered.png",
    }
    assert all(p.stat().st_size > 1000 for p in written)


@pytest.fixture
def users_stub(user_service: RunningService) -> user_pb2_grpc.UserServiceStub:
    return user_pb2_grpc.UserServiceStub(user_service.channel)


async def test_get_caller_returns_the_token_s_user_and_session(users_stub):
    handle = unique()
    password = "correct horse battery"
    created = await users_stub.CreateUser(
        user_pb2.CreateUserRequest(handle=handle, email=f"{handle}@example.com", password=password)
    )
    login = await users_stub.Login(user_pb2.LoginRequest(handle=handle, password=password))
    caller = await users_stub.GetCaller(
        user_pb2.GetCallerRequest(), metadata=auth(login.access_token)
    )
    claims = jwt.decode(login.access_token, options={"verify_signature": False})
    assert caller.user_id == created.user_id
    assert caller.session_id == int(claims["sid"]) and caller.session_id > 0

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users_stub.GetCaller(user_pb2.GetCallerRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users_stub.GetCaller(user_pb2.GetCallerRequest(), metadata=auth("garbage"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
