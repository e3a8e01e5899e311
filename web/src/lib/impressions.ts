import type { Impression } from "@/api/types";

export interface ImpressionSink {
  (batch: Impression[]): Promise<void>;
}

/**
 * Collects impressions (a post at least half visible for 2 s) and sends them in batches:
 * when `maxBatch` are waiting, or on flush() (a timer and page hide call it). Each
 * (surface, post, tracking token) is recorded once per page load.
 */
export class ImpressionQueue {
  private pending: Impression[] = [];
  private seen = new Set<string>();
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly sink: ImpressionSink,
    private readonly maxBatch = 20,
  ) {}

  add(imp: Impression): boolean {
    const key = `${imp.surface}|${imp.postId}|${imp.trackingToken}`;
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    this.pending.push(imp);
    if (this.pending.length >= this.maxBatch) void this.flush();
    return true;
  }

  get size(): number {
    return this.pending.length;
  }

  flush(): Promise<void> {
    if (!this.pending.length) return this.sending;
    const batch = this.pending;
    this.pending = [];
    this.sending = this.sending
      .then(() => this.sink(batch))
      .catch(() => {
        // A failed batch is dropped: impressions are best effort and must not pile up.
      });
    return this.sending;
  }
}

/** Watches an element: calls `onSeen` once it has been at least half visible for `ms` without a break. */
export class VisibilityTimer {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private done = false;

  constructor(
    private readonly ms: number,
    private readonly onSeen: (dwellMs: number) => void,
  ) {}

  update(ratio: number): void {
    if (this.done) return;
    if (ratio >= 0.5) {
      if (this.timer === null) {
        this.timer = setTimeout(() => {
          this.done = true;
          this.timer = null;
          this.onSeen(this.ms);
        }, this.ms);
      }
    } else this.cancel();
  }

  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
