/**
 * A full disk never crashes the server and loses nothing it acknowledged.
 * The disk is filled for real: SQLite's `max_page_count` on the store's
 * own connection, set to the database's current size, makes every write
 * that needs a new page fail with SQLITE_FULL, as a full file system does.
 *
 * - BatchedLog / CountingLog alone: a failed flush keeps its rows and the
 *   timer retries them once the disk has room; past the bound the oldest go,
 *   counted and reported; close() reports what it could not write.
 * - A real server with plain, hashed and blinded: lookups while the disk
 *   fills; it stays up, /v1/health says degraded, no lookup gets a 500, and
 *   every acknowledged row is on disk once there is room again. With a
 *   small bound, lookups are refused (503, Retry-After) instead of answered
 *   unlogged, and bucket fetches go on, dropping counted rows.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createClient } from '../client/client.ts';
import { createTransport } from '../client/transport.ts';
import type { Transport } from '../shared/design.ts';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { DESIGNS, PATHS, type HealthReply } from '../shared/messages.ts';
import { flushLogs, logHealth } from '../server/loghealth.ts';
import { BatchedLog, CountingLog } from '../server/querylog.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { DB_FILE } from '../disk/files.ts';
import { Store, storeErrorToPcdError } from '../server/store.ts';
import { startTestServer, tempDir, testClock, type TestServer } from './helpers.ts';

const MINUTE = 60_000;
const NO_LIMIT = 1_073_741_823;

/** Makes the database full: no page beyond its current size. */
function fillDisk(db: Database.Database): void {
  db.pragma('max_page_count = 1'); // SQLite keeps it at the current page count at least
}

function roomAgain(db: Database.Database): void {
  db.pragma(`max_page_count = ${NO_LIMIT}`);
}

/** A pino logger whose lines the test reads. */
function captureLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines, text: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}

async function until(what: string, cond: () => boolean, tries = 500): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never happened: ${what}`);
}

type PlainRow = [ts: number, accountId: number, email: string, ip: string, number: string, answer: number];
const PLAIN_COLUMNS = ['ts', 'account_id', 'email', 'ip', 'number', 'answer'];
const SECRET_NUMBER = '+14155550199';
const SECRET_IP = '203.0.113.77';

function plainRow(i: number): PlainRow {
  return [i, 1, `requester-${'x'.repeat(150)}@example.org`, SECRET_IP, SECRET_NUMBER, i % 2];
}

/** Appends rows in groups until a flush fails (the disk is full), returning how many were appended. */
function appendUntilFull(log: BatchedLog<PlainRow>, start = 0): number {
  let n = start;
  for (let round = 0; round < 1000; round++) {
    for (let k = 0; k < 20; k++) log.append(plainRow(n++));
    if (!log.flush()) return n;
  }
  throw new Error('the disk never filled');
}

describe('BatchedLog on a full disk', () => {
  const stores: Store[] = [];
  afterEach(() => {
    for (const s of stores.splice(0)) s.close();
  });
  const openStore = () => {
    const s = Store.open(tempDir());
    stores.push(s);
    return s;
  };
  const count = (s: Store) => s.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM plain_log').get()!.n;

  it('keeps the rows of a failed flush and writes them by itself once there is room', async () => {
    const store = openStore();
    const cap = captureLogger();
    const log = new BatchedLog<PlainRow>(store.db, 'plain_log', PLAIN_COLUMNS, { intervalMs: 5, retryMaxMs: 20, logger: cap.logger });
    fillDisk(store.db);
    const appended = appendUntilFull(log);
    expect(log.health()).toMatchObject({ table: 'plain_log', failing: true, lastError: 'SQLITE_FULL', dropped: 0 });
    expect(log.pending).toBeGreaterThan(0);
    expect(count(store) + log.pending).toBe(appended);
    // Appends go on while failing; the retry timer runs on its own (and must not throw out of the timer).
    for (let k = 0; k < 10; k++) log.append(plainRow(appended + k));
    roomAgain(store.db);
    await until('the retry timer wrote the kept rows', () => log.pending === 0);
    expect(log.health()).toEqual({ table: 'plain_log', pending: 0, failing: false, dropped: 0 });
    expect(count(store)).toBe(appended + 10);
    const ts = store.db.prepare<[], { ts: number }>('SELECT ts FROM plain_log ORDER BY id').all().map((r) => r.ts);
    expect(ts).toEqual(Array.from({ length: appended + 10 }, (_, i) => i)); // all of them, in order
    const warned = cap.lines.filter((l) => l.level === 40).map((l) => l.msg);
    expect(warned).toContain('query log write failed: its rows are kept in memory and retried');
    expect(cap.text()).not.toContain(SECRET_NUMBER);
    expect(cap.text()).not.toContain(SECRET_IP);
    log.close();
  });

  it('past its bound drops the oldest rows, counts and reports them', () => {
    const store = openStore();
    const cap = captureLogger();
    const log = new BatchedLog<PlainRow>(store.db, 'plain_log', PLAIN_COLUMNS, { intervalMs: 60_000, maxPending: 50, logger: cap.logger });
    fillDisk(store.db);
    const appended = appendUntilFull(log);
    const written = count(store);
    const kept = log.pending;
    expect(kept).toBeLessThanOrEqual(50);
    for (let k = 0; k < 120; k++) log.append(plainRow(appended + k));
    const total = appended + 120;
    expect(log.pending).toBe(50);
    expect(log.health()).toMatchObject({ failing: true, dropped: total - written - 50 });
    // A design that logs every answer is refused room now.
    expect(() => log.requireRoom(1)).toThrow(expect.objectContaining({ code: ErrorCode.Unavailable, status: 503 }));
    expect(log.flush()).toBe(false);
    const report = cap.lines.find((l) => l.msg.startsWith('query log dropped'));
    expect(report).toMatchObject({ level: 40, table: 'plain_log', dropped: total - written - 50 });
    roomAgain(store.db);
    expect(log.flush()).toBe(true);
    expect(() => log.requireRoom(1000)).not.toThrow();
    // The newest 50 survived: the oldest were dropped.
    const ts = store.db.prepare<[], { ts: number }>('SELECT ts FROM plain_log ORDER BY id').all().map((r) => r.ts);
    expect(ts.slice(written)).toEqual(Array.from({ length: 50 }, (_, i) => total - 50 + i));
    expect(cap.text()).not.toContain(SECRET_NUMBER);
    expect(cap.text()).not.toContain(SECRET_IP);
    log.close();
  });

  it('close() on a full disk reports the rows it could not write instead of throwing', () => {
    const store = openStore();
    const cap = captureLogger();
    const log = new BatchedLog<PlainRow>(store.db, 'plain_log', PLAIN_COLUMNS, { intervalMs: 60_000, logger: cap.logger });
    fillDisk(store.db);
    appendUntilFull(log);
    const pending = log.pending;
    expect(() => log.close()).not.toThrow();
    expect(cap.lines.find((l) => l.msg.startsWith('query log closed with rows'))).toMatchObject({ table: 'plain_log', rows: pending, code: 'SQLITE_FULL' });
    expect(() => log.append(plainRow(0))).toThrow(/closed/);
  });

  it('a CountingLog keeps its counts through failed writes and drops (counting events) past its bound', () => {
    const store = openStore();
    const clock = testClock();
    const log = new CountingLog<[string, number, number]>(store.db, 'blinded_bucket_log', ['ip', 'epoch', 'bucket'], clock.now, MINUTE, {
      intervalMs: 60_000,
      maxPending: 30,
    });
    const sum = () => store.db.prepare<[], { n: number | null }>('SELECT sum(count) AS n FROM blinded_bucket_log').get()!.n ?? 0;
    // Many fetches of one key in one minute: one row.
    for (let i = 0; i < 500; i++) log.add(['10.0.0.1', 1, 3]);
    expect(log.pending).toBe(1);
    expect(log.flush()).toBe(true);
    expect(store.db.prepare('SELECT ts, ip, epoch, bucket, count FROM blinded_bucket_log').all()).toEqual([
      { ts: Math.floor(clock.now() / MINUTE) * MINUTE, ip: '10.0.0.1', epoch: 1, bucket: 3, count: 500 },
    ]);
    // The same minute again: added to its row, not a second row.
    log.add(['10.0.0.1', 1, 3], 7);
    expect(log.flush()).toBe(true);
    expect(sum()).toBe(507);
    fillDisk(store.db);
    let events = 507;
    let failed = false;
    for (let m = 0; m < 1000 && !failed; m++) {
      clock.advance(MINUTE);
      for (let b = 0; b < 4; b++) log.add(['10.0.0.1', 1, b], 2);
      events += 8;
      failed = !log.flush();
    }
    expect(failed).toBe(true);
    expect(log.health()).toMatchObject({ failing: true, lastError: 'SQLITE_FULL' });
    for (let m = 0; m < 40; m++) {
      clock.advance(MINUTE);
      log.add(['10.0.0.2', 1, 0], 5);
      events += 5;
    }
    expect(log.pending).toBe(30);
    const { dropped } = log.health();
    expect(dropped).toBeGreaterThan(0);
    roomAgain(store.db);
    expect(log.flush()).toBe(true);
    expect(sum()).toBe(events - dropped);
    log.close();
  });
});

describe('store errors', () => {
  it('a full disk is 503 unavailable with Retry-After, not a 500; other errors are not store conditions', () => {
    const store = Store.open(tempDir());
    try {
      fillDisk(store.db);
      let err: unknown;
      const numbers = sampleNumbers({ count: 2000, seed: 'disk-full-accounts', regions: ['US'] });
      for (let i = 0; i < 1000 && err === undefined; i++) {
        try {
          store.createAccount({ email: `a${i}-${'y'.repeat(200)}@example.org`, numbers: [numbers[i]!], mask: 1 }, 0);
        } catch (e) {
          err = e;
        }
      }
      expect(err).toBeInstanceOf(PcdError);
      expect(err).toMatchObject({ code: ErrorCode.Unavailable, status: 503 });
      expect((err as PcdError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
      expect((err as PcdError).message).toMatch(/storage is full \(SQLITE_FULL\)/);
    } finally {
      store.close();
    }
    const constraint = Object.assign(new Error('UNIQUE constraint failed'), { code: 'SQLITE_CONSTRAINT_UNIQUE' });
    expect(storeErrorToPcdError(constraint)).toBeUndefined();
    expect(storeErrorToPcdError(new Error('a bug'))).toBeUndefined();
    expect(storeErrorToPcdError(Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR_WRITE' }))).toMatchObject({ code: ErrorCode.Unavailable });
  });
});

// ---------------------------------------------------------------------------
// A real server

/** The real HTTP transport, counting acknowledged evaluations and bucket bodies (200s). */
function countingTransport(baseUrl: string, token: string) {
  const inner = createTransport({ baseUrl, token });
  const counts = { evaluations: 0, bucketBodies: 0 };
  const transport: Transport = {
    async request(req) {
      const r = await inner.request(req);
      if (req.path === PATHS.blindedEvaluate) counts.evaluations++;
      else if (req.path.startsWith('/v1/blinded/buckets/') && r.status === 200) counts.bucketBodies++;
      return r;
    },
  };
  return { counts, transport };
}

async function statusOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (e) {
    if (e instanceof PcdError) return e.status;
    throw e;
  }
}

async function health(s: TestServer): Promise<HealthReply> {
  return createClient({ baseUrl: s.server.url }).health();
}

const pool = sampleNumbers({ count: 5000, seed: 'disk-full', regions: ['US', 'GB', 'DE'] });
const [alicePhone, bobPhone, ...rest] = pool as [E164, E164, ...E164[]];
// Blinded lookups each take a number never looked up before (the client caches tags: a repeat sends no evaluation).
const blindedOnly = rest.slice(0, 2000);
const lookups = rest.slice(2000);
let next = 0;
let nextBlinded = 0;
const fresh = (n: number) => Array.from({ length: n }, () => lookups[next++ % lookups.length]!);
const freshBlinded = () => blindedOnly[nextBlinded++]!;
const BLINDED_PER_ROUND = 4;

describe('a server whose disk fills while lookups run', () => {
  let open: TestServer[] = [];
  afterEach(async () => {
    for (const s of open) await s.close().catch(() => {});
    open = [];
  });

  async function setup(extra: { logMaxPending?: number } = {}) {
    const clock = testClock();
    // The account path: it is the one whose evaluations are logged row by row and buffered like the lookup logs. With tokens,
    // a spend must reach the spent-token store before the answer, so a full disk refuses evaluate with 503 (server/tokens/service.ts).
    const s = await startTestServer({ designs: DESIGNS, now: clock.now, bucketBits: 2, blindedAuth: 'account', ...extra });
    open.push(s);
    const alice = await s.admin.createAccount({ email: 'alice@example.org', numbers: [alicePhone], capabilities: ['messages'] });
    const bob = await s.admin.createAccount({ email: 'bob@example.org', numbers: [bobPhone], capabilities: ['messages', 'facetime'] });
    const blinded = countingTransport(s.server.url, alice.token);
    const acked = { plain: 0, hashed: 0, bucketRaw: 0 };
    const statuses: number[] = [];
    const bucketStatuses: number[] = [];
    const plain = s.client(alice.token, 'plain');
    const hashed = s.client(alice.token, 'hashed');
    const blindedClient = createClient({ baseUrl: s.server.url, design: 'blinded', transport: blinded.transport });
    /**
     * One round: plain and hashed lookups, BLINDED_PER_ROUND concurrent blinded lookups of new numbers (each an
     * evaluation: a row of the smallest log, the last to need a page), a fetch of every bucket; then a flush attempt.
     * `b` is the first blinded status other than 200, else 200.
     */
    const round = async (numbers: number) => {
      clock.advance(MINUTE);
      const p = await statusOf(plain.lookupMany(fresh(numbers)));
      if (p === 200) acked.plain += numbers;
      const h = await statusOf(hashed.lookupMany(fresh(numbers)));
      if (h === 200) acked.hashed += numbers;
      const bs = await Promise.all(Array.from({ length: BLINDED_PER_ROUND }, () => statusOf(blindedClient.lookup(freshBlinded()))));
      const b = bs.find((x) => x !== 200) ?? 200;
      statuses.push(p, h, ...bs);
      for (let bucket = 0; bucket < 4; bucket++) {
        const res = await fetch(`${s.server.url}${PATHS.blindedBucket(1, bucket)}`, { headers: { accept: 'application/json' } });
        await res.arrayBuffer();
        bucketStatuses.push(res.status);
        if (res.status === 200) acked.bucketRaw++;
      }
      flushLogs(s.server.store);
      return { p, h, b };
    };
    const rows = () => {
      const db = new Database(path.join(s.dataDir, DB_FILE), { readonly: true });
      try {
        const n = (sql: string) => (db.prepare(sql).get() as { n: number | null }).n ?? 0;
        return {
          plain: n('SELECT count(*) AS n FROM plain_log'),
          hashed: n('SELECT count(*) AS n FROM hashed_log'),
          evaluations: n('SELECT count(*) AS n FROM blinded_eval_log'),
          bucketFetches: n('SELECT sum(count) AS n FROM blinded_bucket_log'),
        };
      } finally {
        db.close();
      }
    };
    return { s, bob, clock, round, acked, statuses, bucketStatuses, blinded, rows, db: s.server.store.db };
  }

  it('stays up, reports degraded, answers every lookup, and writes every acknowledged row once there is room', async () => {
    const t = await setup();
    await t.round(20); // some rows written normally first
    fillDisk(t.db);
    const failing = () => logHealth(t.s.server.store).filter((l) => l.failing).length;
    for (let i = 0; i < 600 && failing() < 4; i++) await t.round(20);
    expect(logHealth(t.s.server.store).map((l) => [l.table, l.failing, l.lastError])).toEqual([
      ['blinded_bucket_log', true, 'SQLITE_FULL'],
      ['blinded_eval_log', true, 'SQLITE_FULL'],
      ['hashed_log', true, 'SQLITE_FULL'],
      ['plain_log', true, 'SQLITE_FULL'],
    ]);
    const h = await health(t.s);
    expect(h.ok).toBe(false);
    expect(h.designs).toEqual([...DESIGNS]);
    expect(h.degraded!.logs).toHaveLength(4);
    for (const l of h.degraded!.logs) expect(l).toMatchObject({ failing: true, lastError: 'SQLITE_FULL', dropped: 0 });
    expect(h.degraded!.logs.find((l) => l.table === 'plain_log')!.pending).toBeGreaterThan(0);
    // Still answering while the buffers have room.
    for (let i = 0; i < 3; i++) expect(await t.round(20)).toEqual({ p: 200, h: 200, b: 200 });
    expect(t.statuses.every((x) => x === 200)).toBe(true);
    expect(t.bucketStatuses.every((x) => x === 200)).toBe(true);
    // A registration that needs a page the disk does not have: 503, not 500.
    let registration = 200;
    for (let i = 0; i < 300 && registration === 200; i++) {
      const email = `late-${i}-${'z'.repeat(200)}@example.org`;
      registration = await statusOf(t.s.admin.createAccount({ email, numbers: [fresh(1)[0]!], capabilities: ['messages'] }));
    }
    expect(registration).toBe(503);

    roomAgain(t.db);
    expect(flushLogs(t.s.server.store)).toBe(true);
    expect(await health(t.s)).toEqual({ ok: true, designs: [...DESIGNS] });
    await t.s.close();
    // Nothing acknowledged is lost.
    expect(t.rows()).toEqual({
      plain: t.acked.plain,
      hashed: t.acked.hashed,
      evaluations: t.blinded.counts.evaluations,
      bucketFetches: t.acked.bucketRaw + t.blinded.counts.bucketBodies,
    });
  });

  it('with a small bound: refuses lookups (503, Retry-After) rather than answer unlogged; bucket fetches go on, dropping counted rows', async () => {
    const bound = 40;
    const t = await setup({ logMaxPending: bound });
    fillDisk(t.db);
    const refused = { p: false, h: false, b: false };
    const bucketDropped = () => logHealth(t.s.server.store).find((l) => l.table === 'blinded_bucket_log')!.dropped;
    for (let i = 0; i < 600 && !(refused.p && refused.h && refused.b && bucketDropped() > 0); i++) {
      const r = await t.round(10);
      refused.p ||= r.p === 503;
      refused.h ||= r.h === 503;
      refused.b ||= r.b === 503;
    }
    expect(refused).toEqual({ p: true, h: true, b: true });
    expect(t.statuses.every((x) => x === 200 || x === 503)).toBe(true);
    expect(t.bucketStatuses.every((x) => x === 200)).toBe(true);

    // The refusal as a client sees it.
    const token = t.bob.token;
    const res = await fetch(`${t.s.server.url}${PATHS.plainLookup}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ numbers: fresh(bound) }),
    });
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'unavailable',
      message: expect.stringMatching(/cannot write its query log \(SQLITE_FULL\)/),
    });

    const h = await health(t.s);
    expect(h.ok).toBe(false);
    const byTable = new Map(h.degraded!.logs.map((l) => [l.table, l]));
    const dropped = byTable.get('blinded_bucket_log')!.dropped;
    expect(dropped).toBeGreaterThan(0);
    expect(byTable.get('blinded_bucket_log')!.pending).toBe(bound);
    // The lookup logs refused instead: nothing they acknowledged was dropped.
    for (const table of ['plain_log', 'hashed_log', 'blinded_eval_log']) expect(byTable.get(table)).toMatchObject({ failing: true, dropped: 0 });

    roomAgain(t.db);
    expect(flushLogs(t.s.server.store)).toBe(true);
    expect((await health(t.s)).ok).toBe(true);
    expect(await t.round(10)).toEqual({ p: 200, h: 200, b: 200 });
    await t.s.close();
    expect(t.rows()).toEqual({
      plain: t.acked.plain,
      hashed: t.acked.hashed,
      evaluations: t.blinded.counts.evaluations,
      bucketFetches: t.acked.bucketRaw + t.blinded.counts.bucketBodies - dropped,
    });
  });
});
