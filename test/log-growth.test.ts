/**
 * Anonymous traffic must not grow the database without bound: bucket
 * fetches are counted per (minute, IP, epoch, bucket) and revalidations
 * (304) are not logged at all (server/designs/blinded.ts, "What it
 * persists"). Through a real server: 20,000 revalidations and 20,000 GETs
 * from one IP under PCD_TEST_FULL=1, 2,000 of each otherwise, spread over
 * the same seven minutes of the server's clock either way, sent through
 * node:http with kept-alive connections (half the CPU of fetch per request).
 * And a data folder of the previous version (one row per fetch, account ids
 * without AUTOINCREMENT) still opens, migrated.
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { DESIGNS, PATHS } from '../shared/messages.ts';
import { flushLogs, logHealth } from '../server/loghealth.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { DB_FILE } from '../disk/files.ts';
import { Store } from '../server/store.ts';
import { FULL, runs, startTestServer, tempDir, testClock } from './helpers.ts';

const MINUTE = 60_000;
/** Revalidations, and GETs: the time goes into these HTTP requests (about half a millisecond each), hence fewer unless PCD_TEST_FULL=1. */
const REQUESTS = runs(20_000, 2_000);
/** The server's clock moves this much per request: 2 x 20,000 requests x 10 ms, about 7 minutes of log windows, whatever REQUESTS is. */
const STEP_MS = (10 * 20_000) / REQUESTS;
const CONCURRENCY = 8;

/** Bytes of the database and its write-ahead log. */
function dbBytes(dir: string): number {
  const size = (f: string) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
  const file = path.join(dir, DB_FILE);
  return size(file) + size(`${file}-wal`);
}

/** GET `url` over `agent`'s kept-alive connections, the body read to its end; resolves with the status. */
function get(agent: http.Agent, url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent, headers: { accept: '*/*', ...headers } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** Runs `n` calls of `f` with `concurrency` in flight; returns how often each result came. */
async function run(n: number, concurrency: number, f: () => Promise<number>): Promise<Map<number, number>> {
  const seen = new Map<number, number>();
  let started = 0;
  const worker = async () => {
    while (started < n) {
      started++;
      const r = await f();
      seen.set(r, (seen.get(r) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return seen;
}

describe('bucket fetch log growth', () => {
  it(`${FULL ? '20,000' : '2,000'} revalidations and as many GETs from one IP grow pcd.sqlite + -wal by less than 100 KB`, async () => {
    const clock = testClock();
    const s = await startTestServer({ designs: ['blinded'], now: clock.now, bucketBits: 2 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    try {
      const numbers = sampleNumbers({ count: 12, seed: 'log-growth', regions: ['US'] });
      for (let i = 0; i < numbers.length; i += 3) {
        await s.admin.createAccount({ email: `r${i}@example.org`, numbers: numbers.slice(i, i + 3), capabilities: ['messages'] });
      }
      const store = s.server.store;
      const url = `${s.server.url}${PATHS.blindedBucket(1, 0)}`;
      const first = await fetch(url);
      await first.arrayBuffer();
      expect(first.status).toBe(200);
      const etag = first.headers.get('etag')!;
      expect(etag).toBeTruthy();
      expect(flushLogs(store)).toBe(true);
      const sumCount = () => store.db.prepare<[], { n: number | null }>('SELECT sum(count) AS n FROM blinded_bucket_log').get()!.n ?? 0;
      expect(sumCount()).toBe(1);
      const before = dbBytes(s.dataDir);

      // The server's clock moves STEP_MS per request: the requests span about 7 minutes of log windows.
      const revalidations = await run(REQUESTS, CONCURRENCY, () => {
        clock.advance(STEP_MS);
        return get(agent, url, { 'if-none-match': etag });
      });
      expect(revalidations).toEqual(new Map([[304, REQUESTS]]));
      // Not logged: nothing pending, nothing written.
      expect(logHealth(store).find((l) => l.table === 'blinded_bucket_log')!.pending).toBe(0);
      expect(sumCount()).toBe(1);

      const start = clock.now();
      const gets = await run(REQUESTS, CONCURRENCY, () => {
        clock.advance(STEP_MS);
        return get(agent, url);
      });
      const end = clock.now();
      expect(gets).toEqual(new Map([[200, REQUESTS]]));
      expect(flushLogs(store)).toBe(true);

      const growth = dbBytes(s.dataDir) - before;
      console.log(`bucket log: ${2 * REQUESTS} anonymous requests grew pcd.sqlite + -wal by ${growth} bytes`);
      expect(growth).toBeLessThan(100 * 1024);
      // Every GET counted, in one row per minute the GETs spanned (plus the first fetch's).
      const rows = store.db.prepare<[], { ts: number; ip: string; epoch: number; bucket: number; count: number }>('SELECT * FROM blinded_bucket_log ORDER BY ts').all();
      expect(sumCount()).toBe(REQUESTS + 1);
      const minutes = Math.floor(end / MINUTE) - Math.floor(start / MINUTE) + 1;
      expect(minutes).toBeGreaterThanOrEqual(3); // the GETs spanned several windows
      expect(rows.length).toBeLessThanOrEqual(minutes + 1);
      for (const r of rows) {
        expect(r.ts % MINUTE).toBe(0);
        expect(r).toMatchObject({ epoch: 1, bucket: 0, ip: expect.stringMatching(/127\.0\.0\.1$/) });
      }
    } finally {
      agent.destroy();
      await s.close();
    }
  }, 180_000);
});

// The schema of the previous version (server/store.ts before bucket fetches were counted and ids made AUTOINCREMENT).
const PREVIOUS_SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  token_hash BLOB UNIQUE,
  capabilities INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS numbers (
  number TEXT PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS numbers_account ON numbers(account_id);
CREATE TABLE IF NOT EXISTS plain_log (
  id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, account_id INTEGER NOT NULL,
  email TEXT NOT NULL, ip TEXT NOT NULL, number TEXT NOT NULL, answer INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS plain_log_number ON plain_log(number, ts);
CREATE INDEX IF NOT EXISTS plain_log_ts ON plain_log(ts);
CREATE TABLE IF NOT EXISTS hashed_log (
  id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, account_id INTEGER NOT NULL,
  email TEXT NOT NULL, ip TEXT NOT NULL, hash BLOB NOT NULL, answer INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS hashed_log_hash ON hashed_log(hash, ts);
CREATE INDEX IF NOT EXISTS hashed_log_ts ON hashed_log(ts);
CREATE TABLE IF NOT EXISTS blinded_eval_log (
  id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, account_id INTEGER NOT NULL,
  ip TEXT NOT NULL, epoch INTEGER NOT NULL, count INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blinded_eval_log_ts ON blinded_eval_log(ts);
CREATE TABLE IF NOT EXISTS blinded_bucket_log (
  id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, ip TEXT NOT NULL,
  epoch INTEGER NOT NULL, bucket INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blinded_bucket_log_ts ON blinded_bucket_log(ts);
CREATE TABLE IF NOT EXISTS directory_changes (
  version INTEGER PRIMARY KEY,
  number TEXT NOT NULL,
  mask INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS epochs (
  epoch INTEGER PRIMARY KEY,
  public_key BLOB NOT NULL,
  mode TEXT NOT NULL,
  bucket_bits INTEGER NOT NULL,
  tag_bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  retires_at INTEGER,
  destroyed_at INTEGER
);
`;

describe('a data folder of the previous version', () => {
  it('opens: the bucket log becomes per-minute counts, accounts get AUTOINCREMENT above every logged id, nothing else changes', async () => {
    const dataDir = tempDir();
    const t0 = Date.UTC(2026, 10, 1, 12, 0, 0);
    const [n1, n2, n3] = sampleNumbers({ count: 3, seed: 'previous-version', regions: ['US'] });
    const old = new Database(path.join(dataDir, DB_FILE));
    old.pragma('journal_mode = WAL');
    old.pragma('foreign_keys = ON');
    old.exec(PREVIOUS_SCHEMA);
    old.prepare('INSERT INTO accounts (id, email, token_hash, capabilities, created_at) VALUES (?, ?, NULL, 1, ?)').run(1, 'alice@example.org', t0);
    old.prepare('INSERT INTO accounts (id, email, token_hash, capabilities, created_at) VALUES (?, ?, NULL, 3, ?)').run(2, 'bob@example.org', t0);
    old.prepare('INSERT INTO numbers (number, account_id) VALUES (?, ?)').run(n1, 1);
    old.prepare('INSERT INTO numbers (number, account_id) VALUES (?, ?)').run(n2, 2);
    // Account 3 existed, looked something up, and was deleted: only the logs remember its id.
    old.prepare('INSERT INTO plain_log (ts, account_id, email, ip, number, answer) VALUES (?, 3, ?, ?, ?, 0)').run(t0 + 5, 'carol@example.org', '10.0.0.3', n3);
    old.prepare('INSERT INTO blinded_eval_log (ts, account_id, ip, epoch, count) VALUES (?, 3, ?, 1, 4)').run(t0 + 6, '10.0.0.3');
    const fetch = old.prepare('INSERT INTO blinded_bucket_log (ts, ip, epoch, bucket) VALUES (?, ?, ?, ?)');
    for (let i = 0; i < 5; i++) fetch.run(t0 + 1000 * i, '10.0.0.1', 1, 2); // five fetches in one minute
    fetch.run(t0 + 30_000, '10.0.0.2', 1, 2);
    fetch.run(t0 + MINUTE + 1, '10.0.0.1', 1, 2); // the next minute
    old.close();

    const store = Store.open(dataDir);
    try {
      expect(store.db.prepare('SELECT ts, ip, epoch, bucket, count FROM blinded_bucket_log ORDER BY ts, ip').all()).toEqual([
        { ts: t0, ip: '10.0.0.1', epoch: 1, bucket: 2, count: 5 },
        { ts: t0, ip: '10.0.0.2', epoch: 1, bucket: 2, count: 1 },
        { ts: t0 + MINUTE, ip: '10.0.0.1', epoch: 1, bucket: 2, count: 1 },
      ]);
      const accountsSql = store.db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_schema WHERE name = 'accounts'").get()!.sql;
      expect(accountsSql).toMatch(/AUTOINCREMENT/);
      expect(store.db.prepare('SELECT id, email FROM accounts ORDER BY id').all()).toEqual([
        { id: 1, email: 'alice@example.org' },
        { id: 2, email: 'bob@example.org' },
      ]);
      expect(store.db.prepare('SELECT number, account_id FROM numbers ORDER BY account_id').all()).toEqual([
        { number: n1, account_id: 1 },
        { number: n2, account_id: 2 },
      ]);
      expect(store.db.prepare('SELECT count(*) AS n FROM plain_log').get()).toEqual({ n: 1 });
      expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
      // Foreign keys still cascade from the rebuilt table.
      expect(store.deleteAccount(2)!.changes).toEqual([{ number: n2, mask: 0 }]);
      expect(store.db.prepare('SELECT count(*) AS n FROM numbers').get()).toEqual({ n: 1 });
      // The next id is above every id a log row holds (3), not max(accounts.id) + 1.
      const { accountId } = store.createAccount({ email: 'dave@example.org', numbers: [n3!], mask: 1 }, t0 + 10);
      expect(accountId).toBe(4);
    } finally {
      store.close();
    }
    // Opening again changes nothing more; the server serves the folder.
    const s = await startTestServer({ dataDir, designs: DESIGNS, bucketBits: 2 });
    try {
      const eve = await s.admin.createAccount({ email: 'eve@example.org', numbers: [n2!], capabilities: ['messages'] });
      expect(eve.accountId).toBe(5);
      expect((await s.client(eve.token, 'plain').lookup(n1!)).capabilities).toEqual(['messages']);
    } finally {
      await s.close();
    }
  });
});

describe('a data folder whose spent tokens were keyed by their hash alone', () => {
  it('opens: the rows move under (key_id, nonce_hash), the key_id index goes, a replay is still refused by the key and a purge is a range', () => {
    const dataDir = tempDir();
    const keyA = Buffer.alloc(32, 0xa1);
    const keyB = Buffer.alloc(32, 0xb2);
    const hashes = Array.from({ length: 5 }, (_, i) => Buffer.alloc(32, i + 1));
    const first = Store.open(dataDir);
    first.db.exec('DROP TABLE spent_tokens; CREATE TABLE spent_tokens (nonce_hash BLOB PRIMARY KEY, key_id BLOB NOT NULL) WITHOUT ROWID; CREATE INDEX spent_tokens_key ON spent_tokens(key_id);');
    const put = first.db.prepare('INSERT INTO spent_tokens (nonce_hash, key_id) VALUES (?, ?)');
    hashes.forEach((h, i) => put.run(h, i < 3 ? keyA : keyB));
    first.close();

    const store = Store.open(dataDir);
    try {
      const sql = store.db.prepare<[], { sql: string }>("SELECT sql FROM sqlite_schema WHERE name = 'spent_tokens'").get()!.sql;
      expect(sql).toMatch(/PRIMARY KEY \(key_id, nonce_hash\)/);
      expect(store.db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'spent_tokens' AND sql IS NOT NULL").all()).toEqual([]);
      const rows = store.db.prepare<[], { nonce_hash: Buffer; key_id: Buffer }>('SELECT nonce_hash, key_id FROM spent_tokens ORDER BY nonce_hash').all();
      expect(rows.map((r) => [r.nonce_hash[0], r.key_id[0]])).toEqual([[1, 0xa1], [2, 0xa1], [3, 0xa1], [4, 0xb2], [5, 0xb2]]);
      expect(() => store.db.prepare('INSERT INTO spent_tokens (nonce_hash, key_id) VALUES (?, ?)').run(hashes[0], keyA)).toThrow(/UNIQUE|PRIMARY/);
      expect(store.db.prepare('DELETE FROM spent_tokens WHERE key_id = ?').run(keyA).changes).toBe(3);
      const plan = store.db.prepare<[], { detail: string }>('EXPLAIN QUERY PLAN DELETE FROM spent_tokens WHERE key_id = x\'00\'').all().map((r) => r.detail).join(' ');
      expect(plan).toMatch(/SEARCH spent_tokens USING PRIMARY KEY \(key_id=\?\)/);
    } finally {
      store.close();
    }
  });
});
