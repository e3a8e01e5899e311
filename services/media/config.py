"""Media tunables, from the environment (twelve-factor, like every kit setting)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class MediaConfig:
    """MEDIA_* settings; the defaults suit `socialmesh up` on a laptop.

    Storage: MEDIA_STORAGE_URL (any obstore URL: `s3://bucket/prefix` with the
    usual AWS_* variables, e.g. AWS_ENDPOINT_URL for MinIO) wins; otherwise a
    local directory, MEDIA_STORAGE_ROOT, else `<SOCIALMESH_DATA_DIR>/media`,
    else `.socialmesh/media` (the default data dir of `socialmesh up`).
    """

    storage_url: str
    #: Where uploads are spooled while they stream in (always local disk).
    staging_dir: Path
    #: Prefix of every variant URL ("" keeps them relative to the edge's origin).
    public_base_url: str = ""
    max_image_bytes: int = 20 * MIB
    max_video_bytes: int = 100 * MIB
    #: Decompression-bomb guard: pixels of one frame, and its decoded size.
    max_pixels: int = 50_000_000
    max_decoded_bytes: int = 256 * MIB
    max_video_seconds: int = 10 * 60
    #: Unattached uploads older than this are deleted.
    unattached_ttl_seconds: int = 24 * 3600
    #: Unreferenced blobs older than this are deleted (covers uploads in flight).
    blob_grace_seconds: int = 3600
    gc_interval_seconds: float = 300.0
    #: Processing attempts before an upload ends FAILED.
    max_attempts: int = 3
    #: Port of the plain-HTTP file handler (Range, 304, HEAD); None: not served.
    #: MEDIA_HTTP_PORT=0 picks a free port.
    http_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MediaConfig:
        root = env.get("MEDIA_STORAGE_ROOT") or str(
            Path(env.get("SOCIALMESH_DATA_DIR", ".socialmesh")) / "media"
        )
        root_path = Path(root).resolve()
        url = env.get("MEDIA_STORAGE_URL") or root_path.as_uri()
        staging = Path(env.get("MEDIA_STAGING_DIR") or root_path / "staging").resolve()
        return cls(
            storage_url=url,
            staging_dir=staging,
            public_base_url=env.get("MEDIA_PUBLIC_BASE_URL", "").rstrip("/"),
            max_image_bytes=int(env.get("MEDIA_MAX_IMAGE_BYTES", str(20 * MIB))),
            max_video_bytes=int(env.get("MEDIA_MAX_VIDEO_BYTES", str(100 * MIB))),
            max_pixels=int(env.get("MEDIA_MAX_PIXELS", "50000000")),
            unattached_ttl_seconds=int(env.get("MEDIA_UNATTACHED_TTL_SECONDS", str(24 * 3600))),
            gc_interval_seconds=float(env.get("MEDIA_GC_INTERVAL_SECONDS", "300")),
            http_port=int(env["MEDIA_HTTP_PORT"]) if env.get("MEDIA_HTTP_PORT") else None,
        )
