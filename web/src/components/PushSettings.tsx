"use client";
import { humanMessage } from "@/api/errors";
import { PushUnavailable, usePushOnThisDevice } from "@/api/push";
import { useSession } from "@/state/session";

/** Settings' "Notifications on this device": Web Push when the browser and the API offer it. */
export function PushSettings() {
  const userId = useSession((s) => s.userId);
  const { supported, offered, on, toggle } = usePushOnThisDevice(userId);
  if (!supported || !offered) return null;
  const enabled = !!on.data;
  const busy = toggle.isPending || on.isPending;
  const error = toggle.error instanceof PushUnavailable ? toggle.error.message : toggle.error ? humanMessage(toggle.error) : null;
  return (
    <section aria-labelledby="push-title" className="border-b border-line p-4">
      <h2 id="push-title" className="font-semibold">Notifications on this device</h2>
      <label className="mt-2 flex items-center gap-2">
        <input type="checkbox" className="h-5 w-5" checked={enabled} disabled={busy} onChange={(e) => toggle.mutate(e.target.checked)} />
        Notify me about messages and activity while Socialmesh is closed
      </label>
      <p className="text-sm text-muted">Only this browser: turn it on on each device you want notified.</p>
      {error ? <p role="alert" className="text-sm text-red-700">{error}</p> : null}
    </section>
  );
}
