import { describe, expect, it, vi } from "vitest";
import { segments } from "@/lib/facets";
import { ImpressionQueue, VisibilityTimer } from "@/lib/impressions";
import { responsive } from "@/lib/media";
import type { Facet, Impression, Media } from "@/api/types";

describe("facets", () => {
  it("splits by code point offsets", () => {
    const text = "😀 hi #cats @ann";
    const facets = [
      { charStart: 5, charEnd: 10, byteStart: 0, byteEnd: 0, tag: { tag: "cats" } },
      { charStart: 11, charEnd: 15, byteStart: 0, byteEnd: 0, mention: { userId: "1", handle: "ann" } },
    ] as Facet[];
    expect(segments(text, facets)).toEqual([
      { kind: "text", text: "😀 hi " },
      { kind: "tag", text: "#cats", tag: "cats" },
      { kind: "text", text: " " },
      { kind: "mention", text: "@ann", handle: "ann" },
    ]);
  });
  it("falls back to patterns without facets", () => {
    expect(segments("a #b c", []).map((s) => s.kind)).toEqual(["text", "tag", "text"]);
  });
});

describe("impressions", () => {
  const imp = (postId: string): Impression => ({ impressionId: postId, trackingToken: `t${postId}`, postId, surface: "SURFACE_HOME_RANKED" });
  it("batches, dedupes and flushes", async () => {
    const sent: Impression[][] = [];
    const q = new ImpressionQueue(async (b) => {
      sent.push(b);
    }, 3);
    expect(q.add(imp("1"))).toBe(true);
    expect(q.add(imp("1"))).toBe(false);
    q.add(imp("2"));
    q.add(imp("3")); // reaches the batch size
    await q.flush();
    q.add(imp("4"));
    await q.flush();
    expect(sent.map((b) => b.map((i) => i.postId))).toEqual([["1", "2", "3"], ["4"]]);
  });
  it("counts only 2 s of uninterrupted half visibility", () => {
    vi.useFakeTimers();
    const seen = vi.fn();
    const t = new VisibilityTimer(2000, seen);
    t.update(0.6);
    vi.advanceTimersByTime(1500);
    t.update(0.2);
    vi.advanceTimersByTime(1000);
    expect(seen).not.toHaveBeenCalled();
    t.update(0.5);
    vi.advanceTimersByTime(2000);
    expect(seen).toHaveBeenCalledTimes(1);
    t.update(1);
    vi.advanceTimersByTime(5000);
    expect(seen).toHaveBeenCalledTimes(1);
    vi.useRealTimers();
  });
});

describe("responsive images", () => {
  it("builds a srcset of the WebP widths with the real size", () => {
    const m = {
      mediaId: "1",
      width: 1600,
      height: 1200,
      variants: [
        { kind: "VARIANT_KIND_W320", width: 320, height: 240, contentType: "image/webp", url: "/a320.webp" },
        { kind: "VARIANT_KIND_W320", width: 320, height: 240, contentType: "image/avif", url: "/a320.avif" },
        { kind: "VARIANT_KIND_W640", width: 640, height: 480, contentType: "image/webp", url: "/a640.webp" },
        { kind: "VARIANT_KIND_W1080", width: 1080, height: 810, contentType: "image/webp", url: "/a1080.webp" },
      ],
    } as unknown as Media;
    expect(responsive(m)).toEqual({ src: "/a640.webp", srcSet: "/a320.webp 320w, /a640.webp 640w, /a1080.webp 1080w", width: 1600, height: 1200 });
  });
});
