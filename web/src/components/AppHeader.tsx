"use client";
import Link from "next/link";
import { usePathname, useRouter, useSearchParams } from "next/navigation";
import { signOut } from "@/api/session";
import { useUnreadCounts } from "@/hooks/data";
import { useSession } from "@/state/session";
import { count } from "@/lib/format";
import { useQueryClient } from "@tanstack/react-query";

function NavLink({ href, label, badge }: { href: string; label: string; badge?: number }) {
  const path = usePathname();
  const params = useSearchParams();
  const [hrefPath, hrefQuery] = href.split("?");
  const wantHandle = new URLSearchParams(hrefQuery ?? "").get("handle");
  const current = path === hrefPath && (!wantHandle || params.get("handle")?.toLowerCase() === wantHandle.toLowerCase());
  return (
    <Link
      href={href}
      aria-current={current ? "page" : undefined}
      className={`relative rounded-full px-2 py-1 text-sm font-medium hover:bg-slate-100 dark:hover:bg-slate-800 ${current ? "underline decoration-2 underline-offset-4" : ""}`}
    >
      {label}
      {badge ? (
        <span data-testid={`badge-${label.toLowerCase()}`} className="ml-1 rounded-full bg-red-700 px-1.5 text-xs font-bold text-white">
          <span aria-hidden="true">{badge > 99 ? "99+" : badge}</span>
          <span className="sr-only">, {badge} unread</span>
        </span>
      ) : null}
    </Link>
  );
}

export function AppHeader() {
  const status = useSession((s) => s.status);
  const user = useSession((s) => s.user);
  const unread = useUnreadCounts();
  const router = useRouter();
  const qc = useQueryClient();
  const notes = count(unread.data?.notifications);
  const convs = count(unread.data?.conversations);

  async function onSignOut() {
    await signOut();
    qc.clear();
    router.push("/signin");
  }

  return (
    <header className="sticky top-0 z-30 border-b border-line bg-card/95 backdrop-blur">
      <nav aria-label="Main" className="mx-auto flex max-w-2xl flex-wrap items-center gap-x-1 gap-y-1 px-2 py-2">
        <Link href="/" className="mr-2 text-lg font-bold text-blue-700 dark:text-blue-300">
          socialmesh
        </Link>
        {status === "signedIn" ? (
          <>
            <NavLink href="/" label="Home" />
            <NavLink href="/search" label="Search" />
            <NavLink href="/notifications" label="Notifications" badge={notes} />
            <NavLink href="/messages" label="Messages" badge={convs} />
            {user?.handle ? <NavLink href={`/profile?handle=${encodeURIComponent(user.handle)}`} label="Profile" /> : null}
            <NavLink href="/settings" label="Settings" />
            <button type="button" onClick={() => void onSignOut()} className="btn-ghost ml-auto">
              Sign out
            </button>
          </>
        ) : status === "signedOut" ? (
          <>
            <NavLink href="/search" label="Search" />
            <span className="ml-auto flex gap-1">
              <Link href="/signin" className="btn-ghost">Sign in</Link>
              <Link href="/signup" className="btn-primary">Sign up</Link>
            </span>
          </>
        ) : null}
      </nav>
    </header>
  );
}
