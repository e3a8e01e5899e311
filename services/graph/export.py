"""ExportRelationships: every follow, then every block, for copies kept elsewhere
(post's and user's search projections back-fill from it)."""

from __future__ import annotations

from socialmesh.graph.v1 import graph_pb2

from services.kit.errors import InvalidArgument
from services.kit.pagination import PageSizes, PageTokens, page_size

from .presenter import EXPORT_KINDS, exported_proto
from .store import GraphStore

#: ExportRelationships pages (graph.proto): a back-fill reads every edge.
EXPORT_PAGES = PageSizes(default=5_000, maximum=10_000)
SCOPE = "export-relationships"


async def export_page(
    store: GraphStore, tokens: PageTokens, request: graph_pb2.ExportRelationshipsRequest
) -> graph_pb2.ExportRelationshipsResponse:
    """One page of edges in (kind, from, to) order; the token holds the last one."""
    size = page_size(request.page_size, default=EXPORT_PAGES.default, maximum=EXPORT_PAGES.maximum)
    data = tokens.decode(SCOPE, request.page_token)
    after: tuple[int, int, int] | None = None
    if data is not None:
        position = data.get("k"), data.get("a"), data.get("b")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in position) or (
            position[0] not in EXPORT_KINDS
        ):
            raise InvalidArgument([("page_token", "invalid or tampered page token")])
        after = position  # type: ignore[assignment]
    edges = await store.export_edges(after, size + 1)
    token = ""
    if len(edges) > size:
        kind, a, b = edges[size - 1].position
        token = tokens.encode(SCOPE, {"k": kind, "a": a, "b": b})
    return graph_pb2.ExportRelationshipsResponse(
        edges=[exported_proto(e) for e in edges[:size]], next_page_token=token
    )
