"""Twelve-factor configuration: every setting comes from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

#: Default gRPC port of each service on a laptop (`socialmesh up`).
DEFAULT_PORTS: dict[str, int] = {
    "user": 50051,
    "graph": 50052,
    "post": 50053,
    "feed": 50054,
    "chat": 50055,
    "media": 50056,
}

#: Services that have a servicer today; `socialmesh up` starts these.
IMPLEMENTED_SERVICES: tuple[str, ...] = ("user", "graph", "post")

JWT_ISSUER_DEFAULT = "socialmesh"
JWT_AUDIENCE_DEFAULT = "socialmesh-api"


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """What a service process needs to know about its environment."""

    service: str
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    database_url: str = ""
    database_replica_urls: tuple[str, ...] = ()
    database_pool_size: int = 10
    redis_url: str = ""
    jwt_issuer: str = JWT_ISSUER_DEFAULT
    jwt_audience: str = JWT_AUDIENCE_DEFAULT
    jwt_public_key_file: str = ""
    jwt_private_key_file: str = ""
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    shutdown_grace_seconds: float = 5.0
    #: Snowflake worker id; -1 leases one from Redis at start (the default).
    worker_id: int = -1
    service_addresses: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    #: HMAC key for page tokens; shared by every instance of a service.
    page_token_secret: str = ""

    @classmethod
    def from_env(cls, service: str, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        addresses = {
            name: e.get(f"SOCIALMESH_{name.upper()}_ADDR", f"127.0.0.1:{port}")
            for name, port in DEFAULT_PORTS.items()
        }
        return cls(
            service=service,
            grpc_host=e.get("SOCIALMESH_GRPC_HOST", "127.0.0.1"),
            grpc_port=int(e.get("SOCIALMESH_GRPC_PORT", DEFAULT_PORTS.get(service, 50051))),
            database_url=e.get("DATABASE_URL", ""),
            database_replica_urls=_split(e.get("DATABASE_REPLICA_URLS")),
            database_pool_size=int(e.get("DATABASE_POOL_SIZE", "10")),
            redis_url=e.get("REDIS_URL", ""),
            jwt_issuer=e.get("JWT_ISSUER", JWT_ISSUER_DEFAULT),
            jwt_audience=e.get("JWT_AUDIENCE", JWT_AUDIENCE_DEFAULT),
            jwt_public_key_file=e.get("JWT_PUBLIC_KEY_FILE", ""),
            jwt_private_key_file=e.get("JWT_PRIVATE_KEY_FILE", ""),
            access_token_ttl_seconds=int(e.get("ACCESS_TOKEN_TTL_SECONDS", "900")),
            refresh_token_ttl_seconds=int(e.get("REFRESH_TOKEN_TTL_SECONDS", str(30 * 24 * 3600))),
            shutdown_grace_seconds=float(e.get("SHUTDOWN_GRACE_SECONDS", "5")),
            worker_id=int(e.get("SOCIALMESH_WORKER_ID", "-1")),
            service_addresses=addresses,
            log_level=e.get("LOG_LEVEL", "INFO"),
            page_token_secret=e.get("PAGE_TOKEN_SECRET", ""),
        )
