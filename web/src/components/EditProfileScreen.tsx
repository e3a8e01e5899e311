"use client";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { api, unwrap } from "@/api/client";
import { keys } from "@/api/cache";
import { fieldErrors, humanMessage } from "@/api/errors";
import { uploadMedia, waitUntilReady } from "@/api/upload";
import type { User } from "@/api/types";
import { useSession } from "@/state/session";
import { newId } from "@/lib/format";
import { Avatar } from "./Avatar";
import { RequireSession } from "./RequireSession";

function EditProfileForm({ user }: { user: User }) {
  const qc = useQueryClient();
  const router = useRouter();
  const setUser = useSession((s) => s.setUser);
  const [displayName, setDisplayName] = useState(user.displayName ?? "");
  const [bio, setBio] = useState(user.bio ?? "");
  const [avatar, setAvatar] = useState<{ preview: string; mediaId?: string; state: string } | null>(null);
  const save = useMutation({
    mutationFn: async () => {
      const mask = ["display_name", "bio"];
      const body: { displayName: string; bio: string; avatarMediaId?: string } = { displayName: displayName.trim(), bio };
      if (avatar?.mediaId) {
        mask.push("avatar_media_id");
        body.avatarMediaId = avatar.mediaId;
      }
      return unwrap(api.PATCH("/v1/users/{userId}", { params: { path: { userId: user.userId }, query: { updateMask: mask.join(",") } }, body }));
    },
    onSuccess: (u) => {
      setUser(u);
      qc.setQueryData(keys.user(u.userId), u);
      void qc.invalidateQueries({ queryKey: keys.userByHandle(u.handle) });
      router.push(`/profile?handle=${encodeURIComponent(u.handle)}`);
    },
  });
  const errs = fieldErrors(save.error);

  function onAvatar(file: File | undefined) {
    if (!file) return;
    const preview = URL.createObjectURL(file);
    setAvatar({ preview, state: "Uploading…" });
    uploadMedia(file, newId(), (f) => setAvatar((a) => (a ? { ...a, state: `Uploading ${Math.round(f * 100)}%` } : a)))
      .then((m) => {
        setAvatar((a) => (a ? { ...a, state: "Processing…" } : a));
        return waitUntilReady(m.mediaId);
      })
      .then((m) => setAvatar((a) => (a ? { ...a, mediaId: m.mediaId, state: "Ready" } : a)))
      .catch((e: unknown) => setAvatar((a) => (a ? { ...a, state: humanMessage(e) } : a)));
  }

  const busy = !!avatar && !avatar.mediaId && avatar.state !== "Ready" && !avatar.state.includes(".");
  return (
    <form
      className="flex flex-col gap-4 p-4"
      onSubmit={(e) => {
        e.preventDefault();
        save.mutate();
      }}
    >
      <div className="flex items-center gap-4">
        {avatar ? (
          // eslint-disable-next-line @next/next/no-img-element
          <img src={avatar.preview} alt="" className="h-20 w-20 rounded-full object-cover" width={80} height={80} />
        ) : (
          <Avatar user={user} size="lg" />
        )}
        <div>
          <input id="avatar" type="file" accept="image/*" className="sr-only" onChange={(e) => onAvatar(e.target.files?.[0])} />
          <label htmlFor="avatar" className="btn-secondary cursor-pointer">Change picture</label>
          {avatar ? <p className="mt-1 text-xs text-muted" aria-live="polite">{avatar.state}</p> : null}
        </div>
      </div>
      <div>
        <label htmlFor="displayName" className="label">Display name</label>
        <input id="displayName" className="input" value={displayName} maxLength={50} onChange={(e) => setDisplayName(e.target.value)} aria-invalid={errs.display_name ? true : undefined} />
        {errs.display_name ? <p className="text-sm text-red-700">{errs.display_name}</p> : null}
      </div>
      <div>
        <label htmlFor="bio" className="label">Bio</label>
        <textarea id="bio" className="input min-h-24" value={bio} maxLength={300} onChange={(e) => setBio(e.target.value)} />
      </div>
      {save.error && !Object.keys(errs).length ? <p role="alert" className="text-sm text-red-700">{humanMessage(save.error)}</p> : null}
      <button type="submit" className="btn-primary self-start" disabled={save.isPending || busy}>Save</button>
    </form>
  );
}

export function EditProfileScreen() {
  const user = useSession((s) => s.user);
  return (
    <RequireSession>
      <h1 className="border-b border-line px-4 py-3 text-xl font-bold">Edit profile</h1>
      {user ? <EditProfileForm user={user} /> : null}
    </RequireSession>
  );
}
