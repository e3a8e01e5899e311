"""PostService's RPCs: each reads the caller and the request, delegates to a job, and replies.

The jobs:

* `composer.Composer`: publish, edit and delete posts;
* `visibility.Visibility`: who may see which post (cached cards and relationships),
  and `presenter` for how a post looks to one viewer;
* `interactions.Interactions` (likes, reposts, saves), `comments.Comments`,
  `timelines.Timelines` (profiles, and post references for feed);
* `search.PostSearch` (queries) over the `post-search` consumer group,
  `search_projection.SearchProjection`, registered in `on_ready`;
* calls to user and media go through `peers.Peers`; tunables are `config.PostConfig`.
"""

from __future__ import annotations

import os
from typing import Any

import grpc
from google.protobuf import empty_pb2
from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.media.v1 import media_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2_grpc

from services.kit.auth import current_viewer_id, require_caller, require_service
from services.kit.backfill import BackfillWorker
from services.kit.consumers import ConsumerGroup
from services.kit.ratelimit import RateLimiter
from services.kit.server import Runtime, ServicerBase
from services.kit.validation import batch_ids

from .comments import Comments
from .composer import Composer, check_edit, draft
from .config import PostConfig
from .interactions import Action, Interactions
from .peers import Peers
from .presenter import Cards, shown_post
from .search import PostSearch
from .search_projection import SearchProjection
from .store import PostStore
from .timelines import Timelines
from .visibility import Visibility

MAX_BATCH = 500
#: BatchGetPostCounts and BatchListAuthorPosts: "1 to 1,000" authors (post.proto).
MAX_AUTHORS = 1000


class PostServicer(ServicerBase, post_pb2_grpc.PostServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = PostConfig.from_env(os.environ)
        self._store: PostStore | None = None
        self._upstream: Peers | None = None
        self._visibility: Visibility | None = None
        self._composer: Composer | None = None
        self._interactions: Interactions | None = None
        self._comments: Comments | None = None
        self._timelines: Timelines | None = None
        self._search: PostSearch | None = None
        self._backfill: BackfillWorker | None = None

    async def on_ready(self) -> None:
        rt, redis, config = self._rt, self._rt.redis, self.config
        self._store = store = PostStore(rt.db, rt.ids)
        users = user_pb2_grpc.UserServiceStub(self.peer("user"))
        media = media_pb2_grpc.MediaServiceStub(self.peer("media"))
        graph = graph_pb2_grpc.GraphServiceStub(self.peer("graph"))
        self._upstream = peers = Peers(users, media)
        self._visibility = visibility = Visibility(redis, store, users, graph)
        visibility.start()
        post_limit = RateLimiter(
            redis, "create-post", limit=config.posts_per_minute, window_seconds=60
        )
        comment_limit = RateLimiter(
            redis, "create-comment", limit=config.comments_per_minute, window_seconds=60
        )
        self._composer = Composer(redis, store, peers, visibility, post_limit, self.poke_relay)
        self._interactions = Interactions(store, visibility, rt.page_tokens, self.poke_relay)
        self._comments = Comments(
            store, peers, visibility, rt.page_tokens, comment_limit, self.poke_relay
        )
        self._timelines = Timelines(store, visibility, rt.page_tokens)
        self._search = PostSearch(
            rt.db,
            rt.ids,
            rt.page_tokens,
            RateLimiter(
                redis,
                "search-posts-client",
                limit=config.anonymous_searches_per_minute,
                window_seconds=60,
            ),
        )
        projection = SearchProjection(rt.db)
        groups: tuple[ConsumerGroup, ...] = (projection,)
        for group in groups:
            await self.consume(group.GROUP, group.handlers(), start=group.START)
        # ... and what the streams no longer hold: back-filled from graph's and
        # user's exports in the background when it never was (docs/search.md).
        self._backfill = projection.backfill_worker(graph, users)
        self._backfill.start()

    async def on_stop(self) -> None:
        if self._backfill is not None:
            await self._backfill.stop()
        if self._visibility is not None:
            await self._visibility.stop()
        await super().on_stop()

    @property
    def store(self) -> PostStore:
        return self.ready(self._store)

    @property
    def users(self) -> user_pb2_grpc.UserServiceAsyncStub:
        return self.ready(self._upstream).users

    @property
    def visibility(self) -> Visibility:
        return self.ready(self._visibility)

    # -- the jobs' entry points under their former names (tests drive them directly) --

    @property
    def _resolve_mentions(self) -> Any:
        return self.ready(self._upstream).mention_ids

    @property
    def _authors(self) -> Any:
        return self.visibility.authors

    # -- posts ---------------------------------------------------------------------

    async def CreatePost(
        self, request: post_pb2.CreatePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.Post:
        caller = require_caller()
        new = draft(request)
        return await self.ready(self._composer).create(caller.user_id, new)

    async def UpdatePost(
        self, request: post_pb2.UpdatePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.Post:
        caller = require_caller()
        check_edit(request)
        composer = self.ready(self._composer)
        return await composer.edit(caller.user_id, request.post.post_id, request.post.text)

    async def DeletePost(
        self, request: post_pb2.DeletePostRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        await self.ready(self._composer).delete(caller.user_id, request.post_id)
        return empty_pb2.Empty()

    async def GetPost(
        self, request: post_pb2.GetPostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.Post:
        viewer = current_viewer_id()
        cards: Cards = {}
        row = await self.visibility.post(request.post_id, viewer, cards)
        return shown_post(row, viewer, cards)

    async def BatchGetPosts(
        self, request: post_pb2.BatchGetPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchGetPostsResponse:
        ids = batch_ids(request.post_ids, "post_ids", MAX_BATCH)
        viewer = current_viewer_id()
        rows = await self.store.posts(ids, viewer)
        cards: Cards = {}
        visible = {
            r.post_id: r for r in await self.visibility.visible(list(rows.values()), viewer, cards)
        }
        shown = [visible[i] for i in ids if i in visible]
        authors = dict.fromkeys(r.author_id for r in shown) if request.include_authors else {}
        return post_pb2.BatchGetPostsResponse(
            posts=[shown_post(r, viewer, cards) for r in shown],
            authors=[cards[a] for a in authors if a in cards],
        )

    # -- authors' posts ------------------------------------------------------------

    async def ListUserPosts(
        self, request: post_pb2.ListUserPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListUserPostsResponse:
        return await self.ready(self._timelines).profile(current_viewer_id(), request)

    async def BatchGetPostCounts(
        self, request: post_pb2.BatchGetPostCountsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchGetPostCountsResponse:
        ids = batch_ids(request.user_ids, "user_ids", MAX_AUTHORS)
        counts = await self.store.post_counts(ids)
        return post_pb2.BatchGetPostCountsResponse(
            counts=[post_pb2.PostCount(user_id=i, post_count=counts[i]) for i in ids]
        )

    async def BatchListAuthorPosts(
        self, request: post_pb2.BatchListAuthorPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchListAuthorPostsResponse:
        """Newest post ids of many authors (feed back-fill, merges): services only."""
        require_service()
        ids = batch_ids(request.author_ids, "author_ids", MAX_AUTHORS)
        return await self.ready(self._timelines).author_refs(ids, request)

    # -- interactions --------------------------------------------------------------

    async def _toggle(self, post_id: int, action: Action, on: bool) -> post_pb2.Post:
        caller = require_caller()
        return await self.ready(self._interactions).toggle(caller.user_id, post_id, action, on)

    async def LikePost(
        self, request: post_pb2.LikePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.LikePostResponse:
        return post_pb2.LikePostResponse(post=await self._toggle(request.post_id, "like", True))

    async def UnlikePost(
        self, request: post_pb2.UnlikePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.UnlikePostResponse:
        return post_pb2.UnlikePostResponse(post=await self._toggle(request.post_id, "like", False))

    async def SharePost(
        self, request: post_pb2.SharePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.SharePostResponse:
        return post_pb2.SharePostResponse(post=await self._toggle(request.post_id, "share", True))

    async def UnsharePost(
        self, request: post_pb2.UnsharePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.UnsharePostResponse:
        return post_pb2.UnsharePostResponse(
            post=await self._toggle(request.post_id, "share", False)
        )

    async def SavePost(
        self, request: post_pb2.SavePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.SavePostResponse:
        return post_pb2.SavePostResponse(post=await self._toggle(request.post_id, "save", True))

    async def UnsavePost(
        self, request: post_pb2.UnsavePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.UnsavePostResponse:
        return post_pb2.UnsavePostResponse(post=await self._toggle(request.post_id, "save", False))

    async def ListSavedPosts(
        self, request: post_pb2.ListSavedPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListSavedPostsResponse:
        caller = require_caller()
        return await self.ready(self._interactions).saved(caller.user_id, request)

    # -- comments ------------------------------------------------------------------

    async def CreateComment(
        self, request: post_pb2.CreateCommentRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.Comment:
        caller = require_caller()
        return await self.ready(self._comments).create(caller.user_id, request)

    async def ListComments(
        self, request: post_pb2.ListCommentsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListCommentsResponse:
        return await self.ready(self._comments).page(current_viewer_id(), request)

    async def DeleteComment(
        self, request: post_pb2.DeleteCommentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        comments = self.ready(self._comments)
        await comments.delete(caller.user_id, request.post_id, request.comment_id)
        return empty_pb2.Empty()

    # -- search (services/post/search.py, docs/search.md) ---------------------------

    async def SearchPosts(
        self, request: post_pb2.SearchPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.SearchPostsResponse:
        search = self.ready(self._search)
        viewer = await search.limit_anonymous(context)
        rows, token = await search.search_posts(request, viewer, self.users)
        # Visibility is decided in the query; this authoritative re-check (one batch
        # call) only covers the moment between a change and its event's arrival.
        cards: Cards = {}
        visible = await self.visibility.visible(rows, viewer, cards)
        return post_pb2.SearchPostsResponse(
            posts=[shown_post(r, viewer, cards) for r in visible], next_page_token=token
        )

    async def ListTagPosts(
        self, request: post_pb2.ListTagPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListTagPostsResponse:
        viewer = current_viewer_id()
        rows, token = await self.ready(self._search).tag_posts(request, viewer)
        # As in SearchPosts: the query decides visibility; one batch re-check covers
        # the moment between a change and its event reaching the projection.
        cards: Cards = {}
        visible = await self.visibility.visible(rows, viewer, cards)
        return post_pb2.ListTagPostsResponse(
            posts=[shown_post(r, viewer, cards) for r in visible], next_page_token=token
        )

    async def SearchTags(
        self, request: post_pb2.SearchTagsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.SearchTagsResponse:
        search = self.ready(self._search)
        await search.limit_anonymous(context)
        return await search.search_tags(request)
