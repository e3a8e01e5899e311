"""End to end: `socialmesh up` (real PostgreSQL, Redis, services and Envoy), over REST and gRPC."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import httpx
import jwt
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from socialmesh.user.v1 import user_pb2, user_pb2_grpc

from .conftest import unique
from .e2e_support import PASSWORD, UpProcess, bearer, field_violations, login, register, start_up

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent


def test_prints_what_is_where(stack: UpProcess) -> None:
    text = "".join(stack.output)
    assert stack.edge in text and f"grpc://127.0.0.1:{stack.base_port}" in text
    assert "Envoy admin" in text


def test_user_journey_over_rest(client: httpx.Client) -> None:
    created = register(client)
    user_id = created["userId"]
    assert isinstance(user_id, str) and int(user_id) > 0  # int64 is a JSON string
    assert created["handle"] and created["isPrivate"] is False  # primitives always printed

    session = login(client, created["handle"])
    assert set(session) >= {"accessToken", "refreshToken", "expiresIn", "user"}
    token = session["accessToken"]

    public = client.get(f"/v1/users/{user_id}")
    assert public.status_code == 200 and public.json()["handle"] == created["handle"]
    assert public.json().get("email", "") == ""
    own = client.get(f"/v1/users/{user_id}", headers=bearer(token)).json()
    assert own["email"] == f"{created['handle']}@example.com"

    patched = client.patch(
        f"/v1/users/{user_id}",
        params={"updateMask": "displayName,bio"},
        json={"displayName": "New Name", "bio": "hello\u0007 world"},
        headers=bearer(token),
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["displayName"], patched.json()["bio"]) == ("New Name", "hello world")
    assert client.get(f"/v1/users/{user_id}").json()["displayName"] == "New Name"

    batch = client.get("/v1/users:batchGet", params=[("userIds", user_id), ("userIds", "1")])
    assert batch.status_code == 200 and [u["userId"] for u in batch.json()["users"]] == [user_id]

    rotated = client.post("/v1/auth:refresh", json={"refreshToken": session["refreshToken"]})
    assert rotated.status_code == 200 and rotated.json()["refreshToken"] != session["refreshToken"]
    # A second tab refreshing with the same token at once gets the same new token...
    twin = client.post("/v1/auth:refresh", json={"refreshToken": session["refreshToken"]})
    assert twin.status_code == 200, twin.text
    assert twin.json()["refreshToken"] == rotated.json()["refreshToken"]
    # ...but once that successor has moved on, the old token coming back is reuse.
    onward = client.post("/v1/auth:refresh", json={"refreshToken": rotated.json()["refreshToken"]})
    assert onward.status_code == 200, onward.text
    reused = client.post("/v1/auth:refresh", json={"refreshToken": session["refreshToken"]})
    assert reused.status_code == 401
    assert reused.json()["details"][0]["reason"] == "REFRESH_TOKEN_REUSED"

    # The reuse revoked the session, so its newest access token is dead too.
    revoked = onward.json()["accessToken"]
    assert client.delete(f"/v1/users/{user_id}", headers=bearer(revoked)).status_code == 401
    fresh = login(client, created["handle"])["accessToken"]
    deleted = client.delete(f"/v1/users/{user_id}", headers=bearer(fresh))
    assert deleted.status_code == 200, deleted.text
    assert client.get(f"/v1/users/{user_id}").status_code == 404


def test_missing_forged_and_expired_tokens_get_401(client: httpx.Client, stack: UpProcess) -> None:
    user = register(client)
    path = f"/v1/users/{user['userId']}"
    body = {"bio": "x"}
    assert client.patch(path, params={"updateMask": "bio"}, json=body).status_code == 401
    forged = jwt.encode(
        {
            "sub": user["userId"],
            "iss": "socialmesh",
            "aud": "socialmesh-api",
            "exp": int(time.time()) + 600,
        },
        "x" * 32,
        algorithm="HS256",
    )
    from services.kit.auth import TokenSigner, load_private_key

    key = load_private_key(stack.data_dir / "keys" / "jwt-signing.pem")
    expired = TokenSigner(key, issuer="socialmesh", audience="socialmesh-api", ttl=-120).sign(
        int(user["userId"]), 1
    )
    wrong_audience = TokenSigner(key, issuer="socialmesh", audience="someone-else", ttl=600).sign(
        int(user["userId"]), 1
    )
    for token in (forged, expired, wrong_audience, "not.a.jwt"):
        r = client.patch(path, params={"updateMask": "bio"}, json=body, headers=bearer(token))
        assert r.status_code == 401, (token, r.text)
        # A bad token is refused even on a route that allows anonymous callers.
        assert client.get(path, headers=bearer(token)).status_code == 401


def test_refusals_map_to_http_statuses(client: httpx.Client) -> None:
    alice = register(client)
    bob = register(client)
    bob_token = login(client, bob["handle"])["accessToken"]
    r = client.patch(
        f"/v1/users/{alice['userId']}",
        params={"updateMask": "bio"},
        json={"bio": "pwned"},
        headers=bearer(bob_token),
    )
    assert r.status_code == 403, r.text

    bad = [
        ({"handle": "no", "email": "a@b.co", "password": PASSWORD}, "handle"),
        ({"handle": unique(), "email": "nope", "password": PASSWORD}, "email"),
        ({"handle": unique(), "email": "a@b.co", "password": "short"}, "password"),
    ]
    for payload, field in bad:
        r = client.post("/v1/users", json=payload)
        assert r.status_code == 400, r.text
        assert field in field_violations(r.json()), r.text

    alice_token = login(client, alice["handle"])["accessToken"]
    for params, payload, field in (
        ({"updateMask": "bio"}, {"bio": "b" * 301}, "user.bio"),
        ({"updateMask": "avatarUrl"}, {"avatarUrl": "https://x.example/a.png"}, "updateMask"),
        ({"updateMask": "handle"}, {"handle": "takeover"}, "updateMask"),
    ):
        r = client.patch(
            f"/v1/users/{alice['userId']}", params=params, json=payload, headers=bearer(alice_token)
        )
        assert r.status_code == 400 and field in field_violations(r.json()), r.text

    dup = client.post(
        "/v1/users",
        json={"handle": alice["handle"], "email": "other@example.com", "password": PASSWORD},
    )
    assert dup.status_code == 409, dup.text
    assert client.get("/v1/users/1", params={"bogus": "1"}).status_code == 400
    assert client.get("/v1/users/999999").status_code == 404


def test_eleventh_update_is_429(client: httpx.Client) -> None:
    user = register(client)
    token = login(client, user["handle"])["accessToken"]
    codes = [
        client.patch(
            f"/v1/users/{user['userId']}",
            params={"updateMask": "bio"},
            json={"bio": f"v{i}"},
            headers=bearer(token),
        ).status_code
        for i in range(11)
    ]
    assert codes == [200] * 10 + [429]


def test_native_grpc_through_the_edge(client: httpx.Client, stack: UpProcess) -> None:
    user = register(client)
    with grpc.insecure_channel(f"127.0.0.1:{stack.edge_port}") as channel:
        stub = user_pb2_grpc.UserServiceStub(channel)
        got = stub.GetUser(user_pb2.GetUserRequest(user_id=int(user["userId"])), timeout=10)
        assert got.handle == user["handle"]
        with pytest.raises(grpc.RpcError) as err:
            stub.DeleteUser(user_pb2.DeleteUserRequest(user_id=int(user["userId"])), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection_list_every_running_service(stack: UpProcess) -> None:
    from services import registry

    assert set(registry.IMPLEMENTED) >= {"user", "graph"}
    ports = registry.ports(stack.base_port)
    for service in registry.IMPLEMENTED:
        port = ports[service]
        full_name = registry.get(service).grpc_service
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", full_name, "liveness"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (service, name)
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            responses = reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            names = {s.name for r in responses for s in r.list_services_response.service}
        assert {
            full_name,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= names, service


def test_edge_health_endpoint_needs_no_token(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200


def test_cors_preflight_is_answered(client: httpx.Client) -> None:
    r = client.options(
        "/v1/users/1",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers.get("access-control-allow-origin") in ("*", "https://app.example.com")


def test_restart_keeps_data_and_shutdown_leaves_nothing(tmp_path: Path) -> None:
    first = start_up(tmp_path / "data", tmp_path / "logs")
    try:
        with httpx.Client(base_url=first.edge, timeout=20) as c:
            user = register(c)
        children = first.descendants()
        postgres = first.postgres_pid()
        assert children and postgres
    finally:
        first.stop()
    assert first.proc.returncode == 0
    time.sleep(0.5)
    alive = [p.pid for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"left behind: {alive}"
    assert (
        not psutil.pid_exists(postgres) or psutil.Process(postgres).status() == psutil.STATUS_ZOMBIE
    )

    second = start_up(tmp_path / "data", tmp_path / "logs")
    try:
        with httpx.Client(base_url=second.edge, timeout=20) as c:
            assert login(c, user["handle"])["user"]["userId"] == user["userId"]
    finally:
        second.stop()


def test_the_edge_serves_its_openapi_document(client: httpx.Client) -> None:
    r = client.get("/openapi.json")  # no token needed
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    login = doc["paths"]["/v1/auth:login"]["post"]
    assert login["security"] == [] and login["x-socialmesh-access"] == "public"
    send = doc["paths"]["/v1/conversations/{conversationId}/messages"]["post"]
    assert {p["name"] for p in send["parameters"]} == {"conversationId", "requestId"}
    assert send["security"] == [{"bearer": []}]
    # Internal methods are not part of the public surface.
    operations = {op["operationId"] for ops in doc["paths"].values() for op in ops.values()}
    assert "batchGetRelationships" not in operations
    assert "followUser" in operations
    user_id = doc["components"]["schemas"]["User"]["properties"]["userId"]
    assert user_id["type"] == "string" and user_id["format"] == "int64"  # int64 as string


def test_a_request_body_with_a_list_of_several_values_is_answered(client: httpx.Client) -> None:
    """The edge's unknown-field check walks request bodies; it once stopped on the comma
    between two list elements and spun an Envoy worker for ever (schemathesis found it)."""
    r = client.post("/v1/posts", json={"text": "x", "mediaIds": ["1", "2", "3"]}, timeout=10)
    assert r.status_code == 401, r.text  # answered: no token
    r = client.post(
        "/v1/posts", json={"mediaIds": ["1", "2"], "nope": [[1, 2], {"a": [3, 4]}]}, timeout=10
    )
    assert r.status_code == 400 and "nope" in r.json()["message"], r.text
