"""RANKED "For you": out-of-network candidates, the ensemble, the learned model, experiments.

Real services over gRPC with the real PostgreSQL/Redis of the session mesh; the
training and report tests write a synthetic log straight into the feed schema
(the tables the event consumers fill), with ids no real account has.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from socialmesh.feed.v1 import feed_pb2
from socialmesh.graph.v1 import graph_pb2
from socialmesh.post.v1 import events_pb2 as post_events
from socialmesh.post.v1 import post_pb2

from services.feed import admin, ranking
from services.feed.ranking import experiments, features, learn
from services.feed.ranking import model as model_files
from services.feed.ranking.features import Facts, feature_vector
from services.feed.ranking.model import ModelSlot, RankerModel
from services.feed.servicer import FeedServicer
from services.feed.store import COMMENT, LIKE, PUBLIC, UNLIKE, Feedback, FeedStore
from services.kit.consumers import EventMeta
from services.kit.ids import EPOCH_MS

from .conftest import Infra, Mesh, Person
from .feed_support import followed, read
from .helpers import eventually, follow, like, publish, violations

FOLLOWING = feed_pb2.FEED_KIND_FOLLOWING
RANKED = feed_pb2.FEED_KIND_RANKED
SUGGESTED = feed_pb2.FEED_REASON_SUGGESTED


@pytest.fixture
def service(mesh: Mesh) -> FeedServicer:
    servicer = mesh["feed"].host.servicer
    assert isinstance(servicer, FeedServicer)
    return servicer


@pytest.fixture
def models(service: FeedServicer, tmp_path: Path) -> Iterator[Path]:
    """An empty model directory for the service for one test (then its own again)."""
    before = service.models
    service.models = ModelSlot(tmp_path / "models")
    service.models.load()
    yield tmp_path / "models"
    service.models = before


def sources(service: FeedServicer, viewer: Person, reply) -> dict[int, str]:
    """post -> candidate source, read from the (server-side) tracking tokens."""
    return {
        i.post_id: service._tracking.open(viewer.id, i.tracking_token, "t").source
        for i in reply.items
    }


async def ranked_ids(feed, who: Person) -> list[int]:
    reply = await read(feed, who, RANKED, page_size=100)
    assert reply.kind == RANKED
    return [i.post_id for i in reply.items]


async def test_co_liked_posts_reach_a_viewer_who_follows_no_one(
    feed, posts, make_person, service, models
):
    author, viewer, peer = await make_person(), await make_person(), await make_person()
    shared = await publish(posts, author, "we both like this")
    tip = await publish(posts, author, "only the peer liked this")
    await like(posts, viewer, shared)
    await like(posts, peer, shared)
    await like(posts, peer, tip)

    async def suggested() -> bool:
        return tip.post_id in await ranked_ids(feed, viewer)

    await eventually(suggested)
    reply = await read(feed, viewer, RANKED, page_size=100)
    (item,) = [i for i in reply.items if i.post_id == tip.post_id]
    assert item.reason == SUGGESTED and followed(reply) == []  # follows no one
    assert sources(service, viewer, reply)[tip.post_id] == features.CO_ENGAGEMENT
    # The source stays server-side: nothing in the response names it.
    assert b"co-engagement" not in reply.SerializeToString()
    assert tip.post_id in {p.post_id for p in reply.posts}
    assert author.id in {a.user_id for a in reply.authors}
    # FOLLOWING is the viewer's network only.
    assert (await read(feed, viewer, FOLLOWING)).items == []
    # Already seen (an impression) is not suggested again in a new session.
    seen = feed_pb2.Impression(
        impression_id=f"seen-{tip.post_id}",
        tracking_token=item.tracking_token,
        post_id=tip.post_id,
        surface=feed_pb2.SURFACE_HOME_RANKED,
    )
    await feed.RecordImpressions(
        feed_pb2.RecordImpressionsRequest(impressions=[seen]), metadata=viewer.md
    )
    assert tip.post_id not in await ranked_ids(feed, viewer)
    db = service._rt.db
    source = await db.primary.fetchval(
        "SELECT source FROM feed.impressions WHERE viewer_id = $1", viewer.id
    )
    assert source == features.CO_ENGAGEMENT


async def test_suggestions_never_include_what_a_stranger_may_not_see(
    feed, posts, graph, make_person, service, models
):
    author, fan, stranger = await make_person(), await make_person(), await make_person()
    shy = await make_person(private=True)
    blocker, muted = await make_person(), await make_person()
    await follow(graph, fan, author)
    await graph.FollowUser(graph_pb2.FollowUserRequest(user_id=shy.id), metadata=fan.md)
    await graph.AcceptFollowRequest(
        graph_pb2.AcceptFollowRequestRequest(requester_id=fan.id), metadata=shy.md
    )
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=stranger.id), metadata=blocker.md)
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=muted.id), metadata=stranger.md)
    common = await publish(posts, author, "public, liked by both #oon")
    friends = await publish(
        posts, author, "friends only #oon", visibility=post_pb2.VISIBILITY_FOLLOWERS
    )
    private = await publish(posts, shy, "a private account's public post #oon")
    blocked = await publish(posts, blocker, "by someone who blocked the stranger #oon")
    quiet = await publish(posts, muted, "by someone the stranger muted #oon")
    fine = await publish(posts, fan, "an ordinary public post #oon")
    forbidden = {friends.post_id, private.post_id, blocked.post_id, quiet.post_id}
    await like(posts, stranger, common)
    for post in (common, friends, private, blocked, quiet, fine):
        await like(posts, fan, post)  # the stranger's co-liker likes them all

    async def suggested() -> bool:
        return fine.post_id in await ranked_ids(feed, stranger)

    async def mute_applied() -> bool:
        return muted.id in await service.timelines.muted(stranger.id)

    await eventually(suggested)  # the pipeline ran for the stranger...
    await eventually(mute_applied)
    # ...and the candidate sources (which know nothing of accounts) offered the
    # private account's, the blocker's and the muted account's posts...
    candidates = await service._out_of_network(stranger.id)
    assert {private.post_id, blocked.post_id, quiet.post_id} <= set(candidates)
    assert friends.post_id not in candidates  # FOLLOWERS posts: never candidates
    # ...yet none of them is ever shown, in any tab, page after page.
    for kind in (RANKED, FOLLOWING):
        token = ""
        shown: set[int] = set()
        while True:
            reply = await read(feed, stranger, kind, page_size=5, page_token=token)
            shown |= {i.post_id for i in reply.items} | {p.post_id for p in reply.posts}
            token = reply.next_page_token
            if not token:
                break
        assert not shown & forbidden, kind


async def test_ranking_without_a_model_and_with_one_that_breaks(
    feed, posts, graph, make_person, service, models, monkeypatch
):
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    await read(feed, fan)
    post = await publish(posts, idol)

    async def arrived() -> bool:
        return post.post_id in followed(await read(feed, fan, RANKED))

    await eventually(arrived)  # no model file: RANKED still ranks
    assert service.models.current() is None
    assert ranking.weights(ranking.RankingConfig(), has_model=False) == pytest.approx(
        (0.4 / 0.7, 0.3 / 0.7, 0.0)
    )

    class Broken:
        def predict_proba(self, rows):
            raise RuntimeError("model exploded")

    service.models.model = RankerModel("broken", Broken(), features.FEATURE_NAMES)
    service.models._checked = float("inf")  # no reload over the broken one
    reply = await read(feed, fan, RANKED)
    assert reply.kind == FOLLOWING and [i.post_id for i in reply.items] == [post.post_id]

    async def no_candidates(viewer: int):
        raise ConnectionError("PostgreSQL went away")

    service.models.model = None
    monkeypatch.setattr(service, "_out_of_network", no_candidates)
    reply = await read(feed, fan, RANKED)
    assert reply.kind == FOLLOWING and [i.post_id for i in reply.items] == [post.post_id]


# -- training -------------------------------------------------------------------------


def snowflake(at: datetime, n: int) -> int:
    return ((int(at.timestamp() * 1000) - EPOCH_MS) << 22) | (n & ((1 << 22) - 1))


def fake_ids(n: int) -> list[int]:
    base = random.randrange(10**15, 9 * 10**15)
    return [base + i for i in range(n)]


async def synthetic_log(mesh: Mesh, *, viewers: int = 60, posts_each: int = 12) -> datetime:
    """Impressions where engagement depends on one feature (the post's prior likes):
    popular posts are engaged with 75 % of the time, the rest 3 %. Returns the
    impressions' time."""
    db = mesh["feed"].host.runtime.db
    rng = random.Random(7)
    shown = datetime.now(UTC) - timedelta(hours=2)
    created = shown - timedelta(hours=1)
    post_ids = [snowflake(created, rng.randrange(1 << 22)) for _ in range(40)]
    authors = fake_ids(40)
    popular = set(post_ids[:20])
    fans = fake_ids(10)
    await db.primary.execute(
        """INSERT INTO feed.posts (post_id, author_id, visibility, hashtags, created_at)
           SELECT p, a, $3, '{}', $4 FROM unnest($1::bigint[], $2::bigint[]) AS t(p, a)""",
        post_ids,
        authors,
        PUBLIC,
        created,
    )
    rows: list[tuple[int, int, int, int, int, datetime]] = []
    event = random.randrange(10**15, 9 * 10**15)
    for post_id, author_id in zip(post_ids, authors, strict=True):
        if post_id in popular:  # prior likes, before anyone was shown the post
            for f in fans:
                event += 1
                rows.append((event, f, post_id, author_id, LIKE, created + timedelta(minutes=5)))
    impressions = []
    for viewer in fake_ids(viewers):
        for post_id, author_id in rng.sample(list(zip(post_ids, authors, strict=True)), posts_each):
            impressions.append((viewer, post_id))
            chance = 0.75 if post_id in popular else 0.03
            if rng.random() < chance:
                event += 1
                kind = LIKE if rng.random() < 0.8 else COMMENT
                rows.append((event, viewer, post_id, author_id, kind, shown + timedelta(minutes=2)))
    await db.primary.executemany(
        """INSERT INTO feed.interactions (event_id, viewer_id, post_id, author_id, kind,
               occurred_at) VALUES ($1, $2, $3, $4, $5, $6)""",
        rows,
    )
    await db.primary.execute(
        """INSERT INTO feed.impressions (viewer_id, impression_id, post_id, surface, position,
               served_kind, served_rank, score, arm, dwell_ms, display_time, recorded_at, source)
           SELECT v, 'syn-' || p, p, 1, 0, 1, 0, 0, 'baseline-v1', 0, $3, $3, $4
           FROM unnest($1::bigint[], $2::bigint[]) AS t(v, p)""",
        [v for v, _ in impressions],
        [p for _, p in impressions],
        shown,
        features.TRENDING,
    )
    return shown


def facts(likes: int) -> Facts:
    return Facts(1, 3.0, likes, 0, 0, 0, 0, 0, False)


async def test_train_ranker_learns_writes_a_version_and_the_service_loads_it(
    feed, posts, graph, make_person, mesh, service, models, monkeypatch
):
    shown = await synthetic_log(mesh)
    db = mesh["feed"].host.runtime.db
    since = shown - timedelta(seconds=1)
    path, meta = await learn.train(db, models, since=since, min_rows=200)
    assert path.parent == models and path.name.startswith("ranker-") and path.suffix == ".joblib"
    assert (models / "current").read_text().strip() == path.name
    assert meta["rows"] >= 720 and 0 < meta["positives"] < meta["rows"]
    assert meta["holdout_auc"] > 0.75  # the feature it depends on was learned
    assert meta["inference_ms_per_page"] > 0
    loaded = model_files.load_current(models)
    assert loaded is not None and loaded.version == path.stem.removeprefix("ranker-")
    assert loaded.metadata["rows"] == meta["rows"]
    popular, plain = loaded.predict([feature_vector(facts(10)), feature_vector(facts(0))])
    assert popular > plain + 0.3  # predictions order by the learned feature

    # The service picks up the new pointer (reload) and ranks with the model.
    monkeypatch.setattr(model_files, "RELOAD_CHECK_SECONDS", 0.0)
    assert service.models.current() is not None
    assert service.models.current().version == loaded.version
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    await read(feed, fan)
    post = await publish(posts, idol)

    async def arrived() -> bool:
        return post.post_id in followed(await read(feed, fan, RANKED))

    await eventually(arrived)
    calls = []
    real = ranking.rank

    def spy(*args, **kwargs):
        calls.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(ranking, "rank", spy)
    assert (await read(feed, fan, RANKED)).kind == RANKED
    assert calls and calls[-1] is not None and calls[-1].version == loaded.version

    # A second training is a new version; the pointer moves, the service follows.
    await asyncio.sleep(1.1)
    second, _ = await learn.train(db, models, since=since, min_rows=200, estimator="hgb")
    assert second != path and path.exists()
    assert service.models.current().version == second.stem.removeprefix("ranker-")


async def test_train_ranker_refuses_with_too_little_data(
    infra: Infra, mesh, monkeypatch, tmp_path, capsys
):
    with pytest.raises(learn.NotEnoughData, match="not enough data to train"):
        learn.fit(learn.TrainingSet(*_tiny()), min_rows=200)
    monkeypatch.setenv("DATABASE_URL", infra.database_url)
    args = argparse.Namespace(
        data_dir=str(tmp_path),
        out=str(tmp_path / "models"),
        days=1 / 86400,  # the last second: (almost) nothing
        estimator="logistic",
        min_rows=10**9,
        min_positives=20,
        page_size=500,
    )
    assert await asyncio.to_thread(admin.train_ranker, args) == 1
    assert "not enough data to train" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def _tiny():
    import numpy as np

    return np.zeros((3, len(features.FEATURE_NAMES))), np.array([0, 1, 0])


# -- experiments ---------------------------------------------------------------------


def test_assignment_is_deterministic_and_follows_the_weights():
    (exp,) = experiments.parse(
        {
            "experiments": [
                {
                    "name": "weights",
                    "arms": [
                        {"name": "control", "weight": 50},
                        {"name": "model-heavy", "weight": 30, "params": {"w_model": 0.6}},
                        {"name": "fresh", "weight": 20, "params": {"half_life_hours": 6}},
                    ],
                }
            ]
        }
    )
    users = range(1, 10_001)
    first = [exp.assign(u).name for u in users]
    assert first == [exp.assign(u).name for u in users]  # deterministic
    for arm, share in (("control", 0.5), ("model-heavy", 0.3), ("fresh", 0.2)):
        assert abs(first.count(arm) / 10_000 - share) <= 0.02, arm
    # Another experiment splits the same users independently.
    (other,) = experiments.parse(
        {"experiments": [{"name": "other", "arms": [{"name": "a"}, {"name": "b"}]}]}
    )
    together = sum(
        1 for u in users if (exp.assign(u).name == "control") == (other.assign(u).name == "a")
    )
    assert abs(together / 10_000 - 0.5) <= 0.02
    assignment = experiments.assign([exp], 42, ranking.RankingConfig())
    arm = exp.assign(42)
    assert assignment.label == f"weights={arm.name}"
    if arm.name == "model-heavy":
        assert assignment.config.w_model == 0.6
    for bad in (
        {"experiments": [{"name": "x y", "arms": [{"name": "a"}, {"name": "b"}]}]},
        {"experiments": [{"name": "x", "arms": [{"name": "a"}]}]},
        {"experiments": [{"name": "x", "arms": [{"name": "a", "params": {"nope": 1}}, {}]}]},
        {"experiments": [{"name": "x", "arms": [{"name": "a", "weight": 0}, {"name": "b"}]}]},
    ):
        with pytest.raises(experiments.ConfigError):
            experiments.parse(bad)


async def test_served_pages_carry_the_assigned_arm_and_log_exposure(
    feed, posts, graph, make_person, service, models
):
    name = f"exp{random.randrange(10**9)}"
    (exp,) = experiments.parse(
        {
            "experiments": [
                {
                    "name": name,
                    "arms": [
                        {"name": "control", "weight": 1},
                        {"name": "recent", "weight": 1, "params": {"half_life_hours": 1}},
                    ],
                }
            ]
        }
    )
    idol, fan = await make_person(), await make_person()
    await follow(graph, fan, idol)
    await read(feed, fan)
    post = await publish(posts, idol)

    async def arrived() -> bool:
        return post.post_id in followed(await read(feed, fan, RANKED))

    await eventually(arrived)
    before = service.config
    service.config = dataclasses.replace(before, experiments=(exp,))
    try:
        reply = await read(feed, fan, RANKED, page_size=1)
        second = await read(feed, fan, RANKED, page_size=1, page_token=reply.next_page_token)
    finally:
        service.config = before
    arm = exp.assign(fan.id).name
    for page in (reply, second):
        for item in page.items:
            opened = service._tracking.open(fan.id, item.tracking_token, "t")
            assert opened.arm == f"{name}={arm}"
    rows = await service._rt.db.primary.fetch(
        "SELECT arm, item_count FROM feed.exposures WHERE experiment = $1 AND viewer_id = $2"
        " ORDER BY served_at",
        name,
        fan.id,
    )
    assert [r["arm"] for r in rows] == [arm, arm]  # one row per served page
    assert rows[0]["item_count"] == len(reply.items) == 1


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


async def test_experiment_report_on_a_known_log(mesh, infra: Infra, monkeypatch, capsys):
    db = mesh["feed"].host.runtime.db
    name = f"rep{random.randrange(10**9)}"
    shown = datetime.now(UTC) - timedelta(hours=1)
    arms = {"a": (1000, 100), "b": (1000, 150)}
    event = random.randrange(10**15, 9 * 10**15)
    for arm, (n, k) in arms.items():
        viewers = fake_ids(n // 10)  # 100 users, 10 impressions each
        pairs = [(v, snowflake(shown, i)) for v in viewers for i in range(10)]
        await db.primary.execute(
            """INSERT INTO feed.impressions (viewer_id, impression_id, post_id, surface,
                   position, served_kind, served_rank, score, arm, dwell_ms, display_time,
                   recorded_at)
               SELECT v, 'rep-' || p, p, 1, 0, 1, 0, 0, $3, 0, $4, $4
               FROM unnest($1::bigint[], $2::bigint[]) AS t(v, p)""",
            [v for v, _ in pairs],
            [p for _, p in pairs],
            f"other=x;{name}={arm}",
            shown,
        )
        rows = []
        for v, p in pairs[:k]:  # engaged after the impression
            event += 1
            rows.append((event, v, p, 1, LIKE, shown + timedelta(minutes=1)))
        v, p = pairs[-1]  # engaged before it: not a click
        rows.append((event + 10**6, v, p, 1, LIKE, shown - timedelta(minutes=1)))
        await db.primary.executemany(
            """INSERT INTO feed.interactions (event_id, viewer_id, post_id, author_id, kind,
                   occurred_at) VALUES ($1, $2, $3, $4, $5, $6)""",
            rows,
        )
        for viewer in viewers:
            await FeedStore(db).record_exposures(viewer, [(name, arm)], 10)
    counts = await FeedStore(db).experiment_counts(name, shown - timedelta(minutes=5))
    report = experiments.report(name, counts)
    a, b = report.arms
    assert (a.arm, a.users, a.impressions, a.engaged) == ("a", 100, 1000, 100)
    assert (b.arm, b.users, b.impressions, b.engaged) == ("b", 100, 1000, 150)
    assert round(a.ctr, 3) == 0.100 and round(b.ctr, 3) == 0.150
    for stats, (n, k) in ((a, arms["a"]), (b, arms["b"])):
        low, high = wilson(k, n)
        assert round(stats.ci_low, 3) == round(low, 3) and round(stats.ci_high, 3) == round(high, 3)
    assert a.p_vs_control is None and b.p_vs_control is not None and b.p_vs_control < 0.01
    # the pooled two-proportion z-test, by hand
    pooled = 250 / 2000
    z = (0.15 - 0.10) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert b.p_vs_control == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-6)
    assert report.p_value == pytest.approx(b.p_vs_control)
    # The command prints the same numbers as a table.
    monkeypatch.setenv("DATABASE_URL", infra.database_url)
    args = argparse.Namespace(experiment=name, days=1.0, data_dir=".socialmesh")
    assert await asyncio.to_thread(admin.experiments_report, args) == 0
    out = capsys.readouterr().out
    assert f"experiment {name}" in out
    assert "0.1000" in out and "0.1500" in out and f"[{a.ci_low:.4f}, {a.ci_high:.4f}]" in out


async def test_the_interaction_log_takes_each_event_once_and_in_any_order(service, mesh):
    def meta(event_id: int) -> EventMeta:
        return EventMeta(event_id, "test", 0, datetime.now(UTC), "test")

    viewer, author = fake_ids(2)
    post_id = snowflake(datetime.now(UTC), random.randrange(1 << 22))
    base = random.randrange(10**15, 9 * 10**15)
    liked = post_events.PostLiked(post_id=post_id, user_id=viewer, post_author_id=author)
    for _ in range(3):  # redelivered
        await service._log_liked(liked, meta(base))
    await service._log_unliked(
        post_events.PostUnliked(post_id=post_id, user_id=viewer, post_author_id=author),
        meta(base + 1),
    )
    db = service._rt.db
    kinds = await db.primary.fetch(
        "SELECT kind FROM feed.interactions WHERE post_id = $1 ORDER BY event_id", post_id
    )
    assert [r["kind"] for r in kinds] == [LIKE, UNLIKE]
    # A PostDeleted consumed before its PostCreated: the post stays deleted.
    await service._log_post_deleted(
        post_events.PostDeleted(post_id=post_id, author_id=author), meta(base + 3)
    )
    created = post_events.PostCreated(
        post_id=post_id,
        author_id=author,
        visibility=post_pb2.VISIBILITY_PUBLIC,
        hashtags=["late"],
    )
    await service._log_post_created(created, meta(base + 2))
    row = await db.primary.fetchrow("SELECT * FROM feed.posts WHERE post_id = $1", post_id)
    assert row["deleted"] and row["visibility"] == PUBLIC and row["hashtags"] == ["late"]
    assert await service.store.unseen_public(viewer + 1, [post_id]) == {}


async def test_a_session_scores_followed_and_suggested_candidates_together(
    feed, posts, graph, make_person, service, models
):
    """One scoring run takes the 40 followed posts and the peer's co-liked ones.

    (Its latency is a benchmark figure, not a test assertion: see docs/feed.md.)
    """
    authors = [await make_person() for _ in range(4)]
    viewer, peer = await make_person(), await make_person()
    for author in authors:
        await follow(graph, viewer, author)
    await read(feed, viewer)
    made = [await publish(posts, authors[i % 4], f"#bench post {i}") for i in range(40)]
    for post in made[:10]:
        await like(posts, viewer, post)
        await like(posts, peer, post)
    extra = [await publish(posts, peer, f"#bench peer {i}") for i in range(10)]
    for post in extra:
        await like(posts, peer, post)

    async def ready() -> bool:
        return extra[-1].post_id in await ranked_ids(feed, viewer)

    await eventually(ready)
    keys = await service.timelines.sources(viewer.id)
    scored, _, _ = await service._score(viewer.id, keys, set(), Feedback(), service.config.ranking)
    ids = {item.entry.post_id for item in scored}
    assert {p.post_id for p in made} <= ids
    assert ids & {p.post_id for p in extra}  # co-engagement: liked by who likes what I like


async def test_who_to_follow_adds_shared_interests_after_friends_of_friends(
    feed, posts, graph, make_person
):
    """Co-engagement: people who like what I like, and authors whose posts I like."""
    me, friend, fof, author, co_liker, muted, blocker = [await make_person() for _ in range(7)]
    await follow(graph, me, friend)
    await follow(graph, friend, fof)
    post = await publish(posts, author, "worth liking")
    for who in (me, co_liker, muted, blocker):
        await like(posts, who, post)
    await graph.MuteUser(graph_pb2.MuteUserRequest(user_id=muted.id), metadata=me.md)
    await graph.BlockUser(graph_pb2.BlockUserRequest(user_id=me.id), metadata=blocker.md)
    interests = {author.id, co_liker.id}

    async def suggested() -> list[tuple[int, int, int]]:
        reply = await feed.ListSuggestedUsers(
            feed_pb2.ListSuggestedUsersRequest(page_size=50), metadata=me.md
        )
        return [(s.user.user_id, s.mutual_count, s.reason) for s in reply.users]

    async def interests_arrived() -> bool:  # the likes reached the feed's interaction log
        return interests <= {u for u, _, _ in await suggested()}

    await eventually(interests_arrived)
    ranked = await suggested()
    assert ranked[0] == (fof.id, 1, feed_pb2.SUGGESTION_REASON_FOLLOWED_BY_FOLLOWING)
    # Shared interests next, before accounts suggested only as popular.
    assert {(u, r) for u, _, r in ranked[1:3]} == {
        (author.id, feed_pb2.SUGGESTION_REASON_SHARED_INTERESTS),
        (co_liker.id, feed_pb2.SUGGESTION_REASON_SHARED_INTERESTS),
    }
    assert all(r == feed_pb2.SUGGESTION_REASON_POPULAR for _, _, r in ranked[3:])
    # The exclusions hold for shared interests too: muted, blocking, followed, me.
    assert not {u for u, _, _ in ranked} & {me.id, friend.id, muted.id, blocker.id}
    await follow(graph, me, author)
    assert author.id not in {u for u, _, _ in await suggested()}


async def test_graph_checks_suggestion_candidates(graph, make_person, infra: Infra):
    me = await make_person()
    for ids in ([0], [-5], list(range(1, 202))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await graph.ListSuggestedAccounts(
                graph_pb2.ListSuggestedAccountsRequest(viewer_id=me.id, candidate_ids=ids),
                metadata=me.md,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "candidateIds" in violations(err.value)
