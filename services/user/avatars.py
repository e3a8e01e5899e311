"""Avatars: an uploaded image becomes a profile's picture through media's AttachMedia,
which checks that the owner uploaded it and that it is ready, and marks it in use."""

from __future__ import annotations

from socialmesh.media.v1 import media_pb2, media_pb2_grpc

from services.kit.channels import peer_call
from services.kit.errors import InvalidArgument


class Avatars:
    def __init__(self, media: media_pb2_grpc.MediaServiceAsyncStub) -> None:
        self._media = media

    async def url(self, owner_id: int, media_id: int) -> str:
        """The URL of the owner's READY image's 320 px variant (marking it in use); "" for 0."""
        if media_id == 0:
            return ""
        async with peer_call("media"):
            reply = await self._media.AttachMedia(
                media_pb2.AttachMediaRequest(owner_id=owner_id, media_ids=[media_id])
            )
        (media,) = reply.media
        if media.media_type != media_pb2.MEDIA_TYPE_IMAGE:
            raise InvalidArgument([("user.avatar_media_id", "must be an image")])
        by_kind = {(v.kind, v.content_type): v.url for v in media.variants}
        url = by_kind.get((media_pb2.VARIANT_KIND_W320, "image/webp")) or next(
            (v.url for v in media.variants), ""
        )
        return url
