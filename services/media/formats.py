"""What a file is, decided from its bytes: magic numbers first, then a real decode.

Never from the client's Content-Type or the filename. Images are opened with
Pillow (plus pillow-heif for HEIC) and their header checked against the
decompression-bomb caps *before* any pixel is decoded; MP4 is recognised by its
`ftyp` box and its duration read from `moov/mvhd` (container parsing, no codec).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pillow_heif
from PIL import Image, UnidentifiedImageError

pillow_heif.register_heif_opener()

IMAGE = 1  # media.v1.MediaType.MEDIA_TYPE_IMAGE
VIDEO = 2  # media.v1.MediaType.MEDIA_TYPE_VIDEO

#: Enough of the head of a file for every magic number below.
SNIFF_BYTES = 32

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_MP4_BRANDS = {
    b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"dash",
    b"mp71", b"MSNV", b"3gp4", b"3gp5", b"3g2a",
}  # fmt: skip

#: Pillow's format name -> the MIME type we store and serve.
PILLOW_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
    "HEIF": "image/heic",
}


class Rejected(ValueError):
    """The bytes are not an acceptable file; the message is safe to show the client."""


def sniff(head: bytes) -> tuple[int, str] | None:
    """(media type, provisional MIME type) from magic numbers, or None if unsupported."""
    if head.startswith(b"\xff\xd8\xff"):
        return IMAGE, "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return IMAGE, "image/png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return IMAGE, "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return IMAGE, "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return IMAGE, "image/avif"
        if brand in _HEIF_BRANDS:
            return IMAGE, "image/heic"
        if brand in _MP4_BRANDS:
            return VIDEO, "video/mp4"
    return None


@dataclass(frozen=True)
class Inspected:
    """What the decode found (dimensions after EXIF orientation)."""

    media_type: int
    content_type: str
    width: int = 0
    height: int = 0
    duration_ms: int = 0


def _bytes_per_pixel(mode: str) -> int:
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return 2
    if mode in ("I", "F"):
        return 4
    return max(Image.getmodebands(mode), 1) if mode in Image.MODES else 4


def check_image_header(image: Image.Image, *, max_pixels: int, max_decoded_bytes: int) -> None:
    """The bomb guard: refuses by the header's dimensions, before decoding anything."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise Rejected("the image has no pixels")
    pixels = width * height
    if pixels > max_pixels:
        raise Rejected(f"the image has {pixels} pixels; at most {max_pixels} are accepted")
    if pixels * _bytes_per_pixel(image.mode) > max_decoded_bytes:
        raise Rejected(f"the image would decode to more than {max_decoded_bytes} bytes")


def open_image(path: Path, *, max_pixels: int, max_decoded_bytes: int) -> Image.Image:
    """Opens (header only) and bomb-checks an image; Rejected if it is no image we take."""
    try:
        with warnings.catch_warnings():
            # Pillow's own guard warns (or raises above 2x its cap); ours is below.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Rejected(
            f"the image has too many pixels; at most {max_pixels} are accepted"
        ) from None
    except UnidentifiedImageError:
        raise Rejected("not a supported image (decided by its content)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise Rejected(f"the image cannot be read: {type(exc).__name__}") from None
    if image.format not in PILLOW_FORMATS:
        image.close()
        raise Rejected(f"{image.format} images are not accepted")
    try:
        check_image_header(image, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    except Rejected:
        image.close()
        raise
    return image


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """Width and height once EXIF orientation is applied (5-8 swap the axes)."""
    orientation = image.getexif().get(0x0112, 1)
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def inspect_image(path: Path, *, max_pixels: int, max_decoded_bytes: int) -> Inspected:
    """Header check, then a real (reduced where the codec allows) decode of frame one."""
    image = open_image(path, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    with image:
        content_type = PILLOW_FORMATS[str(image.format)]
        width, height = oriented_size(image)
        try:
            image.draft("RGB", (320, 320))  # JPEG: DCT-scaled decode, a fraction of the cost
            image.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise Rejected(f"the image cannot be decoded: {type(exc).__name__}") from None
    return Inspected(IMAGE, content_type, width, height)


def _boxes(f: BinaryIO, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload offset, payload end) of the ISO-BMFF boxes in [start, end)."""
    found = []
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            break
        size, kind = struct.unpack(">I4s", header)
        payload = pos + 8
        if size == 1:
            large = f.read(8)
            if len(large) < 8:
                break
            size = struct.unpack(">Q", large)[0]
            payload = pos + 16
        elif size == 0:
            size = end - pos
        if size < payload - pos or pos + size > end:
            raise Rejected("the MP4 container is malformed")
        found.append((kind, payload, pos + size))
        pos += size
        if len(found) > 10_000:
            raise Rejected("the MP4 container has too many boxes")
    return found


def inspect_mp4(path: Path, *, max_seconds: int) -> Inspected:
    """Checks the MP4 box structure (ftyp first, a moov with mvhd) and reads the duration."""
    size = path.stat().st_size
    with path.open("rb") as f:
        top = _boxes(f, 0, size)
        if not top or top[0][0] != b"ftyp":
            raise Rejected("not an MP4 file (no leading ftyp box)")
        moov = next((b for b in top if b[0] == b"moov"), None)
        if moov is None:
            raise Rejected("the MP4 file has no moov box (truncated upload?)")
        mvhd = next((b for b in _boxes(f, moov[1], moov[2]) if b[0] == b"mvhd"), None)
        if mvhd is None:
            raise Rejected("the MP4 file has no movie header")
        f.seek(mvhd[1])
        version = f.read(1)
        f.read(3)
        if version == b"\x01":
            data = f.read(28)
            if len(data) < 28:
                raise Rejected("the MP4 movie header is truncated")
            timescale, duration = struct.unpack(">16xIQ", data)
        else:
            data = f.read(16)
            if len(data) < 16:
                raise Rejected("the MP4 movie header is truncated")
            timescale, duration = struct.unpack(">8xII", data)
    if timescale == 0:
        raise Rejected("the MP4 movie header has no timescale")
    duration_ms = duration * 1000 // timescale
    if duration_ms > max_seconds * 1000:
        raise Rejected(f"the video is longer than {max_seconds} seconds")
    return Inspected(VIDEO, "video/mp4", duration_ms=duration_ms)
