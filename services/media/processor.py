"""The `media-processing` consumer: an upload's variants and blurhash, then READY or FAILED.

One attempt per delivery, counted in the row, so a file that crashes the worker
every time ends FAILED after `max_attempts` instead of staying PROCESSING; a file
Pillow refuses ends FAILED at once. Videos are kept as their original. One
variant job at a time per process bounds memory (peak ~170 MiB for a 20 MiB
photo). EARLIEST: uploads committed before the first deployment must still be
processed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import ClassVar

from socialmesh.media.v1 import events_pb2, media_pb2

from services.kit.consumers import EventHandlers, EventMeta, Start

from . import formats
from .blobs import BlobStore
from .config import MediaConfig
from .processing import process_image
from .staging import staging_file
from .store import FAILED, READY, MediaStore, VariantRow

log = logging.getLogger("socialmesh.media")

GROUP = "media-processing"
START = Start.EARLIEST

ORIGINAL = media_pb2.VARIANT_KIND_ORIGINAL


class Processor:
    """MediaUploaded -> variants stored, the row finished READY or FAILED."""

    GROUP: ClassVar[str] = GROUP
    START: ClassVar[Start] = START

    def __init__(
        self,
        store: MediaStore,
        blobs: BlobStore,
        config: Callable[[], MediaConfig],
        poke_relay: Callable[[], None],
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._config = config
        self._poke_relay = poke_relay
        self._processing = asyncio.Semaphore(1)

    def handlers(self) -> EventHandlers:
        handlers = EventHandlers()
        handlers.on(events_pb2.MediaUploaded, self.on_uploaded)
        return handlers

    async def on_uploaded(self, event: events_pb2.MediaUploaded, meta: EventMeta) -> None:
        config = self._config()
        attempt = await self._store.begin_attempt(event.media_id)
        if attempt is None:
            return  # processed already (a redelivery), or deleted meanwhile
        if attempt > config.max_attempts:
            await self._finish_failed(event.media_id, "processing kept failing")
            return
        if event.media_type == formats.VIDEO:
            original = VariantRow(
                ORIGINAL, 0, 0, event.content_type, event.size_bytes, event.sha256
            )
            await self._store.finish(event.media_id, state=READY, variants=[original])
            self._poke_relay()
            return
        with staging_file(config.staging_dir, "process-") as staged:
            staged.file.close()
            await self._blobs.read_to(event.sha256, staged.path)
            try:
                async with self._processing:
                    done = await asyncio.to_thread(
                        process_image,
                        staged.path,
                        max_pixels=config.max_pixels,
                        max_decoded_bytes=config.max_decoded_bytes,
                    )
            except formats.Rejected as exc:
                await self._finish_failed(event.media_id, str(exc))
                return
            except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of refusing a file
                await self._finish_failed(event.media_id, f"unprocessable: {type(exc).__name__}")
                return
        rows = []
        for r in done.variants:
            await self._store.touch_blob(r.sha256, len(r.data))
            await self._blobs.put_bytes(r.sha256, r.data)
            rows.append(
                VariantRow(r.kind, r.width, r.height, r.content_type, len(r.data), r.sha256)
            )
        await self._store.finish(
            event.media_id,
            state=READY,
            width=done.width,
            height=done.height,
            blurhash=done.blurhash,
            variants=rows,
        )
        self._poke_relay()

    async def _finish_failed(self, media_id: int, reason: str) -> None:
        log.info("media %d FAILED: %s", media_id, reason)
        await self._store.finish(media_id, state=FAILED, failure_reason=reason[:500])
        self._poke_relay()
