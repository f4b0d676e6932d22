/**
 * The retention purge of the query logs (server/querylog.ts header):
 * every log table is purged of rows older than the retention period, at
 * start and then periodically, with an injected clock; a purge that fails
 * is reported and tried again at the next period.
 */
import type { Logger } from 'pino';
import { loggerOf } from './loghealth.ts';
import { sqliteCode, type Store } from './store.ts';
import { pgCode } from './pg/connect.ts';

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
    /** Where the logs are purged: the data folder's store by default; a shared store's (server/pg/store.ts) asynchronously. */
    private readonly purgeLogs: (cutoff: number) => number | Promise<number> = (cutoff) => this.store.purgeLogs(cutoff),
  ) {}

  /** Deletes rows older than now - retention; returns how many. */
  purge(): number | Promise<number> {
    this.flushAll();
    const cutoff = this.now() - this.retentionMs;
    this.alsoAge(cutoff);
    return this.purgeLogs(cutoff);
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
    const failed = (e: unknown): void => {
      this.lastError = sqliteCode(e) ?? pgCode(e) ?? 'error';
      (this.logger ?? loggerOf(this.store))?.warn({ code: this.lastError }, 'query log retention purge failed: tried again at the next period');
    };
    try {
      const done = this.purge();
      if (typeof done === 'number') this.lastError = undefined;
      else done.then(() => (this.lastError = undefined), failed);
    } catch (e) {
      failed(e);
    }
  }
}
