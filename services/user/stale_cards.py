"""The `user-cards` consumer group: cards other services cache (kit/cards.py) and this
service's own records go stale.

Both are refreshed after each change commits (accounts.py), and again here from
the events in case a writer died in between. LATEST: cards cached before this
group existed expire on their own.
"""

from __future__ import annotations

from typing import ClassVar

import redis.asyncio as aioredis
from socialmesh.user.v1 import events_pb2 as user_events

from services.kit.cards import cards_changed
from services.kit.consumers import EventHandlers, EventMeta, Start

from .profiles import Profiles

GROUP = "user-cards"
START = Start.LATEST


class StaleCards:
    """The `user-cards` consumer: UserUpdated and UserDeleted -> fresh records and cards."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, redis: aioredis.Redis, profiles: Profiles) -> None:
        self._redis = redis
        self._profiles = profiles

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(user_events.UserUpdated, self.on_card_changed)
        handlers.on(user_events.UserDeleted, self.on_card_changed)
        return handlers

    async def on_card_changed(
        self, event: user_events.UserUpdated | user_events.UserDeleted, _: EventMeta
    ) -> None:
        """A writer that died after its commit left this service's own cache stale
        too: drop that first, so the cards reloaded after the bump are current."""
        await self._profiles.invalidate(event.user_id)
        await cards_changed(self._redis, (event.user_id,))
