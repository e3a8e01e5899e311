import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { humanMessage, toApiError } from "@/api/errors";

// The client module reads its base at import: an absolute one (Node has no page origin).
vi.stubEnv("NEXT_PUBLIC_API_BASE", "http://api.test");
let client: typeof import("@/api/client");
beforeAll(async () => {
  client = await import("@/api/client");
});

afterEach(() => {
  vi.unstubAllGlobals();
  client.auth.clear();
});

describe("api calls during a session restore", () => {
  it("wait for the restored token instead of going out without one (a 401)", async () => {
    const { api, auth, holdCallsUntil } = client;
    const seen: (string | null)[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (req: Request) => {
        seen.push(req.headers.get("authorization"));
        return new Response(JSON.stringify({ userId: "1" }), { status: 200, headers: { "content-type": "application/json" } });
      }),
    );
    let finish: () => void = () => undefined;
    const restore = new Promise<void>((resolve) => {
      finish = () => {
        auth.accept({ accessToken: "RESTORED", refreshToken: "", expiresIn: 0 } as Parameters<typeof auth.accept>[0]);
        resolve();
      };
    });
    holdCallsUntil(restore);
    const call = api.GET("/v1/auth:caller");
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([]); // held
    finish();
    await call;
    expect(seen).toEqual(["Bearer RESTORED"]);
  });

  it("go out at once when no restore is running, and after a failed one", async () => {
    const { api, holdCallsUntil } = client;
    const seen: (string | null)[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (req: Request) => {
        seen.push(req.headers.get("authorization"));
        return new Response("{}", { status: 200, headers: { "content-type": "application/json" } });
      }),
    );
    holdCallsUntil(Promise.reject(new Error("offline")));
    await api.GET("/v1/auth:caller");
    await api.GET("/v1/auth:caller");
    expect(seen).toEqual([null, null]);
  });
});

describe("a used verification link", () => {
  it("says why in words", () => {
    const err = toApiError(400, {
      code: 3,
      message: "invalid request",
      details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "VERIFICATION_TOKEN_INVALID", domain: "socialmesh.dev" }],
    });
    expect(humanMessage(err)).toMatch(/already used/);
  });
});
