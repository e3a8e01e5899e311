"""AttachMedia: a publishing service marks an author's READY uploads in use, all or nothing.

Attached media is never collected and no longer deletable. Internal: the calling
service has authenticated the owner (its own caller). The `media-attach` consumer
(`post_attachments.py`) attaches a published post's media from PostCreated too.
"""

from __future__ import annotations

from socialmesh.media.v1 import media_pb2

from services.kit.errors import FailedPrecondition, NotFound, PermissionDenied, Reason
from services.kit.validation import batch_ids, require_positive_id

from .library import MAX_BATCH, Library
from .store import READY, MediaStore


async def attach(
    store: MediaStore, library: Library, request: media_pb2.AttachMediaRequest
) -> media_pb2.AttachMediaResponse:
    """Checks every id (exists, the owner's, READY) before attaching any."""
    require_positive_id(request.owner_id, "owner_id")
    ids = batch_ids(request.media_ids, "media_ids", MAX_BATCH)
    found = await store.get_many(ids)
    for media_id in ids:
        row = found.get(media_id)
        if row is None:
            raise NotFound(
                f"media_ids: no media {media_id}", resource="media", resource_id=media_id
            )
        if row.owner_id != request.owner_id:
            raise PermissionDenied(
                f"media_ids: media {media_id} belongs to someone else",
                reason=Reason.NOT_OWNER,
            )
        if row.state != READY:
            raise FailedPrecondition(
                f"media_ids: media {media_id} is not READY yet",
                reason=Reason.MEDIA_NOT_READY,
                metadata={"mediaId": str(media_id)},
            )
    await store.attach(ids, request.owner_id)
    found = await store.get_many(ids)
    return media_pb2.AttachMediaResponse(media=[library.present(found[i]) for i in ids])
