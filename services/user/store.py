"""PostgreSQL storage of the user service (schema "user"); plain parameterized SQL."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from socialmesh.user.v1 import events_pb2

from services.kit.db import Database
from services.kit.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    Reason,
    Unauthenticated,
)
from services.kit.events import Outbox
from services.kit.ids import IdGenerator

SCHEMA = "user"
_USER_COLUMNS = (
    "user_id, handle, email, display_name, bio, avatar_url, is_private, created_at, updated_at,"
    " avatar_media_id, email_verified_at IS NOT NULL AS email_verified"
)


@dataclass(frozen=True)
class UserRecord:
    """A live account's stored profile (what the cache holds, serialized)."""

    user_id: int
    handle: str
    email: str
    display_name: str
    bio: str
    avatar_url: str
    is_private: bool
    created_at: datetime
    updated_at: datetime
    #: The avatar's media id (0: none); avatar_url is its 320 px variant.
    avatar_media_id: int = 0
    #: Whether `email` was verified (cached records from before 0006 lack it: False).
    email_verified: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UserRecord:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserRecord:
        data = json.loads(raw)
        data["created_at"] = datetime.fromisoformat(data["created_at"])
        data["updated_at"] = datetime.fromisoformat(data["updated_at"])
        return cls(**data)


class SessionRevoked(Unauthenticated):
    """A rotated refresh token came back: the session is now revoked."""

    def __init__(self, session_id: int) -> None:
        super().__init__(
            "refresh token reuse detected; session revoked: sign in again",
            reason=Reason.REFRESH_TOKEN_REUSED,
        )
        self.session_id = session_id


@dataclass(frozen=True)
class Session:
    user_id: int
    session_id: int


@dataclass(frozen=True)
class SessionInfo:
    """A live session as its owner sees it in the session list."""

    session_id: int
    created_at: datetime
    last_refreshed_at: datetime | None


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class UserStore:
    """All SQL of the user service. Every write that others care about enqueues an event."""

    def __init__(self, db: Database, ids: IdGenerator) -> None:
        self._db = db
        self._ids = ids
        self._outbox = Outbox(SCHEMA, ids)

    async def create_user(
        self, *, handle: str, email: str, password_hash: str, display_name: str
    ) -> UserRecord:
        user_id = self._ids.next_id()
        try:
            async with self._db.transaction() as conn:
                row = await conn.fetchrow(
                    f"""INSERT INTO "user".users
                            (user_id, handle, email, password_hash, display_name)
                        VALUES ($1, $2, $3, $4, $5) RETURNING {_USER_COLUMNS}""",
                    user_id,
                    handle,
                    email,
                    password_hash,
                    display_name,
                )
                await self._log(conn, user_id, "user.created", {"handle": handle})
                await self._outbox.enqueue(
                    conn,
                    events_pb2.UserCreated(user_id=user_id, handle=handle),
                    aggregate_id=user_id,
                )
        except asyncpg.UniqueViolationError as exc:
            # Only handles are unique (public anyway); emails are not (M4, 0002).
            raise AlreadyExists(
                f"handle '{handle}' is taken", field="handle", reason=Reason.HANDLE_TAKEN
            ) from exc
        return UserRecord.from_row(row)

    async def issue_email_verification(
        self, user_id: int, token: str, ttl_seconds: int
    ) -> str | None:
        """Stores a new verification link's token (its SHA-256) for the account's current
        address, replacing the account's earlier links. Returns that address, or None when
        the account is gone or its address is already verified."""
        async with self._db.transaction() as conn:
            email = await conn.fetchval(
                """SELECT email FROM "user".users
                   WHERE user_id = $1 AND deleted_at IS NULL AND email_verified_at IS NULL
                   FOR UPDATE""",
                user_id,
            )
            if email is None:
                return None
            await conn.execute('DELETE FROM "user".email_verifications WHERE user_id = $1', user_id)
            await conn.execute(
                """INSERT INTO "user".email_verifications (token_hash, user_id, email, expires_at)
                   VALUES ($1, $2, $3, $4)""",
                hash_refresh_token(token),
                user_id,
                email,
                datetime.now(UTC) + timedelta(seconds=ttl_seconds),
            )
        return str(email)

    async def verify_email(self, token: str) -> UserRecord | None:
        """Spends a verification token: the address it was mailed to becomes the account's
        verified address. None (nothing verified) when the token is unknown, expired or
        used, or the account is gone or names another address by now.

        FailedPrecondition, with the token left unspent, when another live account has
        already verified the same address (one verified account per address).
        """
        async with self._db.transaction() as conn:
            claim = await conn.fetchrow(
                """UPDATE "user".email_verifications SET used_at = now()
                   WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
                   RETURNING user_id, email""",
                hash_refresh_token(token),
            )
            if claim is None:
                return None
            try:
                row = await conn.fetchrow(
                    f"""UPDATE "user".users
                        SET email_verified_at = coalesce(email_verified_at, now())
                        WHERE user_id = $1 AND email = $2 AND deleted_at IS NULL
                        RETURNING {_USER_COLUMNS}""",
                    claim["user_id"],
                    claim["email"],
                )
            except asyncpg.UniqueViolationError as exc:  # rolls the claim back too
                raise FailedPrecondition(
                    "this address is already verified on another account; sign in to that one",
                    reason=Reason.EMAIL_VERIFIED_ELSEWHERE,
                ) from exc
            if row is None:
                return None
            await self._log(conn, claim["user_id"], "email.verified", {"email": claim["email"]})
        return UserRecord.from_row(row)

    async def email_in_use(self, email: str) -> bool:
        """Whether an account (live or deleted) already names this address."""
        found = await self._db.primary.fetchval(
            'SELECT 1 FROM "user".users WHERE lower(email) = lower($1) LIMIT 1', email
        )
        return found is not None

    async def load_users(self, user_ids: list[int]) -> list[UserRecord]:
        """Live accounts among the ids, one query whatever the batch size."""
        rows = await self._db.reader().fetch(
            f"""SELECT {_USER_COLUMNS} FROM "user".users
                WHERE user_id = ANY($1::bigint[]) AND deleted_at IS NULL""",
            user_ids,
        )
        return [UserRecord.from_row(r) for r in rows]

    async def export_account_states(
        self, after_user_id: int | None, limit: int
    ) -> list[tuple[int, bool, bool]]:
        """(user_id, is_private, deleted) of every account, deleted ones included, by id.

        From the primary: a replica could lag behind the events the reader's copy
        has already seen (docs/search.md, "Back-fill").
        """
        rows = await self._db.primary.fetch(
            """SELECT user_id, is_private, deleted_at IS NOT NULL AS deleted FROM "user".users
               WHERE user_id > $1 ORDER BY user_id LIMIT $2""",
            after_user_id or 0,
            limit,
        )
        return [(r["user_id"], r["is_private"], r["deleted"]) for r in rows]

    async def find_by_handles(self, handles: list[str]) -> list[UserRecord]:
        rows = await self._db.reader().fetch(
            f"""SELECT {_USER_COLUMNS} FROM "user".users
                WHERE lower(handle) = ANY($1::text[]) AND deleted_at IS NULL""",
            [h.lower() for h in handles],
        )
        return [UserRecord.from_row(r) for r in rows]

    async def credentials(self, handle: str) -> tuple[int, str] | None:
        row = await self._db.primary.fetchrow(
            """SELECT user_id, password_hash FROM "user".users
               WHERE lower(handle) = lower($1) AND deleted_at IS NULL""",
            handle,
        )
        return (row["user_id"], row["password_hash"]) if row else None

    async def replace_password_hash(self, user_id: int, password_hash: str) -> None:
        await self._db.primary.execute(
            'UPDATE "user".users SET password_hash = $2 WHERE user_id = $1', user_id, password_hash
        )

    async def update_profile(self, user_id: int, changes: dict[str, Any]) -> UserRecord:
        """Applies allow-listed column changes, logs them and emits `user.updated`."""
        assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(changes, start=2))
        async with self._db.transaction() as conn:
            before = await conn.fetchrow(
                f"""SELECT {_USER_COLUMNS} FROM "user".users
                    WHERE user_id = $1 AND deleted_at IS NULL FOR UPDATE""",
                user_id,
            )
            if before is None:
                raise NotFound(f"user {user_id} not found", resource="user", resource_id=user_id)
            row = await conn.fetchrow(
                f"""UPDATE "user".users SET {assignments}, updated_at = now()
                    WHERE user_id = $1 RETURNING {_USER_COLUMNS}""",
                user_id,
                *changes.values(),
            )
            diff = {
                col: {"from": before[col], "to": row[col]}
                for col in changes
                if before[col] != row[col]
            }
            await self._log(conn, user_id, "profile.updated", diff)
            await self._outbox.enqueue(
                conn,
                events_pb2.UserUpdated(
                    user_id=user_id, changed_fields=sorted(diff), is_private=row["is_private"]
                ),
                aggregate_id=user_id,
            )
        return UserRecord.from_row(row)

    async def soft_delete(self, user_id: int) -> None:
        async with self._db.transaction() as conn:
            deleted = await conn.fetchval(
                """UPDATE "user".users SET deleted_at = now(), updated_at = now()
                   WHERE user_id = $1 AND deleted_at IS NULL RETURNING user_id""",
                user_id,
            )
            if deleted is None:
                raise NotFound(f"user {user_id} not found", resource="user", resource_id=user_id)
            await conn.execute(
                """UPDATE "user".sessions SET revoked_at = now(), revoke_reason = 'account deleted'
                   WHERE user_id = $1 AND revoked_at IS NULL""",
                user_id,
            )
            await self._log(conn, user_id, "user.deleted", {})
            await self._outbox.enqueue(
                conn, events_pb2.UserDeleted(user_id=user_id), aggregate_id=user_id
            )

    async def open_session(self, user_id: int, refresh_token: str, ttl_seconds: int) -> int:
        session_id = self._ids.next_id()
        async with self._db.transaction() as conn:
            await conn.execute(
                'INSERT INTO "user".sessions (session_id, user_id) VALUES ($1, $2)',
                session_id,
                user_id,
            )
            await self._insert_refresh(conn, session_id, refresh_token, ttl_seconds)
        return session_id

    async def rotate_refresh_token(
        self, presented: str, replacement: str, ttl_seconds: int, *, grace_seconds: float = 0
    ) -> Session:
        """Retires `presented` and issues `replacement` in the same session.

        Presenting a token that was already rotated means it leaked (or a client
        raced itself): the whole session is revoked (OAuth 2.0 BCP reuse detection).
        Except within `grace_seconds` of its rotation, while the token it was replaced
        by is still the live one and the caller presents that same replacement (the
        servicer derives it from the presented token): two tabs refreshing at once
        both get the one new token, and the session lives on.
        """
        revoked_for_reuse = False
        successor = hash_refresh_token(replacement)
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """SELECT t.session_id, t.expires_at, t.rotated_at, t.replaced_by, s.user_id,
                          s.revoked_at, u.deleted_at, now() AS now
                   FROM "user".refresh_tokens t
                   JOIN "user".sessions s USING (session_id)
                   JOIN "user".users u ON u.user_id = s.user_id
                   WHERE t.token_hash = $1
                   FOR UPDATE OF t, s""",
                hash_refresh_token(presented),
            )
            if row is None:
                raise Unauthenticated(
                    "unknown refresh token: sign in again", reason=Reason.REFRESH_TOKEN_INVALID
                )
            if row["revoked_at"] is not None or row["deleted_at"] is not None:
                raise Unauthenticated(
                    "the session ended (signed out or revoked): sign in again",
                    reason=Reason.SESSION_ENDED,
                )
            if row["rotated_at"] is not None:
                if (
                    row["now"] - row["rotated_at"] <= timedelta(seconds=grace_seconds)
                    and row["replaced_by"] == successor
                    and await conn.fetchval(
                        """SELECT 1 FROM "user".refresh_tokens WHERE token_hash = $1
                           AND rotated_at IS NULL AND expires_at > now()""",
                        successor,
                    )
                ):
                    return Session(user_id=row["user_id"], session_id=row["session_id"])
                await conn.execute(
                    """UPDATE "user".sessions SET revoked_at = now(),
                              revoke_reason = 'refresh token reuse'
                       WHERE session_id = $1""",
                    row["session_id"],
                )
                await self._outbox.enqueue(
                    conn,
                    events_pb2.SessionRevoked(user_id=row["user_id"], session_id=row["session_id"]),
                    aggregate_id=row["user_id"],
                )
                revoked_for_reuse = True
            elif row["expires_at"] < row["now"]:
                raise Unauthenticated(
                    "refresh token expired: sign in again", reason=Reason.REFRESH_TOKEN_EXPIRED
                )
            else:
                await conn.execute(
                    """UPDATE "user".refresh_tokens SET rotated_at = now(), replaced_by = $2
                       WHERE token_hash = $1""",
                    hash_refresh_token(presented),
                    successor,
                )
                await conn.execute(
                    'UPDATE "user".sessions SET last_refreshed_at = now() WHERE session_id = $1',
                    row["session_id"],
                )
                await self._insert_refresh(conn, row["session_id"], replacement, ttl_seconds)
        if revoked_for_reuse:  # raised after commit so the revocation sticks
            raise SessionRevoked(row["session_id"])
        return Session(user_id=row["user_id"], session_id=row["session_id"])

    async def list_sessions(self, user_id: int, limit: int = 100) -> list[SessionInfo]:
        """The account's live sessions (not revoked, holding an unexpired refresh token),
        newest first."""
        rows = await self._db.primary.fetch(
            """SELECT s.session_id, s.created_at, s.last_refreshed_at FROM "user".sessions s
               WHERE s.user_id = $1 AND s.revoked_at IS NULL AND EXISTS (
                   SELECT 1 FROM "user".refresh_tokens t WHERE t.session_id = s.session_id
                   AND t.rotated_at IS NULL AND t.expires_at > now())
               ORDER BY s.created_at DESC, s.session_id DESC LIMIT $2""",
            user_id,
            limit,
        )
        return [SessionInfo(r["session_id"], r["created_at"], r["last_refreshed_at"]) for r in rows]

    async def _revoke_sessions(
        self, conn: asyncpg.Connection, user_id: int, *, keep: int | None, reason: str
    ) -> list[int]:
        """Ends every live session of the account but `keep`, with their events."""
        ended = await conn.fetch(
            """UPDATE "user".sessions SET revoked_at = now(), revoke_reason = $3
               WHERE user_id = $1 AND revoked_at IS NULL AND session_id <> $2
               RETURNING session_id""",
            user_id,
            keep or 0,
            reason,
        )
        for row in ended:
            await self._outbox.enqueue(
                conn,
                events_pb2.SessionRevoked(user_id=user_id, session_id=row["session_id"]),
                aggregate_id=user_id,
            )
        return [r["session_id"] for r in ended]

    async def revoke_all_sessions(self, user_id: int, *, keep: int | None = None) -> list[int]:
        """Sign out everywhere (but `keep`): the ids of the sessions that ended."""
        async with self._db.transaction() as conn:
            ended = await self._revoke_sessions(conn, user_id, keep=keep, reason="signed out")
            await self._log(conn, user_id, "sessions.revoked", {"sessions": len(ended)})
        return ended

    async def password_hash(self, user_id: int) -> str | None:
        return await self._db.primary.fetchval(
            'SELECT password_hash FROM "user".users WHERE user_id = $1 AND deleted_at IS NULL',
            user_id,
        )

    async def change_password(
        self, user_id: int, password_hash: str, *, keep_session: int | None
    ) -> list[int]:
        """New password hash and every other session ended, in one transaction."""
        async with self._db.transaction() as conn:
            changed = await conn.fetchval(
                """UPDATE "user".users SET password_hash = $2
                   WHERE user_id = $1 AND deleted_at IS NULL RETURNING user_id""",
                user_id,
                password_hash,
            )
            if changed is None:
                raise NotFound(f"user {user_id} not found", resource="user", resource_id=user_id)
            await conn.execute(
                'DELETE FROM "user".password_resets WHERE user_id = $1 AND used_at IS NULL',
                user_id,
            )
            ended = await self._revoke_sessions(
                conn, user_id, keep=keep_session, reason="password changed"
            )
            await self._log(conn, user_id, "password.changed", {"sessions_ended": len(ended)})
        return ended

    async def find_for_reset(self, email: str) -> list[tuple[int, str, str]]:
        """(user_id, handle, email) of the live accounts naming this address."""
        rows = await self._db.primary.fetch(
            """SELECT user_id, handle, email FROM "user".users
               WHERE lower(email) = lower($1) AND deleted_at IS NULL
               ORDER BY user_id LIMIT 10""",
            email,
        )
        return [(r["user_id"], r["handle"], r["email"]) for r in rows]

    async def issue_password_reset(self, user_id: int, token: str, ttl_seconds: int) -> None:
        """Stores a reset link's token (its SHA-256), replacing the account's earlier ones."""
        async with self._db.transaction() as conn:
            await conn.execute('DELETE FROM "user".password_resets WHERE user_id = $1', user_id)
            await conn.execute(
                """INSERT INTO "user".password_resets (token_hash, user_id, expires_at)
                   VALUES ($1, $2, $3)""",
                hash_refresh_token(token),
                user_id,
                datetime.now(UTC) + timedelta(seconds=ttl_seconds),
            )

    async def reset_token_live(self, token: str) -> bool:
        """Whether a reset token could be spent now (checked again when it is spent)."""
        found = await self._db.primary.fetchval(
            """SELECT 1 FROM "user".password_resets
               WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()""",
            hash_refresh_token(token),
        )
        return found is not None

    async def reset_password(self, token: str, password_hash: str) -> tuple[int, list[int]] | None:
        """Spends a reset token: the new password, and every session of the account
        ended, in one transaction. None when the token is unknown, expired or used."""
        async with self._db.transaction() as conn:
            user_id = await conn.fetchval(
                """UPDATE "user".password_resets r SET used_at = now()
                   FROM "user".users u
                   WHERE r.token_hash = $1 AND r.used_at IS NULL AND r.expires_at > now()
                     AND u.user_id = r.user_id AND u.deleted_at IS NULL
                   RETURNING r.user_id""",
                hash_refresh_token(token),
            )
            if user_id is None:
                return None
            await conn.execute(
                'UPDATE "user".users SET password_hash = $2 WHERE user_id = $1',
                user_id,
                password_hash,
            )
            ended = await self._revoke_sessions(conn, user_id, keep=None, reason="password reset")
            await self._log(conn, user_id, "password.reset", {"sessions_ended": len(ended)})
        return user_id, ended

    async def change_email(self, user_id: int, email: str) -> tuple[UserRecord, str]:
        """The new address, unverified until its owner follows the link mailed to it.
        Returns the record and the address it replaced."""
        async with self._db.transaction() as conn:
            before = await conn.fetchval(
                """SELECT email FROM "user".users
                   WHERE user_id = $1 AND deleted_at IS NULL FOR UPDATE""",
                user_id,
            )
            if before is None:
                raise NotFound(f"user {user_id} not found", resource="user", resource_id=user_id)
            row = await conn.fetchrow(
                f"""UPDATE "user".users SET email = $2, email_verified_at = NULL,
                           updated_at = now()
                    WHERE user_id = $1 RETURNING {_USER_COLUMNS}""",
                user_id,
                email,
            )
            await conn.execute('DELETE FROM "user".email_verifications WHERE user_id = $1', user_id)
            await self._log(conn, user_id, "email.changed", {"from": before, "to": email})
            await self._outbox.enqueue(
                conn,
                events_pb2.UserUpdated(
                    user_id=user_id, changed_fields=["email"], is_private=row["is_private"]
                ),
                aggregate_id=user_id,
            )
        return UserRecord.from_row(row), str(before)

    async def revoke_session(self, user_id: int, session_id: int) -> bool:
        """Logout: ends one session of the user; False if it was already over."""
        async with self._db.transaction() as conn:
            ended = await conn.fetchval(
                """UPDATE "user".sessions SET revoked_at = now(), revoke_reason = 'logout'
                   WHERE session_id = $1 AND user_id = $2 AND revoked_at IS NULL
                   RETURNING session_id""",
                session_id,
                user_id,
            )
            if ended is not None:
                await self._outbox.enqueue(
                    conn,
                    events_pb2.SessionRevoked(user_id=user_id, session_id=session_id),
                    aggregate_id=user_id,
                )
        return ended is not None

    async def _insert_refresh(
        self, conn: asyncpg.Connection, session_id: int, token: str, ttl_seconds: int
    ) -> None:
        await conn.execute(
            """INSERT INTO "user".refresh_tokens (token_hash, session_id, expires_at)
               VALUES ($1, $2, $3)""",
            hash_refresh_token(token),
            session_id,
            datetime.now(UTC) + timedelta(seconds=ttl_seconds),
        )

    async def _log(
        self, conn: asyncpg.Connection, user_id: int, action: str, changes: dict[str, Any]
    ) -> None:
        await conn.execute(
            """INSERT INTO "user".activity_log (activity_id, user_id, action, changes)
               VALUES ($1, $2, $3, $4)""",
            self._ids.next_id(),
            user_id,
            action,
            json.loads(json.dumps(changes, default=str)),
        )
