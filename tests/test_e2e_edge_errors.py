"""What a REST client gets when the edge itself answers: one google.rpc.Status JSON shape
with a specific reason and the request id, CORS lists a browser needs, compression.

Each of these replies was text/plain (or missing) before: the client review
(../shared/reviews/2026-12-client.md, section 5 items 1, 8, 9, 14).
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from .e2e_support import UpProcess, own_edge

pytestmark = pytest.mark.e2e


def edge_error(r: httpx.Response, status: int, code: int, reason: str) -> dict:
    """Checks the AIP-193 shape and returns the body."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    (info,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    assert info["reason"] == reason, body
    assert info["domain"], body
    request_id = r.headers["x-request-id"]
    assert request_id and info["metadata"]["requestId"] == request_id, (body, r.headers)
    return body


def test_missing_token_is_json_with_its_own_reason(client: httpx.Client) -> None:
    edge_error(client.get("/v1/feed"), 401, 16, "TOKEN_MISSING")


def test_expired_and_forged_tokens_have_different_reasons(client: httpx.Client) -> None:
    # Signed by a key the edge does not know: invalid, not expired (sign in again).
    key = ec.generate_private_key(ec.SECP256R1())
    claims = {"iss": "socialmesh", "aud": "socialmesh-api", "sub": "1", "sid": "1"}
    forged = jwt.encode({**claims, "exp": int(time.time()) + 600}, key, algorithm="ES256")
    r = client.get("/v1/feed", headers={"Authorization": f"Bearer {forged}"})
    edge_error(r, 401, 16, "TOKEN_INVALID")
    # Expired long ago (past jwt_authn's clock skew): refresh, don't sign in again.
    expired = jwt.encode({**claims, "exp": int(time.time()) - 3600}, key, algorithm="ES256")
    r = client.get("/v1/feed", headers={"Authorization": f"Bearer {expired}"})
    # An unknown key fails signature before expiry; the reason must still be specific.
    assert r.json()["details"][0]["reason"] in {"TOKEN_INVALID", "TOKEN_EXPIRED"}


def test_transcoder_refusals_are_json_naming_the_problem(client: httpx.Client) -> None:
    body = edge_error(client.get("/v1/posts/abc"), 400, 3, "MALFORMED_REQUEST")
    assert "post_id" in body["message"]
    body = edge_error(
        client.get("/v1/users:search", params={"query": "ab", "limit": "3"}),
        400,
        3,
        "MALFORMED_REQUEST",
    )
    assert "limit" in body["message"]
    r = client.post(
        "/v1/auth:login", content=b'{"handle":', headers={"content-type": "application/json"}
    )
    edge_error(r, 400, 3, "MALFORMED_REQUEST")


def test_path_parameter_repeated_in_the_query_is_json(client: httpx.Client) -> None:
    r = client.post("/v1/users/5:follow", params={"userId": "2"}, json={})
    body = edge_error(r, 400, 3, "INVALID_ARGUMENT")
    assert "userId" in body["message"]


def test_unknown_api_route_is_json_404(client: httpx.Client) -> None:
    # A known path with a verb it does not have: the transcoder's own 404.
    edge_error(client.get("/v1/users/1:follow"), 404, 5, "ROUTE_NOT_FOUND")


def test_oversized_body_is_json_413(client: httpx.Client) -> None:
    big = b'{"text":"' + b"a" * (300 * 1024) + b'"}'
    r = client.post("/v1/posts", content=big, headers={"content-type": "application/json"})
    edge_error(r, 413, 3, "PAYLOAD_TOO_LARGE")


def test_every_response_carries_a_request_id(client: httpx.Client) -> None:
    ok = client.get("/openapi.json")
    assert ok.status_code == 200 and ok.headers.get("x-request-id")
    a, b = client.get("/v1/feed"), client.get("/v1/feed")
    assert a.headers["x-request-id"] != b.headers["x-request-id"]


def test_grpc_callers_still_get_grpc_status_not_json(stack: UpProcess) -> None:
    # A gRPC call without a token: trailers-only UNAUTHENTICATED, no JSON anywhere.
    with httpx.Client(http2=True, base_url=f"http://127.0.0.1:{stack.edge_port}") as h2:
        r = h2.post(
            "/socialmesh.feed.v1.FeedService/GetFeed",
            content=b"\x00\x00\x00\x00\x00",
            headers={"content-type": "application/grpc", "te": "trailers"},
        )
    assert r.status_code == 200, r.text
    assert r.headers.get("grpc-status") == "16", r.headers
    assert not r.headers.get("grpc-message", "").startswith("{")


def test_edge_rate_limit_is_json_with_retry_after(stack: UpProcess, tmp_path: Path) -> None:
    with own_edge(stack, tmp_path, rate_limit_per_client_per_second=1) as url:
        with httpx.Client(base_url=url, timeout=10) as c:
            replies = [c.get("/v1/auth:caller") for _ in range(3)]
    assert [r.status_code for r in replies] == [401, 401, 429]
    limited = replies[-1]
    body = edge_error(limited, 429, 8, "RATE_LIMITED")
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    # The flood bucket does not decorate ordinary answers (it told a second story
    # beside a service's own limit).
    assert "x-ratelimit-remaining" not in replies[0].headers
    retry = [d for d in body["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry and retry[0]["retryDelay"] == "1s"


def test_cors_lets_a_browser_send_and_read_what_it_needs(client: httpx.Client) -> None:
    pre = client.options(
        "/v1/posts",
        headers={
            "origin": "http://app.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,idempotency-key,last-event-id",
        },
    )
    assert pre.status_code == 200
    allowed = pre.headers["access-control-allow-headers"].lower()
    for header in ("idempotency-key", "if-none-match", "last-event-id"):
        assert header in allowed, allowed
    r = client.get("/v1/feed", headers={"origin": "http://app.example"})
    exposed = r.headers["access-control-expose-headers"].lower()
    for header in ("x-request-id", "retry-after", "x-ratelimit-remaining", "www-authenticate"):
        assert header in exposed, exposed


def test_api_json_is_compressed_when_the_client_accepts_it(stack: UpProcess) -> None:
    url = f"http://127.0.0.1:{stack.edge_port}/openapi.json"
    # httpx would decode transparently; read the raw bytes to see what travelled.
    with httpx.Client() as c:
        with c.stream("GET", url, headers={"accept-encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
            assert r.headers.get("content-encoding") == "gzip", r.headers
        with c.stream("GET", url, headers={"accept-encoding": "br"}) as r:
            assert r.headers.get("content-encoding") == "br", r.headers
        plain = c.get(url, headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(raw) == plain.content
    assert len(raw) < len(plain.content) / 3


def test_json_reads_revalidate_with_etag_and_304(client: httpx.Client) -> None:
    from .e2e_support import register

    user = register(client)
    path = f"/v1/users/{user['userId']}"
    first = client.get(path)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('W/"') and first.headers["cache-control"] == "private, no-cache"
    unchanged = client.get(path, headers={"if-none-match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == tag
    # Another representation (another user) never matches this tag.
    other = client.get(f"/v1/users/{register(client)['userId']}", headers={"if-none-match": tag})
    assert other.status_code == 200 and other.headers["etag"] != tag
    # Errors and writes carry no ETag.
    assert "etag" not in client.get("/v1/feed").headers


def test_unknown_body_fields_are_refused_naming_the_field(client: httpx.Client) -> None:
    from .e2e_support import person

    user_id, headers = person(client)
    before = client.get(f"/v1/users/{user_id}").json()["displayName"]
    # The review's typo: it used to answer 200 and clear the display name.
    r = client.patch(
        f"/v1/users/{user_id}",
        params={"updateMask": "displayName"},
        json={"displayname": "Typo"},
        headers=headers,
    )
    body = edge_error(r, 400, 3, "UNKNOWN_FIELD")
    (bad,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert bad["fieldViolations"][0]["field"] == "displayname"
    assert client.get(f"/v1/users/{user_id}").json()["displayName"] == before
    # Nested messages are checked too, with the path to the field.
    r = client.post(
        "/v1/posts", json={"text": "hi", "visibilty": "VISIBILITY_PUBLIC"}, headers=headers
    )
    assert edge_error(r, 400, 3, "UNKNOWN_FIELD")["details"][1]["fieldViolations"][0]["field"] == (
        "visibilty"
    )
    # Both spellings the transcoder accepts still pass, as do escapes in strings.
    r = client.patch(
        f"/v1/users/{user_id}",
        params={"updateMask": "display_name"},
        json={"display_name": 'A "quoted" \\ name'},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/auth:login", json={"handle": "nobody_here", "password": "x", "username": "y"}
    )
    edge_error(r, 400, 3, "UNKNOWN_FIELD")


def test_a_body_repeating_the_path_id_is_refused(client: httpx.Client) -> None:
    from .e2e_support import person

    _, headers = person(client)
    target, _ = person(client)
    other, _ = person(client)
    # Security review I1: the path's id won silently over a camelCase body id.
    r = client.post(f"/v1/users/{target}:follow", json={"userId": other}, headers=headers)
    body = edge_error(r, 400, 3, "FIELD_IN_PATH")
    (bad,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert bad["fieldViolations"][0]["field"] == "userId"
    r = client.post(f"/v1/users/{target}:follow", json={"user_id": other}, headers=headers)
    assert r.status_code == 400, r.text
    # Nothing was followed; the id in the path alone works.
    assert client.post(f"/v1/users/{target}:follow", json={}, headers=headers).status_code == 200


def test_browsers_can_call_the_contracts_over_grpc_web(client: httpx.Client) -> None:
    import struct

    from socialmesh.user.v1 import user_pb2

    from .e2e_support import register

    user = register(client)
    message = user_pb2.GetUserRequest(user_id=int(user["userId"])).SerializeToString()
    r = client.post(
        "/socialmesh.user.v1.UserService/GetUser",
        content=b"\x00" + struct.pack(">I", len(message)) + message,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/grpc-web")
    flags, length = r.content[0], struct.unpack(">I", r.content[1:5])[0]
    assert flags == 0  # a data frame, then the trailers frame
    assert user_pb2.User.FromString(r.content[5 : 5 + length]).handle == user["handle"]
    trailers = r.content[5 + length :]
    assert trailers[0] == 0x80 and b"grpc-status:0" in trailers
