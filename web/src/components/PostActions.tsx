"use client";
import Link from "next/link";
import type { Post } from "@/api/types";
import { useToggle } from "@/hooks/data";
import { compact } from "@/lib/format";
import { humanMessage } from "@/api/errors";

function ToggleButton({ label, pressed, countText, onClick, busy }: { label: string; pressed: boolean; countText?: string; onClick: () => void; busy?: boolean }) {
  return (
    <button type="button" className={`btn-ghost ${pressed ? "font-bold text-blue-700 dark:text-blue-300" : ""}`} aria-pressed={pressed} onClick={onClick} disabled={busy}>
      {label}
      {countText !== undefined ? <span className="tabular-nums">{countText}</span> : null}
    </button>
  );
}

/** Like, comment, share and save under a post. */
export function PostActions({ post }: { post: Post }) {
  const like = useToggle("like");
  const share = useToggle("share");
  const save = useToggle("save");
  const id = post.postId;
  const err = like.error ?? share.error ?? save.error;
  return (
    <div className="mt-2 flex flex-wrap items-center gap-1 text-muted" role="group" aria-label="Post actions">
      <ToggleButton label={post.isLiked ? "Liked" : "Like"} pressed={!!post.isLiked} countText={compact(post.likeCount)} onClick={() => like.mutate({ postId: id, on: !post.isLiked })} />
      <Link href={`/post?id=${id}`} className="btn-ghost" aria-label={`Comments: ${compact(post.commentCount)}`}>
        Comment <span className="tabular-nums">{compact(post.commentCount)}</span>
      </Link>
      <ToggleButton label={post.isShared ? "Shared" : "Share"} pressed={!!post.isShared} countText={compact(post.shareCount)} onClick={() => share.mutate({ postId: id, on: !post.isShared })} />
      <ToggleButton label={post.isSaved ? "Saved" : "Save"} pressed={!!post.isSaved} onClick={() => save.mutate({ postId: id, on: !post.isSaved })} />
      {err ? <span role="alert" className="text-xs text-red-700 dark:text-red-300">{humanMessage(err)}</span> : null}
    </div>
  );
}
