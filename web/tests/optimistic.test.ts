import { describe, expect, it } from "vitest";
import { QueryClient } from "@tanstack/react-query";
import { applyToggle, patchPost } from "@/hooks/data";
import { insertPost, removePost } from "@/hooks/useCreatePost";
import { keys } from "@/api/cache";
import type { Post } from "@/api/types";

const post = (over: Partial<Post> = {}): Post => ({ postId: "1", authorId: "9", text: "hi", likeCount: "2", shareCount: "0", commentCount: "0", isLiked: false, isShared: false, isSaved: false, ...over }) as Post;

describe("optimistic updates", () => {
  it("toggles a like and its count, and is idempotent", () => {
    const liked = applyToggle(post(), "like", true);
    expect(liked.isLiked).toBe(true);
    expect(liked.likeCount).toBe("3");
    expect(applyToggle(liked, "like", true)).toBe(liked);
    expect(applyToggle(liked, "like", false).likeCount).toBe("2");
    expect(applyToggle(post({ likeCount: "0" }), "like", false).likeCount).toBe("0");
    expect(applyToggle(post(), "save", true)).toMatchObject({ isSaved: true, likeCount: "2" });
  });

  it("patches the one cached copy of a post", () => {
    const qc = new QueryClient();
    qc.setQueryData(keys.post("1"), post());
    patchPost(qc, "1", (p) => applyToggle(p, "share", true));
    expect(qc.getQueryData<Post>(keys.post("1"))).toMatchObject({ isShared: true, shareCount: "1" });
  });

  it("inserts a pending post at the top of the feeds and profile, replaces it, or removes it", () => {
    const qc = new QueryClient();
    qc.setQueryData(keys.feed("FEED_KIND_FOLLOWING"), { pages: [{ items: [{ postId: "5" }] }], pageParams: [""] });
    qc.setQueryData(keys.userPosts("9"), { pages: [{ posts: [post({ postId: "5" })], nextPageToken: "" }], pageParams: [""] });
    insertPost(qc, post({ postId: "pending-a" }));
    const feed = () => (qc.getQueryData(keys.feed("FEED_KIND_FOLLOWING")) as { pages: { items: { postId: string }[] }[] }).pages[0]!.items.map((i) => i.postId);
    const mine = () => (qc.getQueryData(keys.userPosts("9")) as { pages: { posts: Post[] }[] }).pages[0]!.posts.map((p) => p.postId);
    expect(feed()).toEqual(["pending-a", "5"]);
    expect(mine()).toEqual(["pending-a", "5"]);
    insertPost(qc, post({ postId: "77" }), "pending-a");
    expect(feed()).toEqual(["77", "5"]);
    expect(mine()).toEqual(["77", "5"]);
    insertPost(qc, post({ postId: "pending-b" }));
    removePost(qc, "pending-b", "9");
    expect(feed()).toEqual(["77", "5"]);
    expect(qc.getQueryData(keys.post("pending-b"))).toBeUndefined();
  });
});
