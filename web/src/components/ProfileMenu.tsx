"use client";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useRouter } from "next/navigation";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import { humanMessage } from "@/api/errors";
import type { User } from "@/api/types";
import { newId } from "@/lib/format";

/** Message, mute and block for someone else's profile. */
export function ProfileMenu({ user }: { user: User }) {
  const qc = useQueryClient();
  const router = useRouter();
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: keys.userByHandle(user.handle) });
    void qc.invalidateQueries({ queryKey: ["feed"] });
  };
  const path = { userId: user.userId };
  const mute = useMutation({
    mutationFn: () => unwrap(user.muting ? api.POST("/v1/users/{userId}:unmute", { params: { path } }) : api.POST("/v1/users/{userId}:mute", { params: { path } })),
    onSuccess: refresh,
  });
  const block = useMutation({
    mutationFn: () => unwrap(user.blocking ? api.POST("/v1/users/{userId}:unblock", { params: { path } }) : api.POST("/v1/users/{userId}:block", { params: { path } })),
    onSuccess: refresh,
  });
  const message = useMutation({
    mutationFn: () =>
      unwrap(api.POST("/v1/conversations", { params: { query: { requestId: newId() } }, body: { type: "CONVERSATION_TYPE_DIRECT", memberIds: [user.userId] } })),
    onSuccess: (c) => router.push(`/messages?c=${c.conversationId}`),
  });
  const err = mute.error ?? block.error ?? message.error;
  return (
    <div className="flex flex-wrap gap-1">
      {!user.blocking ? (
        <button type="button" className="btn-secondary" onClick={() => message.mutate()} disabled={message.isPending}>
          Message
        </button>
      ) : null}
      <button type="button" className="btn-secondary" onClick={() => mute.mutate()} disabled={mute.isPending} aria-pressed={!!user.muting}>
        {user.muting ? "Unmute" : "Mute"}
      </button>
      <button
        type="button"
        className="btn-secondary text-red-700 dark:text-red-300"
        onClick={() => {
          if (user.blocking || window.confirm(`Block @${user.handle}? They won't be able to follow you or see your posts.`)) block.mutate();
        }}
        disabled={block.isPending}
        aria-pressed={!!user.blocking}
      >
        {user.blocking ? "Unblock" : "Block"}
      </button>
      {err ? <p role="alert" className="w-full text-xs text-red-700 dark:text-red-300">{humanMessage(err)}</p> : null}
    </div>
  );
}
