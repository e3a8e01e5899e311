"use client";
import { useEffect, useId, useRef, useState } from "react";

export interface PostMenuItem {
  label: string;
  onSelect: () => void;
  danger?: boolean;
  disabled?: boolean;
}

/**
 * The "…" button on a post and the actions behind it (a disclosure: Tab moves through the
 * items, Escape or a click elsewhere closes it and focus goes back to the button).
 */
export function PostMenu({ label, items }: { label: string; items: PostMenuItem[] }) {
  const [open, setOpen] = useState(false);
  const button = useRef<HTMLButtonElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const id = useId();
  useEffect(() => {
    if (!open) return;
    const away = (e: MouseEvent) => {
      if (box.current && !box.current.contains(e.target as Node)) setOpen(false);
    };
    document.addEventListener("mousedown", away);
    return () => document.removeEventListener("mousedown", away);
  }, [open]);
  useEffect(() => {
    if (open) box.current?.querySelector<HTMLButtonElement>("[data-menu-item]")?.focus();
  }, [open]);
  return (
    <div
      ref={box}
      className="ml-auto flex items-center gap-1"
      onKeyDown={(e) => {
        if (e.key === "Escape" && open) {
          e.stopPropagation();
          setOpen(false);
          button.current?.focus();
        }
      }}
    >
      <button ref={button} type="button" className="btn-ghost px-2" aria-label={label} aria-expanded={open} aria-controls={open ? id : undefined} onClick={() => setOpen((o) => !o)}>
        <span aria-hidden="true">⋯</span>
      </button>
      {/* in the flow, not floating: in the virtualized feed a later row would paint over a popup */}
      {open ? (
      <ul id={id} className="order-first flex gap-1">
        {items.map((it) => (
          <li key={it.label}>
            <button
              type="button"
              data-menu-item
              disabled={it.disabled}
              className={`btn-ghost border border-line ${it.danger ? "text-red-700 dark:text-red-300" : ""}`}
              onClick={() => {
                setOpen(false);
                it.onSelect();
              }}
            >
              {it.label}
            </button>
          </li>
        ))}
      </ul>
      ) : null}
    </div>
  );
}
