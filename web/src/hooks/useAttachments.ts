"use client";
import { useCallback, useEffect, useRef, useState } from "react";
import { api, unwrap } from "@/api/client";
import { humanMessage } from "@/api/errors";
import { uploadMedia, waitUntilReady } from "@/api/upload";
import type { Media } from "@/api/types";
import { newId } from "@/lib/format";

export interface Attachment {
  key: string;
  file: File;
  preview: string;
  progress: number;
  state: "uploading" | "processing" | "ready" | "failed";
  media?: Media;
  alt: string;
  error?: string;
}

/** What happens to a picked file list given the room left: the images kept and whether some were refused. */
export function pickImages(files: readonly Pick<File, "type">[], room: number): { keep: number[]; refused: boolean } {
  const images = files.map((f, i) => ({ f, i })).filter(({ f }) => f.type.startsWith("image/"));
  const keep = images.slice(0, Math.max(0, room)).map(({ i }) => i);
  return { keep, refused: images.length > keep.length };
}

/**
 * Images attached to something being written (a post, a chat message): each uploaded
 * through the media API with progress, then polled until its variants are ready, so
 * what is sent only names READY media (the API refuses anything else).
 */
export function useAttachments(max: number) {
  const [items, setItems] = useState<Attachment[]>([]);
  const [error, setError] = useState<string | null>(null);
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);

  const update = useCallback((key: string, change: Partial<Attachment>) => {
    if (alive.current) setItems((list) => list.map((a) => (a.key === key ? { ...a, ...change } : a)));
  }, []);

  function add(files: FileList | File[] | null) {
    if (!files) return;
    const all = Array.from(files);
    const { keep, refused } = pickImages(all, max - items.length);
    setError(refused ? `You can add up to ${max} images.` : null);
    for (const i of keep) {
      const file = all[i]!;
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
  }

  function remove(key: string) {
    setItems((list) => {
      const gone = list.find((a) => a.key === key);
      if (gone) URL.revokeObjectURL(gone.preview);
      return list.filter((a) => a.key !== key);
    });
  }

  /** Takes the list out of the form (it is being sent); `restore` puts it back if sending fails. */
  function take(): { kept: Attachment[]; restore: () => void; done: () => void } {
    const kept = items;
    setItems([]);
    return {
      kept,
      restore: () => setItems(kept),
      done: () => kept.forEach((a) => URL.revokeObjectURL(a.preview)),
    };
  }

  /** Writes each image's alt text onto its media before something attaches it. */
  async function saveAltText(list: readonly Attachment[] = items) {
    for (const a of list) {
      if (a.media && a.alt.trim()) {
        await unwrap(
          api.PATCH("/v1/media/{mediaId}", {
            params: { path: { mediaId: a.media.mediaId }, query: { updateMask: "description" } },
            body: { description: a.alt.trim() },
          }),
        );
      }
    }
  }

  const busy = items.some((a) => a.state === "uploading" || a.state === "processing");
  const failed = items.some((a) => a.state === "failed");
  const mediaIds = items.flatMap((a) => (a.media ? [a.media.mediaId] : []));
  return { items, error, setError, add, remove, update, take, saveAltText, busy, failed, mediaIds, full: items.length >= max };
}
