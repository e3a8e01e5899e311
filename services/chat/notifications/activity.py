"""What a notification is made of: the kinds, and one activity before grouping."""

from __future__ import annotations

from dataclasses import dataclass

from socialmesh.chat.v1 import chat_pb2

NT = chat_pb2.NotificationType
FOLLOW = NT.NOTIFICATION_TYPE_FOLLOW
LIKE = NT.NOTIFICATION_TYPE_LIKE
COMMENT = NT.NOTIFICATION_TYPE_COMMENT
MENTION = NT.NOTIFICATION_TYPE_MENTION
SHARE = NT.NOTIFICATION_TYPE_SHARE
FOLLOW_REQUEST = NT.NOTIFICATION_TYPE_FOLLOW_REQUEST
FOLLOW_ACCEPTED = NT.NOTIFICATION_TYPE_FOLLOW_ACCEPTED
KNOWN_TYPES = frozenset(v for v in NT.values() if v != NT.NOTIFICATION_TYPE_UNSPECIFIED)


@dataclass(frozen=True)
class Activity:
    """One thing that happened to `recipient`, before grouping."""

    recipient: int
    actor: int
    kind: int
    group_key: str
    post_id: int = 0
    comment_id: int = 0
    snippet: str = ""
    #: The recipient may see the post only as an approved follower of `actor`
    #: (a FOLLOWERS post, or any post of a private account): no notification
    #: otherwise, or a mention would reveal a post they cannot open.
    requires_following: bool = False
