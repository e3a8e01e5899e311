import { api, auth, holdCallsUntil, unwrap } from "./client";
import { REFRESH_TRANSPORT_HEADER } from "./auth";
import type { User } from "./types";
import { useSession } from "@/state/session";

const COOKIE = { [REFRESH_TRANSPORT_HEADER]: "cookie" } as const;

auth.subscribe(({ accessToken, user, signedOut }) => {
  const s = useSession.getState();
  if (signedOut || !accessToken) {
    if (s.status !== "signedOut") s.setSignedOut();
    return;
  }
  if (user) s.setSignedIn(user, user.userId ?? null);
});

async function loadMe(): Promise<User | null> {
  const caller = await unwrap(api.GET("/v1/auth:caller"));
  if (!caller.userId) return null;
  return unwrap(api.GET("/v1/users/{userId}", { params: { path: { userId: caller.userId } } }));
}

/** The server sets this secret-free hint beside the httpOnly refresh cookie (and clears
 * both together): without it there is no session to restore, and no refresh to fail. */
export function hasSessionHint(cookies: string): boolean {
  return cookies.split(";").some((c) => c.trim() === "sm_session=1");
}

let restored: Promise<void> | null = null;

/**
 * On page load: the refresh cookie (httpOnly) brings the session back, or we are signed out.
 * Once per page: the providers start it as their module loads, before React hydrates, so
 * the refresh (and then the first feed page) overlaps the app's startup.
 */
export function restoreSession(): Promise<void> {
  restored ??= restoreOnce();
  return restored;
}

async function restoreOnce(): Promise<void> {
  if (typeof document !== "undefined" && !hasSessionHint(document.cookie)) {
    useSession.getState().setSignedOut();
    return;
  }
  const refreshing = auth.refresh();
  holdCallsUntil(refreshing);
  const token = await refreshing;
  if (!token) {
    useSession.getState().setSignedOut();
    return;
  }
  const s = useSession.getState();
  if (!s.user?.handle) {
    const me = await loadMe().catch(() => null);
    if (me) s.setSignedIn(me, me.userId ?? null);
    else if (auth.token()) s.setSignedIn(null, null);
  } else if (s.status !== "signedIn") s.setSignedIn(s.user, s.userId);
}

export async function signIn(handle: string, password: string): Promise<User | null> {
  const res = await unwrap(
    api.POST("/v1/auth:login", {
      body: { handle, password },
      headers: COOKIE,
      credentials: "include",
    }),
  );
  auth.accept(res);
  let user = res.user ?? null;
  if (!user?.handle) user = await loadMe().catch(() => null);
  useSession.getState().setSignedIn(user, user?.userId ?? null);
  return user;
}

export async function signUp(input: { handle: string; displayName: string; email: string; password: string }): Promise<void> {
  await unwrap(api.POST("/v1/users", { body: input }));
}

export async function signOut(): Promise<void> {
  try {
    await unwrap(api.POST("/v1/auth:logout", { headers: COOKIE, credentials: "include" }));
  } catch {
    // signed out locally whatever the server said
  }
  auth.clear();
  useSession.getState().setSignedOut();
}
