import Link from "next/link";
import type { Facet } from "@/api/types";
import { segments } from "@/lib/facets";

export function PostText({ text, facets }: { text: string; facets?: readonly Facet[] }) {
  return (
    <p className="whitespace-pre-wrap break-words">
      {segments(text, facets).map((s, i) => {
        switch (s.kind) {
          case "tag":
            return <Link key={i} href={`/tag?name=${encodeURIComponent(s.tag)}`} className="link">{s.text}</Link>;
          case "mention":
            return <Link key={i} href={`/profile?handle=${encodeURIComponent(s.handle)}`} className="link">{s.text}</Link>;
          case "link":
            return <a key={i} href={s.uri} className="link" rel="noopener noreferrer nofollow" target="_blank">{s.text}</a>;
          default:
            return <span key={i}>{s.text}</span>;
        }
      })}
    </p>
  );
}
