"""Who may see which post: the one place post decides visibility.

An author deleted or blocking the viewer makes their posts NOT_FOUND (a block is
never revealed); a FOLLOWERS post, or any post of a private account, is for
approved followers only (PERMISSION_DENIED with the reason). Decided from the
account cards and the viewer's relationships, both cached here and kept exact by
their owners' generations (kit/cards.py, kit/relcache.py): a warm read asks
neither user nor graph.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2_grpc

from services.kit.cards import CardCache, user_loader, viewer_card
from services.kit.errors import NotFound, PermissionDenied, Reason
from services.kit.relcache import RelationshipCache, graph_loader
from services.kit.validation import require_positive_id

from .presenter import Cards, shown_post
from .store import PostRow, PostStore

FOLLOWERS = post_pb2.VISIBILITY_FOLLOWERS

#: Hit counters of the caches visibility is decided from (`socialmesh bench` prints them).
POST_CARDS_STATS = "post-cards:v1"
POST_RELATIONSHIPS_STATS = "post-relationships:v1"


@dataclass(frozen=True)
class Author:
    """What the viewer may know of an author (from the user service, which asks graph)."""

    is_private: bool
    is_following: bool


async def _no_relationships() -> dict[int, graph_pb2.Relationship]:
    return {}


def check(row: PostRow, authors: dict[int, Author]) -> None:
    """Raises why the viewer may not see the post (NOT_FOUND hides blocks/deletions)."""
    author = authors.get(row.author_id)
    if author is None:
        raise NotFound(f"post {row.post_id} not found")
    if (row.visibility == FOLLOWERS or author.is_private) and not author.is_following:
        raise PermissionDenied(
            "only the author's approved followers may see this post",
            reason=Reason.PRIVATE_ACCOUNT if author.is_private else Reason.FOLLOWERS_ONLY,
        )


class Visibility:
    """Authors as the viewer may know them, and the posts the viewer may see."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: PostStore,
        users: user_pb2_grpc.UserServiceAsyncStub,
        graph: graph_pb2_grpc.GraphServiceAsyncStub,
    ) -> None:
        self._store = store
        self._cards = CardCache(redis, POST_CARDS_STATS)
        self._load_cards = user_loader(users)
        self._relationships = RelationshipCache(redis, POST_RELATIONSHIPS_STATS)
        self._load_relationships = graph_loader(graph)

    def start(self) -> None:
        self._cards.start()
        self._relationships.start()

    async def stop(self) -> None:
        for cache in (self._cards, self._relationships):
            await cache.stop()

    async def authors(
        self,
        author_ids: Iterable[int],
        viewer: int | None,
        cards: Cards | None = None,
        also: Iterable[int] = (),
    ) -> dict[int, Author]:
        """Authors visible to the viewer; those deleted or blocking the viewer are absent.

        Given `cards`, the cards as the viewer sees them (kit/cards.py viewer_card)
        of the authors (the viewer's own too) and of the accounts in `also` (the
        posts' mentions) are added there, in the same reads.
        """
        ids = list(dict.fromkeys(author_ids))
        if cards is not None:
            ids = list(dict.fromkeys([*ids, *also]))
        wanted = ids if cards is not None else [a for a in ids if a != viewer]
        found: dict[int, Author] = {}
        if viewer is not None:
            found[viewer] = Author(is_private=False, is_following=True)
        if not wanted:
            return found
        others = [a for a in wanted if a != viewer]
        accounts, relationships = await asyncio.gather(
            self._cards.get_many(wanted, self._load_cards),
            self._relationships.get_many(viewer, others, self._load_relationships)
            if viewer is not None and others
            else _no_relationships(),
        )
        for author_id in wanted:
            card = accounts.get(author_id)
            rel = relationships.get(author_id)
            if card is None or (rel is not None and rel.blocked_by):
                continue  # deleted, unknown, or blocking the viewer
            following = rel is not None and rel.following
            if author_id != viewer:
                found[author_id] = Author(card.is_private, following)
            if cards is not None:
                shown = viewer_card(card, viewer, rel)
                if shown is not None:
                    cards[author_id] = shown
        return found

    async def visible(
        self,
        rows: list[PostRow],
        viewer: int | None,
        cards: Cards | None = None,
    ) -> list[PostRow]:
        """The rows the viewer may see; given `cards`, their authors' and mentioned
        accounts' cards are added there (see `authors`)."""
        mentioned = [m for r in rows for m in r.mention_ids] if cards is not None else []
        authors = await self.authors((r.author_id for r in rows), viewer, cards, mentioned)
        shown = []
        for row in rows:
            try:
                check(row, authors)
            except (NotFound, PermissionDenied):
                continue
            shown.append(row)
        return shown

    async def post(self, post_id: int, viewer: int | None, cards: Cards | None = None) -> PostRow:
        """The post if the viewer may see it, else why not (NOT_FOUND or PERMISSION_DENIED)."""
        require_positive_id(post_id, "post_id")
        row = (await self._store.posts([post_id], viewer)).get(post_id)
        if row is None:
            raise NotFound(f"post {post_id} not found")
        check(row, await self.authors([row.author_id], viewer, cards, row.mention_ids))
        return row

    async def reread(self, post_id: int, viewer: int | None) -> post_pb2.Post:
        """The post as it is now, as the viewer (who just changed it) sees it."""
        row = (await self._store.posts([post_id], viewer)).get(post_id)
        if row is None:
            raise NotFound(f"post {post_id} not found")
        cards: Cards = {}
        await self.authors([row.author_id], viewer, cards, row.mention_ids)
        return shown_post(row, viewer, cards)

    async def shown(
        self, rows: list[PostRow], viewer: int | None, cards: Cards | None = None
    ) -> list[post_pb2.Post]:
        """Visible rows as the viewer sees them, with author cards and facets; the
        cards already in `cards` are not read again."""
        cards = {} if cards is None else cards
        wanted = {r.author_id for r in rows} | {m for r in rows for m in r.mention_ids}
        missing = wanted - cards.keys()
        if missing:
            await self.authors(missing, viewer, cards, missing)
        return [shown_post(r, viewer, cards) for r in rows]
