import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, unwrap } from "./client";
import { ApiError } from "./errors";

/**
 * Web Push on this device (docs/push.md): the service worker (`/sw.js`), the browser's
 * subscription, and its push endpoint on the server. The logic takes its browser and API
 * parts as `PushDeps`, so tests drive it with fakes; `browserPushDeps` gives the real ones.
 */

export const SERVICE_WORKER_URL = "/sw.js";
const STORAGE_PREFIX = "socialmesh.pushEndpoint.";

/** A browser subscription as `PushSubscription.toJSON()` gives it. */
export interface SubscriptionJSON {
  endpoint?: string;
  keys?: Record<string, string>;
}

export interface SubscriptionLike {
  options?: { applicationServerKey?: ArrayBuffer | null };
  toJSON(): SubscriptionJSON;
  unsubscribe(): Promise<boolean>;
}

export interface RegistrationLike {
  pushManager: {
    getSubscription(): Promise<SubscriptionLike | null>;
    subscribe(options: { userVisibleOnly: boolean; applicationServerKey: Uint8Array<ArrayBuffer> }): Promise<SubscriptionLike>;
  };
}

export interface PushDeps {
  registerWorker(url: string): Promise<unknown>;
  /** The active registration (waits for the worker to activate). */
  ready(): Promise<RegistrationLike>;
  /** The registration if one exists, without registering. */
  existing(): Promise<RegistrationLike | undefined>;
  requestPermission(): Promise<NotificationPermission>;
  createEndpoint(endpoint: string, keys: { p256dh: string; auth: string }): Promise<string>;
  deleteEndpoint(pushEndpointId: string): Promise<void>;
  storage: Pick<Storage, "getItem" | "setItem" | "removeItem">;
}

export class PushUnavailable extends Error {
  constructor(
    message: string,
    readonly reason: "unsupported" | "denied" | "not-offered",
  ) {
    super(message);
    this.name = "PushUnavailable";
  }
}

/** `applicationServerKey` bytes from the base64url key of `GET /v1/push:config`. */
export function vapidKeyBytes(base64url: string): Uint8Array<ArrayBuffer> {
  const base64 = (base64url + "=".repeat((4 - (base64url.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(base64);
  const bytes = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function sameKey(a: ArrayBuffer | null | undefined, b: Uint8Array): boolean {
  if (!a) return true; // the browser does not say: assume it is ours
  const x = new Uint8Array(a);
  return x.length === b.length && x.every((v, i) => v === b[i]);
}

const storageKey = (userId: string) => STORAGE_PREFIX + userId;

/** The push endpoint id this device registered for `userId`, if any. */
export function savedEndpoint(deps: Pick<PushDeps, "storage">, userId: string): string | null {
  return deps.storage.getItem(storageKey(userId));
}

/**
 * Turns push on for this device: permission, service worker, subscription (a fresh one if
 * the server's key changed), then the endpoint on the server. Returns its id.
 */
export async function subscribeThisDevice(deps: PushDeps, userId: string, vapidPublicKey: string): Promise<string> {
  if (!vapidPublicKey) throw new PushUnavailable("This server does not offer notifications.", "not-offered");
  const permission = await deps.requestPermission();
  if (permission !== "granted") throw new PushUnavailable("Notifications are blocked for this site in your browser.", "denied");
  await deps.registerWorker(SERVICE_WORKER_URL);
  const registration = await deps.ready();
  const key = vapidKeyBytes(vapidPublicKey);
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options?.applicationServerKey, key)) {
    await subscription.unsubscribe();
    subscription = null;
  }
  subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const json = subscription.toJSON();
  if (!json.endpoint || !json.keys?.p256dh || !json.keys?.auth) {
    throw new PushUnavailable("This browser gave an incomplete push subscription.", "unsupported");
  }
  const id = await deps.createEndpoint(json.endpoint, { p256dh: json.keys.p256dh, auth: json.keys.auth });
  deps.storage.setItem(storageKey(userId), id);
  return id;
}

/** Turns push off for this device: unsubscribes in the browser and deletes the endpoint. */
export async function unsubscribeThisDevice(deps: PushDeps, userId: string): Promise<void> {
  const registration = await deps.existing();
  const subscription = await registration?.pushManager.getSubscription();
  await subscription?.unsubscribe();
  const id = savedEndpoint(deps, userId);
  if (id) {
    try {
      await deps.deleteEndpoint(id);
    } catch (err) {
      // Already gone (the server removes expired subscriptions): nothing left to do.
      if (!(err instanceof ApiError && err.status === 404)) throw err;
    }
  }
  deps.storage.removeItem(storageKey(userId));
}

/** Whether this browser can do Web Push at all (service workers, Push API, notifications). */
export function pushSupported(): boolean {
  return (
    typeof window !== "undefined" &&
    typeof navigator !== "undefined" &&
    "serviceWorker" in navigator &&
    "PushManager" in window &&
    "Notification" in window &&
    window.isSecureContext
  );
}

export function browserPushDeps(): PushDeps {
  return {
    registerWorker: (url) => navigator.serviceWorker.register(url, { scope: "/" }),
    ready: () => navigator.serviceWorker.ready,
    existing: () => navigator.serviceWorker.getRegistration("/"),
    requestPermission: () => Notification.requestPermission(),
    createEndpoint: async (endpoint, keys) => {
      const created = await unwrap(
        api.POST("/v1/pushEndpoints", {
          body: { kind: "PUSH_ENDPOINT_KIND_WEB_PUSH", url: endpoint, webPushKeys: keys, deviceToken: "" },
        }),
      );
      return created.pushEndpointId;
    },
    deleteEndpoint: async (pushEndpointId) => {
      await unwrap(api.DELETE("/v1/pushEndpoints/{pushEndpointId}", { params: { path: { pushEndpointId } } }));
    },
    storage: window.localStorage,
  };
}

export const pushKeys = {
  config: ["push", "config"] as const,
  device: (userId: string) => ["push", "device", userId] as const,
};

/** Settings' "Notifications on this device": the server's offer, this device's state, on/off. */
export function usePushOnThisDevice(userId: string | null) {
  const qc = useQueryClient();
  const supported = pushSupported();
  const config = useQuery({
    queryKey: pushKeys.config,
    enabled: supported,
    staleTime: 60 * 60 * 1000,
    queryFn: () => unwrap(api.GET("/v1/push:config")),
  });
  const on = useQuery({
    queryKey: pushKeys.device(userId ?? ""),
    enabled: supported && !!userId,
    queryFn: async () => {
      const deps = browserPushDeps();
      if (Notification.permission !== "granted" || !savedEndpoint(deps, userId!)) return false;
      const registration = await deps.existing();
      return !!(await registration?.pushManager.getSubscription());
    },
  });
  const toggle = useMutation({
    mutationFn: async (enable: boolean) => {
      const deps = browserPushDeps();
      if (enable) await subscribeThisDevice(deps, userId!, config.data?.vapidPublicKey ?? "");
      else await unsubscribeThisDevice(deps, userId!);
      return enable;
    },
    onSettled: () => qc.invalidateQueries({ queryKey: pushKeys.device(userId ?? "") }),
  });
  const offered = supported && !!config.data?.vapidPublicKey;
  return { supported, offered, config, on, toggle };
}
