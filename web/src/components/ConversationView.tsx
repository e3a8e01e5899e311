"use client";
import Link from "next/link";
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useMemo, useRef, useState } from "react";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import { humanMessage } from "@/api/errors";
import type { Conversation, Message } from "@/api/types";
import { upsertMessage } from "./LiveEvents";
import { useSession } from "@/state/session";
import { useTyping } from "@/state/ui";
import { count, newId, timeAgo } from "@/lib/format";
import { conversationTitle } from "./Inbox";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";
import { MESSAGE_MEDIA_MAX, MESSAGE_TEXT_MAX } from "@/lib/limits";
import { useAttachments } from "@/hooks/useAttachments";
import { AttachmentList } from "./AttachmentList";
import { MessageMedia } from "./MessageMedia";
import { GroupPanel } from "./GroupPanel";
import { TextCounter } from "./TextCounter";

const REACTIONS = ["👍", "❤️", "😂"] as const;

function Reactions({ m, conversationId }: { m: Message; conversationId: string }) {
  const qc = useQueryClient();
  const react = useMutation({
    mutationFn: ({ emoji, on }: { emoji: string; on: boolean }) => {
      const path = { conversationId, messageId: m.messageId };
      return unwrap(on ? api.POST("/v1/conversations/{conversationId}/messages/{messageId}:addReaction", { params: { path }, body: { emoji } }) : api.POST("/v1/conversations/{conversationId}/messages/{messageId}:removeReaction", { params: { path }, body: { emoji } }));
    },
    onSettled: () => void qc.invalidateQueries({ queryKey: keys.messages(conversationId) }),
  });
  const mine = new Map((m.reactions ?? []).map((r) => [r.emoji, r]));
  return (
    <div className="mt-1 flex flex-wrap gap-1" role="group" aria-label="Reactions">
      {REACTIONS.map((e) => {
        const r = mine.get(e);
        const n = count(r?.count);
        return (
          <button key={e} type="button" className={`rounded-full border px-1.5 text-xs ${r?.reactedByMe ? "border-blue-700 bg-blue-100 dark:bg-blue-900" : "border-line"}`} aria-pressed={!!r?.reactedByMe} aria-label={`React ${e}${n ? `, ${n}` : ""}`} onClick={() => react.mutate({ emoji: e, on: !r?.reactedByMe })}>
            <span aria-hidden="true">{e}</span>
            {n ? <span aria-hidden="true"> {n}</span> : null}
          </button>
        );
      })}
    </div>
  );
}

function TypingLine({ conversation }: { conversation: Conversation }) {
  const typing = useTyping((s) => s.typing[conversation.conversationId]);
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(id);
  }, []);
  const who = Object.entries(typing ?? {})
    .filter(([, until]) => until > now)
    .map(([uid]) => conversation.members?.find((m) => m.userId === uid)?.user?.displayName || "Someone");
  return (
    <p className="h-5 px-4 text-xs text-muted" aria-live="polite" data-testid="typing">
      {who.length ? `${who.join(", ")} ${who.length === 1 ? "is" : "are"} typing…` : ""}
    </p>
  );
}

/** /messages?c=…: the conversation, live (new messages, typing, read receipts, reactions). */
export function ConversationView({ id }: { id: string }) {
  const qc = useQueryClient();
  const me = useSession((s) => s.userId);
  const conv = useQuery({ queryKey: keys.conversation(id), queryFn: () => unwrap(api.GET("/v1/conversations/{conversationId}", { params: { path: { conversationId: id } } })) });
  const msgs = useInfiniteQuery({
    queryKey: keys.messages(id),
    initialPageParam: "",
    queryFn: ({ pageParam }) => unwrap(api.GET("/v1/conversations/{conversationId}/messages", { params: { path: { conversationId: id }, query: { pageSize: 50, pageToken: pageParam || undefined } } })),
    getNextPageParam: (p) => p.nextPageToken || undefined,
  });
  // oldest first on screen, whatever order the pages came in
  const list = useMemo(() => {
    const all = new Map<string, Message>();
    for (const p of msgs.data?.pages ?? []) for (const m of p.messages) all.set(m.messageId, m);
    return [...all.values()].sort((a, b) => count(a.sequence) - count(b.sequence));
  }, [msgs.data]);
  const newest = list[list.length - 1];
  // a message whose images came without their media (an older event shape): fetch the page once
  const missingMedia = list.some((m) => !m.deleteTime && (m.mediaIds?.length ?? 0) > 0 && !(m.media?.length ?? 0));
  const refetched = useRef(false);
  useEffect(() => {
    if (missingMedia && !refetched.current) {
      refetched.current = true;
      void qc.invalidateQueries({ queryKey: keys.messages(id) });
    }
  }, [missingMedia, qc, id]);
  const markRead = useMutation({
    mutationFn: (sequence: string) => unwrap(api.POST("/v1/conversations/{conversationId}:markRead", { params: { path: { conversationId: id } }, body: { sequence } })),
    onSuccess: () => {
      void qc.invalidateQueries({ queryKey: keys.unread });
      void qc.invalidateQueries({ queryKey: ["conversations"] });
    },
  });
  const { mutate: mark } = markRead;
  const lastMarked = useRef("");
  useEffect(() => {
    if (newest && newest.senderId !== me && lastMarked.current !== newest.sequence) {
      lastMarked.current = newest.sequence;
      mark(newest.sequence);
    }
  }, [newest, me, mark]);
  const bottom = useRef<HTMLDivElement>(null);
  useEffect(() => {
    bottom.current?.scrollIntoView?.({ block: "end" });
  }, [list.length]);

  const [text, setText] = useState("");
  const [showGroup, setShowGroup] = useState(false);
  const files = useAttachments(MESSAGE_MEDIA_MAX);
  const fileRef = useRef<HTMLInputElement>(null);
  const lastTyping = useRef(0);
  const send = useMutation({
    mutationFn: ({ t, mediaIds, requestId }: { t: string; mediaIds: string[]; requestId: string }) =>
      unwrap(api.POST("/v1/conversations/{conversationId}/messages", { params: { path: { conversationId: id }, query: { requestId } }, body: { text: t, mediaIds } })),
    onSuccess: (m) => {
      upsertMessage(qc, m);
      void qc.invalidateQueries({ queryKey: ["conversations"] });
    },
  });
  const accept = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/conversations/{conversationId}:accept", { params: { path: { conversationId: id } } })),
    onSuccess: () => {
      void qc.invalidateQueries({ queryKey: keys.conversation(id) });
      void qc.invalidateQueries({ queryKey: ["conversations"] });
    },
  });

  function onType(v: string) {
    setText(v);
    const now = Date.now();
    if (v && now - lastTyping.current > 3000) {
      lastTyping.current = now;
      void unwrap(api.POST("/v1/conversations/{conversationId}:typing", { params: { path: { conversationId: id } }, body: { typing: true } })).catch(() => undefined);
    }
  }

  if (conv.status === "pending") return <LoadingState label="Loading conversation" />;
  if (conv.status === "error") return <ErrorState error={conv.error} onRetry={() => void conv.refetch()} />;
  const c = conv.data;
  const others = (c.members ?? []).filter((m) => m.userId !== me);
  const seenUpTo = Math.min(...others.map((m) => count(m.lastReadSequence)));
  const myLast = [...list].reverse().find((m) => m.senderId === me);
  const group = c.type === "CONVERSATION_TYPE_GROUP";
  const tooLong = [...text].length > MESSAGE_TEXT_MAX;
  const canSend = (!!text.trim() || files.items.length > 0) && !files.busy && !files.failed && !tooLong && !send.isPending;

  async function onSend() {
    const t = text.trim();
    if (!canSend) return;
    const requestId = newId();
    try {
      await files.saveAltText();
    } catch (err) {
      files.setError(humanMessage(err));
      return;
    }
    const mediaIds = files.mediaIds;
    setText("");
    const taken = files.take();
    send.mutate(
      { t, mediaIds, requestId },
      {
        onError: () => {
          setText(t);
          taken.restore();
        },
        onSuccess: () => taken.done(),
      },
    );
  }

  return (
    <section aria-labelledby="conv-title" className="flex min-h-[70vh] flex-col">
      <header className="flex items-center gap-2 border-b border-line px-4 py-3">
        <Link href="/messages" className="btn-ghost" aria-label="Back to messages">←</Link>
        <h1 id="conv-title" className="min-w-0 flex-1 truncate text-lg font-bold">{conversationTitle(c, me)}</h1>
        {group ? (
          <button type="button" className="btn-secondary shrink-0 px-3 py-1" aria-expanded={showGroup} aria-controls="group-panel" onClick={() => setShowGroup((v) => !v)}>
            {showGroup ? "Hide members" : `Members (${(c.members ?? []).length})`}
          </button>
        ) : null}
      </header>
      {group && showGroup ? (
        <div id="group-panel">
          <GroupPanel c={c} />
        </div>
      ) : null}
      {c.state === "CONVERSATION_STATE_REQUEST" ? (
        <div className="m-4 rounded-md border border-line p-3 text-sm">
          <p>This is a message request. They won&apos;t know you&apos;ve seen it until you accept.</p>
          <button type="button" className="btn-primary mt-2" onClick={() => accept.mutate()} disabled={accept.isPending}>Accept</button>
        </div>
      ) : null}
      <div className="flex-1">
        {msgs.hasNextPage ? (
          <div className="flex justify-center p-2">
            <button type="button" className="btn-secondary" onClick={() => void msgs.fetchNextPage()} disabled={msgs.isFetchingNextPage}>Older messages</button>
          </div>
        ) : null}
        {msgs.status === "pending" ? <LoadingState label="Loading messages" /> : null}
        {msgs.status === "error" ? <ErrorState error={msgs.error} onRetry={() => void msgs.refetch()} /> : null}
        {msgs.status === "success" && !list.length ? <EmptyState title="No messages yet">Say hello.</EmptyState> : null}
        <ol aria-label="Messages" aria-live="polite" className="flex flex-col gap-2 p-4">
          {list.map((m) => {
            const mine = m.senderId === me;
            const sender = c.members?.find((x) => x.userId === m.senderId)?.user;
            return (
              <li key={m.messageId} className={`max-w-[85%] ${mine ? "self-end text-right" : "self-start"}`} data-testid="message">
                <div className={`inline-block rounded-2xl px-3 py-2 text-left ${mine ? "bg-blue-700 text-white" : "bg-slate-200 dark:bg-slate-800"}`}>
                  <span className="sr-only">{mine ? "You" : sender?.displayName || "They"}: </span>
                  {m.deleteTime ? <em>Message deleted</em> : m.text}
                  {!m.deleteTime ? <MessageMedia media={m.media} /> : null}
                </div>
                <p className="text-xs text-muted">
                  <time dateTime={m.createTime}>{timeAgo(m.createTime)}</time>
                  {mine && myLast?.messageId === m.messageId && others.length && seenUpTo >= count(m.sequence) ? <span data-testid="seen"> · Seen</span> : null}
                </p>
                {!m.deleteTime ? <Reactions m={m} conversationId={id} /> : null}
              </li>
            );
          })}
        </ol>
        <div ref={bottom} />
      </div>
      <TypingLine conversation={c} />
      <form
        className="sticky bottom-0 border-t border-line bg-card p-3"
        aria-label="Write a message"
        onSubmit={(e) => {
          e.preventDefault();
          void onSend();
        }}
      >
        <AttachmentList items={files.items} label="Images to send" onAlt={(key, alt) => files.update(key, { alt })} onRemove={files.remove} />
        <div className="mt-2 flex items-center gap-2">
          <input
            ref={fileRef}
            id="message-images"
            type="file"
            accept="image/*"
            multiple
            className="sr-only"
            disabled={files.full}
            onChange={(e) => {
              files.add(e.target.files);
              if (fileRef.current) fileRef.current.value = "";
            }}
          />
          <label htmlFor="message-images" title={`Attach images (up to ${MESSAGE_MEDIA_MAX})`} className={`btn-ghost shrink-0 cursor-pointer p-2 ${files.full ? "opacity-50" : ""}`}>
            <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false" className="h-5 w-5" fill="none" stroke="currentColor" strokeWidth={1.8} strokeLinecap="round" strokeLinejoin="round">
              <path d="M4 5h16v14H4zM4 16l5-5 4 4 3-3 4 4M15 9h.01" />
            </svg>
            <span className="sr-only">Attach images</span>
          </label>
          <label htmlFor="message-text" className="sr-only">Message</label>
          <input id="message-text" className="input min-w-0" placeholder="Write a message" autoComplete="off" value={text} maxLength={MESSAGE_TEXT_MAX * 2} aria-describedby="message-count" aria-invalid={tooLong || undefined} onChange={(e) => onType(e.target.value)} />
          <button type="submit" className="btn-primary shrink-0" disabled={!canSend}>{files.busy ? "Wait…" : "Send"}</button>
        </div>
        <TextCounter id="message-count" text={text} max={MESSAGE_TEXT_MAX} />
      </form>
      {send.error ? <p role="alert" className="px-4 text-sm text-red-700 dark:text-red-300">{humanMessage(send.error)}</p> : null}
      {files.error ? <p role="alert" className="px-4 text-sm text-red-700 dark:text-red-300">{files.error}</p> : null}
    </section>
  );
}
