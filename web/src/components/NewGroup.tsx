"use client";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useRef, useState } from "react";
import type { User } from "@/api/types";
import { GROUP_TITLE_MAX } from "@/lib/limits";
import { newId } from "@/lib/format";
import { useSession } from "@/state/session";
import { groupErrorMessage, useCreateGroup } from "@/hooks/useGroups";
import { PeoplePicker } from "./PeoplePicker";

/** /messages?new=group: name a group, choose people, start it. */
export function NewGroup() {
  const me = useSession((s) => s.userId);
  const router = useRouter();
  const [title, setTitle] = useState("");
  const [people, setPeople] = useState<User[]>([]);
  // one id for this form: a retry after a lost answer gets the same group back, not a second one
  const requestId = useRef(newId());
  const create = useCreateGroup();
  const can = people.length > 0 && title.trim().length <= GROUP_TITLE_MAX && !create.isPending;
  return (
    <section aria-labelledby="new-group-title">
      <header className="flex items-center gap-2 border-b border-line px-4 py-3">
        <Link href="/messages" className="btn-ghost" aria-label="Back to messages">←</Link>
        <h1 id="new-group-title" className="text-lg font-bold">New group</h1>
      </header>
      <form
        className="flex flex-col gap-4 p-4"
        onSubmit={(e) => {
          e.preventDefault();
          if (!can) return;
          create.mutate(
            { title: title.trim(), memberIds: people.map((u) => u.userId), requestId: requestId.current },
            { onSuccess: (c) => router.push(`/messages?c=${c.conversationId}`) },
          );
        }}
      >
        <div>
          <label htmlFor="group-title" className="label">Group name</label>
          <input id="group-title" className="input" value={title} maxLength={GROUP_TITLE_MAX} onChange={(e) => setTitle(e.target.value)} placeholder="Optional" />
        </div>
        <PeoplePicker chosen={people} onChange={setPeople} exclude={me ? [me] : []} label="Add people" />
        {create.error ? <p role="alert" className="text-sm text-red-700 dark:text-red-300">{groupErrorMessage(create.error)}</p> : null}
        <div>
          <button type="submit" className="btn-primary" disabled={!can}>
            {create.isPending ? "Creating…" : people.length ? `Create group with ${people.length} ${people.length === 1 ? "person" : "people"}` : "Create group"}
          </button>
        </div>
      </form>
    </section>
  );
}
