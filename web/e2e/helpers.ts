import { expect, type APIRequestContext, type Browser, type BrowserContext, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";

export const PASSWORD = "e2e-password-123";

export function uniqueHandle(prefix = "e2e"): string {
  return `${prefix}_${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`.slice(0, 30);
}

export interface Account {
  handle: string;
  userId: string;
  token: string;
}

/** Creates an account through the API (fast setup for journeys that are not about signing up). */
export async function createAccount(request: APIRequestContext, prefix = "e2e"): Promise<Account> {
  const handle = uniqueHandle(prefix);
  const created = await request.post("/v1/users", {
    data: { handle, displayName: `E2E ${handle}`, email: `${handle}@example.test`, password: PASSWORD },
  });
  expect(created.ok(), await created.text()).toBeTruthy();
  const login = await request.post("/v1/auth:login", { data: { handle, password: PASSWORD } });
  expect(login.ok(), await login.text()).toBeTruthy();
  const body = (await login.json()) as { accessToken: string; user?: { userId: string } };
  let userId = body.user?.userId ?? "";
  if (!userId) {
    const caller = await request.get("/v1/auth:caller", { headers: { authorization: `Bearer ${body.accessToken}` } });
    userId = ((await caller.json()) as { userId: string }).userId;
  }
  return { handle, userId, token: body.accessToken };
}

export async function apiFollow(request: APIRequestContext, who: Account, whom: Account): Promise<void> {
  const r = await request.post(`/v1/users/${whom.userId}:follow`, { headers: { authorization: `Bearer ${who.token}` }, data: {} });
  expect(r.ok(), await r.text()).toBeTruthy();
}

export async function apiPost(request: APIRequestContext, who: Account, text: string): Promise<string> {
  const r = await request.post(`/v1/posts?requestId=${Date.now()}${Math.random()}`, {
    headers: { authorization: `Bearer ${who.token}` },
    data: { text, visibility: "VISIBILITY_PUBLIC" },
  });
  expect(r.ok(), await r.text()).toBeTruthy();
  return ((await r.json()) as { postId: string }).postId;
}

/** A fresh browser context (no shared cookies or memory), signed in through the UI. */
export async function signedInPage(browser: Browser, handle: string, password = PASSWORD): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, handle, password);
  return { context, page };
}

export async function signIn(page: Page, handle: string, password = PASSWORD): Promise<void> {
  await page.goto("/signin");
  await page.getByLabel("Handle").fill(handle);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
  // The header changes as soon as the session exists; the app then leaves /signin.
  await page.waitForURL((url) => !url.pathname.startsWith("/signin"));
}

/** No serious or critical accessibility violation on the current screen. */
export async function expectAccessible(page: Page, screen: string): Promise<void> {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(bad.map((v) => `${screen}: ${v.id} (${v.impact}) ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`)).toEqual([]);
}

/**
 * In-app navigation (the Next router), keeping the page's memory: the access token lives
 * only in memory, so a full load depends on the httpOnly refresh cookie to come back.
 */
export async function go(page: Page, path: string): Promise<void> {
  await page.evaluate((p) => {
    (window as unknown as { next: { router: { push: (href: string) => void } } }).next.router.push(p);
  }, path);
  await page.waitForURL((u) => `${u.pathname}${u.search}` === path);
}

let solo: Promise<Account> | null = null;

/**
 * One account shared by the journeys that only need "someone signed in" (each still uses
 * its own fresh browser context): the edge allows 20 registrations per client address per hour.
 */
export function soloAccount(request: APIRequestContext): Promise<Account> {
  if (!solo) solo = createAccount(request, "solo");
  return solo;
}
