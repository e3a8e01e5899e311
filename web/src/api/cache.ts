import type { QueryClient } from "@tanstack/react-query";
import { api, unwrap } from "./client";
import type { Post, User } from "./types";
import { isId } from "@/lib/format";

export const keys = {
  user: (id: string) => ["user", id] as const,
  userByHandle: (h: string) => ["userByHandle", h.toLowerCase()] as const,
  post: (id: string) => ["post", id] as const,
  feed: (kind: string) => ["feed", kind] as const,
  userPosts: (id: string) => ["userPosts", id] as const,
  comments: (id: string) => ["comments", id] as const,
  unread: ["unreadCounts"] as const,
  notifications: ["notifications"] as const,
  conversations: (state: string) => ["conversations", state] as const,
  conversation: (id: string) => ["conversation", id] as const,
  messages: (id: string) => ["messages", id] as const,
  relationship: (id: string) => ["relationship", id] as const,
};

/** Puts the cards and posts a list brought into the cache, so each card reads one place. */
export function primeUsers(qc: QueryClient, users: (User | undefined | null)[] | undefined) {
  for (const u of users ?? []) {
    if (u && isId(u.userId) && u.handle) {
      qc.setQueryData(keys.user(u.userId), (old: User | undefined) => ({ ...old, ...u }));
    }
  }
}

export function primePosts(qc: QueryClient, posts: (Post | undefined)[] | undefined) {
  for (const p of posts ?? []) {
    if (!p || !isId(p.postId)) continue;
    qc.setQueryData(keys.post(p.postId), p);
    if (p.author) primeUsers(qc, [p.author]);
  }
}

// Cards that did not come side-loaded are fetched together: one batchGet per tick.
let waiting = new Map<string, ((u: User | null) => void)[]>();
let scheduled = false;

export function loadUser(id: string): Promise<User | null> {
  return new Promise((resolve) => {
    const list = waiting.get(id) ?? [];
    list.push(resolve);
    waiting.set(id, list);
    if (!scheduled) {
      scheduled = true;
      setTimeout(flushUsers, 0);
    }
  });
}

async function flushUsers() {
  const batch = waiting;
  waiting = new Map();
  scheduled = false;
  const ids = [...batch.keys()];
  for (let i = 0; i < ids.length; i += 100) {
    const chunk = ids.slice(i, i + 100);
    let found: User[] = [];
    try {
      found = (await unwrap(api.GET("/v1/users:batchGet", { params: { query: { userIds: chunk } } }))).users ?? [];
    } catch {
      found = [];
    }
    const byId = new Map(found.map((u) => [u.userId, u]));
    for (const id of chunk) for (const r of batch.get(id) ?? []) r(byId.get(id) ?? null);
  }
}
