import { remainingText } from "@/lib/limits";

/** Characters left, shown near the API's limit (and announced politely), red when over it. */
export function TextCounter({ id, text, max, className = "" }: { id: string; text: string; max: number; className?: string }) {
  const r = remainingText(text, max);
  return (
    <span id={id} data-testid="text-counter" aria-live="polite" className={`text-xs tabular-nums ${r.over ? "font-semibold text-red-700 dark:text-red-300" : "text-muted"} ${className}`}>
      {r.show ? r.label : ""}
    </span>
  );
}
