"use client";
import { useEffect, useRef, useState } from "react";
import { blurhashAverage, decodeBlurhash, isBlurhash } from "@/lib/blurhash";

const PIXELS = 32;

/**
 * An image over its blurhash: the blurred placeholder (a small canvas, stretched) shows
 * until the image has loaded, so a message or post keeps its shape while the bytes arrive.
 */
export function BlurhashImage({ src, srcSet, sizes, hash, alt, width, height, className = "", loading }: { src?: string; srcSet?: string; sizes?: string; hash?: string; alt: string; width: number; height: number; className?: string; loading?: "lazy" | "eager" }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const image = useRef<HTMLImageElement>(null);
  const [loaded, setLoaded] = useState(false);
  const valid = isBlurhash(hash);
  useEffect(() => {
    // already decoded (the browser's cache) before React listened for load
    if (image.current?.complete && image.current.naturalWidth) setLoaded(true);
  }, [src]);
  useEffect(() => {
    const el = canvas.current;
    if (!valid || !el || loaded) return;
    const ctx = el.getContext("2d");
    if (!ctx) return;
    const img = ctx.createImageData(PIXELS, PIXELS);
    img.data.set(decodeBlurhash(hash, PIXELS, PIXELS));
    ctx.putImageData(img, 0, 0);
  }, [hash, valid, loaded]);
  return (
    <span className="relative block overflow-hidden rounded" style={valid ? { backgroundColor: blurhashAverage(hash) } : undefined} data-blurhash={valid ? hash : undefined}>
      {valid && !loaded ? <canvas ref={canvas} width={PIXELS} height={PIXELS} aria-hidden="true" data-testid="blurhash" className="absolute inset-0 h-full w-full" /> : null}
      {src ? (
        // eslint-disable-next-line @next/next/no-img-element
        <img
          ref={image}
          src={src}
          srcSet={srcSet || undefined}
          sizes={sizes}
          alt={alt}
          width={width}
          height={height}
          loading={loading}
          decoding="async"
          onLoad={() => setLoaded(true)}
          className={`relative transition-opacity ${loaded || !valid ? "opacity-100" : "opacity-0"} ${className}`}
        />
      ) : (
        <span role="img" aria-label={alt || "Image processing"} className={`block ${className}`} style={{ aspectRatio: `${width} / ${height}` }} />
      )}
    </span>
  );
}
