"""FeedService: timelines kept by event consumers, read with cursors, ranked, and trends.

Write side (consumer group `feed`, typed events from post, graph and user):
a post is fanned out to its author's followers who read their feed in the last
`active_days` (ListFollowerIds pages, one pipeline per page), except for
accounts above `fanout_threshold` followers, whose posts go into one
per-author set merged at read time. Follows back-fill, unfollows, blocks,
mutes and deletions remove. Every effect is idempotent (ZADD/ZREM/SADD) and
follow/mute state is order-insensitive (`newer_than_applied`).

Read side: a page is cut from the merged sets by member cursors, filtered by
mutes and feedback, and hydrated with one BatchGetPosts(include_authors) under
the viewer's own token, so the post service drops whatever the viewer may not
see (FOLLOWERS posts of accounts they do not follow, private accounts, blocks,
deleted posts) and returns the authors' cards with the posts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2
from prometheus_client import Histogram
from socialmesh.feed.v1 import feed_pb2, feed_pb2_grpc
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import require_caller
from services.kit.consumers import EventMeta
from services.kit.errors import InvalidArgument
from services.kit.pagination import page_size
from services.kit.server import Runtime, ServicerBase
from services.kit.validation import Violations

from . import experiments, features, ranking, trends
from .config import FeedConfig
from .cursors import int_field, str_field
from .fanout import Fanout
from .interactions import InteractionLog
from .model import ModelSlot
from .peers import Peers, utcnow
from .store import SOURCE_CAP, Feedback, FeedStore, ImpressionRow
from .timelines import CELEBRITIES, Entry, ReadState, Timelines, celebs_key
from .tracking import Tracking, TrackingTokens

Handler = Callable[[Any, EventMeta], Awaitable[None]]

log = logging.getLogger("socialmesh.feed")

RANK_SECONDS = Histogram(
    "feed_rank_seconds",
    "Scoring one RANKED session, by stage: candidates (sources and BatchGetPosts), "
    "facts (the features query), score (ensemble and batched model inference), total",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

FOLLOWING = feed_pb2.FEED_KIND_FOLLOWING
RANKED = feed_pb2.FEED_KIND_RANKED
#: GetHomeFeed page sizes (feed.proto): default 20, at most 100.
FEED_DEFAULT_PAGE, FEED_MAX_PAGE = 20, 100
#: Trends page sizes (feed.proto).
TAG_DEFAULT_PAGE, TAG_MAX_PAGE = 10, 50
TREND_POST_DEFAULT_PAGE, TREND_POST_MAX_PAGE = 20, 100
MAX_IMPRESSIONS = 200
MAX_IMPRESSION_ID = 64
#: A partial page's `retry_after`: a returning user's rebuild (one read of each
#: followee's recent posts, in the background) takes well under this.
PARTIAL_RETRY_SECONDS = 1.0
#: How many FOLLOWING entries a RANKED session scores (plus up to SOURCE_CAP per
#: out-of-network source).
RANK_CANDIDATES = 200
#: Out-of-network affinity candidates are posts of the last this many days.
AFFINITY_DAYS = 7
RANKED_SESSION_TTL_SECONDS = 1800
#: A page drops what the viewer may not see; it reads further at most this often.
READ_ROUNDS = 3
FEEDBACK_KINDS = {
    feed_pb2.FEEDBACK_KIND_NOT_INTERESTED,
    feed_pb2.FEEDBACK_KIND_SHOW_LESS_FROM_AUTHOR,
    feed_pb2.FEEDBACK_KIND_SHOW_MORE,
}
#: ListSuggestedUsers sizes (feed.proto).
SUGGEST_DEFAULT, SUGGEST_MAX = 20, 50
#: Shared-interest candidates handed to graph (ListSuggestedAccounts.candidate_ids: 200).
SUGGEST_CANDIDATES = 200
TREND_WINDOWS = {feed_pb2.TREND_WINDOW_HOUR, feed_pb2.TREND_WINDOW_DAY}
FOLLOWING_ARM = "following"


_running: list[FeedServicer] = []


def running() -> list[FeedServicer]:
    """Feed servicers started in this process (operators' and tests' introspection)."""
    return list(_running)


def ranked_key(user_id: int, session: str) -> str:
    return f"feed:ranked:{user_id}:{session}"


@dataclass
class FeedPage:
    """One page cut from the timelines, before it becomes a response."""

    entries: list[Entry]
    posts: dict[int, post_pb2.Post]
    kind: int
    next_position: dict[str, object] | None
    newer_position: dict[str, object]
    new_item_count: int = 0
    scores: list[float] = field(default_factory=list)
    first_rank: int = 0
    arm: str = FOLLOWING_ARM
    #: Per entry, where a RANKED item came from (features.SOURCES).
    sources: list[str] = field(default_factory=list)
    #: Author and reposter cards already fetched for this page (by user id).
    cards: dict[int, user_pb2.User] = field(default_factory=dict)


def _suggestion_reason(account: graph_pb2.SuggestedAccount) -> feed_pb2.SuggestionReason.ValueType:
    if account.mutual_count:
        return feed_pb2.SUGGESTION_REASON_FOLLOWED_BY_FOLLOWING
    if account.from_candidates:
        return feed_pb2.SUGGESTION_REASON_SHARED_INTERESTS
    return feed_pb2.SUGGESTION_REASON_POPULAR


class FeedServicer(ServicerBase, feed_pb2_grpc.FeedServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = FeedConfig.from_env(os.environ)
        secret = runtime.settings.page_token_secret.encode() or secrets.token_bytes(32)
        self._tracking = TrackingTokens(secret)
        self._timelines: Timelines | None = None
        self._store: FeedStore | None = None
        self._trends: trends.Trends | None = None
        self._posts: post_pb2_grpc.PostServiceAsyncStub | None = None
        self._graph: graph_pb2_grpc.GraphServiceAsyncStub | None = None
        self._users: user_pb2_grpc.UserServiceAsyncStub | None = None
        self._upstream: Peers | None = None
        self.models = ModelSlot(Path(self.config.model_dir) if self.config.model_dir else None)

    async def on_ready(self) -> None:
        redis = self._rt.redis
        self._timelines = Timelines(redis, ttl_seconds=self.config.active_seconds)
        self._store = FeedStore(self._rt.db)
        self._trends = trends.Trends(redis)
        self._posts = post_pb2_grpc.PostServiceStub(self.peer("post"))
        self._graph = graph_pb2_grpc.GraphServiceStub(self.peer("graph"))
        self._users = user_pb2_grpc.UserServiceStub(self.peer("user"))
        self._upstream = Peers(redis, self.posts, self.graph, self.users)
        self.models.load()
        self.fanout = Fanout(redis, self.timelines, self.peers, self.config)
        self.trend_counter = trends.TrendCounter(redis, self.trends)
        self.interaction_log = InteractionLog(self.store)
        for job in (self.fanout, self.trend_counter, self.interaction_log):
            await self.consume(job.GROUP, job.handlers(), start=job.START)
        _running.append(self)

    async def on_stop(self) -> None:
        if self in _running:
            _running.remove(self)
        await super().on_stop()

    @property
    def timelines(self) -> Timelines:
        return self.ready(self._timelines)

    @property
    def store(self) -> FeedStore:
        return self.ready(self._store)

    @property
    def trends(self) -> trends.Trends:
        return self.ready(self._trends)

    @property
    def posts(self) -> post_pb2_grpc.PostServiceAsyncStub:
        return self.ready(self._posts)

    @property
    def graph(self) -> graph_pb2_grpc.GraphServiceAsyncStub:
        return self.ready(self._graph)

    @property
    def users(self) -> user_pb2_grpc.UserServiceAsyncStub:
        return self.ready(self._users)

    @property
    def peers(self) -> Peers:
        return self.ready(self._upstream)

    # The consumers' handlers under their former names (tests drive them directly).

    @property
    def _on_post_created(self) -> Handler:
        return self.fanout.on_post_created

    @property
    def _on_followed(self) -> Handler:
        return self.fanout.on_followed

    @property
    def _on_unfollowed(self) -> Handler:
        return self.fanout.on_unfollowed

    @property
    def _log_post_created(self) -> Handler:
        return self.interaction_log.on_post_created

    @property
    def _log_post_deleted(self) -> Handler:
        return self.interaction_log.on_post_deleted

    @property
    def _log_liked(self) -> Handler:
        return self.interaction_log.on_liked

    @property
    def _log_unliked(self) -> Handler:
        return self.interaction_log.on_unliked

    # -- read side -------------------------------------------------------------------

    async def _rebuild(self, viewer: int) -> None:
        """Refills a timeline from graph and post (a returning or new reader)."""
        followees = await self.peers.following(viewer)
        redis = self._rt.redis
        flags = (
            await redis.smismember(CELEBRITIES, [str(f) for f in followees]) if followees else []
        )
        celebs = [f for f, is_celeb in zip(followees, flags, strict=True) if is_celeb]
        ordinary = [f for f, is_celeb in zip(followees, flags, strict=True) if not is_celeb]
        pipe = redis.pipeline(transaction=True)
        pipe.delete(celebs_key(viewer))
        if celebs:
            pipe.sadd(celebs_key(viewer), *(str(c) for c in celebs))
        await pipe.execute()
        entries = await self.peers.author_posts(
            [viewer, *ordinary], since_days=self.config.active_days
        )
        await self.timelines.push([viewer], entries)
        await self.timelines.mark_built(viewer)

    def _allowed(self, entry: Entry, muted: set[int], hidden: set[int]) -> bool:
        return (
            entry.post_id not in hidden
            and entry.author_id not in muted
            and entry.sharer_id not in muted
        )

    async def _following(
        self,
        viewer: int,
        keys: Sequence[str],
        position: Mapping[str, object] | None,
        size: int,
        muted: set[int],
        hidden: set[int],
        first_batch: list[Entry] | None = None,
    ) -> FeedPage:
        """A FOLLOWING page: older than the cursor (or the top), or newer than it.

        `first_batch`: what `older` returns from the cursor, when already read."""
        tl = self.timelines
        if position is not None and "a" in position:  # newer_page_token
            after = str_field(position, "a")
            page = await self._cut(keys, after, size, muted, hidden, newer=True)
            top = page.last_examined or after
            page.entries.reverse()
            return FeedPage(
                entries=page.entries,
                posts=page.posts,
                cards=page.cards,
                kind=FOLLOWING,
                next_position=None,
                newer_position={"a": top},
                new_item_count=await tl.count_newer(keys, top),
            )
        before = str_field(position, "b") if position is not None else ""
        session_top = str_field(position, "t") if position is not None else ""
        page = await self._cut(keys, before, size, muted, hidden, newer=False, first=first_batch)
        if position is None:
            session_top = page.first_examined
        return FeedPage(
            entries=page.entries,
            posts=page.posts,
            cards=page.cards,
            kind=FOLLOWING,
            next_position=({"b": page.last_examined, "t": session_top} if page.more else None),
            newer_position={"a": session_top},
            new_item_count=await tl.count_newer(keys, session_top) if position else 0,
        )

    async def _cut(
        self,
        keys: Sequence[str],
        cursor: str,
        size: int,
        muted: set[int],
        hidden: set[int],
        *,
        newer: bool,
        first: list[Entry] | None = None,
    ) -> _Cut:
        """Walks the merged sets from `cursor`, keeping what the viewer may see."""
        cut = _Cut()
        seen: set[int] = set()
        for _ in range(READ_ROUNDS):
            want = (size - len(cut.entries)) * 2
            if first is not None:  # read with the prelude (`Timelines.open_read`)
                batch, first = first, None
            elif newer:
                batch = await self.timelines.newer(keys, cursor, want)
            else:
                batch = await self.timelines.older(keys, cursor or None, want)
            if not batch:
                cut.more = False
                return cut
            if not cut.first_examined:
                cut.first_examined = batch[0].member
            kept = {e.member: e for e in batch if self._allowed(e, muted, hidden)}
            posts: dict[int, post_pb2.Post] = {}
            if kept:
                # The authors' cards come with the posts (one call: post reads them
                # where it decides visibility); reposters' cards are added at the end.
                posts = await self.peers.hydrate([e.post_id for e in kept.values()], cut.cards)
            examined = 0
            for entry in batch:
                if len(cut.entries) == size:
                    break
                examined += 1
                cursor = cut.last_examined = entry.member
                if entry.post_id in posts and entry.post_id not in seen and entry.member in kept:
                    seen.add(entry.post_id)
                    cut.entries.append(entry)
                    cut.posts[entry.post_id] = posts[entry.post_id]
            if len(cut.entries) == size:
                cut.more = True
                return cut
            if len(batch) < want:  # every source is exhausted
                cut.more = False
                return cut
        cut.more = True
        return cut

    async def _ranked(
        self,
        viewer: int,
        keys: Sequence[str],
        position: Mapping[str, object] | None,
        size: int,
        muted: set[int],
        feedback: Feedback,
    ) -> FeedPage:
        """A RANKED page from the viewer's ranked session (scored once, paged by offset)."""
        feedback_hidden, less_authors = feedback.hidden_posts, feedback.less_authors
        redis = self._rt.redis
        known: dict[int, post_pb2.Post] = {}
        assignment = experiments.assign(self.config.experiments, viewer, self.config.ranking)
        session = str_field(position, "r") if position is not None else ""
        offset = int_field(position, "o") if position is not None else 0
        top = str_field(position, "t") if position is not None else ""
        if not session or not await redis.exists(ranked_key(viewer, session)):
            # A new session (or an expired one, which starts over from the top).
            session, offset = uuid.uuid4().hex[:16], 0
            scored, known, top = await asyncio.wait_for(
                self._score(viewer, keys, muted, feedback, assignment.config),
                timeout=self.config.rank_timeout_seconds,
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
        allowed = {
            e.member
            for e, _, _ in candidates
            if self._allowed(e, muted, feedback_hidden) and e.author_id not in less_authors
        }
        missing = [
            e.post_id for e, _, _ in candidates if e.member in allowed and e.post_id not in known
        ]
        cards: dict[int, user_pb2.User] = {}
        if missing:
            known.update(await self.peers.hydrate(missing, cards))
        entries: list[Entry] = []
        scores: list[float] = []
        sources: list[str] = []
        examined = 0
        for entry, score, source in candidates:
            if len(entries) == size:
                break
            examined += 1
            if entry.member in allowed and entry.post_id in known:
                entries.append(entry)
                scores.append(score)
                sources.append(source)
        more = examined < len(candidates) or len(rows) == size * 2
        if assignment.arms:
            await self.store.record_exposures(viewer, assignment.arms, len(entries))
        return FeedPage(
            entries=entries,
            posts=known,
            cards=cards,
            kind=RANKED,
            next_position={"r": session, "o": offset + examined, "t": top} if more else None,
            newer_position={"a": top},
            new_item_count=await self.timelines.count_newer(keys, top) if position else 0,
            scores=scores,
            first_rank=offset,
            arm=assignment.label,
            sources=sources,
        )

    async def _out_of_network(self, viewer: int) -> dict[int, tuple[int, str]]:
        """post -> (author, source) of PUBLIC posts from outside the viewer's network that
        the viewer has not been shown; each source capped at SOURCE_CAP, all batched."""
        since = utcnow() - timedelta(days=AFFINITY_DAYS)
        co, affine, snapshot = await asyncio.gather(
            self.store.co_engaged(viewer),
            self.store.affine_posts(viewer, since),
            self.trends.snapshot(trends.POSTS, feed_pb2.TREND_WINDOW_DAY),
        )
        hot = [int(p) for p, _ in await self.trends.page(snapshot, 0, SOURCE_CAP)]
        found: dict[int, str] = {}
        for source, post_ids in (
            (features.CO_ENGAGEMENT, [p for p, _ in co]),
            (features.AFFINITY, [p for p, _ in affine]),
            (features.TRENDING, hot),
        ):
            for post_id in post_ids:
                found.setdefault(post_id, source)
        # Trending counts any post: PUBLIC only, and nothing already shown, re-checked here.
        authors = await self.store.unseen_public(viewer, list(found))
        return {p: (authors[p], found[p]) for p in found if p in authors}

    async def _score(
        self,
        viewer: int,
        keys: Sequence[str],
        muted: set[int],
        feedback: Feedback,
        config: ranking.RankingConfig,
    ) -> tuple[list[ranking.Scored], dict[int, post_pb2.Post], str]:
        started = time.perf_counter()
        hidden = feedback.hidden_posts
        in_network = await self.timelines.older(keys, None, RANK_CANDIDATES)
        top = in_network[0].member if in_network else ""
        candidates: dict[int, ranking.Candidate] = {}
        for entry in in_network:  # a post and its reposts: the newest entry stands for all
            if self._allowed(entry, muted, hidden):
                candidates.setdefault(entry.post_id, ranking.Candidate(entry, features.IN_NETWORK))
        for post_id, (author_id, source) in (await self._out_of_network(viewer)).items():
            entry = Entry.post(post_id, author_id)
            if post_id not in candidates and self._allowed(entry, muted, hidden):
                candidates[post_id] = ranking.Candidate(entry, source)
        # Visibility as the viewer may see it now (FOLLOWERS, private, blocks, deleted).
        posts = await self.peers.hydrate(list(candidates)) if candidates else {}
        kept = [c for p, c in candidates.items() if p in posts]
        fetched = time.perf_counter()
        now = utcnow()
        rows = await self.store.facts(
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

    def _response(self, viewer: int, page: FeedPage, partial: bool) -> feed_pb2.GetHomeFeedResponse:
        scope = f"feed:{viewer}:{page.kind}"
        tokens = self._rt.page_tokens
        items = []
        for i, entry in enumerate(page.entries):
            tracking = Tracking(
                post_id=entry.post_id,
                kind=page.kind,
                position=page.first_rank + i,
                score=page.scores[i] if page.scores else 0.0,
                arm=page.arm,
                source=page.sources[i] if page.sources else features.IN_NETWORK,
            )
            items.append(
                feed_pb2.FeedItem(
                    post_id=entry.post_id,
                    reason=_reason(entry, page.sources[i] if page.sources else ""),
                    shared_by_user_id=entry.sharer_id or None,  # absent, never "0"
                    tracking_token=self._tracking.seal(viewer, tracking),
                )
            )
        post_ids = list(dict.fromkeys(e.post_id for e in page.entries))
        return feed_pb2.GetHomeFeedResponse(
            items=items,
            next_page_token=(
                tokens.encode(scope, dict(page.next_position)) if page.next_position else ""
            ),
            newer_page_token=tokens.encode(f"feed:{viewer}:{FOLLOWING}", page.newer_position),
            new_item_count=page.new_item_count,
            partial=partial,
            retry_after=_duration(PARTIAL_RETRY_SECONDS) if partial else None,
            kind=page.kind,  # type: ignore[arg-type]
            posts=[page.posts[p] for p in post_ids],
        )

    async def _feedback(self, viewer: int, state: ReadState, *, rebuilt: bool) -> Feedback:
        """The viewer's feedback; a query only for viewers flagged as having given any.

        The flag is set before a row is written (a flag without rows costs one
        query, never a lost row), and re-derived at every rebuild, so a flushed
        Redis (which also loses the timeline) re-learns it.
        """
        if not (state.gave_feedback or rebuilt):
            return Feedback()
        feedback = await self.store.feedback(viewer)
        if rebuilt and not state.gave_feedback and feedback.any():
            await self.timelines.mark_feedback_giver(viewer)
        return feedback

    async def GetHomeFeed(
        self, request: feed_pb2.GetHomeFeedRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.GetHomeFeedResponse:
        viewer = require_caller().user_id
        kind = request.kind or RANKED
        if kind not in (RANKED, FOLLOWING):
            raise InvalidArgument([("kind", "must be FEED_KIND_RANKED or FEED_KIND_FOLLOWING")])
        size = page_size(request.page_size, default=FEED_DEFAULT_PAGE, maximum=FEED_MAX_PAGE)
        tokens = self._rt.page_tokens
        # A newer_page_token (from either tab) refreshes FOLLOWING-style from its top.
        position = None
        if request.page_token:
            try:
                position = tokens.decode(f"feed:{viewer}:{kind}", request.page_token)
            except InvalidArgument:
                position = tokens.decode(f"feed:{viewer}:{FOLLOWING}", request.page_token)
                if position is None or "a" not in position:
                    raise
        # A FOLLOWING page older than its cursor: its first batch comes with the prelude.
        first = None
        if kind == FOLLOWING and (position is None or "a" not in position):
            first = (str_field(position, "b") if position is not None else "", size * 2)
        state = await self.timelines.open_read(viewer, first)
        partial = not state.built
        if partial:
            await self._rebuild(viewer)
            state = await self.timelines.open_read(viewer, first)  # the rebuild's sources
        feedback = await self._feedback(viewer, state, rebuilt=partial)
        keys, muted = state.sources, state.muted
        page: FeedPage | None = None
        if kind == RANKED and (position is None or "a" not in position):
            try:
                page = await self._ranked(
                    viewer,
                    keys,
                    position,
                    size,
                    muted,
                    feedback,
                )
            except InvalidArgument:
                raise
            except Exception:  # ranking must never take the feed down
                log.warning("ranking failed for %d; serving FOLLOWING", viewer, exc_info=True)
                position = None
        if page is None:
            page = await self._following(
                viewer, keys, position, size, muted, feedback.hidden_posts, state.batch
            )
        response = self._response(viewer, page, partial)
        people = [e.author_id for e in page.entries] + [
            e.sharer_id for e in page.entries if e.sharer_id
        ]
        if people:
            cards = dict(page.cards)
            missing = [p for p in dict.fromkeys(people) if p not in cards]
            if missing:
                cards.update((c.user_id, c) for c in await self.peers.authors(missing))
            response.authors.extend(cards[p] for p in dict.fromkeys(people) if p in cards)
        return response

    # -- impressions and feedback ----------------------------------------------------

    async def RecordImpressions(
        self, request: feed_pb2.RecordImpressionsRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.RecordImpressionsResponse:
        viewer = require_caller().user_id
        v = Violations()
        v.check(
            0 < len(request.impressions) <= MAX_IMPRESSIONS,
            "impressions",
            f"give 1 to {MAX_IMPRESSIONS} impressions",
        )
        rows: dict[str, ImpressionRow] = {}
        for i, imp in enumerate(request.impressions):
            at = f"impressions[{i}]"
            v.check(
                0 < len(imp.impression_id) <= MAX_IMPRESSION_ID,
                f"{at}.impression_id",
                f"1 to {MAX_IMPRESSION_ID} characters",
            )
            v.check(imp.post_id > 0, f"{at}.post_id", "must be a positive id")
            v.check(imp.position >= 0, f"{at}.position", "must not be negative")
            v.check(
                imp.dwell.seconds >= 0 and imp.dwell.nanos >= 0,
                f"{at}.dwell",
                "must not be negative",
            )
            try:
                tracking = self._tracking.open(viewer, imp.tracking_token, f"{at}.tracking_token")
            except InvalidArgument:
                v.add(f"{at}.tracking_token", "invalid or tampered tracking token")
                continue
            if not v.check(
                tracking.post_id == imp.post_id, f"{at}.tracking_token", "belongs to another post"
            ):
                continue
            rows.setdefault(
                imp.impression_id,
                ImpressionRow(
                    impression_id=imp.impression_id,
                    post_id=imp.post_id,
                    surface=int(imp.surface),
                    position=imp.position,
                    served_kind=tracking.kind,
                    served_rank=tracking.position,
                    score=tracking.score,
                    arm=tracking.arm,
                    source=tracking.source,
                    dwell_ms=imp.dwell.seconds * 1000 + imp.dwell.nanos // 1_000_000,
                    display_time=(
                        imp.display_time.ToDatetime(tzinfo=UTC)
                        if imp.HasField("display_time")
                        else None
                    ),
                ),
            )
        v.raise_if_any()
        recorded = await self.store.record_impressions(viewer, list(rows.values()))
        return feed_pb2.RecordImpressionsResponse(recorded_count=recorded)

    async def SubmitFeedback(
        self, request: feed_pb2.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.SubmitFeedbackResponse:
        viewer = require_caller().user_id
        v = Violations()
        v.check(request.post_id > 0, "post_id", "must be a positive id")
        v.check(request.kind in FEEDBACK_KINDS, "kind", "name a feedback kind")
        v.raise_if_any()
        if request.tracking_token:
            tracking = self._tracking.open(viewer, request.tracking_token, "tracking_token")
            if tracking.post_id != request.post_id:
                raise InvalidArgument([("tracking_token", "belongs to another post")])
        post = await self.peers.get_post(request.post_id)  # as the caller may see it
        await self.timelines.mark_feedback_giver(viewer)  # first: see `_feedback`
        recorded = await self.store.add_feedback(viewer, post.post_id, post.author_id, request.kind)
        return feed_pb2.SubmitFeedbackResponse(recorded=recorded)

    # -- trends ------------------------------------------------------------------------

    async def _trend_snapshot(self, what: str, window: int, token: str) -> tuple[str, int, str]:
        """(snapshot id, offset, scope) of a trends listing; a new snapshot for page 1."""
        if window not in TREND_WINDOWS:
            raise InvalidArgument([("window", "must be TREND_WINDOW_HOUR or TREND_WINDOW_DAY")])
        scope = f"trends:{what}:{window}"
        position = self._rt.page_tokens.decode(scope, token)
        if position is None:
            return await self.trends.snapshot(what, window), 0, scope
        snapshot = str_field(position, "k")
        offset = int_field(position, "o")
        if not await self.trends.snapshot_exists(snapshot):
            raise InvalidArgument([("page_token", "expired page token: list again from page 1")])
        return snapshot, offset, scope

    async def ListSuggestedUsers(
        self, request: feed_pb2.ListSuggestedUsersRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.ListSuggestedUsersResponse:
        caller = require_caller()
        size = page_size(request.page_size, default=SUGGEST_DEFAULT, maximum=SUGGEST_MAX)
        # Shared interests from the interaction log; graph applies the exclusions
        # (followed, requested, muted, blocked either way) and ranks them.
        interests = await self.store.co_engaged_accounts(caller.user_id, SUGGEST_CANDIDATES)
        # A little extra: hydration drops accounts the caller may not see.
        reply = await self.peers.suggested_accounts(caller.user_id, size + 10, interests)
        cards = {
            u.user_id: u for u in await self.peers.authors([a.user_id for a in reply.accounts])
        }
        for account in reply.accounts:
            card = cards.get(account.user_id)
            if card is not None and not card.is_limited_view:
                # Graph counted them for the ranking: the card shows the real number
                # (never a made-up "0"), except where the profile would not.
                card.follower_count = account.follower_count
        return feed_pb2.ListSuggestedUsersResponse(
            users=[
                feed_pb2.SuggestedUser(
                    user=cards[a.user_id], mutual_count=a.mutual_count, reason=_suggestion_reason(a)
                )
                for a in reply.accounts
                if a.user_id in cards
            ][:size]
        )

    async def ListTrendingTags(
        self, request: feed_pb2.ListTrendingTagsRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.ListTrendingTagsResponse:
        size = page_size(request.page_size, default=TAG_DEFAULT_PAGE, maximum=TAG_MAX_PAGE)
        window = request.window or feed_pb2.TREND_WINDOW_DAY
        snapshot, offset, scope = await self._trend_snapshot(
            trends.TAGS, window, request.page_token
        )
        rows = await self.trends.page(snapshot, offset, size + 1)
        more = len(rows) > size
        return feed_pb2.ListTrendingTagsResponse(
            tags=[feed_pb2.TrendingTag(hashtag=tag, score=score) for tag, score in rows[:size]],
            next_page_token=(
                self._rt.page_tokens.encode(scope, {"k": snapshot, "o": offset + size})
                if more
                else ""
            ),
        )

    async def ListTrendingPosts(
        self, request: feed_pb2.ListTrendingPostsRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.ListTrendingPostsResponse:
        size = page_size(
            request.page_size, default=TREND_POST_DEFAULT_PAGE, maximum=TREND_POST_MAX_PAGE
        )
        window = request.window or feed_pb2.TREND_WINDOW_DAY
        snapshot, offset, scope = await self._trend_snapshot(
            trends.POSTS, window, request.page_token
        )
        fetch = size * 2
        rows = await self.trends.page(snapshot, offset, fetch)
        # As the caller may see them (anonymous callers see public posts only).
        visible = await self.peers.hydrate([int(p) for p, _ in rows]) if rows else {}
        posts: list[post_pb2.Post] = []
        examined = 0
        for post_id, _score in rows:
            if len(posts) == size:
                break
            examined += 1
            if int(post_id) in visible:
                posts.append(visible[int(post_id)])
        more = examined < len(rows) or len(rows) == fetch
        return feed_pb2.ListTrendingPostsResponse(
            posts=posts,
            next_page_token=(
                self._rt.page_tokens.encode(scope, {"k": snapshot, "o": offset + examined})
                if more
                else ""
            ),
        )


@dataclass
class _Cut:
    """What `_cut` walked: the kept entries and where it stopped."""

    entries: list[Entry] = field(default_factory=list)
    posts: dict[int, post_pb2.Post] = field(default_factory=dict)
    cards: dict[int, user_pb2.User] = field(default_factory=dict)
    first_examined: str = ""
    last_examined: str = ""
    more: bool = False


def _reason(entry: Entry, source: str) -> feed_pb2.FeedReason.ValueType:
    """Why an item is shown; which out-of-network source stays in the tracking token."""
    if source and source != features.IN_NETWORK:
        return feed_pb2.FEED_REASON_SUGGESTED
    if entry.sharer_id:
        return feed_pb2.FEED_REASON_SHARED_BY_FOLLOWING
    return feed_pb2.FEED_REASON_FOLLOWING


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromMilliseconds(int(seconds * 1000))
    return value
