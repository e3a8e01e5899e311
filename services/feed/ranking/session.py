"""RANKED sessions: candidates gathered and scored once, then paged by offset.

A session's candidates are the viewer's newest FOLLOWING entries (RANK_CANDIDATES)
plus out-of-network PUBLIC posts (co-engagement, affinity, trending; each source
capped at SOURCE_CAP), hydrated as the viewer may see them, given the features
query's facts and scored by `ranking.rank`. The scored list lives in Redis
(`feed:ranked:<viewer>:<session>`, RANKED_SESSION_TTL_SECONDS) and pages are cut
from it; feedback given since scoring counts from the next page on.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence, Set
from datetime import timedelta

import redis.asyncio as aioredis
from prometheus_client import Histogram
from socialmesh.feed.v1 import feed_pb2
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2

# The package itself (not `from . import rank`): `ranking.rank` is looked up at each
# call, so a test can swap the scorer.
from services.feed import ranking

from .. import trends
from ..config import FeedConfig
from ..cursors import RANKED, Newer, RankedAt
from ..pages import FeedPage, allowed
from ..peers import Peers, utcnow
from ..store import SOURCE_CAP, Feedback, FeedStore
from ..timelines import Entry, Timelines
from . import experiments, features
from .model import ModelSlot

RANK_SECONDS = Histogram(
    "feed_rank_seconds",
    "Scoring one RANKED session, by stage: candidates (sources and BatchGetPosts), "
    "facts (the features query), score (ensemble and batched model inference), total",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

#: How many FOLLOWING entries a RANKED session scores (plus up to SOURCE_CAP per
#: out-of-network source).
RANK_CANDIDATES = 200
#: Out-of-network affinity candidates are posts of the last this many days.
AFFINITY_DAYS = 7
RANKED_SESSION_TTL_SECONDS = 1800

#: post -> (author, source) of out-of-network candidates.
OutOfNetwork = Callable[[int], Awaitable[dict[int, tuple[int, str]]]]


def ranked_key(user_id: int, session: str) -> str:
    return f"feed:ranked:{user_id}:{session}"


class RankedSessions:
    """Scores a viewer's RANKED session and cuts pages from it."""

    def __init__(
        self,
        redis: aioredis.Redis,
        timelines: Timelines,
        store: FeedStore,
        trends: trends.Trends,
        peers: Peers,
        config: Callable[[], FeedConfig],
        models: ModelSlot,
        *,
        out_of_network: OutOfNetwork | None = None,
    ) -> None:
        self._redis = redis
        self._timelines = timelines
        self._store = store
        self._trends = trends
        self._peers = peers
        self._config = config
        #: The ranker model in use (swapped by operators and tests).
        self.models = models
        #: Where out-of-network candidates come from (default: `self.out_of_network`).
        self._outside = out_of_network or self.out_of_network

    async def page(
        self,
        viewer: int,
        keys: Sequence[str],
        cursor: RankedAt | None,
        size: int,
        muted: Set[int],
        feedback: Feedback,
    ) -> FeedPage:
        """A RANKED page from the viewer's ranked session (scored once, paged by offset)."""
        feedback_hidden, less_authors = feedback.hidden_posts, feedback.less_authors
        redis = self._redis
        known: dict[int, post_pb2.Post] = {}
        config = self._config()
        assignment = experiments.assign(config.experiments, viewer, config.ranking)
        session = cursor.session if cursor is not None else ""
        offset = cursor.offset if cursor is not None else 0
        top = cursor.top if cursor is not None else ""
        if not session or not await redis.exists(ranked_key(viewer, session)):
            # A new session (or an expired one, which starts over from the top).
            session, offset = uuid.uuid4().hex[:16], 0
            scored, known, top = await asyncio.wait_for(
                self.score(viewer, keys, muted, feedback, assignment.config),
                timeout=config.rank_timeout_seconds,
            )
            key = ranked_key(viewer, session)
            pipe = redis.pipeline(transaction=True)
            if scored:
                pipe.rpush(key, *(json.dumps([s.entry.member, s.score, s.source]) for s in scored))
            else:
                pipe.rpush(key, json.dumps(["", 0.0, ""]))  # an empty session still exists
            pipe.expire(key, RANKED_SESSION_TTL_SECONDS)
            await pipe.execute()
        rows = await redis.lrange(ranked_key(viewer, session), offset, offset + size * 2 - 1)
        candidates: list[tuple[Entry, float, str]] = []
        for raw in rows:
            member, score, *rest = json.loads(raw)
            if member:
                source = str(rest[0]) if rest else features.IN_NETWORK
                candidates.append((Entry.parse(member), float(score), source))
        # Feedback given since the session was scored counts from this page on.
        kept = {
            e.member
            for e, _, _ in candidates
            if allowed(e, muted, feedback_hidden) and e.author_id not in less_authors
        }
        missing = [
            e.post_id for e, _, _ in candidates if e.member in kept and e.post_id not in known
        ]
        cards: dict[int, user_pb2.User] = {}
        if missing:
            known.update(await self._peers.hydrate(missing, cards))
        entries: list[Entry] = []
        scores: list[float] = []
        sources: list[str] = []
        examined = 0
        for entry, score, source in candidates:
            if len(entries) == size:
                break
            examined += 1
            if entry.member in kept and entry.post_id in known:
                entries.append(entry)
                scores.append(score)
                sources.append(source)
        more = examined < len(candidates) or len(rows) == size * 2
        if assignment.arms:
            await self._store.record_exposures(viewer, assignment.arms, len(entries))
        return FeedPage(
            entries=entries,
            posts=known,
            cards=cards,
            kind=RANKED,
            next_cursor=RankedAt(session, offset + examined, top) if more else None,
            newer_cursor=Newer(top),
            new_item_count=(
                await self._timelines.count_newer(keys, top) if cursor is not None else 0
            ),
            scores=scores,
            first_rank=offset,
            arm=assignment.label,
            sources=sources,
        )

    async def out_of_network(self, viewer: int) -> dict[int, tuple[int, str]]:
        """post -> (author, source) of PUBLIC posts from outside the viewer's network that
        the viewer has not been shown; each source capped at SOURCE_CAP, all batched."""
        since = utcnow() - timedelta(days=AFFINITY_DAYS)
        co, affine, snapshot = await asyncio.gather(
            self._store.co_engaged(viewer),
            self._store.affine_posts(viewer, since),
            self._trends.snapshot(trends.POSTS, feed_pb2.TREND_WINDOW_DAY),
        )
        hot = [int(p) for p, _ in await self._trends.page(snapshot, 0, SOURCE_CAP)]
        found: dict[int, str] = {}
        for source, post_ids in (
            (features.CO_ENGAGEMENT, [p for p, _ in co]),
            (features.AFFINITY, [p for p, _ in affine]),
            (features.TRENDING, hot),
        ):
            for post_id in post_ids:
                found.setdefault(post_id, source)
        # Trending counts any post: PUBLIC only, and nothing already shown, re-checked here.
        authors = await self._store.unseen_public(viewer, list(found))
        return {p: (authors[p], found[p]) for p in found if p in authors}

    async def score(
        self,
        viewer: int,
        keys: Sequence[str],
        muted: Set[int],
        feedback: Feedback,
        config: ranking.RankingConfig,
    ) -> tuple[list[ranking.Scored], dict[int, post_pb2.Post], str]:
        """The session's candidates, scored; the posts as the viewer may see them; the top."""
        started = time.perf_counter()
        hidden = feedback.hidden_posts
        in_network = await self._timelines.older(keys, None, RANK_CANDIDATES)
        top = in_network[0].member if in_network else ""
        candidates: dict[int, ranking.Candidate] = {}
        for entry in in_network:  # a post and its reposts: the newest entry stands for all
            if allowed(entry, muted, hidden):
                candidates.setdefault(entry.post_id, ranking.Candidate(entry, features.IN_NETWORK))
        for post_id, (author_id, source) in (await self._outside(viewer)).items():
            entry = Entry.post(post_id, author_id)
            if post_id not in candidates and allowed(entry, muted, hidden):
                candidates[post_id] = ranking.Candidate(entry, source)
        # Visibility as the viewer may see it now (FOLLOWERS, private, blocks, deleted).
        posts = await self._peers.hydrate(list(candidates)) if candidates else {}
        kept = [c for p, c in candidates.items() if p in posts]
        fetched = time.perf_counter()
        now = utcnow()
        rows = await self._store.facts(
            [viewer] * len(kept),
            [c.entry.post_id for c in kept],
            [posts[c.entry.post_id].author_id for c in kept],
            [now] * len(kept),
        )
        facts = {
            c.entry.post_id: features.Facts.from_row(c.entry.post_id, now, row, c.source)
            for c, row in zip(kept, rows, strict=True)
        }
        featured = time.perf_counter()
        scored = ranking.rank(
            kept,
            posts,
            facts,
            int(now.timestamp() * 1000),
            feedback,
            config,
            self.models.current(),
        )
        done = time.perf_counter()
        RANK_SECONDS.labels("candidates").observe(fetched - started)
        RANK_SECONDS.labels("facts").observe(featured - fetched)
        RANK_SECONDS.labels("score").observe(done - featured)
        RANK_SECONDS.labels("total").observe(done - started)
        return scored, posts, top
