import { describe, expect, test } from "vitest";
import { Backoff } from "../../src/lib/backoff";

describe("Backoff", () => {
  test("ceiling doubles from base and stops at max", () => {
    const b = new Backoff(250, 30_000);
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 50, 1000].map((n) => b.ceiling(n))).toEqual([
      250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000,
    ]);
  });

  test("delay is full jitter: uniform in [0, ceiling]", () => {
    const b = new Backoff(100, 5000);
    expect(b.delay(0, () => 0)).toBe(0);
    expect(b.delay(0, () => 0.999999)).toBe(100);
    expect(b.delay(3, () => 0.5)).toBe(400);
    expect(b.delay(99, () => 0.999999)).toBe(5000);
    for (let n = 0; n < 10; n++) {
      const c = b.ceiling(n);
      const samples = Array.from({ length: 2000 }, () => b.delay(n));
      expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...samples)).toBeLessThanOrEqual(c);
      // Jittered: spread over the whole range, centred on half the ceiling.
      expect(new Set(samples).size).toBeGreaterThan(Math.min(c, 2000) / 4);
      const mean = samples.reduce((a, x) => a + x, 0) / samples.length;
      expect(mean).toBeGreaterThan(c * 0.4);
      expect(mean).toBeLessThan(c * 0.6);
      expect(Math.max(...samples)).toBeGreaterThan(c * 0.9);
      expect(Math.min(...samples)).toBeLessThan(c * 0.1);
    }
  });

  test("rejects bad bounds", () => {
    expect(() => new Backoff(0, 10)).toThrow(RangeError);
    expect(() => new Backoff(100, 50)).toThrow(RangeError);
  });
});
