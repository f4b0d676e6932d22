/**
 * The query logs (server/querylog.ts) over both stores (test/stores.ts):
 * SQLite through its prepared statements, Postgres through server/pg/logs.ts
 * (one statement per batch, asynchronous, one write in flight). The same
 * guarantees: rows land in their columns, a window's counts are added to its
 * row, ids are never given twice; and on Postgres, a database that cannot be
 * written (made read-only for real) keeps the rows pending and retried,
 * writes each once when it can again, and a shutdown meanwhile spills them
 * for the next start; a write that committed but whose reply was lost is
 * tried again as the same batch and not written twice.
 */
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import pino from 'pino';
import { expect, it } from 'vitest';
import { logSpillFile } from '../disk/files.ts';
import { BLINDED_BUCKET_LOG } from '../shared/designs/blinded.ts';
import { HASHED_LOG } from '../shared/designs/hashed.ts';
import { columnNames, type CountKey, type CountLogTable, type LogRow, type RowLogTable } from '../shared/logs.ts';
import type { DirectoryStore, SqliteDirectoryStore } from '../server/directory-store.ts';
import { pgLogWriter } from '../server/pg/logs.ts';
import type { PgStore } from '../server/pg/store.ts';
import { BatchedLog, CountingLog, type LogOptions } from '../server/querylog.ts';
import { describeStores, type StoreFixture } from './stores.ts';
import { tempDir, testClock } from './helpers.ts';

/** A design's query log (a `rows` table) over Postgres, as server/querylog.ts designLog makes it on a shared store (unregistered). */
function pgDesignLog<const T extends RowLogTable>(pool: pg.Pool, table: T, options: LogOptions = {}): BatchedLog<LogRow<T>> {
  return new BatchedLog<LogRow<T>>(pgLogWriter(pool, table), table.name, columnNames(table), options);
}

/** A design's aggregated log (a `counts` table) over Postgres: counts per key and the table's window, on `now`. */
function pgCountingLog<const T extends CountLogTable>(pool: pg.Pool, table: T, now: () => number, options: LogOptions = {}): CountingLog<CountKey<T>> {
  return new CountingLog<CountKey<T>>(pgLogWriter(pool, table), table.name, table.key, now, table.windowMs, options);
}

type HashedRow = LogRow<typeof HASHED_LOG>;
type BucketKey = [ip: string, epoch: number, bucket: number];

const hashOf = (i: number) => Buffer.alloc(32, i % 256);
const hashedRow = (i: number): HashedRow => [1_000_000 + i, 7, `asker-${i}@pcd.test`, `198.51.100.${i % 250}`, hashOf(i), i % 2];

function captureLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never happened: ${what}`);
}

/** The store's logs and a query, whichever the store. */
function over(f: StoreFixture, s: DirectoryStore) {
  const sqlite = f.kind === 'sqlite' ? (s as SqliteDirectoryStore).store.db : undefined;
  const pool = f.kind === 'postgres' ? (s as PgStore).pool : undefined;
  return {
    rowsLog: (options: LogOptions) =>
      sqlite ? new BatchedLog<HashedRow>(sqlite, HASHED_LOG.name, columnNames(HASHED_LOG), options) : pgDesignLog(pool!, HASHED_LOG, options),
    countsLog: (now: () => number, options: LogOptions) =>
      sqlite
        ? new CountingLog<BucketKey>(sqlite, BLINDED_BUCKET_LOG.name, BLINDED_BUCKET_LOG.key, now, BLINDED_BUCKET_LOG.windowMs, options)
        : pgCountingLog(pool!, BLINDED_BUCKET_LOG, now, options),
    async select<R>(sql: string): Promise<R[]> {
      return sqlite ? (sqlite.prepare(sql).all() as R[]) : (await pool!.query(sql)).rows;
    },
  };
}

describeStores('the query logs', (f) => {
  it('write a batch of rows in their declared columns (INTEGER, TEXT, BLOB), in order', async () => {
    const s = await f.open();
    const { rowsLog, select } = over(f, s);
    const log = rowsLog({ intervalMs: 20 });
    for (let i = 0; i < 250; i++) log.append(hashedRow(i));
    expect(await log.flushed()).toBe(true);
    expect(log.health()).toEqual({ table: 'hashed_log', pending: 0, failing: false, dropped: 0 });
    const rows = await select<{ ts: number; account_id: number; email: string; ip: string; hash: Buffer; answer: number }>(
      'SELECT ts, account_id, email, ip, hash, answer FROM hashed_log ORDER BY id',
    );
    expect(rows).toHaveLength(250);
    expect(rows.map((r) => [r.ts, r.account_id, r.email, r.ip, r.hash, r.answer])).toEqual(Array.from({ length: 250 }, (_, i) => hashedRow(i)));
    expect(rows[3]!.hash).toBeInstanceOf(Buffer);
    // The timer writes by itself, too.
    log.append(hashedRow(250));
    await until('the interval wrote the row', async () => (await select<{ n: number }>('SELECT CAST(count(*) AS INTEGER) AS n FROM hashed_log'))[0]!.n === 251);
    await log.close();
  });

  it('add counts to a window written early instead of duplicating it', async () => {
    const s = await f.open();
    const { countsLog, select } = over(f, s);
    const clock = testClock();
    const log = countsLog(clock.now, { intervalMs: 20 });
    for (let i = 0; i < 500; i++) log.add(['10.0.0.1', 1, 3]);
    log.add(['10.0.0.2', 1, 4], 2);
    expect(await log.flushed()).toBe(true);
    log.add(['10.0.0.1', 1, 3], 7); // the same minute again: added to its row
    expect(await log.flushed()).toBe(true);
    clock.advance(BLINDED_BUCKET_LOG.windowMs);
    log.add(['10.0.0.1', 1, 3], 5); // the next minute: a row of its own
    await log.close();
    const start = Math.floor(testClock().now() / BLINDED_BUCKET_LOG.windowMs) * BLINDED_BUCKET_LOG.windowMs;
    expect(await select('SELECT ts, ip, epoch, bucket, count FROM blinded_bucket_log ORDER BY ts, ip')).toEqual([
      { ts: start, ip: '10.0.0.1', epoch: 1, bucket: 3, count: 507 },
      { ts: start, ip: '10.0.0.2', epoch: 1, bucket: 4, count: 2 },
      { ts: start + BLINDED_BUCKET_LOG.windowMs, ip: '10.0.0.1', epoch: 1, bucket: 3, count: 5 },
    ]);
  });

  it('never give an id twice, also after the oldest rows are purged', async () => {
    const s = await f.open();
    const { rowsLog, select } = over(f, s);
    const log = rowsLog({ intervalMs: 20 });
    const ids = async () => (await select<{ id: number }>('SELECT id FROM hashed_log ORDER BY id')).map((r) => r.id);
    for (let i = 0; i < 10; i++) log.append(hashedRow(i));
    expect(await log.flushed()).toBe(true);
    const first = await ids();
    expect(new Set(first).size).toBe(10);
    expect(await s.purgeLogs(1_000_000 + 5)).toBe(5); // the five oldest
    for (let i = 10; i < 20; i++) log.append(hashedRow(i));
    expect(await log.flushed()).toBe(true);
    const second = await ids();
    expect(second).toHaveLength(15);
    expect(second.slice(5).every((id) => id > Math.max(...first))).toBe(true);
    await log.close();
  });

  // Postgres only: SQLite's log tables (disk/sql.ts logTableDdl) have `id INTEGER PRIMARY KEY` without AUTOINCREMENT,
  // so once every row is purged the next id is 1 again; Postgres's identity never goes back.
  it.runIf(f.kind === 'postgres')('never give an id twice, also after every row was purged', async () => {
    const s = await f.open();
    const { rowsLog, select } = over(f, s);
    const log = rowsLog({ intervalMs: 20 });
    for (let i = 0; i < 10; i++) log.append(hashedRow(i));
    expect(await log.flushed()).toBe(true);
    const { max } = (await select<{ max: number }>('SELECT CAST(max(id) AS INTEGER) AS max FROM hashed_log'))[0]!;
    expect(await s.purgeLogs(Number.MAX_SAFE_INTEGER)).toBe(10);
    log.append(hashedRow(10));
    expect(await log.flushed()).toBe(true);
    expect((await select<{ id: number }>('SELECT id FROM hashed_log'))[0]!.id).toBeGreaterThan(max);
    await log.close();
  });

  it.runIf(f.kind === 'postgres')('keep their rows while the database is read-only, write each once after, and spill them at a shutdown meanwhile', async () => {
    const s = await f.open();
    const { rowsLog, countsLog, select } = over(f, s);
    const dir = tempDir();
    const cap = captureLogger();
    const clock = testClock();
    const options: LogOptions = { intervalMs: 20, retryMaxMs: 80, spillDir: dir, logger: cap.logger };
    const log = rowsLog(options);
    const counts = countsLog(clock.now, options);
    const tsList = async () => (await select<{ ts: number }>('SELECT ts FROM hashed_log ORDER BY id')).map((r) => r.ts);
    const sum = async () => (await select<{ n: number }>('SELECT CAST(coalesce(sum(count), 0) AS INTEGER) AS n FROM blinded_bucket_log'))[0]!.n;
    for (let i = 0; i < 5; i++) log.append(hashedRow(i));
    expect(await log.flushed()).toBe(true);

    const admin = await f.admin!();
    const db = f.database!();
    const endSessions = () => admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db]);
    const readOnly = async (on: boolean) => {
      await admin.query(`ALTER DATABASE ${db} SET default_transaction_read_only = ${on ? 'on' : 'off'}`);
      await endSessions(); // the pool's connections end; new ones see the setting
    };
    try {
      await readOnly(true);
      for (let i = 5; i < 30; i++) log.append(hashedRow(i)); // nothing thrown
      for (let i = 0; i < 40; i++) counts.add(['10.0.0.9', 2, i % 4]);
      expect(log.flush()).toBeTypeOf('boolean');
      await until('the read-only database refused a write', () => log.health().lastError === '25006');
      expect(log.health()).toMatchObject({ table: 'hashed_log', pending: 25, failing: true, dropped: 0 });
      // (A connection the pool has not yet seen ended fails as `unavailable` first: the next try gets 25006.)
      await until('the counts were refused as read-only', async () => !(await counts.flushed()) && counts.health().lastError === '25006');
      expect(counts.health()).toMatchObject({ failing: true, lastError: '25006', pending: 4 });
      expect(() => log.requireRoom(1)).not.toThrow(); // room left under the bound
      expect(await tsList()).toHaveLength(5);
      expect(cap.lines.some((l) => l.msg === 'query log write failed: its rows are kept in memory and retried' && l.code === '25006')).toBe(true);

      // Writable again: the retries write every kept row, once.
      for (let i = 30; i < 35; i++) log.append(hashedRow(i));
      await readOnly(false);
      await until('the retries wrote the kept rows', () => log.pending === 0 && !log.health().failing && counts.pending === 0 && !counts.health().failing);
      expect(await tsList()).toEqual(Array.from({ length: 35 }, (_, i) => 1_000_000 + i)); // none lost, none twice, in order
      expect(await sum()).toBe(40);
      expect(cap.lines.some((l) => l.msg === 'query log written again after failed writes')).toBe(true);

      // Read-only at a shutdown: close() waits, tries, and spills what it could not write.
      await readOnly(true);
      for (let i = 35; i < 50; i++) log.append(hashedRow(i));
      counts.add(['10.0.0.9', 2, 0], 11);
      await until('failing again', () => log.health().failing && log.health().lastError === '25006');
      await log.close();
      await counts.close();
      expect(() => log.append(hashedRow(99))).toThrow(/closed/);
      const spilled = cap.lines.filter((l) => /spilled to a file the next start writes/.test(l.msg));
      expect(spilled.map((l) => [l.table, l.rows]).sort()).toEqual([
        ['blinded_bucket_log', 1],
        ['hashed_log', 15],
      ]);
      const file = path.join(dir, logSpillFile('hashed_log'));
      expect(JSON.parse(fs.readFileSync(file, 'utf8')).rows).toHaveLength(15);
      expect(await tsList()).toHaveLength(35);

      // The next start, writable: the spilled rows are written once and the files removed.
      await readOnly(false);
      const again = rowsLog(options).replaySpill();
      const countsAgain = countsLog(clock.now, options).replaySpill();
      await until('the replayed rows were written', () => again.pending === 0 && countsAgain.pending === 0 && !fs.existsSync(file));
      expect(await tsList()).toEqual(Array.from({ length: 50 }, (_, i) => 1_000_000 + i));
      expect(await sum()).toBe(51);
      expect(fs.existsSync(path.join(dir, logSpillFile('blinded_bucket_log')))).toBe(false);
      const { hash } = (await select<{ hash: Buffer }>('SELECT hash FROM hashed_log ORDER BY id DESC LIMIT 1'))[0]!;
      expect(hash).toEqual(hashOf(49)); // the BLOB survived the spill
      await again.close();
      await countsAgain.close();
    } finally {
      await admin.query(`ALTER DATABASE ${db} RESET default_transaction_read_only`).catch(() => {});
      await admin.end();
    }
  });

  it.runIf(f.kind === 'postgres')('write a batch once when a write committed but its reply was lost: no row twice, no count added twice', async () => {
    const s = await f.open();
    const pool = (s as PgStore).pool;
    const query = pool.query.bind(pool);
    // Each log's first two writes commit, then fail as a connection cut before the reply does: the outcome is unknown to the log.
    let lost = 0;
    (pool as { query: unknown }).query = async (...args: Parameters<typeof query>) => {
      const result = await (query as (...a: unknown[]) => Promise<unknown>)(...args);
      if (typeof args[0] === 'string' && /INSERT INTO (hashed_log|blinded_bucket_log)/.test(args[0]) && lost < 4) {
        lost++;
        throw new Error('Connection terminated unexpectedly');
      }
      return result;
    };
    const clock = testClock(1_000_000);
    const log = pgDesignLog(pool, HASHED_LOG, { intervalMs: 1, retryMaxMs: 5 });
    const counts = pgCountingLog(pool, BLINDED_BUCKET_LOG, clock.now, { intervalMs: 1, retryMaxMs: 5 });
    for (let i = 0; i < 10; i++) log.append(hashedRow(i));
    counts.add(['10.0.0.1', 1, 3], 7);
    counts.add(['10.0.0.2', 1, 4], 2);
    await log.flushed(); // the first try: committed, reported failed
    expect(log.health()).toMatchObject({ failing: true, lastError: 'unavailable' });
    for (let i = 10; i < 15; i++) log.append(hashedRow(i)); // rows that come while the batch waits for its next try
    counts.add(['10.0.0.1', 1, 3], 1);
    await until('every row written', async () => {
      await log.flushed();
      await counts.flushed();
      return log.pending === 0 && counts.pending === 0 && !log.health().failing && !counts.health().failing;
    });
    expect(lost).toBe(4);
    const rows = await pool.query<{ ts: string }>('SELECT ts FROM hashed_log ORDER BY id');
    expect(rows.rows.map((r) => Number(r.ts))).toEqual(Array.from({ length: 15 }, (_, i) => 1_000_000 + i)); // each once, in order
    const sums = await pool.query<{ ip: string; n: number }>('SELECT ip, sum(count)::int AS n FROM blinded_bucket_log GROUP BY ip ORDER BY ip');
    expect(sums.rows).toEqual([
      { ip: '10.0.0.1', n: 8 },
      { ip: '10.0.0.2', n: 2 },
    ]);
    // Each written batch left its id, and nothing else: a random id and the time of the write.
    const marks = await pool.query<{ id: string; at: string }>('SELECT id, at FROM log_batches');
    expect(marks.rows.length).toBeGreaterThanOrEqual(2);
    for (const m of marks.rows) expect(m.id).toMatch(/^[0-9a-f-]{36}$/);
    await log.close();
    await counts.close();
    // The ids go with the retention purge once older than a day, or than its cutoff (here, a cutoff past them all).
    await (s as PgStore).purgeLogs(Date.now() + 60_000);
    expect((await pool.query('SELECT count(*)::int AS n FROM log_batches')).rows[0].n).toBe(0);
  });

  it.runIf(f.kind === 'postgres')('keep at most one write in flight; rows that come meanwhile go with the next', async () => {
    const s = await f.open();
    const pool = (s as PgStore).pool;
    let inFlight = 0;
    let most = 0;
    const query = pool.query.bind(pool);
    // Count concurrent INSERTs into the log (only this log writes through this pool).
    (pool as { query: unknown }).query = async (...args: Parameters<typeof query>) => {
      const insert = typeof args[0] === 'string' && args[0].includes('INSERT INTO hashed_log');
      if (insert) most = Math.max(most, ++inFlight);
      try {
        return await (query as (...a: unknown[]) => Promise<unknown>)(...args);
      } finally {
        if (insert) inFlight--;
      }
    };
    const log = pgDesignLog(pool, HASHED_LOG, { intervalMs: 1, maxRows: 10 });
    for (let i = 0; i < 2000; i++) {
      log.append(hashedRow(i));
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    const closing = log.close();
    expect(closing).toBeInstanceOf(Promise);
    await closing;
    expect(most).toBe(1);
    const { rows } = await pool.query<{ ts: number }>('SELECT ts FROM hashed_log ORDER BY id');
    expect(rows.map((r) => r.ts)).toEqual(Array.from({ length: 2000 }, (_, i) => 1_000_000 + i));
  });
});
