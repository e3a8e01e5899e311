import { expect, type APIRequestContext, type Browser, type BrowserContext, type Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { deflateSync } from "node:zlib";

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

export interface SpooledMail {
  to: string;
  subject: string;
  body: string;
  links: string[];
}

/**
 * The newest mail `up` spooled to `to` with this subject (E2E_DATA_DIR/mail, the dev
 * mailbox of services/user/mailer.py), waited for: registration mails are sent after
 * the answer.
 */
export async function spooledMail(to: string, subject: string, timeoutMs = 20_000): Promise<SpooledMail> {
  const dir = process.env.E2E_DATA_DIR;
  if (!dir) throw new Error("E2E_DATA_DIR is not set: the journeys need the stack's data dir to read its mail");
  const { readdir, readFile } = await import("node:fs/promises");
  const spool = `${dir}/mail`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const names = (await readdir(spool).catch(() => [] as string[])).filter((n) => /^\d.*\.json$/.test(n)).sort().reverse();
    for (const name of names) {
      const mail = JSON.parse(await readFile(`${spool}/${name}`, "utf8")) as SpooledMail;
      if (mail.to.toLowerCase() === to.toLowerCase() && mail.subject === subject) return mail;
    }
    if (Date.now() > deadline) throw new Error(`no ${JSON.stringify(subject)} mail to ${to} in ${spool}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function apiSetPrivate(request: APIRequestContext, who: Account, isPrivate = true): Promise<void> {
  const r = await request.patch(`/v1/users/${who.userId}?updateMask=is_private`, {
    headers: { authorization: `Bearer ${who.token}` },
    data: { isPrivate },
  });
  expect(r.ok(), await r.text()).toBeTruthy();
}

/** A real PNG (one colour), which the media service decodes into its variants and blurhash. */
export function png(width: number, height: number, shade = 0x3c): Buffer {
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const b of buf) c = table[(c ^ b) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const row = Buffer.concat([Buffer.from([0]), Buffer.alloc(width * 3, shade)]);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.concat(Array.from({ length: height }, () => row)))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
