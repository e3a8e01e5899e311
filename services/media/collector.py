"""Collection: unattached uploads past their TTL, and blobs nothing references.

A background loop runs one pass every `gc_interval_seconds`; a failed pass is
logged and retried at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from services.kit.tasks import BackgroundLoop

from .blobs import BlobStore
from .config import MediaConfig
from .store import MediaStore

log = logging.getLogger("socialmesh.media")


async def collect(
    store: MediaStore,
    blobs: BlobStore,
    poke_relay: Callable[[], None],
    *,
    unattached_ttl: float,
    blob_grace: float,
) -> tuple[int, int]:
    """One pass: (unattached media deleted, blobs deleted)."""
    media = await store.collect_unattached(unattached_ttl)
    if media:
        poke_relay()
    deleted = 0
    while True:
        async with store.db.transaction() as conn:
            doomed = await store.unreferenced_blobs(conn, blob_grace, 200)
            for sha256 in doomed:
                await blobs.delete(sha256)
            await conn.execute("DELETE FROM media.blobs WHERE sha256 = ANY($1::text[])", doomed)
        deleted += len(doomed)
        if len(doomed) < 200:
            return media, deleted


class Collector(BackgroundLoop):
    """Deletes unattached uploads past their TTL and blobs nothing references."""

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

    async def run(self) -> None:
        config = self._config()
        while True:
            await asyncio.sleep(config.gc_interval_seconds)
            try:
                await collect(
                    self._store,
                    self._blobs,
                    self._poke_relay,
                    unattached_ttl=config.unattached_ttl_seconds,
                    blob_grace=config.blob_grace_seconds,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("media collection failed; will retry")
