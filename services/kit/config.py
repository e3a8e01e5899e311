"""Twelve-factor configuration: every setting comes from the environment.

The kit knows no particular service: which services exist and their default
ports come from the caller (`services/registry.py`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

JWT_ISSUER_DEFAULT = "socialmesh"
JWT_AUDIENCE_DEFAULT = "socialmesh-api"
#: Audience of service credentials: never the edge's, so the edge refuses them.
SERVICE_TOKEN_AUDIENCE_DEFAULT = "socialmesh-internal"


#: `SOCIALMESH_<SERVICE>_ADDR`: how to reach a peer (`dns:///user.socialmesh:50051`).
_PEER_ADDRESS = re.compile(r"^SOCIALMESH_([A-Z0-9]+)_ADDR$")


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _flag(value: str, name: str) -> bool:
    folded = value.strip().lower()
    if folded in ("1", "true", "yes", "on"):
        return True
    if folded in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be true or false, not {value!r}")


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
    #: This service's own ES256 private key (PEM): it mints its service credentials.
    service_key_file: str = ""
    #: Directory of `<service>.pem` public keys, one per service, to verify them.
    service_public_keys_dir: str = ""
    service_token_audience: str = SERVICE_TOKEN_AUDIENCE_DEFAULT
    service_token_ttl_seconds: int = 300
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    shutdown_grace_seconds: float = 5.0
    #: After SIGTERM, keep serving (health NOT_SERVING) this long before refusing new
    #: calls, so load balancers see the health change first (k8s: the preStop window).
    drain_delay_seconds: float = 0.0
    #: Snowflake worker id; -1 leases one from Redis at start (the default).
    worker_id: int = -1
    service_addresses: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    #: `text` (laptop) or `json` (one object per line with trace/span ids; k8s sets it).
    log_format: str = "text"
    #: Port of the Prometheus `/metrics` endpoint; 0 (the default) serves none.
    metrics_port: int = 0
    #: HMAC key for page tokens; shared by every instance of a service.
    page_token_secret: str = ""
    #: Apply pending migrations at start (laptop, `socialmesh up`). False in k8s: the
    #: `socialmesh migrate` Job applies them as the schema owner, the service only
    #: checks its schema is current and stays NOT_SERVING until it is (no DDL rights).
    migrate_on_start: bool = True

    @classmethod
    def from_env(
        cls,
        service: str,
        env: dict[str, str] | None = None,
        *,
        default_ports: Mapping[str, int] | None = None,
    ) -> Settings:
        """`default_ports` (service -> port) gives this service's port and its peers'
        addresses (`127.0.0.1:<port>`) where SOCIALMESH_GRPC_PORT and
        SOCIALMESH_<SERVICE>_ADDR are unset."""
        e = dict(os.environ if env is None else env)
        defaults = dict(default_ports or {})
        addresses = {name: f"127.0.0.1:{port}" for name, port in defaults.items()}
        for key, value in e.items():
            if match := _PEER_ADDRESS.match(key):
                addresses[match.group(1).lower()] = value
        return cls(
            service=service,
            grpc_host=e.get("SOCIALMESH_GRPC_HOST", "127.0.0.1"),
            grpc_port=int(e.get("SOCIALMESH_GRPC_PORT", defaults.get(service, 50051))),
            database_url=e.get("DATABASE_URL", ""),
            database_replica_urls=_split(e.get("DATABASE_REPLICA_URLS")),
            database_pool_size=int(e.get("DATABASE_POOL_SIZE", "10")),
            redis_url=e.get("REDIS_URL", ""),
            jwt_issuer=e.get("JWT_ISSUER", JWT_ISSUER_DEFAULT),
            jwt_audience=e.get("JWT_AUDIENCE", JWT_AUDIENCE_DEFAULT),
            jwt_public_key_file=e.get("JWT_PUBLIC_KEY_FILE", ""),
            jwt_private_key_file=e.get("JWT_PRIVATE_KEY_FILE", ""),
            service_key_file=e.get("SERVICE_KEY_FILE", ""),
            service_public_keys_dir=e.get("SERVICE_PUBLIC_KEYS_DIR", ""),
            service_token_audience=e.get("SERVICE_TOKEN_AUDIENCE", SERVICE_TOKEN_AUDIENCE_DEFAULT),
            service_token_ttl_seconds=int(e.get("SERVICE_TOKEN_TTL_SECONDS", "300")),
            access_token_ttl_seconds=int(e.get("ACCESS_TOKEN_TTL_SECONDS", "900")),
            refresh_token_ttl_seconds=int(e.get("REFRESH_TOKEN_TTL_SECONDS", str(30 * 24 * 3600))),
            shutdown_grace_seconds=float(e.get("SHUTDOWN_GRACE_SECONDS", "5")),
            drain_delay_seconds=float(e.get("DRAIN_DELAY_SECONDS", "0")),
            worker_id=int(e.get("SOCIALMESH_WORKER_ID", "-1")),
            service_addresses=addresses,
            log_level=e.get("LOG_LEVEL", "INFO"),
            log_format=e.get("LOG_FORMAT", "text"),
            metrics_port=int(e.get("METRICS_PORT", "0")),
            page_token_secret=e.get("PAGE_TOKEN_SECRET", ""),
            migrate_on_start=_flag(e.get("MIGRATE_ON_START", "true"), "MIGRATE_ON_START"),
        )
