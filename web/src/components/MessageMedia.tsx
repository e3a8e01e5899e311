import type { Media } from "@/api/types";
import { responsive } from "@/lib/media";
import { BlurhashImage } from "./BlurhashImage";

/** A chat message's images: responsive variants, real proportions, blurhash until loaded. */
export function MessageMedia({ media }: { media: readonly Media[] | undefined }) {
  const items = (media ?? []).map((m) => ({ m, r: responsive(m) }));
  if (!items.length) return null;
  return (
    <div className={`mt-1 grid w-64 max-w-full gap-1 ${items.length > 1 ? "grid-cols-2" : "grid-cols-1"}`} data-testid="message-media">
      {items.map(({ m, r }) => (
        <BlurhashImage
          key={m.mediaId}
          src={r?.src}
          srcSet={r?.srcSet}
          sizes="(max-width: 480px) 60vw, 256px"
          hash={m.blurhash}
          alt={m.description || ""}
          width={r?.width || m.width || 320}
          height={r?.height || m.height || 240}
          loading="lazy"
          className="h-auto w-full object-cover"
        />
      ))}
    </div>
  );
}
