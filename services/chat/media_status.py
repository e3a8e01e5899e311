"""Tells an uploader's clients when an upload is ready (or failed), on their own stream.

Media publishes `MediaProcessed` when processing ends; without this a client polled
`GET /v1/media/{id}` until READY before it could post the image (client review,
item 15). One consumer group, `chat-media-status`: each event becomes a `mediaStatus`
ChatEvent in the owner's event log (once: claimed in the same transaction), and the
owner's open streams wake.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

from socialmesh.chat.v1 import chat_pb2
from socialmesh.media.v1 import events_pb2 as media_events

from services.kit.consumers import EventHandlers, EventMeta, Start, claim_event
from services.kit.db import Database
from services.kit.timestamps import from_datetime

from .eventlog import EventLog, Wakeups

GROUP = "chat-media-status"
#: Uploads finishing before the group existed were polled for by their clients.
START = Start.LATEST


class MediaStatusRelay:
    """The `chat-media-status` consumer: MediaProcessed -> the owner's stream."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(
        self, db: Database, events: EventLog, wakeups: Wakeups, *, schema: str = "chat"
    ) -> None:
        self._db = db
        self._events = events
        self._wakeups = wakeups
        self._schema = schema

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(media_events.MediaProcessed, self._on_processed)
        return handlers

    async def _on_processed(self, e: media_events.MediaProcessed, meta: EventMeta) -> None:
        if e.owner_id <= 0:
            return
        event = chat_pb2.ChatEvent(
            media_status=chat_pb2.MediaStatus(
                media_id=e.media_id, state=e.state, failure_reason=e.failure_reason
            )
        )
        event.create_time.CopyFrom(from_datetime(datetime.now(UTC)))
        async with self._db.transaction() as conn:
            if not await claim_event(conn, self._schema, GROUP, meta):
                return
            positions = await self._events.append(conn, {e.owner_id: event})
        await self._wakeups.notify(positions)
