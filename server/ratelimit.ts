/**
 * Per-requester token bucket over lookups (numbers, hashes or blinded
 * elements), refilled continuously at `perMinute`. It is what bounds a
 * requester's use of the server as an enumeration oracle: in the blinded
 * design the server cannot see what is asked, only how much.
 */
import { ErrorCode, PcdError } from '../shared/errors.ts';

export class RateLimiter {
  private readonly buckets = new Map<number, { tokens: number; at: number }>();

  constructor(
    readonly perMinute: number,
    private readonly now: () => number,
    /** Burst: how many lookups a requester may make at once (default one minute's worth). */
    readonly burst = perMinute,
  ) {}

  /** Takes `cost` tokens for `accountId` or throws rate_limited. */
  take(accountId: number, cost: number): void {
    const t = this.now();
    const b = this.buckets.get(accountId) ?? { tokens: this.burst, at: t };
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.perMinute) / 60_000);
    b.at = t;
    if (cost > b.tokens) {
      this.buckets.set(accountId, b);
      const wait = Math.ceil(((cost - b.tokens) * 60_000) / this.perMinute / 1000);
      throw new PcdError(
        ErrorCode.RateLimited,
        cost > this.burst
          ? `a request of ${cost} lookups exceeds the limit of ${this.burst} per minute`
          : `rate limit of ${this.perMinute} lookups per minute reached: retry in ${wait} s`,
      );
    }
    b.tokens -= cost;
    this.buckets.set(accountId, b);
  }
}
