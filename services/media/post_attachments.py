"""The `media-attach` consumer: posts carry their media ids in PostCreated; those of
the author's own media become attached (never collected, no longer deletable).

EARLIEST: a post published before the group existed still keeps its media.
"""

from __future__ import annotations

from typing import ClassVar

from socialmesh.post.v1 import events_pb2 as post_events

from services.kit.consumers import EventHandlers, EventMeta, Start

from .store import MediaStore

GROUP = "media-attach"
START = Start.EARLIEST


class PostAttachments:
    """PostCreated -> the author's media among its ids marked attached."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(self, store: MediaStore) -> None:
        self._store = store

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(post_events.PostCreated, self.on_post_created)
        return handlers

    async def on_post_created(self, event: post_events.PostCreated, meta: EventMeta) -> None:
        if event.media_ids:
            await self._store.attach(list(event.media_ids), event.author_id)
