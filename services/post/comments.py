"""Comments on the posts a viewer may see: write (idempotent, rate limited), list, delete.

A comment follows its post's visibility; comments by accounts that block the
viewer (or are gone) are left out, and a mention in one is a facet only when the
viewer may see that account (resolved under the viewer's token).
"""

from __future__ import annotations

from collections.abc import Callable

from socialmesh.post.v1 import post_pb2

from services.kit.errors import NotFound, PermissionDenied, Reason
from services.kit.pagination import PageSizes, PageTokens
from services.kit.ratelimit import RateLimiter
from services.kit.validation import Violations, require_positive_id

from . import text as text_rules
from .composer import check_request_id
from .peers import MAX_LOOKUP, Peers
from .presenter import Cards, comment_proto, facets_proto
from .store import CommentRow, PostStore
from .visibility import Visibility

MAX_COMMENT = 2000
#: ListComments page sizes (post.proto).
COMMENT_PAGES = PageSizes(default=50, maximum=200)


class Comments:
    """Comments: create, list and delete, shown as each viewer may see them."""

    def __init__(
        self,
        store: PostStore,
        peers: Peers,
        visibility: Visibility,
        tokens: PageTokens,
        limit: RateLimiter,
        poke_relay: Callable[[], None],
    ) -> None:
        self._store = store
        self._peers = peers
        self._visibility = visibility
        self._tokens = tokens
        self._limit = limit
        self._poke_relay = poke_relay

    async def create(
        self, author_id: int, request: post_pb2.CreateCommentRequest
    ) -> post_pb2.Comment:
        body = text_rules.clean(request.comment.text)
        v = Violations()
        v.check(0 < len(body) <= MAX_COMMENT, "comment.text", f"1 to {MAX_COMMENT} characters")
        request_id = check_request_id(request.request_id, v)
        v.raise_if_any()
        row = await self._visibility.post(request.post_id, author_id)
        if request_id:
            earlier = await self._store.comment_by_request_id(row.post_id, author_id, request_id)
            if earlier is not None:  # a retry: the same comment, no rate-limit cost
                return (await self.shown([earlier], author_id))[0]
        await self._limit.enforce(str(author_id), "comments")
        comment = await self._store.create_comment(row.post_id, author_id, body, request_id or None)
        self._poke_relay()
        return (await self.shown([comment], author_id))[0]

    async def page(
        self, viewer: int | None, request: post_pb2.ListCommentsRequest
    ) -> post_pb2.ListCommentsResponse:
        page = self._tokens.page(
            f"comments:{request.post_id}", "comment_id", request, COMMENT_PAGES
        )
        row = await self._visibility.post(request.post_id, viewer)
        comments = await self._store.comments(row.post_id, page.position, page.limit)
        shown = page.rows(comments)
        # Comments by accounts that block the viewer (or are gone) are hidden, like
        # their posts; a page may come back shorter than asked.
        return post_pb2.ListCommentsResponse(
            comments=await self.shown(shown, viewer),
            next_page_token=page.next_token(comments, lambda c: c.comment_id),
        )

    async def shown(self, rows: list[CommentRow], viewer: int | None) -> list[post_pb2.Comment]:
        """Comments as the viewer sees them, with their authors' cards and facets;
        comments by accounts that block the viewer (or are gone) are left out.
        Bounded per page: the cards' cache reads, and one user call resolving the
        page's @handles (under the viewer's token: accounts blocking them stay
        plain text)."""
        cards: Cards = {}
        authors = await self._visibility.authors((c.author_id for c in rows), viewer, cards)
        shown = [c for c in rows if c.author_id in authors]
        handles = list(
            dict.fromkeys(h for c in shown for h in text_rules.mentioned_handles(c.text))
        )[:MAX_LOOKUP]
        resolved = await self._peers.handles(handles)
        comments = []
        for row in shown:
            comment = comment_proto(row)
            if row.author_id in cards:
                comment.author.CopyFrom(cards[row.author_id])
            comment.facets.extend(facets_proto(row.text, resolved))
            comments.append(comment)
        return comments

    async def delete(self, caller_id: int, post_id: int, comment_id: int) -> None:
        """By the comment's author or the post's author; others learn no more than they may."""
        require_positive_id(post_id, "post_id")
        require_positive_id(comment_id, "comment_id")
        comment = await self._store.comment(post_id, comment_id)
        post = (await self._store.posts([post_id], caller_id)).get(post_id)
        if comment is not None and post is not None:
            if caller_id in (comment.author_id, post.author_id):
                await self._store.delete_comment(post_id, comment_id)
                return
        # Refused: first whatever the caller gets for the post itself (404 or 403, the
        # same whether or not the comment exists, so no comment-id oracle); only on a
        # post they may read, where comments are listed anyway, 404 vs 403.
        await self._visibility.post(post_id, caller_id)
        if comment is None or post is None:
            raise NotFound(f"comment {comment_id} not found")
        raise PermissionDenied(
            "only the comment's author or the post's author may delete it",
            reason=Reason.NOT_OWNER,
        )
