"""Builds the Envoy edge bootstrap from typed `envoy-data-plane` classes and renders YAML.

The config is data: every piece is a betterproto2 dataclass generated from Envoy's own
protos (so a misspelt field fails here, not at Envoy start-up), and everything that depends
on the API contract - routes, JWT rules, transcoded services - is derived from the
descriptor set that `make gen` builds from proto/. Adding a service means adding an
`Upstream`; nothing in this file names a particular service or method.

Request path through the single listener (REST/JSON over HTTP/1.1 or HTTP/2, and native
gRPC over h2c, on the same port):

    cors -> health_check -> local_ratelimit -> buffer -> lua -> jwt_authn
         -> grpc_json_transcoder -> router

* CORS first, so preflights are answered before anything can reject them, and so that
  401/429 replies still carry CORS headers (a browser could not read them otherwise).
* Rate limiting before JWT verification: a flood of forged tokens must not cost signatures.
* The buffer filter caps every non-streaming request body (413) before any work is done
  on it; the Lua filter only normalizes the `Bearer` scheme's case for jwt_authn.
* jwt_authn before the transcoder: its rules see the path the client sent (REST or gRPC
  form); the transcoder rewrites REST requests to `/<service>/<Method>` afterwards and
  clears the route cache, so the router routes on the gRPC path.

Who may call what comes from the contract's `(socialmesh.api.v1.access)` method option:
METHOD_ACCESS_PUBLIC methods accept anonymous callers, unset means a signed-in user, and
METHOD_ACCESS_INTERNAL methods (other services only) are not part of the edge's API at
all - every path to them, native gRPC or REST, is answered 404 by the first routes.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

import betterproto2
import yaml
from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog, AccessLogFilter, ExtensionFilter
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import (
    CircuitBreakers,
    CircuitBreakersThresholds,
    CircuitBreakersThresholdsRetryBudget,
    Cluster,
    ClusterCustomClusterType,
    ClusterDiscoveryType,
    ClusterLbPolicy,
    OutlierDetection,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    DataSource,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    HeaderValue,
    HeaderValueOption,
    HealthCheck,
    HealthCheckGrpcHealthCheck,
    Http2ProtocolOptions,
    HttpProtocolOptions,
    HttpProtocolOptionsHeadersWithUnderscoresAction,
    KeepaliveSettings,
    Metadata,
    RuntimeFractionalPercent,
    SocketAddress,
    SubstitutionFormatString,
    TransportSocket,
    TypedExtensionConfig,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener, ListenerFilter
from envoy_data_plane.envoy.config.overload.v3 import (
    OverloadAction,
    OverloadManager,
    ResourceMonitor,
    ThresholdTrigger,
    Trigger,
)
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    FilterConfig,
    HeaderMatcher,
    QueryParameterMatcher,
    RateLimit,
    RateLimitAction,
    RateLimitActionRemoteAddress,
    RetryPolicy,
    RetryPolicyRetryHostPredicate,
    Route,
    RouteAction,
    RouteActionMaxStreamDuration,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.config.trace.v3 import OpenTelemetryConfig, TracingHttp
from envoy_data_plane.envoy.extensions.access_loggers.filters.cel.v3 import ExpressionFilter
from envoy_data_plane.envoy.extensions.access_loggers.stream.v3 import StdoutAccessLog
from envoy_data_plane.envoy.extensions.clusters.common.dns.v3 import DnsLookupFamily
from envoy_data_plane.envoy.extensions.clusters.dns.v3 import DnsCluster
from envoy_data_plane.envoy.extensions.common.ratelimit.v3 import (
    LocalRateLimitDescriptor,
    RateLimitDescriptorEntry,
)
from envoy_data_plane.envoy.extensions.compression.brotli.compressor.v3 import Brotli
from envoy_data_plane.envoy.extensions.compression.gzip.compressor.v3 import Gzip
from envoy_data_plane.envoy.extensions.filters.http.buffer.v3 import Buffer, BufferPerRoute
from envoy_data_plane.envoy.extensions.filters.http.compressor.v3 import (
    Compressor,
    CompressorCommonDirectionConfig,
    CompressorResponseDirectionConfig,
)
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import Cors, CorsPolicy
from envoy_data_plane.envoy.extensions.filters.http.grpc_json_transcoder.v3 import (
    GrpcJsonTranscoder,
    GrpcJsonTranscoderPrintOptions,
    GrpcJsonTranscoderRequestValidationOptions,
)
from envoy_data_plane.envoy.extensions.filters.http.grpc_web.v3 import GrpcWeb
from envoy_data_plane.envoy.extensions.filters.http.health_check.v3 import (
    HealthCheck as HealthCheckFilter,
)
from envoy_data_plane.envoy.extensions.filters.http.jwt_authn.v3 import (
    JwtAuthentication,
    JwtHeader,
    JwtProvider,
    JwtRequirement,
    JwtRequirementOrList,
    RequirementRule,
)
from envoy_data_plane.envoy.extensions.filters.http.local_ratelimit.v3 import LocalRateLimit
from envoy_data_plane.envoy.extensions.filters.http.lua.v3 import Lua
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.listener.http_inspector.v3 import HttpInspector
from envoy_data_plane.envoy.extensions.filters.listener.tls_inspector.v3 import TlsInspector
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpConnectionManagerPathWithEscapedSlashesAction,
    HttpConnectionManagerTracing,
    HttpFilter,
    LocalReplyConfig,
    ResponseMapper,
)
from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
    DownstreamConnectionsConfig,
)
from envoy_data_plane.envoy.extensions.resource_monitors.fixed_heap.v3 import FixedHeapConfig
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3 import PreviousHostsPredicate
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import (
    CommonTlsContext,
    DownstreamTlsContext,
    TlsCertificate,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions as UpstreamHttpProtocolOptions,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher
from envoy_data_plane.envoy.type.v3 import (
    FractionalPercent,
    FractionalPercentDenominatorType,
    Percent,
    TokenBucket,
)
from envoy_data_plane.google.protobuf import Any, Empty, Struct
from socialmesh.api.v1 import access_pb2

from .body_fields import Schemas, body_schemas, lua_table
from .descriptors import Contract, HttpBinding, MethodInfo, load_contract, with_error_detail_types

__all__ = [
    "MAX_REQUEST_BODY_BYTES",
    "MAX_RESPONSE_BODY_BYTES",
    "STRIPPED_IDENTITY_HEADERS",
    "EdgeSettings",
    "FileRoute",
    "Upstream",
    "build_bootstrap",
    "render_yaml",
]

# Identity headers only the edge or the services may mint. jwt_authn verifies tokens but
# leaves any such header a client sends untouched, so a service trusting one could be fooled
# (see envoyproxy/envoy#35553). Removed from every forwarded request, at the route-config
# level so no route can forget it.
STRIPPED_IDENTITY_HEADERS: tuple[str, ...] = (
    "x-user-id",
    "x-jwt-payload",
    "x-socialmesh-user",
    "x-socialmesh-user-id",
)

JWT_PROVIDER = "socialmesh"
LISTENER_NAME = "edge"
ROUTE_CONFIG_NAME = "edge_routes"

# HTTP filter names double as the keys of typed_per_filter_config maps.
CORS_FILTER = "envoy.filters.http.cors"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
HEALTH_CHECK_FILTER = "envoy.filters.http.health_check"
HEALTH_PATH = "/healthz"
JWT_FILTER = "envoy.filters.http.jwt_authn"
BUFFER_FILTER = "envoy.filters.http.buffer"
LUA_FILTER = "envoy.filters.http.lua"
TRANSCODER_FILTER = "envoy.filters.http.grpc_json_transcoder"
GRPC_WEB_FILTER = "envoy.filters.http.grpc_web"
BROTLI_FILTER = "envoy.filters.http.compressor.brotli"
GZIP_FILTER = "envoy.filters.http.compressor.gzip"
ROUTER_FILTER = "envoy.filters.http.router"

CORS_ALLOW_METHODS = "GET,POST,PATCH,DELETE,OPTIONS"
#: What a browser may send: credentials, JSON, idempotent retries, conditional reads, SSE
#: resume, the refresh-cookie switch, and gRPC-Web (the grpc_web filter serves it).
CORS_ALLOW_HEADERS = ",".join(
    (
        "authorization",
        "content-type",
        "idempotency-key",
        "if-none-match",
        "last-event-id",
        "x-refresh-token-transport",
        "x-request-id",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
    )
)
#: What a browser script may read: the request id for support, the rate-limit signal,
#: why a token was refused, cache validators, and gRPC-Web's status.
CORS_EXPOSE_HEADERS = ",".join(
    (
        "x-request-id",
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "www-authenticate",
        "etag",
        "grpc-status",
        "grpc-message",
    )
)
#: Responses smaller than this are sent as they are. What is compressed is Envoy's
#: default set of text types (JSON, HTML, JS, CSS, SVG, plain text, XML): API JSON and
#: the OpenAPI document. Never text/event-stream (not in the set: a compressor would
#: hold bytes back from a live stream), nor gRPC, nor anything already encoded (the
#: web app's server sends its files precompressed).
COMPRESS_MIN_BYTES = 512

# Upstream resilience knobs shared by every service cluster.
CONNECT_TIMEOUT = timedelta(seconds=1)
CONNECTION_BUFFER_BYTES = 32 * 1024
HEAP_MONITOR = "envoy.resource_monitors.fixed_heap"
CONNECTIONS_MONITOR = "envoy.resource_monitors.global_downstream_max_connections"
HEALTH_CHECK_INTERVAL = timedelta(seconds=2)
HEALTH_CHECK_TIMEOUT = timedelta(seconds=1)
RETRIES_ON_UNAVAILABLE = 2
# Envoy's HTTP/2 PING to each upstream connection: how long it waits for the ACK before
# closing the connection (the interval is EdgeSettings.upstream_keepalive_interval_seconds).
UPSTREAM_KEEPALIVE_TIMEOUT = timedelta(seconds=5)

# What the transcoder may buffer per request. It holds a whole unary request or response to
# convert it, and without these limits the buffer is the stream's buffer limit: 64 KiB for
# HTTP/2 clients (initial_stream_window_size below), 1 MiB over HTTP/1.1. So the same REST
# call answered 200 over HTTP/1.1 and, once its JSON passed 64 KiB (a page of 30 long posts
# does), 500 "Response not transcoded because the transcoder's internal buffer ..." over
# HTTP/2. Both limits are now explicit and the same for every protocol.
# * Responses: a full page of the largest lists (BatchGetPosts/BatchGetUsers of 500,
#   ListFollowers of 1000) is some 100-600 KB of JSON; 4 MiB leaves several times that
#   while still bounding what one response can make the edge hold.
# * Requests: the transcoder converts a JSON body as it arrives and holds only what it has
#   not parsed yet, so for JSON this bounds that backlog (about one read), not the body; it
#   is the whole body only for unary google.api.HttpBody requests (none yet). 1 MiB, the
#   HTTP/1.1 default, is far above the largest body a client sends (a 5,000-character
#   post: ~60 KB as JSON at worst). What really caps a JSON body is the service's gRPC
#   receive limit (4 MiB), answered RESOURCE_EXHAUSTED, i.e. 429.
MAX_REQUEST_BODY_BYTES = 1024 * 1024
# The edge-wide cap on a request body, enforced by the buffer filter before jwt_authn and
# the transcoder: larger bodies get 413 and never reach a service (a 10 MB JSON body used
# to reach it and come back as the gRPC receive limit's RESOURCE_EXHAUSTED, i.e. 429).
# The transcoder's max_request_body_size cannot do this: it bounds only what it has not
# parsed yet, so over HTTP/2 a JSON body of any size streams through it. The largest body
# a client sends is a 5,000-character post (~60 KB as JSON at worst); 256 KiB leaves room.
# Streaming routes are exempt (a stream is not one body; their messages are bounded by
# the services' gRPC receive limit).
MAX_EDGE_REQUEST_BYTES = 256 * 1024

# The edge's Lua filter (one script, two jobs):
# * RFC 7235: the auth scheme is case-insensitive, and the services accept any case; the
#   jwt_authn extractor only knows an exact `value_prefix`. This rewrites the scheme of a
#   bearer credential to `Bearer` before jwt_authn, so `bearer <token>` is verified at the
#   edge (on public routes it used to pass as anonymous, checked only by the service).
# * Unknown JSON body fields: Envoy's transcoder drops them and forwards the call
#   (envoyproxy/envoy#46623), so a typo loses data silently. The script walks each
#   POST/PATCH body against its message's fields (gateway/body_fields.py; the route's
#   metadata names the message per verb) and answers 400 naming the first unknown one.
# * Conditional reads: every successful JSON GET gets a weak ETag (FNV-1a of the body, as
#   the viewer sees it) and `Cache-Control: private, no-cache` (it is per viewer: only the
#   browser may keep it, and must revalidate); a request whose If-None-Match names it gets
#   304 with no body, so a client polling a profile or a post moves no payload. Streams
#   (text/event-stream) and errors are never buffered here.
EDGE_LUA = r"""
local bit = require("bit")
-- SCHEMAS (message -> field -> nested message or true) is prepended by _edge_lua.

local function fnv1a(data)
  local hash = 2166136261
  for i = 1, #data do
    hash = bit.bxor(hash, string.byte(data, i))
    -- hash * 16777619 (2^24 + 403) modulo 2^32, exact in doubles
    hash = bit.tobit(bit.lshift(hash, 24) + hash * 403)
  end
  return bit.tohex(hash)
end

local function names(header, tag)
  for candidate in string.gmatch(header, "[^,]+") do
    candidate = string.gsub(candidate, "^%s*W/", "")
    candidate = string.gsub(string.gsub(candidate, "^%s+", ""), "%s+$", "")
    if candidate == tag or candidate == "*" then return true end
  end
  return false
end

local ESCAPES = {b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}

local function skip(s, i)
  return string.find(s, "[^ \t\r\n]", i) or (#s + 1)
end

-- A JSON string starting at s[i] == '"': its text (\u escapes become "?", so such a
-- key never names a field) and the index after it; nil if unterminated.
local function read_string(s, i)
  local out, j = {}, i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if k == nil then return nil end
    out[#out + 1] = string.sub(s, j, k - 1)
    if string.sub(s, k, k) == '"' then return table.concat(out), k + 1 end
    local e = string.sub(s, k + 1, k + 1)
    if e == "u" then
      out[#out + 1] = "?"
      j = k + 6
    else
      out[#out + 1] = ESCAPES[e] or e
      j = k + 2
    end
  end
end

-- Walks one JSON value at s[i] against `schema` (a message name in SCHEMAS, or nil:
-- anything goes). Returns the index after it; nil if the JSON is malformed (the
-- transcoder then says how); raises {field = path} at the first unknown field.
local function walk(s, i, schema, path)
  i = skip(s, i)
  local c = string.sub(s, i, i)
  if c == "{" then
    local fields = schema and SCHEMAS[schema]
    i = skip(s, i + 1)
    if string.sub(s, i, i) == "}" then return i + 1 end
    while true do
      if string.sub(s, i, i) ~= '"' then return nil end
      local key
      key, i = read_string(s, i)
      if key == nil then return nil end
      local where = (path == "") and key or (path .. "." .. key)
      local nested = nil
      if fields then
        local rule = fields[key]
        if rule == nil then error({field = where}) end
        if rule == false then error({field = where, in_path = true}) end
        if rule ~= true then nested = rule end
      end
      i = skip(s, i)
      if string.sub(s, i, i) ~= ":" then return nil end
      i = walk(s, i + 1, nested, where)
      if i == nil then return nil end
      i = skip(s, i)
      local d = string.sub(s, i, i)
      if d == "}" then return i + 1 end
      if d ~= "," then return nil end
      i = skip(s, i + 1)
    end
  elseif c == "[" then
    i = skip(s, i + 1)
    if string.sub(s, i, i) == "]" then return i + 1 end
    while true do
      i = walk(s, i, schema, path)
      if i == nil then return nil end
      i = skip(s, i)
      local d = string.sub(s, i, i)
      if d == "]" then return i + 1 end
      if d ~= "," then return nil end
      i = i + 1  -- past the comma: else the next element is the comma, for ever
    end
  elseif c == '"' then
    local _, j = read_string(s, i)
    return j
  elseif c == "" then
    return nil
  end
  return string.find(s, "[,%]} \t\r\n]", i) or (#s + 1)
end

-- The first field the body may not carry (nil if none), and whether the path binds it.
local function unknown_field(body, schema)
  local ok, err = pcall(walk, body, 1, schema, "")
  if not ok and type(err) == "table" then return err.field, err.in_path end
  return nil
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local value = headers:get("authorization")
  if value ~= nil then
    local scheme, rest = string.match(value, "^(%S+)%s+(.*)$")
    if scheme ~= nil and scheme ~= "Bearer" and string.lower(scheme) == "bearer" then
      headers:replace("authorization", "Bearer " .. rest)
    end
  end
  local method = headers:get(":method")
  if method == "GET" then
    local meta = handle:streamInfo():dynamicMetadata()
    meta:set("socialmesh.edge", "get", "1")
    local match = headers:get("if-none-match")
    if match ~= nil then meta:set("socialmesh.edge", "if_none_match", match) end
    return
  end
  local bodies = handle:metadata():get("bodies")
  local schema = bodies and bodies[method]
  if schema == nil then return end
  local body = handle:body()
  if body == nil or body:length() == 0 then return end
  local field, in_path = unknown_field(body:getBytes(0, body:length()), schema)
  if in_path then
    handle:respond(
      {[":status"] = "400", [PATH_FIELD_HEADER] = field},
      "invalid request: " .. field .. ": already given in the path; do not repeat it in the body"
    )
  elseif field ~= nil then
    handle:respond(
      {[":status"] = "400", [UNKNOWN_FIELD_HEADER] = field},
      "invalid request: " .. field .. ": no such field in this request"
    )
  end
end

function envoy_on_response(handle)
  local meta = handle:streamInfo():dynamicMetadata():get("socialmesh.edge")
  if meta == nil or meta["get"] ~= "1" then return end
  local headers = handle:headers()
  local ctype = headers:get("content-type") or ""
  if headers:get(":status") ~= "200" or string.sub(ctype, 1, 16) ~= "application/json" then
    return
  end
  if headers:get("etag") ~= nil then return end
  local body = handle:body()
  local data = body:getBytes(0, body:length())
  local tag = '"' .. fnv1a(data) .. "-" .. tostring(#data) .. '"'
  -- body() waited for the whole body: header handles from before it are stale.
  headers = handle:headers()
  headers:replace("etag", "W/" .. tag)
  headers:replace("cache-control", "private, no-cache")
  headers:replace("vary", "Authorization, Accept-Encoding")
  local match = meta["if_none_match"]
  if match ~= nil and names(match, tag) then
    headers:replace(":status", "304")
    headers:remove("content-type")
    headers:remove("content-length")
    body:setBytes("")
  end
end
"""
#: Set by the Lua filter on its 400 for an unknown body field (the local-reply mapper
#: puts it in the BadRequest field violation).
UNKNOWN_FIELD_HEADER = "x-socialmesh-unknown-field"
#: The same for a body field the path already binds (FIELD_IN_PATH).
PATH_FIELD_HEADER = "x-socialmesh-path-field"


def _edge_lua(schemas: Schemas) -> str:
    return (
        f"local SCHEMAS = {lua_table(schemas)}\n"
        f'local UNKNOWN_FIELD_HEADER = "{UNKNOWN_FIELD_HEADER}"\n'
        f'local PATH_FIELD_HEADER = "{PATH_FIELD_HEADER}"\n' + EDGE_LUA
    )


MAX_RESPONSE_BODY_BYTES = 4 * 1024 * 1024

# The reply to any path the edge does not serve - including every internal method.
NOT_FOUND_BODY = "no such API route"

_UPSTREAM_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


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


def build_bootstrap(settings: EdgeSettings, upstreams: Sequence[Upstream]) -> Bootstrap:
    """The whole static bootstrap: admin, one listener, one cluster per upstream."""
    _check_settings(settings, upstreams)
    contract = with_error_detail_types(load_contract(settings.descriptor_path))
    methods = {u.name: contract.methods(u.grpc_service) for u in upstreams}
    problems = contract.transcoding_problems(u.grpc_service for u in upstreams)
    problems += _access_problems(methods)
    if settings.app_files:
        # The app's catch-all would otherwise answer GETs of a binding outside /v1/.
        problems += [
            f"{m.full_name}: REST path {b.template} is not under {API_PREFIX}"
            for ms in methods.values()
            for m in ms
            for b in m.http
            if not b.template.startswith(API_PREFIX)
        ]
    if problems:
        # Envoy would refuse the config anyway, one method at a time and less legibly.
        raise ValueError("contract cannot be served by the edge:\n  " + "\n  ".join(problems))
    return Bootstrap(
        admin=Admin(address=_socket("127.0.0.1", settings.admin_port)),
        overload_manager=_overload_manager(settings),
        static_resources=BootstrapStaticResources(
            listeners=[_listener(settings, upstreams, methods, contract)],
            clusters=[_cluster(u, settings) for u in upstreams]
            + [_file_cluster(f) for f in settings.file_routes]
            + ([_file_cluster(settings.app_files)] if settings.app_files else [])
            + ([_collector_cluster(settings.otlp_collector)] if settings.otlp_collector else []),
        ),
    )


def _overload_manager(settings: EdgeSettings) -> OverloadManager:
    """Sheds load before Envoy runs out of memory or file descriptors (edge-proxy guide)."""

    def at(fraction: float) -> Trigger:
        return Trigger(name=HEAP_MONITOR, threshold=ThresholdTrigger(value=fraction))

    return OverloadManager(
        refresh_interval=timedelta(milliseconds=250),
        resource_monitors=[
            ResourceMonitor(
                name=HEAP_MONITOR,
                typed_config=Any.pack(FixedHeapConfig(max_heap_size_bytes=settings.max_heap_bytes)),
            ),
            # A proactive monitor: connections past the cap are refused at accept.
            ResourceMonitor(
                name=CONNECTIONS_MONITOR,
                typed_config=Any.pack(
                    DownstreamConnectionsConfig(
                        max_active_downstream_connections=settings.max_downstream_connections
                    )
                ),
            ),
        ],
        actions=[
            OverloadAction(name="envoy.overload_actions.shrink_heap", triggers=[at(0.95)]),
            OverloadAction(
                name="envoy.overload_actions.disable_http_keepalive", triggers=[at(0.95)]
            ),
            OverloadAction(
                name="envoy.overload_actions.stop_accepting_requests", triggers=[at(0.98)]
            ),
        ],
    )


def _access_problems(methods: dict[str, tuple[MethodInfo, ...]]) -> list[str]:
    """Methods whose access option this builder does not know how to enforce.

    A newer contract could add a MethodAccess value (say, "services of one kind only");
    treating it as "signed-in user" would quietly route it, so the build fails instead.
    """
    known = set(access_pb2.MethodAccess.values())
    return [
        f"{m.full_name}: unknown (socialmesh.api.v1.access) value {m.access}; teach "
        "gateway/envoy_config.py what the edge must do with it"
        for ms in methods.values()
        for m in ms
        if m.access not in known
    ]


def render_yaml(settings: EdgeSettings, upstreams: Sequence[Upstream]) -> str:
    """The bootstrap as Envoy YAML (proto3 JSON mapping, original proto field names)."""
    return yaml.safe_dump(to_config_dict(build_bootstrap(settings, upstreams)), sort_keys=False)


def to_config_dict(message: betterproto2.Message) -> dict[str, object]:
    """Proto3-JSON dict of a typed Envoy message, keyed by the proto field names.

    Neither of betterproto2's casings round-trips Envoy's field names: both split digit
    runs (`consecutive_5xx` becomes `consecutive_5_xx` / `consecutive5Xx`, which Envoy
    rejects as an unknown field). The Python attribute names *are* the proto names
    (keyword clashes get a trailing `_`, which to_dict strips), so the key function is
    the identity. `to_dict` only ever calls `casing(name)`, hence the cast.
    """
    identity = cast(betterproto2.Casing, _proto_field_name)
    return cast(dict[str, object], _integral_floats_as_ints(message.to_dict(casing=identity)))


def _integral_floats_as_ints(value: object) -> object:
    """google.protobuf.Struct holds every number as a double, which the YAML would print
    as `16.0` - and Envoy's JSON formatter then writes the literal as the string "16.0"
    (a local reply's `code` must be the number 16). Whole doubles print as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def _proto_field_name(name: str) -> str:
    return name


# --------------------------------------------------------------------------- listener


def _listener(
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
        route_config=_route_config(settings, upstreams, methods, bodies),
        http_filters=[
            _http_filter(CORS_FILTER, Cors()),
            # Browsers can call the gRPC contracts directly (gRPC-Web -> gRPC).
            _http_filter(GRPC_WEB_FILTER, GrpcWeb()),
            # Answers GET /healthz on the public listener (200, or 503 while the
            # edge drains) so orchestrators can probe it without the admin port,
            # which stays on loopback. Before jwt_authn: probes carry no token.
            _http_filter(
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
            _http_filter(BROTLI_FILTER, _compressor(Brotli(quality=4), first=True)),
            _http_filter(GZIP_FILTER, _compressor(Gzip(), first=False)),
            _http_filter(RATE_LIMIT_FILTER, _rate_limit(settings)),
            _http_filter(BUFFER_FILTER, Buffer(max_request_bytes=MAX_EDGE_REQUEST_BYTES)),
            _http_filter(
                LUA_FILTER, Lua(default_source_code=DataSource(inline_string=_edge_lua(schemas)))
            ),
            _http_filter(JWT_FILTER, _jwt_authn(settings, methods)),
            _http_filter(TRANSCODER_FILTER, _transcoder(upstreams, contract)),
            _http_filter(ROUTER_FILTER, Router()),
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
        local_reply_config=_local_replies(),
        # Every response carries the id the access log and traces have (support tickets).
        always_set_request_id_in_response=True,
        tracing=_tracing(settings),
    )
    return Listener(
        name=LISTENER_NAME,
        address=_socket(settings.bind_address, settings.edge_port),
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


OTEL_COLLECTOR_CLUSTER = "otel_collector"
MAX_DIRECT_RESPONSE_BYTES = 4 * 1024 * 1024


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


def _collector_cluster(address: str) -> Cluster:
    """HTTP/2 cluster for the OTLP collector (no health check: tracing is best effort)."""
    host, _, port = address.rpartition(":")
    cluster = Cluster(
        name=OTEL_COLLECTOR_CLUSTER,
        connect_timeout=CONNECT_TIMEOUT,
        load_assignment=ClusterLoadAssignment(
            cluster_name=OTEL_COLLECTOR_CLUSTER,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=_socket(host, int(port))))]
                )
            ],
        ),
    )
    if _is_ip(host):
        cluster.type = ClusterDiscoveryType.STATIC
    else:
        cluster.cluster_type = ClusterCustomClusterType(
            name="envoy.clusters.dns",
            typed_config=Any.pack(DnsCluster(dns_lookup_family=DnsLookupFamily.V4_PREFERRED)),
        )
    cluster.typed_extension_protocol_options = {
        _UPSTREAM_PROTOCOL_OPTIONS_KEY: Any.pack(
            UpstreamHttpProtocolOptions(
                explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                    http2_protocol_options=Http2ProtocolOptions()
                )
            )
        )
    }
    return cluster


#: The `domain` of every ErrorInfo the edge itself writes: the services' one
#: (services/kit/errors.py ERROR_DOMAIN; docs/errors.md), so clients see one scheme.
EDGE_ERROR_DOMAIN = "socialmesh.dev"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
#: CEL: the client did not call over gRPC. gRPC callers get Envoy's own trailers-only
#: replies (grpc-status + grpc-message), where a JSON body would land in grpc-message.
#: The transcoder rewrites a REST request's content-type to application/grpc before it
#: parses path and body, and records the client's path in x-envoy-original-path (a
#: header Envoy strips from what clients send): such a request is still a REST one.
_NOT_GRPC = (
    "!('content-type' in request.headers && "
    "request.headers['content-type'].startsWith('application/grpc') && "
    "!('x-envoy-original-path' in request.headers))"
)


@dataclass(frozen=True)
class LocalReply:
    """How one kind of reply Envoy makes by itself reaches a REST client.

    `when` is a CEL expression over the request and response (Envoy's attributes, e.g.
    `response.code_details`, the `%RESPONSE_CODE_DETAILS%` of the access log)."""

    when: str
    grpc_code: int
    reason: str
    #: Replaces Envoy's own text (kept when empty: it names the field or the limit).
    message: str = ""
    #: The HTTP status to answer with instead of Envoy's (0: keep it).
    status: int = 0
    retry_after_seconds: int = 0
    #: A response header naming the offending field: becomes a BadRequest violation.
    field_header: str = ""


def _code_details(prefix: str) -> str:
    return f"response.code_details.startsWith('{prefix}')"


#: First match wins. Every reply Envoy generates itself (jwt_authn, the transcoder, the
#: buffer and rate-limit filters, routing, upstream failures) becomes the same
#: google.rpc.Status JSON the services send, with a specific ErrorInfo reason - so a
#: client decides "refresh", "sign in" or "retry" from the reason, never from a message.
LOCAL_REPLIES: tuple[LocalReply, ...] = (
    LocalReply(
        _code_details("jwt_authn_access_denied{Jwt_is_expired"),
        16,
        "TOKEN_EXPIRED",
        "the access token has expired: refresh it (POST /v1/auth:refresh)",
    ),
    LocalReply(
        _code_details("jwt_authn_access_denied{Jwt_is_missing"),
        16,
        "TOKEN_MISSING",
        "this call needs a signed-in user: send Authorization: Bearer <access token>",
    ),
    # Everything else jwt_authn refuses: bad signature, unknown issuer, malformed, and a
    # token minted for another audience. jwt_authn answers the last with 403 (and, contra-
    # dicting itself, `WWW-Authenticate: ... error="invalid_token"`); RFC 6750 makes
    # invalid_token a 401, and clients treat 401 as "get a new token" but 403 as "you may
    # not" - for a foreign token the first is right. A service's PERMISSION_DENIED, which
    # the transcoder converts on the response path, is no local reply and stays 403.
    LocalReply(
        _code_details("jwt_authn_access_denied"),
        16,
        "TOKEN_INVALID",
        "the access token is not valid here: sign in again",
        status=401,
    ),
    LocalReply("response.code == 404", 5, "ROUTE_NOT_FOUND", "no such API route"),
    LocalReply(
        "response.code_details.contains('grpc_json_transcode_failure')", 3, "MALFORMED_REQUEST"
    ),
    LocalReply("response.code == 413", 3, "PAYLOAD_TOO_LARGE", "the request body is too large"),
    LocalReply("response.code == 431", 3, "HEADERS_TOO_LARGE", "the request headers are too large"),
    LocalReply("response.code == 414", 3, "URI_TOO_LONG", "the request URI is too long"),
    LocalReply(
        "response.code == 429",
        8,
        "RATE_LIMITED",
        "too many requests from this client: retry after the Retry-After delay",
        retry_after_seconds=1,
    ),
    LocalReply(
        f"response.code == 400 && '{UNKNOWN_FIELD_HEADER}' in response.headers",
        3,
        "UNKNOWN_FIELD",
        field_header=UNKNOWN_FIELD_HEADER,
    ),
    LocalReply(
        f"response.code == 400 && '{PATH_FIELD_HEADER}' in response.headers",
        3,
        "FIELD_IN_PATH",
        field_header=PATH_FIELD_HEADER,
    ),
    LocalReply("response.code == 400", 3, "INVALID_ARGUMENT"),
    LocalReply("response.code == 405", 12, "METHOD_NOT_ALLOWED", "method not allowed here"),
    LocalReply(
        "response.code == 503 || response.code == 502",
        14,
        "UNAVAILABLE",
        "the service is unavailable: retry shortly",
        retry_after_seconds=1,
    ),
    LocalReply(
        "response.code == 504", 4, "DEADLINE_EXCEEDED", "the service did not answer in time"
    ),
    LocalReply("response.code >= 400", 2, "EDGE_ERROR"),
)


def _local_replies() -> LocalReplyConfig:
    """`LOCAL_REPLIES` as response mappers (they only ever touch Envoy's own replies)."""
    return LocalReplyConfig(mappers=[_response_mapper(reply) for reply in LOCAL_REPLIES])


def _response_mapper(reply: LocalReply) -> ResponseMapper:
    details: list[dict[str, object]] = [
        {
            "@type": _ERROR_INFO,
            "reason": reply.reason,
            "domain": EDGE_ERROR_DOMAIN,
            "metadata": {"requestId": "%REQ(X-REQUEST-ID)%"},
        }
    ]
    if reply.field_header:
        details.append(
            {
                "@type": _BAD_REQUEST,
                "fieldViolations": [
                    {
                        "field": f"%RESP({reply.field_header})%",
                        "description": "%LOCAL_REPLY_BODY%",
                        "reason": reply.reason,
                    }
                ],
            }
        )
    headers: list[HeaderValueOption] = []
    if reply.retry_after_seconds:
        details.append({"@type": _RETRY_INFO, "retryDelay": f"{reply.retry_after_seconds}s"})
        headers.append(
            HeaderValueOption(
                header=HeaderValue(key="retry-after", value=str(reply.retry_after_seconds))
            )
        )
    if reply.reason == "RATE_LIMITED":
        # The same set a service's 429 carries (services/kit/errors.py ResourceExhausted).
        for key, value in (
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", str(reply.retry_after_seconds)),
        ):
            headers.append(HeaderValueOption(header=HeaderValue(key=key, value=value)))
    body = {
        "code": reply.grpc_code,
        "message": reply.message or "%LOCAL_REPLY_BODY%",
        "details": details,
    }
    mapper = ResponseMapper(
        filter=AccessLogFilter(
            extension_filter=ExtensionFilter(
                name="envoy.access_loggers.extension_filters.cel",
                typed_config=Any.pack(
                    ExpressionFilter(expression=f"{_NOT_GRPC} && ({reply.when})")
                ),
            )
        ),
        body_format_override=SubstitutionFormatString(
            json_format=Struct.from_dict(body),
            content_type="application/json",
        ),
        headers_to_add=headers,
    )
    if reply.status:
        mapper.status_code = reply.status
    return mapper


def _compressor(library: Brotli | Gzip, *, first: bool) -> Compressor:
    """A response compressor (see `COMPRESS_MIN_BYTES` for what it compresses)."""
    name = "brotli" if isinstance(library, Brotli) else "gzip"
    return Compressor(
        compressor_library=TypedExtensionConfig(
            name=f"envoy.compression.{name}.compressor", typed_config=Any.pack(library)
        ),
        response_direction_config=CompressorResponseDirectionConfig(
            common_config=CompressorCommonDirectionConfig(min_content_length=COMPRESS_MIN_BYTES),
        ),
        choose_first=first,
    )


def _http_filter(name: str, config: betterproto2.Message) -> HttpFilter:
    return HttpFilter(name=name, typed_config=Any.pack(config))


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


# ----------------------------------------------------------------------------- routes


def _route_config(
    settings: EdgeSettings,
    upstreams: Sequence[Upstream],
    methods: dict[str, tuple[MethodInfo, ...]],
    bodies: dict[str, str],
) -> RouteConfiguration:
    """Routes on the gRPC path (post-transcoding), most specific first.

    First the refusals: every METHOD_ACCESS_INTERNAL method's gRPC path answers 404
    (before the `/<service>/` prefix routes would forward it). Per-method routes exist
    only where a method differs from its service's default: idempotent reads (retried on
    UNAVAILABLE) and streaming calls (no route timeout). Everything else falls to the
    `/<service>/` prefix route. Then come REST-path routes that only matter before
    transcoding (see below), and a catch-all answering 404.
    """
    unary_timeout = timedelta(seconds=settings.request_timeout_seconds)
    routes: list[Route] = [_file_route(f) for f in settings.file_routes]
    if settings.openapi_file:
        routes.append(_openapi_route(settings.openapi_file))
    routes += [
        _refusal(f"internal {m.full_name}", RouteMatch(path=m.grpc_path))
        for upstream in upstreams
        for m in methods[upstream.name]
        if m.internal
    ]
    for upstream in upstreams:
        for m in methods[upstream.name]:
            if m.internal or not (m.idempotent or m.streaming):
                continue
            routes.append(
                Route(
                    name=m.full_name,
                    match=RouteMatch(path=m.grpc_path),
                    route=_route_action(upstream, settings, m),
                    # A stream is not one body to buffer (see MAX_EDGE_REQUEST_BYTES).
                    typed_per_filter_config=_no_buffer() if m.streaming else {},
                )
            )
    for upstream in upstreams:
        routes.append(
            Route(
                name=upstream.grpc_service,
                match=RouteMatch(prefix=f"/{upstream.grpc_service}/"),
                route=RouteAction(
                    cluster=upstream.name,
                    timeout=unary_timeout,
                    max_stream_duration=RouteActionMaxStreamDuration(
                        grpc_timeout_header_max=unary_timeout
                    ),
                    retry_policy=_retry_policy(RETRY_ON_ANY),
                ),
            )
        )
    # Pre-transcoding routes for the REST paths. Never the final route of a transcoded
    # request (the transcoder rewrites the path and clears the route cache), but the
    # CORS filter runs before that and ignores requests whose route has no route entry:
    # a direct_response catch-all has none, so without these, preflights and CORS
    # headers silently disappear for every REST path.
    # A REST binding of an internal method (none has one today; nothing stops a contract
    # from adding one) gets a refusal instead, matched on verb and path. All of them in
    # the order the transcoder prefers templates (most specific first), refusals first
    # among equals, so a refusal never shadows a more specific public or private path.
    rest: list[tuple[tuple[int, ...], int, Route]] = []
    seen: set[str] = set()
    for upstream in upstreams:
        for m in methods[upstream.name]:
            for b in m.http:
                if m.internal:
                    match = RouteMatch(
                        safe_regex=RegexMatcher(regex=b.path_regex), headers=[_verb_matcher(b)]
                    )
                    route = _refusal(f"internal {b.verb} {b.template}", match)
                    rest.append((_specificity(b), 0, route))
                    continue
                for param, variable in _path_variable_params(b):
                    rest.append((_specificity(b), 0, _path_param_refusal(b, param, variable)))
                if b.path_regex in seen:
                    continue
                seen.add(b.path_regex)
                route = Route(
                    name=f"rest {b.template}",
                    match=RouteMatch(safe_regex=RegexMatcher(regex=b.path_regex)),
                    route=RouteAction(cluster=upstream.name, timeout=unary_timeout),
                    typed_per_filter_config=_no_buffer() if m.client_streaming else {},
                    metadata=_body_metadata(b.path_regex, methods, bodies),
                )
                rest.append((_specificity(b), 1, route))
    rest.sort(key=lambda item: item[:2])
    routes.extend(route for _, _, route in rest)
    if settings.app_files:
        # API paths the contract does not know stay the API's 404; everything else a
        # browser asks for (GET/HEAD) is the web app's to answer (its pages, assets, 404).
        routes.append(
            Route(
                name="api_not_found",
                match=RouteMatch(prefix=API_PREFIX),
                direct_response=_not_found(),
            )
        )
        routes.append(_file_route(settings.app_files))
    routes.append(
        Route(
            name="not_found",
            match=RouteMatch(prefix="/"),
            direct_response=_not_found(),
        )
    )
    return RouteConfiguration(
        name=ROUTE_CONFIG_NAME,
        # Direct responses are capped at 4 KiB by default; the OpenAPI document is larger.
        max_direct_response_body_size_bytes=MAX_DIRECT_RESPONSE_BYTES,
        virtual_hosts=[
            VirtualHost(
                name="api",
                domains=["*"],
                routes=routes,
                typed_per_filter_config={CORS_FILTER: Any.pack(_cors_policy(settings))},
            )
        ],
        request_headers_to_remove=list(STRIPPED_IDENTITY_HEADERS),
        # Local routes only reference static clusters; checking them at load is free.
        validate_clusters=True,
    )


def _body_metadata(
    path_regex: str, methods: dict[str, tuple[MethodInfo, ...]], bodies: dict[str, str]
) -> Metadata | None:
    """The Lua filter's per-verb body message for a REST path (its unknown-field check):
    every binding whose template has this regex, whichever method it belongs to."""
    by_verb = {
        b.verb: bodies[f"{b.verb} {b.template}"]
        for ms in methods.values()
        for m in ms
        if not m.internal
        for b in m.http
        if b.path_regex == path_regex and f"{b.verb} {b.template}" in bodies
    }
    if not by_verb:
        return None
    return Metadata(filter_metadata={LUA_FILTER: Struct.from_dict({"bodies": by_verb})})


def _not_found() -> DirectResponseAction:
    return DirectResponseAction(status=404, body=DataSource(inline_string=NOT_FOUND_BODY))


def _refusal(name: str, match: RouteMatch) -> Route:
    """A 404 for an internal method that no filter before the router can change.

    Envoy picks a request's filters by the route it first matches, so on this route:
    * jwt_authn is off: anonymous, signed-in and forged-token callers all get the same
      404, as for a path that does not exist (a 401 would say "this exists, bring a
      token", and the method is not the edge's to offer);
    * the transcoder is off: it could otherwise rewrite the path to another method's and
      re-route the request - past the jwt_authn it skipped here.
    The router then answers with the direct response (gRPC callers get it as a
    trailers-only UNIMPLEMENTED, as from a server without the method).
    """
    off = Any.pack(FilterConfig(disabled=True))
    return Route(
        name=name,
        match=match,
        direct_response=_not_found(),
        typed_per_filter_config={JWT_FILTER: off, TRANSCODER_FILTER: off},
    )


OPENAPI_PATH = "/openapi.json"
#: Every REST binding lives under it (checked in _check_settings).
API_PREFIX = "/v1/"


def _openapi_route(path: str) -> Route:
    """`GET /openapi.json`: the generated document, answered by Envoy (no token needed)."""
    off = Any.pack(FilterConfig(disabled=True))
    return Route(
        name="openapi",
        match=RouteMatch(
            path=OPENAPI_PATH,
            headers=[HeaderMatcher(name=":method", string_match=StringMatcher(exact="GET"))],
        ),
        direct_response=DirectResponseAction(status=200, body=DataSource(filename=path)),
        response_headers_to_add=[
            HeaderValueOption(header=HeaderValue(key="content-type", value="application/json"))
        ],
        # Lua off too: its ETag would buffer a body larger than the connection's buffer
        # limit (the transcoder raises that limit only for API calls).
        typed_per_filter_config={JWT_FILTER: off, TRANSCODER_FILTER: off, LUA_FILTER: off},
    )


def _no_buffer() -> dict[str, Any]:
    return {BUFFER_FILTER: Any.pack(BufferPerRoute(disabled=True))}


def _path_variable_params(binding: HttpBinding) -> list[tuple[str, str]]:
    """(query parameter, path variable) pairs that would re-bind a path variable.

    The transcoder lets a query parameter overwrite a field already bound from the path
    (`POST /v1/posts/{mine}:like?postId={theirs}` liked theirs), so the edge's access log
    and any path-based rule saw another object than the service acted on. Both spellings
    the transcoder accepts (field and JSON name) are refused.
    """
    pairs: list[tuple[str, str]] = []
    for variable in re.findall(r"\{([^}=]+)", binding.template):
        camel = ".".join(_json_name(part) for part in variable.split("."))
        for param in dict.fromkeys((variable, camel)):
            pairs.append((param, variable))
    return pairs


def _json_name(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _path_param_refusal(binding: HttpBinding, param: str, variable: str) -> Route:
    """400 for a query parameter naming a path-bound field, before any filter acts on it."""
    off = Any.pack(FilterConfig(disabled=True))
    # Plain text: the local reply mappers wrap it in a google.rpc.Status.
    body = (
        f"invalid request: {param}: already given in the path ({variable}); "
        "do not repeat it as a query parameter"
    )
    return Route(
        name=f"path param {param} {binding.verb} {binding.template}",
        match=RouteMatch(
            safe_regex=RegexMatcher(regex=binding.path_regex),
            headers=[_verb_matcher(binding)],
            query_parameters=[QueryParameterMatcher(name=param, present_match=True)],
        ),
        direct_response=DirectResponseAction(status=400, body=DataSource(inline_string=body)),
        typed_per_filter_config={JWT_FILTER: off, TRANSCODER_FILTER: off},
    )


def _verb_matcher(binding: HttpBinding) -> HeaderMatcher:
    return HeaderMatcher(name=":method", string_match=StringMatcher(exact=binding.verb))


def _route_action(upstream: Upstream, settings: EdgeSettings, m: MethodInfo) -> RouteAction:
    """Timeout and retry policy for one method's own route."""
    if m.streaming:
        # A finite route timeout would cut every long-lived stream; 0s disables it. The
        # client's grpc-timeout (if any) is still honoured, uncapped.
        action = RouteAction(
            cluster=upstream.name,
            timeout=timedelta(0),
            max_stream_duration=RouteActionMaxStreamDuration(grpc_timeout_header_max=timedelta(0)),
        )
    else:
        timeout = timedelta(seconds=settings.request_timeout_seconds)
        action = RouteAction(
            cluster=upstream.name,
            timeout=timeout,
            max_stream_duration=RouteActionMaxStreamDuration(grpc_timeout_header_max=timeout),
        )
    # Reads are retried on UNAVAILABLE, CANCELLED (what a stopping grpc server answers to
    # calls it will not run) and resets too (a retried write could apply twice),
    # but not client streams, whose request body Envoy would have to buffer to replay.
    if m.idempotent and not m.client_streaming:
        action.retry_policy = _retry_policy(RETRY_ON_READS)
    return action


#: Failures where the request never reached a servicer (no connection, or the stream
#: refused by a server that is shutting down): safe to retry for every method.
RETRY_ON_ANY = "connect-failure,refused-stream"
RETRY_ON_READS = "unavailable,cancelled,reset,connect-failure,refused-stream"


def _retry_policy(retry_on: str) -> RetryPolicy:
    """Retries go to another instance (`previous_hosts`): the one that failed is draining."""
    return RetryPolicy(
        retry_on=retry_on,
        num_retries=RETRIES_ON_UNAVAILABLE,
        retry_host_predicate=[
            RetryPolicyRetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=Any.pack(PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=3,
    )


def _cors_policy(settings: EdgeSettings) -> CorsPolicy:
    """Virtual-host wide CORS policy (the filter reads it via typed_per_filter_config)."""
    origins = [
        StringMatcher(safe_regex=RegexMatcher(regex=".*")) if o == "*" else StringMatcher(exact=o)
        for o in settings.cors_allowed_origins
    ]
    return CorsPolicy(
        allow_origin_string_match=origins,
        allow_methods=CORS_ALLOW_METHODS,
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age="600",
        # Bearer tokens travel in a header, never in cookies: no credentialed CORS.
        allow_credentials=False,
        # Answer preflights from disallowed origins here instead of sending OPTIONS on.
        forward_not_matching_preflights=False,
    )


# ---------------------------------------------------------------------------- filters


def _rate_limit(settings: EdgeSettings) -> LocalRateLimit:
    """A token bucket per client address, and the edge-wide one as a backstop; 429 when empty.

    The per-client bucket is a wildcard descriptor (`remote_address` without a value):
    Envoy keeps one bucket per distinct address, up to `rate_limit_clients` (LRU). The
    address is the socket peer (`use_remote_address`, no trusted hops), never a header.
    """
    everyone = RuntimeFractionalPercent(
        default_value=FractionalPercent(
            numerator=100, denominator=FractionalPercentDenominatorType.HUNDRED
        ),
    )
    rate = settings.rate_limit_per_second
    per_client = settings.rate_limit_per_client_per_second
    return LocalRateLimit(
        stat_prefix="edge_rate_limit",
        token_bucket=TokenBucket(
            max_tokens=rate, tokens_per_fill=rate, fill_interval=timedelta(seconds=1)
        ),
        rate_limits=[
            RateLimit(actions=[RateLimitAction(remote_address=RateLimitActionRemoteAddress())])
        ],
        descriptors=[
            LocalRateLimitDescriptor(
                entries=[RateLimitDescriptorEntry(key="remote_address")],
                token_bucket=TokenBucket(
                    max_tokens=2 * per_client,
                    tokens_per_fill=per_client,
                    fill_interval=timedelta(seconds=1),
                ),
            )
        ],
        max_dynamic_descriptors=settings.rate_limit_clients,
        # Both default to 0%: without them the filter is configured but does nothing.
        filter_enabled=everyone,
        filter_enforced=everyone,
        # gRPC callers get RESOURCE_EXHAUSTED (HTTP 429 for REST) rather than Envoy's
        # default UNAVAILABLE, which gRPC clients and our retry policy treat as retryable.
        rate_limited_as_resource_exhausted=True,
        # No x-ratelimit-* on every response: this is a flood backstop, and its numbers
        # beside a service's own limit (search: 60 a minute) told clients two stories at
        # once ("remaining: 399" on a service's 429). A 429 carries the headers of the
        # limit that refused it: the edge's own (LOCAL_REPLIES) or the service's.
    )


def _jwt_authn(
    settings: EdgeSettings, methods: dict[str, tuple[MethodInfo, ...]]
) -> JwtAuthentication:
    """Verify bearer tokens at the edge; public methods also accept anonymous callers.

    Rules are first-match. METHOD_ACCESS_PUBLIC methods get `requires_any: [provider,
    allow_missing]`: no token is fine, but a present token must verify (an expired or
    forged one is 401, never silently downgraded to anonymous). Each method is matched in
    both forms a client can use: the native gRPC path, and every REST binding from its
    google.api.http option (verb via `:method`, path via regex). Everything else requires
    the provider. Internal methods have no rules: their routes refuse them with jwt_authn
    switched off (see `_refusal`), and any other way to them ends at the catch-all.
    """
    provider = JwtProvider(
        issuer=settings.issuer,
        audiences=[settings.audience],
        local_jwks=DataSource(inline_string=settings.jwks_json),
        # Keep Authorization for the services: they verify the token again themselves.
        forward=True,
        # Header only. The default also reads `?access_token=`, which would put tokens in
        # URLs and logs, and which the transcoder rejects as an unknown query parameter.
        from_headers=[JwtHeader(name="authorization", value_prefix="Bearer ")],
        require_expiration=True,
    )
    required = JwtRequirement(provider_name=JWT_PROVIDER)
    optional = JwtRequirement(
        requires_any=JwtRequirementOrList(
            requirements=[
                JwtRequirement(provider_name=JWT_PROVIDER),
                JwtRequirement(allow_missing=Empty()),
            ]
        )
    )
    all_methods = [m for ms in methods.values() for m in ms if not m.internal]
    rules: list[RequirementRule] = [
        RequirementRule(match=RouteMatch(path=m.grpc_path), requires=optional)
        for m in all_methods
        if m.public
    ]
    # REST bindings of *all* methods, most specific template first (the order in which
    # the transcoder's path matcher prefers them). If a private method's template also
    # matches a public one's paths (`GET /v1/users/me` vs `GET /v1/users/{id}`), the
    # private rule is reached first, so the overlap fails closed.
    rest: list[tuple[tuple[int, ...], MethodInfo, HttpBinding]] = [
        (_specificity(b), m, b) for m in all_methods for b in m.http
    ]
    rest.sort(key=lambda item: item[0])
    for _, m, b in rest:
        rules.append(
            RequirementRule(
                match=RouteMatch(
                    safe_regex=RegexMatcher(regex=b.path_regex), headers=[_verb_matcher(b)]
                ),
                requires=optional if m.public else required,
            )
        )
    rules.append(RequirementRule(match=RouteMatch(prefix="/"), requires=required))
    return JwtAuthentication(
        providers={JWT_PROVIDER: provider},
        rules=rules,
        # Preflights carry no Authorization header by design; never 401 them.
        bypass_cors_preflight=True,
    )


def _specificity(binding: HttpBinding) -> tuple[int, ...]:
    """Sort key: per segment literal (0) < single wildcard (1) < `**` (2), then verb-first."""
    body = binding.template.split("?", 1)[0]
    key: list[int] = []
    depth = 0
    segment: list[str] = []

    def close() -> None:
        text = "".join(segment)
        if text == "**" or "=**" in text:
            key.append(2)
        elif text == "*" or text.startswith("{"):
            key.append(1)
        else:
            key.append(0)
        segment.clear()

    for ch in body[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "/" and depth == 0:
            close()
        else:
            segment.append(ch)
    close()
    has_verb = ":" in body.rsplit("/", 1)[-1].split("}")[-1]
    return (*key, 0 if has_verb else 1)


def _transcoder(upstreams: Sequence[Upstream], contract: Contract) -> GrpcJsonTranscoder:
    """REST/JSON <-> gRPC for every upstream service, strict about what it accepts.

    The descriptor set is embedded (proto_descriptor_bin) rather than referenced by path:
    the JWT rules above were derived from these exact bytes, so the transcoder can never
    see a newer or older contract than the auth rules (and the config is self-contained).

    Server-streaming framing: Server-Sent Events (`stream_sse_style_delimited`). Each
    message is sent as `data: <json>\\n\\n` with content-type text/event-stream, which
    browsers consume natively (EventSource for anonymous streams, or fetch + an SSE
    parser when an Authorization header is needed), and which proxies and CDNs know not
    to buffer. The alternatives are worse for browsers: the default is one JSON array
    that is only parseable once the stream ends, and newline-delimited JSON is
    application/json, a type intermediaries happily buffer. Since Envoy 1.37
    (envoyproxy/envoy#41594) unary responses stay application/json with this option on.
    """
    return GrpcJsonTranscoder(
        proto_descriptor_bin=contract.serialized(),
        services=[u.grpc_service for u in upstreams],
        print_options=GrpcJsonTranscoderPrintOptions(
            always_print_primitive_fields=True,
            preserve_proto_field_names=False,  # camelCase JSON names
            stream_sse_style_delimited=True,
        ),
        # gRPC errors become 400/401/403/404/409/429/503... with a google.rpc.Status body.
        convert_grpc_status=True,
        # `?query=a+b` means "a b" in every HTML form and most clients (search queries).
        query_param_unescape_plus=True,
        # What it may buffer, the same over HTTP/1.1 and HTTP/2 (see the constants).
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
        max_response_body_size=MAX_RESPONSE_BODY_BYTES,
        request_validation_options=GrpcJsonTranscoderRequestValidationOptions(
            # Unmapped REST paths get 404 here instead of reaching a gRPC server as
            # plain HTTP, which resets the stream and surfaces as a 503.
            reject_unknown_method=True,
            # envoy issue 11042: otherwise `?bogus=1` passes through untranscoded -> 503.
            reject_unknown_query_parameters=True,
            # `PATCH /v1/users/1` with body `{"userId": "2"}` must not quietly pick one.
            reject_binding_body_field_collisions=True,
        ),
    )


def _file_route(files: FileRoute) -> Route:
    """GET/HEAD under the prefix go to the file server, past jwt_authn and the transcoder.

    Both filters are off for this route (as for the refusals): the transcoder would
    answer with its own Download binding (always 200, no Range, no 304, no HEAD), and
    jwt_authn only knows the API's rules. No route timeout: a large video may take long.
    """
    off = Any.pack(FilterConfig(disabled=True))
    return Route(
        name=f"files {files.prefix}",
        match=RouteMatch(
            prefix=files.prefix,
            headers=[
                HeaderMatcher(
                    name=":method",
                    string_match=StringMatcher(safe_regex=RegexMatcher(regex="GET|HEAD")),
                )
            ],
        ),
        route=RouteAction(cluster=files.name, timeout=timedelta(0)),
        typed_per_filter_config={JWT_FILTER: off, TRANSCODER_FILTER: off, **_no_buffer()},
    )


# ---------------------------------------------------------------------------- clusters


def _file_cluster(files: FileRoute) -> Cluster:
    """An HTTP/1.1 cluster for a file server (plain HTTP, no gRPC health check)."""
    cluster = Cluster(
        name=files.name,
        connect_timeout=CONNECT_TIMEOUT,
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ClusterLoadAssignment(
            cluster_name=files.name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(endpoint=Endpoint(address=_socket(files.host, files.port)))
                    ]
                )
            ],
        ),
    )
    if _is_ip(files.host):
        cluster.type = ClusterDiscoveryType.STATIC
    else:
        cluster.cluster_type = ClusterCustomClusterType(
            name="envoy.clusters.dns",
            typed_config=Any.pack(DnsCluster(dns_lookup_family=DnsLookupFamily.V4_PREFERRED)),
        )
    return cluster


def _cluster(upstream: Upstream, settings: EdgeSettings) -> Cluster:
    """An HTTP/2 cluster with active gRPC health checks, outlier detection and breakers."""
    cluster = Cluster(
        name=upstream.name,
        connect_timeout=CONNECT_TIMEOUT,
        per_connection_buffer_limit_bytes=CONNECTION_BUFFER_BYTES,
        lb_policy=ClusterLbPolicy.ROUND_ROBIN,
        load_assignment=ClusterLoadAssignment(
            cluster_name=upstream.name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(endpoint=Endpoint(address=_socket(host, port)))
                        for host, port in ((upstream.host, upstream.port), *upstream.replicas)
                    ]
                )
            ],
        ),
        typed_extension_protocol_options={
            _UPSTREAM_PROTOCOL_OPTIONS_KEY: Any.pack(
                UpstreamHttpProtocolOptions(
                    explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                        http2_protocol_options=Http2ProtocolOptions(
                            # Notice a dead peer (e.g. a killed pod) without waiting for TCP.
                            # The servers must allow this rate (kit/server.py), or they
                            # answer GOAWAY too_many_pings and take quiet streams with them.
                            connection_keepalive=KeepaliveSettings(
                                interval=timedelta(
                                    seconds=settings.upstream_keepalive_interval_seconds
                                ),
                                timeout=UPSTREAM_KEEPALIVE_TIMEOUT,
                            )
                        )
                    )
                )
            )
        },
        health_checks=[
            HealthCheck(
                timeout=HEALTH_CHECK_TIMEOUT,
                interval=HEALTH_CHECK_INTERVAL,
                # Without this a cluster that has had no traffic yet is only probed every 60s.
                no_traffic_interval=HEALTH_CHECK_INTERVAL,
                unhealthy_threshold=2,
                healthy_threshold=1,
                grpc_health_check=HealthCheckGrpcHealthCheck(service_name=upstream.grpc_service),
            )
        ],
        outlier_detection=OutlierDetection(
            # gRPC statuses count as their HTTP equivalents (UNAVAILABLE = 503, ...).
            consecutive_5xx=5,
            consecutive_gateway_failure=3,
            # Defaults to 0%: gateway-failure ejection is computed but never applied.
            enforcing_consecutive_gateway_failure=100,
            interval=timedelta(seconds=5),
            base_ejection_time=timedelta(seconds=15),
            max_ejection_percent=50,
        ),
        circuit_breakers=CircuitBreakers(
            thresholds=[
                CircuitBreakersThresholds(
                    max_connections=1024,
                    max_pending_requests=1024,
                    max_requests=upstream.max_requests,
                    # Retries may add at most 20% load on top of live requests.
                    retry_budget=CircuitBreakersThresholdsRetryBudget(
                        budget_percent=Percent(value=20.0), min_retry_concurrency=10
                    ),
                )
            ]
        ),
    )
    if _is_ip(upstream.host):
        cluster.type = ClusterDiscoveryType.STATIC
    else:
        # STRICT_DNS via the cluster extension (Cluster.dns_lookup_family is deprecated).
        # V4_PREFERRED: "localhost" must reach services bound to 127.0.0.1, not ::1.
        cluster.cluster_type = ClusterCustomClusterType(
            name="envoy.clusters.dns",
            typed_config=Any.pack(DnsCluster(dns_lookup_family=DnsLookupFamily.V4_PREFERRED)),
        )
    return cluster


# ----------------------------------------------------------------------------- helpers


def _socket(host: str, port: int) -> Address:
    return Address(socket_address=SocketAddress(address=host, port_value=port))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_settings(settings: EdgeSettings, upstreams: Iterable[Upstream]) -> None:
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
