"""MediaService: streamed uploads checked by content, processing worker, serving, collection.

Upload: the stream is spooled to a local staging file while it is hashed and
counted; its first bytes decide the type (magic numbers) and so the size limit,
and the upload is cut off the moment it passes that limit, leaving nothing
behind. A real decode (header bomb check first) then confirms the type, the
original is stored content-addressed, and the media row commits with its
MediaUploaded event.

Processing (consumer group `media-processing` on the service's own stream):
one attempt per delivery, counted in the row, so a file that crashes the
worker every time ends FAILED after `max_attempts` instead of staying
PROCESSING; a file Pillow refuses ends FAILED at once.

Attachment: posts carry their media ids in PostCreated; the `media-attach`
consumer marks those media attached (never collected, no longer deletable).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2
from socialmesh.media.v1 import events_pb2, media_pb2, media_pb2_grpc
from socialmesh.post.v1 import events_pb2 as post_events

from services.kit.auth import require_caller
from services.kit.consumers import EventHandlers, EventMeta, Start
from services.kit.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
)
from services.kit.idempotency import apply_idempotency_key
from services.kit.server import Runtime, ServicerBase
from services.kit.tasks import BackgroundLoop
from services.kit.timestamps import from_datetime
from services.kit.validation import Violations, batch_ids, require_positive_id
from services.kit.validation import strip_control_characters as clean

from . import formats, variants
from .blobs import BlobStore
from .config import MediaConfig
from .files import CACHE_FOREVER, FileServer
from .processing import process_image
from .store import FAILED, READY, MediaRow, MediaStore, NewMedia, VariantRow

log = logging.getLogger("socialmesh.media")

MAX_FILENAME = 255
MAX_DESCRIPTION = 1500
MAX_REQUEST_ID = 64
MAX_CONTENT_TYPE = 255
MAX_BATCH = 100
#: Download: the transcoder needs a small first message on HTTP/2 (T9), then bigger ones.
FIRST_PIECE = 16 * 1024
PIECE = 256 * 1024
UPDATABLE_PATHS = ("description",)

ORIGINAL = media_pb2.VARIANT_KIND_ORIGINAL


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


class Staged:
    """An upload being spooled to disk: counts, hashes, keeps its first bytes."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self.file = file
        self.path = path
        self.size = 0
        self.head = b""
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self._hash.update(data)
        self.size += len(data)
        if len(self.head) < formats.SNIFF_BYTES:
            self.head += data[: formats.SNIFF_BYTES - len(self.head)]

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


@contextlib.contextmanager
def staging_file(directory: Path, prefix: str = "upload-") -> Iterator[Staged]:
    """A private temporary file that is always removed, whatever happens."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield Staged(f, path)
    finally:
        path.unlink(missing_ok=True)


class MediaServicer(ServicerBase, media_pb2_grpc.MediaServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.config = MediaConfig.from_env(os.environ)
        self._store: MediaStore | None = None
        self._blobs: BlobStore | None = None
        self._gc: Collector | None = None
        #: The plain-HTTP file handler, when MEDIA_HTTP_PORT is set.
        self.files: FileServer | None = None
        #: One upload check and one variant job at a time per process: bounds memory
        #: (peak ~170 MiB for a 20 MiB photo) without making uploads wait for the worker.
        self._checking = asyncio.Semaphore(1)
        self._processing = asyncio.Semaphore(1)

    async def on_ready(self) -> None:
        self._store = MediaStore(self._rt.db, self._rt.ids)
        self._blobs = BlobStore(self.config.storage_url)
        processing = EventHandlers()
        processing.on(events_pb2.MediaUploaded, self._on_uploaded)
        # EARLIEST: uploads committed before the first deployment must still be processed.
        await self.consume("media-processing", processing, start=Start.EARLIEST)
        attach = EventHandlers()
        attach.on(post_events.PostCreated, self._on_post_created)
        await self.consume("media-attach", attach, start=Start.EARLIEST)
        self._gc = Collector(self)
        self._gc.start()
        if self.config.http_port is not None:
            self.files = FileServer(lambda: self.store, lambda: self.blobs)
            await self.files.start(self._rt.settings.grpc_host, self.config.http_port)

    async def on_stop(self) -> None:
        if self._gc is not None:
            await self._gc.stop()
        if self.files is not None:
            await self.files.stop()
        await super().on_stop()

    @property
    def store(self) -> MediaStore:
        return self.ready(self._store)

    @property
    def blobs(self) -> BlobStore:
        return self.ready(self._blobs)

    # -- presentation ----------------------------------------------------------------

    def url(self, token: str, v: VariantRow) -> str:
        name = variants.file_name(v.kind, v.content_type)
        return f"{self.config.public_base_url}/v1/media/files/{token}/{name}"

    def to_proto(self, row: MediaRow) -> media_pb2.Media:
        return media_pb2.Media(
            media_id=row.media_id,
            owner_id=row.owner_id,
            content_type=row.content_type,
            state=row.state,  # type: ignore[arg-type]
            variants=[
                media_pb2.MediaVariant(
                    kind=v.kind,  # type: ignore[arg-type]
                    width=v.width,
                    height=v.height,
                    content_type=v.content_type,
                    size_bytes=v.size_bytes,
                    url=self.url(row.token, v),
                    sha256=v.sha256,
                )
                for v in row.variants
            ],
            failure_reason=row.failure_reason,
            create_time=from_datetime(row.created_at),
            description=row.description,
            media_type=row.media_type,  # type: ignore[arg-type]
            declared_content_type=row.declared_content_type,
            filename=row.filename,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            width=row.width,
            height=row.height,
            blurhash=row.blurhash,
            duration_ms=row.duration_ms,
            attached=row.attached_at is not None,
            update_time=from_datetime(row.updated_at),
        )

    async def _reread(self, media_id: int) -> media_pb2.Media:
        row = await self.store.get(media_id)
        if row is None:
            raise NotFound(f"media {media_id} not found")
        return self.to_proto(row)

    # -- upload --------------------------------------------------------------------------

    @staticmethod
    def _metadata(first: media_pb2.UploadMediaRequest) -> tuple[str, str, str | None, str]:
        """(filename, description, request_id, declared type) of the first message."""
        v = Violations()
        filename = clean(first.filename).strip()
        description = clean(first.description).strip()
        request_id = clean(first.request_id).strip() or None
        declared = first.file.content_type.strip()
        v.check(len(filename) <= MAX_FILENAME, "filename", f"at most {MAX_FILENAME} characters")
        v.check(
            len(description) <= MAX_DESCRIPTION,
            "description",
            f"at most {MAX_DESCRIPTION} characters",
        )
        v.check(
            request_id is None or len(request_id) <= MAX_REQUEST_ID,
            "request_id",
            f"at most {MAX_REQUEST_ID} characters",
        )
        v.check(
            len(declared) <= MAX_CONTENT_TYPE,
            "file.content_type",
            f"at most {MAX_CONTENT_TYPE} characters",
        )
        v.check(first.size_bytes >= 0, "size_bytes", "must not be negative")
        v.raise_if_any()
        return filename, description, request_id, declared

    def _limit(self, media_type: int) -> int:
        if media_type == formats.VIDEO:
            return self.config.max_video_bytes
        return self.config.max_image_bytes

    async def _receive(
        self,
        first: media_pb2.UploadMediaRequest,
        rest: AsyncIterator[Any],
        staged: Staged,
    ) -> int:
        """Spools the stream; returns the sniffed media type. Aborts past the limit."""
        media_type = 0
        limit = self.config.max_video_bytes  # the largest, until the type is known
        declared = first.size_bytes

        def take(data: bytes) -> None:
            nonlocal media_type, limit
            staged.write(data)
            if not media_type and len(staged.head) >= formats.SNIFF_BYTES:
                media_type = self._sniff(staged.head)
                limit = self._limit(media_type)
                if declared > limit:
                    raise InvalidArgument(
                        [("size_bytes", f"larger than the {_mib(limit)} limit for this type")]
                    )
            if staged.size > limit:
                raise InvalidArgument(
                    [("file", f"larger than the {_mib(limit)} limit for this type")]
                )

        take(first.file.data)
        async for message in rest:
            if not isinstance(message, media_pb2.UploadMediaRequest):
                raise InvalidArgument([("request", "not a well-formed UploadMediaRequest")])
            take(message.file.data)
        staged.file.flush()
        if staged.size == 0:
            raise InvalidArgument([("file", "required: the upload has no bytes")])
        if not media_type:
            media_type = self._sniff(staged.head)
            if staged.size > self._limit(media_type):
                raise InvalidArgument([("file", "larger than the limit for this type")])
        if declared and declared != staged.size:
            raise InvalidArgument(
                [("size_bytes", f"declared {declared} bytes but {staged.size} arrived")]
            )
        return media_type

    @staticmethod
    def _sniff(head: bytes) -> int:
        found = formats.sniff(head)
        if found is None:
            raise InvalidArgument(
                [
                    (
                        "file",
                        "not a supported file (JPEG, PNG, GIF, WebP, AVIF, HEIC or MP4), "
                        "decided by its content",
                    )
                ]
            )
        return found[0]

    def _inspect(self, path: Path, media_type: int) -> formats.Inspected:
        if media_type == formats.VIDEO:
            return formats.inspect_mp4(path, max_seconds=self.config.max_video_seconds)
        return formats.inspect_image(
            path,
            max_pixels=self.config.max_pixels,
            max_decoded_bytes=self.config.max_decoded_bytes,
        )

    async def UploadMedia(
        self,
        request_iterator: AsyncIterator[media_pb2.UploadMediaRequest],
        context: grpc.aio.ServicerContext,
    ) -> media_pb2.Media:
        caller = require_caller()
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise InvalidArgument([("file", "required: the upload stream was empty")])
        if not isinstance(first, media_pb2.UploadMediaRequest):
            raise InvalidArgument([("request", "not a well-formed UploadMediaRequest")])
        apply_idempotency_key(first, context.invocation_metadata())
        filename, description, request_id, declared = self._metadata(first)
        if request_id is not None:
            # A retry: answer at once, without reading (or storing) the bytes again.
            earlier = await self.store.by_request_id(caller.user_id, request_id)
            if earlier is not None:
                return self.to_proto(earlier)
        with staging_file(self.config.staging_dir) as staged:
            media_type = await self._receive(first, request_iterator, staged)
            try:
                async with self._checking:
                    found = await asyncio.to_thread(self._inspect, staged.path, media_type)
            except formats.Rejected as exc:
                raise InvalidArgument([("file", str(exc))]) from None
            sha256 = staged.sha256
            await self.store.touch_blob(sha256, staged.size)
            await self.blobs.put_file(sha256, staged.path)
            size = staged.size
        media_id, _ = await self.store.create(
            NewMedia(
                owner_id=caller.user_id,
                media_type=found.media_type,
                content_type=found.content_type,
                declared_content_type=declared,
                filename=filename,
                description=description,
                size_bytes=size,
                sha256=sha256,
                width=found.width,
                height=found.height,
                duration_ms=found.duration_ms,
                request_id=request_id,
            )
        )
        self.poke_relay()
        return await self._reread(media_id)

    # -- reads and owner changes ---------------------------------------------------

    async def GetMedia(
        self, request: media_pb2.GetMediaRequest, context: grpc.aio.ServicerContext
    ) -> media_pb2.Media:
        caller = require_caller()
        require_positive_id(request.media_id, "media_id")
        row = await self.store.get(request.media_id)
        if row is None:
            raise NotFound(f"media {request.media_id} not found")
        if row.owner_id != caller.user_id:
            raise PermissionDenied(
                "only the uploader may read media by id", reason=Reason.NOT_OWNER
            )
        return self.to_proto(row)

    async def UpdateMedia(
        self, request: media_pb2.UpdateMediaRequest, context: grpc.aio.ServicerContext
    ) -> media_pb2.Media:
        caller = require_caller()
        v = Violations()
        v.check(request.HasField("media"), "media", "required")
        paths = list(dict.fromkeys(request.update_mask.paths))
        v.check(bool(paths), "update_mask", "name the fields to update: description")
        bad = [p for p in paths if p not in UPDATABLE_PATHS]
        v.check(not bad, "update_mask", f"only description may be updated, not {', '.join(bad)}")
        v.raise_if_any()
        require_positive_id(request.media.media_id, "media.media_id")
        description = clean(request.media.description).strip()
        if len(description) > MAX_DESCRIPTION:
            raise InvalidArgument([("media.description", f"at most {MAX_DESCRIPTION} characters")])
        await self.store.update_description(request.media.media_id, caller.user_id, description)
        return await self._reread(request.media.media_id)

    async def DeleteMedia(
        self, request: media_pb2.DeleteMediaRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        require_positive_id(request.media_id, "media_id")
        await self.store.delete(request.media_id, caller.user_id)
        self.poke_relay()
        return empty_pb2.Empty()

    async def BatchGetMedia(
        self, request: media_pb2.BatchGetMediaRequest, context: grpc.aio.ServicerContext
    ) -> media_pb2.BatchGetMediaResponse:
        # Internal (never routed by the edge): the calling service decides who may see
        # what (post visibility, chat membership) and checks owner and state itself.
        ids = batch_ids(request.media_ids, "media_ids", MAX_BATCH)
        found = await self.store.get_many(ids)
        return media_pb2.BatchGetMediaResponse(
            media=[self.to_proto(found[i]) for i in ids if i in found]
        )

    async def AttachMedia(
        self, request: media_pb2.AttachMediaRequest, context: grpc.aio.ServicerContext
    ) -> media_pb2.AttachMediaResponse:
        # Internal: the calling service has authenticated the owner (its own caller).
        require_positive_id(request.owner_id, "owner_id")
        ids = batch_ids(request.media_ids, "media_ids", MAX_BATCH)
        found = await self.store.get_many(ids)
        for media_id in ids:
            row = found.get(media_id)
            if row is None:
                raise NotFound(
                    f"media_ids: no media {media_id}", resource="media", resource_id=media_id
                )
            if row.owner_id != request.owner_id:
                raise PermissionDenied(
                    f"media_ids: media {media_id} belongs to someone else",
                    reason=Reason.NOT_OWNER,
                )
            if row.state != READY:
                raise FailedPrecondition(
                    f"media_ids: media {media_id} is not READY yet",
                    reason=Reason.MEDIA_NOT_READY,
                    metadata={"mediaId": str(media_id)},
                )
        await self.store.attach(ids, request.owner_id)
        found = await self.store.get_many(ids)
        return media_pb2.AttachMediaResponse(media=[self.to_proto(found[i]) for i in ids])

    async def Download(
        self, request: media_pb2.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        v = Violations()
        v.check(0 < len(request.token) <= 64, "token", "required (the token in the media URL)")
        v.check(
            variants.parse(request.variant) is not None,
            "variant",
            "a file name as in the URL, e.g. w640.webp or original.mp4",
        )
        v.raise_if_any()
        row = await self.store.by_token(request.token)
        variant = variants.find(row, request.variant) if row else None
        if row is None or variant is None:
            raise NotFound("no such media file", resource="mediaFile")
        await context.send_initial_metadata(
            (("etag", f'"{variant.sha256}"'), ("cache-control", CACHE_FOREVER))
        )
        async for piece in self.blobs.stream(variant.sha256, first=FIRST_PIECE, rest=PIECE):
            yield httpbody_pb2.HttpBody(content_type=variant.content_type, data=piece)

    # -- processing worker -------------------------------------------------------------

    async def _on_uploaded(self, event: events_pb2.MediaUploaded, meta: EventMeta) -> None:
        attempt = await self.store.begin_attempt(event.media_id)
        if attempt is None:
            return  # processed already (a redelivery), or deleted meanwhile
        if attempt > self.config.max_attempts:
            await self._finish_failed(event.media_id, "processing kept failing")
            return
        if event.media_type == formats.VIDEO:
            original = VariantRow(
                ORIGINAL, 0, 0, event.content_type, event.size_bytes, event.sha256
            )
            await self.store.finish(event.media_id, state=READY, variants=[original])
            self.poke_relay()
            return
        with staging_file(self.config.staging_dir, "process-") as staged:
            staged.file.close()
            await self.blobs.read_to(event.sha256, staged.path)
            try:
                async with self._processing:
                    done = await asyncio.to_thread(
                        process_image,
                        staged.path,
                        max_pixels=self.config.max_pixels,
                        max_decoded_bytes=self.config.max_decoded_bytes,
                    )
            except formats.Rejected as exc:
                await self._finish_failed(event.media_id, str(exc))
                return
            except (OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of refusing a file
                await self._finish_failed(event.media_id, f"unprocessable: {type(exc).__name__}")
                return
        rows = []
        for r in done.variants:
            await self.store.touch_blob(r.sha256, len(r.data))
            await self.blobs.put_bytes(r.sha256, r.data)
            rows.append(
                VariantRow(r.kind, r.width, r.height, r.content_type, len(r.data), r.sha256)
            )
        await self.store.finish(
            event.media_id,
            state=READY,
            width=done.width,
            height=done.height,
            blurhash=done.blurhash,
            variants=rows,
        )
        self.poke_relay()

    async def _finish_failed(self, media_id: int, reason: str) -> None:
        log.info("media %d FAILED: %s", media_id, reason)
        await self.store.finish(media_id, state=FAILED, failure_reason=reason[:500])
        self.poke_relay()

    async def _on_post_created(self, event: post_events.PostCreated, meta: EventMeta) -> None:
        if event.media_ids:
            await self.store.attach(list(event.media_ids), event.author_id)

    # -- garbage collection --------------------------------------------------------------

    async def collect(self, *, unattached_ttl: float, blob_grace: float) -> tuple[int, int]:
        """One pass: (unattached media deleted, blobs deleted)."""
        media = await self.store.collect_unattached(unattached_ttl)
        if media:
            self.poke_relay()
        blobs = 0
        while True:
            async with self.store.db.transaction() as conn:
                doomed = await self.store.unreferenced_blobs(conn, blob_grace, 200)
                for sha256 in doomed:
                    await self.blobs.delete(sha256)
                await conn.execute("DELETE FROM media.blobs WHERE sha256 = ANY($1::text[])", doomed)
            blobs += len(doomed)
            if len(doomed) < 200:
                return media, blobs


class Collector(BackgroundLoop):
    """Deletes unattached uploads past their TTL and blobs nothing references."""

    def __init__(self, servicer: MediaServicer) -> None:
        self._servicer = servicer

    async def run(self) -> None:
        config = self._servicer.config
        while True:
            await asyncio.sleep(config.gc_interval_seconds)
            try:
                await self._servicer.collect(
                    unattached_ttl=config.unattached_ttl_seconds,
                    blob_grace=config.blob_grace_seconds,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("media collection failed; will retry")
