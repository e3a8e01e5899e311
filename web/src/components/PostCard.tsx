"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import type { Post } from "@/api/types";
import { usePost, useUser, useDeletePost } from "@/hooks/data";
import { useSession } from "@/state/session";
import { timeAgo } from "@/lib/format";
import { Avatar } from "./Avatar";
import { PostText } from "./PostText";
import { PostMedia } from "./PostMedia";
import { PostActions } from "./PostActions";

export interface PostCardProps {
  postId: string;
  initial?: Post;
  /** A line above the post, e.g. "Shared by …". */
  context?: React.ReactNode;
  /** Extra controls (e.g. "Not interested" in the home feed). */
  extra?: React.ReactNode;
  /** Title level for the detail page. */
  detail?: boolean;
  pending?: boolean;
}

/** One post: author, time, text, images, actions. */
export function PostCard({ postId, initial, context, extra, detail, pending: pendingProp }: PostCardProps) {
  const pending = pendingProp || postId.startsWith("pending-");
  const { data: post } = usePost(postId, initial);
  const { data: author } = useUser(post?.authorId, post?.author);
  const me = useSession((s) => s.userId);
  const del = useDeletePost();
  const router = useRouter();
  if (!post) return null;
  const who = author ?? post.author;
  const name = who?.displayName || who?.handle || "Someone";
  const profile = who?.handle ? `/profile?handle=${encodeURIComponent(who.handle)}` : undefined;

  async function onDelete() {
    if (!window.confirm("Delete this post? This can't be undone.")) return;
    await del.mutateAsync(postId).catch(() => undefined);
    if (detail) router.replace("/");
  }

  return (
    <article className={`border-b border-line px-4 py-3 ${pending ? "opacity-60" : ""}`} aria-label={`Post by ${name}`} data-testid="post" data-post-id={postId}>
      {context ? <div className="mb-1 text-xs text-muted">{context}</div> : null}
      <div className="flex gap-3">
        {profile ? <Link href={profile} tabIndex={-1} aria-hidden="true"><Avatar user={who} /></Link> : <Avatar user={who} />}
        <div className="min-w-0 flex-1">
          <div className="flex flex-wrap items-baseline gap-x-1 text-sm">
            {profile ? <Link href={profile} className="font-semibold hover:underline">{name}</Link> : <span className="font-semibold">{name}</span>}
            {who?.handle ? <span className="text-muted">@{who.handle}</span> : null}
            <span className="text-muted" aria-hidden="true">·</span>
            {pending ? (
              <span className="text-muted">Posting…</span>
            ) : (
              <Link href={`/post?id=${postId}`} className="text-muted hover:underline">
                <time dateTime={post.createTime}>{timeAgo(post.createTime)}</time>
                <span className="sr-only"> — open post</span>
              </Link>
            )}
            {post.visibility === "VISIBILITY_FOLLOWERS" ? <span className="text-xs text-muted">· Followers only</span> : null}
          </div>
          <div className={detail ? "text-lg" : ""}>
            <PostText text={post.text ?? ""} facets={post.facets} />
          </div>
          <PostMedia media={post.media} />
          {pending ? null : <PostActions post={post} />}
          <div className="flex flex-wrap gap-1">
            {extra}
            {!pending && me && post.authorId === me ? (
              <button type="button" className="btn-ghost text-red-700 dark:text-red-300" onClick={() => void onDelete()} disabled={del.isPending}>
                Delete
              </button>
            ) : null}
          </div>
        </div>
      </div>
    </article>
  );
}
