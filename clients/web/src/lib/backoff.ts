/**
 * Reconnection policy: exponential with factor 2 and full jitter. The delay
 * before retry n (from 0) is uniform in [0, ceiling(n)], where
 * ceiling(n) = min(maxMs, baseMs * 2^n).
 */
export class Backoff {
  readonly baseMs: number;
  readonly maxMs: number;

  constructor(baseMs = 250, maxMs = 30_000) {
    if (!(baseMs > 0) || !(maxMs >= baseMs)) {
      throw new RangeError(`backoff needs 0 < base <= max, got ${baseMs} and ${maxMs}`);
    }
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }

  /** The longest delay before retry n (counted from 0). */
  ceiling(n: number): number {
    let d = this.baseMs;
    for (let i = 0; i < n && d < this.maxMs; i++) d *= 2;
    return Math.min(d, this.maxMs);
  }

  /** A random delay before retry n, uniform in [0, ceiling(n)]; random() is in [0, 1). */
  delay(n: number, random: () => number = Math.random): number {
    const c = this.ceiling(n);
    return Math.min(c, Math.floor(random() * (c + 1)));
  }
}
