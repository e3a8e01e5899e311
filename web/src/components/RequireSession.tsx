"use client";
import { useRouter } from "next/navigation";
import { useEffect } from "react";
import { useSession } from "@/state/session";
import { LoadingState } from "./StatusViews";

/** Shows its children only when signed in; otherwise goes to sign in and comes back afterwards. */
export function RequireSession({ children }: { children: React.ReactNode }) {
  const status = useSession((s) => s.status);
  const router = useRouter();
  useEffect(() => {
    if (status === "signedOut") {
      const next = window.location.pathname + window.location.search;
      router.replace(`/signin?next=${encodeURIComponent(next)}`);
    }
  }, [status, router]);
  if (status !== "signedIn") return <LoadingState label={status === "restoring" ? "Restoring your session" : "Redirecting to sign in"} />;
  return <>{children}</>;
}

/** A safe place to go after signing in: only paths of this site. */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//")) return "/";
  return next;
}
