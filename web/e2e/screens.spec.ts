import { expect, test } from "@playwright/test";
import { expectAccessible, go, png, signedInPage, soloAccount } from "./helpers";

test("compose a post with an image and alt text; it shows with srcset and size", async ({ browser, request }) => {
  const me = await soloAccount(request);
  const { context, page } = await signedInPage(browser, me.handle);
  await page.locator("#compose-images").setInputFiles({ name: "square.png", mimeType: "image/png", buffer: png(400, 300) });
  await expect(page.getByText("Ready")).toBeVisible({ timeout: 60_000 });
  await page.getByLabel("Alt text for image 1").fill("a grey rectangle");
  await page.getByLabel("What's happening?").fill("a picture");
  await page.getByRole("button", { name: "Post", exact: true }).click();
  const img = page.getByRole("img", { name: "a grey rectangle" }).first();
  await expect(img).toBeVisible();
  await expect(img).toHaveAttribute("width", "400");
  await expect(img).toHaveAttribute("height", "300");
  await expect(img).toHaveAttribute("srcset", /\.webp 400w/);
  await context.close();
});

test("the other screens have no serious accessibility problems", async ({ browser, request }) => {
  const me = await soloAccount(request);
  const { context, page } = await signedInPage(browser, me.handle);
  await page.setViewportSize({ width: 360, height: 740 });
  for (const [path, heading] of [
    ["/", "Home"],
    ["/search", "Search"],
    ["/notifications", "Notifications"],
    ["/settings", "Settings"],
    [`/profile?handle=${me.handle}`, `E2E ${me.handle}`],
    ["/settings/profile", "Edit profile"],
    ["/follow-requests", "Follow requests"],
    [`/people?handle=${me.handle}&list=followers`, `E2E ${me.handle}`],
    ["/messages", "Messages"],
  ] as const) {
    await go(page, path);
    await expect(page.getByRole("heading", { name: heading, exact: true })).toBeVisible();
    await expect(page.getByRole("status")).toHaveCount(0);
    await expectAccessible(page, path);
    // works at 360 px: nothing wider than the screen
    expect(await page.evaluate(() => document.documentElement.scrollWidth), `${path} at 360 px`).toBeLessThanOrEqual(360);
  }
  await context.close();

  const anon = await browser.newContext();
  const p = await anon.newPage();
  await p.goto("/verify-email");
  await expect(p.getByText("This page needs the link from your email")).toBeVisible();
  await expectAccessible(p, "verify email");
  await p.goto("/no-such-page");
  await expect(p.getByRole("heading", { name: "Page not found" })).toBeVisible();
  await anon.close();
});
