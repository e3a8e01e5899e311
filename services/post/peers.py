"""Calls to the user and media services: the only places post waits on a peer.

Each runs under the caller's own token (the channel forwards it), so the peer
decides what the caller may see: an account blocking the author is NOT_FOUND to
them and cannot be mentioned. A failed call becomes what our caller should see
(`kit.channels.peer_call`).
"""

from __future__ import annotations

from socialmesh.media.v1 import media_pb2, media_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.channels import peer_call

#: LookupUsers takes at most this many handles (user.proto).
MAX_LOOKUP = 100


class Peers:
    """Mentions resolved by user, media attached by media."""

    def __init__(
        self,
        users: user_pb2_grpc.UserServiceAsyncStub,
        media: media_pb2_grpc.MediaServiceAsyncStub,
    ) -> None:
        self.users = users
        self._media = media

    async def handles(self, handles: list[str]) -> dict[str, int]:
        """Handles the caller may see (lower-cased) -> their ids; the others are absent."""
        if not handles:
            return {}
        async with peer_call("user"):
            reply = await self.users.LookupUsers(user_pb2.LookupUsersRequest(handles=handles))
        return {u.handle.lower(): u.user_id for u in reply.users}

    async def mention_ids(self, handles: list[str]) -> list[int]:
        """The ids of the accounts a post's author may mention, in the reply's order.

        With the author's own token: an account that blocks the author is
        NOT_FOUND to them, so it cannot be mentioned (no `post.mentioned` event,
        no notification)."""
        if not handles:
            return []
        async with peer_call("user"):
            reply = await self.users.LookupUsers(user_pb2.LookupUsersRequest(handles=handles))
        return [u.user_id for u in reply.users]

    async def attach(self, author_id: int, media_ids: list[int]) -> bytes | None:
        """The author's READY uploads, marked in use by the media service (all or nothing).

        Before the post is stored: a failed publish leaves media attached (kept), which
        is harmless; the other order could lose a photo to the collection of unattached
        uploads. The answer is stored with the post (attached media never changes).
        """
        if not media_ids:
            return None
        async with peer_call("media"):
            reply = await self._media.AttachMedia(
                media_pb2.AttachMediaRequest(owner_id=author_id, media_ids=media_ids)
            )
        return reply.SerializeToString()
