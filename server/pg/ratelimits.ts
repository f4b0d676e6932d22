/**
 * The requesters' allowances shared by every node of a shared store
 * (server/ratelimit.ts RateLimiter, its `shared` mode).
 *
 * Each node charges requests in memory, as on one machine, and once a
 * second sends what each account spent since its last sync. One statement
 * applies every account's spend to the `rate_limits` row (the allowance at
 * the start of its day, refilled to now, capped at the burst, as
 * server/ratelimit.ts keeps it) and returns the allowance all nodes
 * together have left, which becomes the node's. So the rate holds across
 * nodes in the long run: a requester that spreads its requests over N
 * nodes gets no more than one.
 *
 * The bound on overshoot: between two syncs every node may spend the
 * allowance it last saw, so N nodes may together admit up to N times an
 * account's allowance in one sync interval (a node that has not seen an
 * account yet starts it at the burst). What is spent beyond it is owed:
 * the shared allowance goes negative, and every node refuses the account
 * until it has refilled above zero.
 */
import type pg from 'pg';
import { pgGuarded } from './connect.ts';
import type { RateLimits, SharedAllowances } from '../ratelimit.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

export class PgAllowances implements SharedAllowances {
  constructor(
    private readonly pool: pg.Pool,
    private readonly limits: RateLimits,
  ) {}

  async sync(t: number, spent: ReadonlyMap<number, number>): Promise<Map<number, number>> {
    if (spent.size === 0) return new Map();
    const burst = this.limits.requesterBurst;
    const perMs = this.limits.requesterPerHour / HOUR_MS;
    const day = Math.floor(t / DAY_MS) * DAY_MS;
    const ids = [...spent.keys()];
    // A new row: the burst less the spend, as of the day's start. An existing one: refilled to t and capped, less the
    // spend (excluded.tokens - burst + the refill since the day's start is minus the spend), as of the day's start.
    const { rows } = await pgGuarded(() =>
      this.pool.query<{ account_id: number; tokens: number; at: number }>(
        `INSERT INTO rate_limits (account_id, tokens, at)
           SELECT id, $3::float8 - d - ($4::bigint - $5::bigint) * $6::float8, $5::bigint FROM unnest($1::bigint[], $2::float8[]) AS u(id, d)
         ON CONFLICT (account_id) DO UPDATE SET
           tokens = LEAST($3::float8, rate_limits.tokens + ($4::bigint - rate_limits.at) * $6::float8) - $3::float8 + excluded.tokens,
           at = excluded.at
         RETURNING account_id, tokens, at`,
        [ids, ids.map((id) => spent.get(id)!), burst, t, day, perMs],
      ),
    );
    return new Map(rows.map((r) => [r.account_id, Math.min(burst, r.tokens + (t - r.at) * perMs)]));
  }

  /** With the retention purge (the leader): rows back at the burst go, rows of days before `cutoff` move to today (server/ratelimit.ts age). */
  async age(now: number, cutoff: number): Promise<number> {
    const burst = this.limits.requesterBurst;
    const perMs = this.limits.requesterPerHour / HOUR_MS;
    const today = Math.floor(now / DAY_MS) * DAY_MS;
    return pgGuarded(async () => {
      const gone = await this.pool.query('DELETE FROM rate_limits WHERE tokens + ($1::bigint - at) * $2::float8 >= $3::float8', [now, perMs, burst]);
      const moved = await this.pool.query('UPDATE rate_limits SET tokens = tokens + ($1::bigint - at) * $2::float8, at = $1::bigint WHERE at < $3::bigint', [today, perMs, cutoff]);
      return (gone.rowCount ?? 0) + (moved.rowCount ?? 0);
    });
  }
}
