import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { QueryClient } from "@tanstack/react-query";
import { GROUP_TITLE_MAX, MESSAGE_MEDIA_MAX, MESSAGE_TEXT_MAX, POST_MEDIA_MAX, POST_TEXT_MAX, remainingText } from "@/lib/limits";
import { blurhashAverage, decodeBlurhash, isBlurhash } from "@/lib/blurhash";
import { applyEdit, mergeEdited } from "@/hooks/useEditPost";
import { pickImages } from "@/hooks/useAttachments";
import { keys } from "@/api/cache";
import { ApiError } from "@/api/errors";
import { canManage, canRemove, groupErrorMessage, roleLabel } from "@/hooks/useGroups";
import type { Post } from "@/api/types";

type Schema = { properties: Record<string, { description?: string; items?: unknown }> };
const doc = JSON.parse(readFileSync(fileURLToPath(new URL("../../gen/socialmesh/openapi.json", import.meta.url)), "utf8")) as {
  components: { schemas: Record<string, Schema> };
};
const described = (schema: string, field: string) => doc.components.schemas[schema]!.properties[field]!.description ?? "";
const firstNumber = (s: string) => Number(/(\d[\d,]*)/.exec(s)![1]!.replace(/,/g, ""));

describe("the API's limits", () => {
  it("match the OpenAPI document (the protos), not a guess", () => {
    expect(described("PostInput", "text")).toMatch(/Up to [\d,]+ characters/);
    expect(firstNumber(described("PostInput", "text"))).toBe(POST_TEXT_MAX);
    expect(firstNumber(described("PostInput", "mediaIds"))).toBe(POST_MEDIA_MAX);
    expect(firstNumber(described("MessageInput", "text").replace(/^1 to /, ""))).toBe(MESSAGE_TEXT_MAX);
    expect(firstNumber(described("MessageInput", "mediaIds"))).toBe(MESSAGE_MEDIA_MAX);
    expect(firstNumber(described("ConversationInput", "title"))).toBe(GROUP_TITLE_MAX);
    expect(POST_TEXT_MAX).toBe(5000);
  });

  it("shows the counter only near the limit, and says how far over", () => {
    expect(remainingText("hello", 5000).show).toBe(false);
    const near = remainingText("x".repeat(4990), 5000);
    expect(near).toMatchObject({ show: true, left: 10, over: false, label: "10 characters left" });
    expect(remainingText("x".repeat(4999), 5000).label).toBe("1 character left");
    expect(remainingText("x".repeat(5002), 5000)).toMatchObject({ over: true, label: "2 characters over the limit" });
    // code points, as the API counts: an emoji is one character, not two
    expect(remainingText("😀".repeat(4500), 5000).left).toBe(500);
  });
});

describe("editing a post", () => {
  const post = { postId: "7", authorId: "1", text: "old #tag", facets: [{ start: 4 }], isLiked: true, likeCount: "3" } as unknown as Post;

  it("shows the new text at once, marked edited, without the old text's facets", () => {
    const at = new Date("2026-12-06T05:00:00Z");
    const edited = applyEdit(post, "new text", at);
    expect(edited).toMatchObject({ text: "new text", facets: [], editTime: "2026-12-06T05:00:00.000Z", isLiked: true, likeCount: "3" });
    expect(post.text).toBe("old #tag");
  });

  it("takes the server's answer over the cached post, keeping what the answer leaves out", () => {
    const saved = { postId: "7", authorId: "1", text: "new #x", facets: [{ start: 4 }], editTime: "2026-12-06T05:00:01Z" } as unknown as Post;
    const merged = mergeEdited(post, saved);
    expect(merged).toMatchObject({ text: "new #x", editTime: "2026-12-06T05:00:01Z", isLiked: true });
    expect(mergeEdited(undefined, saved)).toBe(saved);
  });

  it("is one cache entry, so every screen showing the post changes together", () => {
    const qc = new QueryClient();
    qc.setQueryData(keys.post("7"), post);
    qc.setQueryData(keys.post("7"), applyEdit(post, "edited"));
    expect(qc.getQueryData<Post>(keys.post("7"))?.text).toBe("edited");
  });
});

describe("attachments", () => {
  const f = (type: string) => ({ type });
  it("keeps images up to the room left and says when some were refused", () => {
    expect(pickImages([f("image/png"), f("image/jpeg")], 4)).toEqual({ keep: [0, 1], refused: false });
    expect(pickImages([f("text/plain"), f("image/png"), f("image/png")], 1)).toEqual({ keep: [1], refused: true });
    expect(pickImages([f("image/png")], 0)).toEqual({ keep: [], refused: true });
  });
});

describe("blurhash", () => {
  // the reference example from blurha.sh
  const hash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj";
  it("validates", () => {
    expect(isBlurhash(hash)).toBe(true);
    expect(isBlurhash(hash.slice(0, -1))).toBe(false);
    expect(isBlurhash("")).toBe(false);
    expect(isBlurhash(undefined)).toBe(false);
    expect(isBlurhash("LEHV6nWB2yk8pyo0adR*.7kCMd\"j")).toBe(false);
  });

  it("decodes to opaque pixels near the picture's average colour", () => {
    const px = decodeBlurhash(hash, 8, 8);
    expect(px.length).toBe(8 * 8 * 4);
    for (let i = 3; i < px.length; i += 4) expect(px[i]).toBe(255);
    const avg = [0, 1, 2].map((c) => {
      let s = 0;
      for (let i = c; i < px.length; i += 4) s += px[i]!;
      return s / 64;
    });
    const dc = /rgb\((\d+), (\d+), (\d+)\)/.exec(blurhashAverage(hash))!.slice(1).map(Number);
    avg.forEach((v, i) => expect(Math.abs(v - dc[i]!)).toBeLessThan(40));
  });

  it("refuses a malformed hash", () => {
    expect(() => decodeBlurhash("nope", 4, 4)).toThrow();
  });
});

describe("group roles", () => {
  it("lets owners and admins manage, as the chat service does", () => {
    expect(canManage("MEMBER_ROLE_OWNER")).toBe(true);
    expect(canManage("MEMBER_ROLE_ADMIN")).toBe(true);
    expect(canManage("MEMBER_ROLE_MEMBER")).toBe(false);
    expect(canManage(undefined)).toBe(false);
    expect(canManage("MEMBER_ROLE_SOMETHING_NEW")).toBe(false);
  });

  it("owners remove anyone but the owner; admins only plain members; members nobody", () => {
    expect(canRemove("MEMBER_ROLE_OWNER", "MEMBER_ROLE_ADMIN")).toBe(true);
    expect(canRemove("MEMBER_ROLE_OWNER", "MEMBER_ROLE_MEMBER")).toBe(true);
    expect(canRemove("MEMBER_ROLE_ADMIN", "MEMBER_ROLE_MEMBER")).toBe(true);
    expect(canRemove("MEMBER_ROLE_ADMIN", "MEMBER_ROLE_ADMIN")).toBe(false);
    expect(canRemove("MEMBER_ROLE_ADMIN", "MEMBER_ROLE_OWNER")).toBe(false);
    expect(canRemove("MEMBER_ROLE_MEMBER", "MEMBER_ROLE_MEMBER")).toBe(false);
    expect(roleLabel("MEMBER_ROLE_OWNER")).toBe("Owner");
  });

  it("says the API's refusals as sentences, never the raw reason", () => {
    expect(groupErrorMessage(new ApiError({ status: 403, reason: "NOT_ADMIN" }))).toMatch(/owner and admins/);
    expect(groupErrorMessage(new ApiError({ status: 400, reason: "LIMIT_REACHED" }))).toMatch(/at most 256/);
    expect(groupErrorMessage(new ApiError({ status: 403, reason: "BLOCKED" }))).toMatch(/blocked/);
    expect(groupErrorMessage(new ApiError({ status: 429, reason: "RATE_LIMITED" }))).toMatch(/too often/);
    expect(groupErrorMessage(new ApiError({ status: 400, reason: "SOMETHING_NEW" }))).not.toMatch(/SOMETHING_NEW/);
  });
});
