"""`socialmesh bench --scenario fanout` end to end: behaviour, never speed.

A real stack bench starts (Envoy, every service, embedded PostgreSQL and Redis),
a tiny graph (one author, 50 followers), 2 posts per round, short read steps.
Asserted: every post reached every follower (Redis check and the sampled edge
reads), the Redis writes were counted (fan-out: one ZADD per follower timeline;
above the threshold: the one-time feed:celebs SADDs, then O(1)), and the feed
read steps ran through the edge.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services import bench
from services.benchkit.fanout import graph
from services.cli import build_parser

K = 50


def run_bench(tmp_path: Path, *extra: str) -> dict:
    args = build_parser().parse_args(
        [
            "bench",
            "--scenario",
            "fanout",
            "--fanout-followers",
            str(K),
            "--fanout-posts",
            "2",
            "--fanout-warm",
            "8",
            "--fanout-sample",
            "3",
            "--fanout-timeout",
            "20",
            "--posts-per-user",
            "1",
            "--rate",
            "10",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--no-plots",
            "--out",
            str(tmp_path / "out"),
            *extra,
        ]
    )
    assert bench.main(args) == 0
    (written,) = (tmp_path / "out").glob("*/report.json")
    return json.loads(written.read_text())


def test_fanout_is_opt_in_and_refused_against_an_edge_url():
    assert "fanout" not in bench.parse_scenarios("all")
    assert bench.parse_scenarios("fanout") == ["ceiling", "fanout"]
    args = build_parser().parse_args(
        ["bench", "--scenario", "fanout", "--edge-url", "http://127.0.0.1:9"]
    )
    assert bench.main(args) == 2


def test_graph_has_one_author_followed_by_everyone():
    g = graph(K)
    assert g.users == K + 1
    assert sorted(a for a, b in g.follows if b == 0) == list(range(1, K + 1))
    assert len(g.follows) == len(set(g.follows)) > K


@pytest.mark.parametrize("threshold", ["10000", "20"], ids=["fan-out", "read-time-merge"])
def test_fanout_scenario_reports_visible_in_all_and_writes(tmp_path, monkeypatch, threshold):
    monkeypatch.setenv("FEED_FANOUT_THRESHOLD", threshold)
    built = run_bench(tmp_path)
    assert built["environment"]["load_average"]
    scenarios = built["scenarios"]
    assert list(scenarios) == ["ceiling", "fanout", "feed-follow", "feed-ranked"]
    fan = scenarios["fanout"]["fanout"]
    assert fan["followers"] == K
    check = fan["redis_check"]
    assert check["all_visible_ms_from_response"]["missing"] == 0
    assert check["all_visible_ms_from_response"]["p50"] is not None
    assert [r["visible_in"] for r in check["per_post"]] == [K, K]
    edge = fan["edge_sample"]
    assert [r["sample_saw_it"] for r in edge["per_post"]] == [3, 3]
    assert edge["sample_max_ms_from_response"]["missing"] == 0
    writes = check["writes_per_post"]
    if threshold == "10000":
        assert {r["path"] for r in check["per_post"]} == {"fan-out"}
        assert fan["author_in_feed_celebrities"] is False
        # one ZADD per follower timeline (commands a script runs are counted)
        assert all(r["writes"]["zadd"] >= K for r in check["per_post"])
        assert all(r["evalsha_calls"] >= 1 for r in check["per_post"])
    else:
        assert {r["path"] for r in check["per_post"]} == {"read-time merge"}
        assert fan["author_in_feed_celebrities"] is True
        assert check["per_post"][0]["writes"]["sadd"] >= K  # crossing: once, sticky
        assert writes[1] < 10  # then O(1): ZADD + ZREMRANGEBYRANK on the author's set
    for name in ("feed-follow", "feed-ranked"):
        result = scenarios[name]["result"]
        assert result["ok"] > 0 and result["errors"] == 0, result["statuses"]
