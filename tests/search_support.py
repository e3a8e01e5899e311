"""Search test support: the post search's SQL alone, without the service around it.

Not a test module: test modules import from here, never from each other.
"""

from __future__ import annotations

from services.kit.ratelimit import RateLimiter
from services.post.search import Position, PostQuery, PostSearch

from .conftest import Mesh, Person


def sql_search(mesh: Mesh) -> PostSearch:
    """The search's SQL alone: no re-check of the rows by the user service."""
    rt = mesh["post"].host.runtime
    return PostSearch(
        rt.db, rt.ids, rt.page_tokens, RateLimiter(rt.redis, "t", limit=1, window_seconds=1)
    )


async def sql_ids(mesh: Mesh, text: str, viewer: Person | None) -> list[int]:
    search = sql_search(mesh)
    position = Position(ceiling=mesh["post"].host.runtime.ids.next_id(), as_of_us=0)
    rows = await search._fetch(
        PostQuery(text),
        viewer.id if viewer else None,
        mention_ids=[],
        author_ids=[],
        position=position,
        newest=False,
        limit=50,
    )
    return [r.post_id for r, _ in rows]
