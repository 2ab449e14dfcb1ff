import { limitExceeded } from './errors.js';

/**
 * Token-bucket rate limiter keyed by user or address. Buckets that are full
 * again are dropped on sweep, so memory is bounded by active clients.
 */
export class RateLimiter {
  private buckets = new Map<string, { tokens: number; updated: number }>();
  private lastSweep = Date.now();

  constructor(private readonly perSecond: number, private readonly burst: number, private readonly enabled = true) {}

  /** Take one token for `key` or throw M_LIMIT_EXCEEDED with retry_after_ms. */
  take(key: string, now = Date.now()): void {
    if (!this.enabled) return;
    this.sweep(now);
    const b = this.buckets.get(key) ?? { tokens: this.burst, updated: now };
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.updated) / 1000) * this.perSecond);
    b.updated = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      throw limitExceeded(Math.ceil(((1 - b.tokens) / this.perSecond) * 1000));
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    const refill = (this.burst / this.perSecond) * 1000;
    for (const [k, b] of this.buckets) if (now - b.updated > refill) this.buckets.delete(k);
  }
}
