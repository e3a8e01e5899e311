/* Socialmesh service worker: shows Web Push notifications (docs/push.md) and opens the app on click.
 * The push body is the server's summary, decrypted by the browser: {kind, title, body, tag, url}. */
"use strict";

self.addEventListener("install", () => {
  self.skipWaiting();
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

function summaryOf(event) {
  try {
    const data = event.data ? event.data.json() : {};
    return typeof data === "object" && data !== null ? data : {};
  } catch {
    return { body: event.data ? event.data.text() : "" };
  }
}

/** Only paths of this app: a push never sends the user to another origin. */
function appUrl(path) {
  const url = new URL(typeof path === "string" && path.startsWith("/") && !path.startsWith("//") ? path : "/", self.location.origin);
  return url.origin === self.location.origin ? url.href : self.location.origin + "/";
}

self.addEventListener("push", (event) => {
  const s = summaryOf(event);
  const title = typeof s.title === "string" && s.title ? s.title : "Socialmesh";
  const options = {
    body: typeof s.body === "string" ? s.body : "",
    tag: typeof s.tag === "string" && s.tag ? s.tag : undefined,
    renotify: Boolean(s.tag),
    icon: "/icon.svg",
    data: { url: appUrl(s.url) },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = (event.notification.data && event.notification.data.url) || self.location.origin + "/";
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const client of windows) {
        if (new URL(client.url).origin === self.location.origin && "focus" in client) {
          await client.focus();
          if ("navigate" in client && client.url !== target) await client.navigate(target).catch(() => undefined);
          return;
        }
      }
      await self.clients.openWindow(target);
    })(),
  );
});
