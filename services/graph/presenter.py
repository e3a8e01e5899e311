"""How relationships, follow edges and exported edges look on the wire."""

from __future__ import annotations

from socialmesh.graph.v1 import graph_pb2
from socialmesh.user.v1 import user_pb2

from services.kit.timestamps import from_snowflake

from .store import EXPORT_BLOCK, EXPORT_FOLLOW, Edge, ExportedEdge, Relationship

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


def exported_proto(edge: ExportedEdge) -> graph_pb2.RelationshipEdge:
    return graph_pb2.RelationshipEdge(
        kind=EXPORT_KINDS[edge.kind], from_user_id=edge.from_id, to_user_id=edge.to_id
    )


def edge_position(edge: Edge) -> int:
    """Where a follow list continues after this edge (its snowflake edge id)."""
    return edge.edge_id
