/** An incremental Server-Sent Events parser: feed it text chunks, get whole events' data back. */
export class SSEParser {
  private buffer = "";
  private data: string[] = [];

  /** Returns the data of every event completed by this chunk (multi-line data joined with "\n"). */
  push(chunk: string): string[] {
    this.buffer += chunk;
    const out: string[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more.
      if (m[0] === "\r" && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      if (line === "") {
        if (this.data.length) out.push(this.data.join("\n"));
        this.data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // comment
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.data.push(value);
    }
    return out;
  }
}

export interface StreamEventLike {
  cursor?: string;
  control?: { kind?: string; retryAfter?: string };
}

export type StreamStatus = "connecting" | "open" | "waiting" | "stopped";

export interface EventStreamOptions<E extends StreamEventLike> {
  url: (since: string | null) => string;
  /** The access token from memory (null: wait until signed in). */
  token: () => string | null;
  /** Called when the server says the token is expiring or answered 401; resolves to a fresh token. */
  refresh: () => Promise<string | null>;
  onEvent: (event: E) => void;
  onSessionEnded?: () => void;
  onResync?: () => void;
  onStatus?: (s: StreamStatus) => void;
  fetch?: typeof fetch;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
  maxBackoffMs?: number;
}

/** Parses "1.5s" (protobuf Duration JSON) into milliseconds. */
export function durationMs(d: string | undefined): number | null {
  if (!d) return null;
  const m = /^(-?\d+(?:\.\d+)?)s$/.exec(d);
  return m ? Math.round(parseFloat(m[1]!) * 1000) : null;
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * A resumable SSE connection over fetch (so the bearer token can be sent from memory):
 * every event's cursor is remembered and a reconnect asks for `since=<last cursor>`,
 * with jittered exponential backoff after failures.
 */
export class EventStream<E extends StreamEventLike> {
  cursor: string | null = null;
  private abort = new AbortController();
  private running = false;
  private failures = 0;

  constructor(private readonly opts: EventStreamOptions<E>) {}

  start(since: string | null = this.cursor): void {
    if (this.running) return;
    this.cursor = since;
    this.running = true;
    this.abort = new AbortController();
    void this.loop();
  }

  stop(): void {
    this.running = false;
    this.abort.abort();
    this.opts.onStatus?.("stopped");
  }

  /** Backoff before attempt n (0-based): 0.5 s doubling up to the cap, full jitter on half of it. */
  backoffMs(n: number): number {
    const cap = this.opts.maxBackoffMs ?? 30_000;
    const base = Math.min(cap, 500 * 2 ** n);
    const rnd = (this.opts.random ?? Math.random)();
    return Math.round(base / 2 + (base / 2) * rnd);
  }

  private async loop(): Promise<void> {
    const doFetch = this.opts.fetch ?? fetch.bind(globalThis);
    const sleep = this.opts.sleep ?? defaultSleep;
    const signal = this.abort.signal;
    while (this.running && !signal.aborted) {
      let waitMs: number | null = null;
      try {
        this.opts.onStatus?.("connecting");
        let token = this.opts.token();
        if (!token) token = await this.opts.refresh();
        if (!token) {
          this.running = false;
          this.opts.onSessionEnded?.();
          break;
        }
        const res = await doFetch(this.opts.url(this.cursor), {
          headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
          signal,
          cache: "no-store",
        });
        if (res.status === 401) {
          const fresh = await this.opts.refresh();
          if (!fresh) {
            this.running = false;
            this.opts.onSessionEnded?.();
            break;
          }
          continue;
        }
        if (!res.ok || !res.body) throw new Error(`stream HTTP ${res.status}`);
        const outcome = await this.read(res.body);
        if (outcome.kind === "ended") {
          this.running = false;
          this.opts.onSessionEnded?.();
          break;
        }
        if (outcome.kind === "expiring") {
          await this.opts.refresh();
          continue;
        }
        if (outcome.kind === "reconnect") waitMs = outcome.afterMs;
        // a plain end of stream: reconnect with the last cursor (after a short backoff if it never opened)
        else if (!outcome.opened) waitMs = this.backoffMs(this.failures++);
      } catch (e) {
        if (signal.aborted) break;
        void e;
        waitMs = this.backoffMs(this.failures++);
      }
      if (waitMs !== null && this.running) {
        this.opts.onStatus?.("waiting");
        await sleep(waitMs, signal);
      }
    }
  }

  private async read(
    body: ReadableStream<Uint8Array>,
  ): Promise<{ kind: "eof"; opened: boolean } | { kind: "reconnect"; afterMs: number } | { kind: "ended" } | { kind: "expiring" }> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    const parser = new SSEParser();
    let opened = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return { kind: "eof", opened };
        for (const data of parser.push(decoder.decode(value, { stream: true }))) {
          let parsed: unknown;
          try {
            parsed = JSON.parse(data);
          } catch {
            continue;
          }
          const ev = unwrapFrame(parsed) as E;
          if (!opened) {
            opened = true;
            this.failures = 0;
            this.opts.onStatus?.("open");
          }
          const kind = ev.control?.kind;
          if (kind === "STREAM_CONTROL_KIND_RESYNC_REQUIRED") {
            if (ev.cursor) this.cursor = ev.cursor;
            this.opts.onResync?.();
            continue;
          }
          if (ev.cursor) this.cursor = ev.cursor;
          if (kind === "STREAM_CONTROL_KIND_RECONNECT") {
            return { kind: "reconnect", afterMs: durationMs(ev.control?.retryAfter) ?? this.backoffMs(0) };
          }
          if (kind === "STREAM_CONTROL_KIND_SESSION_ENDED") return { kind: "ended" };
          if (kind === "STREAM_CONTROL_KIND_TOKEN_EXPIRING") return { kind: "expiring" };
          this.opts.onEvent(ev);
        }
      }
    } finally {
      reader.releaseLock();
    }
  }
}

/** The edge may wrap each streamed message as {"result": ...}; accept both. */
function unwrapFrame(v: unknown): unknown {
  if (typeof v === "object" && v !== null && "result" in v && Object.keys(v).length === 1) {
    return (v as { result: unknown }).result;
  }
  return v;
}
