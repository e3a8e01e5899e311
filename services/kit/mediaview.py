"""The view of an attached medium that people other than its owner get.

Posts and chat messages embed their media (variants, dimensions, blurhash, alt
text) so clients render without another call. What only the uploader should
read stays out of that view: the file name and content type they declared,
the original's digest and size, and why processing failed (docs/payloads.md).
"""

from __future__ import annotations

from collections.abc import Iterable

from socialmesh.media.v1 import media_pb2

#: Fields of `Media` only its owner reads.
OWNER_ONLY_FIELDS = (
    "filename",
    "declared_content_type",
    "sha256",
    "size_bytes",
    "failure_reason",
)


def slim(media: Iterable[media_pb2.Media]) -> None:
    """Clears the owner-only fields of these (embedded) media, in place."""
    for medium in media:
        for name in OWNER_ONLY_FIELDS:
            medium.ClearField(name)  # type: ignore[arg-type]
