"""A client's first flow through the Python client openapi-python-client generates from
the edge's /openapi.json (tests/test_generated_clients.py generates it as the package
`socialmesh_client`, type-checks this file with `mypy --strict`, then runs it).

    python python_flow.py http://127.0.0.1:8080

Register two accounts, log in, upload an image and wait until it is READY, post it,
follow, read the home feed, like, list notifications, read an error as a Status, and
parse an enum value this client does not know.
Any type or runtime error fails the run.
"""

from __future__ import annotations

import io
import sys
import time
import uuid

import httpx
from PIL import Image
from socialmesh_client import AuthenticatedClient, Client
from socialmesh_client.api.chat_service import list_notifications
from socialmesh_client.api.feed_service import get_home_feed
from socialmesh_client.api.graph_service import follow_user
from socialmesh_client.api.media_service import get_media, upload_media
from socialmesh_client.api.post_service import create_post, like_post
from socialmesh_client.api.user_service import create_user, get_user, login
from socialmesh_client.models import (
    CreateUserRequest,
    ErrorInfo,
    FeedItem,
    FeedKind,
    FeedReason,
    FollowState,
    LoginRequest,
    MediaState,
    NotificationType,
    PostInput,
    Status,
    User,
)
from socialmesh_client.types import File

PASSWORD = "correct horse battery"
TIMEOUT = httpx.Timeout(20)


def register(anonymous: Client, handle: str) -> User:
    body = CreateUserRequest(
        handle=handle, email=f"{handle}@example.com", password=PASSWORD, display_name=handle
    )
    user = create_user.sync(client=anonymous, body=body)
    assert isinstance(user, User), user
    assert user.handle == handle
    return user


def sign_in(anonymous: Client, base_url: str, handle: str) -> AuthenticatedClient:
    answer = login.sync(client=anonymous, body=LoginRequest(handle=handle, password=PASSWORD))
    assert not isinstance(answer, Status) and answer is not None, answer
    assert answer.expires_in > 0 and answer.refresh_token
    return AuthenticatedClient(base_url=base_url, token=answer.access_token, timeout=TIMEOUT)


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 120, 40)).save(out, "JPEG")
    return out.getvalue()


def main(base_url: str) -> None:
    anonymous = Client(base_url=base_url, timeout=TIMEOUT)
    suffix = uuid.uuid4().hex[:8]
    alice = register(anonymous, f"gen_a_{suffix}")
    bob = register(anonymous, f"gen_b_{suffix}")
    as_alice = sign_in(anonymous, base_url, alice.handle)
    as_bob = sign_in(anonymous, base_url, bob.handle)

    upload = File(payload=io.BytesIO(jpeg()), file_name="sunset.jpg", mime_type="image/jpeg")
    media = upload_media.sync(client=as_alice, body=upload, filename="sunset.jpg")
    assert not isinstance(media, Status) and media is not None, media
    deadline = time.monotonic() + 60
    while media.state != MediaState.MEDIA_STATE_READY:
        assert media.state != MediaState.MEDIA_STATE_FAILED, media.failure_reason
        assert time.monotonic() < deadline, "the upload never became READY"
        time.sleep(0.3)
        polled = get_media.sync(media.media_id, client=as_alice)
        assert not isinstance(polled, Status) and polled is not None, polled
        media = polled
    assert media.variants and media.variants[0].url

    post = create_post.sync(
        client=as_alice,
        body=PostInput(text="Sunset #firstpost", media_ids=[media.media_id]),
        request_id=f"first-post-{suffix}",
    )
    assert not isinstance(post, Status) and post is not None, post
    assert post.author_id == alice.user_id and post.media_ids == [media.media_id]
    likes: int = int(post.like_count)  # int64 is a decimal string in proto3 JSON
    assert likes == 0

    followed = follow_user.sync(alice.user_id, client=as_bob)
    assert not isinstance(followed, Status) and followed is not None, followed
    assert followed.state == FollowState.FOLLOW_STATE_FOLLOWING

    deadline = time.monotonic() + 30
    while True:
        feed = get_home_feed.sync(client=as_bob, kind=FeedKind.FEED_KIND_FOLLOWING)
        assert not isinstance(feed, Status) and feed is not None, feed
        if any(p.post_id == post.post_id for p in feed.posts):
            break
        assert time.monotonic() < deadline, "the post never reached bob's feed"
        time.sleep(0.3)
    seen = next(p for p in feed.posts if p.post_id == post.post_id)
    assert seen.media and seen.media[0].media_id == media.media_id

    liked = like_post.sync(post.post_id, client=as_bob)
    assert not isinstance(liked, Status) and liked is not None, liked

    deadline = time.monotonic() + 30
    while True:
        page = list_notifications.sync(client=as_alice)
        assert not isinstance(page, Status) and page is not None, page
        types = {n.type_ for n in page.notifications}
        if NotificationType.NOTIFICATION_TYPE_LIKE in types:
            break
        assert time.monotonic() < deadline, f"no like notification: {types}"
        time.sleep(0.3)

    missing = get_user.sync("1", client=as_alice)
    assert isinstance(missing, Status), missing
    assert missing.code == 5  # NOT_FOUND
    reasons = [d.reason for d in missing.details or [] if isinstance(d, ErrorInfo)]
    # Enums are open: a value a newer server adds parses as a plain string.
    item = FeedItem.from_dict({"postId": "1", "reason": "FEED_REASON_NEW", "trackingToken": ""})
    assert item.reason == "FEED_REASON_NEW" and not isinstance(item.reason, FeedReason)
    print(f"flow ok: post {post.post_id}, media {media.media_id}, error reasons {reasons}")


if __name__ == "__main__":
    main(sys.argv[1])
