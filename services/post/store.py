"""PostgreSQL storage of the post service (schema "post"); plain parameterized SQL.

Reads are one round trip whatever the batch size: the viewer's own state
(liked/saved/shared) is computed in the same query as the posts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from google.protobuf.message import Message
from socialmesh.post.v1 import events_pb2, post_pb2

from services.kit.db import Database
from services.kit.errors import NotFound
from services.kit.events import Outbox
from services.kit.ids import EPOCH_MS, SEQUENCE_BITS, WORKER_BITS, IdGenerator
from services.kit.timestamps import from_datetime

SCHEMA = "post"
#: How much of a comment its CommentCreated event carries (a notification preview).
COMMENT_SNIPPET_CHARS = 140

#: A PostRow's columns (`p` = post.posts, $1 = the viewer), for every read of posts.
POST_COLUMNS = """
p.post_id, p.author_id, p.text, p.media_ids, p.media, p.visibility, p.hashtags,
p.mention_ids, p.like_count, p.comment_count, p.share_count, p.created_at, p.edit_time,
EXISTS (SELECT 1 FROM post.likes l WHERE l.post_id = p.post_id AND l.user_id = $1) AS is_liked,
EXISTS (SELECT 1 FROM post.saves s WHERE s.post_id = p.post_id AND s.user_id = $1) AS is_saved,
EXISTS (SELECT 1 FROM post.shares h WHERE h.post_id = p.post_id AND h.user_id = $1) AS is_shared
"""
_POST_SELECT = f"SELECT {POST_COLUMNS} FROM post.posts p\n"


async def _count_tags(conn: asyncpg.Connection, tags: list[str], delta: int) -> None:
    """Search's per-tag count of live PUBLIC posts, in the write's own transaction."""
    if tags:
        await conn.execute(
            """INSERT INTO post.tag_counts (tag, post_count)
               SELECT t, GREATEST($2, 0) FROM unnest($1::text[]) AS t ORDER BY t
               ON CONFLICT (tag) DO UPDATE
               SET post_count = GREATEST(post.tag_counts.post_count + $2, 0)""",
            tags,
            delta,
        )


@dataclass(frozen=True)
class PostRow:
    post_id: int
    author_id: int
    text: str
    media_ids: list[int]
    #: Serialized AttachMediaResponse (the embedded media), None without attachments.
    media: bytes | None
    visibility: int
    hashtags: list[str]
    mention_ids: list[int]
    like_count: int
    comment_count: int
    share_count: int
    created_at: datetime
    #: When the author last edited the text (None: never).
    edit_time: datetime | None = None
    is_liked: bool = False
    is_saved: bool = False
    is_shared: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> PostRow:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class PostRef:
    """A post without its content: enough to place it in a timeline."""

    post_id: int
    author_id: int
    visibility: int
    created_at: datetime


@dataclass(frozen=True)
class RepostRef:
    """A repost without content: enough to place it in a timeline."""

    post_id: int
    author_id: int
    sharer_id: int
    share_time: datetime


@dataclass(frozen=True)
class ProfileEntry:
    """One entry of a profile timeline: a post of the owner, or their repost of one.

    `key` orders the timeline: a post's id, or for a repost the snowflake
    lower bound of its time (ids are time-ordered, so both compare); then
    posts before reposts, then post id. That triple is the keyset position.
    """

    key: int
    is_repost: bool
    post_id: int
    share_time: datetime | None

    @property
    def position(self) -> tuple[int, int, int]:
        return (self.key, int(self.is_repost), self.post_id)


@dataclass(frozen=True)
class CommentRow:
    comment_id: int
    post_id: int
    author_id: int
    text: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> CommentRow:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


class PostStore:
    def __init__(self, db: Database, ids: IdGenerator) -> None:
        self._db = db
        self._ids = ids
        self._outbox = Outbox(SCHEMA, ids)

    async def _event(self, conn: asyncpg.Connection, event: Message, *, post_id: int) -> None:
        """Every post event's aggregate is the post, so its events stay in commit order."""
        await self._outbox.enqueue(conn, event, aggregate_id=post_id)

    async def create_post(
        self,
        *,
        author_id: int,
        text: str,
        media_ids: list[int],
        visibility: int,
        hashtags: list[str],
        mention_ids: list[int],
        request_id: str | None,
        media: bytes | None = None,
    ) -> tuple[int, bool]:
        """(post id, created). A repeated request_id returns the first post's id."""
        async with self._db.transaction() as conn:
            created = await conn.fetchrow(
                """INSERT INTO post.posts (post_id, author_id, text, media_ids, visibility,
                                           hashtags, mention_ids, request_id, search_tsv,
                                           media)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, post.search_document($3), $9)
                   ON CONFLICT (author_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
                   RETURNING post_id, created_at""",
                self._ids.next_id(),
                author_id,
                text,
                media_ids,
                visibility,
                hashtags,
                mention_ids,
                request_id,
                media,
            )
            if created is None:
                existing = await conn.fetchval(
                    "SELECT post_id FROM post.posts WHERE author_id = $1 AND request_id = $2",
                    author_id,
                    request_id,
                )
                return int(existing), False
            await conn.execute(
                """INSERT INTO post.author_counts (user_id, post_count) VALUES ($1, 1)
                   ON CONFLICT (user_id)
                   DO UPDATE SET post_count = post.author_counts.post_count + 1""",
                author_id,
            )
            if visibility == post_pb2.VISIBILITY_PUBLIC:
                await _count_tags(conn, hashtags, +1)
            post_id = created["post_id"]
            await self._event(
                conn,
                events_pb2.PostCreated(
                    post_id=post_id,
                    author_id=author_id,
                    visibility=visibility,  # type: ignore[arg-type]
                    create_time=from_datetime(created["created_at"]),
                    hashtags=hashtags,
                    mention_ids=mention_ids,
                    media_ids=media_ids,
                    snippet=text[:COMMENT_SNIPPET_CHARS],
                ),
                post_id=post_id,
            )
        return int(post_id), True

    async def find_by_request_id(self, author_id: int, request_id: str) -> int | None:
        return await self._db.primary.fetchval(
            "SELECT post_id FROM post.posts WHERE author_id = $1 AND request_id = $2",
            author_id,
            request_id,
        )

    async def posts(self, post_ids: list[int], viewer_id: int | None) -> dict[int, PostRow]:
        """Live posts among the ids with the viewer's state (none when anonymous): one
        query for up to 500 ids."""
        rows = await self._db.primary.fetch(
            _POST_SELECT + " WHERE p.post_id = ANY($2::bigint[]) AND p.deleted_at IS NULL",
            viewer_id,
            post_ids,
        )
        # _POST_SELECT's columns are PostRow's fields in order: positional is cheaper.
        return {r["post_id"]: PostRow(*r) for r in rows}

    async def profile_entries(
        self,
        owner_id: int,
        *,
        before: tuple[int, int, int] | None,
        limit: int,
        include_followers_only: bool,
        include_reposts: bool,
    ) -> list[ProfileEntry]:
        """A profile timeline, newest first: the owner's live posts and (unless
        not asked) their reposts of live PUBLIC posts (a repost never widens an
        audience), strictly after the keyset position `before`. One query; each
        branch stops after `limit` rows."""
        shift = WORKER_BITS + SEQUENCE_BITS
        rows = await self._db.primary.fetch(
            f"""(SELECT p.post_id AS key, false AS is_repost, p.post_id,
                       NULL::timestamptz AS share_time
                  FROM post.posts p
                  WHERE p.author_id = $1 AND p.deleted_at IS NULL
                    AND ($2 OR p.visibility <> $3)
                    AND ($4::bigint IS NULL OR p.post_id <= $4)
                    AND ($4::bigint IS NULL OR (p.post_id, 0, p.post_id) < ($4, $5, $6))
                  ORDER BY p.post_id DESC LIMIT $7)
               UNION ALL
               (SELECT s.key, true, s.post_id, s.created_at
                  FROM (SELECT h.post_id, h.created_at,
                               (floor(extract(epoch FROM h.created_at) * 1000)::bigint
                                - {EPOCH_MS}) << {shift} AS key
                          FROM post.shares h JOIN post.posts p USING (post_id)
                          WHERE $8 AND h.user_id = $1 AND p.deleted_at IS NULL
                            AND p.visibility = $9) s
                  WHERE $4::bigint IS NULL OR (s.key, 1, s.post_id) < ($4, $5, $6)
                  ORDER BY s.key DESC, s.post_id DESC LIMIT $7)
               ORDER BY key DESC, is_repost DESC, post_id DESC LIMIT $7""",
            owner_id,
            include_followers_only,
            post_pb2.VISIBILITY_FOLLOWERS,
            before[0] if before else None,
            before[1] if before else 0,
            before[2] if before else 0,
            limit,
            include_reposts,
            post_pb2.VISIBILITY_PUBLIC,
        )
        return [ProfileEntry(**r) for r in rows]

    async def author_post_refs(
        self,
        author_ids: list[int],
        *,
        min_post_id: int,
        since: datetime | None,
        per_author_limit: int,
    ) -> list[PostRef]:
        """The newest live posts of each author, newest first, grouped in `author_ids` order.

        One query whatever the number of authors: a LATERAL index scan of
        `posts_by_author` per author, each stopping after `per_author_limit` rows.
        """
        rows = await self._db.reader().fetch(
            """SELECT p.post_id, p.author_id, p.visibility, p.created_at
               FROM unnest($1::bigint[]) WITH ORDINALITY AS a(author_id, ord)
               CROSS JOIN LATERAL (
                   SELECT post_id, author_id, visibility, created_at FROM post.posts
                   WHERE author_id = a.author_id AND deleted_at IS NULL AND post_id > $2
                     AND ($3::timestamptz IS NULL OR created_at >= $3)
                   ORDER BY post_id DESC LIMIT $4
               ) p
               ORDER BY a.ord, p.post_id DESC""",
            author_ids,
            min_post_id,
            since,
            per_author_limit,
        )
        return [PostRef(**r) for r in rows]  # the columns are exactly its fields

    async def author_repost_refs(
        self, sharer_ids: list[int], *, since: datetime | None, per_sharer_limit: int
    ) -> list[RepostRef]:
        """The newest reposts of live PUBLIC posts by each sharer, grouped in input order."""
        rows = await self._db.reader().fetch(
            """SELECT s.post_id, s.author_id, a.sharer_id, s.created_at AS share_time
               FROM unnest($1::bigint[]) WITH ORDINALITY AS a(sharer_id, ord)
               CROSS JOIN LATERAL (
                   SELECT h.post_id, p.author_id, h.created_at FROM post.shares h
                   JOIN post.posts p USING (post_id)
                   WHERE h.user_id = a.sharer_id AND p.deleted_at IS NULL
                     AND p.visibility = $4
                     AND ($2::timestamptz IS NULL OR h.created_at >= $2)
                   ORDER BY h.created_at DESC, h.post_id DESC LIMIT $3
               ) s
               ORDER BY a.ord, s.created_at DESC, s.post_id DESC""",
            sharer_ids,
            since,
            per_sharer_limit,
            post_pb2.VISIBILITY_PUBLIC,
        )
        return [RepostRef(**r) for r in rows]

    async def edit_post(
        self, post_id: int, *, text: str, hashtags: list[str], mention_ids: list[int]
    ) -> None:
        """New text (and what is read from it) for a live post, its tag counts moved,
        PostEdited through the outbox: one transaction."""
        async with self._db.transaction() as conn:
            before = await conn.fetchrow(
                """SELECT author_id, visibility, hashtags FROM post.posts
                   WHERE post_id = $1 AND deleted_at IS NULL FOR UPDATE""",
                post_id,
            )
            if before is None:
                raise NotFound(f"post {post_id} not found")
            edited = await conn.fetchval(
                """UPDATE post.posts
                   SET text = $2, hashtags = $3, mention_ids = $4,
                       search_tsv = post.search_document($2), edit_time = now()
                   WHERE post_id = $1 RETURNING edit_time""",
                post_id,
                text,
                hashtags,
                mention_ids,
            )
            if before["visibility"] == post_pb2.VISIBILITY_PUBLIC:
                await _count_tags(conn, before["hashtags"], -1)
                await _count_tags(conn, hashtags, +1)
            await self._event(
                conn,
                events_pb2.PostEdited(
                    post_id=post_id,
                    author_id=before["author_id"],
                    visibility=before["visibility"],
                    hashtags=hashtags,
                    previous_hashtags=before["hashtags"],
                    edit_time=from_datetime(edited),
                ),
                post_id=post_id,
            )

    async def delete_post(self, post_id: int) -> None:
        async with self._db.transaction() as conn:
            deleted = await conn.fetchrow(
                """UPDATE post.posts SET deleted_at = now()
                   WHERE post_id = $1 AND deleted_at IS NULL
                   RETURNING author_id, visibility, hashtags""",
                post_id,
            )
            if deleted is None:
                raise NotFound(f"post {post_id} not found")
            author = deleted["author_id"]
            if deleted["visibility"] == post_pb2.VISIBILITY_PUBLIC:
                await _count_tags(conn, deleted["hashtags"], -1)
            await conn.execute(
                "UPDATE post.author_counts SET post_count = post_count - 1 WHERE user_id = $1",
                author,
            )
            await self._event(
                conn, events_pb2.PostDeleted(post_id=post_id, author_id=author), post_id=post_id
            )

    async def _toggle(
        self,
        table: str,
        counter: str | None,
        post_id: int,
        user_id: int,
        *,
        on: bool,
        event: Callable[[int, int], Message] | None = None,
    ) -> bool:
        """Adds/removes the caller's row and moves the counter only if it really changed.

        `event(post_author_id, visibility)` builds the event a real change emits.
        """
        async with self._db.transaction() as conn:
            if on:
                extra_cols, extra_vals = (", save_id", ", $3") if table == "saves" else ("", "")
                args: list[Any] = [post_id, user_id]
                if table == "saves":
                    args.append(self._ids.next_id())
                changed = await conn.fetchval(
                    f"""INSERT INTO post.{table} (post_id, user_id{extra_cols})
                        VALUES ($1, $2{extra_vals}) ON CONFLICT DO NOTHING RETURNING true""",
                    *args,
                )
            else:
                changed = await conn.fetchval(
                    f"DELETE FROM post.{table} WHERE post_id = $1 AND user_id = $2 RETURNING true",
                    post_id,
                    user_id,
                )
            if changed and counter:
                post = await conn.fetchrow(
                    f"""UPDATE post.posts SET {counter} = {counter} + $2 WHERE post_id = $1
                        RETURNING author_id, visibility""",
                    post_id,
                    1 if on else -1,
                )
                if event is not None:
                    await self._event(
                        conn, event(post["author_id"], post["visibility"]), post_id=post_id
                    )
            return bool(changed)

    async def like(self, post_id: int, user_id: int, on: bool) -> bool:
        def liked(author: int, _visibility: int) -> Message:
            kind = events_pb2.PostLiked if on else events_pb2.PostUnliked
            return kind(post_id=post_id, user_id=user_id, post_author_id=author)

        return await self._toggle("likes", "like_count", post_id, user_id, on=on, event=liked)

    async def share(self, post_id: int, user_id: int, on: bool) -> bool:
        def shared(author: int, visibility: int) -> Message:
            if not on:
                return events_pb2.PostUnshared(
                    post_id=post_id, user_id=user_id, post_author_id=author
                )
            return events_pb2.PostShared(
                post_id=post_id,
                user_id=user_id,
                post_author_id=author,
                visibility=visibility,  # type: ignore[arg-type]
                share_time=from_datetime(datetime.now(UTC)),
            )

        return await self._toggle("shares", "share_count", post_id, user_id, on=on, event=shared)

    async def save(self, post_id: int, user_id: int, on: bool) -> bool:
        """Saves are private to the saver: no event."""
        return await self._toggle("saves", None, post_id, user_id, on=on)

    async def saved(self, user_id: int, before: int | None, limit: int) -> list[tuple[int, int]]:
        """(post_id, save_id) newest save first, live posts only."""
        rows = await self._db.primary.fetch(
            """SELECT s.post_id, s.save_id FROM post.saves s
               JOIN post.posts p ON p.post_id = s.post_id AND p.deleted_at IS NULL
               WHERE s.user_id = $1 AND ($2::bigint IS NULL OR s.save_id < $2)
               ORDER BY s.save_id DESC LIMIT $3""",
            user_id,
            before,
            limit,
        )
        return [(r["post_id"], r["save_id"]) for r in rows]

    async def comment_by_request_id(
        self, post_id: int, author_id: int, request_id: str
    ) -> CommentRow | None:
        """The live comment an earlier CreateComment with this request id made, if any."""
        row = await self._db.primary.fetchrow(
            """SELECT comment_id, post_id, author_id, text, created_at FROM post.comments
               WHERE post_id = $1 AND author_id = $2 AND request_id = $3
                 AND deleted_at IS NULL""",
            post_id,
            author_id,
            request_id,
        )
        return CommentRow.from_row(row) if row else None

    async def create_comment(
        self, post_id: int, author_id: int, text: str, request_id: str | None = None
    ) -> CommentRow:
        """The new comment; with a request id already used on this post by this author
        (a concurrent retry), the first comment, and nothing else changes."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """INSERT INTO post.comments (comment_id, post_id, author_id, text, request_id)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (post_id, author_id, request_id) WHERE request_id IS NOT NULL
                   DO NOTHING
                   RETURNING comment_id, post_id, author_id, text, created_at""",
                self._ids.next_id(),
                post_id,
                author_id,
                text,
                request_id,
            )
            if row is None:
                row = await conn.fetchrow(
                    """SELECT comment_id, post_id, author_id, text, created_at
                       FROM post.comments
                       WHERE post_id = $1 AND author_id = $2 AND request_id = $3""",
                    post_id,
                    author_id,
                    request_id,
                )
                return CommentRow.from_row(row)
            post_author = await conn.fetchval(
                """UPDATE post.posts SET comment_count = comment_count + 1 WHERE post_id = $1
                   RETURNING author_id""",
                post_id,
            )
            await self._event(
                conn,
                events_pb2.CommentCreated(
                    comment_id=row["comment_id"],
                    post_id=post_id,
                    author_id=author_id,
                    post_author_id=post_author,
                    snippet=text[:COMMENT_SNIPPET_CHARS],
                ),
                post_id=post_id,
            )
        return CommentRow.from_row(row)

    async def comment(self, post_id: int, comment_id: int) -> CommentRow | None:
        row = await self._db.primary.fetchrow(
            """SELECT comment_id, post_id, author_id, text, created_at FROM post.comments
               WHERE comment_id = $1 AND post_id = $2 AND deleted_at IS NULL""",
            comment_id,
            post_id,
        )
        return CommentRow.from_row(row) if row else None

    async def comments(self, post_id: int, after: int | None, limit: int) -> list[CommentRow]:
        rows = await self._db.primary.fetch(
            """SELECT comment_id, post_id, author_id, text, created_at FROM post.comments
               WHERE post_id = $1 AND deleted_at IS NULL
                 AND ($2::bigint IS NULL OR comment_id > $2)
               ORDER BY comment_id LIMIT $3""",
            post_id,
            after,
            limit,
        )
        return [CommentRow.from_row(r) for r in rows]

    async def delete_comment(self, post_id: int, comment_id: int) -> None:
        async with self._db.transaction() as conn:
            comment_author = await conn.fetchval(
                """UPDATE post.comments SET deleted_at = now()
                   WHERE comment_id = $1 AND post_id = $2 AND deleted_at IS NULL
                   RETURNING author_id""",
                comment_id,
                post_id,
            )
            if comment_author is not None:
                post_author = await conn.fetchval(
                    """UPDATE post.posts SET comment_count = comment_count - 1
                       WHERE post_id = $1 RETURNING author_id""",
                    post_id,
                )
                await self._event(
                    conn,
                    events_pb2.CommentDeleted(
                        comment_id=comment_id,
                        post_id=post_id,
                        author_id=comment_author,
                        post_author_id=post_author,
                    ),
                    post_id=post_id,
                )

    async def post_counts(self, user_ids: list[int]) -> dict[int, int]:
        rows = await self._db.reader().fetch(
            "SELECT user_id, post_count FROM post.author_counts WHERE user_id = ANY($1::bigint[])",
            user_ids,
        )
        found = {r["user_id"]: r["post_count"] for r in rows}
        return {u: found.get(u, 0) for u in user_ids}
