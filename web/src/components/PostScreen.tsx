"use client";
import Link from "next/link";
import { useInfiniteQuery, useMutation, useQueryClient } from "@tanstack/react-query";
import { useSearchParams } from "next/navigation";
import { useState } from "react";
import { api, unwrap } from "@/api/client";
import { keys, primeUsers } from "@/api/cache";
import { humanMessage } from "@/api/errors";
import type { Comment } from "@/api/types";
import { usePost, patchPost, useSignedIn } from "@/hooks/data";
import { useSession } from "@/state/session";
import { timeAgo } from "@/lib/format";
import { Avatar } from "./Avatar";
import { PostCard } from "./PostCard";
import { PostText } from "./PostText";
import { LoadMore } from "./LoadMore";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

function CommentItem({ comment, postId }: { comment: Comment; postId: string }) {
  const me = useSession((s) => s.userId);
  const qc = useQueryClient();
  const del = useMutation({
    mutationFn: () => unwrap(api.DELETE("/v1/posts/{postId}/comments/{commentId}", { params: { path: { postId, commentId: comment.commentId } } })),
    onSuccess: () => {
      void qc.invalidateQueries({ queryKey: keys.comments(postId) });
      patchPost(qc, postId, (p) => ({ ...p, commentCount: String(Math.max(0, parseInt(p.commentCount ?? "0", 10) - 1)) }));
    },
  });
  const a = comment.author;
  return (
    <li className="flex gap-3 border-b border-line px-4 py-3">
      <Avatar user={a} size="sm" />
      <div className="min-w-0 flex-1">
        <p className="text-sm">
          {a?.handle ? <Link href={`/profile?handle=${encodeURIComponent(a.handle)}`} className="font-semibold hover:underline">{a.displayName || a.handle}</Link> : <span className="font-semibold">Someone</span>}{" "}
          <span className="text-muted"><time dateTime={comment.createTime}>{timeAgo(comment.createTime)}</time></span>
        </p>
        <PostText text={comment.text ?? ""} facets={comment.facets} />
        {me && comment.authorId === me ? (
          <button type="button" className="btn-ghost text-xs text-red-700 dark:text-red-300" onClick={() => del.mutate()} disabled={del.isPending}>Delete comment</button>
        ) : null}
      </div>
    </li>
  );
}

function CommentForm({ postId }: { postId: string }) {
  const qc = useQueryClient();
  const [text, setText] = useState("");
  const add = useMutation({
    mutationFn: (t: string) => unwrap(api.POST("/v1/posts/{postId}/comments", { params: { path: { postId } }, body: { text: t } })),
    onSuccess: () => {
      setText("");
      void qc.invalidateQueries({ queryKey: keys.comments(postId) });
      patchPost(qc, postId, (p) => ({ ...p, commentCount: String(parseInt(p.commentCount ?? "0", 10) + 1) }));
    },
  });
  return (
    <form
      className="flex gap-2 border-b border-line p-4"
      onSubmit={(e) => {
        e.preventDefault();
        if (text.trim()) add.mutate(text.trim());
      }}
    >
      <label htmlFor="comment-text" className="sr-only">Write a comment</label>
      <input id="comment-text" className="input" placeholder="Write a comment" value={text} onChange={(e) => setText(e.target.value)} maxLength={1000} />
      <button type="submit" className="btn-primary" disabled={!text.trim() || add.isPending}>Reply</button>
      {add.error ? <p role="alert" className="text-sm text-red-700">{humanMessage(add.error)}</p> : null}
    </form>
  );
}

/** /post?id=…: the post, its comments, and a reply box. */
export function PostScreen() {
  const id = useSearchParams().get("id") ?? "";
  const qc = useQueryClient();
  const signedIn = useSignedIn();
  const post = usePost(id);
  const comments = useInfiniteQuery({
    queryKey: keys.comments(id),
    enabled: !!id && post.status === "success",
    initialPageParam: "",
    queryFn: async ({ pageParam }) => {
      const page = await unwrap(api.GET("/v1/posts/{postId}/comments", { params: { path: { postId: id }, query: { pageSize: 30, pageToken: pageParam || undefined } } }));
      primeUsers(qc, page.comments.map((c) => c.author));
      return page;
    },
    getNextPageParam: (p) => p.nextPageToken || undefined,
  });
  if (!id) return <EmptyState title="No post selected" />;
  if (post.status === "pending") return <LoadingState label="Loading post" />;
  if (post.status === "error") return <ErrorState error={post.error} onRetry={() => void post.refetch()} />;
  const list = comments.data?.pages.flatMap((p) => p.comments) ?? [];
  return (
    <>
      <h1 className="sr-only">Post</h1>
      <PostCard postId={id} initial={post.data} detail />
      {signedIn ? <CommentForm postId={id} /> : null}
      <section aria-labelledby="comments-title">
        <h2 id="comments-title" className="px-4 pt-3 text-sm font-semibold">Comments</h2>
        {comments.status === "pending" ? <LoadingState label="Loading comments" /> : null}
        {comments.status === "error" ? <ErrorState error={comments.error} onRetry={() => void comments.refetch()} /> : null}
        {comments.status === "success" && !list.length ? <EmptyState title="No comments yet" /> : null}
        <ul>{list.map((c) => <CommentItem key={c.commentId} comment={c} postId={id} />)}</ul>
        <LoadMore query={comments} label="More comments" />
      </section>
    </>
  );
}
