"use client";
import { useInfiniteQuery, useQueryClient } from "@tanstack/react-query";
import { useSearchParams } from "next/navigation";
import { api, unwrap } from "@/api/client";
import { primePosts } from "@/api/cache";
import { PostCard } from "./PostCard";
import { LoadMore } from "./LoadMore";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

/** /tag?name=…: the newest posts with a hashtag. */
export function TagScreen() {
  const name = (useSearchParams().get("name") ?? "").replace(/^#/, "");
  const qc = useQueryClient();
  const q = useInfiniteQuery({
    queryKey: ["tag", name.toLowerCase()],
    enabled: !!name,
    initialPageParam: "",
    queryFn: async ({ pageParam }) => {
      const r = await unwrap(api.GET("/v1/tags/{tag}/posts", { params: { path: { tag: name }, query: { pageSize: 20, pageToken: pageParam || undefined } } }));
      primePosts(qc, r.posts);
      return r;
    },
    getNextPageParam: (p) => p.nextPageToken || undefined,
  });
  if (!name) return <EmptyState title="No hashtag selected" />;
  const posts = q.data?.pages.flatMap((p) => p.posts) ?? [];
  return (
    <>
      <h1 className="border-b border-line px-4 py-3 text-xl font-bold">#{name}</h1>
      {q.status === "pending" ? <LoadingState label="Loading posts" /> : q.status === "error" ? <ErrorState error={q.error} onRetry={() => void q.refetch()} /> : posts.length ? (
        <section aria-label={`Posts tagged ${name}`}>
          {posts.map((p) => <PostCard key={p.postId} postId={p.postId} initial={p} />)}
          <LoadMore query={q} />
        </section>
      ) : (
        <EmptyState title={`No posts with #${name} yet`} />
      )}
    </>
  );
}
