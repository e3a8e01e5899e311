"""Account cards (handle, display name, avatar, private flag) cached where other
services decide visibility and show authors, exact (kit/generations.py).

The post service decides whether a viewer may see a post from the author's
private flag (and the viewer's relationship: kit/relcache.py), and a timeline
page shows the authors' cards. Asking the user service on every read cost a
synchronous hop per page. Here the user service bumps the account's card
generation after any profile change or deletion commits, before it answers;
the reader's consumer of `UserUpdated`/`UserDeleted` bumps again. A deleted or
unknown account is cached as absent (ids are never reused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from google.protobuf import field_mask_pb2
from socialmesh.graph.v1 import graph_pb2
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from .auth import anonymous_calls
from .channels import peer_call
from .generations import GenerationCache, bump, generation_key, tag, untag
from .relcache import Loader as RelationshipLoader
from .relcache import RelationshipCache

ENTRY_TTL_SECONDS = 3600
GENERATIONS = "card"
#: What a card holds: nothing that depends on who is looking.
CARD_FIELDS = field_mask_pb2.FieldMask(
    paths=["user_id", "handle", "display_name", "avatar_url", "is_private"]
)
_ABSENT = b"-"


def _entry_key(user_id: int) -> str:
    return f"card:v1:{user_id}"


async def cards_changed(redis: aioredis.Redis, user_ids: Iterable[int]) -> None:
    """Call after a profile change or deletion of these accounts has committed."""
    await bump(redis, [GENERATIONS], user_ids)


Loader = Callable[[list[int]], Awaitable[Sequence[user_pb2.User]]]


def user_loader(users: user_pb2_grpc.UserServiceAsyncStub) -> Loader:
    """Loads from the user service's `BatchGetUsers` with this service's own
    credential: a card is the same for every viewer (blocks are relationships)."""

    async def load(user_ids: list[int]) -> Sequence[user_pb2.User]:
        with anonymous_calls():
            async with peer_call("user"):
                reply = await users.BatchGetUsers(
                    user_pb2.BatchGetUsersRequest(user_ids=user_ids, read_mask=CARD_FIELDS)
                )
        return reply.users

    return load


class CardCache(GenerationCache):
    """Generation-checked cards in Redis; absent accounts are absent from answers."""

    def __init__(
        self, redis: aioredis.Redis, namespace: str, *, ttl_seconds: int = ENTRY_TTL_SECONDS
    ) -> None:
        """`namespace` names this reader's hit counters (`cache-stats:<namespace>`)."""
        super().__init__(redis, namespace, ttl_seconds=ttl_seconds)

    async def get_many(self, user_ids: Iterable[int], loader: Loader) -> dict[int, user_pb2.User]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        keys: list[str] = []
        for user_id in ids:
            keys += (_entry_key(user_id), generation_key(GENERATIONS, user_id))
        raw: Any = await self._redis.mget(keys)
        found: dict[int, user_pb2.User] = {}
        stale: dict[int, bytes | None] = {}
        for i, user_id in enumerate(ids):
            entry, generation = raw[2 * i], raw[2 * i + 1]
            payload = untag(entry, generation)
            if payload is None:
                stale[user_id] = generation
            elif payload != _ABSENT:
                found[user_id] = user_pb2.User.FromString(payload)
        self.stats.l2_hits += len(ids) - len(stale)
        if not stale:
            return found
        self.stats.misses += len(stale)
        loaded = {u.user_id: u for u in await loader(list(stale))}
        pipe = self._redis.pipeline(transaction=False)
        for user_id, generation in stale.items():
            card = loaded.get(user_id)
            payload = card.SerializeToString() if card is not None else _ABSENT
            pipe.set(_entry_key(user_id), tag(generation, payload), ex=self._ttl)
            if card is not None:
                found[user_id] = card
        await pipe.execute()
        return found


def viewer_card(
    card: user_pb2.User, viewer_id: int | None, rel: graph_pb2.Relationship | None
) -> user_pb2.User | None:
    """The card as this viewer sees it, with the viewer state its buttons need
    (is_following, followed_by, requested, muting, blocking; all false for
    anonymous viewers and on the viewer's own card), or None when the account
    blocks the viewer: a side-loaded card never shows what its profile would
    not. A card has no counts: they stay absent, never "0"."""
    if rel is not None and rel.blocked_by:
        return None
    shown = user_pb2.User()
    shown.CopyFrom(card)
    own = viewer_id is not None and card.user_id == viewer_id
    if rel is not None and not own:
        shown.is_following = rel.following
        shown.followed_by = rel.followed_by
        shown.requested = rel.requested
        shown.muting = rel.muting
        shown.blocking = rel.blocking
    shown.is_limited_view = card.is_private and not own and not shown.is_following
    return shown


async def _no_relationships() -> dict[int, graph_pb2.Relationship]:
    return {}


class ViewerCards:
    """Account cards as one viewer sees them, from the card and relationship
    caches (both exact: kit/generations.py) in one concurrent pair of Redis
    reads: a list screen's side-loaded accounts cost no call to user or graph
    when warm, and one batch call to each when cold, whatever the page size."""

    def __init__(
        self,
        redis: aioredis.Redis,
        namespace: str,
        load_cards: Loader,
        load_relationships: RelationshipLoader,
    ) -> None:
        """`namespace` names the hit counters (`<namespace>-cards:v1`, `...-relationships:v1`)."""
        self.cards = CardCache(redis, f"{namespace}-cards:v1")
        self.relationships = RelationshipCache(redis, f"{namespace}-relationships:v1")
        self._load_cards = load_cards
        self._load_relationships = load_relationships

    def start(self) -> None:
        self.cards.start()
        self.relationships.start()

    async def stop(self) -> None:
        await self.cards.stop()
        await self.relationships.stop()

    async def get_many(
        self, viewer_id: int | None, user_ids: Iterable[int]
    ) -> dict[int, user_pb2.User]:
        """Cards of these accounts as the viewer sees them; accounts deleted,
        unknown or blocking the viewer are absent."""
        ids = list(dict.fromkeys(i for i in user_ids if i > 0))
        if not ids:
            return {}
        others = [i for i in ids if i != viewer_id]
        accounts, rels = await asyncio.gather(
            self.cards.get_many(ids, self._load_cards),
            self.relationships.get_many(viewer_id, others, self._load_relationships)
            if viewer_id is not None and others
            else _no_relationships(),
        )
        shown: dict[int, user_pb2.User] = {}
        for user_id in ids:
            card = accounts.get(user_id)
            if card is not None:
                seen = viewer_card(card, viewer_id, rels.get(user_id))
                if seen is not None:
                    shown[user_id] = seen
        return shown
