"""PostgreSQL storage of the media service (schema "media"); plain parameterized SQL.

Every state change commits with its typed event (outbox). Blob rows guard the
object store: uploads touch a blob's row before writing its object, and the
collector deletes an object only while holding its row locked, so a concurrent
upload of the same bytes waits and then writes the object again.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from socialmesh.media.v1 import events_pb2, media_pb2

from services.kit.db import Database
from services.kit.errors import FailedPrecondition, NotFound, PermissionDenied, Reason
from services.kit.events import Outbox
from services.kit.ids import IdGenerator

SCHEMA = "media"
PROCESSING = media_pb2.MEDIA_STATE_PROCESSING
READY = media_pb2.MEDIA_STATE_READY
FAILED = media_pb2.MEDIA_STATE_FAILED

_MEDIA_COLUMNS = """media_id, owner_id, token, media_type, content_type, declared_content_type,
    filename, description, size_bytes, sha256, state, failure_reason, width, height, blurhash,
    duration_ms, attached_at, created_at, updated_at"""


@dataclass(frozen=True)
class VariantRow:
    kind: int
    width: int
    height: int
    content_type: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class MediaRow:
    media_id: int
    owner_id: int
    token: str
    media_type: int
    content_type: str
    declared_content_type: str
    filename: str
    description: str
    size_bytes: int
    sha256: str
    state: int
    failure_reason: str
    width: int
    height: int
    blurhash: str
    duration_ms: int
    attached_at: datetime | None
    created_at: datetime
    updated_at: datetime
    variants: list[VariantRow] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: asyncpg.Record, variants: list[VariantRow]) -> MediaRow:
        values = {k: row[k] for k in cls.__dataclass_fields__ if k != "variants"}
        return cls(**values, variants=variants)


@dataclass(frozen=True)
class NewMedia:
    """An upload that passed every check, ready to be recorded."""

    owner_id: int
    media_type: int
    content_type: str
    declared_content_type: str
    filename: str
    description: str
    size_bytes: int
    sha256: str
    width: int
    height: int
    duration_ms: int
    request_id: str | None


class MediaStore:
    def __init__(self, db: Database, ids: IdGenerator) -> None:
        self._db = db
        self._ids = ids
        self._outbox = Outbox(SCHEMA, ids)

    # -- reads -------------------------------------------------------------------

    async def _load(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[MediaRow]:
        ids = [r["media_id"] for r in rows]
        variants: dict[int, list[VariantRow]] = {i: [] for i in ids}
        if ids:
            for v in await conn.fetch(
                """SELECT media_id, kind, width, height, content_type, size_bytes, sha256
                   FROM media.variants WHERE media_id = ANY($1::bigint[])
                   ORDER BY kind, content_type DESC""",
                ids,
            ):
                variants[v["media_id"]].append(
                    VariantRow(
                        v["kind"],
                        v["width"],
                        v["height"],
                        v["content_type"],
                        v["size_bytes"],
                        v["sha256"],
                    )
                )
        return [MediaRow.from_row(r, variants[r["media_id"]]) for r in rows]

    async def get_many(self, media_ids: list[int]) -> dict[int, MediaRow]:
        async with self._db.primary.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_MEDIA_COLUMNS} FROM media.media WHERE media_id = ANY($1::bigint[])",
                media_ids,
            )
            return {m.media_id: m for m in await self._load(conn, rows)}

    async def get(self, media_id: int) -> MediaRow | None:
        return (await self.get_many([media_id])).get(media_id)

    async def by_token(self, token: str) -> MediaRow | None:
        async with self._db.primary.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_MEDIA_COLUMNS} FROM media.media WHERE token = $1", token
            )
            found = await self._load(conn, rows)
            return found[0] if found else None

    async def by_request_id(self, owner_id: int, request_id: str) -> MediaRow | None:
        async with self._db.primary.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {_MEDIA_COLUMNS} FROM media.media WHERE owner_id = $1 AND request_id = $2",
                owner_id,
                request_id,
            )
            found = await self._load(conn, rows)
            return found[0] if found else None

    # -- uploads -----------------------------------------------------------------

    async def touch_blob(self, sha256: str, size_bytes: int) -> None:
        """Marks a blob in use now; call it before writing the object (see module doc)."""
        await self._db.primary.execute(
            """INSERT INTO media.blobs (sha256, size_bytes) VALUES ($1, $2)
               ON CONFLICT (sha256) DO UPDATE SET last_used_at = now()""",
            sha256,
            size_bytes,
        )

    async def create(self, new: NewMedia) -> tuple[int, bool]:
        """(media id, created); a repeated (owner, request_id) returns the first media's id."""
        async with self._db.transaction() as conn:
            media_id = self._ids.next_id()
            inserted = await conn.fetchval(
                """INSERT INTO media.media (media_id, owner_id, token, media_type, content_type,
                       declared_content_type, filename, description, size_bytes, sha256, state,
                       width, height, duration_ms, request_id)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                   ON CONFLICT (owner_id, request_id) WHERE request_id IS NOT NULL DO NOTHING
                   RETURNING media_id""",
                media_id,
                new.owner_id,
                secrets.token_urlsafe(18),
                new.media_type,
                new.content_type,
                new.declared_content_type,
                new.filename,
                new.description,
                new.size_bytes,
                new.sha256,
                PROCESSING,
                new.width,
                new.height,
                new.duration_ms,
                new.request_id,
            )
            if inserted is None:
                existing = await conn.fetchval(
                    "SELECT media_id FROM media.media WHERE owner_id = $1 AND request_id = $2",
                    new.owner_id,
                    new.request_id,
                )
                return int(existing), False
            await self._outbox.enqueue(
                conn,
                events_pb2.MediaUploaded(
                    media_id=media_id,
                    owner_id=new.owner_id,
                    media_type=new.media_type,  # type: ignore[arg-type]
                    content_type=new.content_type,
                    sha256=new.sha256,
                    size_bytes=new.size_bytes,
                ),
                aggregate_id=media_id,
            )
            return media_id, True

    # -- owner changes -----------------------------------------------------------

    async def _owned(
        self, conn: asyncpg.Connection, media_id: int, owner_id: int
    ) -> asyncpg.Record:
        row = await conn.fetchrow(
            "SELECT owner_id, attached_at FROM media.media WHERE media_id = $1 FOR UPDATE",
            media_id,
        )
        if row is None:
            raise NotFound(f"media {media_id} not found")
        if row["owner_id"] != owner_id:
            raise PermissionDenied(
                "only the uploader may change or delete this media", reason=Reason.NOT_OWNER
            )
        return row

    async def update_description(self, media_id: int, owner_id: int, description: str) -> None:
        async with self._db.transaction() as conn:
            await self._owned(conn, media_id, owner_id)
            await conn.execute(
                "UPDATE media.media SET description = $2, updated_at = now() WHERE media_id = $1",
                media_id,
                description,
            )

    async def delete(self, media_id: int, owner_id: int) -> None:
        """Deletes unattached media (its blobs go with the next collection)."""
        async with self._db.transaction() as conn:
            row = await self._owned(conn, media_id, owner_id)
            if row["attached_at"] is not None:
                raise FailedPrecondition(
                    f"media {media_id} is attached to a post, message or profile",
                    reason=Reason.MEDIA_IN_USE,
                )
            await conn.execute("DELETE FROM media.media WHERE media_id = $1", media_id)
            await self._outbox.enqueue(
                conn,
                events_pb2.MediaDeleted(media_id=media_id, owner_id=owner_id),
                aggregate_id=media_id,
            )

    async def attach(self, media_ids: list[int], owner_id: int) -> int:
        """Marks the owner's media as in use (never collected, no longer deletable)."""
        status = await self._db.primary.execute(
            """UPDATE media.media SET attached_at = now(), updated_at = now()
               WHERE media_id = ANY($1::bigint[]) AND owner_id = $2 AND attached_at IS NULL""",
            media_ids,
            owner_id,
        )
        return int(status.split()[-1])

    # -- processing ----------------------------------------------------------------

    async def begin_attempt(self, media_id: int) -> int | None:
        """Counts a processing attempt; None if the media is gone or no longer PROCESSING."""
        value = await self._db.primary.fetchval(
            """UPDATE media.media SET attempts = attempts + 1
               WHERE media_id = $1 AND state = $2 RETURNING attempts""",
            media_id,
            PROCESSING,
        )
        return None if value is None else int(value)

    async def finish(
        self,
        media_id: int,
        *,
        state: int,
        failure_reason: str = "",
        width: int = 0,
        height: int = 0,
        blurhash: str = "",
        variants: list[VariantRow] | None = None,
    ) -> bool:
        """PROCESSING -> READY/FAILED with its variants and MediaProcessed; False if not due."""
        async with self._db.transaction() as conn:
            owner_id = await conn.fetchval(
                """UPDATE media.media SET state = $2, failure_reason = $3,
                       width = CASE WHEN $4 > 0 THEN $4 ELSE width END,
                       height = CASE WHEN $5 > 0 THEN $5 ELSE height END,
                       blurhash = $6, updated_at = now()
                   WHERE media_id = $1 AND state = $7 RETURNING owner_id""",
                media_id,
                state,
                failure_reason,
                width,
                height,
                blurhash,
                PROCESSING,
            )
            if owner_id is None:
                return False
            for v in variants or []:
                await conn.execute(
                    """INSERT INTO media.variants
                           (media_id, kind, width, height, content_type, size_bytes, sha256)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)
                       ON CONFLICT (media_id, kind, content_type) DO NOTHING""",
                    media_id,
                    v.kind,
                    v.width,
                    v.height,
                    v.content_type,
                    v.size_bytes,
                    v.sha256,
                )
            await self._outbox.enqueue(
                conn,
                events_pb2.MediaProcessed(
                    media_id=media_id,
                    owner_id=owner_id,
                    state=state,  # type: ignore[arg-type]
                    failure_reason=failure_reason,
                ),
                aggregate_id=media_id,
            )
            return True

    # -- garbage collection -------------------------------------------------------------

    async def collect_unattached(self, older_than_seconds: float, limit: int = 500) -> int:
        """Deletes unattached media older than the TTL, each with its MediaDeleted."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                """DELETE FROM media.media WHERE media_id = ANY(ARRAY(
                       SELECT media_id FROM media.media
                       WHERE attached_at IS NULL
                         AND created_at < now() - make_interval(secs => $1)
                       ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))
                   RETURNING media_id, owner_id""",
                older_than_seconds,
                limit,
            )
            for row in rows:
                await self._outbox.enqueue(
                    conn,
                    events_pb2.MediaDeleted(media_id=row["media_id"], owner_id=row["owner_id"]),
                    aggregate_id=row["media_id"],
                )
            return len(rows)

    async def unreferenced_blobs(
        self, conn: asyncpg.Connection, older_than_seconds: float, limit: int
    ) -> list[str]:
        """Blobs no media or variant uses, untouched for the grace period, locked (in `conn`)."""
        rows = await conn.fetch(
            """SELECT b.sha256 FROM media.blobs b
               WHERE b.last_used_at < now() - make_interval(secs => $1)
                 AND NOT EXISTS (SELECT 1 FROM media.media m WHERE m.sha256 = b.sha256)
                 AND NOT EXISTS (SELECT 1 FROM media.variants v WHERE v.sha256 = b.sha256)
               LIMIT $2 FOR UPDATE SKIP LOCKED""",
            older_than_seconds,
            limit,
        )
        return [r["sha256"] for r in rows]

    @property
    def db(self) -> Database:
        return self._db
