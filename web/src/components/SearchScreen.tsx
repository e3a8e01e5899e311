"use client";
import Link from "next/link";
import { useInfiniteQuery, useQuery, useQueryClient } from "@tanstack/react-query";
import { useRouter, useSearchParams } from "next/navigation";
import { useState } from "react";
import { api, unwrap } from "@/api/client";
import { primePosts, primeUsers } from "@/api/cache";
import { useDebounced } from "@/hooks/useDebounced";
import { compact } from "@/lib/format";
import { PostCard } from "./PostCard";
import { UserRow } from "./UserRow";
import { LoadMore } from "./LoadMore";
import { TrendingTags, WhoToFollow } from "./Discover";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

function PeopleResults({ query, limit }: { query: string; limit: number }) {
  const qc = useQueryClient();
  const q = useQuery({
    queryKey: ["search", "users", query, limit],
    enabled: query.length > 0,
    queryFn: async () => {
      const r = await unwrap(api.GET("/v1/users:search", { params: { query: { query, pageSize: limit } } }));
      primeUsers(qc, r.users);
      return r;
    },
  });
  if (q.status === "pending") return <LoadingState label="Searching people" />;
  if (q.status === "error") return <ErrorState error={q.error} />;
  if (!q.data.users.length) return <EmptyState title="No people found" />;
  return <ul aria-label="People">{q.data.users.map((u) => <UserRow key={u.userId} user={u} />)}</ul>;
}

function TagResults({ query }: { query: string }) {
  const q = useQuery({
    queryKey: ["search", "tags", query],
    enabled: query.length > 0,
    queryFn: () => unwrap(api.GET("/v1/tags:search", { params: { query: { query: query.replace(/^#/, ""), pageSize: 20 } } })),
  });
  if (q.status === "pending") return <LoadingState label="Searching hashtags" />;
  if (q.status === "error") return <ErrorState error={q.error} />;
  if (!q.data.tags.length) return <EmptyState title="No hashtags found" />;
  return (
    <ul aria-label="Hashtags">
      {q.data.tags.map((t) => (
        <li key={t.tag} className="border-b border-line">
          <Link href={`/tag?name=${encodeURIComponent(t.tag)}`} className="flex justify-between px-4 py-3 hover:bg-slate-50 dark:hover:bg-slate-900">
            <span className="font-semibold">#{t.tag}</span>
            <span className="text-sm text-muted">{compact(t.postCount)} posts</span>
          </Link>
        </li>
      ))}
    </ul>
  );
}

function PostResults({ query }: { query: string }) {
  const qc = useQueryClient();
  const q = useInfiniteQuery({
    queryKey: ["search", "posts", query],
    enabled: query.length > 0,
    initialPageParam: "",
    queryFn: async ({ pageParam }) => {
      const r = await unwrap(api.GET("/v1/posts:search", { params: { query: { query, pageSize: 20, pageToken: pageParam || undefined, order: "SEARCH_ORDER_RELEVANCE" } } }));
      primePosts(qc, r.posts);
      return r;
    },
    getNextPageParam: (p) => p.nextPageToken || undefined,
  });
  if (q.status === "pending") return <LoadingState label="Searching posts" />;
  if (q.status === "error") return <ErrorState error={q.error} />;
  const posts = q.data.pages.flatMap((p) => p.posts);
  if (!posts.length) return <EmptyState title="No posts found" />;
  return (
    <section aria-label="Posts">
      {posts.map((p) => <PostCard key={p.postId} postId={p.postId} initial={p} />)}
      <LoadMore query={q} />
    </section>
  );
}

const TABS = [
  { id: "people", label: "People" },
  { id: "posts", label: "Posts" },
  { id: "tags", label: "Hashtags" },
] as const;
type Tab = (typeof TABS)[number]["id"];

/** /search?q=…&tab=people|posts|tags — people as you type, posts and hashtags on submit. */
export function SearchScreen() {
  const params = useSearchParams();
  const router = useRouter();
  const [text, setText] = useState(params.get("q") ?? "");
  const tab: Tab = (TABS.find((t) => t.id === params.get("tab"))?.id ?? "people") as Tab;
  const submitted = params.get("q") ?? "";
  const typed = useDebounced(text.trim(), 250);
  const go = (q: string, t: Tab) => router.replace(`/search?q=${encodeURIComponent(q)}&tab=${t}`);
  const typeahead = typed && typed !== submitted && tab === "people";
  return (
    <>
      <h1 className="sr-only">Search</h1>
      <form
        role="search"
        className="flex gap-2 border-b border-line p-4"
        onSubmit={(e) => {
          e.preventDefault();
          if (text.trim()) go(text.trim(), text.trim().startsWith("#") ? "tags" : tab);
        }}
      >
        <label htmlFor="search-input" className="sr-only">Search people, posts and hashtags</label>
        <input id="search-input" type="search" className="input" placeholder="Search people, posts, #hashtags" value={text} onChange={(e) => setText(e.target.value)} autoComplete="off" />
        <button type="submit" className="btn-primary">Search</button>
      </form>
      {typeahead ? (
        <section aria-label="Suggestions" aria-live="polite">
          <PeopleResults query={typed} limit={5} />
        </section>
      ) : submitted ? (
        <>
          <div role="tablist" aria-label="Results" className="flex border-b border-line">
            {TABS.map((t) => (
              <button key={t.id} type="button" role="tab" aria-selected={tab === t.id} onClick={() => go(submitted, t.id)} className={`flex-1 py-3 text-sm font-semibold ${tab === t.id ? "border-b-4 border-blue-700" : "text-muted"}`}>
                {t.label}
              </button>
            ))}
          </div>
          <div role="tabpanel">
            {tab === "people" ? <PeopleResults query={submitted} limit={20} /> : tab === "posts" ? <PostResults query={submitted} /> : <TagResults query={submitted} />}
          </div>
        </>
      ) : (
        <>
          <TrendingTags />
          <WhoToFollow />
        </>
      )}
    </>
  );
}
