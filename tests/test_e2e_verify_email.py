"""End to end: email verification over REST through the edge (`socialmesh up`).

The dev mailer logs each mail in the user service's log; the link's token is read
from there, as a person would read it from their inbox.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from .conftest import unique
from .e2e_support import UpProcess

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


def mailed_token(stack: UpProcess, email: str) -> str:
    log = stack.data_dir.parent / "logs" / "user.log"
    pattern = re.compile(
        rf"mail to={re.escape(email)} subject='Welcome to socialmesh'.*?#token=([A-Za-z0-9_-]+)",
        re.S,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if log.exists() and (found := pattern.search(log.read_text(errors="replace"))):
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no welcome mail to {email} in {log}")


def test_verify_email_over_rest(stack: UpProcess, client: httpx.Client) -> None:
    handle = unique()
    email = f"{handle}@example.com"
    r = client.post("/v1/users", json={"handle": handle, "email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    user_id = r.json()["userId"]
    login = client.post("/v1/auth:login", json={"handle": handle, "password": PASSWORD}).json()
    me = {"Authorization": f"Bearer {login['accessToken']}"}
    assert not login["user"].get("emailVerified")

    # Anonymous, as from a link in the mail; then the owner sees the flag, nobody else.
    token = mailed_token(stack, email)
    r = client.post("/v1/users:verifyEmail", json={"token": token})
    assert r.status_code == 200 and r.json() == {"userId": user_id}, r.text
    assert client.get(f"/v1/users/{user_id}", headers=me).json()["emailVerified"] is True
    public = client.get(f"/v1/users/{user_id}").json()
    # Absent for everyone but the owner: not "" and a misleading false.
    assert "emailVerified" not in public and "email" not in public, public

    again = client.post("/v1/users:verifyEmail", json={"token": token})
    assert again.status_code == 400, again.text
    fields = [v["field"] for d in again.json()["details"] for v in d.get("fieldViolations", [])]
    assert fields == ["token"]

    resend = f"/v1/users/{user_id}:resendVerificationEmail"
    assert client.post(resend, json={}).status_code == 401
    r = client.post(resend, json={}, headers=me)
    assert r.status_code == 400 and r.json()["code"] == 9, r.text  # FAILED_PRECONDITION
