import { describe, expect, it, vi } from "vitest";
import { createAuth } from "@/api/auth";

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

const expired = () =>
  json(401, { code: 16, message: "expired", details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "TOKEN_EXPIRED", domain: "x" }] });

function setup(handler: (req: Request, n: number) => Promise<Response> | Response) {
  let n = 0;
  const calls: Request[] = [];
  const fetch = vi.fn(async (req: Request) => {
    calls.push(req);
    return handler(req, n++);
  });
  const auth = createAuth({ base: "http://x", fetch, setTimer: () => 0, clearTimer: () => undefined });
  return { auth, fetch, calls };
}

describe("auth: refresh", () => {
  it("sends the cookie transport header and an empty body, keeps the token in memory", async () => {
    const { auth, calls } = setup(() => json(200, { accessToken: "A1", refreshToken: "", expiresIn: 900 }));
    expect(await auth.refresh()).toBe("A1");
    expect(auth.token()).toBe("A1");
    const req = calls[0]!;
    expect(req.url).toMatch(/\/v1\/auth:refresh$/);
    expect(req.headers.get("x-refresh-token-transport")).toBe("cookie");
    expect(await req.text()).toBe("{}");
    expect(req.credentials).toBe("include");
  });

  it("is single-flight: concurrent callers share one refresh", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { auth, fetch } = setup(async () => {
      await gate;
      return json(200, { accessToken: "A2", expiresIn: 900 });
    });
    const all = Promise.all([auth.refresh(), auth.refresh(), auth.refresh()]);
    release();
    expect(await all).toEqual(["A2", "A2", "A2"]);
    expect(fetch).toHaveBeenCalledTimes(1);
    // a later refresh is a new request
    await auth.refresh();
    expect(fetch).toHaveBeenCalledTimes(2);
  });

  it("a failed refresh signs out", async () => {
    const { auth } = setup(() => json(401, { code: 16, message: "no" }));
    const seen: boolean[] = [];
    auth.subscribe((s) => seen.push(s.signedOut));
    auth.accept({ accessToken: "old", refreshToken: "", expiresIn: 900 } as never);
    expect(await auth.refresh()).toBeNull();
    expect(auth.token()).toBeNull();
    expect(seen.at(-1)).toBe(true);
  });
});

describe("auth: fetch", () => {
  it("adds the bearer token and retries once after TOKEN_EXPIRED with a refreshed token", async () => {
    const { auth, calls } = setup((req) => {
      if (req.url.endsWith("/v1/auth:refresh")) return json(200, { accessToken: "NEW", expiresIn: 900 });
      return req.headers.get("authorization") === "Bearer NEW" ? json(200, { ok: true }) : expired();
    });
    auth.accept({ accessToken: "OLD", expiresIn: 900 } as never);
    const res = await auth.fetch(new Request("http://x/v1/posts", { method: "POST", body: JSON.stringify({ text: "hi" }) }));
    expect(res.status).toBe(200);
    expect(calls.map((c) => c.headers.get("authorization"))).toEqual(["Bearer OLD", null, "Bearer NEW"]);
    // the retried request still has its body
    expect(await calls[2]!.text()).toBe('{"text":"hi"}');
  });

  it("many requests failing at once trigger exactly one refresh", async () => {
    let refreshes = 0;
    const { auth } = setup(async (req) => {
      if (req.url.endsWith("/v1/auth:refresh")) {
        refreshes++;
        await new Promise((r) => setTimeout(r, 5));
        return json(200, { accessToken: "NEW", expiresIn: 900 });
      }
      return req.headers.get("authorization") === "Bearer NEW" ? json(200, {}) : expired();
    });
    auth.accept({ accessToken: "OLD", expiresIn: 900 } as never);
    const results = await Promise.all(Array.from({ length: 5 }, () => auth.fetch(new Request("http://x/v1/feed"))));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(refreshes).toBe(1);
  });

  it("does not refresh after SESSION_ENDED: signs out instead", async () => {
    const { auth, fetch } = setup(() =>
      json(401, { code: 16, details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "SESSION_ENDED" }] }),
    );
    auth.accept({ accessToken: "T", expiresIn: 900 } as never);
    const res = await auth.fetch(new Request("http://x/v1/feed"));
    expect(res.status).toBe(401);
    expect(fetch).toHaveBeenCalledTimes(1);
    expect(auth.token()).toBeNull();
  });

  it("keeps a refresh token from the body in memory only until the cookie transport exists", async () => {
    const { auth, calls } = setup(() => json(200, { accessToken: "B", refreshToken: "R2", expiresIn: 900 }));
    auth.accept({ accessToken: "A", refreshToken: "R1", expiresIn: 900 } as never);
    await auth.refresh();
    expect(JSON.parse(await calls[0]!.text())).toEqual({ refreshToken: "R1" });
  });
});
