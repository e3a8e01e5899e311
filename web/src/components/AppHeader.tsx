"use client";
import Link from "next/link";
import { usePathname, useRouter, useSearchParams } from "next/navigation";
import { signOut } from "@/api/session";
import { useUnreadCounts } from "@/hooks/data";
import { useSession } from "@/state/session";
import { count } from "@/lib/format";
import { useQueryClient } from "@tanstack/react-query";
import { NavIcon, type IconName } from "./NavIcon";

// Below 640 px the links are icons (their labels stay for screen readers) so the whole
// bar fits on one line at 360 px; wider, they are words.
const LABEL = "sr-only sm:not-sr-only";

function NavLink({ href, label, icon, badge }: { href: string; label: string; icon: IconName; badge?: number }) {
  const path = usePathname();
  const params = useSearchParams();
  const [hrefPath, hrefQuery] = href.split("?");
  const wantHandle = new URLSearchParams(hrefQuery ?? "").get("handle");
  const current = path === hrefPath && (!wantHandle || params.get("handle")?.toLowerCase() === wantHandle.toLowerCase());
  return (
    <Link
      href={href}
      aria-current={current ? "page" : undefined}
      title={label}
      className={`relative inline-flex shrink-0 items-center rounded-full p-2 text-sm font-medium hover:bg-slate-100 sm:px-2 sm:py-1 dark:hover:bg-slate-800 ${current ? "text-blue-700 underline decoration-2 underline-offset-4 sm:text-inherit dark:text-blue-300" : ""}`}
    >
      <NavIcon name={icon} className="h-5 w-5 sm:hidden" />
      <span className={LABEL}>{label}</span>
      {badge ? (
        <span data-testid={`badge-${label.toLowerCase()}`} className="absolute -top-0.5 -right-0.5 rounded-full bg-red-700 px-1 text-[10px] leading-4 font-bold text-white sm:static sm:ml-1 sm:px-1.5 sm:text-xs">
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
      <nav aria-label="Main" className="mx-auto flex max-w-2xl flex-nowrap items-center gap-0.5 px-1 py-1 sm:gap-1 sm:px-2 sm:py-2">
        <Link href="/" className="mr-1 inline-flex shrink-0 items-center text-lg font-bold text-blue-700 sm:mr-2 dark:text-blue-300">
          <svg viewBox="0 0 32 32" aria-hidden="true" focusable="false" className="h-7 w-7 sm:hidden">
            <circle cx="16" cy="16" r="15" fill="currentColor" />
            <circle cx="10" cy="12" r="3" fill="#fff" />
            <circle cx="22" cy="12" r="3" fill="#fff" />
            <circle cx="16" cy="22" r="3" fill="#fff" />
            <path d="M10 12 22 12 16 22Z" fill="none" stroke="#fff" strokeWidth="1.5" />
          </svg>
          <span className={LABEL}>socialmesh</span>
        </Link>
        {status === "signedIn" ? (
          <>
            <NavLink href="/" label="Home" icon="home" />
            <NavLink href="/search" label="Search" icon="search" />
            <NavLink href="/notifications" label="Notifications" icon="bell" badge={notes} />
            <NavLink href="/messages" label="Messages" icon="chat" badge={convs} />
            {user?.handle ? <NavLink href={`/profile?handle=${encodeURIComponent(user.handle)}`} label="Profile" icon="user" /> : null}
            <NavLink href="/settings" label="Settings" icon="gear" />
            <button type="button" onClick={() => void onSignOut()} className="btn-ghost ml-auto shrink-0 p-2 sm:px-2 sm:py-1" title="Sign out">
              <NavIcon name="out" className="h-5 w-5 sm:hidden" />
              <span className={LABEL}>Sign out</span>
            </button>
          </>
        ) : status === "signedOut" ? (
          <>
            <NavLink href="/search" label="Search" icon="search" />
            <span className="ml-auto flex shrink-0 gap-1">
              <Link href="/signin" className="btn-ghost">Sign in</Link>
              <Link href="/signup" className="btn-primary">Sign up</Link>
            </span>
          </>
        ) : null}
      </nav>
    </header>
  );
}
