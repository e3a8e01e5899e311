#!/usr/bin/env node
// Screenshots of the web app's screens, light and dark (prefers-color-scheme emulation),
// into docs/web/*.png (1280x800, plus a 360-wide mobile home).
//
//   node scripts/screenshots.mjs
//
// Like scripts/lighthouse.mjs it starts its own `socialmesh up` on free ports with a fresh
// data dir, seeds a small data set, drives Debian's Chromium with playwright-core (from
// web/node_modules), and stops everything at the end. PNGs are run through pngquant when it
// is installed.
import { execFileSync } from "node:child_process";
import { mkdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { CHROMIUM, CHROME_FLAGS, ROOT, SEED_PASSWORD, seedSmall, startStack } from "./lighthouse.mjs";

const require = createRequire(path.join(ROOT, "web/package.json"));
const { chromium } = require("playwright-core");
const OUT = path.join(ROOT, "docs/web");

function hasPngquant() {
  try {
    execFileSync("pngquant", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

async function api(origin, method, p, token, body) {
  const res = await fetch(origin + p, {
    method,
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text.slice(0, 200)}`);
  return text ? JSON.parse(text) : {};
}

/** Something in the viewer's notifications and messages. */
async function extras(origin, seeded) {
  const { viewer, authors } = seeded;
  const [a0, a2] = authors;
  const mine = await api(origin, "POST", `/v1/posts?requestId=shots-viewer-${Date.now()}`, viewer.token, {
    text: "First week on socialmesh: the timeline is quick and the dark mode is easy on the eyes.",
    visibility: "VISIBILITY_PUBLIC",
  });
  const steps = [
    () => api(origin, "POST", `/v1/posts/${mine.postId}:like`, a0.token, {}),
    () => api(origin, "POST", `/v1/posts/${mine.postId}:like`, a2.token, {}),
    () => api(origin, "POST", `/v1/posts/${mine.postId}/comments`, a0.token, { text: "Welcome! Glad you made it." }),
    () => api(origin, "POST", `/v1/users/${viewer.userId}:follow`, a2.token, {}),
    async () => {
      const c = await api(origin, "POST", `/v1/conversations?requestId=shots-conv-${Date.now()}`, a0.token, { type: "CONVERSATION_TYPE_DIRECT", memberIds: [viewer.userId] });
      const id = c.conversationId;
      await api(origin, "POST", `/v1/conversations/${id}/messages?requestId=shots-m1-${Date.now()}`, a0.token, { text: "Hey! Are you coming to the meetup on Thursday?" });
      try {
        await api(origin, "POST", `/v1/conversations/${id}:accept`, viewer.token, {});
      } catch {
        // direct conversations between followers need no accepting
      }
      await api(origin, "POST", `/v1/conversations/${id}/messages?requestId=shots-m2-${Date.now()}`, viewer.token, { text: "Yes, see you there." });
    },
  ];
  for (const step of steps) await step().catch((e) => console.error(`(extra data step failed: ${e.message})`));
  await new Promise((r) => setTimeout(r, 3000)); // notifications are written from events
}

async function settle(page, ms = 1200) {
  await page.waitForLoadState("load");
  await page.waitForTimeout(ms);
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const stack = await startStack();
  const shots = [];
  let browser;
  try {
    const seeded = await seedSmall(stack);
    await extras(stack.origin, seeded);
    const { origin } = stack;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROME_FLAGS.filter((f) => !f.startsWith("--headless")) });
    const snap = async (page, name) => {
      const file = path.join(OUT, `${name}.png`);
      await page.screenshot({ path: file });
      shots.push(file);
      console.error(`  ${name}.png`);
    };
    for (const scheme of ["light", "dark"]) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: scheme, baseURL: origin });
      const page = await context.newPage();
      await page.goto("/signup");
      await settle(page);
      await snap(page, `signup-${scheme}`);
      await page.goto("/signin");
      await settle(page);
      await page.getByLabel("Handle").fill(seeded.viewer.handle);
      await page.getByLabel("Password").fill(SEED_PASSWORD);
      await snap(page, `signin-${scheme}`);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 30000 });
      await page.locator('[data-testid="post"]').first().waitFor({ timeout: 30000 }).catch(() => {});
      await settle(page);
      await snap(page, `home-${scheme}`);
      await page.getByPlaceholder("What's happening?").fill("Sunset over the harbour tonight was unreal. Anyone else catch it? #photography @seed_0");
      await page.waitForTimeout(300);
      await snap(page, `compose-${scheme}`);
      // Full loads from here on: the httpOnly refresh cookie restores the session each time.
      const screens = [
        ["post", `/post?id=${seeded.postId}`],
        ["profile", `/profile?handle=${seeded.profileHandle}`],
        ["search", "/search?q=seed"],
        ["notifications", "/notifications"],
        ["messages", "/messages"],
        ["settings", "/settings"],
      ];
      for (const [name, url] of screens) {
        await page.goto(url);
        await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 30000 }).catch(() => {});
        await settle(page, 1500);
        await snap(page, `${name}-${scheme}`);
      }
      await context.close();
    }
    for (const scheme of ["light", "dark"]) {
      const context = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true, colorScheme: scheme, baseURL: origin });
      const page = await context.newPage();
      await page.goto("/signin");
      await settle(page, 500);
      await page.getByLabel("Handle").fill(seeded.viewer.handle);
      await page.getByLabel("Password").fill(SEED_PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator('[data-testid="post"]').first().waitFor({ timeout: 30000 }).catch(() => {});
      await settle(page);
      await snap(page, `home-mobile-${scheme}`);
      await context.close();
    }
  } finally {
    if (browser) await browser.close();
    await stack.stop();
  }
  if (hasPngquant()) {
    execFileSync("pngquant", ["--force", "--skip-if-larger", "--strip", "--quality=60-90", "--ext", ".png", ...shots]);
  }
  for (const f of shots) console.log(`${path.relative(ROOT, f)} ${(statSync(f).size / 1024).toFixed(0)} KB`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
