"""Static file server of the web app's export (web/out): `socialmesh serve web`.

What a Next.js static export needs from its server, and nothing else:

- `/foo` is `foo.html` or `foo/index.html` (`/` is `index.html`); an unknown path is
  `404.html` with status 404.
- `_next/static/**` is content-hashed: cached for a year, `immutable`. Everything else
  (HTML first) is `no-cache`: revalidated every time, answered 304 when unchanged.
- Precompressed `.br` / `.gz` siblings (scripts/precompress_web.py writes them at build
  time) are chosen by Accept-Encoding, with `Vary: Accept-Encoding`; nothing is
  compressed per request.
- Strong ETags (a hash of the bytes, so every replica agrees), 304, HEAD.
- Security headers; on HTML a Content-Security-Policy whose `script-src` allows this
  origin's files and, by sha256, exactly the inline scripts of that page (read from
  the page itself, plus any the build lists in `csp.json`): no `'unsafe-inline'`.
- Path traversal, dot files and symlinks out of the tree are refused.

The tree may be missing or rebuilt while the server runs (`make install` during `socialmesh
up`): every file is looked up per request and cached by (mtime, size).

Environment: `WEB_ROOT` (default web/out), `WEB_HOST` / `WEB_PORT` (127.0.0.1:3000),
`WEB_EXTRA_ORIGINS` (space-separated origins the pages may fetch from and show images
and video of, e.g. a media CDN; same-origin is always allowed).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from aiohttp import web

log = logging.getLogger("socialmesh.webapp")

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_ROOT = REPO_ROOT / "web" / "out"
DEFAULT_PORT = 3000
HEALTH_PATH = "/healthz"

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
#: Content-hashed by the Next.js build: a changed file gets a new name.
IMMUTABLE_PREFIX = "_next/static/"
#: Preferred first: brotli is smaller than gzip for the same text.
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))
#: Files larger than this are read per request instead of kept in memory.
CACHE_MAX_FILE_BYTES = 16 << 20
CACHE_MAX_TOTAL_BYTES = 256 << 20

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ico": "image/x-icon",
    ".wasm": "application/wasm",
    ".xml": "application/xml",
}
_INLINE_SCRIPT = re.compile(rb"<script\b([^>]*)>(.*?)</script\s*>", re.S | re.I)
_SRC_ATTRIBUTE = re.compile(rb"""(?:^|\s)src\s*=""", re.I)


def content_type(path: Path) -> str:
    known = _TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def inline_script_hashes(html: bytes) -> list[str]:
    """`'sha256-…'` of every inline <script> (one without src) of a page, as browsers hash
    them: the element's text, UTF-8, byte for byte."""
    hashes = []
    for attributes, body in _INLINE_SCRIPT.findall(html):
        if _SRC_ATTRIBUTE.search(attributes):
            continue
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return list(dict.fromkeys(hashes))


def _quoted_hash(value: str) -> str | None:
    value = value.strip().strip("'")
    if value.startswith("sha256-"):
        return f"'{value}'"
    if re.fullmatch(r"[A-Za-z0-9+/]{43}=", value):
        return f"'sha256-{value}'"
    return None


def build_hashes(root: Path) -> dict[str, list[str]]:
    """Per-page hashes a build lists in `<root>/csp.json`, keyed by the page's path
    relative to root ("index.html", "users/profile.html").

    Accepted shapes: `{"<page>": [hash, ...]}`, optionally under a "pages" key, where a
    page is a file ("/index.html") or a route ("/", "/users/profile") and a value may also
    be an object holding the list under "scriptHashes" (web/scripts/csp-hashes.mjs writes
    `{"pages": {"/route": {"scriptHashes": [...]}}}`), "script-src", "scriptSrc" or "hashes".
    """
    path = root / "csp.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(data, dict) and isinstance(data.get("pages"), dict):
        data = data["pages"]
    if not isinstance(data, dict):
        return {}
    out: dict[str, list[str]] = {}
    for page, value in data.items():
        if isinstance(value, dict):
            keys = ("scriptHashes", "script-src", "scriptSrc", "hashes")
            value = next((value[k] for k in keys if k in value), [])
        if not isinstance(value, list):
            continue
        hashes = [h for h in (_quoted_hash(v) for v in value if isinstance(v, str)) if h]
        route = str(page).strip("/")
        names = (
            [route]
            if route.endswith(".html")
            else [f"{route}.html", f"{route}/index.html"]
            if route
            else ["index.html"]
        )
        for name in names:
            out.setdefault(name, []).extend(hashes)
    return out


def content_security_policy(script_hashes: Iterable[str], extra_origins: str = "") -> str:
    extra = f" {extra_origins.strip()}" if extra_origins.strip() else ""
    scripts = " ".join(["'self'", *script_hashes])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            # Inline *styles* stay allowed (React style attributes, Swagger UI); scripts not.
            "style-src 'self' 'unsafe-inline'",
            f"img-src 'self' data: blob:{extra}",
            f"media-src 'self' blob:{extra}",
            "font-src 'self' data:",
            f"connect-src 'self'{extra}",
            "worker-src 'self' blob:",
            "manifest-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
HTML_HEADERS = {
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@dataclass(frozen=True)
class Loaded:
    """One file's bytes as last read, valid while its (mtime, size) stay the same."""

    stamp: tuple[int, int]
    body: bytes
    etag: str
    last_modified: datetime


def accepted_encodings(header: str) -> dict[str, float]:
    """Accept-Encoding's codings with their q-values ("*" included)."""
    out: dict[str, float] = {}
    for part in header.split(","):
        name, *params = (p.strip() for p in part.split(";"))
        if not name:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out[name.lower()] = q
    return out


def etag_matches(header: str, etag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110 13.1.2)."""
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


class Site:
    """The served tree: URL paths to files, and what to send for each."""

    def __init__(self, root: Path, extra_origins: str = "") -> None:
        self.root = root.resolve()
        self.extra_origins = extra_origins
        self._files: dict[Path, Loaded] = {}
        self._cached_bytes = 0
        self._csp: dict[Path, tuple[tuple[int, int], str]] = {}
        self._build_hashes: tuple[tuple[int, int] | None, dict[str, list[str]]] = (None, {})

    @property
    def built(self) -> bool:
        return (self.root / "index.html").is_file() or (self.root / "404.html").is_file()

    # ------------------------------------------------------------------ lookups

    def _inside(self, path: Path) -> Path | None:
        """The file, if it is a regular file really inside the tree (symlinks resolved)."""
        try:
            real = path.resolve()
        except (OSError, RuntimeError):
            return None
        if not real.is_relative_to(self.root) or not real.is_file():
            return None
        return real

    def find(self, url_path: str) -> Path | None:
        """The file for a (decoded, checked) URL path, or None."""
        relative = url_path.strip("/")
        if not relative:
            return self._inside(self.root / "index.html")
        candidates = [relative, f"{relative}.html", f"{relative}/index.html"]
        if url_path.endswith("/"):
            candidates = [f"{relative}/index.html", f"{relative}.html"]
        for candidate in candidates:
            found = self._inside(self.root / candidate)
            if found is not None:
                return found
        return None

    def load(self, path: Path) -> Loaded:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._files.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached
        body = path.read_bytes()
        loaded = Loaded(
            stamp=stamp,
            body=body,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC).replace(microsecond=0),
        )
        if len(body) <= CACHE_MAX_FILE_BYTES:
            if cached is not None:
                self._cached_bytes -= len(cached.body)
            if self._cached_bytes + len(body) <= CACHE_MAX_TOTAL_BYTES:
                self._files[path] = loaded
                self._cached_bytes += len(body)
            else:
                self._files.pop(path, None)
        return loaded

    def compressed(self, path: Path, accept: Mapping[str, float]) -> tuple[str, Path] | None:
        """The best precompressed sibling the client accepts (never one older than the file)."""
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        for coding, suffix in ENCODINGS:
            if accept.get(coding, accept.get("*", 0.0)) <= 0:
                continue
            sibling = path.with_name(path.name + suffix)
            try:
                if sibling.is_file() and sibling.stat().st_mtime_ns >= mtime:
                    return coding, sibling
            except OSError:
                continue
        return None

    def csp(self, page: Path) -> str:
        """The page's policy: its own inline scripts' hashes and the build's list for it."""
        st = page.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._csp.get(page)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        hashes = inline_script_hashes(self.load(page).body)
        hashes += self._listed_hashes().get(str(page.relative_to(self.root)), [])
        policy = content_security_policy(dict.fromkeys(hashes), self.extra_origins)
        self._csp[page] = (stamp, policy)
        return policy

    def _listed_hashes(self) -> dict[str, list[str]]:
        try:
            st = (self.root / "csp.json").stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._build_hashes[0]:
            self._build_hashes = (stamp, build_hashes(self.root) if stamp else {})
        return self._build_hashes[1]

    def warm(self) -> tuple[int, int]:
        """Hashes every page's inline scripts now (start-up), not on its first request;
        returns (pages, distinct hashes)."""
        pages = [p for p in self.root.rglob("*.html") if self._inside(p) is not None]
        hashes: set[str] = set()
        for page in pages:
            hashes.update(h for h in self.csp(page).split() if h.startswith("'sha256-"))
        return len(pages), len(hashes)

    def cache_control(self, path: Path) -> str:
        relative = path.relative_to(self.root).as_posix()
        return IMMUTABLE if relative.startswith(IMMUTABLE_PREFIX) else REVALIDATE


def checked_path(raw_path: str) -> str | None:
    """The decoded URL path, or None when it could leave the tree or name a hidden file."""
    path = urllib.parse.unquote(raw_path.split("?", 1)[0])
    if "\\" in path or "\x00" in path or not path.startswith("/"):
        return None
    for segment in path.split("/"):
        if segment in (".", "..") or (segment.startswith(".") and segment != ".well-known"):
            return None
    return path


NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>socialmesh: web app not built</title></head>
<body><h1>The web app is not built</h1>
<p>{root} holds no build. Run <code>make install</code> (or
<code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>), then reload.</p>
<p>The API is at <a href="/openapi.json">/openapi.json</a>.</p></body></html>
"""


class WebApp:
    """The aiohttp application over one Site."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _headers(self, path: Path | None, html: bool) -> dict[str, str]:
        headers = dict(SECURITY_HEADERS)
        if html:
            headers.update(HTML_HEADERS)
            headers["Content-Security-Policy"] = (
                self.site.csp(path)
                if path is not None
                else content_security_policy((), self.site.extra_origins)
            )
        return headers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(
                status=405,
                text="method not allowed\n",
                headers={**SECURITY_HEADERS, "Allow": "GET, HEAD"},
            )
        if request.path == HEALTH_PATH:
            return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})
        url_path = checked_path(request.raw_path)
        if url_path is None:
            return web.Response(status=400, text="bad path\n", headers=dict(SECURITY_HEADERS))
        found = self.site.find(url_path)
        if found is not None:
            return self._file(request, found, status=200)
        not_found = self.site._inside(self.site.root / "404.html")
        if not_found is not None:
            return self._file(request, not_found, status=404)
        if not self.site.built:
            body = NOT_BUILT.format(root=self.site.root)
            headers = {**self._headers(None, html=True), "Cache-Control": "no-store"}
            return web.Response(
                status=404, text=body, content_type="text/html", charset="utf-8", headers=headers
            )
        return web.Response(status=404, text="not found\n", headers=dict(SECURITY_HEADERS))

    def _file(self, request: web.Request, path: Path, status: int) -> web.StreamResponse:
        site = self.site
        html = path.suffix == ".html"
        headers = self._headers(path, html)
        headers["Cache-Control"] = REVALIDATE if status != 200 else site.cache_control(path)
        headers["Vary"] = "Accept-Encoding"
        headers["Content-Type"] = content_type(path)
        accept = accepted_encodings(request.headers.get("Accept-Encoding", ""))
        encoding = site.compressed(path, accept)
        original = site.load(path)
        if encoding is not None:
            coding, sibling = encoding
            loaded = site.load(sibling)
            headers["Content-Encoding"] = coding
            etag = original.etag[:-1] + f'-{coding}"'
        else:
            loaded, etag = original, original.etag
        if status == 200:
            headers["ETag"] = etag
            headers["Last-Modified"] = format_datetime(original.last_modified, usegmt=True)
            if self._not_modified(request, etag, original.last_modified):
                headers.pop("Content-Type")
                headers.pop("Content-Encoding", None)
                return web.Response(status=304, headers=headers)
        return web.Response(status=status, body=loaded.body, headers=headers)

    @staticmethod
    def _not_modified(request: web.Request, etag: str, modified: datetime) -> bool:
        if "If-None-Match" in request.headers:
            return etag_matches(request.headers["If-None-Match"], etag)
        since = request.headers.get("If-Modified-Since")
        if since:
            try:
                return modified <= parsedate_to_datetime(since)
            except (TypeError, ValueError):
                return False
        return False


def root_from_env(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("WEB_ROOT") or DEFAULT_ROOT)


def make_app(root: Path, extra_origins: str = "") -> web.Application:
    return WebApp(Site(root, extra_origins)).app()


def main(env: Mapping[str, str] | None = None) -> None:
    """`socialmesh serve web`: serves WEB_ROOT on WEB_HOST:WEB_PORT until SIGTERM/SIGINT."""
    env = os.environ if env is None else env
    logging.basicConfig(
        level=env.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s web %(message)s"
    )
    root = root_from_env(env)
    host = env.get("WEB_HOST", "127.0.0.1")
    port = int(env.get("WEB_PORT") or DEFAULT_PORT)
    site = Site(root, env.get("WEB_EXTRA_ORIGINS", ""))
    if site.built:
        pages, hashes = site.warm()
        log.info(
            "serving %s on http://%s:%d (%d pages, %d inline script hashes in their CSP)",
            *(site.root, host, port, pages, hashes),
        )
    else:
        log.warning("%s holds no build (run `make install`); serving a notice", site.root)
    web.run_app(WebApp(site).app(), host=host, port=port, access_log=None, print=None)
