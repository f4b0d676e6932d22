/**
 * The retention purge of the query logs (server/querylog.ts header):
 * every log table is purged of rows older than the retention period, at
 * start and then periodically, with an injected clock; a purge that fails
 * is reported and tried again at the next period.
 */
import type { Logger } from 'pino';
import { loggerOf } from './loghealth.ts';
import { sqliteCode, type Store } from './store.ts';

export const DAY_MS = 24 * 60 * 60 * 1000;

export class Retention {
  private timer: NodeJS.Timeout | undefined;
  /** SQLite code of the last purge that failed, until one succeeds. */
  lastError: string | undefined;

  constructor(
    private readonly store: Store,
    readonly retentionMs: number,
    private readonly now: () => number,
    private readonly flushAll: () => void = () => {},
    private readonly logger?: Logger,
    /** State outside the logs kept no longer than they are (the rate limits' rows: server/ratelimit.ts RateLimiter.age). */
    private readonly alsoAge: (cutoff: number) => void = () => {},
  ) {}

  /** Deletes rows older than now - retention; returns how many. */
  purge(): number {
    this.flushAll();
    const cutoff = this.now() - this.retentionMs;
    this.alsoAge(cutoff);
    return this.store.purgeLogs(cutoff);
  }

  /** Purges now and then every `everyMs`; a purge that fails (full disk) is reported and retried at the next period, never thrown. */
  start(everyMs = 60 * 60 * 1000): void {
    this.safePurge();
    this.timer = setInterval(() => this.safePurge(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private safePurge(): void {
    try {
      this.purge();
      this.lastError = undefined;
    } catch (e) {
      this.lastError = sqliteCode(e) ?? 'error';
      (this.logger ?? loggerOf(this.store))?.warn({ code: this.lastError }, 'query log retention purge failed: tried again at the next period');
    }
  }
}
