"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState } from "react";
import type { Conversation, User } from "@/api/types";
import { GROUP_TITLE_MAX } from "@/lib/limits";
import { useSession } from "@/state/session";
import { canManage, canRemove, groupErrorMessage, roleLabel, useAddMembers, useLeaveGroup, useRemoveMember, useRenameGroup } from "@/hooks/useGroups";
import { Avatar } from "./Avatar";
import { PeoplePicker } from "./PeoplePicker";

function Rename({ c }: { c: Conversation }) {
  const [title, setTitle] = useState(c.title ?? "");
  const rename = useRenameGroup(c.conversationId);
  const t = title.trim();
  return (
    <form
      className="flex flex-wrap items-end gap-2"
      onSubmit={(e) => {
        e.preventDefault();
        if (t && t !== c.title) rename.mutate(t);
      }}
    >
      <div className="min-w-0 flex-1">
        <label htmlFor="group-rename" className="label">Group name</label>
        <input id="group-rename" className="input" value={title} maxLength={GROUP_TITLE_MAX} onChange={(e) => setTitle(e.target.value)} />
      </div>
      <button type="submit" className="btn-secondary" disabled={!t || t === c.title || rename.isPending}>Rename</button>
      {rename.error ? <p role="alert" className="w-full text-sm text-red-700 dark:text-red-300">{groupErrorMessage(rename.error)}</p> : null}
      {rename.isSuccess && !rename.isPending ? <p role="status" className="w-full text-sm text-muted">Renamed.</p> : null}
    </form>
  );
}

function AddPeople({ c }: { c: Conversation }) {
  const [people, setPeople] = useState<User[]>([]);
  const add = useAddMembers(c.conversationId);
  return (
    <form
      className="flex flex-col gap-2"
      onSubmit={(e) => {
        e.preventDefault();
        if (people.length) add.mutate(people.map((u) => u.userId), { onSuccess: () => setPeople([]) });
      }}
    >
      <PeoplePicker chosen={people} onChange={setPeople} exclude={c.memberIds ?? (c.members ?? []).map((m) => m.userId)} label="Add people to the group" />
      {add.error ? <p role="alert" className="text-sm text-red-700 dark:text-red-300">{groupErrorMessage(add.error)}</p> : null}
      <div>
        <button type="submit" className="btn-secondary" disabled={!people.length || add.isPending}>
          {people.length ? `Add ${people.length} to the group` : "Add to the group"}
        </button>
      </div>
    </form>
  );
}

/** A group's members (cards with roles) and what the caller's role allows: rename, add, remove, leave. */
export function GroupPanel({ c }: { c: Conversation }) {
  const me = useSession((s) => s.userId);
  const router = useRouter();
  const members = c.members ?? [];
  const myRole = members.find((m) => m.userId === me)?.role;
  const manage = canManage(myRole);
  const remove = useRemoveMember(c.conversationId);
  const leave = useLeaveGroup(c.conversationId);
  const [removing, setRemoving] = useState<string | null>(null);
  const sorted = [...members].sort((a, b) => (a.role === b.role ? 0 : a.role === "MEMBER_ROLE_OWNER" ? -1 : b.role === "MEMBER_ROLE_OWNER" ? 1 : a.role === "MEMBER_ROLE_ADMIN" ? -1 : 1));
  return (
    <section aria-labelledby="group-panel-title" className="flex flex-col gap-4 border-b border-line p-4" data-testid="group-panel">
      <h2 id="group-panel-title" className="text-base font-bold">Group: {members.length} {members.length === 1 ? "member" : "members"}</h2>
      {manage ? <Rename c={c} /> : null}
      <ul aria-label="Members" className="rounded-lg border border-line">
        {sorted.map((m) => {
          const u = m.user;
          const name = u?.displayName || (u?.handle ? `@${u.handle}` : "Someone");
          const self = m.userId === me;
          return (
            <li key={m.userId} className="flex items-center gap-3 border-b border-line px-3 py-2 last:border-b-0" data-testid="member">
              <Avatar user={u} />
              <div className="min-w-0 flex-1">
                {u?.handle ? (
                  <Link href={`/profile?handle=${encodeURIComponent(u.handle)}`} className="block truncate font-semibold hover:underline">{name}{self ? " (you)" : ""}</Link>
                ) : (
                  <span className="block truncate font-semibold">{name}{self ? " (you)" : ""}</span>
                )}
                <span className="block truncate text-sm text-muted">
                  {u?.handle ? `@${u.handle} · ` : ""}
                  {roleLabel(m.role)}
                </span>
              </div>
              {!self && canRemove(myRole, m.role) ? (
                <button
                  type="button"
                  className="btn-ghost text-red-700 dark:text-red-300"
                  aria-label={`Remove ${name} from the group`}
                  disabled={remove.isPending && removing === m.userId}
                  onClick={() => {
                    if (!window.confirm(`Remove ${name} from the group?`)) return;
                    setRemoving(m.userId);
                    remove.mutate(m.userId);
                  }}
                >
                  Remove
                </button>
              ) : null}
            </li>
          );
        })}
      </ul>
      {remove.error ? <p role="alert" className="text-sm text-red-700 dark:text-red-300">{groupErrorMessage(remove.error)}</p> : null}
      {manage ? <AddPeople c={c} /> : <p className="text-sm text-muted">Only the group&apos;s owner and admins can rename it or add and remove people.</p>}
      <div>
        <button
          type="button"
          className="btn-secondary text-red-700 dark:text-red-300"
          disabled={leave.isPending}
          onClick={() => {
            if (!window.confirm("Leave this group? You'll stop getting its messages.")) return;
            leave.mutate(undefined, { onSuccess: () => router.push("/messages") });
          }}
        >
          Leave group
        </button>
        {leave.error ? <p role="alert" className="mt-1 text-sm text-red-700 dark:text-red-300">{groupErrorMessage(leave.error)}</p> : null}
      </div>
    </section>
  );
}
