"use client";
import Link from "next/link";
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import type { Conversation, ConversationState } from "@/api/types";
import { useSession } from "@/state/session";
import { count, timeAgo } from "@/lib/format";
import { Avatar } from "./Avatar";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

export function conversationTitle(c: Conversation, me: string | null): string {
  if (c.title) return c.title;
  const others = (c.members ?? []).filter((m) => m.userId !== me).map((m) => m.user?.displayName || m.user?.handle).filter(Boolean);
  return others.join(", ") || "Conversation";
}

function ConversationRow({ c }: { c: Conversation }) {
  const me = useSession((s) => s.userId);
  const unread = count(c.unreadCount);
  const other = (c.members ?? []).find((m) => m.userId !== me)?.user;
  const last = c.lastMessage;
  const preview = last?.deleteTime ? "Message deleted" : last?.text || (last?.mediaIds?.length ? (last.mediaIds.length === 1 ? "Sent an image" : `Sent ${last.mediaIds.length} images`) : last ? "" : "No messages yet");
  return (
    <li className="border-b border-line">
      <Link href={`/messages?c=${c.conversationId}`} className="flex items-center gap-3 px-4 py-3 hover:bg-slate-50 dark:hover:bg-slate-900" data-testid="conversation-row">
        <Avatar user={other} />
        <div className="min-w-0 flex-1">
          <p className="flex justify-between gap-2">
            <span className={unread ? "font-bold" : "font-semibold"}>{conversationTitle(c, me)}</span>
            <span className="text-xs text-muted">{timeAgo(c.lastMessage?.createTime ?? c.updateTime)}</span>
          </p>
          <p className="truncate text-sm text-muted">{preview}</p>
        </div>
        {unread ? (
          <span className="rounded-full bg-blue-700 px-2 text-xs font-bold text-white">
            {unread}
            <span className="sr-only"> unread</span>
          </span>
        ) : null}
      </Link>
    </li>
  );
}

/** Conversations, with message requests (from people you don't follow) on their own tab. */
export function Inbox() {
  const [tab, setTab] = useState<ConversationState>("CONVERSATION_STATE_ACCEPTED");
  const q = useQuery({
    queryKey: keys.conversations(tab),
    queryFn: () => unwrap(api.GET("/v1/conversations", { params: { query: { pageSize: 50, state: tab } } })),
  });
  const requests = tab === "CONVERSATION_STATE_REQUEST";
  return (
    <>
      <div className="flex items-center justify-between gap-2 border-b border-line px-4 py-3">
        <h1 className="text-xl font-bold">Messages</h1>
        <Link href="/messages?new=group" className="btn-secondary px-3 py-1">New group</Link>
      </div>
      <div role="tablist" aria-label="Inbox" className="flex border-b border-line">
        {([["CONVERSATION_STATE_ACCEPTED", "Inbox"], ["CONVERSATION_STATE_REQUEST", "Requests"]] as const).map(([s, label]) => (
          <button key={s} type="button" role="tab" aria-selected={tab === s} onClick={() => setTab(s)} className={`flex-1 py-3 text-sm font-semibold ${tab === s ? "border-b-4 border-blue-700" : "text-muted"}`}>
            {label}
          </button>
        ))}
      </div>
      <div role="tabpanel">
        {q.status === "pending" ? <LoadingState label="Loading conversations" /> : q.status === "error" ? <ErrorState error={q.error} onRetry={() => void q.refetch()} /> : q.data.conversations.length ? (
          <ul>{q.data.conversations.map((c) => <ConversationRow key={c.conversationId} c={c} />)}</ul>
        ) : (
          <EmptyState title={requests ? "No message requests" : "No conversations yet"}>{requests ? "Messages from people you don't follow wait here." : "Start one from someone's profile with Message."}</EmptyState>
        )}
      </div>
    </>
  );
}
