#!/usr/bin/env node
// Lighthouse figures of the web app (a script, not a timed test).
//
//   node scripts/lighthouse.mjs            # audits, prints the table, writes docs/web/lighthouse.json
//   node scripts/lighthouse.mjs --no-write # same, without writing the JSON
//
// It starts its own `socialmesh up` on free ports with a fresh data dir, seeds a small data
// set (plus a few posts through the API so the home feed has content), and audits, one at a
// time, with Lighthouse 12.2.3 driving Debian's Chromium: the sign-in page, a public profile,
// a post page and the signed-in home feed, with the desktop and the mobile preset.
// The app keeps the access token in memory and restores the session from the httpOnly
// `sm_refresh` cookie, so the signed-in audit first logs in inside the same browser
// (POST /v1/auth:login with x-refresh-token-transport: cookie); Lighthouse's storage reset
// clears caches and service workers but keeps cookies (clearStorageTypes default).
// web/out must exist (`make install`). Every process it starts is stopped at the end.
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const CHROMIUM = "/usr/bin/chromium";
export const CHROME_FLAGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
export const SEED_PASSWORD = "seed-password";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

/** A base port with `span` free consecutive ports after it (the services and their stores follow the base). */
async function freeRange(span, avoid = new Set()) {
  for (let i = 0; i < 200; i++) {
    const base = 20000 + Math.floor(Math.random() * 25000);
    let ok = true;
    for (let p = base; p < base + span && ok; p++) ok = !avoid.has(p) && (await portFree(p));
    if (ok) return base;
  }
  throw new Error("no free port range found");
}

/** Pids whose command line mentions `needle` (our unique data dir): the stack's processes. */
function pidsMentioning(needle) {
  const pids = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      if (cmd.includes(needle)) pids.push(Number(d));
    } catch {
      // gone
    }
  }
  return pids;
}

/**
 * Starts `socialmesh up` in its own session (setsid) on free ports with a fresh data dir,
 * waits for its banner. Returns { origin, dataDir, stop }.
 */
export async function startStack({ log = console.error } = {}) {
  const webIndex = path.join(ROOT, "web/out/index.html");
  if (!existsSync(webIndex)) throw new Error("web/out is missing: run `make install` (it builds the web app) first");
  const bin = path.join(ROOT, ".venv/bin/socialmesh");
  if (!existsSync(bin)) throw new Error(".venv/bin/socialmesh is missing: run `make install` first");
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "socialmesh-figures-"));
  const base = await freeRange(40);
  const avoid = new Set(Array.from({ length: 40 }, (_, i) => base + i));
  const edge = await freeRange(1, avoid);
  avoid.add(edge);
  const admin = await freeRange(1, avoid);
  const args = ["up", "--data-dir", dataDir, "--edge-port", String(edge), "--admin-port", String(admin), "--base-port", String(base), "--log-dir", path.join(dataDir, "logs")];
  log(`starting: socialmesh ${args.join(" ")}`);
  const child = spawn(bin, args, { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let exited = null;
  child.stdout.on("data", (b) => (out += b));
  child.stderr.on("data", (b) => (out += b));
  child.on("exit", (code, sig) => (exited = { code, sig }));

  let stopped = false;
  async function stop() {
    if (stopped) return;
    stopped = true;
    if (exited === null) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        // already gone
      }
      for (let i = 0; i < 600 && exited === null; i++) await sleep(100);
      if (exited === null) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    // Whatever outlived the group (e.g. a store started in its own session) and names our data dir.
    for (let round = 0; round < 30; round++) {
      const left = pidsMentioning(dataDir);
      if (!left.length) break;
      for (const pid of left) {
        try {
          process.kill(pid, round < 20 ? "SIGTERM" : "SIGKILL");
        } catch {
          // gone
        }
      }
      await sleep(500);
    }
    const left = pidsMentioning(dataDir);
    if (left.length) log(`warning: still running after stop: ${left.join(" ")}`);
    rmSync(dataDir, { recursive: true, force: true });
  }
  const onSignal = async () => {
    await stop();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const deadline = Date.now() + 600_000;
  while (!out.includes("socialmesh is up")) {
    if (exited !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`socialmesh up did not come up:\n${out.slice(-3000)}`);
    }
    await sleep(250);
  }
  const origin = `http://127.0.0.1:${edge}`;
  log(`up at ${origin} (data dir ${dataDir})`);
  return { origin, dataDir, stop };
}

async function api(origin, method, p, { token, body, headers = {} } = {}) {
  for (let attempt = 0; ; attempt++) {
    const res = await fetch(origin + p, {
      method,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (res.ok) return text ? JSON.parse(text) : {};
    if ((res.status === 429 || res.status >= 500) && attempt < 5) {
      await sleep(1000 * (attempt + 1));
      continue;
    }
    const err = new Error(`${method} ${p}: ${res.status} ${text.slice(0, 300)}`);
    err.status = res.status;
    throw err;
  }
}

async function login(origin, handle) {
  const r = await api(origin, "POST", "/v1/auth:login", { body: { handle, password: SEED_PASSWORD } });
  let userId = r.user?.userId;
  if (!userId) userId = (await api(origin, "GET", "/v1/auth:caller", { token: r.accessToken })).userId;
  return { handle, token: r.accessToken, userId };
}

/**
 * Seeds a small data set, then writes a few posts through the API (COPY-seeded rows raise no
 * events, so the home feed would be empty) and has the viewer follow their authors.
 */
export async function seedSmall(stack, { log = console.error } = {}) {
  const bin = path.join(ROOT, ".venv/bin/socialmesh");
  const args = ["seed", "--data-dir", stack.dataDir, "--users", "40", "--follows", "200", "--celebrity-followers", "20", "--posts", "200", "--likes", "400", "--comments", "100"];
  log(`seeding: socialmesh ${args.join(" ")}`);
  execFileSync(bin, args, { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] });
  const { origin } = stack;
  const viewer = await login(origin, "seed_1");
  const authors = [];
  for (const h of ["seed_0", "seed_2", "seed_3", "seed_4"]) authors.push(await login(origin, h));
  const texts = [
    "Morning run along the river, 8 km before the rain came in. #running",
    "Trying a new sourdough starter this week; day three and it finally smells right.",
    "Reading notes: the best systems are the ones you can explain on one page. @seed_1",
    "Photos from the weekend hike are up soon. The view from the ridge was worth every step.",
    "Release day! Thanks to everyone who tested the beta and sent feedback. #shipping",
    "Hot take: tabs vs spaces matters far less than consistent naming.",
  ];
  const postIds = [];
  let i = 0;
  for (const a of authors) {
    try {
      await api(origin, "POST", `/v1/users/${a.userId}:follow`, { token: viewer.token, body: {} });
    } catch (e) {
      if (e.status !== 409 && e.status !== 400) throw e;
    }
    for (let k = 0; k < 2; k++) {
      const p = await api(origin, "POST", `/v1/posts?requestId=figures-${a.handle}-${k}`, {
        token: a.token,
        body: { text: texts[i++ % texts.length], visibility: "VISIBILITY_PUBLIC" },
      });
      postIds.push(p.postId);
    }
  }
  // A comment on the audited post so its page has a thread.
  await api(origin, "POST", `/v1/posts/${postIds[0]}/comments`, {
    token: viewer.token,
    body: { text: "Great pace! Which route did you take?" },
    headers: { "idempotency-key": `figures-comment-${Date.now()}` },
  }).catch((e) => log(`(comment not added: ${e.message})`));
  // Wait until the viewer's feed shows the new posts (fan-out is asynchronous).
  for (let t = 0; t < 60; t++) {
    const feed = await api(origin, "GET", "/v1/feed?pageSize=20", { token: viewer.token }).catch(() => ({}));
    const items = feed.items ?? feed.posts ?? feed.entries ?? [];
    if (items.length >= 4) break;
    await sleep(1000);
  }
  return { viewer, profileHandle: "seed_0", postId: postIds[0], postIds, authors };
}

/** Logs in inside the browser (so the httpOnly sm_refresh cookie lands in its jar). */
export async function browserLogin(port, origin, handle) {
  const { default: puppeteer } = await import("puppeteer-core");
  const browser = await puppeteer.connect({ browserURL: `http://127.0.0.1:${port}`, defaultViewport: null });
  try {
    const page = await browser.newPage();
    await page.goto(`${origin}/404.html`, { waitUntil: "load" });
    const status = await page.evaluate(
      async (h, pw) => {
        const r = await fetch("/v1/auth:login", {
          method: "POST",
          credentials: "include",
          headers: { "content-type": "application/json", "x-refresh-token-transport": "cookie" },
          body: JSON.stringify({ handle: h, password: pw }),
        });
        return r.status;
      },
      handle,
      SEED_PASSWORD,
    );
    if (status !== 200) throw new Error(`browser login: HTTP ${status}`);
    await page.close();
  } finally {
    browser.disconnect();
  }
}

/** Forgets the browser's cookies (the refresh cookie of an earlier signed-in audit). */
export async function clearCookies(port) {
  const { default: puppeteer } = await import("puppeteer-core");
  const browser = await puppeteer.connect({ browserURL: `http://127.0.0.1:${port}`, defaultViewport: null });
  try {
    const page = await browser.newPage();
    const cdp = await page.createCDPSession();
    await cdp.send("Network.clearBrowserCookies");
    await page.close();
  } finally {
    browser.disconnect();
  }
}

/**
 * First-load JS of a page of the static export: its <script src> files, gzipped (level 9).
 * `noModule` scripts (Next's legacy polyfills) are listed apart and not counted: a browser
 * that runs modules never downloads them.
 */
export function firstLoadJs(htmlFile = "index.html") {
  const out = path.join(ROOT, "web/out");
  const html = readFileSync(path.join(out, htmlFile), "utf8");
  const tags = [...html.matchAll(/<script([^>]*)\ssrc="([^"]+)"([^>]*)>/g)].map((m) => ({ src: m[2], noModule: /\snomodule\b/i.test(`${m[1]} ${m[3]}`) }));
  const seen = new Set();
  let raw = 0;
  let gz = 0;
  const files = [];
  const noModuleFiles = [];
  for (const { src, noModule } of tags) {
    if (seen.has(src)) continue;
    seen.add(src);
    const buf = readFileSync(path.join(out, src.replace(/^\//, "").split("?")[0]));
    const entry = { src, rawBytes: buf.length, gzipBytes: gzipSync(buf, { level: 9 }).length };
    if (noModule) {
      noModuleFiles.push(entry);
      continue;
    }
    raw += entry.rawBytes;
    gz += entry.gzipBytes;
    files.push(entry);
  }
  return { page: htmlFile, files, rawKiB: +(raw / 1024).toFixed(1), gzipKiB: +(gz / 1024).toFixed(1), noModuleFiles };
}

const ms = (v) => (v == null ? null : Math.round(v));
function summarize(lhr) {
  const a = lhr.audits;
  const cat = (k) => (lhr.categories[k]?.score == null ? null : Math.round(lhr.categories[k].score * 100));
  const jsTransfer = (a["network-requests"]?.details?.items ?? [])
    .filter((r) => r.resourceType === "Script")
    .reduce((s, r) => s + (r.transferSize ?? 0), 0);
  return {
    performance: cat("performance"),
    accessibility: cat("accessibility"),
    bestPractices: cat("best-practices"),
    fcpMs: ms(a["first-contentful-paint"]?.numericValue),
    ttiMs: ms(a["interactive"]?.numericValue),
    lcpMs: ms(a["largest-contentful-paint"]?.numericValue),
    tbtMs: ms(a["total-blocking-time"]?.numericValue),
    cls: a["cumulative-layout-shift"]?.numericValue == null ? null : +a["cumulative-layout-shift"].numericValue.toFixed(3),
    speedIndexMs: ms(a["speed-index"]?.numericValue),
    scriptTransferKiB: +(jsTransfer / 1024).toFixed(1),
    finalUrl: lhr.finalDisplayedUrl,
    failing: Object.entries(lhr.categories)
      .filter(([k]) => k !== "performance")
      .flatMap(([, c]) => c.auditRefs.filter((r) => r.weight > 0 && a[r.id]?.score !== null && a[r.id]?.score < 1).map((r) => r.id)),
    runWarnings: lhr.runWarnings,
  };
}

const fmtS = (v) => (v == null ? "–" : (v / 1000).toFixed(2) + " s");
export function table(rows) {
  const head = ["page", "preset", "perf", "a11y", "best pr.", "FCP", "TTI", "LCP", "TBT", "CLS"];
  const body = rows.map((r) => [r.page, r.preset, r.performance, r.accessibility, r.bestPractices, fmtS(r.fcpMs), fmtS(r.ttiMs), fmtS(r.lcpMs), `${r.tbtMs} ms`, r.cls].map(String));
  const lines = [head, ...body].map((c) => `| ${c.join(" | ")} |`);
  lines.splice(1, 0, `|${head.map(() => "---").join("|")}|`);
  return lines.join("\n");
}

async function main() {
  const write = !process.argv.includes("--no-write");
  const { default: lighthouse } = await import("lighthouse");
  const { default: desktopConfig } = await import("lighthouse/core/config/desktop-config.js");
  const chromeLauncher = await import("chrome-launcher");
  const lhVersion = JSON.parse(readFileSync(path.join(ROOT, "node_modules/lighthouse/package.json"), "utf8")).version;
  const chromiumVersion = execFileSync(CHROMIUM, ["--version"]).toString().trim();
  const loadBefore = execFileSync("uptime").toString().trim();
  const builtAt = () => statSync(path.join(ROOT, "web/out/index.html")).mtime.toISOString();
  const webBuiltAtStart = builtAt();
  console.error(`load at start: ${loadBefore}`);

  const stack = await startStack();
  let chrome;
  const rows = [];
  try {
    const seeded = await seedSmall(stack);
    const { origin } = stack;
    const pages = [
      { page: "sign in", url: `${origin}/signin` },
      { page: "profile", url: `${origin}/profile?handle=${seeded.profileHandle}` },
      { page: "post", url: `${origin}/post?id=${seeded.postId}` },
      { page: "home (signed in)", url: `${origin}/`, signedIn: true },
    ];
    chrome = await chromeLauncher.launch({ chromePath: CHROMIUM, chromeFlags: CHROME_FLAGS, logLevel: "error" });
    for (const preset of ["desktop", "mobile"]) {
      for (const p of pages) {
        if (p.signedIn) await browserLogin(chrome.port, origin, seeded.viewer.handle);
        else await clearCookies(chrome.port); // signed-out pages are audited signed out
        const flags = { port: chrome.port, output: "json", logLevel: "error", onlyCategories: ["performance", "accessibility", "best-practices"] };
        const config = preset === "desktop" ? desktopConfig : undefined;
        console.error(`auditing ${p.page} (${preset}) ${p.url}`);
        let result = await lighthouse(p.url, flags, config);
        let retried = null;
        if (result.lhr.runtimeError || result.lhr.categories.performance?.score == null) {
          // A run that errored (e.g. a hung page on the loaded machine) is retried once; both are kept.
          retried = result.lhr.runtimeError ?? { code: "NO_PERFORMANCE_SCORE" };
          console.error(`  run failed (${retried.code}: ${retried.message ?? ""}), retrying once`);
          if (p.signedIn) await browserLogin(chrome.port, origin, seeded.viewer.handle);
          result = await lighthouse(p.url, flags, config);
        }
        const s = summarize(result.lhr);
        if (retried) s.firstRunError = retried;
        if (result.lhr.runtimeError) s.runtimeError = result.lhr.runtimeError;
        if (p.signedIn) {
          const reqs = result.lhr.audits["network-requests"]?.details?.items ?? [];
          s.sessionRestored = reqs.some((r) => r.url.includes("/v1/auth:refresh") && r.statusCode === 200);
          s.feedLoaded = reqs.some((r) => /\/v1\/feed(\?|$)/.test(r.url) && r.statusCode === 200);
          if (!s.sessionRestored) console.error(`  warning: the session was not restored (landed on ${s.finalUrl})`);
        }
        rows.push({ page: p.page, preset, url: p.url.replace(origin, ""), ...s });
        console.error(`  perf ${s.performance} a11y ${s.accessibility} bp ${s.bestPractices} FCP ${s.fcpMs} TTI ${s.ttiMs} LCP ${s.lcpMs} TBT ${s.tbtMs} CLS ${s.cls}`);
      }
    }
  } finally {
    if (chrome) await chrome.kill();
    await stack.stop();
  }
  const loadAfter = execFileSync("uptime").toString().trim();
  const js = firstLoadJs("index.html");
  const desktop = rows.filter((r) => r.preset === "desktop");
  const goals = {
    "performance >= 96": rows.every((r) => r.performance != null && r.performance >= 96),
    "accessibility >= 95": rows.every((r) => r.accessibility != null && r.accessibility >= 95),
    "best practices >= 95": rows.every((r) => r.bestPractices != null && r.bestPractices >= 95),
    "desktop FCP <= 0.6 s": desktop.every((r) => r.fcpMs <= 600),
    "desktop TTI <= 1.2 s": desktop.every((r) => r.ttiMs <= 1200),
  };
  const summary = {
    date: new Date().toISOString(),
    command: "node scripts/lighthouse.mjs",
    lighthouse: lhVersion,
    chromium: chromiumVersion,
    chromeFlags: CHROME_FLAGS,
    throttling: "Lighthouse defaults: simulated (desktop preset: desktop-config; mobile preset: default config, Moto G Power, slow 4G, 4x CPU)",
    cpus: os.cpus().length,
    loadAverage: { atStart: loadBefore, atEnd: loadAfter },
    webOutIndexMtime: { atStart: webBuiltAtStart, atEnd: builtAt() },
    homeFirstLoadJs: js,
    goals,
    results: rows,
  };
  console.log(table(rows));
  console.log(`\nfirst-load JS of / (script tags of web/out/index.html, noModule polyfills apart): ${js.gzipKiB} KiB gzipped (${js.rawKiB} KiB raw, ${js.files.length} files; noModule: ${js.noModuleFiles.length} files)`);
  console.log(`goals: ${Object.entries(goals).map(([k, v]) => `${k}: ${v ? "met" : "NOT met"}`).join("; ")}`);
  if (summary.webOutIndexMtime.atStart !== summary.webOutIndexMtime.atEnd) console.log("note: web/out was rebuilt during the run");
  console.log(`load average: start "${loadBefore}", end "${loadAfter}" (${os.cpus().length} CPUs)`);
  if (write) {
    mkdirSync(path.join(ROOT, "docs/web"), { recursive: true });
    writeFileSync(path.join(ROOT, "docs/web/lighthouse.json"), JSON.stringify(summary, null, 2) + "\n");
    console.log("wrote docs/web/lighthouse.json");
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
