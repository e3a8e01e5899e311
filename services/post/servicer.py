"""PostService: validation, authorization (visibility) and orchestration over PostStore."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from google.protobuf import empty_pb2
from socialmesh.graph.v1 import graph_pb2, graph_pb2_grpc
from socialmesh.media.v1 import media_pb2, media_pb2_grpc
from socialmesh.post.v1 import post_pb2, post_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.auth import (
    current_viewer_id,
    require_caller,
    require_service,
)
from services.kit.backfill import BackfillWorker
from services.kit.cards import CardCache, user_loader, viewer_card
from services.kit.cards import Loader as CardLoader
from services.kit.channels import upstream_error
from services.kit.consumers import Start
from services.kit.counts import changed as counts_changed
from services.kit.errors import InvalidArgument, NotFound, PermissionDenied, Reason
from services.kit.mediaview import slim
from services.kit.pagination import PageSizes, page_size
from services.kit.ratelimit import RateLimiter
from services.kit.relcache import Loader as RelationshipLoader
from services.kit.relcache import RelationshipCache, graph_loader
from services.kit.search import anonymous_limit
from services.kit.server import Runtime, ServicerBase
from services.kit.timestamps import from_datetime
from services.kit.validation import Violations, batch_ids, require_positive_id

from . import search as search_rules
from . import text as text_rules
from .store import CommentRow, PostRef, PostRow, PostStore, RepostRef

MAX_TEXT = 5000
MAX_COMMENT = 2000
MAX_MEDIA = 4
MAX_BATCH = 500
#: BatchGetPostCounts and BatchListAuthorPosts: "1 to 1,000" authors (post.proto).
MAX_AUTHORS = 1000
#: BatchListAuthorPosts.per_author_limit: default and maximum (post.proto).
AUTHOR_POST_LIMITS = PageSizes(default=20, maximum=200)
MAX_REQUEST_ID = 64
#: LookupUsers takes at most this many handles (user.proto).
MAX_LOOKUP = 100
#: Page sizes of the post lists (post.proto).
POST_PAGES = PageSizes(default=20, maximum=100)
COMMENT_PAGES = PageSizes(default=50, maximum=200)
POSTS_PER_MINUTE = 30
COMMENTS_PER_MINUTE = 60
PUBLIC = post_pb2.VISIBILITY_PUBLIC
FOLLOWERS = post_pb2.VISIBILITY_FOLLOWERS


@dataclass(frozen=True)
class Author:
    """What the viewer may know of an author (from the user service, which asks graph)."""

    is_private: bool
    is_following: bool


def post_proto(row: PostRow) -> post_pb2.Post:
    return post_pb2.Post(
        post_id=row.post_id,
        author_id=row.author_id,
        text=row.text,
        media_ids=row.media_ids,
        media=media_pb2.AttachMediaResponse.FromString(row.media).media if row.media else [],
        visibility=row.visibility,  # type: ignore[arg-type]
        hashtags=row.hashtags,
        mention_ids=row.mention_ids,
        like_count=row.like_count,
        comment_count=row.comment_count,
        share_count=row.share_count,
        is_liked=row.is_liked,
        is_saved=row.is_saved,
        is_shared=row.is_shared,
        create_time=from_datetime(row.created_at),
        edit_time=from_datetime(row.edit_time) if row.edit_time else None,
    )


#: Account cards as one viewer sees them, by user id (kit/cards.py viewer_card).
Cards = dict[int, user_pb2.User]


def facets_proto(text: str, handles: dict[str, int]) -> list[post_pb2.Facet]:
    """The text's facets; a mention becomes one only when `handles` resolves it
    (an account the viewer may see), else it stays plain text."""
    spans = text_rules.spans(text)
    if not spans:
        return []
    offsets = text_rules.byte_offsets(text)
    facets = []
    for span in spans:
        facet = post_pb2.Facet(
            byte_start=offsets[span.start],
            byte_end=offsets[span.end],
            char_start=span.start,
            char_end=span.end,
        )
        if span.kind == "mention":
            user_id = handles.get(span.value)
            if user_id is None:
                continue
            facet.mention.CopyFrom(post_pb2.MentionFeature(user_id=user_id, handle=span.value))
        elif span.kind == "link":
            facet.link.uri = span.value
        else:
            facet.tag.tag = span.value
        facets.append(facet)
    return facets


def shown_post(row: PostRow, viewer: int | None, cards: Cards) -> post_pb2.Post:
    """A visible post as the viewer sees it: the author's card, facets (mentions
    only of accounts whose cards the viewer may see), and the slim media view
    unless the viewer is the author (owner-only fields cleared)."""
    post = post_proto(row)
    author = cards.get(row.author_id)
    if author is not None:
        post.author.CopyFrom(author)
    handles = {cards[m].handle.lower(): m for m in row.mention_ids if m in cards}
    post.facets.extend(facets_proto(row.text, handles))
    if viewer != row.author_id:
        slim(post.media)
    return post


def profile_position(position: dict[str, object] | None) -> tuple[int, int, int] | None:
    """A profile timeline's keyset position from its page token (ProfileEntry.position);
    tokens from before reposts were listed hold only `post_id`."""
    if position is None:
        return None
    values = (position.get("post_id"), position.get("r", 0), position.get("p", 0))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise InvalidArgument([("page_token", "invalid or tampered page token")])
    return values  # type: ignore[return-value]


def post_ref_proto(ref: PostRef) -> post_pb2.PostRef:
    return post_pb2.PostRef(
        post_id=ref.post_id,
        author_id=ref.author_id,
        visibility=ref.visibility,  # type: ignore[arg-type]
        create_time=from_datetime(ref.created_at),
    )


def repost_ref_proto(ref: RepostRef) -> post_pb2.RepostRef:
    return post_pb2.RepostRef(
        post_id=ref.post_id,
        author_id=ref.author_id,
        sharer_id=ref.sharer_id,
        share_time=from_datetime(ref.share_time),
    )


def since_time(request: post_pb2.BatchListAuthorPostsRequest, v: Violations) -> datetime | None:
    """The optional lower bound on creation time, if it is a real instant."""
    if not request.HasField("since_time"):
        return None
    try:
        return request.since_time.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        v.add("since_time", "must be a valid timestamp")
        return None


def comment_proto(row: CommentRow) -> post_pb2.Comment:
    return post_pb2.Comment(
        comment_id=row.comment_id,
        post_id=row.post_id,
        author_id=row.author_id,
        text=row.text,
        create_time=from_datetime(row.created_at),
    )


#: Hit counters of the caches visibility is decided from (`socialmesh bench` prints them).
POST_CARDS_STATS = "post-cards:v1"
POST_RELATIONSHIPS_STATS = "post-relationships:v1"


async def _no_relationships() -> dict[int, graph_pb2.Relationship]:
    return {}


class PostServicer(ServicerBase, post_pb2_grpc.PostServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self._store: PostStore | None = None
        self._users: user_pb2_grpc.UserServiceAsyncStub | None = None
        self._media: media_pb2_grpc.MediaServiceAsyncStub | None = None
        self._post_limit: RateLimiter | None = None
        self._comment_limit: RateLimiter | None = None
        self._search: search_rules.PostSearch | None = None
        self._backfill: BackfillWorker | None = None
        self._cards: CardCache | None = None
        self._load_cards: CardLoader | None = None
        self._relationships: RelationshipCache | None = None
        self._load_relationships: RelationshipLoader | None = None

    async def on_ready(self) -> None:
        self._store = PostStore(self._rt.db, self._rt.ids)
        self._users = user_pb2_grpc.UserServiceStub(self.peer("user"))
        self._media = media_pb2_grpc.MediaServiceStub(self.peer("media"))
        graph = graph_pb2_grpc.GraphServiceStub(self.peer("graph"))
        # Visibility and author cards from caches kept exact by their owners'
        # generations (kit/cards.py, kit/relcache.py).
        self._cards = CardCache(self._rt.redis, POST_CARDS_STATS)
        self._cards.start()
        self._load_cards = user_loader(self._users)
        self._relationships = RelationshipCache(self._rt.redis, POST_RELATIONSHIPS_STATS)
        self._relationships.start()
        self._load_relationships = graph_loader(graph)
        self._post_limit = RateLimiter(
            self._rt.redis, "create-post", limit=POSTS_PER_MINUTE, window_seconds=60
        )
        self._comment_limit = RateLimiter(
            self._rt.redis, "create-comment", limit=COMMENTS_PER_MINUTE, window_seconds=60
        )
        self._search = search_rules.PostSearch(
            self._rt.db,
            self._rt.ids,
            self._rt.page_tokens,
            RateLimiter(
                self._rt.redis,
                "search-posts-client",
                limit=anonymous_limit(),
                window_seconds=60,
            ),
        )
        # Search's projection of follows, blocks and private/deleted accounts
        # (docs/search.md); EARLIEST: every retained event counts.
        await self.consume("post-search", self._search.handlers(), start=Start.EARLIEST)
        # ... and what the streams no longer hold: back-filled from graph's and
        # user's exports in the background when it never was (docs/search.md).
        self._backfill = self._search.backfill_worker(graph, self.users)
        self._backfill.start()

    async def on_stop(self) -> None:
        if self._backfill is not None:
            await self._backfill.stop()
        for cache in (self._cards, self._relationships):
            if cache is not None:
                await cache.stop()
        await super().on_stop()

    @property
    def store(self) -> PostStore:
        return self.ready(self._store)

    @property
    def users(self) -> user_pb2_grpc.UserServiceAsyncStub:
        return self.ready(self._users)

    # -- visibility --------------------------------------------------------------

    async def _authors(
        self,
        author_ids: Iterable[int],
        viewer: int | None,
        cards: Cards | None = None,
        also: Iterable[int] = (),
    ) -> dict[int, Author]:
        """Authors visible to the viewer; those deleted or blocking the viewer are absent.

        From the account cards and the viewer's relationships, both cached here and
        exact (kit/cards.py, kit/relcache.py): a warm read asks neither user nor
        graph. Given `cards`, the cards as the viewer sees them (kit/cards.py
        viewer_card) of the authors (the viewer's own too) and of the accounts in
        `also` (the posts' mentions) are added there, in the same reads.
        """
        ids = list(dict.fromkeys(author_ids))
        if cards is not None:
            ids = list(dict.fromkeys([*ids, *also]))
        wanted = ids if cards is not None else [a for a in ids if a != viewer]
        found: dict[int, Author] = {}
        if viewer is not None:
            found[viewer] = Author(is_private=False, is_following=True)
        if not wanted:
            return found
        others = [a for a in wanted if a != viewer]
        accounts, relationships = await asyncio.gather(
            self.ready(self._cards).get_many(wanted, self.ready(self._load_cards)),
            self.ready(self._relationships).get_many(
                viewer, others, self.ready(self._load_relationships)
            )
            if viewer is not None and others
            else _no_relationships(),
        )
        for author_id in wanted:
            card = accounts.get(author_id)
            rel = relationships.get(author_id)
            if card is None or (rel is not None and rel.blocked_by):
                continue  # deleted, unknown, or blocking the viewer
            following = rel is not None and rel.following
            if author_id != viewer:
                found[author_id] = Author(card.is_private, following)
            if cards is not None:
                shown = viewer_card(card, viewer, rel)
                if shown is not None:
                    cards[author_id] = shown
        return found

    @staticmethod
    def _check(row: PostRow, authors: dict[int, Author]) -> None:
        """Raises why the viewer may not see the post (NOT_FOUND hides blocks/deletions)."""
        author = authors.get(row.author_id)
        if author is None:
            raise NotFound(f"post {row.post_id} not found")
        if (row.visibility == FOLLOWERS or author.is_private) and not author.is_following:
            raise PermissionDenied(
                "only the author's approved followers may see this post",
                reason=Reason.PRIVATE_ACCOUNT if author.is_private else Reason.FOLLOWERS_ONLY,
            )

    async def _visible(
        self,
        rows: list[PostRow],
        viewer: int | None,
        cards: Cards | None = None,
    ) -> list[PostRow]:
        """The rows the viewer may see; given `cards`, their authors' and mentioned
        accounts' cards are added there (see `_authors`)."""
        mentioned = [m for r in rows for m in r.mention_ids] if cards is not None else []
        authors = await self._authors((r.author_id for r in rows), viewer, cards, mentioned)
        shown = []
        for row in rows:
            try:
                self._check(row, authors)
            except (NotFound, PermissionDenied):
                continue
            shown.append(row)
        return shown

    async def _visible_post(
        self, post_id: int, viewer: int | None, cards: Cards | None = None
    ) -> PostRow:
        require_positive_id(post_id, "post_id")
        row = (await self.store.posts([post_id], viewer)).get(post_id)
        if row is None:
            raise NotFound(f"post {post_id} not found")
        self._check(row, await self._authors([row.author_id], viewer, cards, row.mention_ids))
        return row

    async def _reread(self, post_id: int, viewer: int | None) -> post_pb2.Post:
        row = (await self.store.posts([post_id], viewer)).get(post_id)
        if row is None:
            raise NotFound(f"post {post_id} not found")
        cards: Cards = {}
        await self._authors([row.author_id], viewer, cards, row.mention_ids)
        return shown_post(row, viewer, cards)

    async def _shown(
        self, rows: list[PostRow], viewer: int | None, cards: Cards | None = None
    ) -> list[post_pb2.Post]:
        """Visible rows as the viewer sees them, with author cards and facets; the
        cards already in `cards` are not read again."""
        cards = {} if cards is None else cards
        wanted = {r.author_id for r in rows} | {m for r in rows for m in r.mention_ids}
        missing = wanted - cards.keys()
        if missing:
            await self._authors(missing, viewer, cards, missing)
        return [shown_post(r, viewer, cards) for r in rows]

    # -- posts -------------------------------------------------------------------

    async def CreatePost(
        self, request: post_pb2.CreatePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.Post:
        caller = require_caller()
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
        request_id = request.request_id.strip()
        v.check(
            len(request_id) <= MAX_REQUEST_ID and request_id.isprintable(),
            "request_id",
            f"at most {MAX_REQUEST_ID} printable characters",
        )
        v.raise_if_any()
        if request_id:
            existing = await self.store.find_by_request_id(caller.user_id, request_id)
            if existing is not None:  # a retry: same answer, no new post, no rate-limit cost
                return await self._reread(existing, caller.user_id)
        await self.ready(self._post_limit).enforce(str(caller.user_id), "posts")
        mention_ids = await self._resolve_mentions(text_rules.mentioned_handles(body))
        attached = await self._attach(caller.user_id, media)
        post_id, created = await self.store.create_post(
            author_id=caller.user_id,
            text=body,
            media_ids=media,
            visibility=visibility,
            hashtags=text_rules.hashtags(body),
            mention_ids=mention_ids,
            request_id=request_id or None,
            media=attached,
        )
        self.poke_relay()
        if created:  # the author's cached post count is stale (kit/counts.py)
            await counts_changed(self._rt.redis, (caller.user_id,))
        return await self._reread(post_id, caller.user_id)

    async def _attach(self, author_id: int, media_ids: list[int]) -> bytes | None:
        """The author's READY uploads, marked in use by the media service (all or nothing).

        Before the post is stored: a failed publish leaves media attached (kept), which
        is harmless; the other order could lose a photo to the collection of unattached
        uploads. The answer is stored with the post (attached media never changes).
        """
        if not media_ids:
            return None
        try:
            reply = await self.ready(self._media).AttachMedia(
                media_pb2.AttachMediaRequest(owner_id=author_id, media_ids=media_ids)
            )
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc, "media") from exc
        return reply.SerializeToString()

    async def _resolve_mentions(self, handles: list[str]) -> list[int]:
        if not handles:
            return []
        # With the author's own token (the channel forwards it): an account that
        # blocks the author is NOT_FOUND to them, so it cannot be mentioned (no
        # `post.mentioned` event, no notification).
        try:
            reply = await self.users.LookupUsers(user_pb2.LookupUsersRequest(handles=handles))
        except grpc.aio.AioRpcError as exc:
            raise upstream_error(exc, "user") from exc
        return [u.user_id for u in reply.users]

    async def GetPost(
        self, request: post_pb2.GetPostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.Post:
        viewer = current_viewer_id()
        cards: Cards = {}
        row = await self._visible_post(request.post_id, viewer, cards)
        return shown_post(row, viewer, cards)

    async def BatchGetPosts(
        self, request: post_pb2.BatchGetPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchGetPostsResponse:
        ids = batch_ids(request.post_ids, "post_ids", MAX_BATCH)
        viewer = current_viewer_id()
        rows = await self.store.posts(ids, viewer)
        cards: Cards = {}
        visible = {r.post_id: r for r in await self._visible(list(rows.values()), viewer, cards)}
        shown = [visible[i] for i in ids if i in visible]
        authors = dict.fromkeys(r.author_id for r in shown) if request.include_authors else {}
        return post_pb2.BatchGetPostsResponse(
            posts=[shown_post(r, viewer, cards) for r in shown],
            authors=[cards[a] for a in authors if a in cards],
        )

    async def UpdatePost(
        self, request: post_pb2.UpdatePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.Post:
        caller = require_caller()
        v = Violations()
        paths = list(request.update_mask.paths) or ["text"]
        v.check(paths == ["text"], "update_mask", 'only "text" can be edited')
        v.check(request.HasField("post"), "post", "required")
        v.raise_if_any()
        row = await self._visible_post(request.post.post_id, caller.user_id)
        if row.author_id != caller.user_id:
            raise PermissionDenied("only the author may edit a post", reason=Reason.NOT_OWNER)
        body = text_rules.clean(request.post.text)
        v.check(len(body) <= MAX_TEXT, "post.text", f"at most {MAX_TEXT} characters")
        v.check(bool(body) or bool(row.media_ids), "post.text", "required unless media is attached")
        v.raise_if_any()
        await self.ready(self._post_limit).enforce(str(caller.user_id), "posts")
        mention_ids = await self._resolve_mentions(text_rules.mentioned_handles(body))
        await self.store.edit_post(
            row.post_id,
            text=body,
            hashtags=text_rules.hashtags(body),
            mention_ids=mention_ids,
        )
        self.poke_relay()
        return await self._reread(row.post_id, caller.user_id)

    async def DeletePost(
        self, request: post_pb2.DeletePostRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        row = await self._visible_post(request.post_id, caller.user_id)
        if row.author_id != caller.user_id:
            raise PermissionDenied("only the author may delete a post", reason=Reason.NOT_OWNER)
        await self.store.delete_post(row.post_id)
        self.poke_relay()
        await counts_changed(self._rt.redis, (row.author_id,))
        return empty_pb2.Empty()

    async def ListUserPosts(
        self, request: post_pb2.ListUserPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListUserPostsResponse:
        require_positive_id(request.user_id, "user_id")
        viewer = current_viewer_id()
        scope = f"posts:{request.user_id}"
        size = page_size(request.page_size, default=POST_PAGES.default, maximum=POST_PAGES.maximum)
        before = profile_position(self._rt.page_tokens.decode(scope, request.page_token))
        cards: Cards = {}
        author = (await self._authors([request.user_id], viewer, cards)).get(request.user_id)
        if author is None:
            raise NotFound(f"user {request.user_id} not found")
        if author.is_private and not author.is_following:
            raise PermissionDenied(
                "this account is private: only approved followers see its posts",
                reason=Reason.PRIVATE_ACCOUNT,
            )
        entries = await self.store.profile_entries(
            request.user_id,
            before=before,
            limit=size + 1,
            include_followers_only=author.is_following,
            include_reposts=not request.exclude_reposts,
        )
        page = entries[:size]
        rows = await self.store.posts(list(dict.fromkeys(e.post_id for e in page)), viewer)
        # Reposted posts are others' (or the owner's own): the rules of GetPost decide.
        reposted = [rows[e.post_id] for e in page if e.is_repost and e.post_id in rows]
        visible = {r.post_id for r in await self._visible(reposted, viewer, cards)}
        shown = {
            p.post_id: p
            for p in await self._shown(
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
            token = self._rt.page_tokens.encode(
                scope, {"post_id": key, "r": is_repost, "p": post_id}
            )
        return post_pb2.ListUserPostsResponse(posts=posts, next_page_token=token)

    # -- interactions --------------------------------------------------------------

    async def _interact(self, post_id: int, action: str, on: bool) -> post_pb2.Post:
        caller = require_caller()
        row = await self._visible_post(post_id, caller.user_id)
        toggle = {"like": self.store.like, "share": self.store.share, "save": self.store.save}
        if await toggle[action](row.post_id, caller.user_id, on):
            self.poke_relay()
        return await self._reread(row.post_id, caller.user_id)

    async def LikePost(
        self, request: post_pb2.LikePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.LikePostResponse:
        return post_pb2.LikePostResponse(post=await self._interact(request.post_id, "like", True))

    async def UnlikePost(
        self, request: post_pb2.UnlikePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.UnlikePostResponse:
        return post_pb2.UnlikePostResponse(
            post=await self._interact(request.post_id, "like", False)
        )

    async def SharePost(
        self, request: post_pb2.SharePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.SharePostResponse:
        return post_pb2.SharePostResponse(post=await self._interact(request.post_id, "share", True))

    async def UnsharePost(
        self, request: post_pb2.UnsharePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.UnsharePostResponse:
        return post_pb2.UnsharePostResponse(
            post=await self._interact(request.post_id, "share", False)
        )

    async def SavePost(
        self, request: post_pb2.SavePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.SavePostResponse:
        return post_pb2.SavePostResponse(post=await self._interact(request.post_id, "save", True))

    async def UnsavePost(
        self, request: post_pb2.UnsavePostRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.UnsavePostResponse:
        return post_pb2.UnsavePostResponse(
            post=await self._interact(request.post_id, "save", False)
        )

    async def ListSavedPosts(
        self, request: post_pb2.ListSavedPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListSavedPostsResponse:
        caller = require_caller()
        page = self._rt.page_tokens.page(f"saves:{caller.user_id}", "save_id", request, POST_PAGES)
        saved = await self.store.saved(caller.user_id, page.position, page.limit)
        post_ids = [post_id for post_id, _save_id in page.rows(saved)]
        rows = await self.store.posts(post_ids, caller.user_id)
        cards: Cards = {}
        visible = {
            r.post_id: r for r in await self._visible(list(rows.values()), caller.user_id, cards)
        }
        return post_pb2.ListSavedPostsResponse(
            posts=[shown_post(visible[p], caller.user_id, cards) for p in post_ids if p in visible],
            next_page_token=page.next_token(saved, lambda s: s[1]),
        )

    # -- comments ------------------------------------------------------------------

    async def CreateComment(
        self, request: post_pb2.CreateCommentRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.Comment:
        caller = require_caller()
        body = text_rules.clean(request.comment.text)
        v = Violations()
        v.check(0 < len(body) <= MAX_COMMENT, "comment.text", f"1 to {MAX_COMMENT} characters")
        request_id = request.request_id.strip()
        v.check(
            len(request_id) <= MAX_REQUEST_ID and request_id.isprintable(),
            "request_id",
            f"at most {MAX_REQUEST_ID} printable characters",
        )
        v.raise_if_any()
        row = await self._visible_post(request.post_id, caller.user_id)
        if request_id:
            earlier = await self.store.comment_by_request_id(
                row.post_id, caller.user_id, request_id
            )
            if earlier is not None:  # a retry: the same comment, no rate-limit cost
                return (await self._shown_comments([earlier], caller.user_id))[0]
        await self.ready(self._comment_limit).enforce(str(caller.user_id), "comments")
        comment = await self.store.create_comment(
            row.post_id, caller.user_id, body, request_id or None
        )
        self.poke_relay()
        return (await self._shown_comments([comment], caller.user_id))[0]

    async def ListComments(
        self, request: post_pb2.ListCommentsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListCommentsResponse:
        page = self._rt.page_tokens.page(
            f"comments:{request.post_id}", "comment_id", request, COMMENT_PAGES
        )
        viewer = current_viewer_id()
        row = await self._visible_post(request.post_id, viewer)
        comments = await self.store.comments(row.post_id, page.position, page.limit)
        shown = page.rows(comments)
        # Comments by accounts that block the viewer (or are gone) are hidden, like
        # their posts; a page may come back shorter than asked.
        return post_pb2.ListCommentsResponse(
            comments=await self._shown_comments(shown, viewer),
            next_page_token=page.next_token(comments, lambda c: c.comment_id),
        )

    async def _shown_comments(
        self, rows: list[CommentRow], viewer: int | None
    ) -> list[post_pb2.Comment]:
        """Comments as the viewer sees them, with their authors' cards and facets;
        comments by accounts that block the viewer (or are gone) are left out.
        Bounded per page: the cards' cache reads, and one user call resolving the
        page's @handles (under the viewer's token: accounts blocking them stay
        plain text)."""
        cards: Cards = {}
        authors = await self._authors((c.author_id for c in rows), viewer, cards)
        shown = [c for c in rows if c.author_id in authors]
        handles = list(
            dict.fromkeys(h for c in shown for h in text_rules.mentioned_handles(c.text))
        )[:MAX_LOOKUP]
        resolved: dict[str, int] = {}
        if handles:
            try:
                reply = await self.users.LookupUsers(user_pb2.LookupUsersRequest(handles=handles))
            except grpc.aio.AioRpcError as exc:
                raise upstream_error(exc, "user") from exc
            resolved = {u.handle.lower(): u.user_id for u in reply.users}
        comments = []
        for row in shown:
            comment = comment_proto(row)
            if row.author_id in cards:
                comment.author.CopyFrom(cards[row.author_id])
            comment.facets.extend(facets_proto(row.text, resolved))
            comments.append(comment)
        return comments

    async def DeleteComment(
        self, request: post_pb2.DeleteCommentRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        caller = require_caller()
        require_positive_id(request.post_id, "post_id")
        require_positive_id(request.comment_id, "comment_id")
        comment = await self.store.comment(request.post_id, request.comment_id)
        post = (await self.store.posts([request.post_id], caller.user_id)).get(request.post_id)
        if comment is not None and post is not None:
            if caller.user_id in (comment.author_id, post.author_id):
                await self.store.delete_comment(request.post_id, request.comment_id)
                return empty_pb2.Empty()
        # Refused: first whatever the caller gets for the post itself (404 or 403, the
        # same whether or not the comment exists, so no comment-id oracle); only on a
        # post they may read, where comments are listed anyway, 404 vs 403.
        await self._visible_post(request.post_id, caller.user_id)
        if comment is None or post is None:
            raise NotFound(f"comment {request.comment_id} not found")
        raise PermissionDenied(
            "only the comment's author or the post's author may delete it",
            reason=Reason.NOT_OWNER,
        )

    async def BatchGetPostCounts(
        self, request: post_pb2.BatchGetPostCountsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchGetPostCountsResponse:
        ids = batch_ids(request.user_ids, "user_ids", MAX_AUTHORS)
        counts = await self.store.post_counts(ids)
        return post_pb2.BatchGetPostCountsResponse(
            counts=[post_pb2.PostCount(user_id=i, post_count=counts[i]) for i in ids]
        )

    async def BatchListAuthorPosts(
        self, request: post_pb2.BatchListAuthorPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.BatchListAuthorPostsResponse:
        """Newest post ids of many authors (feed back-fill, merges): services only."""
        require_service()
        ids = batch_ids(request.author_ids, "author_ids", MAX_AUTHORS)
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
        refs = await self.store.author_post_refs(
            ids, min_post_id=request.min_post_id, since=since, per_author_limit=limit
        )
        reply = post_pb2.BatchListAuthorPostsResponse(posts=[post_ref_proto(r) for r in refs])
        if request.include_reposts:
            reposts = await self.store.author_repost_refs(ids, since=since, per_sharer_limit=limit)
            reply.reposts.extend(repost_ref_proto(r) for r in reposts)
        return reply

    # -- search (services/post/search.py, docs/search.md) ---------------------------

    async def SearchPosts(
        self, request: post_pb2.SearchPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.SearchPostsResponse:
        search = self.ready(self._search)
        viewer = await search.limit_anonymous(context)
        rows, token = await search.search_posts(request, viewer, self.users)
        # Visibility is decided in the query; this authoritative re-check (one batch
        # call) only covers the moment between a change and its event's arrival.
        cards: Cards = {}
        visible = await self._visible(rows, viewer, cards)
        return post_pb2.SearchPostsResponse(
            posts=[shown_post(r, viewer, cards) for r in visible], next_page_token=token
        )

    async def ListTagPosts(
        self, request: post_pb2.ListTagPostsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.ListTagPostsResponse:
        viewer = current_viewer_id()
        rows, token = await self.ready(self._search).tag_posts(request, viewer)
        # As in SearchPosts: the query decides visibility; one batch re-check covers
        # the moment between a change and its event reaching the projection.
        cards: Cards = {}
        visible = await self._visible(rows, viewer, cards)
        return post_pb2.ListTagPostsResponse(
            posts=[shown_post(r, viewer, cards) for r in visible], next_page_token=token
        )

    async def SearchTags(
        self, request: post_pb2.SearchTagsRequest, context: grpc.aio.ServicerContext
    ) -> post_pb2.SearchTagsResponse:
        search = self.ready(self._search)
        await search.limit_anonymous(context)
        return await search.search_tags(request)
