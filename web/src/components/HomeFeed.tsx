"use client";
import Link from "next/link";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useWindowVirtualizer } from "@tanstack/react-virtual";
import { useEffect, useMemo, useRef, useState } from "react";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import type { FeedItem, FeedKind, Surface } from "@/api/types";
import { useHomeFeed, useUser } from "@/hooks/data";
import { useImpression } from "@/hooks/useImpression";
import { isId, plural } from "@/lib/format";
import { PostCard } from "./PostCard";
import { RECENT_KEY } from "@/hooks/useCreatePost";
import { NotInterestedButton } from "./NotInterestedButton";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

function SharedBy({ userId }: { userId: string }) {
  const { data } = useUser(userId);
  return <>Shared by {data?.displayName || data?.handle || "someone"}</>;
}

function FeedRow({ item, position, surface, onHide }: { item: FeedItem; position: number; surface: Surface; onHide: (id: string) => void }) {
  const ref = useRef<HTMLDivElement>(null);
  useImpression(ref, item, position, surface);
  return (
    <div ref={ref}>
      <PostCard
        postId={item.postId}
        context={isId(item.sharedByUserId) ? <SharedBy userId={item.sharedByUserId} /> : undefined}
        extra={surface === "SURFACE_HOME_RANKED" ? <NotInterestedButton postId={item.postId} trackingToken={item.trackingToken} onDone={() => onHide(item.postId)} /> : undefined}
      />
    </div>
  );
}

function NewPostsPill({ kind, newerToken, onShow }: { kind: FeedKind; newerToken: string | undefined; onShow: () => void }) {
  const { data } = useQuery({
    queryKey: ["feedNewer", kind, newerToken],
    enabled: !!newerToken,
    refetchInterval: 30_000,
    refetchIntervalInBackground: false,
    staleTime: 0,
    queryFn: async () => {
      const page = await unwrap(api.GET("/v1/feed", { params: { query: { kind, pageSize: 20, pageToken: newerToken } } }));
      return Math.max(page.newItemCount ?? 0, page.items?.length ?? 0);
    },
  });
  if (!data) return null;
  return (
    <div className="sticky top-14 z-20 flex justify-center py-2">
      <button type="button" className="btn-primary shadow-lg" onClick={onShow}>
        {data >= 20 ? "20+ new posts" : `${plural(data, "new post")}`}
      </button>
    </div>
  );
}

/** The home timeline of one tab: an endless, virtualized list (only the visible rows are in the DOM). */
export function HomeFeed({ kind }: { kind: FeedKind }) {
  const qc = useQueryClient();
  const feed = useHomeFeed(kind);
  const [hidden, setHidden] = useState<Set<string>>(() => new Set());
  const surface: Surface = kind === "FEED_KIND_RANKED" ? "SURFACE_HOME_RANKED" : "SURFACE_HOME_FOLLOWING";
  const recent = useQuery({ queryKey: RECENT_KEY, queryFn: () => [] as string[], initialData: [] as string[], staleTime: Infinity }).data;
  const items = useMemo(() => {
    const seen = new Set<string>();
    const out: FeedItem[] = [];
    const fromServer = new Set((feed.data?.pages ?? []).flatMap((p) => (p.items ?? []).map((i) => i.postId)));
    for (const id of recent) {
      if (fromServer.has(id) || hidden.has(id) || !qc.getQueryData(keys.post(id))) continue;
      seen.add(`${id}:0`);
      out.push({ postId: id, sharedByUserId: "0", trackingToken: "" } as FeedItem);
    }
    for (const p of feed.data?.pages ?? []) {
      for (const it of p.items ?? []) {
        const k = `${it.postId}:${it.sharedByUserId}`;
        if (seen.has(k) || hidden.has(it.postId) || !qc.getQueryData(keys.post(it.postId))) continue;
        seen.add(k);
        out.push(it);
      }
    }
    return out;
  }, [feed.data, hidden, qc, recent]);
  const listRef = useRef<HTMLDivElement>(null);
  const [offset, setOffset] = useState(0);
  useEffect(() => {
    setOffset(listRef.current?.offsetTop ?? 0);
  }, [feed.status]);
  const virtualizer = useWindowVirtualizer({
    count: items.length,
    estimateSize: () => 160,
    overscan: 4,
    scrollMargin: offset,
    getItemKey: (i) => `${items[i]?.postId}:${items[i]?.sharedByUserId}`,
  });
  const virtualItems = virtualizer.getVirtualItems();
  const last = virtualItems[virtualItems.length - 1];
  const { hasNextPage, isFetchingNextPage, fetchNextPage } = feed;
  useEffect(() => {
    if (last && last.index >= items.length - 5 && hasNextPage && !isFetchingNextPage) void fetchNextPage();
  }, [last, items.length, hasNextPage, isFetchingNextPage, fetchNextPage]);

  if (feed.status === "pending") return <LoadingState label="Loading your feed" />;
  if (feed.status === "error") return <ErrorState error={feed.error} onRetry={() => void feed.refetch()} />;
  const newer = feed.data.pages[0]?.newerPageToken;

  return (
    <div>
      <NewPostsPill
        kind={kind}
        newerToken={newer}
        onShow={() => {
          window.scrollTo({ top: 0 });
          void qc.resetQueries({ queryKey: keys.feed(kind) });
        }}
      />
      {items.length === 0 ? (
        <EmptyState title={kind === "FEED_KIND_FOLLOWING" ? "Nothing here yet" : "No posts for you yet"}>
          Follow people to see their posts here. Try <Link className="link" href="/search">Search</Link> to find someone.
        </EmptyState>
      ) : null}
      {/* role="feed" only with posts in it: an empty feed has no articles, which
          ARIA requires of it (axe aria-required-children). */}
      <div
        ref={listRef}
        {...(items.length > 0
          ? { role: "feed", "aria-busy": isFetchingNextPage, "aria-label": kind === "FEED_KIND_RANKED" ? "For you" : "Following" }
          : {})}
        data-testid="feed-list"
        style={{ height: virtualizer.getTotalSize(), position: "relative" }}
      >
        {virtualItems.map((v) => {
          const item = items[v.index]!;
          return (
            <div
              key={v.key}
              data-index={v.index}
              ref={virtualizer.measureElement}
              style={{ position: "absolute", top: 0, left: 0, width: "100%", transform: `translateY(${v.start - virtualizer.options.scrollMargin}px)` }}
            >
              <FeedRow item={item} position={v.index} surface={surface} onHide={(id) => setHidden((h) => new Set(h).add(id))} />
            </div>
          );
        })}
      </div>
      {isFetchingNextPage ? <LoadingState label="Loading more posts" /> : null}
      {!hasNextPage && items.length > 0 ? <p className="p-6 text-center text-sm text-muted">You&apos;re all caught up.</p> : null}
    </div>
  );
}
