"""The `user-revocations` consumer group: crash-safe revocation of access tokens.

DeleteUser, Logout and refresh-token reuse revoke right after their commit; the
events (committed with the change) repeat it, at least once and idempotently,
in case that direct write never happened. EARLIEST: a revocation published
before this group existed must still be applied.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from socialmesh.user.v1 import events_pb2 as user_events

from services.kit.auth import Revocations
from services.kit.consumers import EventHandlers, EventMeta, Start

GROUP = "user-revocations"
START = Start.EARLIEST


class RevocationReplay:
    """The `user-revocations` consumer: UserDeleted and SessionRevoked -> revocations."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, revocations: Callable[[], Revocations]) -> None:
        self._revocations = revocations

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(user_events.UserDeleted, self.on_user_deleted)
        handlers.on(user_events.SessionRevoked, self.on_session_revoked)
        return handlers

    async def on_user_deleted(self, event: user_events.UserDeleted, _: EventMeta) -> None:
        await self._revocations().revoke_user(event.user_id)

    async def on_session_revoked(self, event: user_events.SessionRevoked, _: EventMeta) -> None:
        await self._revocations().revoke_session(event.session_id)
