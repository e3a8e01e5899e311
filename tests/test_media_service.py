"""The media service over real gRPC, real PostgreSQL/Redis and a real blob directory.

Every file is generated here with Pillow (or assembled box by box for MP4), so
what is checked is what a real decoder makes of real bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import struct
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from google.api import httpbody_pb2
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image
from socialmesh.media.v1 import events_pb2, media_pb2, media_pb2_grpc
from socialmesh.post.v1 import events_pb2 as post_events

from gateway.envoy_config import EdgeSettings, FileRoute, Upstream, render_yaml
from services.kit.auth import jwks_json, load_public_key
from services.kit.consumers import EventMeta
from services.kit.events import recent_events
from services.media.blobs import blob_key
from services.media.service import SERVICE_NAME
from services.media.servicer import MediaServicer

from .conftest import Infra, Mesh, Person, free_port
from .edge_support import DESCRIPTOR_SET, envoy, until_ready
from .helpers import code_of, violations
from .media_support import PROCESSING, Sent, chunks, image_bytes, mp4, settled, upload

READY = media_pb2.MEDIA_STATE_READY
FAILED = media_pb2.MEDIA_STATE_FAILED
W320, W640, W1080 = (
    media_pb2.VARIANT_KIND_W320,
    media_pb2.VARIANT_KIND_W640,
    media_pb2.VARIANT_KIND_W1080,
)
GPS_IFD = 0x8825
ORIENTATION = 0x0112
MIB = 1024 * 1024


# -- files ---------------------------------------------------------------------------


def jpeg_with_gps(orientation: int = 6) -> bytes:
    """A 600x400 JPEG whose EXIF says "rotate 90°" and carries a GPS position."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    data = image_bytes("JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS_IFD), "fixture must carry GPS"
    return data


def png_bomb() -> bytes:
    """A real PNG of 100,000 x 100,000 pixels in a few KiB (all zeros compress away)."""
    small = io.BytesIO()
    Image.new("1", (8, 8)).save(small, "PNG")
    data = bytearray(small.getvalue())
    # Rewrite IHDR's width and height, then its CRC: the header now promises 10^10 pixels.
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


# -- calls ---------------------------------------------------------------------------


@pytest.fixture
def service(mesh: Mesh) -> MediaServicer:
    servicer = mesh["media"].host.servicer
    assert isinstance(servicer, MediaServicer)
    return servicer


@pytest.fixture
def small_images(service: MediaServicer) -> Iterator[None]:
    """A 1 MiB image limit for one test (cutting a 20 MiB upload off works the same way)."""
    before = service.config
    service.config = dataclasses.replace(before, max_image_bytes=MIB)
    yield
    service.config = before


WEBP, AVIF = "image/webp", "image/avif"


def variant(got: media_pb2.Media, kind: int, content_type: str = WEBP) -> media_pb2.MediaVariant:
    (found,) = [v for v in got.variants if (v.kind, v.content_type) == (kind, content_type)]
    return found


async def download(
    media: media_pb2_grpc.MediaServiceStub, url: str
) -> tuple[bytes, list[int], dict[str, str]]:
    """(bytes, piece sizes, initial metadata) of a variant URL, anonymously."""
    token, name = url.split("/")[-2:]
    call = media.Download(media_pb2.DownloadRequest(token=token, variant=name))
    pieces = [piece async for piece in call]
    headers = {k: str(v) for k, v in (await call.initial_metadata())}
    return b"".join(p.data for p in pieces), [len(p.data) for p in pieces], headers


async def blob_rows(mesh: Mesh, sha256: str) -> int:
    db = mesh["media"].host.runtime.db
    return int(
        await db.primary.fetchval("SELECT count(*) FROM media.blobs WHERE sha256 = $1", sha256)
    )


async def worker_idle(mesh: Mesh) -> None:
    db = mesh["media"].host.runtime.db
    deadline = time.monotonic() + 60
    while await db.primary.fetchval(
        "SELECT count(*) FROM media.media WHERE state = $1", PROCESSING
    ):
        assert time.monotonic() < deadline, "the worker did not catch up"
        await asyncio.sleep(0.1)


async def blob_count(mesh: Mesh) -> int:
    db = mesh["media"].host.runtime.db
    return int(await db.primary.fetchval("SELECT count(*) FROM media.blobs"))


def blob_path(service: MediaServicer, sha256: str) -> Path:
    return Path(service.config.storage_url.removeprefix("file://")) / blob_key(sha256)


# -- upload, processing, serving ------------------------------------------------------


async def test_jpeg_loses_gps_and_is_turned_upright(media, make_person, service) -> None:
    alice = await make_person()
    data = jpeg_with_gps(orientation=6)
    first = await upload(media, alice, data, description="  a field  ")
    assert first.state == PROCESSING and first.owner_id == alice.id
    assert first.content_type == "image/jpeg" and first.media_type == media_pb2.MEDIA_TYPE_IMAGE
    assert (first.width, first.height) == (400, 600)  # orientation 6 swaps the axes
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.size_bytes == len(data)
    assert first.description == "a field" and not first.variants

    got = await settled(media, alice, first.media_id)
    assert got.state == READY, got.failure_reason
    assert len(got.blurhash) >= 6
    assert [(v.kind, v.content_type) for v in got.variants] == [
        (kind, content_type) for kind in (W320, W640, W1080) for content_type in (WEBP, AVIF)
    ]
    assert (variant(got, W320).width, variant(got, W320).height) == (320, 480)
    # Never upscaled: the 640 and 1080 renditions of a 400-wide image are 400 wide.
    assert (variant(got, W1080).width, variant(got, W1080).height) == (400, 600)

    small = variant(got, W320)
    assert small.content_type == "image/webp"
    assert str(first.media_id) not in small.url  # the URL does not derive from the id
    body, pieces, headers = await download(media, small.url)
    assert hashlib.sha256(body).hexdigest() == small.sha256 and len(body) == small.size_bytes
    assert headers["etag"] == f'"{small.sha256}"' and "immutable" in headers["cache-control"]
    assert pieces[0] <= 16 * 1024
    served = Image.open(io.BytesIO(body))
    assert served.format == "WEBP" and served.size == (320, 480)
    assert "exif" not in served.info and not served.getexif()
    assert b"Exif" not in body and b"GPS" not in body
    avif = variant(got, W320, AVIF)
    assert avif.url.endswith("/w320.avif") and small.url.endswith("/w320.webp")
    avif_body, _, _ = await download(media, avif.url)
    decoded = Image.open(io.BytesIO(avif_body))
    assert decoded.format == "AVIF" and decoded.size == (320, 480) and not decoded.getexif()


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("AVIF", "image/avif"),
        ("HEIF", "image/heic"),
    ],
)
async def test_every_image_format_is_accepted(media, make_person, fmt, content_type) -> None:
    bob = await make_person()
    data = image_bytes(fmt, (200, 100))
    got = await upload(media, bob, data, content_type="application/octet-stream")
    assert got.content_type == content_type and (got.width, got.height) == (200, 100)
    done = await settled(media, bob, got.media_id)
    assert done.state == READY, done.failure_reason
    assert variant(done, W320).width == 200


async def test_type_is_decided_by_content_not_name_or_claim(media, make_person) -> None:
    carol = await make_person()
    got = await upload(
        media, carol, image_bytes("PNG"), filename="holiday.jpg", content_type="image/jpeg"
    )
    assert got.content_type == "image/png"
    assert got.declared_content_type == "image/jpeg" and got.filename == "holiday.jpg"


async def test_text_and_broken_images_are_refused(media, make_person) -> None:
    dave = await make_person()
    with pytest.raises(grpc.aio.AioRpcError) as text:
        await upload(media, dave, b"just some text, honestly " * 100, content_type="image/png")
    assert text.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "decided by its content" in violations(text.value)["file"]
    # Right magic number, but the decode fails: the real decode is what decides.
    truncated = image_bytes("JPEG")[:300]
    with pytest.raises(grpc.aio.AioRpcError) as broken:
        await upload(media, dave, truncated)
    assert broken.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "file" in violations(broken.value)
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await upload(media, dave, b"")
    assert violations(empty.value) == {"file": "required: the upload has no bytes"}


async def test_decompression_bomb_is_refused_quickly_with_bounded_memory(
    media, make_person
) -> None:
    eve = await make_person()
    bomb = png_bomb()
    assert len(bomb) < 4096
    rss_before = psutil.Process().memory_info().rss
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await upload(media, eve, bomb, content_type="image/png")
    elapsed = time.monotonic() - started
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "pixels" in violations(refused.value)["file"]
    assert elapsed < 2.0
    # Decoding it would take 10^10 bytes even at one byte per pixel; the service (in
    # this process) grew by far less than one such frame row block.
    assert psutil.Process().memory_info().rss - rss_before < 100 * MIB


def endless(
    head: bytes, chunks: int, chunk: int, sent: Sent
) -> Iterator[media_pb2.UploadMediaRequest]:
    """An upload of `head` then `chunks` zero-filled chunks, made as they are pulled."""
    yield media_pb2.UploadMediaRequest(
        filename="big.jpg", file=httpbody_pb2.HttpBody(content_type="image/jpeg", data=head)
    )
    for _ in range(chunks):
        sent.count += 1
        yield media_pb2.UploadMediaRequest(file=httpbody_pb2.HttpBody(data=bytes(chunk)))


async def refused_midstream(
    mesh: Mesh, who: Person, head: bytes, chunks: int, chunk: int = MIB
) -> tuple[grpc.RpcError, int]:
    """The error of an upload the server ends while the client is still sending, and
    how many chunks the client had handed over when it arrived.

    The stream is far larger than what flow-control windows and socket buffers can
    hold, so the client can only get far if the server keeps reading. (The blocking
    client: grpc.aio's sometimes reports its own failed write, INTERNAL "Failed
    execute_batch", instead of the server's status when the server answers first.)
    """
    sent = Sent()

    def call() -> tuple[grpc.RpcError, int]:
        with grpc.insecure_channel(mesh["media"].address) as channel:
            stub = media_pb2_grpc.MediaServiceStub(channel)
            try:
                stub.UploadMedia(endless(head, chunks, chunk, sent), metadata=who.md, timeout=120)
            except grpc.RpcError as exc:
                return exc, sent.count
        raise AssertionError("the upload was accepted")

    return await asyncio.to_thread(call)


async def refused_midstream_declared(mesh: Mesh, who: Person, declared: int) -> grpc.RpcError:
    """An upload whose first message declares `declared` bytes (refused at once)."""

    def call() -> grpc.RpcError:
        first = media_pb2.UploadMediaRequest(
            size_bytes=declared,
            file=httpbody_pb2.HttpBody(content_type="image/jpeg", data=image_bytes("JPEG")),
        )
        with grpc.insecure_channel(mesh["media"].address) as channel:
            try:
                media_pb2_grpc.MediaServiceStub(channel).UploadMedia(
                    iter([first]), metadata=who.md, timeout=60
                )
            except grpc.RpcError as exc:
                return exc
        raise AssertionError("the upload was accepted")

    return await asyncio.to_thread(call)


def sync_violations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def test_upload_over_the_limit_is_cut_off_and_leaves_nothing(
    make_person, service, small_images, mesh
) -> None:
    frank = await make_person()
    head = image_bytes("JPEG")[:2000]
    await worker_idle(mesh)  # no variants of earlier uploads land during the count
    blobs_before = await blob_count(mesh)
    over, sent_then = await refused_midstream(mesh, frank, head, chunks=256)  # 256 MiB
    assert over.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "1 MiB limit" in sync_violations(over)["file"]
    # Cut off at the limit: the client was stopped long before its 256 MiB were sent.
    assert sent_then < 64, sent_then
    # Nothing left behind: no spool file, no blob (this test stores nothing else).
    assert not list(service.config.staging_dir.glob("upload-*"))
    assert await blob_count(mesh) == blobs_before
    # A declared size over the limit is refused before any byte is stored.
    declared = await refused_midstream_declared(mesh, frank, 2 * MIB)
    assert "sizeBytes" in sync_violations(declared)


async def test_default_image_limit_is_20_mib(make_person, service, mesh) -> None:
    grace = await make_person()
    assert service.config.max_image_bytes == 20 * MIB
    over, sent_then = await refused_midstream(mesh, grace, image_bytes("PNG")[:1000], chunks=400)
    assert "20 MiB limit" in sync_violations(over)["file"]
    assert sent_then < 200, sent_then


async def test_video_limit_is_100_mib(make_person, mesh) -> None:
    """The limit follows the type the first bytes reveal: 20 MiB passes for MP4."""
    ivan = await make_person()
    over, sent_then = await refused_midstream(mesh, ivan, mp4()[:64], chunks=300)
    assert "100 MiB limit" in sync_violations(over)["file"]
    assert 90 <= sent_then < 200, sent_then


async def test_declared_size_must_match(media, make_person) -> None:
    hank = await make_person()
    data = image_bytes("PNG")
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await upload(media, hank, data, size_bytes=len(data) + 1)
    assert "sizeBytes" in violations(wrong.value)
    ok = await upload(media, hank, data, size_bytes=len(data))
    assert ok.size_bytes == len(data)


async def test_retried_upload_returns_the_first_media(media, make_person, mesh) -> None:
    ivy = await make_person()
    data = image_bytes("PNG", (120, 80))
    first = await upload(media, ivy, data, request_id="retry-1")
    again = await upload(media, ivy, data, request_id="retry-1")
    assert again.media_id == first.media_id
    # Even different bytes: the request id names the upload, not its content.
    other = image_bytes("PNG", (121, 80))
    third = await upload(media, ivy, other, request_id="retry-1")
    assert third.media_id == first.media_id
    assert await blob_rows(mesh, hashlib.sha256(other).hexdigest()) == 0
    # Request ids are per user.
    jack = await make_person()
    theirs = await upload(media, jack, data, request_id="retry-1")
    assert theirs.media_id != first.media_id


async def test_same_bytes_are_stored_once(media, make_person, mesh, service) -> None:
    kim, lee = await make_person(), await make_person()
    data = image_bytes("PNG", (90, 90))
    a = await upload(media, kim, data)
    b = await upload(media, lee, data)
    assert a.media_id != b.media_id and a.sha256 == b.sha256
    assert await blob_rows(mesh, a.sha256) == 1
    assert blob_path(service, a.sha256).read_bytes() == data
    done_a, done_b = await settled(media, kim, a.media_id), await settled(media, lee, b.media_id)
    # Identical renditions share their blobs too, but each media has its own URLs.
    assert variant(done_a, W320).sha256 == variant(done_b, W320).sha256
    assert variant(done_a, W320).url != variant(done_b, W320).url


async def test_video_is_typed_by_content_with_duration(media, make_person) -> None:
    mo = await make_person()
    data = mp4(duration_ms=5000)
    got = await upload(media, mo, data, content_type="image/png", filename="clip.png")
    assert got.media_type == media_pb2.MEDIA_TYPE_VIDEO and got.content_type == "video/mp4"
    assert got.duration_ms == 5000
    done = await settled(media, mo, got.media_id)
    assert done.state == READY
    original = variant(done, media_pb2.VARIANT_KIND_ORIGINAL, "video/mp4")
    assert original.url.endswith("/original.mp4")
    body, _, _ = await download(media, original.url)
    assert body == data
    with pytest.raises(grpc.aio.AioRpcError) as truncated:
        await upload(media, mo, data[:40], content_type="video/mp4")
    assert "file" in violations(truncated.value)


# -- owner rules ---------------------------------------------------------------------


async def test_only_the_owner_reads_updates_and_deletes(media, make_person) -> None:
    owner, other = await make_person(), await make_person()
    got = await upload(media, owner, image_bytes("PNG", (50, 50)))
    get = media_pb2.GetMediaRequest(media_id=got.media_id)
    mask = field_mask_pb2.FieldMask(paths=["description"])
    update = media_pb2.UpdateMediaRequest(
        media=media_pb2.Media(media_id=got.media_id, description="mine now"), update_mask=mask
    )
    delete = media_pb2.DeleteMediaRequest(media_id=got.media_id)
    assert (
        await code_of(media.GetMedia(get, metadata=other.md)) == grpc.StatusCode.PERMISSION_DENIED
    )
    assert await code_of(media.UpdateMedia(update, metadata=other.md)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await code_of(media.DeleteMedia(delete, metadata=other.md)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await code_of(media.GetMedia(get)) == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(media.UploadMedia(chunks(b"x"))) == grpc.StatusCode.UNAUTHENTICATED

    updated = await media.UpdateMedia(
        media_pb2.UpdateMediaRequest(
            media=media_pb2.Media(media_id=got.media_id, description="a red square"),
            update_mask=mask,
        ),
        metadata=owner.md,
    )
    assert updated.description == "a red square"
    await media.DeleteMedia(delete, metadata=owner.md)
    assert await code_of(media.GetMedia(get, metadata=owner.md)) == grpc.StatusCode.NOT_FOUND
    assert await code_of(media.DeleteMedia(delete, metadata=owner.md)) == grpc.StatusCode.NOT_FOUND


async def test_requests_are_validated_field_by_field(media, make_person) -> None:
    nat = await make_person()
    with pytest.raises(grpc.aio.AioRpcError) as bad_mask:
        await media.UpdateMedia(
            media_pb2.UpdateMediaRequest(
                media=media_pb2.Media(media_id=1, owner_id=5),
                update_mask=field_mask_pb2.FieldMask(paths=["owner_id"]),
            ),
            metadata=nat.md,
        )
    assert "updateMask" in violations(bad_mask.value)
    with pytest.raises(grpc.aio.AioRpcError) as long_text:
        await media.UpdateMedia(
            media_pb2.UpdateMediaRequest(
                media=media_pb2.Media(media_id=1, description="x" * 1501),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            ),
            metadata=nat.md,
        )
    assert "media.description" in violations(long_text.value)
    with pytest.raises(grpc.aio.AioRpcError) as zero:
        await media.GetMedia(media_pb2.GetMediaRequest(media_id=0), metadata=nat.md)
    assert "mediaId" in violations(zero.value)
    with pytest.raises(grpc.aio.AioRpcError) as meta:
        await upload(media, nat, image_bytes("PNG"), filename="f" * 256, request_id="r" * 65)
    assert {"filename", "requestId"} <= set(violations(meta.value))
    with pytest.raises(grpc.aio.AioRpcError) as variant_name:
        await media.Download(media_pb2.DownloadRequest(token="abc", variant="huge")).read()
    assert "variant" in violations(variant_name.value)
    missing = media.Download(media_pb2.DownloadRequest(token="nosuchtoken", variant="w320.webp"))
    assert await code_of(missing.read()) == grpc.StatusCode.NOT_FOUND


async def test_batch_get_is_internal_and_keeps_request_order(
    media, make_person, infra: Infra
) -> None:
    olga = await make_person()
    a = await upload(media, olga, image_bytes("PNG", (30, 30)))
    b = await upload(media, olga, image_bytes("PNG", (31, 30)))
    reply = await media.BatchGetMedia(
        media_pb2.BatchGetMediaRequest(media_ids=[b.media_id, 999, a.media_id]),
        metadata=infra.service_auth("post"),
    )
    assert [m.media_id for m in reply.media] == [b.media_id, a.media_id]
    assert reply.media[0].owner_id == olga.id
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await media.BatchGetMedia(
            media_pb2.BatchGetMediaRequest(), metadata=infra.service_auth("post")
        )
    assert "mediaIds" in violations(empty.value)
    anonymous = media.BatchGetMedia(media_pb2.BatchGetMediaRequest(media_ids=[a.media_id]))
    assert await code_of(anonymous) == grpc.StatusCode.UNAUTHENTICATED


async def test_attached_media_cannot_be_deleted_and_only_owners_attach(
    media, make_person, service
) -> None:
    pat, quinn = await make_person(), await make_person()
    mine = await upload(media, pat, image_bytes("PNG", (40, 40)))
    meta = EventMeta(1, "socialmesh.post.v1.PostCreated", 1, datetime.now(UTC), "post")
    # Someone else's post naming pat's media attaches nothing.
    await service._on_post_created(
        post_events.PostCreated(post_id=1, author_id=quinn.id, media_ids=[mine.media_id]), meta
    )
    assert not (await media.GetMedia(get_req(mine), metadata=pat.md)).attached
    await service._on_post_created(
        post_events.PostCreated(post_id=2, author_id=pat.id, media_ids=[mine.media_id]), meta
    )
    assert (await media.GetMedia(get_req(mine), metadata=pat.md)).attached
    delete = media_pb2.DeleteMediaRequest(media_id=mine.media_id)
    assert await code_of(media.DeleteMedia(delete, metadata=pat.md)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )


def get_req(m: media_pb2.Media) -> media_pb2.GetMediaRequest:
    return media_pb2.GetMediaRequest(media_id=m.media_id)


# -- worker failures, events, collection ------------------------------------------------


async def test_poison_files_end_failed_never_stuck(media, make_person, service, mesh) -> None:
    rae = await make_person()
    got = await upload(media, rae, image_bytes("PNG", (60, 60)))
    await settled(media, rae, got.media_id)
    # A stored original that no longer decodes (e.g. a codec regression): FAILED with why.
    junk = os.urandom(2048)
    sha = hashlib.sha256(junk).hexdigest()
    await service.blobs.put_bytes(sha, junk)
    db = mesh["media"].host.runtime.db
    await db.primary.execute(
        "UPDATE media.media SET state = $2, sha256 = $3 WHERE media_id = $1",
        got.media_id,
        PROCESSING,
        sha,
    )
    event = events_pb2.MediaUploaded(
        media_id=got.media_id, owner_id=rae.id, media_type=media_pb2.MEDIA_TYPE_IMAGE, sha256=sha
    )
    meta = EventMeta(
        2, "socialmesh.media.v1.MediaUploaded", got.media_id, datetime.now(UTC), "media"
    )
    await service._on_uploaded(event, meta)
    failed = await media.GetMedia(get_req(got), metadata=rae.md)
    assert failed.state == FAILED and "image" in failed.failure_reason
    # A file that crashed the worker on every attempt: the next delivery gives up.
    await db.primary.execute(
        "UPDATE media.media SET state = $2, attempts = $3 WHERE media_id = $1",
        got.media_id,
        PROCESSING,
        service.config.max_attempts,
    )
    await service._on_uploaded(event, meta)
    gave_up = await media.GetMedia(get_req(got), metadata=rae.md)
    assert gave_up.state == FAILED and gave_up.failure_reason == "processing kept failing"


async def test_uploads_and_processing_publish_typed_events(media, make_person, mesh) -> None:
    sam = await make_person()
    got = await upload(media, sam, image_bytes("PNG", (70, 70)))
    await settled(media, sam, got.media_id)
    redis = mesh["media"].host.runtime.redis
    deadline = time.monotonic() + 10
    while True:
        mine = [e for _, e in await recent_events(redis, "events:media", 200)]
        kinds = {type(e).__name__ for e in mine if getattr(e, "media_id", 0) == got.media_id}
        if kinds >= {"MediaUploaded", "MediaProcessed"}:
            break
        assert time.monotonic() < deadline, kinds
        await asyncio.sleep(0.1)


async def test_unattached_uploads_are_collected_with_their_blobs(
    media, make_person, service, mesh
) -> None:
    tia = await make_person()
    data = image_bytes("PNG", (77, 33))
    got = await upload(media, tia, data)
    done = await settled(media, tia, got.media_id)
    kept = await upload(media, tia, image_bytes("PNG", (78, 33)))
    db = mesh["media"].host.runtime.db
    await db.primary.execute(
        "UPDATE media.media SET created_at = now() - interval '25 hours' WHERE media_id = $1",
        got.media_id,
    )
    await service.collect(unattached_ttl=24 * 3600, blob_grace=0)
    assert await code_of(media.GetMedia(get_req(got), metadata=tia.md)) == grpc.StatusCode.NOT_FOUND
    assert (await media.GetMedia(get_req(kept), metadata=tia.md)).media_id == kept.media_id
    assert not blob_path(service, got.sha256).exists()
    assert not blob_path(service, variant(done, W320).sha256).exists()
    assert blob_path(service, kept.sha256).exists()


# -- plain-HTTP byte serving ---------------------------------------------------------


async def test_files_are_served_with_etag_range_and_head(media, make_person, service) -> None:
    uma = await make_person()
    data = mp4(duration_ms=1234)
    got = await upload(media, uma, data, content_type="video/mp4")
    done = await settled(media, uma, got.media_id)
    url = variant(done, media_pb2.VARIANT_KIND_ORIGINAL, "video/mp4").url
    assert service.files is not None and service.files.port
    size = len(data)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.files.port}") as http:
        full = await http.get(url)
        assert full.status_code == 200 and full.content == data
        assert full.headers["content-length"] == str(size)
        assert full.headers["content-type"] == "video/mp4"
        assert full.headers["accept-ranges"] == "bytes"
        assert "immutable" in full.headers["cache-control"]
        etag = full.headers["etag"]
        assert etag == f'"{hashlib.sha256(data).hexdigest()}"'

        cached = await http.get(url, headers={"If-None-Match": etag})
        assert cached.status_code == 304 and cached.content == b""
        changed = await http.get(url, headers={"If-None-Match": '"something-else"'})
        assert changed.status_code == 200

        part = await http.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{size}"
        tail = await http.get(url, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == data[-10:]
        rest = await http.get(url, headers={"Range": f"bytes={size - 5}-"})
        assert rest.status_code == 206 and rest.content == data[-5:]
        beyond = await http.get(url, headers={"Range": f"bytes={size}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{size}"
        stale = await http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"old"'})
        assert stale.status_code == 200 and stale.content == data

        head = await http.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(size)

        assert (await http.get(url.replace("original.mp4", "w320.mp4"))).status_code == 404
        token = url.split("/")[-2]
        # Another token (one character changed; never the same character again).
        forged = ("y" if token[0] == "x" else "x") + token[1:]
        assert (await http.get(url.replace(token, forged))).status_code == 404
        assert (await http.post(url)).status_code == 405


async def test_range_304_and_head_work_through_the_edge(
    media, make_person, service, mesh, infra: Infra, tmp_path: Path
) -> None:
    """A real Envoy with the file route in front of this process's media service."""
    vic = await make_person()
    assert service.files is not None
    edge_port, admin_port = free_port(), free_port()
    settings = EdgeSettings(
        edge_port=edge_port,
        admin_port=admin_port,
        jwks_json=jwks_json([load_public_key(infra.public_key_file)]),
        descriptor_path=DESCRIPTOR_SET,
        file_routes=(
            FileRoute("media-files", "/v1/media/files/", "127.0.0.1", service.files.port),
        ),
    )
    port = int(mesh["media"].address.rsplit(":", 1)[1])
    upstream = Upstream("media", "127.0.0.1", port, SERVICE_NAME)
    with envoy(render_yaml(settings, [upstream]), tmp_path) as edge:
        await until_ready(edge, admin_port, upstream_healthy=False)
        base = f"http://127.0.0.1:{edge_port}"
        async with (
            httpx.AsyncClient(base_url=base, timeout=20) as h1,
            httpx.AsyncClient(base_url=base, timeout=20, http1=False, http2=True) as h2,
        ):
            data = image_bytes("PNG", (500, 300))
            up = await h1.post(
                "/v1/media:upload?filename=e.png",
                content=data,
                headers={**dict(vic.md), "content-type": "image/png"},
            )
            assert up.status_code == 200, up.text
            done = await settled(media, vic, int(up.json()["mediaId"]))
            url = variant(done, W640).url
            size = variant(done, W640).size_bytes
            for http in (h1, h2):
                full = await http.get(url)
                assert full.status_code == 200 and len(full.content) == size
                assert full.headers["content-length"] == str(size)
                assert full.headers["content-type"] == "image/webp"
                etag = full.headers["etag"]
                cached = await http.get(url, headers={"If-None-Match": etag})
                assert cached.status_code == 304
                part = await http.get(url, headers={"Range": "bytes=10-19"})
                assert part.status_code == 206 and part.content == full.content[10:20]
                assert part.headers["content-range"] == f"bytes 10-19/{size}"
                head = await http.head(url)
                assert head.status_code == 200 and head.headers["content-length"] == str(size)
                assert (await http.get(url.replace("/w640", "/w320x"))).status_code == 404
