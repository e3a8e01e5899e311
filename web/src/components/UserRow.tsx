"use client";
import Link from "next/link";
import type { User } from "@/api/types";
import { Avatar } from "./Avatar";
import { FollowButton } from "./FollowButton";

/** A person in a list: picture, name, handle, and a follow button. */
export function UserRow({ user, note, actions }: { user: User; note?: React.ReactNode; actions?: React.ReactNode }) {
  return (
    <li className="flex items-center gap-3 border-b border-line px-4 py-3">
      <Avatar user={user} />
      <div className="min-w-0 flex-1">
        <Link href={`/profile?handle=${encodeURIComponent(user.handle)}`} className="font-semibold hover:underline">{user.displayName || user.handle}</Link>
        <p className="truncate text-sm text-muted">@{user.handle}{note ? <> · {note}</> : null}</p>
      </div>
      {actions ?? <FollowButton user={user} />}
    </li>
  );
}
