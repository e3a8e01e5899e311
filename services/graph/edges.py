"""Changing the graph: follow (or ask to), unfollow, block, mute, and answering requests.

Each change commits with its event in the store, then makes the accounts'
cached counts and relationships stale (`changes.py`) and pokes the relay. A block
hides the blocker: following someone who blocks you is NOT_FOUND, as their profile.
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
from socialmesh.graph.v1 import graph_pb2

from services.kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from services.kit.ratelimit import RateLimiter
from services.kit.validation import require_positive_id

from .changes import changed
from .peers import Accounts
from .store import FollowOutcome, GraphStore


def other(caller_id: int, user_id: int, verb: str) -> int:
    """The other account of a change; never the caller."""
    require_positive_id(user_id, "user_id")
    if user_id == caller_id:
        raise InvalidArgument([("user_id", f"you cannot {verb} yourself")])
    return user_id


class Edges:
    """The caller's follows, blocks and mutes, and the follow requests they answer."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: GraphStore,
        accounts: Accounts,
        follow_limit: RateLimiter,
        poke_relay: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._store = store
        self._accounts = accounts
        self._follow_limit = follow_limit
        self._poke_relay = poke_relay

    async def follow(self, caller_id: int, user_id: int) -> graph_pb2.FollowUserResponse:
        target = other(caller_id, user_id, "follow")
        blocking, blocked_by = await self._store.is_blocked_either_way(caller_id, target)
        if blocked_by:
            raise NotFound(f"user {target} not found")
        if blocking:
            raise FailedPrecondition(
                "you block this account: unblock it before following", reason=Reason.BLOCKING
            )
        account = await self._accounts.get(target)
        await self._follow_limit.enforce(str(caller_id), "follows")
        outcome = await self._store.follow(caller_id, target, needs_approval=account.is_private)
        await changed(self._redis, caller_id, target)
        state = (
            graph_pb2.FOLLOW_STATE_FOLLOWING
            if outcome is FollowOutcome.FOLLOWING
            else graph_pb2.FOLLOW_STATE_REQUESTED
        )
        self._poke_relay()
        return graph_pb2.FollowUserResponse(state=state)

    async def unfollow(self, caller_id: int, user_id: int) -> None:
        target = other(caller_id, user_id, "unfollow")
        await self._store.unfollow(caller_id, target)
        await changed(self._redis, caller_id, target)
        self._poke_relay()

    async def block(self, caller_id: int, user_id: int) -> None:
        target = other(caller_id, user_id, "block")
        await self._accounts.get(target)
        await self._store.block(caller_id, target)
        await changed(self._redis, caller_id, target)
        self._poke_relay()

    async def unblock(self, caller_id: int, user_id: int) -> None:
        target = other(caller_id, user_id, "unblock")
        await self._store.unblock(caller_id, target)
        await changed(self._redis, caller_id, target, counts=False)
        self._poke_relay()

    async def mute(self, caller_id: int, user_id: int) -> None:
        target = other(caller_id, user_id, "mute")
        await self._accounts.get(target)
        await self._store.mute(caller_id, target)
        await changed(self._redis, caller_id, target, counts=False)

    async def unmute(self, caller_id: int, user_id: int) -> None:
        target = other(caller_id, user_id, "unmute")
        await self._store.unmute(caller_id, target)
        await changed(self._redis, caller_id, target, counts=False)

    async def answer(
        self, caller_id: int, requester_id: int, target_id: int, *, accept: bool
    ) -> None:
        """Accepts or rejects a pending follow request to the caller."""
        require_positive_id(requester_id, "requester_id")
        target = target_id or caller_id
        if target != caller_id:
            raise PermissionDenied(
                "only the requested account may answer a follow request",
                reason=Reason.NOT_OWNER,
            )
        if not await self._store.resolve_request(requester_id, target, accept=accept):
            raise NotFound(
                f"no pending follow request from user {requester_id}",
                resource="followRequest",
                resource_id=requester_id,
            )
        await changed(self._redis, requester_id, target, counts=accept)
        self._poke_relay()
