// After `next build`: writes out/csp.json with, per exported page, the sha256 hashes of its
// inline <script> bodies, so the static server can send a CSP without 'unsafe-inline' scripts:
//   script-src 'self' <hashes of that page>
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";

const OUT = "out";
const pages = {};
const all = new Set();

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith(".html")) scan(p);
  }
}

function scan(file) {
  const html = readFileSync(file, "utf8");
  const hashes = new Set();
  const re = /<script(?![^>]*\bsrc=)([^>]*)>([\s\S]*?)<\/script>/gi;
  for (const m of html.matchAll(re)) {
    const attrs = m[1] ?? "";
    if (/type="application\/(ld\+)?json"/i.test(attrs)) continue;
    const body = m[2] ?? "";
    const h = `'sha256-${createHash("sha256").update(body, "utf8").digest("base64")}'`;
    hashes.add(h);
    all.add(h);
  }
  if (/\son[a-z]+=/i.test(html.replace(/<script[\s\S]*?<\/script>/gi, ""))) {
    console.warn(`warning: ${file} has an inline event handler attribute`);
  }
  const route = "/" + relative(OUT, file).replace(/\\/g, "/").replace(/(index)?\.html$/, "").replace(/\/$/, "");
  pages[route === "/" ? "/" : route] = [...hashes];
}

walk(OUT);
const policy = (hashes) =>
  [
    "default-src 'self'",
    `script-src 'self' ${hashes.join(" ")}`.trim(),
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
const doc = {
  comment:
    "Per page: sha256 of each inline script (Next's bootstrap/flight data). Send `policy` for that page; `all` is the union for a single site-wide header.",
  pages: Object.fromEntries(Object.entries(pages).map(([k, v]) => [k, { scriptHashes: v, policy: policy(v) }])),
  all: { scriptHashes: [...all], policy: policy([...all]) },
};
writeFileSync(join(OUT, "csp.json"), JSON.stringify(doc, null, 2) + "\n");
console.log(`csp.json: ${Object.keys(pages).length} pages, ${all.size} distinct inline script hashes`);
