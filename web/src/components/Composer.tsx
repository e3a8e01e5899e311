"use client";
import { useRef, useState } from "react";
import { humanMessage } from "@/api/errors";
import type { Visibility } from "@/api/types";
import { newId } from "@/lib/format";
import { POST_MEDIA_MAX, POST_TEXT_MAX } from "@/lib/limits";
import { useAttachments } from "@/hooks/useAttachments";
import { tempPostId, useCreatePost } from "@/hooks/useCreatePost";
import { AttachmentList } from "./AttachmentList";
import { TextCounter } from "./TextCounter";

/** Write a post: text (the API's 5,000 characters), up to four images with alt text, who can see it. */
export function Composer() {
  const [text, setText] = useState("");
  const [visibility, setVisibility] = useState<Visibility>("VISIBILITY_PUBLIC");
  const [error, setError] = useState<string | null>(null);
  const fileRef = useRef<HTMLInputElement>(null);
  const files = useAttachments(POST_MEDIA_MAX);
  const create = useCreatePost();
  const items = files.items;

  const tooLong = [...text].length > POST_TEXT_MAX;
  const canPost = (text.trim().length > 0 || items.length > 0) && !files.busy && !files.failed && !tooLong && !create.isPending;

  async function onSubmit(e: React.FormEvent) {
    e.preventDefault();
    if (!canPost) return;
    setError(null);
    try {
      // alt text goes on the media before the post attaches it
      await files.saveAltText();
      const input = { text: text.trim(), visibility, mediaIds: files.mediaIds };
      const requestId = newId();
      const tempId = tempPostId();
      setText("");
      const taken = files.take();
      await create.mutateAsync({ input, requestId, tempId }).catch((err: unknown) => {
        setText(input.text);
        taken.restore();
        throw err;
      });
      taken.done();
    } catch (err) {
      setError(humanMessage(err));
    }
  }

  const shownError = error ?? files.error;
  return (
    <form onSubmit={onSubmit} className="border-b border-line p-4" aria-label="New post">
      <label htmlFor="compose-text" className="sr-only">What&apos;s happening?</label>
      <textarea
        id="compose-text"
        className="input min-h-20 resize-y"
        placeholder="What's happening?"
        value={text}
        maxLength={POST_TEXT_MAX * 2}
        onChange={(e) => setText(e.target.value)}
        aria-describedby="compose-count"
        aria-invalid={tooLong || undefined}
      />
      <AttachmentList items={items} onAlt={(key, alt) => files.update(key, { alt })} onRemove={files.remove} />
      <div className="mt-2 flex flex-wrap items-center gap-2">
        <input
          ref={fileRef}
          id="compose-images"
          type="file"
          accept="image/*"
          multiple
          className="sr-only"
          onChange={(e) => {
            files.add(e.target.files);
            if (fileRef.current) fileRef.current.value = "";
          }}
          disabled={files.full}
        />
        <label htmlFor="compose-images" className={`btn-secondary cursor-pointer ${files.full ? "opacity-50" : ""}`}>Add images</label>
        <label htmlFor="compose-visibility" className="sr-only">Who can see this</label>
        <select id="compose-visibility" className="input w-auto py-1 text-sm" value={visibility} onChange={(e) => setVisibility(e.target.value as Visibility)}>
          <option value="VISIBILITY_PUBLIC">Everyone</option>
          <option value="VISIBILITY_FOLLOWERS">Followers only</option>
        </select>
        <TextCounter id="compose-count" text={text} max={POST_TEXT_MAX} className="ml-auto" />
        <button type="submit" className="btn-primary" disabled={!canPost}>
          {files.busy ? "Waiting for images…" : "Post"}
        </button>
      </div>
      {shownError ? <p role="alert" className="mt-2 text-sm text-red-700 dark:text-red-300">{shownError}</p> : null}
    </form>
  );
}
