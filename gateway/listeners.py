"""The edge's one listener and its HTTP connection manager.

The filter chain's order (see gateway/envoy_config.py for why this order), protocol
limits and timeouts, TLS termination, the first-bytes deadline, tracing and the JSON
access log. The filters themselves are built in gateway/http_filters.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
from envoy_data_plane.envoy.config.core.v3 import (
    DataSource,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    Http2ProtocolOptions,
    HttpProtocolOptions,
    HttpProtocolOptionsHeadersWithUnderscoresAction,
    SubstitutionFormatString,
    TransportSocket,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener, ListenerFilter
from envoy_data_plane.envoy.config.route.v3 import (
    HeaderMatcher,
)
from envoy_data_plane.envoy.config.trace.v3 import OpenTelemetryConfig, TracingHttp
from envoy_data_plane.envoy.extensions.access_loggers.stream.v3 import StdoutAccessLog
from envoy_data_plane.envoy.extensions.compression.brotli.compressor.v3 import Brotli
from envoy_data_plane.envoy.extensions.compression.gzip.compressor.v3 import Gzip
from envoy_data_plane.envoy.extensions.filters.http.buffer.v3 import Buffer
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import Cors
from envoy_data_plane.envoy.extensions.filters.http.grpc_web.v3 import GrpcWeb
from envoy_data_plane.envoy.extensions.filters.http.health_check.v3 import (
    HealthCheck as HealthCheckFilter,
)
from envoy_data_plane.envoy.extensions.filters.http.lua.v3 import Lua
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.listener.http_inspector.v3 import HttpInspector
from envoy_data_plane.envoy.extensions.filters.listener.tls_inspector.v3 import TlsInspector
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpConnectionManagerPathWithEscapedSlashesAction,
    HttpConnectionManagerTracing,
)
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CommonTlsContext,
    DownstreamTlsContext,
    TlsCertificate,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.envoy.type.v3 import (
    Percent,
)
from envoy_data_plane.google.protobuf import Any, Struct

from .addresses import socket_address
from .body_fields import body_schemas
from .clusters import OTEL_COLLECTOR_CLUSTER
from .descriptors import Contract, MethodInfo
from .edge_lua import lua_source
from .http_filters import (
    BROTLI_FILTER,
    BUFFER_FILTER,
    CORS_FILTER,
    GRPC_WEB_FILTER,
    GZIP_FILTER,
    HEALTH_CHECK_FILTER,
    HEALTH_PATH,
    JWT_FILTER,
    LUA_FILTER,
    RATE_LIMIT_FILTER,
    ROUTER_FILTER,
    TRANSCODER_FILTER,
    compressor,
    http_filter,
    jwt_authn,
    rate_limit,
    transcoder,
)
from .limits import CONNECTION_BUFFER_BYTES, MAX_EDGE_REQUEST_BYTES
from .local_replies import local_reply_config
from .routes import route_config
from .settings import EdgeSettings, Upstream

LISTENER_NAME = "edge"


def listener(
    settings: EdgeSettings,
    upstreams: Sequence[Upstream],
    methods: dict[str, tuple[MethodInfo, ...]],
    contract: Contract,
) -> Listener:
    """One plaintext listener; the HCM's AUTO codec serves HTTP/1.1 and h2c (gRPC) alike."""
    schemas, bodies = body_schemas(contract, [u.grpc_service for u in upstreams])
    hcm = HttpConnectionManager(
        stat_prefix=LISTENER_NAME,
        # AUTO (the proto default, so absent from the YAML): sniffs HTTP/1.1 vs h2c.
        codec_type=HttpConnectionManagerCodecType.AUTO,
        route_config=route_config(settings, upstreams, methods, bodies),
        http_filters=[
            http_filter(CORS_FILTER, Cors()),
            # Browsers can call the gRPC contracts directly (gRPC-Web -> gRPC).
            http_filter(GRPC_WEB_FILTER, GrpcWeb()),
            # Answers GET /healthz on the public listener (200, or 503 while the
            # edge drains) so orchestrators can probe it without the admin port,
            # which stays on loopback. Before jwt_authn: probes carry no token.
            http_filter(
                HEALTH_CHECK_FILTER,
                HealthCheckFilter(
                    pass_through_mode=False,
                    headers=[
                        HeaderMatcher(name=":path", string_match=StringMatcher(exact=HEALTH_PATH))
                    ],
                ),
            ),
            # Encoders run in reverse: these compress what the transcoder produced.
            # Brotli wins when a client accepts both at the same q-value.
            http_filter(BROTLI_FILTER, compressor(Brotli(quality=4), first=True)),
            http_filter(GZIP_FILTER, compressor(Gzip(), first=False)),
            http_filter(RATE_LIMIT_FILTER, rate_limit(settings)),
            http_filter(BUFFER_FILTER, Buffer(max_request_bytes=MAX_EDGE_REQUEST_BYTES)),
            http_filter(
                LUA_FILTER, Lua(default_source_code=DataSource(inline_string=lua_source(schemas)))
            ),
            http_filter(JWT_FILTER, jwt_authn(settings, methods)),
            http_filter(TRANSCODER_FILTER, transcoder(upstreams, contract)),
            http_filter(ROUTER_FILTER, Router()),
        ],
        # The edge faces clients directly: trust the socket peer, not X-Forwarded-For.
        # Envoy appends that peer to X-Forwarded-For, so the services take its *last*
        # entry as the client address for per-client rate limits; no hop in front of the
        # edge is trusted (0, also the default), so a client-sent X-Forwarded-For only
        # adds entries before it.
        use_remote_address=True,
        xff_num_trusted_hops=0,
        # jwt_authn rules, the transcoder's path matcher and the routes must all see the
        # same path; normalise once, up front, so `/v1//users/%31` cannot dodge a rule.
        normalize_path=True,
        merge_slashes=True,
        path_with_escaped_slashes_action=HttpConnectionManagerPathWithEscapedSlashesAction.REJECT_REQUEST,
        common_http_protocol_options=HttpProtocolOptions(
            # A connection with no request in flight is closed after this (one that
            # never sends a byte included).
            idle_timeout=timedelta(seconds=settings.idle_timeout_seconds),
            # `x_user_id` must not slip past the header stripping as a look-alike.
            headers_with_underscores_action=HttpProtocolOptionsHeadersWithUnderscoresAction.DROP_HEADER,
        ),
        http2_protocol_options=Http2ProtocolOptions(
            # Envoy's edge-proxy guide: 100 streams per connection, 64 KiB/1 MiB windows.
            max_concurrent_streams=100,
            initial_stream_window_size=65536,
            initial_connection_window_size=1048576,
        ),
        request_headers_timeout=timedelta(seconds=10),
        # Streams (server/bidi) stay open while idle up to this long; route timeouts are 0s
        # for them, so this is what reaps abandoned ones.
        stream_idle_timeout=timedelta(minutes=5),
        access_log=[_pack_access_log()],
        local_reply_config=local_reply_config(),
        # Every response carries the id the access log and traces have (support tickets).
        always_set_request_id_in_response=True,
        tracing=_tracing(settings),
    )
    return Listener(
        name=LISTENER_NAME,
        address=socket_address(settings.bind_address, settings.edge_port),
        # Envoy sets SO_REUSEPORT by default, so a second Envoy (another stack, a stale
        # one) started on the same port binds without error and the kernel splits the
        # connections - bearer tokens included - between the two. Without it that second
        # bind fails loudly with "Address already in use".
        enable_reuse_port=False,
        # Bounds what one connection can make Envoy buffer (edge-proxy guide); filters
        # that need whole bodies (buffer, transcoder) raise it for their own streams.
        per_connection_buffer_limit_bytes=CONNECTION_BUFFER_BYTES,
        listener_filters=[_first_bytes_inspector(settings)],
        listener_filters_timeout=timedelta(seconds=settings.first_bytes_timeout_seconds),
        continue_on_listener_filters_timeout=False,
        filter_chains=[
            FilterChain(
                transport_socket=_tls(settings),
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=Any.pack(hcm),
                    )
                ],
            )
        ],
    )


def _first_bytes_inspector(settings: EdgeSettings) -> ListenerFilter:
    """A listener filter that waits for a connection's first bytes (TLS or HTTP).

    Its timeout is the deadline for a client to start talking; on expiry the
    connection is closed instead of reaching the HTTP connection manager.
    """
    if settings.tls_cert_file:
        return ListenerFilter(
            name="envoy.filters.listener.tls_inspector", typed_config=Any.pack(TlsInspector())
        )
    return ListenerFilter(
        name="envoy.filters.listener.http_inspector", typed_config=Any.pack(HttpInspector())
    )


def _tls(settings: EdgeSettings) -> TransportSocket | None:
    """TLS termination (DownstreamTlsContext) when a certificate is configured."""
    if not settings.tls_cert_file:
        return None
    context = DownstreamTlsContext(
        common_tls_context=CommonTlsContext(
            tls_certificates=[
                TlsCertificate(
                    certificate_chain=DataSource(filename=settings.tls_cert_file),
                    private_key=DataSource(filename=settings.tls_key_file),
                )
            ],
            alpn_protocols=["h2", "http/1.1"],
        )
    )
    return TransportSocket(name="envoy.transport_sockets.tls", typed_config=Any.pack(context))


def _tracing(settings: EdgeSettings) -> HttpConnectionManagerTracing | None:
    """Envoy's OpenTelemetry tracer, exporting to `settings.otlp_collector` over OTLP/gRPC."""
    if not settings.otlp_collector:
        return None
    return HttpConnectionManagerTracing(
        provider=TracingHttp(
            name="envoy.tracers.opentelemetry",
            typed_config=Any.pack(
                OpenTelemetryConfig(
                    grpc_service=GrpcService(
                        envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=OTEL_COLLECTOR_CLUSTER)
                    ),
                    service_name="socialmesh-edge",
                )
            ),
        ),
        random_sampling=Percent(value=100.0),
    )


#: One JSON object per request: what ops search by (request id, trace, client, gRPC
#: status, upstream) next to the usual HTTP fields.
ACCESS_LOG_FIELDS = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "traceparent": "%REQ(TRACEPARENT)%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "protocol": "%PROTOCOL%",
    "status": "%RESPONSE_CODE%",
    "grpc_status": "%GRPC_STATUS%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "upstream": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "user_agent": "%REQ(USER-AGENT)%",
}


def _pack_access_log() -> AccessLog:
    """JSON access log on stdout, one object per request (`ACCESS_LOG_FIELDS`)."""
    return AccessLog(
        name="envoy.access_loggers.stdout",
        typed_config=Any.pack(
            StdoutAccessLog(
                log_format=SubstitutionFormatString(
                    json_format=Struct.from_dict(dict(ACCESS_LOG_FIELDS))
                )
            )
        ),
    )
