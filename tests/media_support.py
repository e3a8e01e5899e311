"""Media test support: real image and video bytes, and upload/poll helpers over gRPC.

Not a test module: test modules import from here, never from each other.
"""

from __future__ import annotations

import asyncio
import io
import os
import struct
import tempfile
import time
from collections.abc import AsyncIterator

from google.api import httpbody_pb2
from PIL import Image
from socialmesh.media.v1 import media_pb2, media_pb2_grpc

from .conftest import Person

# Blobs of this test session go to a private directory (also for the e2e stack,
# whose `socialmesh up` inherits the environment), never to the repo's data dir.
os.environ.setdefault("MEDIA_STORAGE_ROOT", tempfile.mkdtemp(prefix="socialmesh-media-"))
# The in-process media service also serves files over plain HTTP, on a free port.
os.environ.setdefault("MEDIA_HTTP_PORT", "0")

PROCESSING = media_pb2.MEDIA_STATE_PROCESSING


def image_bytes(fmt: str, size: tuple[int, int] = (600, 400), **save: object) -> bytes:
    image = Image.new("RGB", size)
    # A gradient, so encoders and blurhash have something to chew on.
    image.putdata(
        [(x % 256, y % 256, (x + y) % 256) for y in range(size[1]) for x in range(size[0])]
    )
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def mp4(duration_ms: int = 5000) -> bytes:
    """A minimal ISO-BMFF movie: ftyp, then moov with a version-0 mvhd, then mdat."""

    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    mvhd = b"\x00\x00\x00\x00" + struct.pack(">IIII", 0, 0, 1000, duration_ms) + b"\x00" * 80
    return (
        box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2avc1mp41")
        + box(b"moov", box(b"mvhd", mvhd))
        + box(b"mdat", os.urandom(4096))
    )


class Sent:
    """How many chunks a client stream has handed to gRPC."""

    count = 0


async def chunks(
    data: bytes,
    *,
    content_type: str = "image/jpeg",
    filename: str = "photo.jpg",
    description: str = "",
    request_id: str = "",
    size_bytes: int = 0,
    chunk: int = 16 * 1024,
    sent: Sent | None = None,
) -> AsyncIterator[media_pb2.UploadMediaRequest]:
    yield media_pb2.UploadMediaRequest(
        filename=filename,
        description=description,
        request_id=request_id,
        size_bytes=size_bytes,
        file=httpbody_pb2.HttpBody(content_type=content_type, data=data[:chunk]),
    )
    for start in range(chunk, len(data), chunk):
        if sent is not None:
            sent.count += 1
        yield media_pb2.UploadMediaRequest(
            file=httpbody_pb2.HttpBody(data=data[start : start + chunk])
        )


async def upload(
    media: media_pb2_grpc.MediaServiceStub, who: Person, data: bytes, **kw: object
) -> media_pb2.Media:
    return await media.UploadMedia(chunks(data, **kw), metadata=who.md)  # type: ignore[arg-type]


async def settled(
    media: media_pb2_grpc.MediaServiceStub, who: Person, media_id: int
) -> media_pb2.Media:
    """The media once processing has ended (READY or FAILED)."""
    deadline = time.monotonic() + 30
    while True:
        got = await media.GetMedia(media_pb2.GetMediaRequest(media_id=media_id), metadata=who.md)
        if got.state != PROCESSING:
            return got
        assert time.monotonic() < deadline, "processing did not finish"
        await asyncio.sleep(0.1)
