import type { Facet } from "@/api/types";

export type Segment =
  | { kind: "text"; text: string }
  | { kind: "tag"; text: string; tag: string }
  | { kind: "mention"; text: string; handle: string }
  | { kind: "link"; text: string; uri: string };

/** Splits post text into plain runs and linked spans, by the facets' code point offsets. */
export function segments(text: string, facets: readonly Facet[] | undefined): Segment[] {
  const cps = Array.from(text);
  const sorted = [...(facets ?? [])].filter((f) => f.charEnd > f.charStart).sort((a, b) => a.charStart - b.charStart);
  const out: Segment[] = [];
  let at = 0;
  for (const f of sorted) {
    if (f.charStart < at || f.charEnd > cps.length) continue;
    if (f.charStart > at) out.push({ kind: "text", text: cps.slice(at, f.charStart).join("") });
    const span = cps.slice(f.charStart, f.charEnd).join("");
    if (f.tag) out.push({ kind: "tag", text: span, tag: f.tag.tag });
    else if (f.mention) out.push({ kind: "mention", text: span, handle: f.mention.handle });
    else if (f.link && /^https?:\/\//i.test(f.link.uri)) out.push({ kind: "link", text: span, uri: f.link.uri });
    else out.push({ kind: "text", text: span });
    at = f.charEnd;
  }
  if (at < cps.length) out.push({ kind: "text", text: cps.slice(at).join("") });
  if (!sorted.length) return fallback(text);
  return out;
}

/** Without facets (older posts, optimistic ones): #tags and @handles by pattern. */
function fallback(text: string): Segment[] {
  const out: Segment[] = [];
  const re = /(^|[^\w])([#@])(\w{1,64})/gu;
  let last = 0;
  for (const m of text.matchAll(re)) {
    const start = (m.index ?? 0) + m[1]!.length;
    if (start > last) out.push({ kind: "text", text: text.slice(last, start) });
    const word = m[3]!;
    out.push(m[2] === "#" ? { kind: "tag", text: `#${word}`, tag: word } : { kind: "mention", text: `@${word}`, handle: word });
    last = start + 1 + word.length;
  }
  if (last < text.length) out.push({ kind: "text", text: text.slice(last) });
  return out;
}
