"""Server bootstrap shared by every service.

Starts a grpc.aio server with the kit's interceptor, health and reflection,
reports NOT_SERVING until PostgreSQL and Redis answer and migrations are
applied, watches those dependencies while running, and on SIGTERM flips health
to NOT_SERVING (so load balancers stop routing) before draining in-flight calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from .auth import (
    MAX_SERVICE_TOKEN_LIFETIME,
    CallerVerifier,
    Revocations,
    ServiceCredentials,
    ServiceTokenVerifier,
    TokenVerifier,
    key_id,
    load_private_key,
    load_public_keys,
    load_service_public_keys,
    service_methods_access,
)
from .channels import open_channel
from .config import Settings
from .consumers import EventHandlers, Start, StreamConsumer, consumers_for
from .db import Database
from .errors import Unavailable
from .events import OutboxRelay
from .ids import IdGenerator, lease_worker_id, renew_worker_id
from .interceptors import ServiceInterceptor
from .logs import setup_logging
from .metrics import MetricsSampler, serve_metrics
from .migrations import migrate, migration_files, pending_migrations
from .pagination import PageTokens
from .redis import connect_redis
from .tasks import cancel_and_wait
from .telemetry import setup_tracing

log = logging.getLogger("socialmesh.server")
T = TypeVar("T")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS = "liveness"


class Runtime:
    """Dependencies a servicer uses; filled in once they are reachable."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Replaced by a leased worker id once Redis is reachable (see ServiceHost).
        self.ids = IdGenerator(max(settings.worker_id, 0))
        self._db: Database | None = None
        self._redis: aioredis.Redis | None = None
        self.relay: OutboxRelay | None = None
        #: This service's own credential for internal methods of its peers.
        self.service_credentials = build_service_credentials(settings)
        self.revocations: Revocations | None = None
        #: Every consumer the servicers run (metrics report their lag).
        self.consumers: list[StreamConsumer] = []
        secret = settings.page_token_secret.encode()
        if not secret:
            log.warning("PAGE_TOKEN_SECRET unset: page tokens only work on this instance")
            secret = secrets.token_bytes(32)
        self.page_tokens = PageTokens(secret)

    @property
    def db(self) -> Database:
        if self._db is None:
            raise Unavailable("service is starting: database not connected yet")
        return self._db

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise Unavailable("service is starting: redis not connected yet")
        return self._redis

    @property
    def ready(self) -> bool:
        return self._db is not None and self._redis is not None

    def attach(self, db: Database, redis: aioredis.Redis) -> None:
        self._db, self._redis = db, redis


@dataclass
class ServiceSpec:
    """How the kit runs one service."""

    name: str
    schema: str
    migrations_dir: Path
    #: Served gRPC services; who may call each method comes from their contract.
    grpc_services: tuple[str, ...]
    #: Adds the servicers to the server (called before it starts); returns the
    #: servicer it added, if one, so the host can hand it out (`ServiceHost.servicer`).
    register: Callable[[grpc.aio.Server, Runtime], ServicerBase | None]
    #: Runs once dependencies are connected and migrated (start caches, consumers...).
    on_ready: Callable[[Runtime], Awaitable[None]] | None = None
    #: Runs while draining, before pools close.
    on_stop: Callable[[Runtime], Awaitable[None]] | None = None
    #: Runs when draining starts, before in-flight calls are awaited: long-lived
    #: streams tell their clients to reconnect elsewhere and end.
    on_drain: Callable[[Runtime], Awaitable[None]] | None = None
    #: Serves streams that must outlive the connection-age cut (chat): no max age.
    long_lived_streams: bool = False


class ServicerBase:
    """What every servicer shares: the runtime, readiness, peers, outbox wake-ups.

    Servicers are registered before the server starts (gRPC requires it) but
    their stores and peers exist only once dependencies are up: `on_ready`
    builds them, `ready()` turns "not yet" into UNAVAILABLE instead of a crash.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._peers: list[grpc.aio.Channel] = []
        self._consumers: list[StreamConsumer] = []

    def peer(self, service: str) -> grpc.aio.Channel:
        """A channel to another service (closed on shutdown).

        Calls on it carry the signed-in user's token, or this service's own
        credential where the method is internal (see `OutboundCall`).
        """
        channel = open_channel(
            self._rt.settings.service_addresses[service],
            service_token=self._rt.service_credentials.token,
        )
        self._peers.append(channel)
        return channel

    @staticmethod
    def ready(value: T | None) -> T:
        if value is None:
            raise Unavailable("service is starting: dependencies not connected yet")
        return value

    def poke_relay(self) -> None:
        """Publishes just-committed outbox events now rather than at the next poll."""
        if self._rt.relay is not None:
            self._rt.relay.poke()

    async def on_ready(self) -> None:
        """Builds stores, caches and peers; dependencies are connected by now."""

    async def consume(self, group: str, handlers: EventHandlers, *, start: Start) -> None:
        """Runs `handlers` as consumer group `group` on every stream they listen to.

        `start` is where a new group begins (see `Start`); consumers stop with
        the servicer.
        """
        for consumer in consumers_for(self._rt.redis, group, handlers, start=start):
            await consumer.ensure_group()
            consumer.start()
            self._consumers.append(consumer)
            self._rt.consumers.append(consumer)

    async def on_drain(self) -> None:
        """Draining has begun (health is NOT_SERVING): end long-lived streams politely."""

    async def on_stop(self) -> None:
        for consumer in self._consumers:
            await consumer.stop()
            if consumer in self._rt.consumers:
                self._rt.consumers.remove(consumer)
        self._consumers.clear()
        for channel in self._peers:
            await channel.close(grace=None)
        self._peers.clear()


def servicer_spec(
    *,
    name: str,
    grpc_service: str,
    servicer: Callable[[Runtime], ServicerBase],
    add_to_server: Callable[[Any, grpc.aio.Server], None],
    migrations_dir: Path,
    long_lived_streams: bool = False,
) -> ServiceSpec:
    """The usual ServiceSpec: one servicer, readied and stopped with the host."""
    holder: list[ServicerBase] = []

    def register(server: grpc.aio.Server, runtime: Runtime) -> ServicerBase:
        holder.append(servicer(runtime))
        add_to_server(holder[0], server)
        return holder[0]

    async def on_ready(runtime: Runtime) -> None:
        await holder[0].on_ready()

    async def on_stop(runtime: Runtime) -> None:
        await holder[0].on_stop()

    async def on_drain(runtime: Runtime) -> None:
        await holder[0].on_drain()

    return ServiceSpec(
        name=name,
        schema=name,
        migrations_dir=migrations_dir,
        grpc_services=(grpc_service,),
        register=register,
        on_ready=on_ready,
        on_stop=on_stop,
        on_drain=on_drain,
        long_lived_streams=long_lived_streams,
    )


def build_verifier(settings: Settings) -> CallerVerifier:
    """Verifies user access tokens and every service's credentials."""
    if not settings.jwt_public_key_file:
        raise SystemExit("JWT_PUBLIC_KEY_FILE must point at the token-signing public key (PEM)")
    if not settings.service_public_keys_dir:
        raise SystemExit("SERVICE_PUBLIC_KEYS_DIR must hold every service's <service>.pem")
    if settings.service_token_audience == settings.jwt_audience:
        raise SystemExit("SERVICE_TOKEN_AUDIENCE must differ from JWT_AUDIENCE (the edge's)")
    users = TokenVerifier(
        load_public_keys(settings.jwt_public_key_file),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    services = ServiceTokenVerifier(
        load_service_public_keys(settings.service_public_keys_dir),
        issuer=settings.jwt_issuer,
        audience=settings.service_token_audience,
    )
    return CallerVerifier(users, services)


def build_service_credentials(settings: Settings) -> ServiceCredentials:
    """This service's credential, from its own key (which its peers must know)."""
    if not settings.service_key_file or not settings.service_public_keys_dir:
        raise SystemExit(
            "SERVICE_KEY_FILE (this service's private key) and SERVICE_PUBLIC_KEYS_DIR "
            "(every service's <service>.pem) must be set"
        )
    if not 60 <= settings.service_token_ttl_seconds <= MAX_SERVICE_TOKEN_LIFETIME:
        raise SystemExit(
            f"SERVICE_TOKEN_TTL_SECONDS must be 60..{MAX_SERVICE_TOKEN_LIFETIME} "
            "(peers refuse longer-lived credentials)"
        )
    key = load_private_key(settings.service_key_file)
    published = load_service_public_keys(settings.service_public_keys_dir).get(settings.service)
    if published is None or key_id(published) != key_id(key.public_key()):
        raise SystemExit(
            f"SERVICE_PUBLIC_KEYS_DIR has no {settings.service}.pem matching SERVICE_KEY_FILE: "
            "peers would refuse this service's credentials"
        )
    return ServiceCredentials(
        settings.service,
        key,
        issuer=settings.jwt_issuer,
        audience=settings.service_token_audience,
        ttl=settings.service_token_ttl_seconds,
    )


#: The least time the servers accept between two HTTP/2 PINGs on a connection that
#: carries no data (grpc's default is 5 min). Envoy pings every upstream connection
#: every 30 s (gateway EdgeSettings.upstream_keepalive_interval_seconds) and so do the
#: kit's own channels (channels.open_channel), with or without calls in flight; with
#: the default every quiet stream through the edge died after a few pings with GOAWAY
#: `too_many_pings`. 1 s is far below every legitimate pinger and still catches floods.
MIN_PING_INTERVAL_WITHOUT_DATA_MS = 1_000
#: Pings arriving faster than that are "strikes"; one more than this closes the
#: connection (grpc's default, kept on purpose: 0 would allow ping floods).
MAX_PING_STRIKES = 2
#: Clients reconnect every few minutes, so dns:/// round-robin notices pods the
#: autoscaler added; in-flight calls get the grace period to finish. Every stream
#: is cut at that age too: a service that serves long streams passes None.
MAX_CONNECTION_AGE_MS: int | None = 300_000
MAX_CONNECTION_AGE_GRACE_MS = 30_000


def server_options(
    max_connection_age_ms: int | None = MAX_CONNECTION_AGE_MS,
) -> list[tuple[str, int]]:
    """The kit's grpc.aio server options (`None`: no connection age limit)."""
    options = [
        ("grpc.so_reuseport", 0),
        # Accept the edge's and our clients' keepalive pings, also without calls.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_PING_INTERVAL_WITHOUT_DATA_MS),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
    ]
    if max_connection_age_ms is not None:
        options += [
            ("grpc.max_connection_age_ms", max_connection_age_ms),
            ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
        ]
    return options


#: What every service runs with by default (tests reuse it to behave like the kit).
SERVER_OPTIONS = server_options()


class ServiceHost:
    """One running service: server, health, dependencies, graceful shutdown."""

    def __init__(self, spec: ServiceSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.runtime = Runtime(settings)
        self.health = HealthServicer()
        self.server = grpc.aio.server(
            interceptors=[
                ServiceInterceptor(
                    build_verifier(settings),
                    service_methods_access(spec.grpc_services),
                    revocations=lambda: self.runtime.revocations,
                    service=spec.name,
                )
            ],
            # Long-lived streams (chat) would be cut by the 5-minute connection age.
            options=server_options(None if spec.long_lived_streams else MAX_CONNECTION_AGE_MS),
        )
        self.port = 0
        self._watch: asyncio.Task[None] | None = None
        self._worker_owner = ""
        self._worker_id = -1
        self._sampler: asyncio.Task[None] | None = None
        self._servicer: ServicerBase | None = None

    @property
    def servicer(self) -> ServicerBase:
        """The servicer this host runs (tests and tools look inside it through here)."""
        if self._servicer is None:
            raise RuntimeError(f"{self.spec.name}: no servicer registered (host not started?)")
        return self._servicer

    async def _set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        for name in ("", *self.spec.grpc_services):
            await self.health.set(name, status)

    async def start(self) -> None:
        spec = self.spec
        self._servicer = spec.register(self.server, self.runtime)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                *spec.grpc_services,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        self.port = self.server.add_insecure_port(address)
        await self._set_health(NOT_SERVING)
        # Liveness only says "the process answers"; dependency outages flip the
        # other names (readiness) but never this one.
        await self.health.set(LIVENESS, SERVING)
        await self.server.start()
        log.info(
            "%s listening on %s:%d (NOT_SERVING until ready)",
            spec.name,
            self.settings.grpc_host,
            self.port,
        )
        await self._connect_dependencies()
        await self._set_health(SERVING)
        self._watch = asyncio.create_task(self._watch_dependencies())
        log.info("%s SERVING", spec.name)

    async def _connect_dependencies(self) -> None:
        s = self.settings
        if not s.database_url or not s.redis_url:
            raise SystemExit("DATABASE_URL and REDIS_URL must be set (socialmesh up sets them)")
        db = await Database.connect(
            s.database_url, s.database_replica_urls, max_size=s.database_pool_size
        )
        try:
            await self._schema_ready(db)
        except BaseException:  # cancelled (SIGTERM) while waiting for the migrations Job
            await db.close()
            raise
        redis = await connect_redis(s.redis_url)
        if s.worker_id < 0:
            self._worker_owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
            self._worker_id = await lease_worker_id(redis, self._worker_owner)
            self.runtime.ids.rebind(self._worker_id)
        self.runtime.attach(db, redis)
        self.runtime.revocations = Revocations(redis, s.access_token_ttl_seconds + 60)
        self.runtime.revocations.start()  # checks ask Redis until its mirror is loaded
        self.runtime.relay = OutboxRelay(db, redis, self.spec.schema)
        self.runtime.relay.start()
        if self.spec.on_ready:
            await self.spec.on_ready(self.runtime)
        sampler = MetricsSampler(self.spec.schema, db, redis, lambda: list(self.runtime.consumers))
        self._sampler = asyncio.create_task(sampler.run(), name=f"metrics-{self.spec.name}")

    #: How often a service that may not migrate looks again for its migrations.
    schema_recheck_seconds = 5.0

    async def _schema_ready(self, db: Database) -> None:
        """Migrates (MIGRATE_ON_START, the default), or waits NOT_SERVING until the
        schema has every migration this code knows: a pod of a new release stays
        unready until the `socialmesh migrate` Job ran, and needs no DDL rights."""
        spec = self.spec
        if self.settings.migrate_on_start:
            async with db.primary.acquire() as conn:
                applied = await migrate(conn, spec.schema, spec.migrations_dir)
            if applied:
                log.info("%s applied migrations %s", spec.name, applied)
            return
        names = dict(migration_files(spec.migrations_dir))
        last = ""
        while True:
            role = "?"
            try:
                async with db.primary.acquire() as conn:
                    role = await conn.fetchval("SELECT current_user")
                    missing = await pending_migrations(conn, spec.schema, spec.migrations_dir)
                problem = (
                    f"schema {spec.schema!r} lacks migrations {missing} "
                    f"({', '.join(names[v].name for v in missing)})"
                    if missing
                    else ""
                )
            except asyncpg.InsufficientPrivilegeError as exc:
                problem = f"no access to schema {spec.schema!r} ({exc}; RUNTIME_DB_ROLE grants it)"
            if not problem:
                log.info("%s schema %r is current", spec.name, spec.schema)
                return
            if problem != last:  # once per change, not every few seconds
                log.warning(
                    "%s stays NOT_SERVING: %s, connected as %r; MIGRATE_ON_START is off: "
                    "run `socialmesh migrate` (the k8s Job) as the schema owner",
                    spec.name,
                    problem,
                    role,
                )
                last = problem
            await asyncio.sleep(self.schema_recheck_seconds)

    async def _watch_dependencies(self) -> None:
        """Flips health to NOT_SERVING while PostgreSQL or Redis is unreachable."""
        serving = True
        while True:
            await asyncio.sleep(5)
            db_ok = await self.runtime.db.ping()
            try:
                redis_ok = bool(await self.runtime.redis.ping())
            except (OSError, aioredis.ConnectionError):
                redis_ok = False
            if redis_ok and self._worker_owner:
                # Keep our snowflake worker id; losing it would risk duplicate ids.
                kept = await renew_worker_id(
                    self.runtime.redis, self._worker_id, self._worker_owner
                )
                if not kept:
                    self._worker_id = await lease_worker_id(self.runtime.redis, self._worker_owner)
                    self.runtime.ids.rebind(self._worker_id)
            healthy = db_ok and redis_ok
            if healthy != serving:
                serving = healthy
                log.warning("%s dependencies %s", self.spec.name, "back" if healthy else "lost")
                await self._set_health(SERVING if healthy else NOT_SERVING)

    async def stop(self) -> None:
        await self.health.enter_graceful_shutdown()
        if self.settings.drain_delay_seconds > 0:
            # Still serving: balancers (Envoy's health checks, kube-proxy) stop sending
            # new calls during this window; then the server refuses what still comes.
            await asyncio.sleep(self.settings.drain_delay_seconds)
        if self._watch:
            await cancel_and_wait(self._watch)
        if self._sampler:
            await cancel_and_wait(self._sampler)
        if self.spec.on_drain and self.runtime.ready:
            await self.spec.on_drain(self.runtime)
        await self.server.stop(self.settings.shutdown_grace_seconds)
        if self.spec.on_stop and self.runtime.ready:
            await self.spec.on_stop(self.runtime)
        if self.runtime.relay:
            await self.runtime.relay.stop()
        if self.runtime.revocations:
            await self.runtime.revocations.stop()
        if self.runtime.ready:
            if self._worker_owner:  # hand our snowflake worker id back
                key = f"worker-id:{self._worker_id}"
                if await self.runtime.redis.get(key) == self._worker_owner.encode():
                    await self.runtime.redis.delete(key)
            await self.runtime.redis.aclose()
            await self.runtime.db.close()


async def serve(spec: ServiceSpec, settings: Settings) -> None:
    """Runs a service until SIGTERM/SIGINT, then shuts it down gracefully."""
    setup_tracing(spec.name)
    host = ServiceHost(spec, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(host.start())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done() and starting.exception():
        stopper.cancel()
        await host.stop()
        raise starting.exception()  # type: ignore[misc]
    await stopper
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
    log.info("%s draining", spec.name)
    await host.stop()


def run(spec: ServiceSpec, settings: Settings | None = None) -> None:
    """Process entry point (`socialmesh serve <name>`): uvloop + serve."""
    import uvloop

    settings = settings or Settings.from_env(spec.name)
    setup_logging(spec.name, level=settings.log_level, fmt=settings.log_format)
    if settings.metrics_port:
        serve_metrics(settings.metrics_port)
    uvloop.run(serve(spec, settings))
