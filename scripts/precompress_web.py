"""Finishes the web app's static export for serving (run by `make install` after
`npm run build`):

1. `--swagger-ui DIR`: copies Swagger UI (the npm package swagger-ui-dist) into
   `<out>/docs/` with an index page and an initializer script pointing at
   `/openapi.json` (no inline script: the server's CSP allows none);
2. writes `.gz` (Python's gzip, level 9) and `.br` (Node's zlib brotli, quality 11)
   siblings of every compressible file, kept only where smaller; the server picks one
   by Accept-Encoding. Idempotent: an up-to-date sibling is not rewritten.

    python scripts/precompress_web.py web/out --swagger-ui node_modules/swagger-ui-dist
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.webapp.docs import install_swagger_ui  # noqa: E402

COMPRESSIBLE = {
    ".html",
    ".js",
    ".mjs",
    ".css",
    ".json",
    ".map",
    ".txt",
    ".svg",
    ".xml",
    ".webmanifest",
    ".ico",
    ".wasm",
    ".ttf",
    ".otf",
}
MIN_BYTES = 256

#: Reads [[source, target], ...] as JSON on stdin, writes each target as brotli.
BROTLI_JS = """
const fs = require("fs"), zlib = require("zlib");
const jobs = JSON.parse(fs.readFileSync(0, "utf8"));
for (const [source, target] of jobs) {
  const data = fs.readFileSync(source);
  fs.writeFileSync(target, zlib.brotliCompressSync(data, {params: {
    [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
    [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
  }}));
}
"""


def candidates(out: Path) -> list[Path]:
    return sorted(
        p
        for p in out.rglob("*")
        if p.is_file() and p.suffix.lower() in COMPRESSIBLE and p.stat().st_size >= MIN_BYTES
    )


def stale(source: Path, target: Path) -> bool:
    return not target.exists() or target.stat().st_mtime_ns < source.stat().st_mtime_ns


def keep_if_smaller(source: Path, target: Path) -> bool:
    if target.exists() and target.stat().st_size >= source.stat().st_size:
        target.unlink()
        return False
    return target.exists()


def precompress(out: Path) -> tuple[int, int]:
    """Writes the siblings; returns how many .gz and .br files are up to date."""
    files = candidates(out)
    for source in files:
        target = source.with_name(source.name + ".gz")
        if stale(source, target):
            target.write_bytes(gzip.compress(source.read_bytes(), compresslevel=9, mtime=0))
    jobs = [
        [str(s), str(s.with_name(s.name + ".br"))]
        for s in files
        if stale(s, s.with_name(s.name + ".br"))
    ]
    if jobs:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("precompress_web: node is needed for brotli (Node's zlib)")
        subprocess.run([node, "-e", BROTLI_JS], input=json.dumps(jobs), text=True, check=True)
    gz = sum(keep_if_smaller(s, s.with_name(s.name + ".gz")) for s in files)
    br = sum(keep_if_smaller(s, s.with_name(s.name + ".br")) for s in files)
    return gz, br


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the static export (web/out)")
    parser.add_argument("--swagger-ui", type=Path, help="swagger-ui-dist package directory")
    args = parser.parse_args(argv)
    if not args.out.is_dir():
        print(f"precompress_web: {args.out} is not a directory (build the app first)")
        return 2
    if args.swagger_ui:
        install_swagger_ui(args.out, args.swagger_ui)
    gz, br = precompress(args.out)
    print(f"precompress_web: {args.out}: {gz} .gz and {br} .br siblings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
