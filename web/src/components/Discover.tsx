"use client";
import Link from "next/link";
import { useQuery } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { useSignedIn } from "@/hooks/data";
import { compact } from "@/lib/format";
import { UserRow } from "./UserRow";
import { ErrorState, LoadingState } from "./StatusViews";

const REASON: Record<string, string> = {
  SUGGESTION_REASON_FOLLOWED_BY_FOLLOWING: "Followed by people you follow",
  SUGGESTION_REASON_SHARED_INTERESTS: "Likes what you like",
  SUGGESTION_REASON_POPULAR: "Popular",
};

export function TrendingTags() {
  const q = useQuery({ queryKey: ["trends", "tags"], queryFn: () => unwrap(api.GET("/v1/trends/tags", { params: { query: { window: "TREND_WINDOW_DAY", pageSize: 10 } } })) });
  return (
    <section aria-labelledby="trends-title" className="border-b border-line">
      <h2 id="trends-title" className="px-4 pt-3 font-semibold">Trending</h2>
      {q.status === "pending" ? <LoadingState /> : q.status === "error" ? <ErrorState error={q.error} /> : q.data.tags.length ? (
        <ul className="flex flex-wrap gap-2 p-4">
          {q.data.tags.map((t) => (
            <li key={t.hashtag}><Link href={`/tag?name=${encodeURIComponent(t.hashtag)}`} className="btn-secondary">#{t.hashtag}</Link></li>
          ))}
        </ul>
      ) : (
        <p className="p-4 text-sm text-muted">Nothing is trending right now.</p>
      )}
    </section>
  );
}

export function WhoToFollow() {
  const signedIn = useSignedIn();
  const q = useQuery({ queryKey: ["suggested"], enabled: signedIn, queryFn: () => unwrap(api.GET("/v1/users:suggested", { params: { query: { pageSize: 5 } } })) });
  if (!signedIn) return null;
  return (
    <section aria-labelledby="wtf-title" className="border-b border-line">
      <h2 id="wtf-title" className="px-4 pt-3 font-semibold">Who to follow</h2>
      {q.status === "pending" ? <LoadingState /> : q.status === "error" ? <ErrorState error={q.error} /> : q.data.users.length ? (
        <ul>
          {q.data.users.map((s) => (s.user ? <UserRow key={s.user.userId} user={s.user} note={s.reason === "SUGGESTION_REASON_FOLLOWED_BY_FOLLOWING" && s.mutualCount !== "0" ? `${compact(s.mutualCount)} mutual` : REASON[s.reason] ?? ""} /> : null))}
        </ul>
      ) : (
        <p className="p-4 text-sm text-muted">No suggestions right now.</p>
      )}
    </section>
  );
}
