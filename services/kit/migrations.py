"""Versioned SQL migrations per service, each service in its own schema.

Files are `services/<name>/migrations/NNNN_description.sql`. They are applied in
order, each in its own transaction, under a PostgreSQL advisory lock so several
replicas starting at once apply each file exactly once. The kit also owns the
outbox and consumed-events tables every service gets, so no service copies its DDL.

Who runs them: `socialmesh up` lets each service migrate at start. In a cluster the
`socialmesh migrate` Job does, as the role that owns the schemas, and grants the
services' runtime role DML only (`grant_runtime_access`); the services run with
MIGRATE_ON_START=false and only check `pending_migrations` (k8s/README.md).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import asyncpg

_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    event_id     BIGINT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    aggregate_id BIGINT NOT NULL,
    envelope     BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
-- Outboxes from before typed events (JSON payloads) become envelopes; their
-- published rows are history and unpublished ones could not be decoded.
ALTER TABLE {schema}.outbox ADD COLUMN IF NOT EXISTS event_type TEXT;
ALTER TABLE {schema}.outbox ADD COLUMN IF NOT EXISTS envelope BYTEA;
DELETE FROM {schema}.outbox WHERE envelope IS NULL;
ALTER TABLE {schema}.outbox DROP COLUMN IF EXISTS topic;
ALTER TABLE {schema}.outbox DROP COLUMN IF EXISTS payload;
ALTER TABLE {schema}.outbox ALTER COLUMN event_type SET NOT NULL;
ALTER TABLE {schema}.outbox ALTER COLUMN envelope SET NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_unpublished ON {schema}.outbox (event_id)
    WHERE published_at IS NULL;
-- The relay prunes published rows by age.
CREATE INDEX IF NOT EXISTS outbox_published ON {schema}.outbox (published_at)
    WHERE published_at IS NOT NULL;
-- Consumer idempotency (`consumers.claim_event`): one row per handled event
-- and group, written in the handler's own transaction.
CREATE TABLE IF NOT EXISTS {schema}.consumed_events (
    consumer_group TEXT NOT NULL,
    event_id       BIGINT NOT NULL,
    consumed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
CREATE INDEX IF NOT EXISTS consumed_events_age ON {schema}.consumed_events (consumed_at);
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def migration_files(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append((int(match.group(1)), path))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {directory}")
    return found


def _lock_key(schema: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], "big", signed=True
    )


async def pending_migrations(conn: asyncpg.Connection, schema: str, directory: Path) -> list[int]:
    """Versions in `directory` that the schema has not applied yet (all of them when the
    schema or its bookkeeping table does not exist). Needs only SELECT; a role without
    USAGE on the schema gets asyncpg.InsufficientPrivilegeError."""
    known = [version for version, _ in migration_files(directory)]
    try:
        rows = await conn.fetch(f"SELECT version FROM {quote_ident(schema)}.schema_migrations")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return known
    done = {r["version"] for r in rows}
    return [v for v in known if v not in done]


#: What the runtime role may do in a service's schema: read and write rows, nothing else.
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
SEQUENCE_PRIVILEGES = "USAGE, SELECT"


async def grant_runtime_access(conn: asyncpg.Connection, schema: str, role: str) -> None:
    """Lets `role` use the schema's tables (DML) and sequences, including tables and
    sequences the current role (the migrator) creates later (default privileges).
    Grants no CREATE, no ownership, no TRUNCATE/REFERENCES/TRIGGER. Idempotent."""
    if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
        raise ValueError(f"runtime database role {role!r} does not exist (create it first)")
    s, r = quote_ident(schema), quote_ident(role)
    async with conn.transaction():
        await conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {r}")
        await conn.execute(f"GRANT {TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {s} TO {r}")
        await conn.execute(f"GRANT {SEQUENCE_PRIVILEGES} ON ALL SEQUENCES IN SCHEMA {s} TO {r}")
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT {TABLE_PRIVILEGES} ON TABLES TO {r}"
        )
        await conn.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT {SEQUENCE_PRIVILEGES} "
            f"ON SEQUENCES TO {r}"
        )


async def migrate(
    conn: asyncpg.Connection, schema: str, directory: Path, *, runtime_role: str | None = None
) -> list[int]:
    """Applies pending migrations; returns the versions applied by this call.

    With `runtime_role`, also grants it DML on the schema (`grant_runtime_access`),
    under the same lock so concurrent migrators never race on the catalog.
    """
    ident = quote_ident(schema)
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(schema))
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ident}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {ident}.schema_migrations (
                    version INTEGER PRIMARY KEY,
                    name TEXT NOT NULL,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        await conn.execute(OUTBOX_DDL.format(schema=ident))
        done = {
            r["version"] for r in await conn.fetch(f"SELECT version FROM {ident}.schema_migrations")
        }
        for version, path in migration_files(directory):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {ident}, public")
                await conn.execute(path.read_text())
                await conn.execute(
                    f"INSERT INTO {ident}.schema_migrations (version, name) VALUES ($1, $2)",
                    version,
                    path.name,
                )
            applied_now.append(version)
        if runtime_role:
            await grant_runtime_access(conn, schema, runtime_role)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(schema))
    return applied_now
