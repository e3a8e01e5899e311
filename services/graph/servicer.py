"""GraphService: validation, authorization and orchestration over GraphStore."""

from __future__ import annotations

import grpc
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.user.v1 import events_pb2 as user_events_pb2
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import (
    Caller,
    anonymous_calls,
    current_caller,
    require_caller,
    require_service,
)
from services.kit.cards import ViewerCards, user_loader
from services.kit.channels import upstream_error
from services.kit.consumers import EventHandlers, EventMeta, Start
from services.kit.counts import GENERATIONS as COUNTS
from services.kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from services.kit.generations import bump
from services.kit.pagination import PageSizes, page_size
from services.kit.ratelimit import RateLimiter
from services.kit.relcache import GENERATIONS as RELATIONSHIPS
from services.kit.server import Runtime, ServicerBase
from services.kit.timestamps import from_datetime, from_snowflake
from services.kit.validation import Violations, batch_ids, require_positive_id

from .store import (
    EXPORT_BLOCK,
    EXPORT_FOLLOW,
    Edge,
    ExportedEdge,
    FollowOutcome,
    GraphStore,
    Relationship,
)

MAX_BATCH = 1000
#: ListSuggestedAccounts.candidate_ids: at most this many (graph.proto).
MAX_SUGGESTION_CANDIDATES = 200
FOLLOWS_PER_HOUR = 500
#: ListFollowerIds pages: fan-out reads many ids per call (graph.proto).
FOLLOWER_ID_PAGES = PageSizes(default=5_000, maximum=10_000)
#: ExportRelationships pages (graph.proto): a back-fill reads every edge.
EXPORT_PAGES = PageSizes(default=5_000, maximum=10_000)
EXPORT_KINDS = {
    EXPORT_FOLLOW: graph_pb2.RELATIONSHIP_KIND_FOLLOW,
    EXPORT_BLOCK: graph_pb2.RELATIONSHIP_KIND_BLOCK,
}


def relationship_proto(user_id: int, rel: Relationship) -> graph_pb2.Relationship:
    return graph_pb2.Relationship(
        user_id=user_id,
        following=rel.following,
        followed_by=rel.followed_by,
        requested=rel.requested,
        blocking=rel.blocking,
        blocked_by=rel.blocked_by,
        muting=rel.muting,
    )


def follow_edge_proto(edge: Edge, card: user_pb2.User | None = None) -> graph_pb2.FollowEdge:
    return graph_pb2.FollowEdge(
        user_id=edge.user_id, create_time=from_snowflake(edge.edge_id), user=card
    )


def _exported(edge: ExportedEdge) -> graph_pb2.RelationshipEdge:
    return graph_pb2.RelationshipEdge(
        kind=EXPORT_KINDS[edge.kind], from_user_id=edge.from_id, to_user_id=edge.to_id
    )


def edge_position(edge: Edge) -> int:
    """Where a follow list continues after this edge (its snowflake edge id)."""
    return edge.edge_id


class GraphServicer(ServicerBase, graph_pb2_grpc.GraphServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._store: GraphStore | None = None
        self._users: user_pb2_grpc.UserServiceAsyncStub | None = None
        self._follow_limit: RateLimiter | None = None
        self._cards: ViewerCards | None = None

    async def on_ready(self) -> None:
        self._store = GraphStore(self._rt.db, self._rt.ids)
        self._users = user_pb2_grpc.UserServiceStub(self.peer("user"))
        # The cards side-loaded on lists (kit/cards.py), with relationships read
        # from this service's own store on a miss.
        self._cards = ViewerCards(
            self._rt.redis, "graph", user_loader(self._users), self._load_relationships
        )
        self._cards.start()
        self._follow_limit = RateLimiter(
            self._rt.redis, "follow", limit=FOLLOWS_PER_HOUR, window_seconds=3600
        )
        # A deleted account leaves the graph: its edges go, everyone's counts
        # follow. EARLIEST: a deletion from before this group existed still counts.
        user_events = EventHandlers()
        user_events.on(user_events_pb2.UserDeleted, self._on_user_deleted)
        await self.consume("graph", user_events, start=Start.EARLIEST)

    async def on_stop(self) -> None:
        if self._cards is not None:
            await self._cards.stop()
        await super().on_stop()

    async def _load_relationships(
        self, viewer_id: int, user_ids: list[int]
    ) -> list[graph_pb2.Relationship]:
        rels = await self.store.relationships(viewer_id, user_ids)
        return [relationship_proto(i, rels[i]) for i in user_ids]

    async def _edges(self, viewer_id: int, edges: list[Edge]) -> list[graph_pb2.FollowEdge]:
        """A list page with the other accounts' cards as the viewer sees them
        (absent for accounts that block the viewer): one pair of cache reads."""
        cards = await self.ready(self._cards).get_many(viewer_id, (e.user_id for e in edges))
        return [follow_edge_proto(e, cards.get(e.user_id)) for e in edges]

    async def _on_user_deleted(self, event: user_events_pb2.UserDeleted, _: EventMeta) -> None:
        touched = await self.store.forget_user(event.user_id)
        await self._changed(*touched, event.user_id)

    async def _changed(self, *user_ids: int, counts: bool = True) -> None:
        """After a change commits: what profiles cache of these users goes stale (their
        counts, kit/counts.py, and relationships, kit/relcache.py), before the reply."""
        namespaces = [RELATIONSHIPS, COUNTS] if counts else [RELATIONSHIPS]
        await bump(self._rt.redis, namespaces, user_ids)

    @property
    def store(self) -> GraphStore:
        return self.ready(self._store)

    async def _account(self, user_id: int) -> user_pb2.User:
        """The account as anyone may see it: existence and privacy, never block-filtered."""
        users = self.ready(self._users)
        with anonymous_calls():
            try:
                return await users.GetUser(user_pb2.GetUserRequest(user_id=user_id))
            except grpc.aio.AioRpcError as exc:
                raise upstream_error(exc, "user") from exc

    def _other(self, caller: Caller, user_id: int, verb: str) -> int:
        require_positive_id(user_id, "user_id")
        if user_id == caller.user_id:
            raise InvalidArgument([("user_id", f"you cannot {verb} yourself")])
        return user_id

    async def _visible_lists(self, caller: Caller, user_id: int) -> None:
        """Who may page through an account's followers/following."""
        require_positive_id(user_id, "user_id")
        if user_id == caller.user_id:
            return
        rel = (await self.store.relationships(caller.user_id, [user_id]))[user_id]
        if rel.blocked_by:
            raise NotFound(f"user {user_id} not found")
        account = await self._account(user_id)
        if account.is_private and not rel.following:
            raise PermissionDenied(
                "this account is private: only approved followers see its lists",
                reason=Reason.PRIVATE_ACCOUNT,
            )

    # -- follows ---------------------------------------------------------------

    async def FollowUser(
        self, request: graph_pb2.FollowUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.FollowUserResponse:
        caller = require_caller()
        target = self._other(caller, request.user_id, "follow")
        blocking, blocked_by = await self.store.is_blocked_either_way(caller.user_id, target)
        if blocked_by:
            raise NotFound(f"user {target} not found")
        if blocking:
            raise FailedPrecondition(
                "you block this account: unblock it before following", reason=Reason.BLOCKING
            )
        account = await self._account(target)
        await self.ready(self._follow_limit).enforce(str(caller.user_id), "follows")
        outcome = await self.store.follow(caller.user_id, target, needs_approval=account.is_private)
        await self._changed(caller.user_id, target)
        state = (
            graph_pb2.FOLLOW_STATE_FOLLOWING
            if outcome is FollowOutcome.FOLLOWING
            else graph_pb2.FOLLOW_STATE_REQUESTED
        )
        self.poke_relay()
        return graph_pb2.FollowUserResponse(state=state)

    async def UnfollowUser(
        self, request: graph_pb2.UnfollowUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.UnfollowUserResponse:
        caller = require_caller()
        target = self._other(caller, request.user_id, "unfollow")
        await self.store.unfollow(caller.user_id, target)
        await self._changed(caller.user_id, target)
        self.poke_relay()
        return graph_pb2.UnfollowUserResponse()

    async def BlockUser(
        self, request: graph_pb2.BlockUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.BlockUserResponse:
        caller = require_caller()
        target = self._other(caller, request.user_id, "block")
        await self._account(target)
        await self.store.block(caller.user_id, target)
        await self._changed(caller.user_id, target)
        self.poke_relay()
        return graph_pb2.BlockUserResponse()

    async def UnblockUser(
        self, request: graph_pb2.UnblockUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.UnblockUserResponse:
        caller = require_caller()
        target = self._other(caller, request.user_id, "unblock")
        await self.store.unblock(caller.user_id, target)
        await self._changed(caller.user_id, target, counts=False)
        self.poke_relay()
        return graph_pb2.UnblockUserResponse()

    async def MuteUser(
        self, request: graph_pb2.MuteUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.MuteUserResponse:
        caller = require_caller()
        target = self._other(caller, request.user_id, "mute")
        await self._account(target)
        await self.store.mute(caller.user_id, target)
        await self._changed(caller.user_id, target, counts=False)
        return graph_pb2.MuteUserResponse()

    async def UnmuteUser(
        self, request: graph_pb2.UnmuteUserRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.UnmuteUserResponse:
        caller = require_caller()
        target = self._other(caller, request.user_id, "unmute")
        await self.store.unmute(caller.user_id, target)
        await self._changed(caller.user_id, target, counts=False)
        return graph_pb2.UnmuteUserResponse()

    # -- lists -----------------------------------------------------------------

    async def ListFollowers(
        self, request: graph_pb2.ListFollowersRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListFollowersResponse:
        caller = require_caller()
        page = self._rt.page_tokens.page(f"followers:{request.user_id}", "edge_id", request)
        await self._visible_lists(caller, request.user_id)
        edges = await self.store.followers(request.user_id, page.position, page.limit)
        counts = await self.store.counts([request.user_id])
        return graph_pb2.ListFollowersResponse(
            followers=await self._edges(caller.user_id, page.rows(edges)),
            next_page_token=page.next_token(edges, edge_position),
            total_size=counts[request.user_id][0],
        )

    async def ListFollowing(
        self, request: graph_pb2.ListFollowingRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListFollowingResponse:
        caller = require_caller()
        page = self._rt.page_tokens.page(f"following:{request.user_id}", "edge_id", request)
        await self._visible_lists(caller, request.user_id)
        edges = await self.store.following(request.user_id, page.position, page.limit)
        counts = await self.store.counts([request.user_id])
        return graph_pb2.ListFollowingResponse(
            following=await self._edges(caller.user_id, page.rows(edges)),
            next_page_token=page.next_token(edges, edge_position),
            total_size=counts[request.user_id][1],
        )

    async def ListFollowerIds(
        self, request: graph_pb2.ListFollowerIdsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListFollowerIdsResponse:
        """Every follower of an account, for fan-out: services only, privacy does not apply."""
        require_service()
        require_positive_id(request.user_id, "user_id")
        page = self._rt.page_tokens.page(
            f"follower-ids:{request.user_id}", "edge_id", request, FOLLOWER_ID_PAGES
        )
        edges = await self.store.followers(request.user_id, page.position, page.limit)
        return graph_pb2.ListFollowerIdsResponse(
            follower_ids=[e.user_id for e in page.rows(edges)],
            next_page_token=page.next_token(edges, edge_position),
        )

    async def ExportRelationships(
        self, request: graph_pb2.ExportRelationshipsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ExportRelationshipsResponse:
        """Every follow, then every block, for copies kept elsewhere: services only."""
        require_service()
        size = page_size(
            request.page_size, default=EXPORT_PAGES.default, maximum=EXPORT_PAGES.maximum
        )
        scope = "export-relationships"
        data = self._rt.page_tokens.decode(scope, request.page_token)
        after: tuple[int, int, int] | None = None
        if data is not None:
            position = data.get("k"), data.get("a"), data.get("b")
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in position) or (
                position[0] not in EXPORT_KINDS
            ):
                raise InvalidArgument([("page_token", "invalid or tampered page token")])
            after = position  # type: ignore[assignment]
        edges = await self.store.export_edges(after, size + 1)
        token = ""
        if len(edges) > size:
            kind, a, b = edges[size - 1].position
            token = self._rt.page_tokens.encode(scope, {"k": kind, "a": a, "b": b})
        return graph_pb2.ExportRelationshipsResponse(
            edges=[_exported(e) for e in edges[:size]], next_page_token=token
        )

    async def ListFollowRequests(
        self, request: graph_pb2.ListFollowRequestsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListFollowRequestsResponse:
        caller = require_caller()
        page = self._rt.page_tokens.page(f"requests:{caller.user_id}", "edge_id", request)
        edges = await self.store.pending_requests(caller.user_id, page.position, page.limit)
        shown = page.rows(edges)
        cards = await self.ready(self._cards).get_many(caller.user_id, (e.user_id for e in shown))
        return graph_pb2.ListFollowRequestsResponse(
            follow_requests=[
                graph_pb2.FollowRequest(
                    requester_id=e.user_id,
                    create_time=from_snowflake(e.edge_id),
                    requester=cards.get(e.user_id),
                )
                for e in shown
            ],
            next_page_token=page.next_token(edges, edge_position),
        )

    async def _own_list(
        self,
        kind: str,
        request: graph_pb2.ListBlockedUsersRequest | graph_pb2.ListMutedUsersRequest,
    ) -> tuple[list[graph_pb2.ListedAccount], str]:
        """A page of the caller's blocks or mutes with the accounts' cards."""
        caller = require_caller()
        page = self._rt.page_tokens.page(f"{kind}:{caller.user_id}", "position", request)
        listed = await self.store.listed(kind, caller.user_id, page.position, page.limit)
        shown = page.rows(listed)
        cards = await self.ready(self._cards).get_many(caller.user_id, (e.user_id for e in shown))
        accounts = [
            graph_pb2.ListedAccount(
                user_id=e.user_id,
                create_time=from_datetime(e.created_at),
                user=cards.get(e.user_id),
            )
            for e in shown
        ]
        return accounts, page.next_token(listed, lambda e: e.position)

    async def ListBlockedUsers(
        self, request: graph_pb2.ListBlockedUsersRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListBlockedUsersResponse:
        accounts, token = await self._own_list("blocks", request)
        return graph_pb2.ListBlockedUsersResponse(blocked_users=accounts, next_page_token=token)

    async def ListMutedUsers(
        self, request: graph_pb2.ListMutedUsersRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListMutedUsersResponse:
        accounts, token = await self._own_list("mutes", request)
        return graph_pb2.ListMutedUsersResponse(muted_users=accounts, next_page_token=token)

    async def _resolve(self, requester_id: int, target_id: int, *, accept: bool) -> None:
        caller = require_caller()
        require_positive_id(requester_id, "requester_id")
        target = target_id or caller.user_id
        if target != caller.user_id:
            raise PermissionDenied(
                "only the requested account may answer a follow request",
                reason=Reason.NOT_OWNER,
            )
        if not await self.store.resolve_request(requester_id, target, accept=accept):
            raise NotFound(
                f"no pending follow request from user {requester_id}",
                resource="followRequest",
                resource_id=requester_id,
            )
        await self._changed(requester_id, target, counts=accept)
        self.poke_relay()

    async def AcceptFollowRequest(
        self, request: graph_pb2.AcceptFollowRequestRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.AcceptFollowRequestResponse:
        await self._resolve(request.requester_id, request.target_id, accept=True)
        return graph_pb2.AcceptFollowRequestResponse()

    async def RejectFollowRequest(
        self, request: graph_pb2.RejectFollowRequestRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.RejectFollowRequestResponse:
        await self._resolve(request.requester_id, request.target_id, accept=False)
        return graph_pb2.RejectFollowRequestResponse()

    # -- relationships and counts ------------------------------------------------

    async def GetRelationship(
        self, request: graph_pb2.GetRelationshipRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.Relationship:
        caller = require_caller()
        require_positive_id(request.user_id, "user_id")
        await self._account(request.user_id)
        rel = (await self.store.relationships(caller.user_id, [request.user_id]))[request.user_id]
        if rel.blocked_by:
            # A block hides the blocker from the blocked everywhere, this view included:
            # the same NOT_FOUND as the profile, never `blocked_by: true`.
            raise NotFound(f"user {request.user_id} not found")
        return relationship_proto(request.user_id, rel)

    async def BatchGetRelationships(
        self, request: graph_pb2.BatchGetRelationshipsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.BatchGetRelationshipsResponse:
        caller = current_caller()
        if caller is not None and caller.is_service:  # workers ask for any recipient
            require_positive_id(request.viewer_id, "viewer_id")
        elif request.viewer_id != require_caller().user_id:
            raise PermissionDenied("viewer_id must be the caller")
        ids = batch_ids(request.user_ids, "user_ids", MAX_BATCH)
        rels = await self.store.relationships(request.viewer_id, ids)
        return graph_pb2.BatchGetRelationshipsResponse(
            relationships=[relationship_proto(i, rels[i]) for i in ids]
        )

    async def ListSuggestedAccounts(
        self, request: graph_pb2.ListSuggestedAccountsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.ListSuggestedAccountsResponse:
        caller = current_caller()
        if caller is not None and caller.is_service:
            require_positive_id(request.viewer_id, "viewer_id")
        elif request.viewer_id != require_caller().user_id:
            raise PermissionDenied("viewer_id must be the caller")
        v = Violations()
        v.check(request.max_results >= 0, "max_results", "must not be negative")
        v.check(
            len(request.candidate_ids) <= MAX_SUGGESTION_CANDIDATES
            and all(i > 0 for i in request.candidate_ids),
            "candidate_ids",
            f"at most {MAX_SUGGESTION_CANDIDATES} positive ids",
        )
        v.raise_if_any()
        limit = min(request.max_results or 20, 200)
        rows = await self.store.suggestions(
            request.viewer_id, limit, list(dict.fromkeys(request.candidate_ids))
        )
        return graph_pb2.ListSuggestedAccountsResponse(
            accounts=[
                graph_pb2.SuggestedAccount(
                    user_id=u, mutual_count=m, follower_count=f, from_candidates=given
                )
                for u, m, f, given in rows
            ]
        )

    async def BatchGetFollowCounts(
        self, request: graph_pb2.BatchGetFollowCountsRequest, context: grpc.aio.ServicerContext
    ) -> graph_pb2.BatchGetFollowCountsResponse:
        ids = batch_ids(request.user_ids, "user_ids", MAX_BATCH)
        counts = await self.store.counts(ids)
        return graph_pb2.BatchGetFollowCountsResponse(
            counts=[
                graph_pb2.FollowCounts(
                    user_id=i, follower_count=counts[i][0], following_count=counts[i][1]
                )
                for i in ids
            ]
        )
