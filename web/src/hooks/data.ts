"use client";
import { useInfiniteQuery, useMutation, useQuery, useQueryClient, type QueryClient } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { keys, loadUser, primePosts, primeUsers } from "@/api/cache";
import type { FeedKind, Post, User } from "@/api/types";
import { useSession } from "@/state/session";
import { isId } from "@/lib/format";
import { removePost } from "./useCreatePost";

export function useSignedIn(): boolean {
  return useSession((s) => s.status === "signedIn");
}

export function useUser(id: string | undefined, initial?: User | null) {
  return useQuery({
    queryKey: keys.user(id ?? ""),
    queryFn: () => loadUser(id!),
    enabled: isId(id),
    initialData: initial && initial.handle ? initial : undefined,
    staleTime: 5 * 60_000,
  });
}

export function useUserByHandle(handle: string) {
  const qc = useQueryClient();
  return useQuery({
    queryKey: keys.userByHandle(handle),
    enabled: !!handle,
    queryFn: async () => {
      const r = await unwrap(api.GET("/v1/users:lookup", { params: { query: { handles: [handle] } } }));
      const u = r.users?.[0];
      if (!u) return null;
      // the full profile (counts, viewer flags)
      const full = await unwrap(api.GET("/v1/users/{userId}", { params: { path: { userId: u.userId } } }));
      primeUsers(qc, [full]);
      return full;
    },
  });
}

export function usePost(id: string, initial?: Post) {
  return useQuery({
    queryKey: keys.post(id),
    queryFn: () => unwrap(api.GET("/v1/posts/{postId}", { params: { path: { postId: id } } })),
    enabled: isId(id) && !id.startsWith("pending-"),
    initialData: initial,
    staleTime: 60_000,
  });
}

export function useUnreadCounts() {
  const signedIn = useSignedIn();
  return useQuery({
    queryKey: keys.unread,
    queryFn: () => unwrap(api.GET("/v1/unreadCounts")),
    enabled: signedIn,
    staleTime: 60_000,
  });
}

export const FEED_KINDS: Record<"forYou" | "following", FeedKind> = {
  forYou: "FEED_KIND_RANKED",
  following: "FEED_KIND_FOLLOWING",
};

export function useHomeFeed(kind: FeedKind) {
  const qc = useQueryClient();
  const signedIn = useSignedIn();
  return useInfiniteQuery({
    queryKey: keys.feed(kind),
    enabled: signedIn,
    initialPageParam: "",
    queryFn: async ({ pageParam }) => {
      const page = await unwrap(
        api.GET("/v1/feed", { params: { query: { kind, pageSize: 20, pageToken: pageParam || undefined } } }),
      );
      primeUsers(qc, page.authors);
      primePosts(qc, page.posts);
      return page;
    },
    getNextPageParam: (last) => last.nextPageToken || undefined,
    staleTime: 5 * 60_000,
  });
}

/** Applies `change` to the cached post everywhere it is read from (the ["post", id] entry). */
export function patchPost(qc: QueryClient, id: string, change: (p: Post) => Post) {
  qc.setQueryData(keys.post(id), (old: Post | undefined) => (old ? change(old) : old));
}

function bump(n: string | undefined, by: number): string {
  return String(Math.max(0, parseInt(n ?? "0", 10) + by));
}

type Toggle = "like" | "save" | "share";
const FLAG = { like: "isLiked", save: "isSaved", share: "isShared" } as const;
const COUNT = { like: "likeCount", save: null, share: "shareCount" } as const;

/** Like / save / share, shown at once and put back if the server refuses. */
export function useToggle(kind: Toggle) {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: async ({ postId, on }: { postId: string; on: boolean }) => {
      const path = { postId };
      if (kind === "like") await unwrap(on ? api.POST("/v1/posts/{postId}:like", { params: { path } }) : api.POST("/v1/posts/{postId}:unlike", { params: { path } }));
      if (kind === "save") await unwrap(on ? api.POST("/v1/posts/{postId}:save", { params: { path } }) : api.POST("/v1/posts/{postId}:unsave", { params: { path } }));
      if (kind === "share") await unwrap(on ? api.POST("/v1/posts/{postId}:share", { params: { path } }) : api.POST("/v1/posts/{postId}:unshare", { params: { path } }));
    },
    onMutate: ({ postId, on }) => {
      const before = qc.getQueryData<Post>(keys.post(postId));
      patchPost(qc, postId, (p) => applyToggle(p, kind, on));
      return { before };
    },
    onError: (_e, { postId }, ctx) => {
      if (ctx?.before) qc.setQueryData(keys.post(postId), ctx.before);
    },
  });
}

export function applyToggle(p: Post, kind: Toggle, on: boolean): Post {
  const flag = FLAG[kind];
  if (p[flag] === on) return p;
  const c = COUNT[kind];
  return c ? { ...p, [flag]: on, [c]: bump(p[c], on ? 1 : -1) } : { ...p, [flag]: on };
}

export function useDeletePost() {
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (postId: string) => unwrap(api.DELETE("/v1/posts/{postId}", { params: { path: { postId } } })),
    onSuccess: (_d, postId) => {
      const authorId = qc.getQueryData<Post>(keys.post(postId))?.authorId ?? "";
      removePost(qc, postId, authorId);
    },
  });
}
