"use client";
import { useState } from "react";
import { FEED_KINDS } from "@/hooks/data";
import { Composer } from "./Composer";
import { HomeFeed } from "./HomeFeed";
import { RequireSession } from "./RequireSession";

const TABS = [
  { id: "forYou", label: "For you" },
  { id: "following", label: "Following" },
] as const;

/** Home: the composer and the two feed tabs. */
export function HomeScreen() {
  const [tab, setTab] = useState<(typeof TABS)[number]["id"]>("forYou");
  function onKey(e: React.KeyboardEvent) {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const next = tab === "forYou" ? "following" : "forYou";
      setTab(next);
      document.getElementById(`tab-${next}`)?.focus();
    }
  }
  return (
    <RequireSession>
      <h1 className="sr-only">Home</h1>
      <Composer />
      <div role="tablist" aria-label="Feeds" className="sticky top-12 z-10 flex border-b border-line bg-card" onKeyDown={onKey}>
        {TABS.map((t) => (
          <button
            key={t.id}
            id={`tab-${t.id}`}
            role="tab"
            type="button"
            aria-selected={tab === t.id}
            aria-controls={`panel-${t.id}`}
            tabIndex={tab === t.id ? 0 : -1}
            onClick={() => setTab(t.id)}
            className={`flex-1 py-3 text-sm font-semibold ${tab === t.id ? "border-b-4 border-blue-700" : "text-muted"}`}
          >
            {t.label}
          </button>
        ))}
      </div>
      <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`}>
        <HomeFeed key={tab} kind={FEED_KINDS[tab]} />
      </div>
    </RequireSession>
  );
}
