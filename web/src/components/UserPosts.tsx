"use client";
import { useInfiniteQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { keys, primePosts } from "@/api/cache";
import { PostCard } from "./PostCard";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";
import { LoadMore } from "./LoadMore";

/** An account's posts, newest first. */
export function UserPosts({ userId }: { userId: string }) {
  const qc = useQueryClient();
  const q = useInfiniteQuery({
    queryKey: keys.userPosts(userId),
    initialPageParam: "",
    queryFn: async ({ pageParam }) => {
      const page = await unwrap(api.GET("/v1/users/{userId}/posts", { params: { path: { userId }, query: { pageSize: 20, pageToken: pageParam || undefined } } }));
      primePosts(qc, page.posts);
      return page;
    },
    getNextPageParam: (p) => p.nextPageToken || undefined,
  });
  if (q.status === "pending") return <LoadingState label="Loading posts" />;
  if (q.status === "error") return <ErrorState error={q.error} onRetry={() => void q.refetch()} />;
  const posts = q.data.pages.flatMap((p) => p.posts);
  if (!posts.length) return <EmptyState title="No posts yet" />;
  return (
    <section aria-label="Posts">
      {posts.map((p) => (
        <PostCard key={p.postId} postId={p.postId} initial={p} />
      ))}
      <LoadMore query={q} label="Load more posts" />
    </section>
  );
}
