import type { Media } from "@/api/types";
import { responsive } from "@/lib/media";

/** A post's images: responsive (srcset of the variants) with their real width and height so nothing jumps. */
export function PostMedia({ media }: { media: readonly Media[] | undefined }) {
  const items = (media ?? []).map((m) => ({ m, r: responsive(m) })).filter((x) => x.r);
  if (!items.length) return null;
  return (
    <div className={`mt-2 grid gap-1 overflow-hidden rounded-xl ${items.length > 1 ? "grid-cols-2" : "grid-cols-1"}`}>
      {items.map(({ m, r }) => (
        // eslint-disable-next-line @next/next/no-img-element
        <img
          key={m.mediaId}
          src={r!.src}
          srcSet={r!.srcSet || undefined}
          sizes="(max-width: 672px) 100vw, 640px"
          width={r!.width}
          height={r!.height}
          alt={m.description || ""}
          loading="lazy"
          decoding="async"
          className="h-auto w-full bg-slate-200 object-cover dark:bg-slate-800"
        />
      ))}
    </div>
  );
}
