"use client";
import { useMutation, useQueryClient, type InfiniteData } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import type { FeedPage, Post, PostInput } from "@/api/types";
import { useSession } from "@/state/session";
import { newId } from "@/lib/format";

type UserPostsPage = { posts: Post[]; nextPageToken: string };

export const RECENT_KEY = ["recentPosts"] as const;

/**
 * Posts this tab created: shown on top of the home tabs until the server's timeline has
 * them (fan-out is asynchronous, so a refetch right after posting may not have them yet).
 */
function remember(qc: ReturnType<typeof useQueryClient>, postId: string, replaceId?: string) {
  qc.setQueryData<string[]>(RECENT_KEY, (old = []) => [postId, ...old.filter((id) => id !== postId && id !== replaceId)].slice(0, 20));
}

export function forget(qc: ReturnType<typeof useQueryClient>, postId: string) {
  qc.setQueryData<string[]>(RECENT_KEY, (old = []) => old.filter((id) => id !== postId));
}

/** Puts a post at the top of the cached timelines (home tabs and the author's profile). */
export function insertPost(qc: ReturnType<typeof useQueryClient>, post: Post, replaceId?: string) {
  qc.setQueryData(keys.post(post.postId), post);
  remember(qc, post.postId, replaceId);
  for (const kind of ["FEED_KIND_RANKED", "FEED_KIND_FOLLOWING"]) {
    qc.setQueryData<InfiniteData<FeedPage>>(keys.feed(kind), (d) => {
      if (!d?.pages.length) return d;
      const pages = d.pages.map((p) => ({ ...p, items: (p.items ?? []).filter((i) => i.postId !== replaceId && i.postId !== post.postId) }));
      const first = pages[0]!;
      pages[0] = { ...first, items: [{ postId: post.postId, sharedByUserId: "0", trackingToken: "", reason: undefined } as unknown as NonNullable<FeedPage["items"]>[number], ...(first.items ?? [])] };
      return { ...d, pages };
    });
  }
  qc.setQueryData<InfiniteData<UserPostsPage>>(keys.userPosts(post.authorId), (d) => {
    if (!d?.pages.length) return d;
    const pages = d.pages.map((p) => ({ ...p, posts: p.posts.filter((x) => x.postId !== replaceId && x.postId !== post.postId) }));
    pages[0] = { ...pages[0]!, posts: [post, ...pages[0]!.posts] };
    return { ...d, pages };
  });
}

export function removePost(qc: ReturnType<typeof useQueryClient>, postId: string, authorId: string) {
  forget(qc, postId);
  for (const kind of ["FEED_KIND_RANKED", "FEED_KIND_FOLLOWING"]) {
    qc.setQueryData<InfiniteData<FeedPage>>(keys.feed(kind), (d) =>
      d ? { ...d, pages: d.pages.map((p) => ({ ...p, items: (p.items ?? []).filter((i) => i.postId !== postId) })) } : d,
    );
  }
  qc.setQueryData<InfiniteData<UserPostsPage>>(keys.userPosts(authorId), (d) =>
    d ? { ...d, pages: d.pages.map((p) => ({ ...p, posts: p.posts.filter((x) => x.postId !== postId) })) } : d,
  );
  qc.removeQueries({ queryKey: keys.post(postId) });
}

/** Creates a post; it shows at once (pending) and is replaced by the stored one, or removed on failure. */
export function useCreatePost() {
  const qc = useQueryClient();
  const me = useSession((s) => s.user);
  return useMutation({
    mutationFn: async ({ input, requestId }: { input: PostInput; requestId: string; tempId: string }) =>
      unwrap(api.POST("/v1/posts", { params: { query: { requestId } }, body: input })),
    onMutate: async ({ input, tempId }) => {
      // a refetch in flight would overwrite the optimistic entry
      await qc.cancelQueries({ queryKey: ["feed"] });
      await qc.cancelQueries({ queryKey: ["userPosts"] });
      const optimistic = {
        postId: tempId,
        authorId: me?.userId ?? "",
        author: me ?? undefined,
        text: input.text ?? "",
        visibility: input.visibility,
        mediaIds: input.mediaIds ?? [],
        likeCount: "0",
        commentCount: "0",
        shareCount: "0",
        createTime: new Date().toISOString(),
        media: [],
        facets: [],
      } as unknown as Post;
      insertPost(qc, optimistic);
    },
    onSuccess: (post, { tempId }) => {
      insertPost(qc, post, tempId);
      qc.removeQueries({ queryKey: keys.post(tempId) });
    },
    onError: (_e, { tempId }) => {
      removePost(qc, tempId, me?.userId ?? "");
    },
  });
}

export const tempPostId = () => `pending-${newId()}`;
