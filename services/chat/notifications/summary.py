"""What a device shows for a push: a short title, body, tag and link, never the whole event.

Web Push payloads are end-to-end encrypted (RFC 8291), so they may carry a
message's first words; APNs and FCM are read by Apple and Google, so they
get `private=True`: the kind of news only, and the app fetches the rest.
A push service caps payloads near 4 KiB; the summary stays far below.
"""

from __future__ import annotations

from socialmesh.chat.v1 import chat_pb2

MAX_BODY_CHARS = 200

_NOTIFICATION_TITLES: dict[int, str] = {
    chat_pb2.NOTIFICATION_TYPE_FOLLOW: "New follower",
    chat_pb2.NOTIFICATION_TYPE_LIKE: "New like",
    chat_pb2.NOTIFICATION_TYPE_COMMENT: "New comment",
    chat_pb2.NOTIFICATION_TYPE_MENTION: "You were mentioned",
    chat_pb2.NOTIFICATION_TYPE_SHARE: "Your post was shared",
    chat_pb2.NOTIFICATION_TYPE_FOLLOW_REQUEST: "New follow request",
    chat_pb2.NOTIFICATION_TYPE_FOLLOW_ACCEPTED: "Follow request accepted",
}


def push_summary(event: chat_pb2.ChatEvent, *, private: bool = False) -> dict[str, str]:
    """`title`, `body`, `tag` (one notification per conversation or group) and `url` (app path)."""
    which = event.WhichOneof("event")
    if which == "message":
        message = event.message
        body = "" if private else _clip(message.text or "sent an attachment")
        return {
            "kind": "message",
            "title": "New message",
            "body": body,
            "tag": f"conversation:{message.conversation_id}",
            "url": f"/messages?c={message.conversation_id}",
        }
    if which == "notification":
        notification = event.notification
        return {
            "kind": "notification",
            "title": _NOTIFICATION_TITLES.get(int(notification.type), "New notification"),
            "body": "" if private else _clip(notification.snippet),
            "tag": f"notification:{notification.group_key}",
            "url": "/notifications",
        }
    return {"kind": which or "event", "title": "Socialmesh", "body": "", "tag": "", "url": "/"}


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_BODY_CHARS else text[: MAX_BODY_CHARS - 1] + "…"
