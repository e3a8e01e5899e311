"use client";
import type { Attachment } from "@/hooks/useAttachments";
import { BlurhashImage } from "./BlurhashImage";

/** The images picked for a post or message: preview, upload progress, state, alt text, remove. */
export function AttachmentList({ items, onAlt, onRemove, label = "Images" }: { items: Attachment[]; onAlt: (key: string, alt: string) => void; onRemove: (key: string) => void; label?: string }) {
  if (!items.length) return null;
  return (
    <ul className="mt-2 grid grid-cols-2 gap-2" aria-label={label}>
      {items.map((a, i) => (
        <li key={a.key} className="min-w-0 rounded-lg border border-line p-2" data-testid="attachment" data-state={a.state}>
          <BlurhashImage src={a.preview} hash={a.media?.blurhash} alt="" width={200} height={96} className="h-24 w-full rounded object-cover" />
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
          <input id={`alt-${a.key}`} className="input text-sm" value={a.alt} maxLength={1500} onChange={(e) => onAlt(a.key, e.target.value)} placeholder="Describe the image" />
          <button type="button" className="btn-ghost mt-1 text-xs" onClick={() => onRemove(a.key)}>
            Remove image {i + 1}
          </button>
        </li>
      ))}
    </ul>
  );
}
