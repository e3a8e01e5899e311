"""What chat asks of other services: relationships, existing accounts, media, posts, cards.

The only place chat calls a peer for its RPCs (the notification consumer asks
graph itself, with chat's own credential); every call maps a peer's failure
with `peer_call`.
"""

from __future__ import annotations

from collections.abc import Sequence

from socialmesh.chat.v1 import chat_pb2
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.media.v1 import media_pb2, media_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import anonymous_calls
from services.kit.cards import ViewerCards
from services.kit.channels import peer_call
from services.kit.errors import PermissionDenied, Reason

#: BatchGetPosts takes at most this many ids (post.proto).
MAX_POST_BATCH = 500


class ChatPeers:
    """Chat's calls to graph, user, media and post, and the cards it side-loads."""

    def __init__(
        self,
        *,
        graph: graph_pb2_grpc.GraphServiceAsyncStub,
        users: user_pb2_grpc.UserServiceAsyncStub,
        media: media_pb2_grpc.MediaServiceAsyncStub,
        posts: post_pb2_grpc.PostServiceAsyncStub,
        cards: ViewerCards,
    ) -> None:
        self._graph = graph
        self._users = users
        self._media = media
        self._posts = posts
        #: Members', senders' and actors' cards as a viewer sees them (kit/cards.py).
        self.cards = cards

    async def is_private(self, user_id: int) -> bool:
        """Whether the account is private (mentions of its posts need following)."""
        reply = await self._users.BatchGetUsers(user_pb2.BatchGetUsersRequest(user_ids=[user_id]))
        return any(u.is_private for u in reply.users)

    async def relationships(
        self, viewer_id: int, others: Sequence[int]
    ) -> dict[int, graph_pb2.Relationship]:
        graph = self._graph
        async with peer_call("graph"):
            reply = await graph.BatchGetRelationships(
                graph_pb2.BatchGetRelationshipsRequest(viewer_id=viewer_id, user_ids=list(others))
            )
        return {r.user_id: r for r in reply.relationships}

    async def existing_users(self, user_ids: Sequence[int]) -> set[int]:
        users = self._users
        async with peer_call("user"):
            with anonymous_calls():  # existence must not depend on blocks
                reply = await users.BatchGetUsers(
                    user_pb2.BatchGetUsersRequest(user_ids=list(user_ids))
                )
        return {u.user_id for u in reply.users}

    async def refuse_blocks(
        self, caller_id: int, others: Sequence[int], field: str
    ) -> dict[int, graph_pb2.Relationship]:
        relationships = await self.relationships(caller_id, others)
        for other in others:
            rel = relationships.get(other)
            if rel is not None and (rel.blocking or rel.blocked_by):
                raise PermissionDenied(
                    f"{field}: cannot message across a block", reason=Reason.BLOCKED
                )
        return relationships

    async def member_cards(
        self, conversations: Sequence[chat_pb2.Conversation], viewer_id: int
    ) -> None:
        """Fills every member's card as the viewer sees it (absent for accounts that
        block the viewer): one pair of cache reads for the whole page."""
        ids = [m.user_id for c in conversations for m in c.members]
        cards = await self.cards.get_many(viewer_id, ids)
        for conversation in conversations:
            for member in conversation.members:
                card = cards.get(member.user_id)
                if card is not None:
                    member.user.CopyFrom(card)

    async def side_load_notifications(
        self, notifications: Sequence[chat_pb2.Notification], viewer_id: int
    ) -> None:
        """Fills the actors' cards and the posts as the viewer may see them: one pair
        of cache reads and one BatchGetPosts (under the viewer's token: the post
        service's visibility rules decide) for the whole page."""
        cards = await self.cards.get_many(
            viewer_id, (a for n in notifications for a in n.sample_actor_ids)
        )
        post_ids = list(dict.fromkeys(n.post_id for n in notifications if n.post_id))
        posts: dict[int, post_pb2.Post] = {}
        for start in range(0, len(post_ids), MAX_POST_BATCH):
            async with peer_call("post"):
                reply = await self._posts.BatchGetPosts(
                    post_pb2.BatchGetPostsRequest(post_ids=post_ids[start : start + MAX_POST_BATCH])
                )
            posts.update((p.post_id, p) for p in reply.posts)
        for notification in notifications:
            notification.sample_actors.extend(
                cards[a] for a in notification.sample_actor_ids if a in cards
            )
            if notification.post_id in posts:
                notification.post.CopyFrom(posts[notification.post_id])

    async def attach_media(self, sender_id: int, media_ids: list[int]) -> list[media_pb2.Media]:
        """The sender's READY media, marked in use by the media service (all or nothing).

        Before the message is stored: a failed send leaves media attached (kept, never
        collected), which is harmless; the other order could lose a sent photo to the
        24-hour collection of unattached uploads.
        """
        if not media_ids:
            return []
        media = self._media  # AttachMedia is idempotent: retried sends re-ask
        async with peer_call("media"):
            reply = await media.AttachMedia(
                media_pb2.AttachMediaRequest(owner_id=sender_id, media_ids=media_ids)
            )
        return list(reply.media)
