"use client";
import { useEffect } from "react";
import { impressionQueue } from "@/api/impressions";
import { VisibilityTimer } from "@/lib/impressions";
import type { Surface } from "@/api/types";

/** Records an impression once the element has been at least half visible for 2 s. */
export function useImpression(
  el: React.RefObject<HTMLElement | null>,
  item: { postId: string; trackingToken?: string } | null,
  position: number,
  surface: Surface,
) {
  const postId = item?.postId;
  const trackingToken = item?.trackingToken;
  useEffect(() => {
    const node = el.current;
    if (!node || !postId || !trackingToken || typeof IntersectionObserver === "undefined") return;
    const timer = new VisibilityTimer(2000, (dwell) => {
      impressionQueue.add({
        impressionId: crypto.randomUUID(),
        trackingToken,
        postId,
        surface,
        position,
        dwell: `${(dwell / 1000).toFixed(1)}s`,
        displayTime: new Date().toISOString(),
      });
    });
    const io = new IntersectionObserver((entries) => {
      for (const e of entries) timer.update(e.isIntersecting ? e.intersectionRatio : 0);
    }, { threshold: [0, 0.5, 1] });
    io.observe(node);
    return () => {
      io.disconnect();
      timer.cancel();
    };
  }, [el, position, surface, postId, trackingToken]);
}
