"""Download: a variant's bytes through gRPC (the JSON transcoder's path; browsers use
the plain-HTTP file handler, files.py). The URL's random token is the capability."""

from __future__ import annotations

from socialmesh.media.v1 import media_pb2

from services.kit.errors import NotFound
from services.kit.validation import Violations

from . import variants
from .store import MediaStore, VariantRow

#: The transcoder needs a small first message on HTTP/2 (T9), then bigger ones.
FIRST_PIECE = 16 * 1024
PIECE = 256 * 1024


async def find_variant(store: MediaStore, request: media_pb2.DownloadRequest) -> VariantRow:
    """The variant a download names (token and file name, as in its URL), or NOT_FOUND."""
    v = Violations()
    v.check(0 < len(request.token) <= 64, "token", "required (the token in the media URL)")
    v.check(
        variants.parse(request.variant) is not None,
        "variant",
        "a file name as in the URL, e.g. w640.webp or original.mp4",
    )
    v.raise_if_any()
    row = await store.by_token(request.token)
    variant = variants.find(row, request.variant) if row else None
    if row is None or variant is None:
        raise NotFound("no such media file", resource="mediaFile")
    return variant
