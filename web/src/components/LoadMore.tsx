"use client";
import { useEffect, useRef } from "react";

interface Pager {
  hasNextPage: boolean;
  isFetchingNextPage: boolean;
  fetchNextPage: () => Promise<unknown>;
}

/** A "load more" button that also loads by itself when scrolled into view. */
export function LoadMore({ query, label = "Load more" }: { query: Pager; label?: string }) {
  const ref = useRef<HTMLButtonElement>(null);
  const { hasNextPage, isFetchingNextPage, fetchNextPage } = query;
  useEffect(() => {
    const node = ref.current;
    if (!node || !hasNextPage) return;
    const io = new IntersectionObserver((e) => {
      if (e.some((x) => x.isIntersecting) && !isFetchingNextPage) void fetchNextPage();
    });
    io.observe(node);
    return () => io.disconnect();
  }, [hasNextPage, isFetchingNextPage, fetchNextPage]);
  if (!hasNextPage) return null;
  return (
    <div className="flex justify-center p-4">
      <button ref={ref} type="button" className="btn-secondary" onClick={() => void fetchNextPage()} disabled={isFetchingNextPage}>
        {isFetchingNextPage ? "Loading…" : label}
      </button>
    </div>
  );
}
