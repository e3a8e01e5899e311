"""Lists of an author's posts: the profile timeline a viewer pages through, and the
bare post references (with reposts) feed reads to fill and merge home timelines.

A profile shows the author's posts and reposts newest first; a private account's
only to approved followers, FOLLOWERS posts only to followers, and a reposted post
only where the viewer may see it (the rules of GetPost).
"""

from __future__ import annotations

from datetime import UTC, datetime

from socialmesh.post.v1 import post_pb2

from services.kit.errors import InvalidArgument, NotFound, PermissionDenied, Reason
from services.kit.pagination import PageSizes, PageTokens, page_size
from services.kit.timestamps import from_datetime
from services.kit.validation import Violations, require_positive_id

from .presenter import Cards, post_ref_proto, repost_ref_proto
from .store import PostStore
from .visibility import Visibility

#: ListUserPosts page sizes (post.proto).
POST_PAGES = PageSizes(default=20, maximum=100)
#: BatchListAuthorPosts.per_author_limit: default and maximum (post.proto).
AUTHOR_POST_LIMITS = PageSizes(default=20, maximum=200)


def profile_position(position: dict[str, object] | None) -> tuple[int, int, int] | None:
    """A profile timeline's keyset position from its page token (ProfileEntry.position);
    tokens from before reposts were listed hold only `post_id`."""
    if position is None:
        return None
    values = (position.get("post_id"), position.get("r", 0), position.get("p", 0))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise InvalidArgument([("page_token", "invalid or tampered page token")])
    return values  # type: ignore[return-value]


def since_time(request: post_pb2.BatchListAuthorPostsRequest, v: Violations) -> datetime | None:
    """The optional lower bound on creation time, if it is a real instant."""
    if not request.HasField("since_time"):
        return None
    try:
        return request.since_time.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        v.add("since_time", "must be a valid timestamp")
        return None


class Timelines:
    """Profile pages for viewers, post references for services."""

    def __init__(self, store: PostStore, visibility: Visibility, tokens: PageTokens) -> None:
        self._store = store
        self._visibility = visibility
        self._tokens = tokens

    async def profile(
        self, viewer: int | None, request: post_pb2.ListUserPostsRequest
    ) -> post_pb2.ListUserPostsResponse:
        require_positive_id(request.user_id, "user_id")
        scope = f"posts:{request.user_id}"
        size = page_size(request.page_size, default=POST_PAGES.default, maximum=POST_PAGES.maximum)
        before = profile_position(self._tokens.decode(scope, request.page_token))
        cards: Cards = {}
        author = (await self._visibility.authors([request.user_id], viewer, cards)).get(
            request.user_id
        )
        if author is None:
            raise NotFound(f"user {request.user_id} not found")
        if author.is_private and not author.is_following:
            raise PermissionDenied(
                "this account is private: only approved followers see its posts",
                reason=Reason.PRIVATE_ACCOUNT,
            )
        entries = await self._store.profile_entries(
            request.user_id,
            before=before,
            limit=size + 1,
            include_followers_only=author.is_following,
            include_reposts=not request.exclude_reposts,
        )
        page = entries[:size]
        rows = await self._store.posts(list(dict.fromkeys(e.post_id for e in page)), viewer)
        # Reposted posts are others' (or the owner's own): the rules of GetPost decide.
        reposted = [rows[e.post_id] for e in page if e.is_repost and e.post_id in rows]
        visible = {r.post_id for r in await self._visibility.visible(reposted, viewer, cards)}
        shown = {
            p.post_id: p
            for p in await self._visibility.shown(
                [rows[i] for i in dict.fromkeys(e.post_id for e in page) if i in rows],
                viewer,
                cards,
            )
        }
        posts = []
        for entry in page:
            if entry.post_id not in shown or (entry.is_repost and entry.post_id not in visible):
                continue
            post = post_pb2.Post()
            post.CopyFrom(shown[entry.post_id])
            if entry.is_repost and entry.share_time is not None:
                post.repost.user_id = request.user_id
                if request.user_id in cards:
                    post.repost.user.CopyFrom(cards[request.user_id])
                post.repost.create_time.CopyFrom(from_datetime(entry.share_time))
            posts.append(post)
        token = ""
        if len(entries) > size:
            key, is_repost, post_id = page[-1].position
            token = self._tokens.encode(scope, {"post_id": key, "r": is_repost, "p": post_id})
        return post_pb2.ListUserPostsResponse(posts=posts, next_page_token=token)

    async def author_refs(
        self, author_ids: list[int], request: post_pb2.BatchListAuthorPostsRequest
    ) -> post_pb2.BatchListAuthorPostsResponse:
        """Newest post ids of many authors (feed back-fill, merges), reposts if asked."""
        v = Violations()
        v.check(request.min_post_id >= 0, "min_post_id", "must not be negative")
        since = since_time(request, v)
        v.raise_if_any()
        limit = page_size(
            request.per_author_limit,
            default=AUTHOR_POST_LIMITS.default,
            maximum=AUTHOR_POST_LIMITS.maximum,
            field="per_author_limit",
        )
        refs = await self._store.author_post_refs(
            author_ids, min_post_id=request.min_post_id, since=since, per_author_limit=limit
        )
        reply = post_pb2.BatchListAuthorPostsResponse(posts=[post_ref_proto(r) for r in refs])
        if request.include_reposts:
            reposts = await self._store.author_repost_refs(
                author_ids, since=since, per_sharer_limit=limit
            )
            reply.reposts.extend(repost_ref_proto(r) for r in reposts)
        return reply
