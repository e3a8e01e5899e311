"""The Envoy edge config: rendered from typed classes, accepted by the real Envoy 1.40.

`envoy --mode validate` proves the YAML is a bootstrap Envoy will load (unknown or
misspelt fields, bad extension names, unloadable descriptors all fail it); the structural
assertions pin down the security- and resilience-relevant parts that validation cannot
judge (who may call what anonymously, what is refused outright, what is retried, which
headers are stripped). tests/test_e2e_edge.py runs the same config with real traffic.
"""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from socialmesh.api.v1 import access_pb2

from gateway.descriptors import load_contract, template_to_regex
from gateway.envoy_config import (
    MAX_REQUEST_BODY_BYTES,
    MAX_RESPONSE_BODY_BYTES,
    EdgeSettings,
    Upstream,
    build_bootstrap,
    render_yaml,
)

from .edge_support import (
    DESCRIPTOR_SET,
    EDGETEST_SERVICE,
    contract_for_tests,
    edgetest_file,
    envoy_binary,
    es256_jwks,
)

USER_SERVICE = "socialmesh.user.v1.UserService"
EDGE_PORT, ADMIN_PORT = 18480, 18481


def upstreams_for(descriptor: Path) -> list[Upstream]:
    """The user service, every other service in the contract, and the edge-test service."""
    services = sorted(load_contract(descriptor).service_names() - {USER_SERVICE})
    ups = [Upstream(name="user", host="127.0.0.1", port=18500, grpc_service=USER_SERVICE)]
    for i, svc in enumerate(services, start=1):
        # A hostname for one of them, so the DNS cluster flavour is validated too.
        host = "localhost" if svc == EDGETEST_SERVICE else "127.0.0.1"
        ups.append(
            Upstream(name=svc.split(".")[-1].lower(), host=host, port=18500 + i, grpc_service=svc)
        )
    return ups


def settings_for(descriptor: Path, jwks: str, **overrides: Any) -> EdgeSettings:
    ports: dict[str, Any] = {"edge_port": EDGE_PORT, "admin_port": ADMIN_PORT}
    return EdgeSettings(jwks_json=jwks, descriptor_path=descriptor, **{**ports, **overrides})


@pytest.fixture(scope="module")
def jwks() -> str:
    return es256_jwks()


@pytest.fixture
def descriptor(tmp_path: Path) -> Path:
    return contract_for_tests(tmp_path)


@pytest.fixture
def rendered(descriptor: Path, jwks: str) -> str:
    return render_yaml(settings_for(descriptor, jwks), upstreams_for(descriptor))


@pytest.fixture
def config(rendered: str) -> dict[str, Any]:
    return yaml.safe_load(rendered)


def hcm(config: dict[str, Any]) -> dict[str, Any]:
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (network_filter,) = chain["filters"]
    return network_filter["typed_config"]


def http_filter(config: dict[str, Any], name: str) -> dict[str, Any]:
    for f in hcm(config)["http_filters"]:
        if f["name"] == name:
            return f["typed_config"]
    raise AssertionError(f"http filter {name} missing")


def routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    (vhost,) = hcm(config)["route_config"]["virtual_hosts"]
    return vhost["routes"]


def jwt_requirement(config: dict[str, Any], verb: str, path: str) -> dict[str, Any]:
    """What jwt_authn demands for a request: its rules are first-match on path + headers.

    Python's `re` agrees with RE2 on the simple regexes the builder emits.
    """
    for rule in http_filter(config, "envoy.filters.http.jwt_authn")["rules"]:
        match = rule["match"]
        if "path" in match and match["path"] != path:
            continue
        if "prefix" in match and not path.startswith(match["prefix"]):
            continue
        if "safe_regex" in match and not re.fullmatch(match["safe_regex"]["regex"], path):
            continue
        methods = [
            h["string_match"]["exact"] for h in match.get("headers", []) if h["name"] == ":method"
        ]
        if methods and verb not in methods:
            continue
        return rule["requires"]
    raise AssertionError(f"no jwt rule for {verb} {path}")


ANONYMOUS_OK = {
    "requires_any": {"requirements": [{"provider_name": "socialmesh"}, {"allow_missing": {}}]}
}
TOKEN_REQUIRED = {"provider_name": "socialmesh"}


# ------------------------------------------------------------------------------- envoy


def test_rendered_config_passes_envoy_validate(rendered: str, tmp_path: Path) -> None:
    config_file = tmp_path / "envoy.yaml"
    config_file.write_text(rendered)
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_file), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # No deprecated fields either: they are the ones the next Envoy upgrade removes.
    assert "deprecated" not in (result.stdout + result.stderr).lower()


def test_envoy_binary_is_the_version_the_typed_classes_target() -> None:
    """envoy-data-plane 2.2.0 tracks the 1.40 API; a different binary needs a re-check."""
    out = subprocess.run([envoy_binary(), "--version"], capture_output=True, text=True, timeout=30)
    assert "/1.40." in out.stdout, out.stdout


def test_contract_is_transcodable() -> None:
    """The real contract, unmodified, must be loadable by Envoy's transcoder."""
    contract = load_contract(DESCRIPTOR_SET)
    assert contract.transcoding_problems(sorted(contract.service_names())) == []


def test_response_body_on_a_message_field_is_refused_at_build_time(
    tmp_path: Path, jwks: str
) -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    f = edgetest_file()
    f.service[0].method[3].options.Extensions[annotations_pb2.http].response_body = "text"
    files.file.append(f)
    path = tmp_path / "bad.binpb"
    path.write_bytes(files.SerializeToString())
    ups = [Upstream("edgetest", "127.0.0.1", 18500, EDGETEST_SERVICE)]
    with pytest.raises(ValueError, match=r"ListEvents.*envoyproxy/envoy#11136"):
        build_bootstrap(settings_for(path, jwks), ups)


# ----------------------------------------------------------------------------- listener


def test_one_listener_serves_rest_and_grpc_with_filters_in_order(config: dict[str, Any]) -> None:
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": EDGE_PORT,
    }
    manager = hcm(config)
    # AUTO is the proto default and so is omitted: HTTP/1.1 and h2c on the same port.
    assert manager.get("codec_type", "AUTO") == "AUTO"
    assert [f["name"] for f in manager["http_filters"]] == [
        "envoy.filters.http.cors",
        "envoy.filters.http.grpc_web",
        "envoy.filters.http.health_check",
        "envoy.filters.http.compressor.brotli",
        "envoy.filters.http.compressor.gzip",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.buffer",
        "envoy.filters.http.lua",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]
    assert manager["use_remote_address"] is True
    assert manager["normalize_path"] is True and manager["merge_slashes"] is True


def test_listener_never_shares_its_port(config: dict[str, Any]) -> None:
    """No SO_REUSEPORT: a second Envoy on the same port fails instead of taking half the
    connections (security review L9; test_e2e_edge starts two to see it fail)."""
    (listener,) = config["static_resources"]["listeners"]
    assert listener["enable_reuse_port"] is False


def test_transcoder_buffers_the_same_on_every_protocol(config: dict[str, Any]) -> None:
    """Without explicit limits the transcoder's buffer is the HTTP/2 stream window (64 KiB),
    and any larger unary REST response was a 500 for HTTP/2 clients only."""
    transcoder = http_filter(config, "envoy.filters.http.grpc_json_transcoder")
    assert transcoder["max_response_body_size"] == MAX_RESPONSE_BODY_BYTES == 4 * 1024 * 1024
    assert transcoder["max_request_body_size"] == MAX_REQUEST_BODY_BYTES == 1024 * 1024
    window = hcm(config)["http2_protocol_options"]["initial_stream_window_size"]
    assert MAX_RESPONSE_BODY_BYTES > window and MAX_REQUEST_BODY_BYTES > window


def test_admin_listens_on_loopback_only(config: dict[str, Any]) -> None:
    address = config["admin"]["address"]["socket_address"]
    assert address == {"address": "127.0.0.1", "port_value": ADMIN_PORT}


def test_transcoder_covers_every_upstream_and_is_strict(
    config: dict[str, Any], descriptor: Path
) -> None:
    transcoder = http_filter(config, "envoy.filters.http.grpc_json_transcoder")
    assert set(transcoder["services"]) == {u.grpc_service for u in upstreams_for(descriptor)}
    embedded = descriptor_pb2.FileDescriptorSet.FromString(
        base64.b64decode(transcoder["proto_descriptor_bin"])
    )
    names = {f.name for f in embedded.file}
    # The contract itself, plus the error-detail types grpc-status-details-bin refers to.
    assert {"socialmesh/user/v1/user.proto", "google/rpc/error_details.proto"} <= names
    assert transcoder["print_options"]["always_print_primitive_fields"] is True
    assert not transcoder["print_options"].get("preserve_proto_field_names", False)  # camelCase
    assert transcoder["print_options"]["stream_sse_style_delimited"] is True
    assert transcoder["convert_grpc_status"] is True
    validation = transcoder["request_validation_options"]
    assert validation["reject_unknown_query_parameters"] is True  # envoy#11042: not a 503
    assert validation["reject_unknown_method"] is True
    assert "ignore_unknown_query_parameters" not in transcoder


def test_rate_limit_is_enforced_from_settings(descriptor: Path, jwks: str) -> None:
    config = yaml.safe_load(
        render_yaml(
            settings_for(descriptor, jwks, rate_limit_per_second=50), upstreams_for(descriptor)
        )
    )
    limit = http_filter(config, "envoy.filters.http.local_ratelimit")
    assert limit["token_bucket"] == {"max_tokens": 50, "tokens_per_fill": 50, "fill_interval": "1s"}
    # Both default to 0%, which would make the filter a no-op.
    assert limit["filter_enabled"]["default_value"]["numerator"] == 100
    assert limit["filter_enforced"]["default_value"]["numerator"] == 100
    assert limit.get("status", {}).get("code", 429) == 429


def test_each_client_address_gets_its_own_bucket(descriptor: Path, jwks: str) -> None:
    config = yaml.safe_load(
        render_yaml(
            settings_for(descriptor, jwks, rate_limit_per_client_per_second=7),
            upstreams_for(descriptor),
        )
    )
    limit = http_filter(config, "envoy.filters.http.local_ratelimit")
    assert limit["rate_limits"] == [{"actions": [{"remote_address": {}}]}]
    (per_client,) = limit["descriptors"]
    assert per_client["entries"] == [{"key": "remote_address"}]  # wildcard: one bucket each
    assert per_client["token_bucket"] == {
        "max_tokens": 14,
        "tokens_per_fill": 7,
        "fill_interval": "1s",
    }
    assert int(limit["max_dynamic_descriptors"]) >= 10_000


def test_edge_overload_protection(descriptor: Path, jwks: str) -> None:
    config = yaml.safe_load(render_yaml(settings_for(descriptor, jwks), upstreams_for(descriptor)))
    monitors = {
        m["name"]: m["typed_config"] for m in config["overload_manager"]["resource_monitors"]
    }
    cap = monitors["envoy.resource_monitors.global_downstream_max_connections"]
    assert int(cap["max_active_downstream_connections"]) > 0
    assert int(monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"]) > 0
    actions = {a["name"] for a in config["overload_manager"]["actions"]}
    assert "envoy.overload_actions.stop_accepting_requests" in actions
    (listener,) = config["static_resources"]["listeners"]
    assert listener["per_connection_buffer_limit_bytes"] == 32768
    # Silent connections are closed once the first-bytes deadline passes.
    assert [f["name"] for f in listener["listener_filters"]] == [
        "envoy.filters.listener.http_inspector"
    ]
    assert listener["listener_filters_timeout"] == "10s"
    assert listener.get("continue_on_listener_filters_timeout", False) is False
    assert all(
        c["per_connection_buffer_limit_bytes"] == 32768
        for c in config["static_resources"]["clusters"]
        if "load_assignment" in c and c["name"] != "edge"
    )
    options = hcm(config)
    assert options["common_http_protocol_options"]["idle_timeout"] == "60s"
    assert options["http2_protocol_options"]["max_concurrent_streams"] == 100


def test_cors_policy_and_preflight_bypass(descriptor: Path, jwks: str) -> None:
    origins = ("https://app.example.com", "*")
    config = yaml.safe_load(
        render_yaml(
            settings_for(descriptor, jwks, cors_allowed_origins=origins), upstreams_for(descriptor)
        )
    )
    (vhost,) = hcm(config)["route_config"]["virtual_hosts"]
    policy = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert policy["allow_origin_string_match"] == [
        {"exact": "https://app.example.com"},
        {"safe_regex": {"regex": ".*"}},
    ]
    assert policy["allow_methods"] == "GET,POST,PATCH,DELETE,OPTIONS"
    allowed = policy["allow_headers"].split(",")
    for header in ("authorization", "content-type", "idempotency-key", "if-none-match"):
        assert header in allowed
    assert {"last-event-id", "x-refresh-token-transport", "x-grpc-web"} <= set(allowed)
    exposed = set(policy["expose_headers"].split(","))
    assert {"x-request-id", "retry-after", "www-authenticate", "etag"} <= exposed
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= exposed
    assert http_filter(config, "envoy.filters.http.jwt_authn")["bypass_cors_preflight"] is True
    # The CORS filter skips routes without a route entry (direct_response): every REST
    # path needs a forwarding route before transcoding, or preflights go unanswered.
    rest_paths = [
        r["match"]["safe_regex"]["regex"] for r in routes(config) if "safe_regex" in r["match"]
    ]
    forwarding = [
        r for r in routes(config) if not r["name"].startswith(("internal ", "path param "))
    ]
    assert all("route" in r for r in forwarding if "safe_regex" in r["match"])
    assert any(re.fullmatch(rx, "/v1/users/1") for rx in rest_paths)


# ---------------------------------------------------------------------------------- jwt


def test_jwt_provider_checks_issuer_and_audience_and_forwards_the_token(
    config: dict[str, Any], jwks: str
) -> None:
    jwt = http_filter(config, "envoy.filters.http.jwt_authn")
    provider = jwt["providers"]["socialmesh"]
    assert provider["issuer"] == "socialmesh"
    assert provider["audiences"] == ["socialmesh-api"]
    assert provider["local_jwks"] == {"inline_string": jwks}
    assert provider["forward"] is True
    assert "forward_payload_header" not in provider
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]


def contract_methods(descriptor: Path) -> list[Any]:
    contract = load_contract(descriptor)
    return [m for svc in sorted(contract.service_names()) for m in contract.methods(svc)]


def test_public_methods_come_from_the_contract(config: dict[str, Any], descriptor: Path) -> None:
    """METHOD_ACCESS_PUBLIC, and nothing else, lets anonymous callers through, in both forms."""
    methods = contract_methods(descriptor)
    public = {m.full_name for m in methods if m.public}
    # The hard-coded list this replaced had gone stale: it lacked LookupUsers and posts.
    assert {
        f"{USER_SERVICE}.CreateUser",
        f"{USER_SERVICE}.LookupUsers",
        "socialmesh.post.v1.PostService.ListUserPosts",
        f"{EDGETEST_SERVICE}.Watch",
    } <= public
    for m in methods:
        if m.internal:
            continue  # refused by their routes, see test_internal_methods_*
        expected = ANONYMOUS_OK if m.public else TOKEN_REQUIRED
        assert jwt_requirement(config, "POST", m.grpc_path) == expected, m.full_name
        for b in m.http:
            path = re.sub(r"\{[^}]*\}", "1", b.template)
            assert jwt_requirement(config, b.verb, path) == expected, (m.full_name, b)
    assert jwt_requirement(config, "GET", "/v1/users/123") == ANONYMOUS_OK
    assert jwt_requirement(config, "GET", "/v1/users/123/") == ANONYMOUS_OK  # transcoder agrees
    assert jwt_requirement(config, "GET", "/v1/users:batchGet") == ANONYMOUS_OK
    assert jwt_requirement(config, "GET", "/v1/users:lookup") == ANONYMOUS_OK
    assert jwt_requirement(config, "POST", "/v1/users") == ANONYMOUS_OK
    assert jwt_requirement(config, "POST", "/v1/auth:login") == ANONYMOUS_OK
    assert jwt_requirement(config, "POST", "/v1/auth:refresh") == ANONYMOUS_OK


def test_everything_else_requires_a_token(config: dict[str, Any]) -> None:
    assert jwt_requirement(config, "PATCH", "/v1/users/123") == TOKEN_REQUIRED
    assert jwt_requirement(config, "DELETE", "/v1/users/123") == TOKEN_REQUIRED
    assert jwt_requirement(config, "HEAD", "/v1/users/123") == TOKEN_REQUIRED
    assert jwt_requirement(config, "GET", "/v1/users/1/2") == TOKEN_REQUIRED
    assert jwt_requirement(config, "GET", "/v1/users") == TOKEN_REQUIRED
    assert jwt_requirement(config, "POST", f"/{USER_SERVICE}/UpdateUser") == TOKEN_REQUIRED
    assert jwt_requirement(config, "POST", f"/{USER_SERVICE}/DeleteUser") == TOKEN_REQUIRED
    assert jwt_requirement(config, "POST", "/v1/edgetest/1:poke") == TOKEN_REQUIRED
    assert jwt_requirement(config, "GET", "/anything/else") == TOKEN_REQUIRED
    rules = http_filter(config, "envoy.filters.http.jwt_authn")["rules"]
    assert rules[-1] == {"match": {"prefix": "/"}, "requires": TOKEN_REQUIRED}


def test_unknown_access_value_is_refused_at_build_time(tmp_path: Path, jwks: str) -> None:
    """A MethodAccess value this edge does not know must not quietly become "signed in"."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    f = edgetest_file()
    f.service[0].method[4].options.Extensions[access_pb2.access] = 7  # type: ignore[assignment]
    files.file.append(f)
    path = tmp_path / "future.binpb"
    path.write_bytes(files.SerializeToString())
    ups = [Upstream("edgetest", "127.0.0.1", 18500, EDGETEST_SERVICE)]
    with pytest.raises(ValueError, match=r"EdgeTestService\.Poke: unknown .*access.* 7"):
        build_bootstrap(settings_for(path, jwks), ups)


# ------------------------------------------------------------------------------- routes


def route_named(config: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [r for r in routes(config) if r["name"] == name]
    assert matches, f"no route {name}"
    return matches[0]


def test_identity_headers_are_stripped_before_forwarding(config: dict[str, Any]) -> None:
    removed = hcm(config)["route_config"]["request_headers_to_remove"]
    assert {"x-user-id", "x-jwt-payload", "x-socialmesh-user"} <= set(removed)


def test_reads_retry_on_unavailable_and_writes_do_not(config: dict[str, Any]) -> None:
    get_user = route_named(config, f"{USER_SERVICE}.GetUser")
    assert get_user["match"] == {"path": f"/{USER_SERVICE}/GetUser"}
    assert get_user["route"]["cluster"] == "user"
    assert get_user["route"]["timeout"] == "15s"
    read_policy = get_user["route"]["retry_policy"]
    assert read_policy["retry_on"].split(",") == [
        "unavailable",
        "cancelled",
        "reset",
        "connect-failure",
        "refused-stream",
    ]
    assert read_policy["num_retries"] == 2
    # Retries go to another instance: the one that failed is likely draining.
    (predicate,) = read_policy["retry_host_predicate"]
    assert predicate["name"] == "envoy.retry_host_predicates.previous_hosts"
    # Idempotent by name even though bound to POST.
    listing = route_named(config, f"{EDGETEST_SERVICE}.ListEvents")["route"]
    assert listing["retry_policy"]["retry_on"] == read_policy["retry_on"]
    names = {r["name"] for r in routes(config)}
    assert f"{USER_SERVICE}.UpdateUser" not in names and f"{EDGETEST_SERVICE}.Poke" not in names
    service_default = route_named(config, USER_SERVICE)
    assert service_default["match"] == {"prefix": f"/{USER_SERVICE}/"}
    assert service_default["route"]["timeout"] == "15s"
    # Writes are retried only where the request never reached a servicer: a retried
    # UNAVAILABLE, CANCELLED or reset could apply a write twice.
    write_policy = service_default["route"]["retry_policy"]
    assert write_policy["retry_on"].split(",") == ["connect-failure", "refused-stream"]


def test_streaming_methods_have_no_route_timeout(config: dict[str, Any]) -> None:
    for name in ("Watch", "Upload", "Chat"):
        action = route_named(config, f"{EDGETEST_SERVICE}.{name}")["route"]
        assert action["timeout"] == "0s", name
        assert "retry_policy" not in action or name == "Watch"
    # Server-streaming read: retried like any read (Envoy only retries before the response
    # starts); client streams never are.
    assert "retry_policy" not in route_named(config, f"{EDGETEST_SERVICE}.Upload")["route"]


def test_unknown_paths_get_a_local_404(config: dict[str, Any]) -> None:
    last = routes(config)[-1]
    assert last["match"] == {"prefix": "/"}
    assert last["direct_response"]["status"] == 404


def first_route(
    config: dict[str, Any], verb: str, path: str, query: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The route Envoy picks first (and so the filters the request gets): first match."""
    for route in routes(config):
        match = route["match"]
        if any(q["name"] not in query for q in match.get("query_parameters", [])):
            continue
        if "path" in match and match["path"] != path:
            continue
        if "prefix" in match and not path.startswith(match["prefix"]):
            continue
        if "safe_regex" in match and not re.fullmatch(match["safe_regex"]["regex"], path):
            continue
        methods = [
            h["string_match"]["exact"] for h in match.get("headers", []) if h["name"] == ":method"
        ]
        if methods and verb not in methods:
            continue
        return route
    raise AssertionError(f"no route for {verb} {path}")


FILTER_OFF = {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "disabled": True}


def assert_refused(route: dict[str, Any]) -> None:
    assert route["direct_response"]["status"] == 404, route
    # Plain text, which the local-reply mappers wrap in a google.rpc.Status NOT_FOUND
    # (tests/test_e2e_edge_errors.py checks the JSON a client gets).
    assert route["direct_response"]["body"]["inline_string"] == "no such API route"
    assert "route" not in route
    # No 401 instead of the 404, and no transcoding to another method past jwt_authn.
    assert route["typed_per_filter_config"] == {
        "envoy.filters.http.jwt_authn": FILTER_OFF,
        "envoy.filters.http.grpc_json_transcoder": FILTER_OFF,
    }


def test_internal_methods_are_refused_before_any_forwarding_route(
    config: dict[str, Any], descriptor: Path
) -> None:
    internal = [m for m in contract_methods(descriptor) if m.internal]
    names = {m.full_name for m in internal}
    assert {
        "socialmesh.graph.v1.GraphService.BatchGetFollowCounts",
        "socialmesh.post.v1.PostService.BatchGetPostCounts",
        f"{EDGETEST_SERVICE}.Secret",
        f"{EDGETEST_SERVICE}.Hidden",
    } <= names
    order = [r["name"] for r in routes(config)]
    first_forwarding = min(i for i, r in enumerate(routes(config)) if "route" in r)
    for m in internal:
        route = first_route(config, "POST", m.grpc_path)
        assert route["name"] == f"internal {m.full_name}"
        assert_refused(route)
        assert order.index(route["name"]) < first_forwarding, m.full_name
        assert m.full_name not in order  # no per-method forwarding route either
        # A REST binding an internal method gets is refused on its verb and path too.
        for b in m.http:
            path = re.sub(r"\{[^}]*\}", "7", b.template)
            assert_refused(first_route(config, b.verb, path))
            assert_refused(first_route(config, b.verb, path + "/"))
    assert first_route(config, "GET", "/v1/edgetest/7:secret")["name"] == (
        "internal GET /v1/edgetest/{id}:secret"
    )
    # The refusal is for that verb only; the path is not taken away from other methods.
    assert "direct_response" not in first_route(config, "GET", "/v1/edgetest/7:watch")
    # jwt_authn has no rule for them: if a request ever got past their routes, the
    # catch-all (token required) would apply, never an anonymous-OK rule.
    for m in internal:
        assert jwt_requirement(config, "POST", m.grpc_path) == TOKEN_REQUIRED
        for b in m.http:
            path = re.sub(r"\{[^}]*\}", "7", b.template)
            assert jwt_requirement(config, b.verb, path) == TOKEN_REQUIRED
    # Nothing else is refused that way (400s for re-bound path ids are another matter).
    refusals = {
        r["name"]
        for r in routes(config)
        if "typed_per_filter_config" in r and r.get("direct_response", {}).get("status") == 404
    }
    assert refusals == {f"internal {m.full_name}" for m in internal} | {
        f"internal {b.verb} {b.template}" for m in internal for b in m.http
    }


def test_request_timeout_comes_from_settings(descriptor: Path, jwks: str) -> None:
    config = yaml.safe_load(
        render_yaml(
            settings_for(descriptor, jwks, request_timeout_seconds=2.5), upstreams_for(descriptor)
        )
    )
    assert route_named(config, f"{USER_SERVICE}.GetUser")["route"]["timeout"] == "2.500s"
    assert route_named(config, f"{EDGETEST_SERVICE}.Watch")["route"]["timeout"] == "0s"


# ----------------------------------------------------------------------------- clusters


def test_every_cluster_is_http2_health_checked_and_protected(
    config: dict[str, Any], descriptor: Path
) -> None:
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    ups = upstreams_for(descriptor)
    assert set(clusters) == {u.name for u in ups}
    for upstream in ups:
        c = clusters[upstream.name]
        options = c["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]
        assert "http2_protocol_options" in options["explicit_http_config"]
        (check,) = c["health_checks"]
        assert check["grpc_health_check"] == {"service_name": upstream.grpc_service}
        assert check["interval"] == "2s"
        assert check["healthy_threshold"] >= 1 and check["unhealthy_threshold"] >= 1
        outlier = c["outlier_detection"]
        assert outlier["consecutive_5xx"] > 0 and outlier["consecutive_gateway_failure"] > 0
        assert outlier["enforcing_consecutive_gateway_failure"] == 100
        assert c["circuit_breakers"]["thresholds"][0]["max_requests"] > 0
        assert c["connect_timeout"] == "1s"
        endpoint = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"] == {
            "address": upstream.host,
            "port_value": upstream.port,
        }
        if upstream.host == "127.0.0.1":
            assert c["type"] == "STATIC"
        else:
            assert c["cluster_type"]["name"] == "envoy.clusters.dns"
        keepalive = options["explicit_http_config"]["http2_protocol_options"]
        assert keepalive["connection_keepalive"] == {"interval": "30s", "timeout": "5s"}


def test_upstream_keepalive_interval_comes_from_settings(descriptor: Path, jwks: str) -> None:
    settings = settings_for(descriptor, jwks, upstream_keepalive_interval_seconds=1.5)
    config = yaml.safe_load(render_yaml(settings, upstreams_for(descriptor)))
    for c in config["static_resources"]["clusters"]:
        options = c["typed_extension_protocol_options"][
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
        ]
        keepalive = options["explicit_http_config"]["http2_protocol_options"]
        assert keepalive["connection_keepalive"]["interval"] == "1.500s"
    with pytest.raises(ValueError, match="keepalive"):
        build_bootstrap(
            settings_for(descriptor, jwks, upstream_keepalive_interval_seconds=0),
            upstreams_for(descriptor),
        )


def test_keepalive_agrees_between_edge_servers_and_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever pings a service must do it no more often than the service allows, or the
    service answers GOAWAY too_many_pings and every quiet stream on the connection dies
    (test_e2e_edge shows it happening through a real Envoy)."""
    from services.kit import channels, server

    allowed = dict(server.SERVER_OPTIONS)
    assert allowed["grpc.keepalive_permit_without_calls"] == 1  # Envoy pings idle pools too
    floor_ms = allowed["grpc.http2.min_ping_interval_without_data_ms"]
    assert floor_ms == server.MIN_PING_INTERVAL_WITHOUT_DATA_MS
    assert allowed["grpc.http2.max_ping_strikes"] > 0  # real ping floods are still cut off
    # The edge (test_e2e_edge renders it with a shorter interval, still above the floor).
    edge_s = EdgeSettings.__dataclass_fields__["upstream_keepalive_interval_seconds"].default
    assert isinstance(edge_s, float) and edge_s * 1000 >= floor_ms
    # The kit's own clients (service to service).
    captured: dict[str, Any] = {}

    def fake_channel(target: str, options: Any = None, **kwargs: Any) -> object:
        captured.update(dict(options or []))
        return object()

    monkeypatch.setattr(channels.grpc.aio, "insecure_channel", fake_channel)
    channels.open_channel("127.0.0.1:1")
    assert captured["grpc.keepalive_time_ms"] >= floor_ms
    assert captured["grpc.keepalive_time_ms"] == edge_s * 1000  # same cadence as the edge
    if captured.get("grpc.keepalive_permit_without_calls"):
        assert allowed["grpc.keepalive_permit_without_calls"] == 1
    # Unary traffic still rotates connections so dns:/// round-robin sees new pods.
    assert allowed["grpc.max_connection_age_ms"] == 300_000
    assert "grpc.max_connection_age_ms" not in dict(server.server_options(None))


# ------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(
    ("template", "matches", "misses"),
    [
        (
            "/v1/users/{user_id}",
            ["/v1/users/1", "/v1/users/1/"],
            ["/v1/users", "/v1/users/1/x", "/v1/users:batchGet"],
        ),
        ("/v1/users/{user.user_id}", ["/v1/users/abc"], ["/v1/users/"]),
        ("/v1/users:batchGet", ["/v1/users:batchGet"], ["/v1/usersXbatchGet", "/v1/users/1"]),
        (
            "/v1/{name=shelves/*}/books/**",
            ["/v1/shelves/s1/books/a/b"],
            ["/v1/shelves/s1/x/books/a"],
        ),
        ("/v1/a.b/*:do", ["/v1/a.b/x:do"], ["/v1/aXb/x:do", "/v1/a.b/x"]),
    ],
)
def test_template_to_regex(template: str, matches: list[str], misses: list[str]) -> None:
    regex = template_to_regex(template)
    for path in matches:
        assert re.fullmatch(regex, path), (regex, path)
    for path in misses:
        assert not re.fullmatch(regex, path), (regex, path)


def test_access_log_is_json_with_request_id_grpc_status_and_upstream(
    descriptor: Path, jwks: str
) -> None:
    config = yaml.safe_load(render_yaml(settings_for(descriptor, jwks), upstreams_for(descriptor)))
    (log,) = hcm(config)["access_log"]
    fields = log["typed_config"]["log_format"]["json_format"]
    assert fields["request_id"] == "%REQ(X-REQUEST-ID)%"
    assert fields["grpc_status"] == "%GRPC_STATUS%"
    assert fields["upstream"] == "%UPSTREAM_CLUSTER%"
    assert fields["traceparent"] == "%REQ(TRACEPARENT)%"


def test_edge_traces_only_when_a_collector_is_given(descriptor: Path, jwks: str) -> None:
    plain = yaml.safe_load(render_yaml(settings_for(descriptor, jwks), upstreams_for(descriptor)))
    assert "tracing" not in hcm(plain)
    traced = yaml.safe_load(
        render_yaml(
            settings_for(descriptor, jwks, otlp_collector="otel-collector:4317"),
            upstreams_for(descriptor),
        )
    )
    provider = hcm(traced)["tracing"]["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    cluster = provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"]
    assert cluster in {c["name"] for c in traced["static_resources"]["clusters"]}
