"""`socialmesh search backfill`: fills the search copies from graph's and user's exports now.

Does what the post and user services do by themselves when their copy was never
back-filled (services/kit/backfill.py, docs/search.md "Back-fill"), on demand
and in the foreground: waits for a back-fill another process runs, then runs
its own. It acts *as* each service whose copy it fills: that service's identity
key signs the credential the exports require.

Against `socialmesh up` it needs nothing but `--data-dir` (the stack's PostgreSQL,
keys and ports); elsewhere it reads the services' environment: DATABASE_URL,
SOCIALMESH_GRAPH_ADDR / SOCIALMESH_USER_ADDR, SERVICE_KEY_FILE (then name one
`--service`: the key is that service's) and the JWT_ISSUER / SERVICE_TOKEN_*
settings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from socialmesh.graph.v1 import graph_pb2_grpc
from socialmesh.user.v1 import user_pb2_grpc

from services import registry
from services.kit.auth import ServiceCredentials, load_private_key
from services.kit.backfill import BackfillResult, run_backfill
from services.kit.channels import open_channel
from services.kit.config import Settings
from services.kit.db import Database

#: Whose copies exist, in the order they are filled.
COPIES = ("post", "user")


def credentials(service: str, settings: Settings, data_dir: Path) -> ServiceCredentials:
    """`service`'s credential: SERVICE_KEY_FILE, else the `up` data dir's key of it."""
    from services.devstack import service_key_file

    key = settings.service_key_file or str(
        service_key_file(data_dir / "keys" / "services", service)
    )
    if not Path(key).exists():
        raise SystemExit(f"no identity key of the {service} service at {key}: set SERVICE_KEY_FILE")
    return ServiceCredentials(
        service,
        load_private_key(key),
        issuer=settings.jwt_issuer,
        audience=settings.service_token_audience,
        ttl=settings.service_token_ttl_seconds,
    )


async def backfill_copy(
    db: Database, service: str, settings: Settings, creds: ServiceCredentials
) -> BackfillResult:
    """Back-fills one service's copy, calling the exports as that service."""
    from services.post import search as post_search
    from services.user import search as user_search

    channels = [
        open_channel(
            settings.service_addresses[peer], timeout_seconds=30, service_token=creds.token
        )
        for peer in ("graph", "user")
    ]
    graph = graph_pb2_grpc.GraphServiceStub(channels[0])
    users = user_pb2_grpc.UserServiceStub(channels[1])

    async def fill(event_id: int, result: BackfillResult) -> None:
        if service == "post":
            await post_search.backfill(db, graph, users, event_id, result)
        else:
            await user_search.backfill(db, graph, event_id, result)

    try:
        result = await run_backfill(db, service, fill, wait=True)
    finally:
        for channel in channels:
            await channel.close(grace=None)
    if result is None:  # wait=True always runs
        raise RuntimeError("the back-fill did not run")
    return result


async def backfill_copies(
    database_url: str, services: list[str], data_dir: Path, base_port: int
) -> list[tuple[str, BackfillResult]]:
    """Back-fills each named service's copy; what each run wrote."""
    db = await Database.connect(database_url, attempts=1)
    try:
        done = []
        for service in services:
            settings = Settings.from_env(service, default_ports=registry.ports(base_port))
            creds = credentials(service, settings, data_dir)
            done.append((service, await backfill_copy(db, service, settings, creds)))
        return done
    finally:
        await db.close()


def main(args: argparse.Namespace) -> int:
    services = args.service.split(",") if args.service else list(COPIES)
    unknown = [s for s in services if s not in COPIES]
    if unknown:
        print(f"socialmesh search backfill: no search copy in {unknown} (known: {COPIES})")
        return 2
    if os.environ.get("SERVICE_KEY_FILE") and len(services) != 1:
        print(
            "socialmesh search backfill: SERVICE_KEY_FILE is one service's key: "
            "name that service with --service",
            file=sys.stderr,
        )
        return 2
    data_dir = Path(args.data_dir).resolve()
    url = os.environ.get("DATABASE_URL", "")
    server = None
    if not url:
        import pgserver

        # The instance `socialmesh up` runs on this data dir (stopped afterwards
        # only if no other process still uses it), as `socialmesh seed` does.
        server = pgserver.get_server(str(data_dir / "postgres"))
        url = server.get_uri()
    try:
        for service, result in asyncio.run(
            backfill_copies(url, services, data_dir, args.base_port)
        ):
            print(f"{service}: {result.describe()}", flush=True)
    finally:
        if server is not None:
            server.cleanup()
    return 0
