"use client";
import Link from "next/link";
import { useInfiniteQuery, useMutation, useQueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import type { Notification } from "@/api/types";
import { count, timeAgo } from "@/lib/format";
import { Avatar } from "./Avatar";
import { LoadMore } from "./LoadMore";
import { RequireSession } from "./RequireSession";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

const VERB: Record<string, string> = {
  NOTIFICATION_TYPE_FOLLOW: "followed you",
  NOTIFICATION_TYPE_LIKE: "liked your post",
  NOTIFICATION_TYPE_COMMENT: "commented on your post",
  NOTIFICATION_TYPE_MENTION: "mentioned you",
  NOTIFICATION_TYPE_SHARE: "shared your post",
  NOTIFICATION_TYPE_FOLLOW_REQUEST: "asked to follow you",
  NOTIFICATION_TYPE_FOLLOW_ACCEPTED: "accepted your follow request",
};

/** "Ann and 3 others liked your post": one grouped notification. */
function NotificationItem({ n }: { n: Notification }) {
  const actors = n.sampleActors ?? [];
  const first = actors[0];
  const others = Math.max(0, count(n.actorCount) - 1);
  const who = first ? first.displayName || first.handle : "Someone";
  const href = n.postId && n.postId !== "0" ? `/post?id=${n.postId}` : n.type === "NOTIFICATION_TYPE_FOLLOW_REQUEST" ? "/follow-requests" : first?.handle ? `/profile?handle=${encodeURIComponent(first.handle)}` : "/notifications";
  return (
    <li className={`border-b border-line ${n.read ? "" : "bg-blue-50 dark:bg-blue-950/40"}`} data-testid="notification">
      <Link href={href} className="flex gap-3 px-4 py-3 hover:bg-slate-50 dark:hover:bg-slate-900">
        <div className="flex -space-x-2">{actors.slice(0, 3).map((a) => <Avatar key={a.userId} user={a} size="sm" />)}</div>
        <div className="min-w-0 flex-1 text-sm">
          <p>
            {!n.read ? <span className="sr-only">Unread: </span> : null}
            <strong>{who}</strong>
            {others > 0 ? ` and ${others} other${others === 1 ? "" : "s"}` : ""} {VERB[n.type] ?? "did something"}
            <span className="text-muted"> · <time dateTime={n.latestTime ?? n.createTime}>{timeAgo(n.latestTime ?? n.createTime)}</time></span>
          </p>
          {n.snippet || n.post?.text ? <p className="truncate text-muted">{n.snippet || n.post?.text}</p> : null}
        </div>
      </Link>
    </li>
  );
}

function NotificationList() {
  const qc = useQueryClient();
  const q = useInfiniteQuery({
    queryKey: keys.notifications,
    initialPageParam: "",
    queryFn: ({ pageParam }) => unwrap(api.GET("/v1/notifications", { params: { query: { pageSize: 30, pageToken: pageParam || undefined } } })),
    getNextPageParam: (p) => p.nextPageToken || undefined,
  });
  const newest = q.data?.pages[0]?.notifications[0];
  const unread = count(q.data?.pages[0]?.unreadCount);
  const markRead = useMutation({
    mutationFn: (upTo: string) => unwrap(api.POST("/v1/notifications:markRead", { body: { upToNotificationId: upTo } })),
    onSuccess: () => {
      void qc.invalidateQueries({ queryKey: keys.unread });
    },
  });
  const { mutate } = markRead;
  // Seeing the list marks what is in it as read (the list keeps its highlight until next visit).
  useEffect(() => {
    if (newest && unread > 0) mutate(newest.notificationId);
  }, [newest, unread, mutate]);
  if (q.status === "pending") return <LoadingState label="Loading notifications" />;
  if (q.status === "error") return <ErrorState error={q.error} onRetry={() => void q.refetch()} />;
  const items = q.data.pages.flatMap((p) => p.notifications);
  if (!items.length) return <EmptyState title="No notifications yet">Likes, follows, comments and mentions show up here.</EmptyState>;
  return (
    <>
      <ul aria-label="Notifications">{items.map((n) => <NotificationItem key={n.notificationId} n={n} />)}</ul>
      <LoadMore query={q} />
    </>
  );
}

export function NotificationsScreen() {
  return (
    <RequireSession>
      <h1 className="border-b border-line px-4 py-3 text-xl font-bold">Notifications</h1>
      <NotificationList />
    </RequireSession>
  );
}
