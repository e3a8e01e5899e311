"""The web app (web/) as part of the project: its unit tests, and its Playwright journeys
against a real `socialmesh up` serving web/out behind the edge.

Nothing is skipped quietly: a checkout with web/ but no build, no dependencies or no
chromium fails, saying to run `make install` (which does all three).

The journeys run against a stack of their own (what they create stays out of the other
e2e tests' stack), loaded first with `socialmesh seed` at a small scale (SEED_ARGS:
accounts `seed_0` ... `seed_199`, password `seed-password`, everyone following the
`seed_0` celebrity, posts tagged #seed), and get in the environment:

- `BASE_URL`: the edge, serving the app, /docs and the API;
- `E2E_FEED_HANDLE` / `E2E_FEED_PASSWORD`: a seeded account with a long home feed;
- `E2E_SEED_FILE`: a JSON file describing a few accounts made through the public API:
  `{"baseUrl", "password", "users": [{"userId", "handle", "displayName"}], "posts":
  [{"postId", "authorId", "text"}]}` where users[0] follows users[1] and users[2], and
  users[1] follows users[0]; each user wrote two posts;
- `E2E_DATA_DIR`: the stack's data dir (its `mail/` spools the mails `up` sends, e.g.
  verification links).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.user.seed import SEED_PASSWORD

from .e2e_support import PASSWORD, UpProcess, bearer, login, register, start_up

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
OUT = WEB / "out"
CHROMIUM = Path("/usr/bin/chromium")
TAIL = 12_000
#: `socialmesh seed` at journey scale: everyone follows seed_0, and ~25 others, so a
#: home feed rebuilt from followees' recent posts (20 each, services/feed) runs long.
SEED_ARGS = (
    *("--users", "200", "--follows", "5000", "--celebrity-followers", "199"),
    *("--posts", "12000", "--likes", "3000", "--comments", "500"),
)
FEED_HANDLE = "seed_1"

pytestmark = pytest.mark.skipif(
    not (WEB / "package.json").is_file(), reason="this checkout has no web app (web/)"
)


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        pytest.fail("npm not found: install Node.js (README), then `make install`")
    return found


def require_installed() -> None:
    if not (WEB / "node_modules").is_dir():
        pytest.fail("web/node_modules is missing: run `make install` (npm ci in web/)")


def run_npm(script: str, env: dict[str, str], timeout: float) -> None:
    env = {**env, "NO_COLOR": "1", "FORCE_COLOR": "0"}  # a readable failure message
    proc = subprocess.run(
        [npm(), "run", script],
        cwd=WEB,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"`npm run {script}` in web/ failed ({proc.returncode}):\n{proc.stdout[-TAIL:]}"
        )


def test_web_unit_tests() -> None:
    require_installed()
    run_npm("test", {**os.environ, "CI": "1"}, timeout=600)


def seed(client: httpx.Client) -> dict[str, object]:
    """A few people who follow each other and have written posts."""
    users = [register(client) for _ in range(3)]
    tokens = [bearer(login(client, u["handle"])["accessToken"]) for u in users]
    for who, whom in ((0, 1), (0, 2), (1, 0)):
        r = client.post(f"/v1/users/{users[whom]['userId']}:follow", json={}, headers=tokens[who])
        assert r.status_code == 200, r.text
    posts = []
    for i, user in enumerate(users):
        for n in range(2):
            text = f"post {n + 1} by {user['handle']} #socialmesh"
            r = client.post(
                "/v1/posts",
                params={"requestId": f"web-e2e-{user['userId']}-{n}"},
                json={"text": text},
                headers=tokens[i],
            )
            assert r.status_code == 200, r.text
            posts.append({"postId": r.json()["postId"], "authorId": user["userId"], "text": text})
    return {
        "baseUrl": str(client.base_url).rstrip("/"),
        "password": PASSWORD,
        "users": [
            {"userId": u["userId"], "handle": u["handle"], "displayName": u["displayName"]}
            for u in users
        ],
        "posts": posts,
    }


def require_build() -> None:
    if not (OUT / "index.html").is_file():
        pytest.fail(f"{OUT} holds no build: run `make install` (npm run build in web/)")


def socialmesh(*args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, f"socialmesh {' '.join(args)}:\n{proc.stdout[-TAIL:]}"


@pytest.fixture(scope="module")
def journey_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """A `socialmesh up` of the journeys' own, with the seeded data set loaded."""
    require_build()
    root = tmp_path_factory.mktemp("web-e2e")
    up = start_up(root / "data", root / "logs")
    try:
        data_dir = str(up.data_dir)
        socialmesh("seed", "--data-dir", data_dir, *SEED_ARGS)
        # The search copies now, not "within a minute": the journeys search at once.
        socialmesh("search", "backfill", "--data-dir", data_dir, "--base-port", str(up.base_port))
        yield up
    finally:
        up.stop()


@pytest.fixture(scope="module")
def journey_client(journey_stack: UpProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=journey_stack.edge, timeout=20) as c:
        yield c


@pytest.mark.e2e
def test_the_edge_serves_the_app_and_swagger_ui(journey_client: httpx.Client) -> None:
    client = journey_client
    require_build()
    if not (OUT / "docs" / "index.html").is_file():
        pytest.fail(f"{OUT}/docs is missing: run `make install` (scripts/precompress_web.py)")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert client.get("/openapi.json").json()["paths"]  # what Swagger UI loads
    bundle = client.get("/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "br"})
    assert bundle.headers["content-encoding"] == "br"  # precompressed at build time
    unknown = client.get("/no/such/page")
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")


@pytest.mark.e2e
def test_web_journeys(
    journey_stack: UpProcess, journey_client: httpx.Client, tmp_path: Path
) -> None:
    stack, client = journey_stack, journey_client
    require_installed()
    if not any((WEB / "e2e").glob("**/*.spec.ts")):
        pytest.fail("web/e2e holds no Playwright journeys (*.spec.ts) to run")
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make install` (apt-get install chromium)")
    # The edge serves the app built in web/out, under its security headers.
    home = client.get("/")
    assert home.status_code == 200, home.text[:500]
    assert home.headers["content-type"].startswith("text/html")
    policy = home.headers["content-security-policy"]
    (script_src,) = [d for d in policy.split(";") if d.strip().startswith("script-src ")]
    assert "'unsafe-inline'" not in script_src, policy
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps(seed(client), indent=2))
    env = {
        **os.environ,
        "CI": "1",
        "BASE_URL": stack.edge,
        "E2E_SEED_FILE": str(seed_file),
        "E2E_FEED_HANDLE": FEED_HANDLE,
        "E2E_FEED_PASSWORD": SEED_PASSWORD,
        # The stack's data dir: `mail/` holds the mails it sent (verification links).
        "E2E_DATA_DIR": str(stack.data_dir),
        "PLAYWRIGHT_HTML_OPEN": "never",
    }
    run_npm("e2e", env, timeout=1200)
