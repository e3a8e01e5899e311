"use client";
import { useQueryClient, type InfiniteData, type QueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { auth } from "@/api/client";
import { API_BASE } from "@/api/config";
import { keys } from "@/api/cache";
import { EventStream, durationMs } from "@/api/sse";
import type { ChatEvent, Message, MessagePage, UnreadCounts } from "@/api/types";
import { useSession } from "@/state/session";
import { useStreamStatus, useTyping } from "@/state/ui";

/** One SSE connection per signed-in tab; its events update the query cache. */
export function LiveEvents() {
  const qc = useQueryClient();
  const signedIn = useSession((s) => s.status === "signedIn");
  const myId = useSession((s) => s.userId);
  useEffect(() => {
    if (!signedIn) return;
    const stream = new EventStream<ChatEvent>({
      url: (since) => `${API_BASE}/v1/events:stream${since ? `?since=${encodeURIComponent(since)}` : ""}`,
      token: () => auth.token(),
      refresh: () => auth.refresh(),
      onEvent: (ev) => applyEvent(qc, ev, myId),
      onResync: () => {
        void qc.invalidateQueries({ queryKey: ["conversations"] });
        void qc.invalidateQueries({ queryKey: ["messages"] });
        void qc.invalidateQueries({ queryKey: keys.notifications });
        void qc.invalidateQueries({ queryKey: keys.unread });
      },
      onSessionEnded: () => auth.clear(),
      onStatus: (s) => useStreamStatus.getState().setStatus(s),
    });
    stream.start();
    // Offline, the connection is dead or half-open (a real cut may not fail it for minutes):
    // drop it, and resume from the last cursor as soon as the browser is back online
    // rather than after the backoff.
    const onOffline = () => stream.stop();
    const onOnline = () => {
      stream.stop();
      stream.start();
    };
    window.addEventListener("offline", onOffline);
    window.addEventListener("online", onOnline);
    return () => {
      window.removeEventListener("offline", onOffline);
      window.removeEventListener("online", onOnline);
      stream.stop();
    };
  }, [signedIn, myId, qc]);
  return null;
}

export function applyEvent(qc: QueryClient, ev: ChatEvent, myId: string | null) {
  if (ev.unreadCounts) {
    qc.setQueryData<UnreadCounts>(keys.unread, ev.unreadCounts);
  }
  if (ev.notification) {
    void qc.invalidateQueries({ queryKey: keys.notifications });
    if (!ev.unreadCounts) void qc.invalidateQueries({ queryKey: keys.unread });
    applyFollowNotification(qc, ev.notification.type);
  }
  const msg = ev.message ?? ev.messageUpdated;
  if (msg?.conversationId) {
    upsertMessage(qc, msg);
    void qc.invalidateQueries({ queryKey: ["conversations"] });
    if (ev.message && msg.senderId) useTyping.getState().setTyping(msg.conversationId, msg.senderId, null);
  }
  if (ev.messageDeleted) void qc.invalidateQueries({ queryKey: ["messages"] });
  if (ev.reaction?.conversationId) void qc.invalidateQueries({ queryKey: keys.messages(ev.reaction.conversationId) });
  if (ev.typing?.conversationId && ev.typing.userId && ev.typing.userId !== myId) {
    const ttl = durationMs(ev.typing.ttl) ?? 6000;
    useTyping.getState().setTyping(ev.typing.conversationId, ev.typing.userId, ev.typing.typing ? Date.now() + ttl : null);
  }
  if (ev.readReceipt?.conversationId) void qc.invalidateQueries({ queryKey: keys.conversation(ev.readReceipt.conversationId) });
  if (ev.conversationChanged) void qc.invalidateQueries({ queryKey: ["conversations"] });
}

/**
 * A follow request accepted: the profile one may be looking at now shows its posts (the
 * viewer flags and the posts are fetched again); a new request: the approval list.
 */
function applyFollowNotification(qc: QueryClient, type: string) {
  if (type === "NOTIFICATION_TYPE_FOLLOW_ACCEPTED") {
    for (const key of [["user"], ["userByHandle"], ["userPosts"], ["feed"]]) void qc.invalidateQueries({ queryKey: key });
  }
  if (type === "NOTIFICATION_TYPE_FOLLOW_REQUEST") void qc.invalidateQueries({ queryKey: ["followRequests"] });
}

/** Adds or replaces a message in the cached pages of its conversation (pages are newest first). */
export function upsertMessage(qc: QueryClient, msg: Message) {
  qc.setQueryData<InfiniteData<MessagePage>>(keys.messages(msg.conversationId), (data) => {
    if (!data || !data.pages.length) return data;
    let found = false;
    const pages = data.pages.map((p) => ({
      ...p,
      messages: p.messages.map((m) => {
        if (m.messageId === msg.messageId) {
          found = true;
          return msg;
        }
        return m;
      }),
    }));
    if (!found) {
      const first = pages[0]!;
      pages[0] = { ...first, messages: [msg, ...first.messages] };
    }
    return { ...data, pages };
  });
}
