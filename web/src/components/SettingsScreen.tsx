"use client";
import Link from "next/link";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useRouter } from "next/navigation";
import { api, auth, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import { humanMessage } from "@/api/errors";
import { signOut } from "@/api/session";
import { useSession } from "@/state/session";
import { timeAgo } from "@/lib/format";
import { PushSettings } from "./PushSettings";
import { RequireSession } from "./RequireSession";
import { ErrorState, LoadingState } from "./StatusViews";

function PrivacySetting() {
  const user = useSession((s) => s.user);
  const setUser = useSession((s) => s.setUser);
  const qc = useQueryClient();
  const m = useMutation({
    mutationFn: (isPrivate: boolean) =>
      unwrap(api.PATCH("/v1/users/{userId}", { params: { path: { userId: user!.userId }, query: { updateMask: "is_private" } }, body: { isPrivate } })),
    onSuccess: (u) => {
      setUser(u);
      qc.setQueryData(keys.user(u.userId), u);
      void qc.invalidateQueries({ queryKey: keys.userByHandle(u.handle) });
    },
  });
  if (!user) return null;
  return (
    <section aria-labelledby="privacy-title" className="border-b border-line p-4">
      <h2 id="privacy-title" className="font-semibold">Privacy</h2>
      <label className="mt-2 flex items-center gap-2">
        <input type="checkbox" className="h-5 w-5" checked={!!user.isPrivate} disabled={m.isPending} onChange={(e) => m.mutate(e.target.checked)} />
        Private account
      </label>
      <p className="text-sm text-muted">Only people you approve can follow you and see your posts. <Link href="/follow-requests" className="link">Follow requests</Link></p>
      {m.error ? <p role="alert" className="text-sm text-red-700">{humanMessage(m.error)}</p> : null}
    </section>
  );
}

function EmailSetting() {
  const user = useSession((s) => s.user);
  const m = useMutation({ mutationFn: () => unwrap(api.POST("/v1/users/{userId}:resendVerificationEmail", { params: { path: { userId: user!.userId } } })) });
  if (!user || user.emailVerified) return null;
  return (
    <section aria-labelledby="email-title" className="border-b border-line p-4">
      <h2 id="email-title" className="font-semibold">Email</h2>
      <p className="text-sm">Your email address {user.email ? <strong>{user.email}</strong> : null} isn&apos;t verified yet.</p>
      <button type="button" className="btn-secondary mt-2" onClick={() => m.mutate()} disabled={m.isPending || m.isSuccess}>
        {m.isSuccess ? "Sent — check your inbox" : "Send the link again"}
      </button>
      {m.error ? <p role="alert" className="text-sm text-red-700">{humanMessage(m.error)}</p> : null}
    </section>
  );
}

function Sessions() {
  const userId = useSession((s) => s.userId);
  const router = useRouter();
  const qc = useQueryClient();
  const q = useQuery({ queryKey: ["sessions"], enabled: !!userId, queryFn: () => unwrap(api.GET("/v1/users/{userId}/sessions", { params: { path: { userId: userId! } } })) });
  const everywhere = useMutation({
    mutationFn: () => unwrap(api.POST("/v1/auth:logoutEverywhere")),
    onSettled: () => {
      auth.clear();
      qc.clear();
      router.replace("/signin");
    },
  });
  return (
    <section aria-labelledby="sessions-title" className="border-b border-line p-4">
      <h2 id="sessions-title" className="font-semibold">Where you&apos;re signed in</h2>
      {q.status === "pending" ? <LoadingState /> : q.status === "error" ? <ErrorState error={q.error} onRetry={() => void q.refetch()} /> : (
        <ul className="mt-2 text-sm">
          {q.data.sessions.map((s) => (
            <li key={s.sessionId} className="py-1">
              Signed in {timeAgo(s.createTime)} ago{s.lastRefreshTime ? `, active ${timeAgo(s.lastRefreshTime)} ago` : ""}
              {s.current ? <strong> · this browser</strong> : null}
            </li>
          ))}
        </ul>
      )}
      <div className="mt-3 flex flex-wrap gap-2">
        <button
          type="button"
          className="btn-secondary"
          onClick={async () => {
            await signOut();
            qc.clear();
            router.replace("/signin");
          }}
        >
          Sign out of this browser
        </button>
        <button type="button" className="btn-secondary text-red-700 dark:text-red-300" onClick={() => everywhere.mutate()} disabled={everywhere.isPending}>
          Sign out everywhere
        </button>
      </div>
    </section>
  );
}

export function SettingsScreen() {
  return (
    <RequireSession>
      <h1 className="border-b border-line px-4 py-3 text-xl font-bold">Settings</h1>
      <section className="border-b border-line p-4">
        <Link href="/settings/profile" className="link">Edit profile</Link>
      </section>
      <PrivacySetting />
      <EmailSetting />
      <PushSettings />
      <Sessions />
    </RequireSession>
  );
}
