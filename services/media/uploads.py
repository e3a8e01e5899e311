"""Streamed uploads, checked by content.

The stream is spooled to a local staging file while it is hashed and counted;
its first bytes decide the type (magic numbers) and so the size limit, and the
upload is cut off the moment it passes that limit, leaving nothing behind. A
real decode (header bomb check first) then confirms the type, the original is
stored content-addressed, and the media row commits with its MediaUploaded event.
One upload check at a time per process bounds memory without making uploads
wait for the processing worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from socialmesh.media.v1 import media_pb2

from services.kit.errors import InvalidArgument
from services.kit.validation import Violations
from services.kit.validation import strip_control_characters as clean

from . import formats
from .blobs import BlobStore
from .config import MediaConfig
from .library import MAX_DESCRIPTION, Library
from .staging import Staged, staging_file
from .store import MediaStore, NewMedia

MAX_FILENAME = 255
MAX_REQUEST_ID = 64
MAX_CONTENT_TYPE = 255


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def metadata(first: media_pb2.UploadMediaRequest) -> tuple[str, str, str | None, str]:
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


def sniff(head: bytes) -> int:
    """The media type the first bytes prove; INVALID_ARGUMENT for anything else."""
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


class Uploads:
    """UploadMedia's work once the stream's first message is in hand."""

    def __init__(
        self,
        store: MediaStore,
        blobs: BlobStore,
        library: Library,
        config: Callable[[], MediaConfig],
        poke_relay: Callable[[], None],
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._library = library
        self._config = config
        self._poke_relay = poke_relay
        self._checking = asyncio.Semaphore(1)

    def _limit(self, media_type: int) -> int:
        if media_type == formats.VIDEO:
            return self._config().max_video_bytes
        return self._config().max_image_bytes

    async def _receive(
        self,
        first: media_pb2.UploadMediaRequest,
        rest: AsyncIterator[Any],
        staged: Staged,
    ) -> int:
        """Spools the stream; returns the sniffed media type. Aborts past the limit."""
        media_type = 0
        limit = self._config().max_video_bytes  # the largest, until the type is known
        declared = first.size_bytes

        def take(data: bytes) -> None:
            nonlocal media_type, limit
            staged.write(data)
            if not media_type and len(staged.head) >= formats.SNIFF_BYTES:
                media_type = sniff(staged.head)
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
            media_type = sniff(staged.head)
            if staged.size > self._limit(media_type):
                raise InvalidArgument([("file", "larger than the limit for this type")])
        if declared and declared != staged.size:
            raise InvalidArgument(
                [("size_bytes", f"declared {declared} bytes but {staged.size} arrived")]
            )
        return media_type

    def _inspect(self, path: Path, media_type: int) -> formats.Inspected:
        config = self._config()
        if media_type == formats.VIDEO:
            return formats.inspect_mp4(path, max_seconds=config.max_video_seconds)
        return formats.inspect_image(
            path,
            max_pixels=config.max_pixels,
            max_decoded_bytes=config.max_decoded_bytes,
        )

    async def upload(
        self,
        owner_id: int,
        first: media_pb2.UploadMediaRequest,
        rest: AsyncIterator[Any],
    ) -> media_pb2.Media:
        """Checks, stores and records one upload; a retry (same request id) is answered
        at once, without reading (or storing) the bytes again."""
        filename, description, request_id, declared = metadata(first)
        if request_id is not None:
            earlier = await self._store.by_request_id(owner_id, request_id)
            if earlier is not None:
                return self._library.present(earlier)
        with staging_file(self._config().staging_dir) as staged:
            media_type = await self._receive(first, rest, staged)
            try:
                async with self._checking:
                    found = await asyncio.to_thread(self._inspect, staged.path, media_type)
            except formats.Rejected as exc:
                raise InvalidArgument([("file", str(exc))]) from None
            sha256 = staged.sha256
            await self._store.touch_blob(sha256, staged.size)
            await self._blobs.put_file(sha256, staged.path)
            size = staged.size
        media_id, _ = await self._store.create(
            NewMedia(
                owner_id=owner_id,
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
        self._poke_relay()
        return await self._library.reread(media_id)
