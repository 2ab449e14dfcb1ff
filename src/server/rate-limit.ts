import { limitExceeded } from './errors.js';

/**
 * Token-bucket rate limiter keyed by user or address. Buckets that are full
 * again are dropped on sweep, so memory is bounded by active clients.
 */
export class RateLimiter {
  private buckets = new Map<string, { tokens: number; updated: number }>();
  private lastSweep = Date.now();
  /** Per-key limits set by an admin (override_ratelimit), replacing the defaults. */
  private overrides = new Map<string, { perSecond: number; burst: number }>();

  constructor(private readonly perSecond: number, private readonly burst: number, private readonly enabled = true) {}

  /** Replace (or with undefined, restore) the limits for one key. A rate or burst of 0 means unlimited, as in Synapse. */
  setOverride(key: string, limit: { perSecond: number; burst: number } | undefined): void {
    if (limit) this.overrides.set(key, limit);
    else this.overrides.delete(key);
    this.buckets.delete(key);
  }

  /** Take one token for `key` or throw M_LIMIT_EXCEEDED with retry_after_ms. */
  take(key: string, now = Date.now()): void {
    if (!this.enabled) return;
    this.sweep(now);
    const o = this.overrides.get(key);
    if (o && (o.perSecond <= 0 || o.burst <= 0)) return;
    const perSecond = o?.perSecond ?? this.perSecond;
    const burst = o?.burst ?? this.burst;
    const b = this.buckets.get(key) ?? { tokens: burst, updated: now };
    b.tokens = Math.min(burst, b.tokens + ((now - b.updated) / 1000) * perSecond);
    b.updated = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      throw limitExceeded(Math.ceil(((1 - b.tokens) / perSecond) * 1000));
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 60_000) return;
    this.lastSweep = now;
    const refill = (this.burst / this.perSecond) * 1000;
    for (const [k, b] of this.buckets) if (!this.overrides.has(k) && now - b.updated > refill) this.buckets.delete(k);
  }
}
