"""The HTTP filters of the edge's connection manager, one builder per filter.

CORS, compression, local rate limiting, JWT verification and REST/JSON transcoding,
plus the filter names that double as keys of every route's `typed_per_filter_config`.
Their order in the chain is the listener's (gateway/listeners.py); the Lua filter's
script is gateway/edge_lua.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import betterproto2
from envoy_data_plane.envoy.config.core.v3 import (
    DataSource,
    RuntimeFractionalPercent,
    TypedExtensionConfig,
)
from envoy_data_plane.envoy.config.route.v3 import (
    RateLimit,
    RateLimitAction,
    RateLimitActionRemoteAddress,
    RouteMatch,
)
from envoy_data_plane.envoy.extensions.common.ratelimit.v3 import (
    LocalRateLimitDescriptor,
    RateLimitDescriptorEntry,
)
from envoy_data_plane.envoy.extensions.compression.brotli.compressor.v3 import Brotli
from envoy_data_plane.envoy.extensions.compression.gzip.compressor.v3 import Gzip
from envoy_data_plane.envoy.extensions.filters.http.compressor.v3 import (
    Compressor,
    CompressorCommonDirectionConfig,
    CompressorResponseDirectionConfig,
)
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import CorsPolicy
from envoy_data_plane.envoy.extensions.filters.http.grpc_json_transcoder.v3 import (
    GrpcJsonTranscoder,
    GrpcJsonTranscoderPrintOptions,
    GrpcJsonTranscoderRequestValidationOptions,
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
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher
from envoy_data_plane.envoy.type.v3 import (
    FractionalPercent,
    FractionalPercentDenominatorType,
    TokenBucket,
)
from envoy_data_plane.google.protobuf import Any, Empty

from .descriptors import Contract, HttpBinding, MethodInfo
from .limits import MAX_REQUEST_BODY_BYTES, MAX_RESPONSE_BODY_BYTES
from .rest_bindings import specificity, verb_matcher
from .settings import EdgeSettings, Upstream

JWT_PROVIDER = "socialmesh"


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


def compressor(library: Brotli | Gzip, *, first: bool) -> Compressor:
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


def http_filter(name: str, config: betterproto2.Message) -> HttpFilter:
    return HttpFilter(name=name, typed_config=Any.pack(config))


def cors_policy(settings: EdgeSettings) -> CorsPolicy:
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


def rate_limit(settings: EdgeSettings) -> LocalRateLimit:
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


def jwt_authn(
    settings: EdgeSettings, methods: dict[str, tuple[MethodInfo, ...]]
) -> JwtAuthentication:
    """Verify bearer tokens at the edge; public methods also accept anonymous callers.

    Rules are first-match. METHOD_ACCESS_PUBLIC methods get `requires_any: [provider,
    allow_missing]`: no token is fine, but a present token must verify (an expired or
    forged one is 401, never silently downgraded to anonymous). Each method is matched in
    both forms a client can use: the native gRPC path, and every REST binding from its
    google.api.http option (verb via `:method`, path via regex). Everything else requires
    the provider. Internal methods have no rules: their routes refuse them with jwt_authn
    switched off (gateway/routes.py, `_refusal`), and any other way to them ends at the catch-all.
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
        (specificity(b), m, b) for m in all_methods for b in m.http
    ]
    rest.sort(key=lambda item: item[0])
    for _, m, b in rest:
        rules.append(
            RequirementRule(
                match=RouteMatch(
                    safe_regex=RegexMatcher(regex=b.path_regex), headers=[verb_matcher(b)]
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


def transcoder(upstreams: Sequence[Upstream], contract: Contract) -> GrpcJsonTranscoder:
    """REST/JSON <-> gRPC for every upstream service, strict about what it accepts.

    The descriptor set is embedded (proto_descriptor_bin) rather than referenced by path:
    the JWT rules (`jwt_authn`) were derived from these exact bytes, so the transcoder can never
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
        # What it may buffer, the same over HTTP/1.1 and HTTP/2 (gateway/limits.py).
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
