// Blurhash (https://blurha.sh) decoding: the API gives each READY image a blurhash,
// drawn as a placeholder until the image itself has loaded. Pure, so it is unit tested.

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

function decode83(s: string): number {
  let value = 0;
  for (const c of s) {
    const d = DIGITS.indexOf(c);
    if (d < 0) throw new Error(`not a blurhash digit: ${c}`);
    value = value * 83 + d;
  }
  return value;
}

function toLinear(v: number): number {
  const x = v / 255;
  return x <= 0.04045 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
}

function toSrgb(v: number): number {
  const x = Math.max(0, Math.min(1, v));
  return x <= 0.0031308 ? Math.round(x * 12.92 * 255 + 0.5) : Math.round((1.055 * Math.pow(x, 1 / 2.4) - 0.055) * 255 + 0.5);
}

const signPow = (v: number, e: number) => Math.sign(v) * Math.pow(Math.abs(v), e);

/** Whether `hash` is a well-formed blurhash (its length matches its component count). */
export function isBlurhash(hash: string | undefined | null): hash is string {
  if (!hash || hash.length < 6) return false;
  try {
    const size = decode83(hash[0]!);
    const nx = (size % 9) + 1;
    const ny = Math.floor(size / 9) + 1;
    decode83(hash);
    return hash.length === 4 + 2 * nx * ny;
  } catch {
    return false;
  }
}

/** RGBA pixels (width × height × 4) of the blurred picture a blurhash describes. */
export function decodeBlurhash(hash: string, width: number, height: number, punch = 1): Uint8ClampedArray {
  if (!isBlurhash(hash)) throw new Error("invalid blurhash");
  const size = decode83(hash[0]!);
  const nx = (size % 9) + 1;
  const ny = Math.floor(size / 9) + 1;
  const maxValue = ((decode83(hash[1]!) + 1) / 166) * punch;
  const colors: [number, number, number][] = [];
  const dc = decode83(hash.slice(2, 6));
  colors.push([toLinear(dc >> 16), toLinear((dc >> 8) & 255), toLinear(dc & 255)]);
  for (let i = 1; i < nx * ny; i++) {
    const v = decode83(hash.slice(4 + i * 2, 6 + i * 2));
    const q = [Math.floor(v / (19 * 19)), Math.floor(v / 19) % 19, v % 19];
    colors.push(q.map((c) => signPow((c - 9) / 9, 2) * maxValue) as [number, number, number]);
  }
  const out = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let j = 0; j < ny; j++) {
        for (let i = 0; i < nx; i++) {
          const basis = Math.cos((Math.PI * x * i) / width) * Math.cos((Math.PI * y * j) / height);
          const c = colors[i + j * nx]!;
          r += c[0] * basis;
          g += c[1] * basis;
          b += c[2] * basis;
        }
      }
      const p = 4 * (x + y * width);
      out[p] = toSrgb(r);
      out[p + 1] = toSrgb(g);
      out[p + 2] = toSrgb(b);
      out[p + 3] = 255;
    }
  }
  return out;
}

/** The picture's average colour (the DC term) as CSS, for a background before any decoding. */
export function blurhashAverage(hash: string): string {
  const dc = decode83(hash.slice(2, 6));
  return `rgb(${dc >> 16}, ${(dc >> 8) & 255}, ${dc & 255})`;
}
