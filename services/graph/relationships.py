"""Reading relationships: one as the caller sees it, many for a viewer (services ask for
any viewer), suggested accounts, and follow counts.

A block hides the blocker from the blocked everywhere: the single-relationship
view is NOT_FOUND, never `blocked_by: true`.
"""

from __future__ import annotations

from socialmesh.graph.v1 import graph_pb2

from services.kit.auth import current_caller, require_caller
from services.kit.errors import NotFound, PermissionDenied
from services.kit.validation import Violations, batch_ids, require_positive_id

from .peers import Accounts
from .presenter import relationship_proto
from .store import GraphStore

MAX_BATCH = 1000
#: ListSuggestedAccounts.candidate_ids: at most this many (graph.proto).
MAX_SUGGESTION_CANDIDATES = 200


def require_viewer(viewer_id: int) -> None:
    """A service may ask for any viewer (workers, for each recipient); a person only for
    themselves."""
    caller = current_caller()
    if caller is not None and caller.is_service:
        require_positive_id(viewer_id, "viewer_id")
    elif viewer_id != require_caller().user_id:
        raise PermissionDenied("viewer_id must be the caller")


class Relationships:
    """Relationship reads, suggestions and counts over the store."""

    def __init__(self, store: GraphStore, accounts: Accounts) -> None:
        self._store = store
        self._accounts = accounts

    async def load(self, viewer_id: int, user_ids: list[int]) -> list[graph_pb2.Relationship]:
        """The viewer's relationships to these accounts (the card cache's loader)."""
        rels = await self._store.relationships(viewer_id, user_ids)
        return [relationship_proto(i, rels[i]) for i in user_ids]

    async def one(self, viewer_id: int, user_id: int) -> graph_pb2.Relationship:
        require_positive_id(user_id, "user_id")
        await self._accounts.get(user_id)
        rel = (await self._store.relationships(viewer_id, [user_id]))[user_id]
        if rel.blocked_by:
            # A block hides the blocker from the blocked everywhere, this view included:
            # the same NOT_FOUND as the profile, never `blocked_by: true`.
            raise NotFound(f"user {user_id} not found")
        return relationship_proto(user_id, rel)

    async def many(
        self, request: graph_pb2.BatchGetRelationshipsRequest
    ) -> graph_pb2.BatchGetRelationshipsResponse:
        require_viewer(request.viewer_id)
        ids = batch_ids(request.user_ids, "user_ids", MAX_BATCH)
        return graph_pb2.BatchGetRelationshipsResponse(
            relationships=await self.load(request.viewer_id, ids)
        )

    async def suggestions(
        self, request: graph_pb2.ListSuggestedAccountsRequest
    ) -> graph_pb2.ListSuggestedAccountsResponse:
        require_viewer(request.viewer_id)
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
        rows = await self._store.suggestions(
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

    async def counts(self, user_ids: list[int]) -> graph_pb2.BatchGetFollowCountsResponse:
        ids = batch_ids(user_ids, "user_ids", MAX_BATCH)
        counts = await self._store.counts(ids)
        return graph_pb2.BatchGetFollowCountsResponse(
            counts=[
                graph_pb2.FollowCounts(
                    user_id=i, follower_count=counts[i][0], following_count=counts[i][1]
                )
                for i in ids
            ]
        )
