"""Pages of accounts: an account's followers and following (as a viewer may see them),
every follower id (fan-out), and the caller's own follow requests, blocks and mutes.

Each page side-loads the listed accounts' cards as the viewer sees them (absent
for accounts that block the viewer), in one pair of cache reads (kit/cards.py).
"""

from __future__ import annotations

from socialmesh.graph.v1 import graph_pb2

from services.kit.cards import ViewerCards
from services.kit.errors import NotFound, PermissionDenied, Reason
from services.kit.pagination import PageSizes, PageTokens
from services.kit.timestamps import from_datetime, from_snowflake
from services.kit.validation import require_positive_id

from .peers import Accounts
from .presenter import edge_position, follow_edge_proto
from .store import Edge, GraphStore

#: ListFollowerIds pages: fan-out reads many ids per call (graph.proto).
FOLLOWER_ID_PAGES = PageSizes(default=5_000, maximum=10_000)

OwnListRequest = graph_pb2.ListBlockedUsersRequest | graph_pb2.ListMutedUsersRequest


class Lists:
    """Follow lists, follower ids, follow requests, blocks and mutes, page by page."""

    def __init__(
        self, store: GraphStore, accounts: Accounts, cards: ViewerCards, tokens: PageTokens
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._cards = cards
        self._tokens = tokens

    async def _edges(self, viewer_id: int, edges: list[Edge]) -> list[graph_pb2.FollowEdge]:
        """A list page with the other accounts' cards as the viewer sees them
        (absent for accounts that block the viewer): one pair of cache reads."""
        cards = await self._cards.get_many(viewer_id, (e.user_id for e in edges))
        return [follow_edge_proto(e, cards.get(e.user_id)) for e in edges]

    async def _check_visible(self, viewer_id: int, user_id: int) -> None:
        """Who may page through an account's followers/following."""
        require_positive_id(user_id, "user_id")
        if user_id == viewer_id:
            return
        rel = (await self._store.relationships(viewer_id, [user_id]))[user_id]
        if rel.blocked_by:
            raise NotFound(f"user {user_id} not found")
        account = await self._accounts.get(user_id)
        if account.is_private and not rel.following:
            raise PermissionDenied(
                "this account is private: only approved followers see its lists",
                reason=Reason.PRIVATE_ACCOUNT,
            )

    async def followers(
        self, viewer_id: int, request: graph_pb2.ListFollowersRequest
    ) -> graph_pb2.ListFollowersResponse:
        page = self._tokens.page(f"followers:{request.user_id}", "edge_id", request)
        await self._check_visible(viewer_id, request.user_id)
        edges = await self._store.followers(request.user_id, page.position, page.limit)
        counts = await self._store.counts([request.user_id])
        return graph_pb2.ListFollowersResponse(
            followers=await self._edges(viewer_id, page.rows(edges)),
            next_page_token=page.next_token(edges, edge_position),
            total_size=counts[request.user_id][0],
        )

    async def following(
        self, viewer_id: int, request: graph_pb2.ListFollowingRequest
    ) -> graph_pb2.ListFollowingResponse:
        page = self._tokens.page(f"following:{request.user_id}", "edge_id", request)
        await self._check_visible(viewer_id, request.user_id)
        edges = await self._store.following(request.user_id, page.position, page.limit)
        counts = await self._store.counts([request.user_id])
        return graph_pb2.ListFollowingResponse(
            following=await self._edges(viewer_id, page.rows(edges)),
            next_page_token=page.next_token(edges, edge_position),
            total_size=counts[request.user_id][1],
        )

    async def follower_ids(
        self, request: graph_pb2.ListFollowerIdsRequest
    ) -> graph_pb2.ListFollowerIdsResponse:
        """Every follower of an account, for fan-out: privacy does not apply."""
        require_positive_id(request.user_id, "user_id")
        page = self._tokens.page(
            f"follower-ids:{request.user_id}", "edge_id", request, FOLLOWER_ID_PAGES
        )
        edges = await self._store.followers(request.user_id, page.position, page.limit)
        return graph_pb2.ListFollowerIdsResponse(
            follower_ids=[e.user_id for e in page.rows(edges)],
            next_page_token=page.next_token(edges, edge_position),
        )

    async def follow_requests(
        self, caller_id: int, request: graph_pb2.ListFollowRequestsRequest
    ) -> graph_pb2.ListFollowRequestsResponse:
        page = self._tokens.page(f"requests:{caller_id}", "edge_id", request)
        edges = await self._store.pending_requests(caller_id, page.position, page.limit)
        shown = page.rows(edges)
        cards = await self._cards.get_many(caller_id, (e.user_id for e in shown))
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

    async def own(
        self, kind: str, caller_id: int, request: OwnListRequest
    ) -> tuple[list[graph_pb2.ListedAccount], str]:
        """A page of the caller's blocks or mutes with the accounts' cards."""
        page = self._tokens.page(f"{kind}:{caller_id}", "position", request)
        listed = await self._store.listed(kind, caller_id, page.position, page.limit)
        shown = page.rows(listed)
        cards = await self._cards.get_many(caller_id, (e.user_id for e in shown))
        accounts = [
            graph_pb2.ListedAccount(
                user_id=e.user_id,
                create_time=from_datetime(e.created_at),
                user=cards.get(e.user_id),
            )
            for e in shown
        ]
        return accounts, page.next_token(listed, lambda e: e.position)
