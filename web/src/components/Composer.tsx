"use client";
import { useRef, useState } from "react";
import { api, unwrap } from "@/api/client";
import { humanMessage } from "@/api/errors";
import { uploadMedia, waitUntilReady } from "@/api/upload";
import type { Media, Visibility } from "@/api/types";
import { newId } from "@/lib/format";
import { tempPostId, useCreatePost } from "@/hooks/useCreatePost";

const MAX_IMAGES = 4;
const MAX_TEXT = 500;

interface Attachment {
  key: string;
  file: File;
  preview: string;
  progress: number;
  state: "uploading" | "processing" | "ready" | "failed";
  media?: Media;
  alt: string;
  error?: string;
}

/** Write a post: text, up to four images with alt text, who can see it. */
export function Composer() {
  const [text, setText] = useState("");
  const [visibility, setVisibility] = useState<Visibility>("VISIBILITY_PUBLIC");
  const [items, setItems] = useState<Attachment[]>([]);
  const [error, setError] = useState<string | null>(null);
  const fileRef = useRef<HTMLInputElement>(null);
  const create = useCreatePost();

  const update = (key: string, change: Partial<Attachment>) => setItems((list) => list.map((a) => (a.key === key ? { ...a, ...change } : a)));

  function onFiles(files: FileList | null) {
    if (!files) return;
    const room = MAX_IMAGES - items.length;
    const picked = Array.from(files).filter((f) => f.type.startsWith("image/")).slice(0, room);
    if (files.length > room) setError(`You can add up to ${MAX_IMAGES} images.`);
    for (const file of picked) {
      const key = newId();
      const att: Attachment = { key, file, preview: URL.createObjectURL(file), progress: 0, state: "uploading", alt: "" };
      setItems((list) => [...list, att]);
      uploadMedia(file, key, (f) => update(key, { progress: f }))
        .then((m) => {
          update(key, { state: "processing", media: m, progress: 1 });
          return waitUntilReady(m.mediaId);
        })
        .then((m) => update(key, { state: "ready", media: m }))
        .catch((e: unknown) => update(key, { state: "failed", error: humanMessage(e) }));
    }
    if (fileRef.current) fileRef.current.value = "";
  }

  function remove(key: string) {
    setItems((list) => {
      const gone = list.find((a) => a.key === key);
      if (gone) URL.revokeObjectURL(gone.preview);
      return list.filter((a) => a.key !== key);
    });
  }

  const busy = items.some((a) => a.state === "uploading" || a.state === "processing");
  const failed = items.some((a) => a.state === "failed");
  const canPost = (text.trim().length > 0 || items.length > 0) && !busy && !failed && text.length <= MAX_TEXT && !create.isPending;

  async function onSubmit(e: React.FormEvent) {
    e.preventDefault();
    if (!canPost) return;
    setError(null);
    try {
      // alt text goes on the media before the post attaches it
      for (const a of items) {
        if (a.media && a.alt.trim()) {
          await unwrap(
            api.PATCH("/v1/media/{mediaId}", {
              params: { path: { mediaId: a.media.mediaId }, query: { updateMask: "description" } },
              body: { description: a.alt.trim() },
            }),
          );
        }
      }
      const input = { text: text.trim(), visibility, mediaIds: items.map((a) => a.media!.mediaId) };
      const requestId = newId();
      const tempId = tempPostId();
      setText("");
      const kept = items;
      setItems([]);
      await create.mutateAsync({ input, requestId, tempId }).catch((err: unknown) => {
        setText(input.text);
        setItems(kept);
        throw err;
      });
      for (const a of kept) URL.revokeObjectURL(a.preview);
    } catch (err) {
      setError(humanMessage(err));
    }
  }

  return (
    <form onSubmit={onSubmit} className="border-b border-line p-4" aria-label="New post">
      <label htmlFor="compose-text" className="sr-only">What&apos;s happening?</label>
      <textarea
        id="compose-text"
        className="input min-h-20 resize-y"
        placeholder="What's happening?"
        value={text}
        maxLength={MAX_TEXT * 2}
        onChange={(e) => setText(e.target.value)}
        aria-describedby="compose-count"
      />
      {items.length ? (
        <ul className="mt-2 grid grid-cols-2 gap-2" aria-label="Images">
          {items.map((a, i) => (
            <li key={a.key} className="rounded-lg border border-line p-2">
              {/* eslint-disable-next-line @next/next/no-img-element */}
              <img src={a.preview} alt="" className="h-24 w-full rounded object-cover" width={200} height={96} />
              {a.state === "uploading" ? (
                <>
                  <label className="sr-only" htmlFor={`progress-${a.key}`}>Uploading image {i + 1}</label>
                  <progress id={`progress-${a.key}`} className="mt-1 w-full" max={1} value={a.progress} />
                </>
              ) : null}
              <p className="text-xs text-muted" aria-live="polite">
                {a.state === "uploading" ? `Uploading ${Math.round(a.progress * 100)}%` : a.state === "processing" ? "Processing…" : a.state === "ready" ? "Ready" : a.error}
              </p>
              <label htmlFor={`alt-${a.key}`} className="mt-1 block text-xs font-medium">Alt text for image {i + 1}</label>
              <input id={`alt-${a.key}`} className="input text-sm" value={a.alt} maxLength={1500} onChange={(e) => update(a.key, { alt: e.target.value })} placeholder="Describe the image" />
              <button type="button" className="btn-ghost mt-1 text-xs" onClick={() => remove(a.key)}>
                Remove image {i + 1}
              </button>
            </li>
          ))}
        </ul>
      ) : null}
      <div className="mt-2 flex flex-wrap items-center gap-2">
        <input ref={fileRef} id="compose-images" type="file" accept="image/*" multiple className="sr-only" onChange={(e) => onFiles(e.target.files)} disabled={items.length >= MAX_IMAGES} />
        <label htmlFor="compose-images" className={`btn-secondary cursor-pointer ${items.length >= MAX_IMAGES ? "opacity-50" : ""}`}>Add images</label>
        <label htmlFor="compose-visibility" className="sr-only">Who can see this</label>
        <select id="compose-visibility" className="input w-auto py-1 text-sm" value={visibility} onChange={(e) => setVisibility(e.target.value as Visibility)}>
          <option value="VISIBILITY_PUBLIC">Everyone</option>
          <option value="VISIBILITY_FOLLOWERS">Followers only</option>
        </select>
        <span id="compose-count" className={`ml-auto text-xs ${text.length > MAX_TEXT ? "text-red-700" : "text-muted"}`}>
          {text.length}/{MAX_TEXT}
        </span>
        <button type="submit" className="btn-primary" disabled={!canPost}>
          {busy ? "Waiting for images…" : "Post"}
        </button>
      </div>
      {error ? <p role="alert" className="mt-2 text-sm text-red-700 dark:text-red-300">{error}</p> : null}
    </form>
  );
}
