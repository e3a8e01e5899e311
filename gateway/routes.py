"""The edge's route table: what each path reaches, with which timeout and retries.

Derived from the contract: refusals for internal methods, per-method routes where a
method differs from its service's default (reads retried, streams untimed), one prefix
route per service, the REST paths the filters must see before transcoding, the byte
routes (`FileRoute`: media files, SSE, the web app) and a JSON 404 for everything else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta

from envoy_data_plane.envoy.config.core.v3 import (
    DataSource,
    HeaderValue,
    HeaderValueOption,
    Metadata,
)
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    FilterConfig,
    HeaderMatcher,
    QueryParameterMatcher,
    RetryPolicy,
    RetryPolicyRetryHostPredicate,
    Route,
    RouteAction,
    RouteActionMaxStreamDuration,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.filters.http.buffer.v3 import BufferPerRoute
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3 import PreviousHostsPredicate
from envoy_data_plane.envoy.type.matcher.v3 import RegexMatcher, StringMatcher
from envoy_data_plane.google.protobuf import Any, Struct

from .descriptors import HttpBinding, MethodInfo
from .http_filters import (
    BUFFER_FILTER,
    CORS_FILTER,
    JWT_FILTER,
    LUA_FILTER,
    TRANSCODER_FILTER,
    cors_policy,
)
from .limits import MAX_DIRECT_RESPONSE_BYTES
from .rest_bindings import specificity, verb_matcher
from .settings import EdgeSettings, FileRoute, Upstream

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


ROUTE_CONFIG_NAME = "edge_routes"

# The reply to any path the edge does not serve - including every internal method.
NOT_FOUND_BODY = "no such API route"


def route_config(
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
                        safe_regex=RegexMatcher(regex=b.path_regex), headers=[verb_matcher(b)]
                    )
                    route = _refusal(f"internal {b.verb} {b.template}", match)
                    rest.append((specificity(b), 0, route))
                    continue
                for param, variable in _path_variable_params(b):
                    rest.append((specificity(b), 0, _path_param_refusal(b, param, variable)))
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
                rest.append((specificity(b), 1, route))
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
                typed_per_filter_config={CORS_FILTER: Any.pack(cors_policy(settings))},
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
#: Every REST binding lives under it (checked by build_bootstrap, gateway/envoy_config.py).
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
            headers=[verb_matcher(binding)],
            query_parameters=[QueryParameterMatcher(name=param, present_match=True)],
        ),
        direct_response=DirectResponseAction(status=400, body=DataSource(inline_string=body)),
        typed_per_filter_config={JWT_FILTER: off, TRANSCODER_FILTER: off},
    )


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
RETRIES_ON_UNAVAILABLE = 2


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
