"""Variant naming: which renditions exist and how their URLs name them.

A URL's last segment is `<kind>.<extension>` (`w640.webp`, `w640.avif`,
`original.mp4`): the extension tells browsers and CDNs the type, and the pair
names exactly one stored rendition.
"""

from __future__ import annotations

from .store import MediaRow, VariantRow

ORIGINAL = 1  # media.v1.VariantKind.VARIANT_KIND_ORIGINAL
#: (VariantKind value, name, width) of the image renditions.
IMAGE_WIDTHS = ((2, "w320", 320), (3, "w640", 640), (4, "w1080", 1080))
KIND_NAMES = {ORIGINAL: "original", **{kind: name for kind, name, _ in IMAGE_WIDTHS}}
KINDS = {name: kind for kind, name in KIND_NAMES.items()}
EXTENSIONS = {"image/webp": "webp", "image/avif": "avif", "video/mp4": "mp4"}
CONTENT_TYPES = {ext: content_type for content_type, ext in EXTENSIONS.items()}


def file_name(kind: int, content_type: str) -> str:
    return f"{KIND_NAMES[kind]}.{EXTENSIONS[content_type]}"


def parse(name: str) -> tuple[int, str] | None:
    """(kind, content type) of a URL's file name, or None if it names none."""
    stem, _, ext = name.partition(".")
    kind, content_type = KINDS.get(stem), CONTENT_TYPES.get(ext)
    if kind is None or content_type is None:
        return None
    return kind, content_type


def find(row: MediaRow, name: str) -> VariantRow | None:
    """The rendition of `row` a URL file name points at, if it exists."""
    wanted = parse(name)
    if wanted is None:
        return None
    return next((v for v in row.variants if (v.kind, v.content_type) == wanted), None)
