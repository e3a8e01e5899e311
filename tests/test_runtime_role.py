"""The runtime database role needs no DDL (ops review, finding 8).

`socialmesh migrate` runs as the schema owner and grants the services' role DML only;
a service started with MIGRATE_ON_START=false never migrates: it waits NOT_SERVING,
naming the missing versions, until the migrations are applied. Real embedded
PostgreSQL and Redis, a real gRPC health check.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import cli, registry
from services.kit.config import Settings
from services.kit.db import Database
from services.kit.ids import IdGenerator
from services.kit.migrations import migrate, migration_files
from services.kit.server import ServiceHost, ServiceSpec
from services.user.store import UserStore

from .conftest import Infra


@dataclass(frozen=True)
class Roles:
    """A scratch database, its owner's DSN, and a LOGIN role without any rights yet."""

    owner_dsn: str
    runtime_dsn: str
    runtime_role: str


def with_user(base: str, dbname: str, user: str | None = None, password: str = "") -> str:
    parts = urllib.parse.urlsplit(base)
    netloc = parts.netloc
    if user is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:{password}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=f"/{dbname}"))


@pytest.fixture
async def roles(infra: Infra) -> AsyncIterator[Roles]:
    suffix = uuid.uuid4().hex[:10]
    dbname, role, password = f"rt_{suffix}", f"runtime_{suffix}", f"pw-{suffix}"
    admin = await asyncpg.connect(infra.database_url)
    await admin.execute(f"CREATE DATABASE {dbname}")
    # NOCREATEDB NOCREATEROLE: like a managed database's application role.
    await admin.execute(f"CREATE ROLE {role} LOGIN NOCREATEDB NOCREATEROLE PASSWORD '{password}'")
    try:
        yield Roles(
            with_user(infra.database_url, dbname),
            with_user(infra.database_url, dbname, role, password),
            role,
        )
    finally:
        await admin.execute(f"DROP DATABASE {dbname} WITH (FORCE)")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


def test_migrate_on_start_setting() -> None:
    assert Settings.from_env("user", {}).migrate_on_start is True  # laptop default
    assert Settings.from_env("user", {"MIGRATE_ON_START": "false"}).migrate_on_start is False
    assert Settings.from_env("user", {"MIGRATE_ON_START": "0"}).migrate_on_start is False
    with pytest.raises(SystemExit, match="MIGRATE_ON_START"):
        Settings.from_env("user", {"MIGRATE_ON_START": "sometimes"})


async def test_migrate_grants_the_runtime_role_dml_and_nothing_else(
    roles: Roles, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", roles.owner_dsn)
    monkeypatch.setenv("RUNTIME_DB_ROLE", roles.runtime_role)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert await asyncio.to_thread(cli.main, ["migrate", "--services", "user"]) == 0
    out = capsys.readouterr().out
    every = [v for v, _ in migration_files(registry.get("user").build_spec().migrations_dir)]
    assert f"user: applied {every}; {roles.runtime_role} may read/write" in out, out

    # The user service's own store, connected as the runtime role, does its work.
    db = await Database.connect(roles.runtime_dsn, max_size=2, attempts=1)
    owner = await asyncpg.connect(roles.owner_dsn)
    try:
        store = UserStore(db, IdGenerator(1))
        record = await store.create_user(
            handle=f"rt{uuid.uuid4().hex[:8]}",
            email="rt@example.com",
            password_hash="x",
            display_name="Runtime",
        )
        assert await store.issue_email_verification(record.user_id, "tok-1", 60) is not None
        verified = await store.verify_email("tok-1")
        assert verified is not None and verified.email_verified
        updated = await store.update_profile(record.user_id, {"bio": "reads and writes"})
        assert updated.bio == "reads and writes"
        assert [r.user_id for r in await store.load_users([record.user_id])] == [record.user_id]
        await store.soft_delete(record.user_id)
        assert await db.primary.fetchval('SELECT count(*) FROM "user".outbox') >= 2
        await db.primary.execute('DELETE FROM "user".outbox')  # the relay prunes

        # ...but it can change no schema: no table, no schema, no drop, no truncate.
        for ddl in (
            'CREATE TABLE "user".intruder (n int)',
            "CREATE SCHEMA intruder",
            'DROP TABLE "user".activity_log',
            'ALTER TABLE "user".users ADD COLUMN intruder int',
            'TRUNCATE "user".sessions',
            'CREATE INDEX intruder ON "user".users (bio)',
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await db.primary.execute(ddl)
        rights = await owner.fetchrow(
            """SELECT has_schema_privilege($1, 'user', 'CREATE') AS create_in_schema,
                      has_database_privilege($1, current_database(), 'CREATE') AS create_db""",
            roles.runtime_role,
        )
        assert dict(rights) == {"create_in_schema": False, "create_db": False}

        # A table a later migration creates is usable at once (default privileges).
        await owner.execute('CREATE TABLE "user".later (n int)')
        await db.primary.execute('INSERT INTO "user".later VALUES (1)')
        assert await db.primary.fetchval('SELECT n FROM "user".later') == 1
    finally:
        await owner.close()
        await db.close()

    # The next rollout's Job: nothing to apply, grants re-asserted without error.
    assert await asyncio.to_thread(cli.main, ["migrate", "--services", "user"]) == 0
    assert f"user: up to date; {roles.runtime_role} may read/write" in capsys.readouterr().out


async def test_migrate_refuses_an_unknown_runtime_role(
    roles: Roles, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL", roles.owner_dsn)
    monkeypatch.delenv("RUNTIME_DB_ROLE", raising=False)
    argv = ["migrate", "--services", "graph", "--runtime-role", "nobody_like_this"]
    assert await asyncio.to_thread(cli.main, argv) == 2
    assert "'nobody_like_this' does not exist" in capsys.readouterr().err


async def health(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=2
        )
    return int(reply.status)


async def test_a_service_that_may_not_migrate_waits_not_serving_for_the_job(
    roles: Roles, infra: Infra, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="socialmesh.server")
    schema = f"svc_{uuid.uuid4().hex[:8]}"
    released, current = tmp_path / "released", tmp_path / "current"
    released.mkdir()
    current.mkdir()
    for directory in (released, current):
        (directory / "0001_marks.sql").write_text("CREATE TABLE marks (n int);")
    (current / "0002_more_marks.sql").write_text("ALTER TABLE marks ADD COLUMN m int;")
    owner = await asyncpg.connect(roles.owner_dsn)
    try:
        # The previous release's Job ran: version 1 applied and granted.
        await migrate(owner, schema, released, runtime_role=roles.runtime_role)
        spec = ServiceSpec(
            name="rtcheck",
            schema=schema,
            migrations_dir=current,
            grpc_services=(),
            register=lambda server, runtime: None,
        )
        settings = infra.settings(
            "user", {"DATABASE_URL": roles.runtime_dsn, "MIGRATE_ON_START": "false"}
        )
        host = ServiceHost(spec, settings)
        host.schema_recheck_seconds = 0.2
        starting = asyncio.create_task(host.start())
        try:
            for _ in range(100):
                if "lacks migrations" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            address = f"127.0.0.1:{host.port}"
            assert "rtcheck stays NOT_SERVING" in caplog.text
            assert "lacks migrations [2] (0002_more_marks.sql)" in caplog.text
            assert f"connected as '{roles.runtime_role}'" in caplog.text
            await asyncio.sleep(0.5)  # several re-checks: still waiting, still unready
            assert not starting.done()
            assert await health(address) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert caplog.text.count("lacks migrations") == 1  # logged once, not per check

            # The new release's Job runs: the waiting service becomes ready by itself.
            assert await migrate(owner, schema, current, runtime_role=roles.runtime_role) == [2]
            await asyncio.wait_for(starting, timeout=10)
            assert await health(address) == health_pb2.HealthCheckResponse.SERVING
            # It never migrated anything itself: the Job applied both versions.
            rows = await owner.fetch(f"SELECT version FROM {schema}.schema_migrations")
            assert sorted(r["version"] for r in rows) == [1, 2]
        finally:
            if not starting.done():
                starting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await starting
            await host.stop()
    finally:
        await owner.close()
