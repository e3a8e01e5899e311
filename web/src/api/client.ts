import createClient from "openapi-fetch";
import { createAuth } from "./auth";
import { API_BASE } from "./config";
import { toApiError } from "./errors";
import type { paths } from "./schema";

/** The one session of this tab: the access token lives in this module's memory only. */
export const auth = createAuth({ base: API_BASE });

let restoring: Promise<unknown> | null = null;

/**
 * Calls made while the page restores its session (the refresh cookie, on a full load) wait
 * for it instead of going out without a token: a screen's first query would otherwise be
 * refused (401) before the session is back.
 */
export function holdCallsUntil(restore: Promise<unknown>): void {
  const settled = restore.catch(() => undefined);
  restoring = settled;
  void settled.then(() => {
    if (restoring === settled) restoring = null;
  });
}

export const api = createClient<paths>({
  baseUrl: API_BASE,
  fetch: async (req) => {
    if (restoring && !auth.token()) await restoring;
    return auth.fetch(req);
  },
  credentials: "same-origin",
});

interface FetchResult<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The data of a successful call, or an ApiError for a failed one. */
export async function unwrap<T>(call: Promise<FetchResult<T>>): Promise<T> {
  const r = await call;
  if (!r.response.ok || r.error !== undefined) {
    throw toApiError(r.response.status, r.error);
  }
  return (r.data ?? {}) as T;
}
