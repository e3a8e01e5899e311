import type { Media, MediaVariant } from "@/api/types";

const WIDTH: Record<string, number> = { VARIANT_KIND_W320: 320, VARIANT_KIND_W640: 640, VARIANT_KIND_W1080: 1080 };

/** srcset of the WebP renditions (one entry per distinct width), the smallest as src. */
export function responsive(media: Media): { src: string; srcSet: string; width: number; height: number } | null {
  const variants = (media.variants ?? []).filter((v: MediaVariant) => v.url && (v.contentType === "image/webp" || !v.contentType) && WIDTH[v.kind ?? ""]);
  if (!variants.length) {
    const any = (media.variants ?? []).find((v) => v.url);
    if (!any) return null;
    return { src: any.url, srcSet: "", width: media.width || any.width || 640, height: media.height || any.height || 480 };
  }
  const byWidth = new Map<number, MediaVariant>();
  for (const v of variants) {
    const w = v.width || WIDTH[v.kind ?? ""]!;
    if (!byWidth.has(w)) byWidth.set(w, v);
  }
  const sorted = [...byWidth.entries()].sort((a, b) => a[0] - b[0]);
  const first = sorted[0]!;
  return {
    src: (sorted.find(([w]) => w >= 640) ?? sorted[sorted.length - 1]!)[1].url,
    srcSet: sorted.map(([w, v]) => `${v.url} ${w}w`).join(", "),
    width: media.width || first[1].width || first[0],
    height: media.height || first[1].height || Math.round(first[0] * 0.75),
  };
}
