import { api, auth, unwrap } from "./client";
import { API_BASE } from "./config";
import { ApiError, toApiError } from "./errors";
import type { Media } from "./types";

/** Uploads one file (raw body, metadata in the query) with progress; XHR because fetch has no upload progress. */
export function uploadMedia(file: File, requestId: string, onProgress: (fraction: number) => void, signal?: AbortSignal): Promise<Media> {
  const q = new URLSearchParams({ filename: file.name || "image", requestId, sizeBytes: String(file.size) });
  // the transcoder reads %20, not "+"
  const url = `${API_BASE}/v1/media:upload?${q.toString().replace(/\+/g, "%20")}`;
  const attempt = (token: string | null) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      if (token) xhr.setRequestHeader("authorization", `Bearer ${token}`);
      xhr.setRequestHeader("content-type", file.type || "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(e.loaded / e.total);
      };
      xhr.onload = () => resolve({ status: xhr.status, body: xhr.responseText });
      xhr.onerror = () => reject(new TypeError("network error"));
      xhr.onabort = () => reject(new DOMException("aborted", "AbortError"));
      signal?.addEventListener("abort", () => xhr.abort());
      xhr.send(file);
    });
  return (async () => {
    let res = await attempt(auth.token());
    if (res.status === 401) {
      const fresh = await auth.refresh();
      if (fresh) res = await attempt(fresh);
    }
    if (res.status < 200 || res.status >= 300) throw toApiError(res.status, res.body);
    onProgress(1);
    return JSON.parse(res.body) as Media;
  })();
}

/** Polls the media until its variants are ready (or it failed). */
export async function waitUntilReady(mediaId: string, signal?: AbortSignal, timeoutMs = 60_000): Promise<Media> {
  const start = Date.now();
  let delay = 400;
  for (;;) {
    const m = await unwrap(api.GET("/v1/media/{mediaId}", { params: { path: { mediaId } } }));
    if (m.state === "MEDIA_STATE_READY") return m;
    if (m.state === "MEDIA_STATE_FAILED") {
      throw new ApiError({ status: 400, reason: "MEDIA_FAILED", message: m.failureReason || "processing failed" });
    }
    if (signal?.aborted) throw new DOMException("aborted", "AbortError");
    if (Date.now() - start > timeoutMs) throw new ApiError({ status: 504, reason: "MEDIA_NOT_READY" });
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(2000, delay * 1.5);
  }
}
