"""How a media item looks on the wire: its fields and its variants' absolute URLs."""

from __future__ import annotations

from socialmesh.media.v1 import media_pb2

from services.kit.timestamps import from_datetime

from . import variants
from .store import MediaRow, VariantRow


def variant_url(public_base_url: str, token: str, v: VariantRow) -> str:
    """Where a variant is served (the edge's file route, or a CDN in front of it)."""
    name = variants.file_name(v.kind, v.content_type)
    return f"{public_base_url}/v1/media/files/{token}/{name}"


def media_proto(row: MediaRow, public_base_url: str) -> media_pb2.Media:
    return media_pb2.Media(
        media_id=row.media_id,
        owner_id=row.owner_id,
        content_type=row.content_type,
        state=row.state,  # type: ignore[arg-type]
        variants=[
            media_pb2.MediaVariant(
                kind=v.kind,  # type: ignore[arg-type]
                width=v.width,
                height=v.height,
                content_type=v.content_type,
                size_bytes=v.size_bytes,
                url=variant_url(public_base_url, row.token, v),
                sha256=v.sha256,
            )
            for v in row.variants
        ],
        failure_reason=row.failure_reason,
        create_time=from_datetime(row.created_at),
        description=row.description,
        media_type=row.media_type,  # type: ignore[arg-type]
        declared_content_type=row.declared_content_type,
        filename=row.filename,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
        width=row.width,
        height=row.height,
        blurhash=row.blurhash,
        duration_ms=row.duration_ms,
        attached=row.attached_at is not None,
        update_time=from_datetime(row.updated_at),
    )
