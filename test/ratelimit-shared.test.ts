/**
 * Requesters' allowances shared by several nodes (server/pg/ratelimits.ts):
 * two RateLimiters, each with its own data-folder database, drawing on one
 * Postgres, on a test clock.
 */
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPcdError } from '../shared/errors.ts';
import { PgStore } from '../server/pg/store.ts';
import { PgAllowances } from '../server/pg/ratelimits.ts';
import { RateLimiter } from '../server/ratelimit.ts';
import { testClock } from './helpers.ts';
import { freshDatabase } from './stores.ts';

const LIMITS = { requesterBurst: 100, requesterPerHour: 10, ipPerMinute: 1000 };

describe('allowances shared by several nodes', () => {
  let store: PgStore;
  const clock = testClock();
  const opened: { rl: RateLimiter; db: Database.Database }[] = [];
  const node = () => {
    const local = new Database(':memory:');
    const rl = new RateLimiter(LIMITS, clock.now, local, undefined, 3_600_000, new PgAllowances(store.pool, LIMITS));
    opened.push({ rl, db: local });
    return rl;
  };
  const refused = (f: () => unknown) => {
    try {
      f();
      return false;
    } catch (e) {
      if (isPcdError(e) && e.code === 'rate_limited') return true;
      throw e;
    }
  };

  let db: Awaited<ReturnType<typeof freshDatabase>>;
  beforeAll(async () => {
    db = await freshDatabase('pcd_rl');
    store = await PgStore.open(db.url);
  });
  afterAll(async () => {
    for (const o of opened) {
      await o.rl.close();
      o.db.close();
    }
    await store?.close();
    await db?.drop();
  });

  it('what one node admits, the others see after a sync: spreading requests over nodes gives no more than one node', async () => {
    const [a, b] = [node(), node()];
    a.take(1, 60);
    await a.syncShared();
    // Node b has not seen account 1: it starts it at the burst until its first sync (the bound on overshoot).
    b.take(1, 10);
    await b.syncShared();
    expect(b.available(1)).toBeCloseTo(30, 6);
    expect(refused(() => b.take(1, 31))).toBe(true);
    b.take(1, 30);
    await b.syncShared();
    await a.syncShared();
    a.take(1, 0.0001); // any spend makes a sync bring the shared allowance
    await a.syncShared();
    expect(a.available(1)).toBeLessThan(0.001);
    expect(refused(() => a.take(1, 1))).toBe(true);
    // Refunds count too, and the allowance refills over time on every node alike: 10 an hour.
    clock.advance(3_600_000);
    a.take(1, 5);
    await a.syncShared();
    expect(a.available(1)).toBeCloseTo(5, 3);
  });

  it('two nodes spending at once may together pass the allowance once (the bound: N times it), and the excess is owed on every node', async () => {
    const [a, b] = [node(), node()];
    a.take(2, 100);
    b.take(2, 100); // both before any sync: 200 admitted, twice the burst of 100
    await a.syncShared(); // the shared allowance: 100 - 100
    await b.syncShared(); // 0 - 100: node b knows it owes
    a.take(2, 0); // node a still sees 0, and learns at its next sync
    await a.syncShared();
    expect(a.available(2)).toBeCloseTo(-100, 3);
    expect(b.available(2)).toBeCloseTo(-100, 3);
    expect(refused(() => a.take(2, 1))).toBe(true);
    expect(refused(() => b.take(2, 1))).toBe(true);
    // Owed: 10 an hour, so the account waits ten hours before its next lookup on either node.
    clock.advance(10 * 3_600_000 + 360_000);
    expect(a.available(2)).toBeGreaterThan(0);
    expect(b.available(2)).toBeGreaterThan(0);
  });

  it('a sync that fails keeps the spends for the next one, and the node limits alone meanwhile', async () => {
    const failing = { sync: async () => Promise.reject(new Error('store down')) };
    const local = new Database(':memory:');
    const works = new PgAllowances(store.pool, LIMITS);
    let down = true;
    const rl = new RateLimiter(LIMITS, clock.now, local, undefined, 3_600_000, { sync: (t, s) => (down ? failing.sync() : works.sync(t, s)) });
    opened.push({ rl, db: local });
    rl.take(3, 40);
    await rl.syncShared();
    expect(rl.available(3)).toBeCloseTo(60, 6);
    down = false;
    rl.take(3, 10);
    await rl.syncShared();
    const row = (await store.pool.query('SELECT tokens, at FROM rate_limits WHERE account_id = 3')).rows[0] as { tokens: number; at: number };
    expect(row.tokens + (clock.now() - row.at) * (10 / 3_600_000)).toBeCloseTo(50, 3); // both spends, 40 and 10, reached the store
  });
});
