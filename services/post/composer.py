"""Writing posts: publish (idempotent by request id, rate limited), edit the text, delete.

Mentions are resolved with the author's own token and media attached by the media
service before the post is stored (`peers.py` says why that order); the store
writes the post, its counts and its event in one transaction, and the relay is
poked so the event leaves at once. A published or deleted post makes the
author's cached post count stale (kit/counts.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from socialmesh.post.v1 import post_pb2

from services.kit.counts import changed as counts_changed
from services.kit.errors import PermissionDenied, Reason
from services.kit.ratelimit import RateLimiter
from services.kit.validation import Violations

from . import text as text_rules
from .peers import Peers
from .store import PostStore
from .visibility import Visibility

MAX_TEXT = 5000
MAX_MEDIA = 4
MAX_REQUEST_ID = 64
PUBLIC = post_pb2.VISIBILITY_PUBLIC
FOLLOWERS = post_pb2.VISIBILITY_FOLLOWERS


def check_request_id(raw: str, v: Violations) -> str:
    """The client's idempotency key, stripped; a violation when it is unusable."""
    request_id = raw.strip()
    v.check(
        len(request_id) <= MAX_REQUEST_ID and request_id.isprintable(),
        "request_id",
        f"at most {MAX_REQUEST_ID} printable characters",
    )
    return request_id


@dataclass(frozen=True)
class Draft:
    """A CreatePost request that passed validation."""

    text: str
    media_ids: list[int]
    visibility: int
    request_id: str


def draft(request: post_pb2.CreatePostRequest) -> Draft:
    """CreatePost's request checked field by field (INVALID_ARGUMENT lists them all)."""
    v = Violations()
    if not request.HasField("post"):
        v.add("post", "required")
        v.raise_if_any()
    body = text_rules.clean(request.post.text)
    media = list(request.post.media_ids)
    v.check(len(body) <= MAX_TEXT, "post.text", f"at most {MAX_TEXT} characters")
    if len(media) > MAX_MEDIA:
        v.add("post.media_ids", f"at most {MAX_MEDIA} attachments")
    elif len(set(media)) != len(media) or any(m <= 0 for m in media):
        v.add("post.media_ids", "distinct positive media ids")
    v.check(bool(body) or bool(media), "post.text", "required unless media is attached")
    visibility = request.post.visibility or PUBLIC
    v.check(visibility in (PUBLIC, FOLLOWERS), "post.visibility", "PUBLIC or FOLLOWERS")
    request_id = check_request_id(request.request_id, v)
    v.raise_if_any()
    return Draft(body, media, visibility, request_id)


def check_edit(request: post_pb2.UpdatePostRequest) -> None:
    """UpdatePost edits the text and nothing else."""
    v = Violations()
    paths = list(request.update_mask.paths) or ["text"]
    v.check(paths == ["text"], "update_mask", 'only "text" can be edited')
    v.check(request.HasField("post"), "post", "required")
    v.raise_if_any()


class Composer:
    """Publishes, edits and deletes an author's posts."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: PostStore,
        peers: Peers,
        visibility: Visibility,
        limit: RateLimiter,
        poke_relay: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._store = store
        self._peers = peers
        self._visibility = visibility
        self._limit = limit
        self._poke_relay = poke_relay

    async def create(self, author_id: int, new: Draft) -> post_pb2.Post:
        if new.request_id:
            existing = await self._store.find_by_request_id(author_id, new.request_id)
            if existing is not None:  # a retry: same answer, no new post, no rate-limit cost
                return await self._visibility.reread(existing, author_id)
        await self._limit.enforce(str(author_id), "posts")
        mention_ids = await self._peers.mention_ids(text_rules.mentioned_handles(new.text))
        attached = await self._peers.attach(author_id, new.media_ids)
        post_id, created = await self._store.create_post(
            author_id=author_id,
            text=new.text,
            media_ids=new.media_ids,
            visibility=new.visibility,
            hashtags=text_rules.hashtags(new.text),
            mention_ids=mention_ids,
            request_id=new.request_id or None,
            media=attached,
        )
        self._poke_relay()
        if created:  # the author's cached post count is stale (kit/counts.py)
            await counts_changed(self._redis, (author_id,))
        return await self._visibility.reread(post_id, author_id)

    async def edit(self, author_id: int, post_id: int, text: str) -> post_pb2.Post:
        row = await self._visibility.post(post_id, author_id)
        if row.author_id != author_id:
            raise PermissionDenied("only the author may edit a post", reason=Reason.NOT_OWNER)
        v = Violations()
        body = text_rules.clean(text)
        v.check(len(body) <= MAX_TEXT, "post.text", f"at most {MAX_TEXT} characters")
        v.check(bool(body) or bool(row.media_ids), "post.text", "required unless media is attached")
        v.raise_if_any()
        await self._limit.enforce(str(author_id), "posts")
        mention_ids = await self._peers.mention_ids(text_rules.mentioned_handles(body))
        await self._store.edit_post(
            row.post_id,
            text=body,
            hashtags=text_rules.hashtags(body),
            mention_ids=mention_ids,
        )
        self._poke_relay()
        return await self._visibility.reread(row.post_id, author_id)

    async def delete(self, author_id: int, post_id: int) -> None:
        row = await self._visibility.post(post_id, author_id)
        if row.author_id != author_id:
            raise PermissionDenied("only the author may delete a post", reason=Reason.NOT_OWNER)
        await self._store.delete_post(row.post_id)
        self._poke_relay()
        await counts_changed(self._redis, (row.author_id,))
