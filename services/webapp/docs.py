"""Swagger UI at `/docs`: the browsable reference of the REST API (`/openapi.json`).

Copied into the served tree at build time (scripts/precompress_web.py) from the npm
package swagger-ui-dist (a root devDependency). Its own index.html carries an inline
script, which the server's CSP refuses, so the page and its initializer are ours.
"""

from __future__ import annotations

import shutil
from pathlib import Path

DOCS_DIR = "docs"
#: What the page loads from the package (oauth2-redirect.html has inline script: left out).
ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")
LICENSE_FILES = ("LICENSE", "NOTICE")

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>socialmesh API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/docs-init.js"></script>
</body>
</html>
"""

INIT_JS = """// Swagger UI over the edge's OpenAPI document (same origin: "Try it out" works).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""


def install_swagger_ui(out: Path, dist: Path) -> Path:
    """Writes `<out>/docs/` from the swagger-ui-dist package at `dist`; returns it."""
    missing = [name for name in ASSETS if not (dist / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{dist} is not swagger-ui-dist (missing {missing}): npm install")
    docs = out / DOCS_DIR
    docs.mkdir(parents=True, exist_ok=True)
    for name in (*ASSETS, *LICENSE_FILES):
        if (dist / name).is_file():
            shutil.copy2(dist / name, docs / name)
    for name, text in (("index.html", INDEX_HTML), ("docs-init.js", INIT_JS)):
        target = docs / name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    return docs
