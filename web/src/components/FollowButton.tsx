"use client";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import { humanMessage } from "@/api/errors";
import type { User } from "@/api/types";
import { useSession } from "@/state/session";

type Action = "follow" | "unfollow";

/** Follow / Following (unfollow) / Requested (cancel) for one account, updated at once. */
export function FollowButton({ user }: { user: User }) {
  const qc = useQueryClient();
  const me = useSession((s) => s.userId);
  const m = useMutation({
    mutationFn: async (action: Action) => {
      const path = { userId: user.userId };
      if (action === "follow") return (await unwrap(api.POST("/v1/users/{userId}:follow", { params: { path } }))).state;
      await unwrap(api.POST("/v1/users/{userId}:unfollow", { params: { path } }));
      return "NONE";
    },
    onMutate: (action) => {
      const before = qc.getQueryData<User>(keys.user(user.userId));
      const patch = (u: User | null | undefined): User | null | undefined =>
        u && u.userId === user.userId
          ? { ...u, isFollowing: action === "follow" && !u.isPrivate, requested: action === "follow" && u.isPrivate }
          : u;
      qc.setQueryData<User>(keys.user(user.userId), (u) => patch(u) ?? u);
      qc.setQueryData<User | null>(keys.userByHandle(user.handle), (u) => patch(u) ?? u);
      return { before };
    },
    onSuccess: (state) => {
      const set = (u: User | null | undefined): User | null | undefined =>
        u && u.userId === user.userId ? { ...u, isFollowing: state === "FOLLOW_STATE_FOLLOWING", requested: state === "FOLLOW_STATE_REQUESTED" } : u;
      qc.setQueryData<User>(keys.user(user.userId), (u) => set(u) ?? u);
      qc.setQueryData<User | null>(keys.userByHandle(user.handle), (u) => set(u) ?? u);
      void qc.invalidateQueries({ queryKey: keys.userByHandle(user.handle) });
      void qc.invalidateQueries({ queryKey: ["feed"] });
    },
    onError: () => {
      void qc.invalidateQueries({ queryKey: keys.userByHandle(user.handle) });
      void qc.invalidateQueries({ queryKey: keys.user(user.userId) });
    },
  });
  if (!me || me === user.userId || user.blocking) return null;
  const following = user.isFollowing;
  const requested = !following && user.requested;
  const label = following ? "Unfollow" : requested ? "Cancel request" : user.isPrivate ? "Request to follow" : user.followedBy ? "Follow back" : "Follow";
  return (
    <span className="inline-flex flex-col items-end">
      <button
        type="button"
        className={following || requested ? "btn-secondary" : "btn-primary"}
        onClick={() => m.mutate(following || requested ? "unfollow" : "follow")}
        disabled={m.isPending}
        aria-label={`${label} @${user.handle}`}
      >
        {following ? "Following · Unfollow" : requested ? "Requested · Cancel" : label}
      </button>
      {m.error ? <span role="alert" className="text-xs text-red-700 dark:text-red-300">{humanMessage(m.error)}</span> : null}
    </span>
  );
}
