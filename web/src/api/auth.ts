import { toApiError } from "./errors";
import type { Ok, User } from "./types";

type Tokens = Ok<"/v1/auth:refresh", "post">;

/** Reasons after which retrying with a refreshed token cannot help: the session is over. */
const SESSION_OVER = new Set(["TOKEN_REVOKED", "SESSION_ENDED", "REFRESH_TOKEN_REUSED"]);

export interface AuthListener {
  (state: { accessToken: string | null; user: User | null; signedOut: boolean }): void;
}

export interface AuthCore {
  /** The access token, in memory only. */
  token(): string | null;
  /** Takes the answer of login/refresh. */
  accept(tokens: Tokens): void;
  /** Forgets everything (signed out). */
  clear(): void;
  /** One refresh at a time: concurrent callers share the same promise. Resolves to the new token or null. */
  refresh(): Promise<string | null>;
  /** fetch with Authorization, one refresh + retry on a 401 that a new token can fix. */
  fetch(input: Request): Promise<Response>;
  subscribe(fn: AuthListener): () => void;
}

export interface AuthOptions {
  base: string;
  fetch?: (input: Request) => Promise<Response>;
  /** Schedules proactive refreshes; tests pass a no-op. */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

export const REFRESH_TRANSPORT_HEADER = "x-refresh-token-transport";

export function createAuth(opts: AuthOptions): AuthCore {
  const doFetch = opts.fetch ?? ((r: Request) => fetch(r));
  const setTimer = opts.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms));
  const clearTimer = opts.clearTimer ?? ((h: unknown) => clearTimeout(h as ReturnType<typeof setTimeout>));
  let accessToken: string | null = null;
  // Only while the server still answers with a refresh token in the body (before the
  // httpOnly cookie transport): kept in this closure, never in storage.
  let refreshToken: string | null = null;
  let inflight: Promise<string | null> | null = null;
  let timer: unknown = null;
  const listeners = new Set<AuthListener>();

  function emit(user: User | null, signedOut: boolean) {
    for (const fn of listeners) fn({ accessToken, user, signedOut });
  }

  function schedule(expiresIn: number | undefined) {
    if (timer !== null) clearTimer(timer);
    timer = null;
    if (!expiresIn || expiresIn <= 0) return;
    const ms = Math.max(5, expiresIn - 60) * 1000;
    timer = setTimer(() => {
      timer = null;
      void core.refresh();
    }, ms);
  }

  async function doRefresh(): Promise<string | null> {
    const body = refreshToken ? { refreshToken } : {};
    let res: Response;
    try {
      res = await doFetch(
        new Request(`${opts.base}/v1/auth:refresh`, {
          method: "POST",
          credentials: "include",
          headers: { "content-type": "application/json", [REFRESH_TRANSPORT_HEADER]: "cookie" },
          body: JSON.stringify(body),
        }),
      );
    } catch {
      return null; // offline: keep the state, the caller sees the original failure
    }
    if (!res.ok) {
      core.clear();
      return null;
    }
    const tokens = (await res.json()) as Tokens;
    core.accept(tokens);
    return accessToken;
  }

  const core: AuthCore = {
    token: () => accessToken,
    accept(tokens) {
      accessToken = tokens.accessToken || null;
      if (tokens.refreshToken) refreshToken = tokens.refreshToken;
      schedule(tokens.expiresIn);
      emit(tokens.user ?? null, !accessToken);
    },
    clear() {
      const had = accessToken !== null || refreshToken !== null;
      accessToken = null;
      refreshToken = null;
      if (timer !== null) clearTimer(timer);
      timer = null;
      if (had || listeners.size) emit(null, true);
    },
    refresh() {
      if (!inflight) {
        inflight = doRefresh().finally(() => {
          inflight = null;
        });
      }
      return inflight;
    },
    async fetch(input) {
      const spare = input.clone();
      const sent = accessToken;
      const first = withToken(input, sent);
      const res = await doFetch(first);
      if (res.status !== 401) return res;
      const err = toApiError(401, await res.clone().text().catch(() => ""));
      if (SESSION_OVER.has(err.reason)) {
        core.clear();
        return res;
      }
      // Someone else refreshed while this request was in flight: just retry.
      let next = accessToken !== sent ? accessToken : null;
      if (!next && sent) next = await core.refresh();
      if (!next) return res;
      return doFetch(withToken(spare, next));
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  return core;
}

function withToken(req: Request, token: string | null): Request {
  if (!token) return req;
  const headers = new Headers(req.headers);
  headers.set("authorization", `Bearer ${token}`);
  return new Request(req, { headers });
}
