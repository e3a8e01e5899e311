"""What the edge config is built from: its knobs, its upstreams, and their checks.

Plain dataclasses with no Envoy types, so the CLI, `socialmesh up` and the tests can
describe an edge without importing the builders.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Upstream:
    """One gRPC service behind the edge; `name` becomes the Envoy cluster name."""

    name: str
    host: str
    port: int
    grpc_service: str  # fully-qualified, e.g. "socialmesh.user.v1.UserService"
    #: Concurrent requests (streams included) the edge sends this cluster before its
    #: circuit breaker opens. Services holding long-lived streams (chat) need far more
    #: than a request/response service: each open stream is a request.
    max_requests: int = 4096
    #: More instances of the same service beside (host, port) (several on a laptop or in
    #: a test; in a cluster one DNS name finds every pod instead).
    replicas: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class FileRoute:
    """A plain-HTTP upstream serving bytes under a path prefix (media files in `socialmesh
    up`): GET and HEAD only, no token (the unguessable URL is the capability), neither
    transcoded nor buffered, so Range/206, ETag/304 and HEAD reach the client intact.
    `name` becomes the Envoy cluster name."""

    name: str
    prefix: str
    host: str
    port: int


@dataclass(frozen=True, kw_only=True)
class EdgeSettings:
    """Knobs of the edge; JWKS and descriptor path come from the running stack."""

    edge_port: int = 8080
    admin_port: int = 9901
    bind_address: str = "127.0.0.1"
    jwks_json: str
    issuer: str = "socialmesh"
    audience: str = "socialmesh-api"
    descriptor_path: Path
    rate_limit_per_second: int = 2000
    #: Each client address has its own bucket (the edge-wide one stays as a backstop), so
    #: one client's flood cannot get everyone a 429. Burst: twice the rate.
    rate_limit_per_client_per_second: int = 200
    #: Distinct client addresses whose buckets are kept (LRU); more share the edge-wide one.
    rate_limit_clients: int = 100_000
    #: Overload manager: connections beyond this are refused at accept (silent sockets
    #: cannot pile up to the fd limit), and the heap this Envoy may use before it
    #: sheds load (stops keep-alive at 95 %, refuses new requests at 98 %).
    max_downstream_connections: int = 50_000
    max_heap_bytes: int = 1 << 30
    #: Closes downstream connections with no request in flight (security review L7: 1 h
    #: kept silent sockets open); streams keep theirs open while they run.
    idle_timeout_seconds: float = 60.0
    #: A new connection must send its first bytes (TLS ClientHello or the HTTP/1 request
    #: line / HTTP/2 preface) within this long or it is closed: silent sockets are shed
    #: long before the idle timeout (security review L7).
    first_bytes_timeout_seconds: float = 10.0
    #: `host:port` of an OTLP/gRPC collector: the edge then starts a span per request and
    #: passes its `traceparent` upstream, so edge and service spans share one trace.
    #: Empty (the laptop default): no tracer; a client's own traceparent still passes.
    otlp_collector: str = ""
    #: PEM certificate chain and key: the listener then speaks TLS only, offering h2
    #: and http/1.1 by ALPN (browsers use HTTP/2 only over TLS). Empty: plaintext, where
    #: HTTP/1.1 and h2c (gRPC) share the port.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: The OpenAPI document of this REST surface (gen/openapi.json), answered at
    #: `GET /openapi.json` by Envoy itself; empty: not served.
    openapi_file: str = ""
    cors_allowed_origins: tuple[str, ...] = ("*",)
    request_timeout_seconds: float = 15.0
    # How often Envoy pings each upstream connection (HTTP/2 PING) to notice a dead peer.
    # The services must accept pings this often even on a connection without calls, or
    # they answer GOAWAY `too_many_pings` and kill quiet streams: see
    # services/kit/server.py (MIN_PING_INTERVAL_WITHOUT_DATA_MS, which must not exceed it).
    upstream_keepalive_interval_seconds: float = 30.0
    #: Plain-HTTP byte routes (none by default); they win over the API routes.
    file_routes: tuple[FileRoute, ...] = ()
    #: The web app's static server (its prefix is `/`): GET/HEAD of every path the API
    #: does not serve, except under `/v1/`, whose unknown paths stay the API's JSON 404.
    #: None: no app, every unknown path is a 404.
    app_files: FileRoute | None = None


def check_settings(settings: EdgeSettings, upstreams: Iterable[Upstream]) -> None:
    """Fail at build time on inputs Envoy would reject less legibly (or accept wrongly)."""
    upstreams = list(upstreams)
    for label, values in (
        ("upstream names", [u.name for u in upstreams]),
        ("grpc services", [u.grpc_service for u in upstreams]),
    ):
        if len(values) != len(set(values)):
            raise ValueError(f"duplicate {label}: {values}")
    if settings.rate_limit_per_second < 1:
        raise ValueError("rate_limit_per_second must be at least 1")
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ValueError("TLS needs both tls_cert_file and tls_key_file")
    if settings.rate_limit_per_client_per_second < 1:
        raise ValueError("rate_limit_per_client_per_second must be at least 1")
    if settings.request_timeout_seconds <= 0:
        raise ValueError("request_timeout_seconds must be positive (0 would disable it)")
    if settings.upstream_keepalive_interval_seconds <= 0:
        raise ValueError("upstream_keepalive_interval_seconds must be positive")
    jwks = json.loads(settings.jwks_json)
    if not isinstance(jwks, dict) or not jwks.get("keys"):
        raise ValueError("jwks_json must be a JWKS document with at least one key")
