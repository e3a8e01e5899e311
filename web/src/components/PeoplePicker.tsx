"use client";
import { useQuery } from "@tanstack/react-query";
import { useId, useState } from "react";
import { api, unwrap } from "@/api/client";
import type { User } from "@/api/types";
import { useDebounced } from "@/hooks/useDebounced";
import { Avatar } from "./Avatar";
import { ErrorState } from "./StatusViews";

const nameOf = (u: Pick<User, "displayName" | "handle">) => u.displayName || `@${u.handle}`;

/**
 * Choosing people for a group: search by name or handle (the people search), add from the
 * results, take back from the chosen list. `exclude`: ids already in (or the caller).
 */
export function PeoplePicker({ chosen, onChange, exclude = [], label = "Search people" }: { chosen: User[]; onChange: (people: User[]) => void; exclude?: readonly string[]; label?: string }) {
  const [text, setText] = useState("");
  const query = useDebounced(text.trim().replace(/^@/, ""), 250);
  const id = useId();
  const results = useQuery({
    queryKey: ["search", "users", query, 8],
    enabled: query.length > 0,
    queryFn: () => unwrap(api.GET("/v1/users:search", { params: { query: { query, pageSize: 8 } } })),
  });
  const taken = new Set([...exclude, ...chosen.map((u) => u.userId)]);
  const found = (results.data?.users ?? []).filter((u) => !taken.has(u.userId));
  return (
    <div>
      {chosen.length ? (
        <ul aria-label="Chosen people" className="mb-2 flex flex-wrap gap-1">
          {chosen.map((u) => (
            <li key={u.userId} className="inline-flex items-center gap-1 rounded-full border border-line py-0.5 pr-1 pl-2 text-sm">
              {nameOf(u)}
              <button type="button" className="rounded-full px-1.5 hover:bg-slate-100 dark:hover:bg-slate-800" aria-label={`Remove ${nameOf(u)}`} onClick={() => onChange(chosen.filter((x) => x.userId !== u.userId))}>
                <span aria-hidden="true">×</span>
              </button>
            </li>
          ))}
        </ul>
      ) : null}
      <label htmlFor={`${id}-q`} className="label">{label}</label>
      <input id={`${id}-q`} type="search" className="input" placeholder="Name or @handle" autoComplete="off" value={text} onChange={(e) => setText(e.target.value)} />
      <div aria-live="polite">
        {results.status === "error" ? <ErrorState error={results.error} /> : null}
        {query && results.isFetching && !results.data ? <p className="p-2 text-sm text-muted">Searching…</p> : null}
        {query && results.data && !found.length ? <p className="p-2 text-sm text-muted">No one else found.</p> : null}
        {found.length ? (
          <ul aria-label="People found" className="mt-1 rounded-lg border border-line">
            {found.map((u) => (
              <li key={u.userId} className="flex items-center gap-3 border-b border-line px-3 py-2 last:border-b-0">
                <Avatar user={u} size="sm" />
                <span className="min-w-0 flex-1">
                  <span className="block truncate font-semibold">{u.displayName || u.handle}</span>
                  <span className="block truncate text-sm text-muted">@{u.handle}</span>
                </span>
                <button type="button" className="btn-secondary px-3 py-1" aria-label={`Add ${nameOf(u)}`} onClick={() => onChange([...chosen, u])}>
                  Add
                </button>
              </li>
            ))}
          </ul>
        ) : null}
      </div>
    </div>
  );
}
