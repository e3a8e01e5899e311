"""Plain-HTTP byte serving of variant URLs: ETag, 304, Range/206, HEAD.

The gRPC-JSON transcoder cannot do any of these (always 200, no Content-Length,
HEAD refused: contracts review T8/T18), and browsers need them (`<video>` on
Safari needs Range; caches need 304). In `socialmesh up` the edge routes
`/v1/media/files/` here; in production a CDN or the object store serves the
same paths. The URL's random token is the capability: no token is needed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from aiohttp import web

from services.kit.sidecar_http import SidecarHttpServer

from . import variants
from .blobs import BlobStore
from .store import MediaStore

log = logging.getLogger("socialmesh.media.files")

CACHE_FOREVER = "public, max-age=31536000, immutable"
PATH = "/v1/media/files/{token}/{variant}"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range; None to serve it all; ValueError if unsatisfiable.

    Multiple ranges are answered with the whole body (RFC 9110 allows ignoring Range).
    """
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise ValueError("empty suffix range")
        return max(size - length, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        raise ValueError("range not satisfiable")
    return start, end


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class FileServer(SidecarHttpServer):
    """An aiohttp app over the media store and blob store (GET and HEAD only)."""

    label = "media files"

    def __init__(self, store: Callable[[], MediaStore], blobs: Callable[[], BlobStore]) -> None:
        super().__init__()
        self._store = store
        self._blobs = blobs

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(PATH, self.handle)  # aiohttp answers HEAD from the GET route
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name, token = request.match_info["variant"], request.match_info["token"]
        known = variants.parse(name) is not None and len(token) <= 64
        row = await self._store().by_token(token) if known else None
        variant = variants.find(row, name) if row else None
        if variant is None:
            raise web.HTTPNotFound(text="no such media file")
        etag = f'"{variant.sha256}"'
        headers = {
            "ETag": etag,
            "Cache-Control": CACHE_FOREVER,
            "Accept-Ranges": "bytes",
            "X-Content-Type-Options": "nosniff",
        }
        if _etag_matches(request.headers.get("If-None-Match", ""), etag):
            return web.Response(status=304, headers=headers)
        size = variant.size_bytes
        span: tuple[int, int] | None = None
        if_range = request.headers.get("If-Range")
        if "Range" in request.headers and (if_range is None or if_range.strip() == etag):
            try:
                span = byte_range(request.headers["Range"], size)
            except ValueError:
                return web.Response(
                    status=416, headers={**headers, "Content-Range": f"bytes */{size}"}
                )
        start, end = span or (0, size)
        response = web.StreamResponse(status=206 if span else 200, headers=headers)
        response.content_type = variant.content_type
        response.content_length = end - start
        if span:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        await response.prepare(request)
        if request.method == "HEAD" or end == start:
            return response
        async for piece in self._blobs().stream_range(variant.sha256, start, end):
            await response.write(piece)
        await response.write_eof()
        return response
