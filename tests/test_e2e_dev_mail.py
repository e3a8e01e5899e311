"""The dev mailbox of `socialmesh up`: mails spooled under the data dir, listed by
`socialmesh mail`, with links to the app's pages on the edge's own origin."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from .e2e_support import ROOT, UpProcess, register

pytestmark = pytest.mark.e2e


def spooled(stack: UpProcess, to: str, subject: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for path in sorted((stack.data_dir / "mail").glob("[0-9]*.json")):
            mail = json.loads(path.read_text())
            if mail["to"] == to and mail["subject"] == subject:
                return mail
        time.sleep(0.1)
    raise AssertionError(f"no {subject!r} mail to {to} in the spool")


def mail_command(stack: UpProcess, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "mail", "--data-dir", str(stack.data_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_mails_are_spooled_with_links_to_the_edge_origin(client: httpx.Client, stack: UpProcess):
    user = register(client)
    welcome = spooled(stack, user["email"], "Welcome to socialmesh")
    (link,) = welcome["links"]
    assert link.startswith(f"{stack.edge}/verify-email#token="), link
    token = link.split("#token=", 1)[1]
    assert client.post("/v1/users:verifyEmail", json={"token": token}).status_code == 200

    r = client.post("/v1/auth:requestPasswordReset", json={"email": user["email"]})
    assert r.status_code == 200, r.text
    reset = spooled(stack, user["email"], "Reset your socialmesh password")
    (reset_link,) = reset["links"]
    assert reset_link.startswith(f"{stack.edge}/reset-password#token=")

    # `socialmesh mail` lists them latest first; --json gives whole mails.
    listing = mail_command(stack, "--to", user["email"])
    lines = [line for line in listing.splitlines() if not line.startswith(" ")]
    assert "Reset your socialmesh password" in lines[0]
    assert "Welcome to socialmesh" in lines[1]
    assert reset_link in listing and link in listing
    whole = json.loads(mail_command(stack, "--to", user["email"], "--json", "--limit", "1"))
    assert [m["subject"] for m in whole] == ["Reset your socialmesh password"]
    assert whole[0]["body"] == reset["body"]
