"use client";
import { useMutation, useQueryClient, type QueryClient } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import type { Post } from "@/api/types";

/**
 * The post as it looks while an edit is in flight: the new text, marked edited now, and
 * no facets (the old ones point into the old text; the server sends the new ones).
 */
export function applyEdit(p: Post, text: string, now: Date = new Date()): Post {
  return { ...p, text, facets: [], editTime: now.toISOString() };
}

/** The server's answer over what the cache holds (the answer may leave out viewer fields). */
export function mergeEdited(before: Post | undefined, saved: Post): Post {
  return before ? { ...before, ...saved } : saved;
}

/** Puts `post` back in the one cached copy every screen reads (["post", id]). */
function put(qc: QueryClient, post: Post) {
  qc.setQueryData(keys.post(post.postId), post);
}

/**
 * Edits a post's text (PATCH with updateMask "text"): shown at once everywhere the post
 * is, replaced by the stored post, or put back as it was if the server refuses.
 */
export function useEditPost() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: ({ postId, text }: { postId: string; text: string }) =>
      unwrap(api.PATCH("/v1/posts/{postId}", { params: { path: { postId }, query: { updateMask: "text" } }, body: { text } })),
    onMutate: async ({ postId, text }) => {
      await qc.cancelQueries({ queryKey: keys.post(postId) });
      const before = qc.getQueryData<Post>(keys.post(postId));
      if (before) put(qc, applyEdit(before, text));
      return { before };
    },
    onError: (_e, { postId }, ctx) => {
      if (ctx?.before) put(qc, ctx.before);
      else qc.removeQueries({ queryKey: keys.post(postId) });
    },
    onSuccess: (saved, { postId }, ctx) => {
      put(qc, mergeEdited(ctx?.before, { ...saved, postId: saved.postId || postId }));
    },
  });
}
