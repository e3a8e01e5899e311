"""A viewer's likes, reposts and saves of the posts they may see, and their saved list.

Each toggle is idempotent in the store (liking twice is one like); only a real
change writes an event, so only then is the relay poked. The answer is the post
as the viewer now sees it (counts and their own flags).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from socialmesh.post.v1 import post_pb2

from services.kit.pagination import PageSizes, PageTokens

from .presenter import Cards, shown_post
from .store import PostStore
from .visibility import Visibility

#: ListSavedPosts page sizes (post.proto).
SAVED_PAGES = PageSizes(default=20, maximum=100)

Action = Literal["like", "share", "save"]


class Interactions:
    """Like/unlike, share/unshare, save/unsave, and the saved list."""

    def __init__(
        self,
        store: PostStore,
        visibility: Visibility,
        tokens: PageTokens,
        poke_relay: Callable[[], None],
    ) -> None:
        self._store = store
        self._visibility = visibility
        self._tokens = tokens
        self._poke_relay = poke_relay

    async def toggle(self, viewer: int, post_id: int, action: Action, on: bool) -> post_pb2.Post:
        row = await self._visibility.post(post_id, viewer)
        toggle = {"like": self._store.like, "share": self._store.share, "save": self._store.save}
        if await toggle[action](row.post_id, viewer, on):
            self._poke_relay()
        return await self._visibility.reread(row.post_id, viewer)

    async def saved(
        self, viewer: int, request: post_pb2.ListSavedPostsRequest
    ) -> post_pb2.ListSavedPostsResponse:
        """The viewer's saved posts, newest save first, minus those they may no longer see."""
        page = self._tokens.page(f"saves:{viewer}", "save_id", request, SAVED_PAGES)
        saved = await self._store.saved(viewer, page.position, page.limit)
        post_ids = [post_id for post_id, _save_id in page.rows(saved)]
        rows = await self._store.posts(post_ids, viewer)
        cards: Cards = {}
        visible = {
            r.post_id: r for r in await self._visibility.visible(list(rows.values()), viewer, cards)
        }
        return post_pb2.ListSavedPostsResponse(
            posts=[shown_post(visible[p], viewer, cards) for p in post_ids if p in visible],
            next_page_token=page.next_token(saved, lambda s: s[1]),
        )
