/**
 * Rate limits (server/ratelimit.ts): the per-requester allowance counted in
 * lookups, refilled on the injected clock and persisted across restarts; a
 * refund for refused requests; the per-IP request rate on every endpoint;
 * 429 with Retry-After and a coded error. Through a real server where the
 * behaviour is the server's, on the limiter itself for the arithmetic.
 */
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../shared/errors.ts';
import { PATHS } from '../shared/messages.ts';
import { DEFAULT_RATE_LIMITS, RateLimiter } from '../server/ratelimit.ts';
import { ADMIN_TOKEN, raw, startTestServer, testClock, type TestServer } from './helpers.ts';
import { pcdError } from './backends.ts';

const json = (token: string) => ({ 'content-type': 'application/json', authorization: `Bearer ${token}` });
const numbersFrom = (start: number, n: number) => Array.from({ length: n }, (_, i) => `+1415555${String(start + i).padStart(4, '0')}`);

describe('the rate limiter', () => {
  it('starts with the burst, refills per hour up to it, and says when a request fits', () => {
    const clock = testClock();
    const db = new Database(':memory:');
    const rl = new RateLimiter({ requesterBurst: 100, requesterPerHour: 10, ipPerMinute: 60 }, clock.now, db);
    try {
      rl.take(1, 60);
      expect(rl.available(1)).toBe(40);
      const refused = pcdError(() => rl.take(1, 41), ErrorCode.RateLimited);
      // 1 lookup short at 10 an hour: 6 minutes.
      expect(refused.retryAfterSeconds).toBe(360);
      expect(refused.message).toMatch(/40 of 100 left/);
      clock.advance(30 * 60_000);
      expect(rl.available(1)).toBe(45);
      clock.advance(100 * 3600_000);
      expect(rl.available(1)).toBe(100); // never above the burst
      expect(rl.available(2)).toBe(100); // another account is untouched
      expect(pcdError(() => rl.take(1, 101), ErrorCode.RateLimited).message).toMatch(/exceeds the allowance of 100/);
    } finally {
      rl.close();
      db.close();
    }
  });

  it('gives a refused request back, and persists what is used across instances (a full allowance is no row)', () => {
    const clock = testClock();
    const db = new Database(':memory:');
    const limits = { requesterBurst: 100, requesterPerHour: 10, ipPerMinute: 60 };
    const a = new RateLimiter(limits, clock.now, db);
    const charge = a.take(7, 30);
    a.take(8, 1);
    a.refund(charge);
    expect(a.available(7)).toBe(100);
    a.take(7, 25);
    a.close(); // flushes
    // Each row holds the allowance at the start of its day (UTC) and the day, never the time of the request:
    // 75 at noon is 75 - 12 h x 10/h = -45 at midnight, which refills back to exactly 75 by noon.
    const day = Math.floor(clock.now() / 86_400_000) * 86_400_000;
    const hours = (clock.now() - day) / 3600_000;
    expect(db.prepare('SELECT account_id, tokens, at FROM rate_limits ORDER BY account_id').all()).toEqual([
      { account_id: 7, tokens: 75 - hours * 10, at: day },
      { account_id: 8, tokens: 99 - hours * 10, at: day },
    ]);
    const b = new RateLimiter(limits, clock.now, db);
    expect(b.available(7)).toBe(75);
    clock.advance(3600_000);
    expect(b.available(8)).toBe(100);
    b.close();
    expect(db.prepare('SELECT account_id FROM rate_limits').all()).toEqual([{ account_id: 7 }]);
    db.close();
  });

  it('ages rows older than the retention forward to today, refilled, and deletes those that are full: no row names an old day', () => {
    const clock = testClock();
    const db = new Database(':memory:');
    const limits = { requesterBurst: 1000, requesterPerHour: 1, ipPerMinute: 60 };
    const a = new RateLimiter(limits, clock.now, db);
    a.take(1, 900); // 100 left: refilled in 900 h
    a.take(2, 10); // 990 left: full again in 10 h
    a.close();
    clock.advance(31 * 86_400_000);
    const b = new RateLimiter(limits, clock.now, db);
    const cutoff = clock.now() - 30 * 86_400_000;
    expect(b.age(cutoff)).toBe(2);
    const today = Math.floor(clock.now() / 86_400_000) * 86_400_000;
    expect(db.prepare('SELECT account_id, at FROM rate_limits').all()).toEqual([{ account_id: 1, at: today }]);
    expect(b.available(1)).toBeCloseTo(100 + 31 * 24, 6); // nothing gained or lost by the move
    b.close();
    db.close();
  });

  it('limits requests per IP, refilling within the minute', () => {
    const clock = testClock();
    const db = new Database(':memory:');
    const rl = new RateLimiter({ ...DEFAULT_RATE_LIMITS, ipPerMinute: 3 }, clock.now, db);
    try {
      for (let i = 0; i < 3; i++) rl.takeIp('10.0.0.1');
      const refused = pcdError(() => rl.takeIp('10.0.0.1'), ErrorCode.RateLimited);
      expect(refused.retryAfterSeconds).toBe(20);
      rl.takeIp('10.0.0.2');
      clock.advance(20_000);
      rl.takeIp('10.0.0.1');
    } finally {
      rl.close();
      db.close();
    }
  });

  it('refuses limits that are not positive numbers', () => {
    const db = new Database(':memory:');
    expect(pcdError(() => new RateLimiter({ ...DEFAULT_RATE_LIMITS, requesterPerHour: 0 }, Date.now, db), ErrorCode.InvalidField).message).toMatch(/requesterPerHour/);
    db.close();
  });
});

describe('rate limits on a real server', () => {
  const clock = testClock();
  let ts: TestServer;
  let token: string;

  beforeAll(async () => {
    ts = await startTestServer({ now: clock.now, rateLimits: { requesterBurst: 300, requesterPerHour: 60, ipPerMinute: 100_000 } });
    ({ token } = await ts.admin.createAccount({ email: 'crawler@example.org', numbers: ['+14155550100'], capabilities: ['messages'] }));
  });
  afterAll(() => ts?.close());

  it('are on by default', async () => {
    const plain = await startTestServer({ rateLimits: undefined, designs: ['plain'] });
    try {
      expect(plain.server.rateLimiter?.limits).toEqual(DEFAULT_RATE_LIMITS);
    } finally {
      await plain.close();
    }
  });

  it('stop an account enumerating numbers through plain lookups with 429 and Retry-After, and only charge answered requests', async () => {
    const url = ts.server.url + PATHS.plainLookup;
    // Refused at validation: no lookup answered, nothing charged.
    const bad = await raw(url, { headers: json(token), body: JSON.stringify({ numbers: ['+14155550101', 'not a number'] }) });
    expect(bad.status).toBe(400);
    const account = ts.server.store.authenticate(token)!.accountId;
    expect(ts.server.rateLimiter!.available(account)).toBe(300);

    let answered = 0;
    let refusal: Response | undefined;
    for (let start = 0; !refusal && start < 10_000; start += 100) {
      const res = await fetch(url, { method: 'POST', headers: json(token), body: JSON.stringify({ numbers: numbersFrom(start, 100) }) });
      if (res.status === 200) answered += ((await res.json()) as { results: unknown[] }).results.length;
      else refusal = res;
    }
    expect(answered).toBe(300);
    expect(refusal!.status).toBe(429);
    // 100 lookups short at 60 an hour: 100 minutes.
    expect(refusal!.headers.get('retry-after')).toBe('6000');
    const body = (await refusal!.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(ErrorCode.RateLimited);
    expect(body.error.message).toMatch(/allowance used up: 0 of 300 left, 60 come back per hour/);

    // The other designs draw on the same allowance.
    const client = ts.client(token, 'hashed');
    await expect(client.lookup('+14155550100')).rejects.toMatchObject({ code: ErrorCode.RateLimited });
    clock.advance(60_000);
    expect((await client.lookup('+14155550100')).capabilities).toEqual(['messages']);
  });

  it('keep an account\'s allowance across a restart', async () => {
    const { token: other } = await ts.admin.createAccount({ email: 'other@example.org', numbers: ['+14155550102'], capabilities: ['messages'] });
    const res = await raw(ts.server.url + PATHS.plainLookup, { headers: json(other), body: JSON.stringify({ numbers: numbersFrom(5000, 250) }) });
    expect(res.status).toBe(200);
    ts = await ts.restart();
    const id = ts.server.store.authenticate(other)!.accountId;
    expect(ts.server.rateLimiter!.available(id)).toBe(50);
  });

  it('accept the auth scheme in any case', async () => {
    clock.advance(3600_000);
    for (const scheme of ['bearer', 'BEARER', 'Bearer']) {
      const res = await raw(ts.server.url + PATHS.plainLookup, {
        headers: { 'content-type': 'application/json', authorization: `${scheme} ${token}` },
        body: JSON.stringify({ numbers: ['+14155550100'] }),
      });
      expect(res.status, scheme).toBe(200);
    }
  });

  it('limit every endpoint per IP, anonymous ones and failed authentication included', async () => {
    const limited = await startTestServer({ now: clock.now, rateLimits: { ipPerMinute: 5 }, designs: ['plain'] });
    try {
      const statuses: number[] = [];
      for (const [path, auth] of [
        [PATHS.health, undefined],
        ['/v1/nowhere', undefined],
        [PATHS.plainLookup, 'wrong-token'],
        [PATHS.health, undefined],
        [PATHS.plainLookup, ADMIN_TOKEN],
        [PATHS.health, undefined],
      ] as const) {
        const res = await fetch(limited.server.url + path, {
          method: path === PATHS.plainLookup ? 'POST' : 'GET',
          headers: auth ? json(auth) : {},
          body: path === PATHS.plainLookup ? '{"numbers":["+14155550100"]}' : undefined,
        });
        statuses.push(res.status);
        if (res.status === 429) {
          expect(res.headers.get('retry-after')).toBe('12');
          expect(((await res.json()) as { error: { code: string } }).error.code).toBe(ErrorCode.RateLimited);
        } else await res.arrayBuffer();
      }
      expect(statuses).toEqual([200, 404, 401, 200, 401, 429]);
      clock.advance(12_000);
      expect((await fetch(limited.server.url + PATHS.health)).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});
