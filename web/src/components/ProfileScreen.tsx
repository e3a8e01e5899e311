"use client";
import Link from "next/link";
import { useSearchParams } from "next/navigation";
import { useUserByHandle } from "@/hooks/data";
import { useSession } from "@/state/session";
import { compact } from "@/lib/format";
import { Avatar } from "./Avatar";
import { FollowButton } from "./FollowButton";
import { ProfileMenu } from "./ProfileMenu";
import { UserPosts } from "./UserPosts";
import { EmptyState, ErrorState, LoadingState } from "./StatusViews";

/** /profile?handle=…: picture, bio, counts, follow controls and posts. */
export function ProfileScreen() {
  const handle = (useSearchParams().get("handle") ?? "").replace(/^@/, "");
  const q = useUserByHandle(handle);
  const me = useSession((s) => s.userId);
  if (!handle) return <EmptyState title="No profile selected" />;
  if (q.status === "pending") return <LoadingState label="Loading profile" />;
  if (q.status === "error") return <ErrorState error={q.error} onRetry={() => void q.refetch()} />;
  const user = q.data;
  if (!user) return <EmptyState title="This account doesn't exist">Try searching for another one.</EmptyState>;
  const own = me === user.userId;
  const h = encodeURIComponent(user.handle);
  return (
    <>
      <section className="border-b border-line p-4" aria-labelledby="profile-name">
        <div className="flex items-start justify-between gap-3">
          <Avatar user={user} size="lg" />
          <div className="flex flex-col items-end gap-2">
            {own ? <Link href="/settings/profile" className="btn-secondary">Edit profile</Link> : <FollowButton user={user} />}
          </div>
        </div>
        <h1 id="profile-name" className="mt-2 text-xl font-bold">{user.displayName || user.handle}</h1>
        <p className="text-muted">
          @{user.handle}
          {user.followedBy && !own ? <span className="ml-2 rounded bg-slate-200 px-1 text-xs dark:bg-slate-700">Follows you</span> : null}
          {user.isPrivate ? <span className="ml-2 text-xs">Private account</span> : null}
        </p>
        {user.bio ? <p className="mt-2 whitespace-pre-wrap">{user.bio}</p> : null}
        <p className="mt-2 flex flex-wrap gap-4 text-sm">
          <Link href={`/people?handle=${h}&list=following`} className="hover:underline"><strong>{compact(user.followingCount)}</strong> Following</Link>
          <Link href={`/people?handle=${h}&list=followers`} className="hover:underline"><strong>{compact(user.followerCount)}</strong> Followers</Link>
          <span><strong>{compact(user.postCount)}</strong> Posts</span>
        </p>
        {!own && me ? <div className="mt-3"><ProfileMenu user={user} /></div> : null}
        {own ? <p className="mt-2 text-sm"><Link href="/follow-requests" className="link">Follow requests</Link></p> : null}
      </section>
      {user.blocking ? (
        <EmptyState title={`You blocked @${user.handle}`}>Unblock to see their posts.</EmptyState>
      ) : user.isLimitedView ? (
        <EmptyState title="These posts are protected">Only approved followers can see @{user.handle}&apos;s posts.</EmptyState>
      ) : (
        <UserPosts userId={user.userId} />
      )}
    </>
  );
}
