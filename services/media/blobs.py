"""Content-addressed blob storage behind one interface (obstore: local disk or S3).

A blob's key is its SHA-256, so the same bytes are stored once however often
they are uploaded, and a key never changes meaning (immutable, cacheable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, from_url


def blob_key(sha256: str) -> str:
    """`blobs/ab/abcdef...`: two-level fan-out keeps local directories small."""
    return f"blobs/{sha256[:2]}/{sha256}"


class BlobStore:
    """put/get/delete by SHA-256; the backend comes from a URL (file://, s3://, memory://)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("file://"):
            root = Path(url.removeprefix("file://"))
            root.mkdir(parents=True, exist_ok=True)
            self._store: obstore.store.ObjectStore = LocalStore(root)
        else:
            self._store = from_url(url)

    async def put_file(self, sha256: str, path: Path) -> None:
        """Stores a file's bytes under their hash (idempotent: same key, same bytes)."""
        await obstore.put_async(self._store, blob_key(sha256), path)

    async def put_bytes(self, sha256: str, data: bytes) -> None:
        await obstore.put_async(self._store, blob_key(sha256), data)

    async def exists(self, sha256: str) -> bool:
        try:
            await obstore.head_async(self._store, blob_key(sha256))
        except (FileNotFoundError, NotFoundError):
            return False
        return True

    async def read_to(self, sha256: str, path: Path) -> None:
        """Copies a blob to a local file (processing needs a seekable file)."""
        result = await obstore.get_async(self._store, blob_key(sha256))
        with path.open("wb") as out:
            async for chunk in result.stream(min_chunk_size=1024 * 1024):
                out.write(chunk)

    async def stream(self, sha256: str, *, first: int, rest: int) -> AsyncIterator[bytes]:
        """The blob's bytes: a first piece of at most `first` bytes, then `rest`-sized ones."""
        result = await obstore.get_async(self._store, blob_key(sha256))
        pending = b""
        limit = first
        async for chunk in result.stream(min_chunk_size=rest):
            pending += bytes(chunk)
            while len(pending) >= limit:
                yield pending[:limit]
                pending = pending[limit:]
                limit = rest
        if pending:
            yield pending

    async def stream_range(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a blob, in pieces (HTTP Range requests)."""
        result = await obstore.get_async(
            self._store, blob_key(sha256), options={"range": (start, end)}
        )
        async for chunk in result.stream(min_chunk_size=256 * 1024):
            yield bytes(chunk)

    async def delete(self, sha256: str) -> None:
        try:
            await obstore.delete_async(self._store, blob_key(sha256))
        except (FileNotFoundError, NotFoundError):
            pass
