"use client";
import { useMutation } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { humanMessage } from "@/api/errors";

/** Tells the feed to show less like this post, then hides it. */
export function NotInterestedButton({ postId, trackingToken, onDone }: { postId: string; trackingToken?: string; onDone: () => void }) {
  const m = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/feed:submitFeedback", { body: { postId, kind: "FEEDBACK_KIND_NOT_INTERESTED", trackingToken } })),
    onSuccess: onDone,
  });
  return (
    <>
      <button type="button" className="btn-ghost text-muted" onClick={() => m.mutate()} disabled={m.isPending}>
        Not interested
      </button>
      {m.error ? <span role="alert" className="text-xs text-red-700">{humanMessage(m.error)}</span> : null}
    </>
  );
}
