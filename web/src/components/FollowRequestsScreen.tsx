"use client";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { humanMessage } from "@/api/errors";
import type { FollowRequest } from "@/api/types";
import { timeAgo } from "@/lib/format";
import { RequireSession } from "./RequireSession";
import { UserRow } from "./UserRow";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

function RequestRow({ r }: { r: FollowRequest }) {
  const qc = useQueryClient();
  const m = useMutation({
    mutationFn: (accept: boolean) => {
      const path = { requesterId: r.requesterId };
      return unwrap(accept ? api.POST("/v1/followRequests/{requesterId}:accept", { params: { path }, body: {} }) : api.POST("/v1/followRequests/{requesterId}:reject", { params: { path }, body: {} }));
    },
    onSuccess: () => void qc.invalidateQueries({ queryKey: ["followRequests"] }),
  });
  if (!r.requester) return null;
  return (
    <UserRow
      user={r.requester}
      note={<time dateTime={r.createTime}>{timeAgo(r.createTime)}</time>}
      actions={
        <span className="flex flex-wrap gap-1">
          <button type="button" className="btn-primary" onClick={() => m.mutate(true)} disabled={m.isPending} aria-label={`Approve @${r.requester.handle}`}>Approve</button>
          <button type="button" className="btn-secondary" onClick={() => m.mutate(false)} disabled={m.isPending} aria-label={`Decline @${r.requester.handle}`}>Decline</button>
          {m.error ? <span role="alert" className="text-xs text-red-700">{humanMessage(m.error)}</span> : null}
        </span>
      }
    />
  );
}

export function FollowRequestsScreen() {
  const q = useQuery({ queryKey: ["followRequests"], queryFn: () => unwrap(api.GET("/v1/followRequests", { params: { query: { pageSize: 50 } } })) });
  return (
    <RequireSession>
      <h1 className="border-b border-line px-4 py-3 text-xl font-bold">Follow requests</h1>
      {q.status === "pending" ? <LoadingState /> : q.status === "error" ? <ErrorState error={q.error} onRetry={() => void q.refetch()} /> : q.data.followRequests.length ? (
        <ul>{q.data.followRequests.map((r) => <RequestRow key={r.requesterId} r={r} />)}</ul>
      ) : (
        <EmptyState title="No pending requests">When your account is private, requests to follow you appear here.</EmptyState>
      )}
    </RequireSession>
  );
}
