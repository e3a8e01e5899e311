"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useRef, useState } from "react";
import { humanMessage } from "@/api/errors";
import type { Post } from "@/api/types";
import { usePost, useUser, useDeletePost } from "@/hooks/data";
import { useSession } from "@/state/session";
import { timeAgo } from "@/lib/format";
import { Avatar } from "./Avatar";
import { PostText } from "./PostText";
import { PostMedia } from "./PostMedia";
import { PostActions } from "./PostActions";
import { PostMenu } from "./PostMenu";
import { PostEditor } from "./PostEditor";
import { useEditPost } from "@/hooks/useEditPost";

/** "Edited", with when (full date in the tooltip and for screen readers): shown wherever the post is. */
export function EditedMark({ editTime }: { editTime?: string }) {
  if (!editTime) return null;
  const at = new Date(editTime);
  const full = Number.isNaN(at.getTime()) ? "" : at.toLocaleString();
  return (
    <span className="text-xs text-muted" data-testid="edited">
      <span aria-hidden="true">· </span>
      <time dateTime={editTime} title={full ? `Edited ${full}` : "Edited"}>
        Edited<span className="sr-only">{full ? ` ${full}` : ""}</span>
      </time>
    </span>
  );
}

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
  const edit = useEditPost();
  const [editing, setEditing] = useState(false);
  // what the person typed, kept so a refused edit reopens with it
  const [draft, setDraft] = useState<string | null>(null);
  const textRef = useRef<HTMLDivElement>(null);
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

  function onSave(text: string) {
    setEditing(false);
    setDraft(text);
    edit.mutate({ postId, text }, { onError: () => setEditing(true), onSuccess: () => setDraft(null) });
    textRef.current?.focus();
  }
  const mine = !pending && !!me && post.authorId === me;

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
            <EditedMark editTime={post.editTime} />
            {mine ? (
              <PostMenu
                label="More actions for this post"
                items={[
                  { label: "Edit", onSelect: () => { edit.reset(); setEditing(true); }, disabled: edit.isPending },
                  { label: "Delete", onSelect: () => void onDelete(), danger: true, disabled: del.isPending },
                ]}
              />
            ) : null}
          </div>
          {editing ? (
            <PostEditor
              postId={postId}
              initial={draft ?? post.text ?? ""}
              original={post.text ?? ""}
              busy={edit.isPending}
              onSave={onSave}
              onCancel={() => {
                setEditing(false);
                setDraft(null);
                edit.reset();
              }}
            />
          ) : (
            <div ref={textRef} tabIndex={-1} className={`outline-none ${detail ? "text-lg" : ""}`}>
              <PostText text={post.text ?? ""} facets={post.facets} />
            </div>
          )}
          {edit.error && !edit.isPending ? (
            <p role="alert" className="text-xs text-red-700 dark:text-red-300">
              Your edit wasn&apos;t saved: {humanMessage(edit.error)}
            </p>
          ) : null}
          <PostMedia media={post.media} />
          {pending ? null : <PostActions post={post} />}
          {extra ? <div className="flex flex-wrap gap-1">{extra}</div> : null}
        </div>
      </div>
    </article>
  );
}
