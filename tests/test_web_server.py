"""The web app's static file server (services/webapp/server.py) over a fixture tree.

A real server: `socialmesh serve web` in a subprocess on a free port, asked over HTTP.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.webapp.server import inline_script_hashes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from precompress_web import main as precompress_main  # noqa: E402

INLINE = 'self.__next_f.push([1,"hello"])'
PAGE = f"""<!doctype html><html><head><title>home</title>
<script src="/_next/static/chunks/main-abc123.js" async=""></script></head>
<body><h1>home</h1><script>{INLINE}</script>
<script type="module" >console.log("second")</script></body></html>
"""
APP_JS = "export const app = 1;\n" + "// padding so compression is worth it\n" * 200


def write_fixture(out: Path) -> None:
    files = {
        "index.html": PAGE,
        "about.html": "<!doctype html><title>about</title>about page" + " " * 300,
        "users/index.html": "<!doctype html><title>users</title>users index",
        "404.html": "<!doctype html><title>404</title>not here, friend",
        "_next/static/chunks/main-abc123.js": APP_JS,
        "favicon.ico": "icon",
        "robots.txt": "User-agent: *\n",
        "index.txt": "0:rsc payload",
        # The shape web/scripts/csp-hashes.mjs writes.
        "csp.json": '{"pages": {"/about": {"scriptHashes": ["\'sha256-' + "A" * 43 + "='\"]}}}",
    }
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    (out.parent / "secret.txt").write_text("outside the tree")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def web_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("web") / "out"
    out.mkdir()
    write_fixture(out)
    assert (
        precompress_main([str(out), "--swagger-ui", str(ROOT / "node_modules/swagger-ui-dist")])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def web_server(web_tree: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "WEB_ROOT": str(web_tree), "WEB_PORT": str(port), "WEB_HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "web"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"socialmesh serve web did not start:\n{out}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def web_client(web_server: str) -> Iterator[httpx.Client]:
    # No automatic Accept-Encoding: each test says what it accepts.
    with httpx.Client(
        base_url=web_server, timeout=10, headers={"Accept-Encoding": "identity"}
    ) as c:
        yield c


def script_src(policy: str) -> list[str]:
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    return directives["script-src"].split()


def test_pages_by_route(web_client: httpx.Client) -> None:
    for path, marker in (
        ("/", "<h1>home</h1>"),
        ("/index.html", "<h1>home</h1>"),
        ("/about", "about page"),
        ("/about/", "about page"),
        ("/users", "users index"),
        ("/users/", "users index"),
        ("/about?x=1", "about page"),
    ):
        r = web_client.get(path)
        assert r.status_code == 200, path
        assert marker in r.text, path
        assert r.headers["content-type"] == "text/html; charset=utf-8", path
        assert r.headers["cache-control"] == "no-cache", path


def test_unknown_paths_get_the_404_page(web_client: httpx.Client) -> None:
    for path in ("/nope", "/users/nobody", "/_next/static/chunks/gone.js"):
        r = web_client.get(path)
        assert r.status_code == 404, path
        assert "not here, friend" in r.text
        assert r.headers["cache-control"] == "no-cache"
        assert "content-security-policy" in r.headers


def test_hashed_assets_are_immutable_the_rest_revalidates(web_client: httpx.Client) -> None:
    r = web_client.get("/_next/static/chunks/main-abc123.js")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.text == APP_JS
    assert web_client.get("/robots.txt").headers["cache-control"] == "no-cache"
    assert web_client.get("/index.txt").headers["content-type"].startswith("text/plain")


def test_precompressed_siblings_by_accept_encoding(
    web_client: httpx.Client, web_tree: Path
) -> None:
    path = "/_next/static/chunks/main-abc123.js"
    assert (web_tree / "_next/static/chunks/main-abc123.js.br").is_file()
    assert (web_tree / "_next/static/chunks/main-abc123.js.gz").is_file()
    assert not (web_tree / "robots.txt.gz").exists()  # too small to be worth it

    plain = web_client.get(path)
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"

    br = web_client.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert br.headers["content-encoding"] == "br"
    assert br.headers["vary"] == "Accept-Encoding"
    br_file = web_tree / "_next/static/chunks/main-abc123.js.br"
    assert int(br.headers["content-length"]) == br_file.stat().st_size
    assert int(br.headers["content-length"]) < len(APP_JS)

    gz = web_client.get(path, headers={"Accept-Encoding": "gzip"})
    assert gz.headers["content-encoding"] == "gzip"
    gz_file = web_tree / "_next/static/chunks/main-abc123.js.gz"
    assert gzip.decompress(gz_file.read_bytes()).decode() == APP_JS
    assert int(gz.headers["content-length"]) == gz_file.stat().st_size
    assert gz.text == APP_JS  # httpx decodes gzip
    assert web_client.get(path, headers={"Accept-Encoding": "br;q=0, gzip"}).headers[
        "content-encoding"
    ] == ("gzip")

    # Each representation has its own validator.
    assert len({plain.headers["etag"], br.headers["etag"], gz.headers["etag"]}) == 3
    # httpx decodes what it asked for: the bytes are the page's, whatever the coding.
    with httpx.Client(base_url=str(web_client.base_url)) as decoding:
        r = decoding.get("/", headers={"Accept-Encoding": "gzip"})
        assert r.headers["content-encoding"] == "gzip" and "<h1>home</h1>" in r.text


def test_etag_and_304(web_client: httpx.Client) -> None:
    first = web_client.get("/about")
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["last-modified"]
    again = web_client.get("/about", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "no-cache"
    assert web_client.get("/about", headers={"If-None-Match": f'W/{etag}, "x"'}).status_code == 304
    assert web_client.get("/about", headers={"If-None-Match": '"other"'}).status_code == 200
    since = first.headers["last-modified"]
    assert web_client.get("/about", headers={"If-Modified-Since": since}).status_code == 304
    # A compressed representation's validator is not the identity one's.
    br = web_client.get("/about", headers={"Accept-Encoding": "br", "If-None-Match": etag})
    assert br.status_code == 200 and br.headers["content-encoding"] == "br"
    br_etag = br.headers["etag"]
    r = web_client.get("/about", headers={"Accept-Encoding": "br", "If-None-Match": br_etag})
    assert r.status_code == 304


def test_head(web_client: httpx.Client) -> None:
    get = web_client.get("/_next/static/chunks/main-abc123.js")
    head = web_client.head("/_next/static/chunks/main-abc123.js")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["etag"] == get.headers["etag"]
    assert web_client.head("/nope").status_code == 404
    assert web_client.post("/").status_code == 405


def test_traversal_and_hidden_files_are_refused(web_client: httpx.Client, web_tree: Path) -> None:
    (web_tree / ".env").write_text("SECRET=1")
    for raw in (
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/users/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/.env",
        "/%2eenv",
        "/index.html%00.js",
    ):
        # Sent verbatim: no client-side normalisation of the dots.
        with httpx.Client(base_url=str(web_client.base_url)) as raw_client:
            request = raw_client.build_request("GET", "/")
            request.url = request.url.copy_with(raw_path=raw.encode())
            r = raw_client.send(request)
        assert r.status_code in (400, 404), raw
        assert "outside the tree" not in r.text and "SECRET" not in r.text, raw
    # A symlink pointing out of the tree is not followed.
    (web_tree / "escape.txt").symlink_to(web_tree.parent / "secret.txt")
    assert web_client.get("/escape.txt").status_code == 404


def test_security_headers_and_csp(web_client: httpx.Client, web_tree: Path) -> None:
    r = web_client.get("/")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert r.headers["x-frame-options"] == "DENY"
    policy = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "object-src 'none'" in policy
    scripts = script_src(policy)
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert "'self'" in scripts
    # Exactly this page's inline scripts, hashed as a browser hashes them.
    digest = base64.b64encode(hashlib.sha256(INLINE.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in scripts
    assert set(inline_script_hashes((web_tree / "index.html").read_bytes())) == set(scripts) - {
        "'self'"
    }
    assert len(scripts) == 3  # 'self' + two inline scripts; the src= one needs no hash

    # Hashes a build lists in csp.json are added to that page's policy.
    about = script_src(web_client.get("/about").headers["content-security-policy"])
    assert "'sha256-" + "A" * 43 + "='" in about
    assert "'unsafe-inline'" not in about

    asset = web_client.get("/_next/static/chunks/main-abc123.js")
    assert asset.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in asset.headers


def test_swagger_ui_at_docs(web_client: httpx.Client) -> None:
    r = web_client.get("/docs")
    assert r.status_code == 200
    assert 'src="/docs/swagger-ui-bundle.js"' in r.text
    assert 'src="/docs/docs-init.js"' in r.text
    scripts = script_src(r.headers["content-security-policy"])
    assert scripts == ["'self'"]  # no inline script on the docs page
    init = web_client.get("/docs/docs-init.js")
    assert init.status_code == 200 and '"/openapi.json"' in init.text
    bundle = web_client.get("/docs/swagger-ui-bundle.js", headers={"Accept-Encoding": "br"})
    assert bundle.status_code == 200 and bundle.headers["content-encoding"] == "br"
    assert web_client.get("/docs/swagger-ui.css").headers["content-type"].startswith("text/css")


def test_a_missing_build_is_explained(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "WEB_ROOT": str(tmp_path / "nothing"), "WEB_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "web"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert r.status_code == 404
        assert "make install" in r.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_up_routes_the_edge_to_the_app_and_says_when_it_is_not_built(tmp_path: Path) -> None:
    from services import registry
    from services.devstack import Stack, free_stack_ports

    edge, admin, base = free_stack_ports()
    stack = Stack(data_dir=tmp_path, edge_port=edge, admin_port=admin, base_port=base)
    (route,) = stack._app_files().values()
    assert (route.prefix, route.host, route.port) == ("/", "127.0.0.1", stack.web_port)
    # Its own port, inside the block free_stack_ports() found free, clear of every other.
    others = {edge, admin, stack.media_files_port, *map(stack.port_of, stack.services)}
    assert stack.web_port not in others
    assert edge <= stack.web_port < edge + 4 + registry.port_span()

    stack.env = {"WEB_ROOT": str(tmp_path / "missing")}
    banner = stack.describe()
    assert f"web app                http://127.0.0.1:{edge}/" in banner
    assert f"http://127.0.0.1:{edge}/docs" in banner
    assert f"http://127.0.0.1:{edge}/openapi.json" in banner
    assert "not built" in banner and "make install" in banner

    (tmp_path / "built").mkdir()
    (tmp_path / "built" / "index.html").write_text("<!doctype html>")
    stack.env = {"WEB_ROOT": str(tmp_path / "built")}
    assert "not built" not in stack.describe()


def test_pages_are_hashed_at_start_up(web_tree: Path) -> None:
    from services.webapp.server import Site

    pages, hashes = Site(web_tree).warm()
    assert pages == len(list(web_tree.rglob("*.html")))  # the docs page included
    assert hashes == 3  # index.html's two inline scripts, and csp.json's one for /about
