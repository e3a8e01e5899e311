// Development only: serves out/ and forwards /v1/* to the edge, so the app and the API share
// one origin (as in production, where the edge serves both) and the httpOnly refresh cookie works.
//   API_TARGET=http://127.0.0.1:48080 PORT=3100 node scripts/serve.mjs
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer, request } from "node:http";
import { extname, join, normalize } from "node:path";

const ROOT = new URL("../out/", import.meta.url).pathname;
const target = new URL(process.env.API_TARGET ?? "http://127.0.0.1:48080");
const port = Number(process.env.PORT ?? 3100);
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
  ".png": "image/png",
};

function file(pathname) {
  const clean = normalize(decodeURIComponent(pathname)).replace(/^(\.\.[/\\])+/, "");
  for (const c of [clean, `${clean}.html`, join(clean, "index.html")]) {
    const p = join(ROOT, c);
    if (p.startsWith(ROOT) && existsSync(p) && statSync(p).isFile()) return p;
  }
  return null;
}

createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://x");
  if (url.pathname.startsWith("/v1/")) {
    const up = request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", () => {
      res.writeHead(502).end();
    });
    req.pipe(up);
    return;
  }
  const p = file(url.pathname) ?? join(ROOT, "404.html");
  const status = p.endsWith("404.html") && url.pathname !== "/404.html" ? 404 : 200;
  res.writeHead(status, { "content-type": TYPES[extname(p)] ?? "application/octet-stream", "cache-control": "no-cache" });
  createReadStream(p).pipe(res);
}).listen(port, "127.0.0.1", () => console.log(`serving out/ on http://127.0.0.1:${port}, /v1 -> ${target.origin}`));
