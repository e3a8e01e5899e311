import { describe, expect, it } from "vitest";
import { EventStream, SSEParser, durationMs } from "@/api/sse";

describe("SSEParser", () => {
  it("joins chunks, handles CRLF, comments and multi-line data", () => {
    const p = new SSEParser();
    expect(p.push('data: {"a"')).toEqual([]);
    expect(p.push(':1}\n\n')).toEqual(['{"a":1}']);
    expect(p.push(": comment\r\ndata: x\r\ndata: y\r\n\r\n")).toEqual(["x\ny"]);
    expect(p.push("event: ping\nid: 3\n\n")).toEqual([]);
    expect(p.push("data:no-space\n\ndata: b\r")).toEqual(["no-space"]);
    expect(p.push("\n\r\n")).toEqual(["b"]);
  });
});

describe("durationMs", () => {
  it("reads protobuf durations", () => {
    expect(durationMs("1.5s")).toBe(1500);
    expect(durationMs("20s")).toBe(20000);
    expect(durationMs(undefined)).toBeNull();
  });
});

function sseBody(frames: unknown[], end = true): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const f of frames) c.enqueue(enc.encode(`data: ${JSON.stringify(f)}\n\n`));
      if (end) c.close();
    },
  });
}

describe("EventStream", () => {
  it("resumes with the last cursor after a drop, and obeys RECONNECT", async () => {
    const urls: string[] = [];
    const got: string[] = [];
    const sleeps: number[] = [];
    let n = 0;
    let stream!: EventStream<{ cursor?: string; control?: { kind?: string; retryAfter?: string }; message?: { text: string } }>;
    const done = new Promise<void>((resolve) => {
      stream = new EventStream({
        url: (since) => `/v1/events:stream${since ? `?since=${since}` : ""}`,
        token: () => "T",
        refresh: async () => "T",
        onEvent: (e) => {
          if (e.message) got.push(e.message.text);
          if (got.length === 3) {
            stream.stop();
            resolve();
          }
        },
        sleep: async (ms) => {
          sleeps.push(ms);
        },
        random: () => 0,
        fetch: (async (url: string, init: RequestInit) => {
          urls.push(url);
          expect((init.headers as Record<string, string>).authorization).toBe("Bearer T");
          n++;
          if (n === 1) {
            return new Response(sseBody([
              { cursor: "c1.1", control: { kind: "STREAM_CONTROL_KIND_HELLO" } },
              { cursor: "c1.2", message: { text: "one" } },
            ]));
          }
          if (n === 2) {
            return new Response(sseBody([
              { cursor: "c1.3", message: { text: "two" } },
              { cursor: "c1.4", control: { kind: "STREAM_CONTROL_KIND_RECONNECT", retryAfter: "1.5s" } },
            ]));
          }
          return new Response(sseBody([{ cursor: "c1.5", message: { text: "three" } }], false));
        }) as typeof fetch,
      });
      stream.start();
    });
    await done;
    expect(got).toEqual(["one", "two", "three"]);
    expect(urls).toEqual(["/v1/events:stream", "/v1/events:stream?since=c1.2", "/v1/events:stream?since=c1.4"]);
    expect(sleeps).toEqual([1500]);
    expect(stream.cursor).toBe("c1.5");
  });

  it("backs off exponentially (with jitter) when the connection fails, and refreshes on 401", async () => {
    const sleeps: number[] = [];
    let n = 0;
    let refreshed = 0;
    let stream!: EventStream<{ cursor?: string; message?: { text: string } }>;
    await new Promise<void>((resolve) => {
      stream = new EventStream({
        url: () => "/s",
        token: () => "T",
        refresh: async () => {
          refreshed++;
          return "T2";
        },
        onEvent: () => {
          stream.stop();
          resolve();
        },
        sleep: async (ms) => {
          sleeps.push(ms);
        },
        random: () => 1,
        fetch: (async () => {
          n++;
          if (n <= 3) throw new TypeError("network");
          if (n === 4) return new Response("", { status: 401 });
          return new Response(sseBody([{ cursor: "c1.9", message: { text: "x" } }], false));
        }) as typeof fetch,
      });
      stream.start();
    });
    expect(sleeps).toEqual([500, 1000, 2000]);
    expect(refreshed).toBe(1);
  });

  it("stops and reports SESSION_ENDED", async () => {
    let ended = false;
    const stream = new EventStream({
      url: () => "/s",
      token: () => "T",
      refresh: async () => "T",
      onEvent: () => undefined,
      onSessionEnded: () => {
        ended = true;
      },
      fetch: (async () => new Response(sseBody([{ cursor: "c1.1", control: { kind: "STREAM_CONTROL_KIND_SESSION_ENDED" } }]))) as typeof fetch,
    });
    stream.start();
    await new Promise((r) => setTimeout(r, 20));
    expect(ended).toBe(true);
  });
});
