"""Through a real edge (`socialmesh up`): the browser's refresh cookie, a service's 429
with `retry-after`, and the request id in service errors."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from .e2e_support import PASSWORD, UpProcess, bearer, login, register

COOKIE_MODE = {"x-refresh-token-transport": "cookie"}

pytestmark = pytest.mark.e2e


def error_info(body: dict) -> dict:
    (info,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
    return info


def sm_refresh(response: httpx.Response) -> str:
    (header,) = [v for v in response.headers.get_list("set-cookie") if v.startswith("sm_refresh=")]
    return header


def test_refresh_cookie_round_trip_through_the_edge(client: httpx.Client, stack: UpProcess):
    user = register(client)
    r = client.post(
        "/v1/auth:login",
        json={"handle": user["handle"], "password": PASSWORD},
        headers=COOKIE_MODE,
    )
    assert r.status_code == 200, r.text
    assert r.json().get("refreshToken", "") == "" and r.json()["accessToken"]
    cookie = sm_refresh(r)
    token = cookie.split(";")[0].removeprefix("sm_refresh=")
    assert token
    attributes = [a.strip() for a in cookie.split(";")[1:]]
    assert attributes == [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/v1/auth:refresh",
        f"Max-Age={30 * 86400}",
    ]
    # Both cookies pass the transcoder as separate headers; the hint is script-readable.
    (hint,) = [v for v in r.headers.get_list("set-cookie") if v.startswith("sm_session=")]
    assert hint == f"sm_session=1; SameSite=Strict; Path=/; Max-Age={30 * 86400}"

    # `Secure` follows the scheme the edge itself was reached by (plain http here): a
    # client's own x-forwarded-proto is not believed.
    plain = client.post(
        "/v1/auth:login",
        json={"handle": user["handle"], "password": PASSWORD},
        headers={**COOKIE_MODE, "x-forwarded-proto": "https"},
    )
    assert "Secure" not in [a.strip() for a in sm_refresh(plain).split(";")]

    # A browser refreshes with `{}` and the cookie; the new token comes back as the cookie.
    # (httpx's cookie jar does not send cookies to an IP host, so the header is explicit.)
    refreshed = client.post(
        "/v1/auth:refresh", json={}, headers={**COOKIE_MODE, "cookie": f"sm_refresh={token}"}
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json().get("refreshToken", "") == ""
    assert refreshed.json()["user"]["userId"] == user["userId"]
    rotated = sm_refresh(refreshed).split(";")[0].removeprefix("sm_refresh=")
    assert rotated and rotated != token
    access = refreshed.json()["accessToken"]
    out = client.post("/v1/auth:logout", json={}, headers=bearer(access))
    assert out.status_code == 200, out.text
    cleared = sm_refresh(out)
    assert cleared.startswith("sm_refresh=;") and "Max-Age=0" in cleared
    again = client.post(
        "/v1/auth:refresh", json={}, headers={**COOKIE_MODE, "cookie": f"sm_refresh={rotated}"}
    )
    assert again.status_code == 401
    assert error_info(again.json())["reason"] == "SESSION_ENDED"
    assert "Max-Age=0" in sm_refresh(again)  # the dead cookie is dropped

    # Without a token in body or cookie: 400 naming the field, as the client spells it.
    none = client.post("/v1/auth:refresh", json={})
    assert none.status_code == 400
    assert any(
        v["field"] == "refreshToken"
        for d in none.json()["details"]
        for v in d.get("fieldViolations", [])
    )

    # The token never reaches a URL or a log line.
    stack.proc.poll()
    logs = stack.data_dir.parent / "logs"
    text = "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))
    text += "".join(stack.output)
    assert token not in text and rotated not in text


def test_a_service_rate_limit_is_one_signal(client: httpx.Client):
    """Password reset requests: 3 per address per hour. The 4th is a 429 with a
    `retry-after` header, RetryInfo, and RATE_LIMITED naming the limit and window."""
    user = register(client)
    email = f"{user['handle']}@example.com"
    for _ in range(3):
        r = client.post("/v1/auth:requestPasswordReset", json={"email": email})
        assert r.status_code == 200, r.text
    r = client.post("/v1/auth:requestPasswordReset", json={"email": email})
    assert r.status_code == 429, r.text
    retry_after = int(r.headers["retry-after"])
    assert 3500 <= retry_after <= 3600
    # One set of rate-limit headers: the service's limit, not the edge's flood bucket.
    assert r.headers.get_list("x-ratelimit-remaining") == ["0"]
    assert r.headers["x-ratelimit-limit"] == "3"
    assert r.headers["x-ratelimit-reset"] == str(retry_after)
    body = r.json()
    info = error_info(body)
    assert info["reason"] == "RATE_LIMITED" and info["domain"] == "socialmesh.dev"
    assert info["metadata"]["limit"] == "3" and info["metadata"]["window"] == "3600s"
    assert info["metadata"]["retryAfter"] == str(retry_after)
    assert info["metadata"]["requestId"] == r.headers["x-request-id"]
    (retry,) = [d for d in body["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry["retryDelay"].endswith("s")


def test_service_errors_carry_the_edge_request_id(client: httpx.Client):
    user = register(client)
    token = login(client, user["handle"])["accessToken"]
    r = client.get("/v1/users/9000000000000000123", headers=bearer(token))
    assert r.status_code == 404, r.text
    info = error_info(r.json())
    assert info["reason"] == "NOT_FOUND" and info["metadata"]["resourceType"] == "user"
    assert info["metadata"]["requestId"] == r.headers["x-request-id"]
    other = register(client)
    r = client.delete(f"/v1/users/{other['userId']}", headers=bearer(token))
    assert r.status_code == 403 and error_info(r.json())["reason"] == "NOT_OWNER"
    r = client.post("/v1/auth:login", json={"handle": user["handle"], "password": "wrong one!"})
    assert r.status_code == 401 and error_info(r.json())["reason"] == "INVALID_CREDENTIALS"


def test_account_settings_over_rest(client: httpx.Client, stack: UpProcess):
    """The week-one endpoints through the edge: sessions, sign out everywhere, change
    password, reset by mail, blocked and muted lists, and Idempotency-Key on comments."""
    user = register(client)
    first = login(client, user["handle"])
    second = login(client, user["handle"])
    me = bearer(second["accessToken"])
    sessions = client.get(f"/v1/users/{user['userId']}/sessions", headers=me)
    assert sessions.status_code == 200, sessions.text
    assert [s.get("current", False) for s in sessions.json()["sessions"]] == [True, False]

    changed = client.post(
        f"/v1/users/{user['userId']}:changePassword",
        json={"currentPassword": PASSWORD, "newPassword": "a brand new password"},
        headers=me,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["endedSessionCount"] == 1
    gone = client.get("/v1/auth:caller", headers=bearer(first["accessToken"]))
    assert gone.status_code == 401 and error_info(gone.json())["reason"] == "SESSION_ENDED"
    wrong = client.post(
        f"/v1/users/{user['userId']}:changePassword",
        json={"currentPassword": "not the password", "newPassword": "another new one"},
        headers=me,
    )
    assert wrong.status_code == 400 and error_info(wrong.json())["reason"] == "WRONG_PASSWORD"

    # Reset by mail (the dev mailbox), then every session is over.
    assert client.post("/v1/auth:requestPasswordReset", json={"email": user["email"]}).is_success
    token = ""
    for _ in range(200):
        for path in sorted((stack.data_dir / "mail").glob("[0-9]*.json")):
            mail = json.loads(path.read_text())
            if mail["to"] == user["email"] and "reset" in mail["subject"].lower():
                token = mail["links"][0].split("#token=", 1)[1]
        if token:
            break
        time.sleep(0.05)
    assert token, "no reset mail"
    reset = client.post(
        "/v1/auth:resetPassword", json={"token": token, "newPassword": "reset password 1"}
    )
    assert reset.status_code == 200, reset.text
    assert client.get("/v1/auth:caller", headers=me).status_code == 401
    r = client.post(
        "/v1/auth:login", json={"handle": user["handle"], "password": "reset password 1"}
    )
    assert r.status_code == 200, r.text
    me = bearer(r.json()["accessToken"])

    other = register(client)
    assert client.post(f"/v1/users/{other['userId']}:block", json={}, headers=me).is_success
    assert client.post(f"/v1/users/{other['userId']}:mute", json={}, headers=me).is_success
    blocked = client.get("/v1/blockedUsers", headers=me).json()["blockedUsers"]
    assert [b["userId"] for b in blocked] == [other["userId"]]
    muted = client.get("/v1/mutedUsers", headers=me).json()["mutedUsers"]
    assert [m["userId"] for m in muted] == [other["userId"]]

    post = client.post("/v1/posts", json={"text": "retry me"}, headers=me).json()
    keyed = {**me, "Idempotency-Key": "comment-once"}
    url = f"/v1/posts/{post['postId']}/comments"
    one = client.post(url, json={"text": "only once"}, headers=keyed)
    two = client.post(url, json={"text": "only once"}, headers=keyed)
    assert one.status_code == 200, one.text
    assert one.json()["commentId"] == two.json()["commentId"]
    by_query = client.post(url, params={"requestId": "q-1"}, json={"text": "q"}, headers=me)
    assert by_query.status_code == 200, by_query.text

    everywhere = client.post("/v1/auth:logoutEverywhere", json={}, headers=me)
    assert everywhere.status_code == 200, everywhere.text
    assert "Max-Age=0" in sm_refresh(everywhere)
    assert client.get("/v1/auth:caller", headers=me).status_code == 401
