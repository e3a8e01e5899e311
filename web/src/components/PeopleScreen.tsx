"use client";
import Link from "next/link";
import { useInfiniteQuery, useQueryClient } from "@tanstack/react-query";
import { useSearchParams } from "next/navigation";
import { api, unwrap } from "@/api/client";
import { primeUsers } from "@/api/cache";
import type { User } from "@/api/types";
import { useUserByHandle } from "@/hooks/data";
import { UserRow } from "./UserRow";
import { LoadMore } from "./LoadMore";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

function Edges({ userId, list }: { userId: string; list: "followers" | "following" }) {
  const qc = useQueryClient();
  const q = useInfiniteQuery({
    queryKey: ["people", list, userId],
    initialPageParam: "",
    queryFn: async ({ pageParam }) => {
      const query = { pageSize: 30, pageToken: pageParam || undefined };
      let page;
      let next = "";
      if (list === "followers") {
        const r = await unwrap(api.GET("/v1/users/{userId}/followers", { params: { path: { userId }, query } }));
        page = r.followers;
        next = r.nextPageToken;
      } else {
        const r = await unwrap(api.GET("/v1/users/{userId}/following", { params: { path: { userId }, query } }));
        page = r.following;
        next = r.nextPageToken;
      }
      // hydrate cards the list did not side-load
      const missing = page.filter((e) => !e.user?.handle).map((e) => e.userId);
      let extra: User[] = [];
      if (missing.length) extra = (await unwrap(api.GET("/v1/users:batchGet", { params: { query: { userIds: missing } } }))).users ?? [];
      const byId = new Map(extra.map((u) => [u.userId, u]));
      const users = page.map((e) => (e.user?.handle ? e.user : byId.get(e.userId))).filter((u): u is User => !!u);
      primeUsers(qc, users);
      return { users, next };
    },
    getNextPageParam: (p) => p.next || undefined,
  });
  if (q.status === "pending") return <LoadingState />;
  if (q.status === "error") return <ErrorState error={q.error} onRetry={() => void q.refetch()} />;
  const users = q.data.pages.flatMap((p) => p.users);
  if (!users.length) return <EmptyState title={list === "followers" ? "No followers yet" : "Not following anyone yet"} />;
  return (
    <>
      <ul>{users.map((u) => <UserRow key={u.userId} user={u} />)}</ul>
      <LoadMore query={q} />
    </>
  );
}

/** /people?handle=…&list=followers|following */
export function PeopleScreen() {
  const params = useSearchParams();
  const handle = params.get("handle") ?? "";
  const list = params.get("list") === "following" ? "following" : "followers";
  const user = useUserByHandle(handle);
  if (user.status === "pending") return <LoadingState />;
  if (user.status === "error") return <ErrorState error={user.error} />;
  if (!user.data) return <EmptyState title="This account doesn't exist" />;
  const h = encodeURIComponent(handle);
  return (
    <>
      <h1 className="px-4 pt-4 text-xl font-bold">{user.data.displayName || handle}</h1>
      <nav aria-label="Lists" className="flex border-b border-line">
        <Link href={`/people?handle=${h}&list=followers`} aria-current={list === "followers" ? "page" : undefined} className={`flex-1 py-3 text-center text-sm font-semibold ${list === "followers" ? "border-b-4 border-blue-700" : "text-muted"}`}>Followers</Link>
        <Link href={`/people?handle=${h}&list=following`} aria-current={list === "following" ? "page" : undefined} className={`flex-1 py-3 text-center text-sm font-semibold ${list === "following" ? "border-b-4 border-blue-700" : "text-muted"}`}>Following</Link>
      </nav>
      <Edges key={list} userId={user.data.userId} list={list} />
    </>
  );
}
