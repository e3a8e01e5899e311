"use client";
import Link from "next/link";
import { useRouter, useSearchParams } from "next/navigation";
import { useEffect, useState } from "react";
import { signIn } from "@/api/session";
import { FormError } from "./StatusViews";
import { safeNext } from "./RequireSession";
import { useSession } from "@/state/session";

export function SignInForm() {
  const router = useRouter();
  const params = useSearchParams();
  const [handle, setHandle] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const created = params.get("created") === "1";
  const status = useSession((s) => s.status);
  const next = safeNext(params.get("next"));

  // Already signed in (a restored session, a second tab, a reload mid-redirect): go on.
  useEffect(() => {
    if (status === "signedIn") router.replace(next);
  }, [status, next, router]);

  async function onSubmit(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(handle.trim().replace(/^@/, ""), password);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <form onSubmit={onSubmit} className="mx-auto mt-8 flex max-w-sm flex-col gap-4 px-4" aria-labelledby="signin-title" noValidate>
      <h1 id="signin-title" className="text-2xl font-bold">Sign in</h1>
      {created ? <p role="status" className="rounded-md bg-green-50 p-2 text-sm text-green-900 dark:bg-green-950 dark:text-green-100">Your account is ready. Check your email to verify it, then sign in.</p> : null}
      <div>
        <label htmlFor="handle" className="label">Handle</label>
        <input id="handle" name="handle" className="input" autoComplete="username" autoCapitalize="none" required value={handle} onChange={(e) => setHandle(e.target.value)} />
      </div>
      <div>
        <label htmlFor="password" className="label">Password</label>
        <input id="password" name="password" type="password" className="input" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
      </div>
      <FormError error={error} />
      <button type="submit" className="btn-primary" disabled={busy || !handle || !password}>
        {busy ? "Signing in…" : "Sign in"}
      </button>
      <p className="text-sm">
        New here? <Link href="/signup" className="link">Create an account</Link>
      </p>
    </form>
  );
}
