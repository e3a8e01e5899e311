"""Blocks between chat members, in either direction (graph's relationships).

A block stops every interaction between the pair in every conversation they
share: the DM refuses (BLOCKED), a group filters each event per recipient,
lists hide the other's messages, and presence is not shared. The lookups run
under chat's own credential (`anonymous_calls`), because a group asks about
pairs that do not include the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

from services.kit.auth import anonymous_calls

from .peers import ChatPeers

#: BatchGetRelationships takes at most this many ids (graph.proto).
RELATIONSHIP_BATCH = 1000
#: Concurrent lookups when checking every pair of a group being formed.
PAIR_CONCURRENCY = 8


class Blocks:
    """Which accounts a user has a block with (blocking or blocked by)."""

    def __init__(self, peers: ChatPeers) -> None:
        self._peers = peers

    async def of(self, user_id: int, others: Iterable[int]) -> set[int]:
        """The accounts among `others` that block `user_id` or that it blocks."""
        ids = [o for o in dict.fromkeys(others) if o != user_id]
        blocked: set[int] = set()
        for start in range(0, len(ids), RELATIONSHIP_BATCH):
            with anonymous_calls():
                rels = await self._peers.relationships(
                    user_id, ids[start : start + RELATIONSHIP_BATCH]
                )
            blocked.update(u for u, r in rels.items() if r.blocking or r.blocked_by)
        return blocked

    async def first_blocked_newcomer(
        self, newcomers: Sequence[int], members: Sequence[int]
    ) -> int | None:
        """A newcomer who has a block with any other member or newcomer, if one does."""
        everyone = list(dict.fromkeys([*members, *newcomers]))
        gate = asyncio.Semaphore(PAIR_CONCURRENCY)

        async def blocked(user_id: int) -> bool:
            async with gate:
                return bool(await self.of(user_id, everyone))

        found = await asyncio.gather(*(blocked(u) for u in newcomers))
        return next((u for u, hit in zip(newcomers, found, strict=True) if hit), None)
