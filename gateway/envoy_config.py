"""Builds the Envoy edge bootstrap from typed `envoy-data-plane` classes and renders YAML.

The config is data: every piece is a betterproto2 dataclass generated from Envoy's own
protos (so a misspelt field fails at build time, not at Envoy start-up), and everything that depends
on the API contract - routes, JWT rules, transcoded services - is derived from the
descriptor set that `make gen` builds from proto/. Adding a service means adding an
`Upstream`; nothing in this package names a particular service or method.

Request path through the single listener (REST/JSON over HTTP/1.1 or HTTP/2, and native
gRPC over h2c, on the same port):

    cors -> health_check -> local_ratelimit -> buffer -> lua -> jwt_authn
         -> grpc_json_transcoder -> router

* CORS first, so preflights are answered before anything can reject them, and so that
  401/429 replies still carry CORS headers (a browser could not read them otherwise).
* Rate limiting before JWT verification: a flood of forged tokens must not cost signatures.
* The buffer filter caps every non-streaming request body (413) before any work is done
  on it; the Lua filter normalizes the `Bearer` scheme's case for jwt_authn, refuses
  unknown JSON body fields and answers conditional reads.
* jwt_authn before the transcoder: its rules see the path the client sent (REST or gRPC
  form); the transcoder rewrites REST requests to `/<service>/<Method>` afterwards and
  clears the route cache, so the router routes on the gRPC path.

Who may call what comes from the contract's `(socialmesh.api.v1.access)` method option:
METHOD_ACCESS_PUBLIC methods accept anonymous callers, unset means a signed-in user, and
METHOD_ACCESS_INTERNAL methods (other services only) are not part of the edge's API at
all - every path to them, native gRPC or REST, is answered 404 by the first routes.

This module is the entry point (`build_bootstrap`, `render_yaml`) and the bootstrap's
own parts (admin, overload manager); each piece it assembles has its module:

* gateway/settings.py: `EdgeSettings`, `Upstream`, `FileRoute` and their checks;
* gateway/listeners.py: the listener, its connection manager, TLS, tracing, access log;
* gateway/http_filters.py: the filter chain's builders (CORS, rate limit, JWT, ...);
* gateway/edge_lua.py: the Lua filter's script;
* gateway/local_replies.py: Envoy's own replies as google.rpc.Status JSON;
* gateway/routes.py: the route table; gateway/rest_bindings.py: REST template order;
* gateway/clusters.py: the upstream clusters;
* gateway/limits.py: the byte caps; gateway/addresses.py: socket addresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import cast

import betterproto2
import yaml
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.overload.v3 import (
    OverloadAction,
    OverloadManager,
    ResourceMonitor,
    ThresholdTrigger,
    Trigger,
)
from envoy_data_plane.envoy.extensions.resource_monitors.downstream_connections.v3 import (
    DownstreamConnectionsConfig,
)
from envoy_data_plane.envoy.extensions.resource_monitors.fixed_heap.v3 import FixedHeapConfig
from envoy_data_plane.google.protobuf import Any
from socialmesh.api.v1 import access_pb2

from .addresses import socket_address
from .clusters import collector_cluster, file_cluster, service_cluster
from .descriptors import MethodInfo, load_contract, with_error_detail_types
from .limits import MAX_REQUEST_BODY_BYTES, MAX_RESPONSE_BODY_BYTES
from .listeners import listener
from .routes import API_PREFIX, STRIPPED_IDENTITY_HEADERS
from .settings import EdgeSettings, FileRoute, Upstream, check_settings

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


# The overload manager's resource monitors.
HEAP_MONITOR = "envoy.resource_monitors.fixed_heap"
CONNECTIONS_MONITOR = "envoy.resource_monitors.global_downstream_max_connections"


def build_bootstrap(settings: EdgeSettings, upstreams: Sequence[Upstream]) -> Bootstrap:
    """The whole static bootstrap: admin, one listener, one cluster per upstream."""
    check_settings(settings, upstreams)
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
        admin=Admin(address=socket_address("127.0.0.1", settings.admin_port)),
        overload_manager=_overload_manager(settings),
        static_resources=BootstrapStaticResources(
            listeners=[listener(settings, upstreams, methods, contract)],
            clusters=[service_cluster(u, settings) for u in upstreams]
            + [file_cluster(f) for f in settings.file_routes]
            + ([file_cluster(settings.app_files)] if settings.app_files else [])
            + ([collector_cluster(settings.otlp_collector)] if settings.otlp_collector else []),
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
        "gateway/http_filters.py (jwt_authn) and gateway/routes.py what the edge must do with it"
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
