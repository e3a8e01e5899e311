"use client";
import { useEffect, useRef, useState } from "react";
import { POST_TEXT_MAX } from "@/lib/limits";
import { TextCounter } from "./TextCounter";

/** The inline editor for a post's text: Save changes (or Ctrl/⌘+Enter), Cancel (or Escape). */
export function PostEditor({ postId, initial, original, onSave, onCancel, busy }: { postId: string; initial: string; original: string; onSave: (text: string) => void; onCancel: () => void; busy?: boolean }) {
  const [text, setText] = useState(initial);
  const box = useRef<HTMLTextAreaElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    el.focus();
    el.setSelectionRange(el.value.length, el.value.length);
  }, []);
  const tooLong = [...text].length > POST_TEXT_MAX;
  const unchanged = text.trim() === original.trim();
  const can = text.trim().length > 0 && !tooLong && !unchanged && !busy;
  const ids = { text: `edit-${postId}`, count: `edit-count-${postId}` };
  return (
    <form
      className="mt-1"
      aria-label="Edit post"
      onSubmit={(e) => {
        e.preventDefault();
        if (can) onSave(text.trim());
      }}
    >
      <label htmlFor={ids.text} className="sr-only">Edit post text</label>
      <textarea
        ref={box}
        id={ids.text}
        className="input min-h-20 resize-y"
        value={text}
        maxLength={POST_TEXT_MAX * 2}
        aria-describedby={ids.count}
        aria-invalid={tooLong || undefined}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Escape") {
            e.preventDefault();
            onCancel();
          } else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
            e.preventDefault();
            if (can) onSave(text.trim());
          }
        }}
      />
      <div className="mt-1 flex flex-wrap items-center gap-2">
        <TextCounter id={ids.count} text={text} max={POST_TEXT_MAX} />
        <span className="ml-auto flex gap-2">
          <button type="button" className="btn-ghost" onClick={onCancel}>Cancel</button>
          <button type="submit" className="btn-primary" disabled={!can}>Save changes</button>
        </span>
      </div>
    </form>
  );
}
