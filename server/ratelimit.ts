/**
 * Rate limits, on by default (docs/protocol.md): what bounds one account's use
 * of the server as an enumeration oracle, and one IP's share of the server.
 *
 * ## Per requester: a token bucket counted in lookups
 *
 * A lookup is a number (plain), a hash (hashed) or a blinded element
 * (blinded): the blinded server cannot tell a repeat from a new number, so
 * every one counts, in every design alike. A new account starts with a
 * large allowance (`requesterBurst`, default 50,000: an initial contact
 * sync of a big address book) that refills slowly (`requesterPerHour`,
 * default 5 an hour, 120 a day: the numbers a person adds), never above the
 * allowance. In the spirit of Signal's contact discovery limits: tens of
 * thousands first, a few an hour after. So one account can test at most
 * 50,120 numbers on its first day and 120 a day after, in any design.
 *
 * A request is charged before its handler runs and refunded when the
 * handler refuses it (a 4xx such as an invalid element, or a 503): only
 * requests that pass validation and are answered cost anything, and
 * concurrent requests cannot overdraw the allowance between check and
 * charge.
 *
 * The state is persisted (table `rate_limits`: account id, tokens, day),
 * written in batches every second and on close, so a restart gives no one
 * a fresh allowance; a crash forgets at most the last second of charges.
 * An account at its full allowance has no row. A failed write (disk full)
 * is kept and retried, never thrown.
 *
 * What a row keeps is only what the quota needs, and no activity trace:
 * the time of an account's last request would be one (a pen-register
 * order's "when"), so a row holds the allowance as it stood at the start of
 * that request's day (UTC), which may be negative, and the day. Refilling
 * from the day's start gives exactly the allowance of the last request, so
 * nothing is lost, and the row says no more than the issuance log does
 * (account and day). Rows whose day is older than the logs' retention are
 * moved forward to today ({@link RateLimiter.age}, run by the retention
 * purge, server/querylog.ts), so no row outlives the retention either.
 *
 * On a shared store (several nodes), the allowances are every node's: each
 * node charges in memory and syncs its spends once a second with the
 * others' (server/pg/ratelimits.ts, which says the bound on overshoot).
 *
 * ## Per IP: a request rate on every endpoint
 *
 * Every request, the anonymous ones (config, buckets, health) and the ones
 * that fail authentication included, takes one token from its IP's bucket
 * (`ipPerMinute`, default 6,000 a minute, with as large a burst). It keeps
 * one address from taking the server for itself and bounds token guessing.
 * It is kept in memory only: it refills within a minute, and persisting it
 * would put every client's IP on disk in one more place.
 *
 * Refusals are 429 `rate_limited` with Retry-After: the seconds until the
 * request would fit. `pcd serve --no-rate-limit` (ServerOptions.rateLimits
 * false) turns both off for benchmarks and scripted research runs.
 */
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { ErrorCode, PcdError } from '../shared/errors.ts';

/** What a node's RateLimiter needs of a shared store (server/pg/ratelimits.ts PgAllowances implements it). */
export interface SharedAllowances {
  /** Applies each account's spend (lookups, refunds subtracted) at `t`; returns each one's allowance left at `t`, over all nodes. */
  sync(t: number, spent: ReadonlyMap<number, number>): Promise<Map<number, number>>;
}

export interface RateLimits {
  /** Lookups a new account may make at once: the allowance for an initial contact sync. */
  requesterBurst: number;
  /** Lookups given back per hour, up to the burst. */
  requesterPerHour: number;
  /** Requests per minute per IP, on every endpoint (the burst is as large). */
  ipPerMinute: number;
}

export const DEFAULT_RATE_LIMITS: Readonly<RateLimits> = {
  requesterBurst: 50_000,
  requesterPerHour: 5,
  ipPerMinute: 6_000,
};

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;
/** Per-IP entries kept before a sweep drops the full ones early. */
const MAX_IP_ENTRIES = 100_000;

interface Bucket {
  tokens: number;
  at: number;
}

/** What a request was charged, to give back if it is refused. */
export interface Charge {
  readonly accountId: number;
  readonly cost: number;
}

/** Checks the limits' numbers; a bad one is a one-line error naming it. */
export function checkRateLimits(limits: RateLimits): RateLimits {
  for (const [k, v] of Object.entries(limits)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new PcdError(ErrorCode.InvalidField, `rate limit ${k} must be a positive number, got ${String(v)}`);
  }
  return limits;
}

export class RateLimiter {
  private readonly accounts = new Map<number, Bucket>();
  private readonly dirty = new Set<number>();
  private readonly ips = new Map<string, Bucket>();
  private readonly timer: NodeJS.Timeout;
  private readonly stmts;
  private failing = false;
  private closed = false;

  /** Shared mode: each account's net spend since its last sync with the other nodes (server/pg/ratelimits.ts). */
  private readonly unsynced = new Map<number, number>();
  private syncing: Promise<void> | undefined;

  constructor(
    readonly limits: RateLimits,
    private readonly now: () => number,
    private readonly db: Database.Database,
    private readonly logger?: Logger,
    flushEveryMs = 1000,
    /** The allowances every node of a shared store draws on (server/pg/ratelimits.ts: the bound on overshoot); absent: this node's alone. */
    private readonly shared?: SharedAllowances,
  ) {
    checkRateLimits(limits);
    db.exec('CREATE TABLE IF NOT EXISTS rate_limits (account_id INTEGER PRIMARY KEY, tokens REAL NOT NULL, at INTEGER NOT NULL)');
    this.stmts = {
      get: db.prepare<[number], { tokens: number; at: number }>('SELECT tokens, at FROM rate_limits WHERE account_id = ?'),
      put: db.prepare<[number, number, number]>(
        'INSERT INTO rate_limits (account_id, tokens, at) VALUES (?, ?, ?) ON CONFLICT(account_id) DO UPDATE SET tokens = excluded.tokens, at = excluded.at',
      ),
      del: db.prepare<[number]>('DELETE FROM rate_limits WHERE account_id = ?'),
    };
    this.timer = setInterval(() => {
      void this.syncShared();
      this.flush();
      this.sweep();
    }, flushEveryMs);
    this.timer.unref();
  }

  private refilled(b: Bucket, t: number, perMs: number, burst: number): void {
    if (t > b.at) b.tokens = Math.min(burst, b.tokens + (t - b.at) * perMs);
    b.at = Math.max(b.at, t);
  }

  private account(accountId: number, t: number): Bucket {
    let b = this.accounts.get(accountId);
    if (!b) {
      const row = this.stmts.get.get(accountId);
      b = row ? { tokens: row.tokens, at: row.at } : { tokens: this.limits.requesterBurst, at: t };
      this.accounts.set(accountId, b);
      if (row) this.dirty.add(accountId); // rewritten (or deleted, once full) at the next flush
    }
    this.refilled(b, t, this.limits.requesterPerHour / HOUR_MS, this.limits.requesterBurst);
    return b;
  }

  /** Lookups `accountId` may make now (for tests and the operator). */
  available(accountId: number): number {
    return this.account(accountId, this.now()).tokens;
  }

  /** Takes `cost` lookups from the account's allowance, or throws 429 rate_limited with Retry-After. */
  take(accountId: number, cost: number): Charge {
    const { requesterBurst: burst, requesterPerHour: perHour } = this.limits;
    if (cost > burst) {
      throw new PcdError(ErrorCode.RateLimited, `a request of ${cost} lookups exceeds the allowance of ${burst}: send smaller batches`, {
        retryAfterSeconds: 3600,
      });
    }
    const b = this.account(accountId, this.now());
    if (cost > b.tokens) {
      const seconds = ((cost - b.tokens) / perHour) * 3600;
      throw new PcdError(
        ErrorCode.RateLimited,
        `lookup allowance used up: ${Math.floor(b.tokens)} of ${burst} left, ${perHour} come back per hour; this request of ${cost} fits in ${formatWait(seconds)}`,
        { retryAfterSeconds: seconds },
      );
    }
    b.tokens -= cost;
    this.dirty.add(accountId);
    this.spend(accountId, cost);
    return { accountId, cost };
  }

  /** Gives a refused request's lookups back. */
  refund(charge: Charge): void {
    const b = this.account(charge.accountId, this.now());
    b.tokens = Math.min(this.limits.requesterBurst, b.tokens + charge.cost);
    this.dirty.add(charge.accountId);
    this.spend(charge.accountId, -charge.cost);
  }

  private spend(accountId: number, lookups: number): void {
    if (this.shared) this.unsynced.set(accountId, (this.unsynced.get(accountId) ?? 0) + lookups);
  }

  /**
   * Shared mode: sends the spends since the last sync and takes each
   * account's allowance over all nodes, less what was spent here meanwhile.
   * A failure keeps the spends for the next sync; nothing is thrown.
   */
  syncShared(): Promise<void> {
    if (!this.shared || this.unsynced.size === 0) return this.syncing ?? Promise.resolve();
    if (this.syncing) return this.syncing;
    const sent = new Map(this.unsynced);
    this.unsynced.clear();
    const t = this.now();
    this.syncing = this.shared
      .sync(t, sent)
      .then(
        (left) => {
          for (const [id, tokens] of left) {
            if (!this.accounts.has(id)) continue; // forgotten meanwhile (deleted)
            this.accounts.set(id, { tokens: tokens - (this.unsynced.get(id) ?? 0), at: t });
            this.dirty.add(id);
          }
        },
        (e: unknown) => {
          for (const [id, n] of sent) this.unsynced.set(id, (this.unsynced.get(id) ?? 0) + n);
          this.logger?.warn({ err: (e as Error).message }, 'the shared allowances could not be synced; this node limits alone until they are');
        },
      )
      .finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  /** Takes one request from `ip`'s bucket, or throws 429 rate_limited with Retry-After. */
  takeIp(ip: string): void {
    const t = this.now();
    const per = this.limits.ipPerMinute;
    let b = this.ips.get(ip);
    if (!b) {
      if (this.ips.size >= MAX_IP_ENTRIES) this.sweep();
      b = { tokens: per, at: t };
      this.ips.set(ip, b);
    }
    this.refilled(b, t, per / MINUTE_MS, per);
    if (b.tokens < 1) {
      const seconds = ((1 - b.tokens) / per) * 60;
      throw new PcdError(ErrorCode.RateLimited, `too many requests from this address: ${per} a minute; retry in ${formatWait(seconds)}`, {
        retryAfterSeconds: seconds,
      });
    }
    b.tokens -= 1;
  }

  /** Forgets an account's state (its account was deleted). */
  forget(accountId: number): void {
    this.accounts.delete(accountId);
    this.unsynced.delete(accountId);
    this.dirty.add(accountId);
  }

  /**
   * Writes changed accounts in one transaction; a full allowance is no row.
   * A failure (disk full, I/O error) keeps them for the next try.
   */
  flush(): void {
    if (this.dirty.size === 0 || !this.db.open) return;
    const t = this.now();
    const ids = [...this.dirty];
    try {
      this.db.transaction(() => {
        for (const id of ids) {
          const b = this.accounts.get(id);
          if (b) this.refilled(b, t, this.limits.requesterPerHour / HOUR_MS, this.limits.requesterBurst);
          if (!b || b.tokens >= this.limits.requesterBurst) this.stmts.del.run(id);
          else {
            // The allowance at the start of the day, not the time of the request (module header).
            const day = Math.floor(b.at / DAY_MS) * DAY_MS;
            this.stmts.put.run(id, b.tokens - (b.at - day) * (this.limits.requesterPerHour / HOUR_MS), day);
          }
        }
      })();
      for (const id of ids) this.dirty.delete(id);
      if (this.failing) this.logger?.warn('rate limit state written again');
      this.failing = false;
    } catch (e) {
      if (!this.failing) this.logger?.warn({ code: (e as { code?: string }).code }, 'rate limit state could not be written; kept in memory, retried every second');
      this.failing = true;
    }
  }

  /**
   * Moves rows whose day is before `cutoff` (the logs' retention) forward
   * to today's start, refilled, or deletes them once full; returns how many
   * rows changed. Run with the retention purge.
   */
  age(cutoff: number): number {
    if (!this.db.open) return 0;
    this.flush();
    const perMs = this.limits.requesterPerHour / HOUR_MS;
    const today = Math.floor(this.now() / DAY_MS) * DAY_MS;
    const old = this.db.prepare<[number], { account_id: number; tokens: number; at: number }>('SELECT account_id, tokens, at FROM rate_limits WHERE at < ?').all(cutoff);
    this.db.transaction(() => {
      for (const r of old) {
        const tokens = Math.min(this.limits.requesterBurst, r.tokens + (today - r.at) * perMs);
        if (tokens >= this.limits.requesterBurst) this.stmts.del.run(r.account_id);
        else this.stmts.put.run(r.account_id, tokens, today);
      }
    })();
    return old.length;
  }

  /** Drops in-memory entries that are back at their full allowance (their state is the default). */
  private sweep(): void {
    const t = this.now();
    const per = this.limits.ipPerMinute;
    for (const [ip, b] of this.ips) {
      this.refilled(b, t, per / MINUTE_MS, per);
      if (b.tokens >= per) this.ips.delete(ip);
    }
    for (const [id, b] of this.accounts) {
      if (this.dirty.has(id)) continue;
      this.refilled(b, t, this.limits.requesterPerHour / HOUR_MS, this.limits.requesterBurst);
      if (b.tokens >= this.limits.requesterBurst) this.accounts.delete(id);
    }
  }

  /** Stops; in shared mode the last spends are sent (awaited by a caller that can). */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    clearInterval(this.timer);
    this.flush();
    return this.syncShared();
  }
}

function formatWait(seconds: number): string {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.ceil(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
