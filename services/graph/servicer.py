"""GraphService's RPCs: each reads the caller and the request, delegates to a job, and replies.

The jobs: `edges.Edges` (follow, block, mute, answer requests), `lists.Lists` (follow
lists, follower ids, requests, blocks and mutes with cards), `relationships`
(relationship reads, suggestions, counts) and `export` (every edge, for copies);
`account_deletion.AccountDeletion` is the `graph` consumer group, registered in
`on_ready`. Calls to user go through `peers.Accounts`; what a change makes stale
is `changes.py`; tunables are `config.GraphConfig`.
"""

from __future__ import annotations

import os

import grpc
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.user.v1 import user_pb2_grpc

from services.kit.auth import require_caller, require_service
from services.kit.cards import ViewerCards, user_loader
from services.kit.consumers import ConsumerGroup
from services.kit.ratelimit import RateLimiter
from services.kit.server import Runtime, ServicerBase

from .account_deletion import AccountDeletion
from .config import GraphConfig
from .edges import Edges
from .export import export_page
from .lists import Lists
from .peers import Accounts
from .relationships import Relationships
from .store import GraphStore


class GraphServicer(ServicerBase, graph_pb2_grpc.GraphServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = GraphConfig.from_env(os.environ)
        self._store: GraphStore | None = None
        self._cards: ViewerCards | None = None
        self._edges: Edges | None = None
        self._lists: Lists | None = None
        self._relationships: Relationships | None = None

    async def on_ready(self) -> None:
        rt, redis = self._rt, self._rt.redis
        self._store = store = GraphStore(rt.db, rt.ids)
        users = user_pb2_grpc.UserServiceStub(self.peer("user"))
        accounts = Accounts(users)
        self._relationships = relationships = Relationships(store, accounts)
        # The cards side-loaded on lists (kit/cards.py), with relationships read
        # from this service's own store on a miss.
        self._cards = ViewerCards(redis, "graph", user_loader(users), relationships.load)
        self._cards.start()
        follow_limit = RateLimiter(
            redis, "follow", limit=self.config.follows_per_hour, window_seconds=3600
        )
        self._edges = Edges(redis, store, accounts, follow_limit, self.poke_relay)
        self._lists = Lists(store, accounts, self._cards, rt.page_tokens)
        groups: tuple[ConsumerGroup, ...] = (AccountDeletion(redis, store),)
        for group in groups:
            await self.consume(group.GROUP, group.handlers(), start=group.START)

    async def on_stop(self) -> None:
        if self._cards is not None:
            await self._cards.stop()
        await super().on_stop()

    @property
    def store(self) -> GraphStore:
        return self.ready(self._store)

    @property
    def edges(self) -> Edges:
        return self.ready(self._edges)

    @property
    def lists(self) -> Lists:
        return self.ready(self._lists)

    @property
    def relationships(self) -> Relationships:
        return self.ready(self._relationships)

    # -- follows ---------------------------------------------------------------

    async def FollowUser(
        self, request: graph_pb2.FollowUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.FollowUserResponse:
        caller = require_caller()
        return await self.edges.follow(caller.user_id, request.user_id)

    async def UnfollowUser(
        self, request: graph_pb2.UnfollowUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.UnfollowUserResponse:
        caller = require_caller()
        await self.edges.unfollow(caller.user_id, request.user_id)
        return graph_pb2.UnfollowUserResponse()

    async def BlockUser(
        self, request: graph_pb2.BlockUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.BlockUserResponse:
        caller = require_caller()
        await self.edges.block(caller.user_id, request.user_id)
        return graph_pb2.BlockUserResponse()

    async def UnblockUser(
        self, request: graph_pb2.UnblockUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.UnblockUserResponse:
        caller = require_caller()
        await self.edges.unblock(caller.user_id, request.user_id)
        return graph_pb2.UnblockUserResponse()

    async def MuteUser(
        self, request: graph_pb2.MuteUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.MuteUserResponse:
        caller = require_caller()
        await self.edges.mute(caller.user_id, request.user_id)
        return graph_pb2.MuteUserResponse()

    async def UnmuteUser(
        self, request: graph_pb2.UnmuteUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.UnmuteUserResponse:
        caller = require_caller()
        await self.edges.unmute(caller.user_id, request.user_id)
        return graph_pb2.UnmuteUserResponse()

    async def AcceptFollowRequest(
        self, request: graph_pb2.AcceptFollowRequestRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.AcceptFollowRequestResponse:
        caller = require_caller()
        await self.edges.answer(
            caller.user_id, request.requester_id, request.target_id, accept=True
        )
        return graph_pb2.AcceptFollowRequestResponse()

    async def RejectFollowRequest(
        self, request: graph_pb2.RejectFollowRequestRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.RejectFollowRequestResponse:
        caller = require_caller()
        await self.edges.answer(
            caller.user_id, request.requester_id, request.target_id, accept=False
        )
        return graph_pb2.RejectFollowRequestResponse()

    # -- lists -----------------------------------------------------------------

    async def ListFollowers(
        self, request: graph_pb2.ListFollowersRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListFollowersResponse:
        caller = require_caller()
        return await self.lists.followers(caller.user_id, request)

    async def ListFollowing(
        self, request: graph_pb2.ListFollowingRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListFollowingResponse:
        caller = require_caller()
        return await self.lists.following(caller.user_id, request)

    async def ListFollowerIds(
        self, request: graph_pb2.ListFollowerIdsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListFollowerIdsResponse:
        """Every follower of an account, for fan-out: services only, privacy does not apply."""
        require_service()
        return await self.lists.follower_ids(request)

    async def ExportRelationships(
        self, request: graph_pb2.ExportRelationshipsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ExportRelationshipsResponse:
        """Every follow, then every block, for copies kept elsewhere: services only."""
        require_service()
        return await export_page(self.store, self._rt.page_tokens, request)

    async def ListFollowRequests(
        self, request: graph_pb2.ListFollowRequestsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListFollowRequestsResponse:
        caller = require_caller()
        return await self.lists.follow_requests(caller.user_id, request)

    async def ListBlockedUsers(
        self, request: graph_pb2.ListBlockedUsersRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListBlockedUsersResponse:
        caller = require_caller()
        accounts, token = await self.lists.own("blocks", caller.user_id, request)
        return graph_pb2.ListBlockedUsersResponse(blocked_users=accounts, next_page_token=token)

    async def ListMutedUsers(
        self, request: graph_pb2.ListMutedUsersRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListMutedUsersResponse:
        caller = require_caller()
        accounts, token = await self.lists.own("mutes", caller.user_id, request)
        return graph_pb2.ListMutedUsersResponse(muted_users=accounts, next_page_token=token)

    # -- relationships and counts ------------------------------------------------

    async def GetRelationship(
        self, request: graph_pb2.GetRelationshipRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.Relationship:
        caller = require_caller()
        return await self.relationships.one(caller.user_id, request.user_id)

    async def BatchGetRelationships(
        self, request: graph_pb2.BatchGetRelationshipsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.BatchGetRelationshipsResponse:
        return await self.relationships.many(request)

    async def ListSuggestedAccounts(
        self, request: graph_pb2.ListSuggestedAccountsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListSuggestedAccountsResponse:
        return await self.relationships.suggestions(request)

    async def BatchGetFollowCounts(
        self, request: graph_pb2.BatchGetFollowCountsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.BatchGetFollowCountsResponse:
        return await self.relationships.counts(list(request.user_ids))
