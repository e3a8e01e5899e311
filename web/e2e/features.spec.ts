import { expect, test, type APIRequestContext, type Page } from "@playwright/test";
import { apiFollow, apiPost, createAccount, expectAccessible, go, png, signedInPage, type Account } from "./helpers";

// Editing posts, the composer's real limit, chat images and groups: each test in fresh
// browser contexts against the real stack. Groups add seeded accounts (seed_N, already in
// the people search) so the people search has someone to find at once.

const SEED_PASSWORD = process.env.E2E_FEED_PASSWORD ?? "seed-password";

async function seeded(request: APIRequestContext, n: number): Promise<Account> {
  const handle = `seed_${n}`;
  const login = await request.post("/v1/auth:login", { data: { handle, password: SEED_PASSWORD } });
  test.skip(login.status() === 401, `no seeded account ${handle} (run socialmesh seed)`);
  expect(login.ok(), await login.text()).toBeTruthy();
  const body = (await login.json()) as { accessToken: string; user?: { userId: string } };
  let userId = body.user?.userId ?? "";
  if (!userId) {
    const caller = await request.get("/v1/auth:caller", { headers: { authorization: `Bearer ${body.accessToken}` } });
    userId = ((await caller.json()) as { userId: string }).userId;
  }
  return { handle, userId, token: body.accessToken };
}

const post = (page: Page, text: string | RegExp) => page.getByTestId("post").filter({ hasText: text }).first();

test("the author edits a post inline; it says Edited (with when) on every screen, and a refused edit is put back", async ({ browser, request }) => {
  const me = await createAccount(request, "edit");
  const original = `before the edit ${me.handle}`;
  const postId = await apiPost(request, me, original);
  const { context, page } = await signedInPage(browser, me.handle);

  await go(page, `/post?id=${postId}`);
  const card = post(page, original);
  await expect(card).toBeVisible();
  await expect(card.getByTestId("edited")).toHaveCount(0);
  // the menu is keyboard usable: focus the button, Enter opens, Edit is focused
  await card.getByRole("button", { name: "More actions for this post" }).focus();
  await page.keyboard.press("Enter");
  await expect(card.getByRole("button", { name: "Edit" })).toBeFocused();
  await page.keyboard.press("Enter");
  const box = page.getByLabel("Edit post text");
  await expect(box).toBeFocused();
  await expectAccessible(page, "post editor");
  // Escape cancels, nothing changes
  await page.keyboard.press("Escape");
  await expect(box).toHaveCount(0);
  await expect(card).toContainText(original);

  const edited = `after the edit #edited ${me.handle}`;
  await card.getByRole("button", { name: "More actions for this post" }).click();
  await card.getByRole("button", { name: "Edit" }).click();
  await box.fill(edited);
  await page.getByRole("button", { name: "Save changes" }).click();
  const changed = post(page, edited);
  await expect(changed).toBeVisible();
  const mark = changed.getByTestId("edited");
  await expect(mark).toContainText("Edited");
  await expect(mark.locator("time")).toHaveAttribute("title", /^Edited /);
  await expect(mark.locator("time")).toHaveAttribute("datetime", /^\d{4}-\d\d-\d\dT/);
  // the server's facets came back: the new hashtag is a link
  await expect(changed.getByRole("link", { name: "#edited" })).toBeVisible();

  // stored, not only in this tab: a full load (a fresh fetch) and the profile show it too
  await page.goto(`/post?id=${postId}`);
  await expect(post(page, edited).getByTestId("edited")).toBeVisible();
  await go(page, `/profile?handle=${me.handle}`);
  await expect(post(page, edited).getByTestId("edited")).toContainText("Edited");

  // a refused edit: shown at once, then put back, with a sentence saying so
  await go(page, `/post?id=${postId}`);
  await page.route((url) => url.pathname === `/v1/posts/${postId}`, (route) =>
    route.request().method() === "PATCH"
      ? route.fulfill({ status: 403, contentType: "application/json", body: JSON.stringify({ code: 7, message: "no", details: [] }) })
      : route.fallback(),
  );
  await post(page, edited).getByRole("button", { name: "More actions for this post" }).click();
  await page.getByRole("button", { name: "Edit" }).click();
  await page.getByLabel("Edit post text").fill("this edit is refused");
  await page.getByRole("button", { name: "Save changes" }).click();
  await expect(page.getByRole("alert").filter({ hasText: "Your edit wasn't saved" })).toBeVisible();
  // the editor reopens with what was typed; the post itself shows the stored text
  await expect(page.getByLabel("Edit post text")).toHaveValue("this edit is refused");
  await page.getByRole("button", { name: "Cancel" }).click();
  await expect(post(page, edited)).toBeVisible();
  await expect(page.getByText("this edit is refused")).toHaveCount(0);
  await context.close();

  // someone else sees "Edited" but no menu
  const other = await createAccount(request, "edv");
  const o = await signedInPage(browser, other.handle);
  await go(o.page, `/post?id=${postId}`);
  await expect(post(o.page, edited).getByTestId("edited")).toBeVisible();
  await expect(o.page.getByRole("button", { name: "More actions for this post" })).toHaveCount(0);
  await o.context.close();
});

test("the composer takes the API's 5,000 characters, with a counter near the limit; the header fits 360 px", async ({ browser, request }) => {
  const me = await createAccount(request, "long");
  const { context, page } = await signedInPage(browser, me.handle);
  const box = page.getByLabel("What's happening?");
  const counter = page.locator("#compose-count");
  const postButton = page.getByRole("button", { name: "Post", exact: true });

  await box.fill("short");
  await expect(counter).toHaveText("");
  await box.fill("x".repeat(4990));
  await expect(counter).toHaveText("10 characters left");
  await box.fill("x".repeat(5001));
  await expect(counter).toHaveText("1 character over the limit");
  await expect(postButton).toBeDisabled();

  // well past the old 500: the API stores it
  const long = `${me.handle} ${"long post ".repeat(460)}`.trim();
  expect(long.length).toBeGreaterThan(4500);
  await box.fill(long);
  await expect(counter).toContainText("characters left");
  await postButton.click();
  const mine = page.getByTestId("post").filter({ hasText: me.handle }).first();
  await expect(mine).toBeVisible();
  await expect(mine).not.toContainText("Posting…");

  // 360 px: the top navigation is one line (icons, labelled for screen readers)
  await page.setViewportSize({ width: 360, height: 740 });
  const nav = page.getByRole("navigation", { name: "Main" });
  const height = (await nav.boundingBox())!.height;
  expect(height).toBeLessThan(56);
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(360);
  for (const name of ["Home", "Search", "Notifications", "Messages", "Profile", "Settings"]) {
    await expect(nav.getByRole("link", { name, exact: true })).toBeVisible();
  }
  await expect(nav.getByRole("button", { name: "Sign out" })).toBeVisible();
  await expectAccessible(page, "home at 360 px");
  await context.close();
});

test("chat images: attach up to the limit with alt text, wait until ready, send; both sides see them", async ({ browser, request }) => {
  const ann = await createAccount(request, "pica");
  const bob = await createAccount(request, "picb");
  await apiFollow(request, bob, ann); // Ann's message is no request for Bob
  const created = await request.post(`/v1/conversations?requestId=pic-${ann.userId}`, {
    headers: { authorization: `Bearer ${ann.token}` },
    data: { type: "CONVERSATION_TYPE_DIRECT", memberIds: [bob.userId] },
  });
  expect(created.ok(), await created.text()).toBeTruthy();
  const id = ((await created.json()) as { conversationId: string }).conversationId;

  const a = await signedInPage(browser, ann.handle);
  const b = await signedInPage(browser, bob.handle);
  await go(a.page, `/messages?c=${id}`);
  await go(b.page, `/messages?c=${id}`);
  await expect(a.page.getByLabel("Message", { exact: true })).toBeVisible();

  // five picked, the API's four kept, and a sentence about the fifth
  const files = [0x20, 0x50, 0x80, 0xb0, 0xe0].map((shade, i) => ({ name: `pic${i}.png`, mimeType: "image/png", buffer: png(320, 240, shade) }));
  await a.page.locator("#message-images").setInputFiles(files);
  await expect(a.page.getByTestId("attachment")).toHaveCount(4);
  await expect(a.page.getByRole("alert").filter({ hasText: "You can add up to 4 images." })).toBeVisible();
  await expect(a.page.locator("#message-images")).toBeDisabled();
  // keep two
  await a.page.getByRole("button", { name: "Remove image 4" }).click();
  await a.page.getByRole("button", { name: "Remove image 3" }).click();
  await expect(a.page.getByTestId("attachment")).toHaveCount(2);
  await a.page.getByLabel("Alt text for image 1").fill("a dark square");
  await a.page.getByLabel("Alt text for image 2").fill("a lighter square");
  await expect(a.page.locator('[data-testid="attachment"][data-state="ready"]')).toHaveCount(2, { timeout: 60_000 });
  await expectAccessible(a.page, "conversation with attachments");
  await a.page.getByLabel("Message", { exact: true }).fill("two pictures");
  await a.page.getByRole("button", { name: "Send" }).click();
  await expect(a.page.getByTestId("attachment")).toHaveCount(0);

  for (const page of [a.page, b.page]) {
    const msg = page.getByTestId("message").filter({ hasText: "two pictures" });
    await expect(msg).toBeVisible();
    const dark = msg.getByRole("img", { name: "a dark square" });
    await expect(dark).toBeVisible();
    await expect(msg.getByRole("img", { name: "a lighter square" })).toBeVisible();
    await expect(dark).toHaveAttribute("width", "320");
    await expect(dark).toHaveAttribute("height", "240");
    await expect(dark).toHaveAttribute("srcset", /\.webp 320w/);
    // the blurhash the media service computed is the placeholder under each image
    await expect(msg.locator("[data-blurhash]")).toHaveCount(2);
  }
  // the inbox says what was sent
  await go(b.page, "/messages");
  await expect(b.page.getByTestId("conversation-row").first()).toContainText("two pictures");
  await a.context.close();
  await b.context.close();
});

test("groups: create with people search, rename, add, remove, and a member leaves", async ({ browser, request }) => {
  const owner = await createAccount(request, "grp");
  const [m1, m2, m3] = await Promise.all([seeded(request, 171), seeded(request, 172), seeded(request, 173)]);
  const o = await signedInPage(browser, owner.handle);
  const page = o.page;

  await go(page, "/messages");
  await page.getByRole("link", { name: "New group" }).click();
  await expect(page.getByRole("heading", { name: "New group" })).toBeVisible();
  await expect(page.getByRole("button", { name: "Create group" })).toBeDisabled();
  const title = `Group ${owner.handle}`.slice(0, 40);
  await page.getByLabel("Group name").fill(title);
  const addPerson = async (handle: string) => {
    await page.getByLabel(/^Add people/).fill(handle);
    const row = page.getByRole("list", { name: "People found" }).getByRole("listitem").filter({ hasText: `@${handle}` });
    await row.getByRole("button", { name: /^Add / }).click();
    await expect(page.getByRole("list", { name: "Chosen people" })).toBeVisible();
  };
  await addPerson(m1!.handle);
  await addPerson(m2!.handle);
  await expect(page.getByRole("list", { name: "Chosen people" }).getByRole("listitem")).toHaveCount(2);
  await expectAccessible(page, "new group");
  await page.getByRole("button", { name: "Create group with 2 people" }).click();
  await expect(page.getByRole("heading", { name: title })).toBeVisible();
  const id = new URL(page.url()).searchParams.get("c");
  expect(id).toBeTruthy();

  // the member list, with cards and roles
  await page.getByRole("button", { name: "Members (3)" }).click();
  const members = page.getByRole("list", { name: "Members" }).getByTestId("member");
  await expect(members).toHaveCount(3);
  await expect(members.filter({ hasText: "(you)" })).toContainText("Owner");
  await expect(members.filter({ hasText: `@${m1!.handle}` })).toContainText("Member");
  await expectAccessible(page, "group members");

  // rename
  const renamed = `${title} renamed`;
  await page.getByLabel("Group name").fill(renamed);
  await page.getByRole("button", { name: "Rename" }).click();
  await expect(page.getByRole("heading", { name: renamed })).toBeVisible();

  // add a third person
  await page.getByLabel("Add people to the group").fill(m3!.handle);
  await page.getByRole("list", { name: "People found" }).getByRole("listitem").filter({ hasText: `@${m3!.handle}` }).getByRole("button", { name: /^Add / }).click();
  await page.getByRole("button", { name: "Add 1 to the group" }).click();
  await expect(members).toHaveCount(4);

  // remove one (after confirming)
  page.once("dialog", (d) => void d.accept());
  await members.filter({ hasText: `@${m2!.handle}` }).getByRole("button", { name: /^Remove / }).click();
  await expect(members).toHaveCount(3);
  await expect(members.filter({ hasText: `@${m2!.handle}` })).toHaveCount(0);

  // a plain member: sees the group and its members, may not remove anyone, and leaves
  const m = await signedInPage(browser, m1!.handle, SEED_PASSWORD);
  await go(m.page, `/messages?c=${id}`);
  await expect(m.page.getByRole("heading", { name: renamed })).toBeVisible();
  await m.page.getByRole("button", { name: /^Members \(/ }).click();
  await expect(m.page.getByRole("list", { name: "Members" }).getByTestId("member")).toHaveCount(3);
  await expect(m.page.getByRole("button", { name: /^Remove .* from the group$/ })).toHaveCount(0);
  await expect(m.page.getByText("Only the group's owner and admins can rename it")).toBeVisible();
  m.page.once("dialog", (d) => void d.accept());
  await m.page.getByRole("button", { name: "Leave group" }).click();
  await m.page.waitForURL((u) => u.pathname === "/messages" && !u.searchParams.get("c"));
  await expect(m.page.getByTestId("conversation-row").filter({ hasText: renamed })).toHaveCount(0);
  await m.context.close();

  // the owner sees them gone
  await expect(async () => {
    await page.reload();
    await page.getByRole("button", { name: /^Members \(/ }).click();
    await expect(page.getByRole("list", { name: "Members" }).getByTestId("member")).toHaveCount(2, { timeout: 3000 });
  }).toPass({ timeout: 30_000 });
  await o.context.close();
});
