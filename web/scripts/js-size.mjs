// Prints the JavaScript a first visit to each page loads (its <script src> files), raw and gzipped.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const OUT = "out";
const pages = readdirSync(OUT).filter((f) => f.endsWith(".html"));
for (const page of pages.sort()) {
  const html = readFileSync(join(OUT, page), "utf8");
  const srcs = [...new Set([...html.matchAll(/<script[^>]*\ssrc="([^"]+)"/g)].map((m) => m[1]))];
  let raw = 0;
  let gz = 0;
  for (const src of srcs) {
    const buf = readFileSync(join(OUT, src.replace(/^\//, "")));
    raw += buf.length;
    gz += gzipSync(buf).length;
  }
  console.log(`first-load JS ${page.padEnd(22)} ${(raw / 1024).toFixed(1).padStart(7)} kB raw, ${(gz / 1024).toFixed(1).padStart(6)} kB gzip (${srcs.length} files)`);
}
