"""Local spool files for bytes on their way to the blob store (uploads, processing).

Always private temporary files, always removed, whatever happens: a failed check
or a crash mid-upload leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from . import formats


class Staged:
    """An upload being spooled to disk: counts, hashes, keeps its first bytes."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self.file = file
        self.path = path
        self.size = 0
        self.head = b""
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self._hash.update(data)
        self.size += len(data)
        if len(self.head) < formats.SNIFF_BYTES:
            self.head += data[: formats.SNIFF_BYTES - len(self.head)]

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


@contextlib.contextmanager
def staging_file(directory: Path, prefix: str = "upload-") -> Iterator[Staged]:
    """A private temporary file that is always removed, whatever happens."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield Staged(f, path)
    finally:
        path.unlink(missing_ok=True)
