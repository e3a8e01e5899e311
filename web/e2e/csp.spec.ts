import { expect, test } from "@playwright/test";
import { existsSync, readFileSync } from "node:fs";
import { go, signIn, soloAccount } from "./helpers";

interface CspDoc {
  pages: Record<string, { policy: string }>;
}

const CSP_FILE = new URL("../out/csp.json", import.meta.url);

/** Serves each page with the policy out/csp.json gives it, and fails on any CSP violation. */
test("the app runs under the strict CSP of out/csp.json (no unsafe-inline scripts)", async ({ browser, request }) => {
  test.skip(!existsSync(CSP_FILE), "no out/csp.json: run `npm run build` first");
  const doc = JSON.parse(readFileSync(CSP_FILE, "utf8")) as CspDoc;
  expect(Object.values(doc.pages).every((p) => !/script-src[^;]*unsafe-inline/.test(p.policy))).toBe(true);
  const me = await soloAccount(request);
  const context = await browser.newContext();
  const page = await context.newPage();
  const violations: string[] = [];
  page.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) violations.push(m.text());
  });
  await page.route(
    (url) => !url.pathname.startsWith("/v1/") && !url.pathname.startsWith("/_next/"),
    async (route) => {
      if (route.request().resourceType() !== "document") return route.continue();
      const response = await route.fetch();
      const path = new URL(route.request().url()).pathname.replace(/\.html$/, "").replace(/\/$/, "") || "/";
      const policy = doc.pages[path]?.policy ?? doc.pages["/404"]?.policy ?? "";
      await route.fulfill({ status: response.status(), body: await response.body(), headers: { ...response.headers(), "content-security-policy": policy } });
    },
  );
  await signIn(page, me.handle);
  await expect(page.getByRole("tab", { name: "For you" })).toBeVisible();
  await go(page, `/profile?handle=${me.handle}`);
  await expect(page.getByRole("heading", { name: `E2E ${me.handle}` })).toBeVisible();
  await page.goto("/search");
  await expect(page.getByRole("searchbox")).toBeVisible();
  expect(violations).toEqual([]);
  await context.close();
});
