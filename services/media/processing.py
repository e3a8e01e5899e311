"""Variant production (runs in a worker thread): orientation, EXIF dropped, WebP, blurhash.

Each variant is re-encoded from pixels, so no metadata of the original (EXIF,
GPS above all, XMP, comments) can survive into what is served.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import blurhash
from PIL import Image, ImageOps, features

from .formats import Rejected, open_image, oriented_size
from .variants import IMAGE_WIDTHS

#: (MIME type, Pillow format, encoder options) of every image rendition: WebP
#: always, AVIF too where this Pillow build can encode it (smaller, slower).
ENCODINGS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("image/webp", "WEBP", {"quality": 80, "method": 4}),
    *((("image/avif", "AVIF", {"quality": 60, "speed": 8}),) if features.check("avif") else ()),
)


@dataclass(frozen=True)
class Rendition:
    kind: int
    width: int
    height: int
    content_type: str
    data: bytes
    sha256: str


@dataclass(frozen=True)
class Processed:
    width: int
    height: int
    blurhash: str
    variants: list[Rendition]


def _flatten(image: Image.Image) -> Image.Image:
    """RGB or RGBA, whatever the source mode (palette, 16-bit, CMYK...)."""
    if image.mode in ("RGB", "RGBA"):
        return image
    has_alpha = image.mode in ("LA", "PA") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def process_image(path: Path, *, max_pixels: int, max_decoded_bytes: int) -> Processed:
    """The 320/640/1080 renditions (never upscaled; WebP, and AVIF) and a blurhash."""
    image = open_image(path, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
    with image:
        width, height = oriented_size(image)
        try:
            # Decode no more pixels than the largest variant needs (JPEG DCT scaling).
            image.draft("RGB", (IMAGE_WIDTHS[-1][2], IMAGE_WIDTHS[-1][2]))
            oriented = ImageOps.exif_transpose(image)
            assert oriented is not None
            frame = _flatten(oriented)
            frame.load()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise Rejected(f"the image cannot be decoded: {type(exc).__name__}") from None
    variants = []
    for kind, _name, target in IMAGE_WIDTHS:
        w = min(target, width, frame.width)
        h = max(1, round(height * w / width))
        scaled = frame if (w, h) == frame.size else frame.resize((w, h), Image.Resampling.LANCZOS)
        for content_type, fmt, options in ENCODINGS:
            out = io.BytesIO()
            scaled.save(out, fmt, **options)
            data = out.getvalue()
            variants.append(
                Rendition(kind, w, h, content_type, data, hashlib.sha256(data).hexdigest())
            )
    thumb = frame.convert("RGB")
    thumb.thumbnail((64, 64))
    placeholder = blurhash.encode(thumb, x_components=4, y_components=3)
    return Processed(width, height, placeholder, variants)
