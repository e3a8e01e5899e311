"""Post and hashtag search (issue 13): PostgreSQL full text, visibility inside the query.

* Documents are `post.search_document(text)`: NFKD, combining marks dropped,
  lower-cased, `simple` configuration (docs/search.md says why), written in the
  INSERT that creates the post; queries are folded by the same SQL function and
  parsed by `websearch_to_tsquery` (quoted phrases, `-word`, `OR`), which
  accepts any string without a syntax error.
* Visibility is a WHERE clause over the post service's own projection of the
  graph and user events (`search_follows`, `search_blocks`, `search_authors`,
  fed by the consumer group `post-search`: `search_projection.py`), so a page is never thinned out
  after the fact and keyset pagination stays exact.
* A result list is a snapshot: the first page fixes a ceiling post id (ids are
  time-ordered) and the instant the recency decay is measured from; both travel
  in the signed page token with the keyset position (score, post id).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.post.v1 import post_pb2
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services.kit.backfill import (
    EXPORT_PAGE_SIZE,
    BackfillResult,
    backfill_relationships,
    export_pages,
)
from services.kit.channels import peer_call
from services.kit.db import Database
from services.kit.errors import InvalidArgument
from services.kit.ids import IdGenerator
from services.kit.pagination import PageSizes, PageTokens, page_size
from services.kit.ratelimit import RateLimiter
from services.kit.search import fetch_planned_per_query, limit_anonymous
from services.kit.validation import strip_control_characters

from .store import POST_COLUMNS, PostRow

MAX_POST_QUERY = 500
MAX_TAG_QUERY = 100
MAX_FILTERS = 10
SEARCH_PAGES = PageSizes(default=20, maximum=100)
TAG_PAGES = PageSizes(default=10, maximum=50)
#: Relevance = text rank x 0.5^(age / half-life), age measured from the first page.
RECENCY_HALF_LIFE_HOURS = 72.0
#: RELEVANCE order ranks the newest this many matches (NEWEST order has no bound).
RELEVANCE_WINDOW = 5000

FILTER = re.compile(
    r"(?<!\S)(?:#(?P<tag>\w{1,100})|@(?P<mention>[A-Za-z0-9_]{3,30})"
    r"|from:@?(?P<author>[A-Za-z0-9_]{3,30}))(?!\S)",
    re.IGNORECASE,
)
TAG_PREFIX = re.compile(r"^\w{1,100}$")


def next_prefix(prefix: str) -> str:
    """The smallest string after every string that starts with `prefix` (code points)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def clean_query(raw: str, maximum: int) -> str:
    """The query without control characters and surrounding space, or INVALID_ARGUMENT.

    '+' is a space: REST clients form-encode spaces as '+' and the edge passes it
    through literally; it means nothing in the search syntax (and would otherwise
    glue two words into a phrase in websearch_to_tsquery).
    """
    text = strip_control_characters(raw).replace("+", " ")
    text = " ".join(text.split())
    if not text:
        raise InvalidArgument([("query", "required")])
    if len(text) > maximum:
        raise InvalidArgument([("query", f"at most {maximum} characters")])
    return text


@dataclass(frozen=True)
class PostQuery:
    """A parsed post query: free text for websearch_to_tsquery plus exact filters."""

    text: str
    tags: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)

    @property
    def has_text(self) -> bool:
        # websearch_to_tsquery yields no lexeme without a letter or digit; then the
        # query has no text condition (filters only) or matches nothing.
        return any(ch.isalnum() for ch in self.text)

    @property
    def has_filters(self) -> bool:
        return bool(self.tags or self.mentions or self.authors)

    def fingerprint(self) -> str:
        raw = "\x1f".join(
            [self.text, ",".join(self.tags), ",".join(self.mentions), ",".join(self.authors)]
        )
        return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def parse_post_query(raw: str) -> PostQuery:
    text = clean_query(raw, MAX_POST_QUERY)
    tags: list[str] = []
    mentions: list[str] = []
    authors: list[str] = []
    for match in FILTER.finditer(text):
        if match["tag"]:
            tags.append(match["tag"].lower())
        elif match["mention"]:
            mentions.append(match["mention"].lower())
        else:
            authors.append(match["author"].lower())
    if len(tags) > MAX_FILTERS or len(mentions) + len(authors) > MAX_FILTERS:
        raise InvalidArgument(
            [("query", f"at most {MAX_FILTERS} #tags and {MAX_FILTERS} @/from: handles")]
        )
    rest = " ".join(FILTER.sub(" ", text).split())
    return PostQuery(
        rest,
        list(dict.fromkeys(tags)),
        list(dict.fromkeys(mentions)),
        list(dict.fromkeys(authors)),
    )


#: Who may see a post, as SQL over the projection ($1 = viewer, NULL if anonymous):
#: the author; an approved follower; anyone for a PUBLIC post of a live public
#: account; never across a block in either direction; never a deleted post.
VISIBLE = f"""
    p.deleted_at IS NULL
    AND NOT EXISTS (SELECT 1 FROM post.search_authors a
                    WHERE a.user_id = p.author_id AND a.deleted)
    AND (p.author_id = $1
         OR EXISTS (SELECT 1 FROM post.search_follows f
                    WHERE f.follower_id = $1 AND f.followee_id = p.author_id AND f.following)
         OR (p.visibility = {post_pb2.VISIBILITY_PUBLIC}
             AND NOT EXISTS (SELECT 1 FROM post.search_authors a
                             WHERE a.user_id = p.author_id AND a.is_private)))
    AND NOT EXISTS (SELECT 1 FROM post.search_blocks b
                    WHERE b.blocking AND ((b.blocker_id = $1 AND b.blocked_id = p.author_id)
                                       OR (b.blocker_id = p.author_id AND b.blocked_id = $1)))
"""

_COLUMNS = POST_COLUMNS


@dataclass(frozen=True)
class Position:
    """Where a result list stands: its snapshot and the last row shown."""

    ceiling: int
    as_of_us: int
    score: float | None = None
    post_id: int | None = None

    def to_token(self) -> dict[str, Any]:
        return {"c": self.ceiling, "t": self.as_of_us, "s": self.score, "i": self.post_id}

    @classmethod
    def from_token(cls, data: dict[str, Any]) -> Position:
        c, t, s, i = data.get("c"), data.get("t"), data.get("s"), data.get("i")
        ok = (
            all(isinstance(x, int) and not isinstance(x, bool) for x in (c, t, i))
            and isinstance(s, (int, float))
            and not isinstance(s, bool)
        )
        if not ok:
            raise InvalidArgument([("page_token", "invalid or tampered page token")])
        return cls(int(c), int(t), float(s), int(i))  # type: ignore[arg-type]


class PostSearch:
    """Search over the post service's own tables; one SQL round trip per page."""

    def __init__(
        self,
        db: Database,
        ids: IdGenerator,
        tokens: PageTokens,
        limiter: RateLimiter,
    ) -> None:
        self._db = db
        self._ids = ids
        self._tokens = tokens
        self._limiter = limiter

    # -- rate limit ---------------------------------------------------------------

    async def limit_anonymous(self, context: grpc.aio.ServicerContext) -> int | None:
        """The viewer; an anonymous caller spends one unit of its client's budget."""
        return await limit_anonymous(self._limiter, context)

    # -- posts --------------------------------------------------------------------

    async def resolve_handles(
        self, users: user_pb2_grpc.UserServiceAsyncStub, handles: list[str]
    ) -> dict[str, int]:
        """Handles the viewer may see (the channel forwards their token) -> ids."""
        if not handles:
            return {}
        async with peer_call("user"):
            reply = await users.LookupUsers(user_pb2.LookupUsersRequest(handles=handles))
        return {u.handle.lower(): u.user_id for u in reply.users}

    async def search_posts(
        self,
        request: post_pb2.SearchPostsRequest,
        viewer: int | None,
        users: user_pb2_grpc.UserServiceAsyncStub,
    ) -> tuple[list[PostRow], str]:
        """One page of matching posts the viewer may see, and the next page's token."""
        query = parse_post_query(request.query)
        size = page_size(
            request.page_size, default=SEARCH_PAGES.default, maximum=SEARCH_PAGES.maximum
        )
        order = request.order or post_pb2.SEARCH_ORDER_RELEVANCE
        if order not in (post_pb2.SEARCH_ORDER_RELEVANCE, post_pb2.SEARCH_ORDER_NEWEST):
            raise InvalidArgument([("order", "RELEVANCE or NEWEST")])
        scope = f"search-posts:{viewer or 0}:{order}:{query.fingerprint()}"
        data = self._tokens.decode(scope, request.page_token)
        if data is None:
            position = Position(
                ceiling=self._ids.next_id(),
                as_of_us=int(datetime.now(UTC).timestamp() * 1_000_000),
            )
        else:
            position = Position.from_token(data)
        if not query.has_text and not query.has_filters:
            return [], ""  # nothing searchable (punctuation, emoji only): no matches
        handles = await self.resolve_handles(users, query.mentions + query.authors)
        if any(h not in handles for h in query.mentions + query.authors):
            return [], ""  # an unknown or hidden account: nothing can match
        rows = await self._fetch(
            query,
            viewer,
            mention_ids=[handles[h] for h in query.mentions],
            author_ids=[handles[h] for h in query.authors],
            position=position,
            newest=order == post_pb2.SEARCH_ORDER_NEWEST,
            limit=size + 1,
        )
        token = ""
        if len(rows) > size:
            last_row, last_score = rows[size - 1]
            token = self._tokens.encode(
                scope,
                Position(
                    position.ceiling, position.as_of_us, last_score, last_row.post_id
                ).to_token(),
            )
        return [r for r, _ in rows[:size]], token

    async def _fetch(
        self,
        query: PostQuery,
        viewer: int | None,
        *,
        mention_ids: list[int],
        author_ids: list[int],
        position: Position,
        newest: bool,
        limit: int,
    ) -> list[tuple[PostRow, float]]:
        args: list[Any] = [viewer]

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        as_of = datetime.fromtimestamp(position.as_of_us / 1_000_000, UTC)
        where = [VISIBLE, f"p.post_id <= {arg(position.ceiling)}"]
        if query.has_text:
            q = f"websearch_to_tsquery('simple'::regconfig, post.search_fold({arg(query.text)}))"
            where.append(f"p.search_tsv @@ {q}")
            rank = f"ts_rank_cd(p.search_tsv, {q}, 1)::float8"
        else:
            rank = "1.0::float8"
        if query.tags:
            where.append(f"p.hashtags @> {arg(query.tags)}::text[]")
        if mention_ids:
            where.append(f"p.mention_ids @> {arg(mention_ids)}::bigint[]")
        if author_ids:
            where.append(f"p.author_id = ANY({arg(author_ids)}::bigint[])")
        if newest:
            score, order_by = "0::float8", "p.post_id DESC"
            if position.post_id is not None:
                where.append(f"p.post_id < {arg(position.post_id)}")
            hits = f"""SELECT p.post_id, {score} AS score FROM post.posts p
                       WHERE {" AND ".join(where)} ORDER BY {order_by} LIMIT {arg(limit)}"""
        else:
            age = f"GREATEST(extract(epoch FROM {arg(as_of)}::timestamptz - p.created_at), 0)"
            decay = f"exp(-ln(2) * {age}::float8 / {RECENCY_HALF_LIFE_HOURS * 3600})"
            after = ""
            if position.post_id is not None:
                last = f"({arg(position.score)}::float8, {arg(position.post_id)}::bigint)"
                after = f"WHERE (score, post_id) < {last}"
            # Only the newest RELEVANCE_WINDOW matches are ranked: a common word
            # matches a large share of all posts, and older ones have decayed anyway.
            # (The score is computed only for the rows the inner LIMIT lets through.)
            hits = f"""SELECT post_id, score FROM (
                           SELECT p.post_id, {rank} * {decay} AS score FROM post.posts p
                           WHERE {" AND ".join(where)}
                           ORDER BY p.post_id DESC LIMIT {RELEVANCE_WINDOW}) ranked
                       {after} ORDER BY score DESC, post_id DESC LIMIT {arg(limit)}"""
        sql = f"""WITH hits AS MATERIALIZED ({hits})
                  SELECT {_COLUMNS}, hits.score FROM hits JOIN post.posts p USING (post_id)
                  ORDER BY hits.score DESC, p.post_id DESC"""
        rows = await fetch_planned_per_query(self._db, sql, args)
        return [(PostRow.from_row(r), float(r["score"])) for r in rows]

    # -- hashtag timeline -----------------------------------------------------------

    async def tag_posts(
        self, request: post_pb2.ListTagPostsRequest, viewer: int | None
    ) -> tuple[list[PostRow], str]:
        """One page of a hashtag's posts the viewer may see, newest first."""
        tag = strip_control_characters(request.tag).strip().lstrip("#").lower()
        if not tag:
            raise InvalidArgument([("tag", "required")])
        if not TAG_PREFIX.match(tag):
            raise InvalidArgument([("tag", "letters, digits and '_', 1 to 100 characters")])
        size = page_size(
            request.page_size, default=SEARCH_PAGES.default, maximum=SEARCH_PAGES.maximum
        )
        scope = f"tag-posts:{viewer or 0}:{tag}"
        data = self._tokens.decode(scope, request.page_token)
        before: int | None = None
        if data is not None:
            before = data.get("i")
            if not isinstance(before, int) or isinstance(before, bool):
                raise InvalidArgument([("page_token", "invalid or tampered page token")])
        rows = await fetch_planned_per_query(
            self._db,
            f"""SELECT {_COLUMNS} FROM post.posts p
                WHERE {VISIBLE} AND p.hashtags @> ARRAY[$2]::text[]
                  AND ($3::bigint IS NULL OR p.post_id < $3)
                ORDER BY p.post_id DESC LIMIT $4""",
            [viewer, tag, before, size + 1],
        )
        posts = [PostRow.from_row(r) for r in rows]
        token = ""
        if len(posts) > size:
            token = self._tokens.encode(scope, {"i": posts[size - 1].post_id})
        return posts[:size], token

    # -- tags ---------------------------------------------------------------------

    async def search_tags(self, request: post_pb2.SearchTagsRequest) -> post_pb2.SearchTagsResponse:
        prefix = clean_query(request.query, MAX_TAG_QUERY).lstrip("#").lower()
        size = page_size(request.page_size, default=TAG_PAGES.default, maximum=TAG_PAGES.maximum)
        scope = (
            "search-tags:"
            + hashlib.sha256(prefix.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        )
        data = self._tokens.decode(scope, request.page_token)
        after: tuple[int, str] | None = None
        if data is not None:
            count, tag = data.get("n"), data.get("g")
            if not isinstance(count, int) or isinstance(count, bool) or not isinstance(tag, str):
                raise InvalidArgument([("page_token", "invalid or tampered page token")])
            after = (count, tag)
        if not TAG_PREFIX.match(prefix):
            return post_pb2.SearchTagsResponse()  # tags are word characters only
        rows = await self._tags(prefix, after, size + 1)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = self._tokens.encode(scope, {"n": last["post_count"], "g": last["tag"]})
        return post_pb2.SearchTagsResponse(
            tags=[post_pb2.TagCount(tag=r["tag"], post_count=r["post_count"]) for r in rows[:size]],
            next_page_token=token,
        )

    async def _tags(
        self, prefix: str, after: tuple[int, str] | None, limit: int
    ) -> list[asyncpg.Record]:
        # A range on the "C"-collated key (code point order): [prefix, next prefix).
        return await self._db.reader().fetch(
            """SELECT tag, post_count FROM post.tag_counts
               WHERE tag >= $1 AND tag < $5 AND post_count > 0
                 AND ($2::bigint IS NULL OR (post_count, tag) < ($2, $3::text COLLATE "C"))
               ORDER BY post_count DESC, tag DESC LIMIT $4""",
            prefix,
            after[0] if after else None,
            after[1] if after else None,
            limit,
            next_prefix(prefix),
        )


# -- back-fill (docs/search.md, "Back-fill") ----------------------------------------


async def backfill(
    db: Database,
    graph: graph_pb2_grpc.GraphServiceAsyncStub,
    users: user_pb2_grpc.UserServiceAsyncStub,
    event_id: int,
    result: BackfillResult,
) -> None:
    """Fills the copy from graph's and user's exports (this service's credential)."""
    await backfill_relationships(db, "post", graph, event_id, result)

    async def fetch(token: str) -> tuple[list[user_pb2.AccountState], str]:
        reply = await users.ExportAccountStates(
            user_pb2.ExportAccountStatesRequest(page_size=EXPORT_PAGE_SIZE, page_token=token),
            timeout=30,
        )
        return list(reply.accounts), reply.next_page_token

    async for page in export_pages(fetch):
        # Public live accounts need no row (absent means exactly that).
        notable = [a for a in page if a.is_private or a.deleted]
        await db.primary.execute(
            """INSERT INTO post.search_authors (user_id, is_private, deleted, event_id)
               SELECT u, p, d, $4::bigint
               FROM unnest($1::bigint[], $2::bool[], $3::bool[]) AS x(u, p, d)
               ON CONFLICT (user_id) DO UPDATE SET
                 is_private = CASE WHEN post.search_authors.event_id < EXCLUDED.event_id
                                   THEN EXCLUDED.is_private
                                   ELSE post.search_authors.is_private END,
                 deleted = post.search_authors.deleted OR EXCLUDED.deleted,
                 event_id = GREATEST(post.search_authors.event_id, EXCLUDED.event_id)
               WHERE post.search_authors.event_id < EXCLUDED.event_id
                  OR (EXCLUDED.deleted AND NOT post.search_authors.deleted)""",
            [a.user_id for a in notable],
            [a.is_private for a in notable],
            [a.deleted for a in notable],
            event_id,
        )
        result.accounts += len(page)
    # Private in the copy from an older event, public in the export (or gone).
    retired = await db.primary.fetch(
        """UPDATE post.search_authors SET is_private = false, event_id = $1
           WHERE is_private AND NOT deleted AND event_id < $1 RETURNING 1""",
        event_id,
    )
    result.retired += len(retired)
