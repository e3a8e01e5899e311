import { describe, expect, it } from "vitest";
import { ApiError } from "@/api/errors";
import {
  PushUnavailable,
  SERVICE_WORKER_URL,
  savedEndpoint,
  subscribeThisDevice,
  unsubscribeThisDevice,
  vapidKeyBytes,
  type PushDeps,
  type SubscriptionLike,
} from "@/api/push";

// A real VAPID public key shape: 65 bytes, uncompressed P-256 point (0x04 first).
const KEY_BYTES = Uint8Array.from({ length: 65 }, (_, i) => (i === 0 ? 4 : (i * 37) % 256));
const KEY = Buffer.from(KEY_BYTES).toString("base64url");
const OTHER_KEY = Buffer.from(KEY_BYTES.map((b, i) => (i === 0 ? 4 : 255 - b))).toString("base64url");

class FakeSubscription implements SubscriptionLike {
  unsubscribed = false;
  constructor(
    readonly endpoint: string,
    readonly key: Uint8Array,
  ) {}
  get options() {
    return { applicationServerKey: this.key.slice().buffer as ArrayBuffer };
  }
  toJSON() {
    return { endpoint: this.endpoint, keys: { p256dh: "BPub", auth: "c2VjcmV0" } };
  }
  async unsubscribe() {
    this.unsubscribed = true;
    return true;
  }
}

function fakes(opts: { permission?: NotificationPermission; existing?: FakeSubscription; deleteFails?: number } = {}) {
  const calls: string[] = [];
  const store = new Map<string, string>();
  let current: FakeSubscription | null = opts.existing ?? null;
  const made: FakeSubscription[] = [];
  const registration = {
    pushManager: {
      getSubscription: async () => (current && !current.unsubscribed ? current : null),
      subscribe: async (o: { userVisibleOnly: boolean; applicationServerKey: Uint8Array }) => {
        calls.push(`subscribe userVisibleOnly=${o.userVisibleOnly}`);
        current = new FakeSubscription(`https://push.example.com/sub/${made.length + 1}`, o.applicationServerKey);
        made.push(current);
        return current;
      },
    },
  };
  let registered = false;
  const deps: PushDeps = {
    registerWorker: async (url) => {
      calls.push(`register ${url}`);
      registered = true;
    },
    ready: async () => registration,
    existing: async () => (registered || opts.existing ? registration : undefined),
    requestPermission: async () => opts.permission ?? "granted",
    createEndpoint: async (endpoint, keys) => {
      calls.push(`create ${endpoint} ${keys.p256dh} ${keys.auth}`);
      return "900";
    },
    deleteEndpoint: async (id) => {
      calls.push(`delete ${id}`);
      if (opts.deleteFails) throw new ApiError({ status: opts.deleteFails });
    },
    storage: {
      getItem: (k) => store.get(k) ?? null,
      setItem: (k, v) => void store.set(k, v),
      removeItem: (k) => void store.delete(k),
    },
  };
  return { deps, calls, made, store };
}

describe("vapidKeyBytes", () => {
  it("decodes base64url without padding into the key's bytes", () => {
    expect(Array.from(vapidKeyBytes(KEY))).toEqual(Array.from(KEY_BYTES));
    expect(Array.from(vapidKeyBytes("AQID-_8"))).toEqual([1, 2, 3, 251, 255]);
  });
});

describe("subscribeThisDevice", () => {
  it("registers the worker, subscribes with the server's key and posts the subscription", async () => {
    const { deps, calls, made } = fakes();
    expect(await subscribeThisDevice(deps, "7", KEY)).toBe("900");
    expect(calls).toEqual([
      `register ${SERVICE_WORKER_URL}`,
      "subscribe userVisibleOnly=true",
      "create https://push.example.com/sub/1 BPub c2VjcmV0",
    ]);
    expect(Array.from(made[0]!.key)).toEqual(Array.from(KEY_BYTES));
    expect(savedEndpoint(deps, "7")).toBe("900");
    expect(savedEndpoint(deps, "8")).toBeNull(); // another account on this browser
  });

  it("reuses a subscription made with the same key", async () => {
    const existing = new FakeSubscription("https://push.example.com/old", KEY_BYTES);
    const { deps, calls } = fakes({ existing });
    await subscribeThisDevice(deps, "7", KEY);
    expect(calls).not.toContain("subscribe userVisibleOnly=true");
    expect(calls).toContain("create https://push.example.com/old BPub c2VjcmV0");
  });

  it("replaces a subscription made with another server key", async () => {
    const existing = new FakeSubscription("https://push.example.com/old", vapidKeyBytes(OTHER_KEY));
    const { deps, calls } = fakes({ existing });
    await subscribeThisDevice(deps, "7", KEY);
    expect(existing.unsubscribed).toBe(true);
    expect(calls).toContain("create https://push.example.com/sub/1 BPub c2VjcmV0");
  });

  it("stops when permission is refused or the server offers no key", async () => {
    const denied = fakes({ permission: "denied" });
    await expect(subscribeThisDevice(denied.deps, "7", KEY)).rejects.toMatchObject({ reason: "denied" });
    expect(denied.calls).toEqual([]);
    await expect(subscribeThisDevice(fakes().deps, "7", "")).rejects.toBeInstanceOf(PushUnavailable);
  });
});

describe("unsubscribeThisDevice", () => {
  it("unsubscribes in the browser and deletes the endpoint", async () => {
    const { deps, calls, made } = fakes();
    await subscribeThisDevice(deps, "7", KEY);
    await unsubscribeThisDevice(deps, "7");
    expect(made[0]!.unsubscribed).toBe(true);
    expect(calls.at(-1)).toBe("delete 900");
    expect(savedEndpoint(deps, "7")).toBeNull();
  });

  it("treats an endpoint the server already removed as deleted", async () => {
    const { deps } = fakes({ deleteFails: 404 });
    await subscribeThisDevice(deps, "7", KEY);
    await unsubscribeThisDevice(deps, "7");
    expect(savedEndpoint(deps, "7")).toBeNull();
  });

  it("keeps the saved id when the delete fails for another reason", async () => {
    const { deps } = fakes({ deleteFails: 503 });
    await subscribeThisDevice(deps, "7", KEY);
    await expect(unsubscribeThisDevice(deps, "7")).rejects.toBeInstanceOf(ApiError);
    expect(savedEndpoint(deps, "7")).toBe("900");
  });
});
