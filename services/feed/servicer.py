"""FeedService's RPCs: each reads the caller and the request, delegates to a job, and replies.

The jobs (docs/feed.md, "Modules"):

* consumer groups, one class each, registered in `on_ready`: `fanout.Fanout`
  (`feed`: home timelines), `trends.TrendCounter` (`feed-trends`) and
  `interactions.InteractionLog` (`feed-log`: what the ranker learns from);
* the home feed: `home.HomeFeed` (FOLLOWING pages, rebuilds, RANKED with a
  FOLLOWING fallback) over `ranking.session.RankedSessions`, presented by
  `presenter.Presenter`; page tokens are typed positions (`cursors`);
* `interactions.Interactions` (impressions, feedback), `suggestions.Suggestions`,
  `trends.TrendListings`; calls to post, graph and user go through `peers.Peers`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Awaitable, Callable, Sequence, Set
from pathlib import Path
from typing import Any

import grpc
from socialmesh.feed.v1 import feed_pb2, feed_pb2_grpc
from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2_grpc

from services.kit.auth import require_caller
from services.kit.consumers import ConsumerGroup, EventMeta
from services.kit.errors import InvalidArgument
from services.kit.pagination import page_size
from services.kit.server import Runtime, ServicerBase

from . import ranking, trends
from .config import FeedConfig
from .cursors import FOLLOWING, RANKED, decode_home
from .fanout import Fanout
from .home import HomeFeed
from .interactions import InteractionLog, Interactions
from .peers import Peers
from .presenter import Presenter
from .ranking.model import ModelSlot
from .ranking.session import RankedSessions
from .store import Feedback, FeedStore
from .suggestions import Suggestions
from .timelines import Timelines
from .tracking import TrackingTokens

__all__ = ["FeedConfig", "FeedServicer"]

#: GetHomeFeed page sizes (feed.proto): default 20, at most 100.
FEED_DEFAULT_PAGE, FEED_MAX_PAGE = 20, 100
#: Trends page sizes (feed.proto).
TAG_DEFAULT_PAGE, TAG_MAX_PAGE = 10, 50
TREND_POST_DEFAULT_PAGE, TREND_POST_MAX_PAGE = 20, 100
#: ListSuggestedUsers sizes (feed.proto).
SUGGEST_DEFAULT, SUGGEST_MAX = 20, 50

Handler = Callable[[Any, EventMeta], Awaitable[None]]


class FeedServicer(ServicerBase, feed_pb2_grpc.FeedServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = FeedConfig.from_env(os.environ)
        secret = runtime.settings.page_token_secret.encode() or secrets.token_bytes(32)
        self._tracking = TrackingTokens(secret)
        self._models = ModelSlot(Path(self.config.model_dir) if self.config.model_dir else None)
        self._timelines: Timelines | None = None
        self._store: FeedStore | None = None
        self._trends: trends.Trends | None = None
        self._posts: post_pb2_grpc.PostServiceAsyncStub | None = None
        self._graph: graph_pb2_grpc.GraphServiceAsyncStub | None = None
        self._users: user_pb2_grpc.UserServiceAsyncStub | None = None
        self._upstream: Peers | None = None
        self._ranked: RankedSessions | None = None
        self._home: HomeFeed | None = None
        self._presenter: Presenter | None = None
        self._interactions: Interactions | None = None
        self._suggestions: Suggestions | None = None
        self._listings: trends.TrendListings | None = None
        self._fanout: Fanout | None = None
        self._interaction_log: InteractionLog | None = None

    async def on_ready(self) -> None:
        rt, redis = self._rt, self._rt.redis
        config = self.config
        self._timelines = timelines = Timelines(redis, ttl_seconds=config.active_seconds)
        self._store = store = FeedStore(rt.db)
        self._trends = trend_sets = trends.Trends(redis)
        self._posts = post_pb2_grpc.PostServiceStub(self.peer("post"))
        self._graph = graph_pb2_grpc.GraphServiceStub(self.peer("graph"))
        self._users = user_pb2_grpc.UserServiceStub(self.peer("user"))
        self._upstream = peers = Peers(redis, self._posts, self._graph, self._users)
        self._models.load()
        self._ranked = RankedSessions(
            redis,
            timelines,
            store,
            trend_sets,
            peers,
            lambda: self.config,
            self._models,
            # Late-bound: tests swap `_out_of_network` on the servicer.
            out_of_network=lambda viewer: self._out_of_network(viewer),
        )
        self._home = HomeFeed(redis, timelines, store, peers, lambda: self.config, self._ranked)
        self._presenter = Presenter(self._tracking, rt.page_tokens, peers)
        self._interactions = Interactions(store, timelines, peers, self._tracking)
        self._suggestions = Suggestions(store, peers)
        self._listings = trends.TrendListings(trend_sets, rt.page_tokens, peers)
        self._fanout = Fanout(redis, timelines, peers, lambda: self.config)
        self._interaction_log = InteractionLog(store)
        groups: tuple[ConsumerGroup, ...] = (
            self._fanout,
            trends.TrendCounter(redis, trend_sets),
            self._interaction_log,
        )
        for group in groups:
            await self.consume(group.GROUP, group.handlers(), start=group.START)

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

    @property
    def models(self) -> ModelSlot:
        """The ranker model slot (operators and tests may swap it)."""
        return self._models

    @models.setter
    def models(self, slot: ModelSlot) -> None:
        self._models = slot
        if self._ranked is not None:
            self._ranked.models = slot

    # -- the jobs' entry points under their former names (tests drive them directly) --

    @property
    def _on_post_created(self) -> Handler:
        return self.ready(self._fanout).on_post_created

    @property
    def _on_followed(self) -> Handler:
        return self.ready(self._fanout).on_followed

    @property
    def _on_unfollowed(self) -> Handler:
        return self.ready(self._fanout).on_unfollowed

    @property
    def _log_post_created(self) -> Handler:
        return self.ready(self._interaction_log).on_post_created

    @property
    def _log_post_deleted(self) -> Handler:
        return self.ready(self._interaction_log).on_post_deleted

    @property
    def _log_liked(self) -> Handler:
        return self.ready(self._interaction_log).on_liked

    @property
    def _log_unliked(self) -> Handler:
        return self.ready(self._interaction_log).on_unliked

    async def _out_of_network(self, viewer: int) -> dict[int, tuple[int, str]]:
        return await self.ready(self._ranked).out_of_network(viewer)

    async def _score(
        self,
        viewer: int,
        keys: Sequence[str],
        muted: Set[int],
        feedback: Feedback,
        config: ranking.RankingConfig,
    ) -> tuple[list[ranking.Scored], dict[int, post_pb2.Post], str]:
        return await self.ready(self._ranked).score(viewer, keys, muted, feedback, config)

    # -- RPCs ----------------------------------------------------------------------------

    async def GetHomeFeed(
        self, request: feed_pb2.GetHomeFeedRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.GetHomeFeedResponse:
        viewer = require_caller().user_id
        kind = request.kind or RANKED
        if kind not in (RANKED, FOLLOWING):
            raise InvalidArgument([("kind", "must be FEED_KIND_RANKED or FEED_KIND_FOLLOWING")])
        size = page_size(request.page_size, default=FEED_DEFAULT_PAGE, maximum=FEED_MAX_PAGE)
        cursor = decode_home(self._rt.page_tokens, viewer, kind, request.page_token)
        page, partial = await self.ready(self._home).read(viewer, kind, cursor, size)
        return await self.ready(self._presenter).home(viewer, page, partial)

    async def RecordImpressions(
        self, request: feed_pb2.RecordImpressionsRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.RecordImpressionsResponse:
        viewer = require_caller().user_id
        interactions = self.ready(self._interactions)
        recorded = await interactions.record_impressions(viewer, request.impressions)
        return feed_pb2.RecordImpressionsResponse(recorded_count=recorded)

    async def SubmitFeedback(
        self, request: feed_pb2.SubmitFeedbackRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.SubmitFeedbackResponse:
        viewer = require_caller().user_id
        recorded = await self.ready(self._interactions).submit_feedback(
            viewer, request.post_id, request.kind, request.tracking_token
        )
        return feed_pb2.SubmitFeedbackResponse(recorded=recorded)

    async def ListSuggestedUsers(
        self, request: feed_pb2.ListSuggestedUsersRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.ListSuggestedUsersResponse:
        caller = require_caller()
        size = page_size(request.page_size, default=SUGGEST_DEFAULT, maximum=SUGGEST_MAX)
        users = await self.ready(self._suggestions).for_viewer(caller.user_id, size)
        return feed_pb2.ListSuggestedUsersResponse(users=users)

    async def ListTrendingTags(
        self, request: feed_pb2.ListTrendingTagsRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.ListTrendingTagsResponse:
        size = page_size(request.page_size, default=TAG_DEFAULT_PAGE, maximum=TAG_MAX_PAGE)
        window = request.window or feed_pb2.TREND_WINDOW_DAY
        tags, token = await self.ready(self._listings).tags(window, request.page_token, size)
        return feed_pb2.ListTrendingTagsResponse(tags=tags, next_page_token=token)

    async def ListTrendingPosts(
        self, request: feed_pb2.ListTrendingPostsRequest, context: grpc.aio.ServicerContext
    ) -> feed_pb2.ListTrendingPostsResponse:
        size = page_size(
            request.page_size, default=TREND_POST_DEFAULT_PAGE, maximum=TREND_POST_MAX_PAGE
        )
        window = request.window or feed_pb2.TREND_WINDOW_DAY
        posts, token = await self.ready(self._listings).posts(window, request.page_token, size)
        return feed_pb2.ListTrendingPostsResponse(posts=posts, next_page_token=token)
