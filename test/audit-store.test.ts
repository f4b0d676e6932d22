/**
 * `pcd audit --store postgres://…`: the audit of a shared store, from a
 * copy of one snapshot of it into a temporary SQLite database
 * (audit/pgimage.ts). Two real `serve --store` nodes on a database of the
 * run's embedded Postgres (test/pg-global-setup.ts), lookups through the
 * real client, then the CLI in this process (runPcd); the same lookups on
 * a SQLite-backed server give the same rows. And `pcd audit --pg-data`, the
 * raw scan of a cluster of the test's own, whose start (initdb and the
 * server: processes of their own) begins with the file's first setup, to
 * run alongside it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/designs/hashed.ts';
import { copyStore, withPgSnapshot } from '../audit/pgimage.ts';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from '../server/pg/embedded.ts';
import { sampleNumbers } from '../synth/directory.ts';
import type { PgScanResult } from '../audit/scan/pgdata.ts';
import { runPcd, startTestServer, tempDir, type TestServer } from './helpers.ts';
import { freshDatabase } from './stores.ts';

const X = '+14155550101' as E164; // the target: registered, looked up through both nodes in both designs
const Y = '+14155550102' as E164; // looked up once, not a target
const ASKER = '+14155550109' as E164;
const ASKER_EMAIL = 'asker@pcd.test';

interface PlainJson {
  design: 'plain';
  store?: string;
  dataDir?: string;
  rows: { number: string; accountId: number; email: string; answer: string[] }[];
  requesters: number;
}
interface HashedJson {
  design: 'hashed';
  targets: { target: string; reversed: boolean; rows: number }[];
  rows: { number: string; email: string; hash: string; via: string }[];
  reversal: { distinctHashes: number; reversed: number };
}

/** Registers the asker and X, and looks X up through every node in every design, and Y once (plain). */
async function lookups(nodes: TestServer[]): Promise<{ askerId: number }> {
  const [first] = nodes as [TestServer];
  const asker = await first.admin.createAccount({ email: ASKER_EMAIL, numbers: [ASKER], capabilities: ['messages'] });
  await first.admin.createAccount({ email: 'x@pcd.test', numbers: [X], capabilities: ['messages', 'facetime'] });
  for (const n of nodes) {
    for (let t = 0; n.server.directory.mask(X) === 0; t += 10) {
      if (t > 5000) throw new Error('a node did not see the registration within 5 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    await n.client(asker.token, 'plain').lookupMany([X]);
    await n.client(asker.token, 'hashed').lookupMany([X]);
    await n.client(asker.token, 'blinded').lookupMany([X]);
  }
  await first.client(asker.token, 'plain').lookupMany([Y]);
  return { askerId: asker.accountId };
}

/**
 * The cluster of the --pg-data block (durable, as a deployment's), started once, by the first block that runs: it starts
 * in processes of its own while this one sets up the first block. A failed start is the --pg-data block's to report.
 */
let clusterStart: Promise<EmbeddedPostgres> | undefined;
function pgDataCluster(): Promise<EmbeddedPostgres> {
  if (!clusterStart) {
    clusterStart = startEmbeddedPostgres({ fast: false });
    clusterStart.catch(() => {}); // awaited (and its failure thrown) by the --pg-data block
  }
  return clusterStart;
}
afterAll(async () => {
  await (await clusterStart?.catch(() => undefined))?.stop();
});

describe('pcd audit --store: the audits on a copy of one snapshot of the shared store', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
  let dbUrl = '';
  let password = '';
  let askerId = 0;

  beforeAll(async () => {
    void pgDataCluster();
    db = await freshDatabase('pcd_audit');
    dbUrl = db.url;
    password = decodeURIComponent(new URL(dbUrl).password);
    const masterKeyFile = path.join(tempDir(), 'master.key');
    const nodes = [await startTestServer({ store: dbUrl, nodeName: 'n1', masterKeyFile })];
    nodes.push(await startTestServer({ store: dbUrl, nodeName: 'n2', masterKeyFile }));
    try {
      ({ askerId } = await lookups(nodes));
    } finally {
      for (const n of nodes) await n.close(); // the logs' last writes reach the store on close
    }
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('plain: the rows of the target from both nodes, with the asking account and its email; the output names the store without its password', async () => {
    const table = await runPcd(['audit', '--store', dbUrl, '--design', 'plain', '--target', X]);
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('2 row(s) from 1 requester account(s)');
    expect(table.stdout).toContain(ASKER_EMAIL);
    expect(table.stdout).not.toContain(Y);
    expect(table.stdout).toMatch(/^read from the shared store postgres:\/\/pcd:\*\*\*@127\.0\.0\.1:\d+\/pcd_audit_\w+: one REPEATABLE READ READ ONLY snapshot/);
    expect(table.stdout).not.toContain(password);

    const json = await runPcd(['audit', '--store', dbUrl, '--design', 'plain', '--target', X, '--format', 'json']);
    expect(json.code).toBe(0);
    const r = JSON.parse(json.stdout) as PlainJson;
    expect(r.rows.map((x) => [x.number, x.accountId, x.email, x.answer])).toEqual([
      [X, askerId, ASKER_EMAIL, ['messages', 'facetime']],
      [X, askerId, ASKER_EMAIL, ['messages', 'facetime']],
    ]);
    expect(r.requesters).toBe(1);
    expect(r.dataDir).toBeUndefined(); // the temporary copy is not named: it is gone
    expect(r.store).toMatch(/^postgres:\/\/pcd:\*\*\*@/);
    expect(json.stdout).not.toContain(password);
  });

  it('hashed: the logged hashes reversed as for a folder, rows from both nodes', async () => {
    const run = await runPcd(['audit', '--store', dbUrl, '--design', 'hashed', '--target', X, '--format', 'json']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const r = JSON.parse(run.stdout) as HashedJson;
    expect(r.targets).toEqual([expect.objectContaining({ target: X, reversed: true, rows: 2 })]);
    expect(r.rows.map((x) => [x.number, x.email, x.hash])).toEqual([
      [X, ASKER_EMAIL, Buffer.from(hashNumber(X)).toString('hex')],
      [X, ASKER_EMAIL, Buffer.from(hashNumber(X)).toString('hex')],
    ]);
    expect(run.stdout).not.toContain(password);
  });

  it('without --design: every design, blinded too, whose rows name no number; PCD_DATABASE_URL names the store', async () => {
    const all = await runPcd(['audit', '--target', X], { PCD_DATABASE_URL: dbUrl });
    expect(all.code).toBe(0);
    expect(all.stdout).toContain('plain design');
    expect(all.stdout).toContain('hashed design');
    expect(all.stdout).toContain('blinded design');
    const blinded = await runPcd(['audit', '--store', dbUrl, '--design', 'blinded', '--target', X, '--format', 'json']);
    expect(blinded.stderr).toBe('');
    expect(blinded.code).toBe(0);
    const r = JSON.parse(blinded.stdout) as { targets: { target: string; linkedRows: number }[]; store: string; currentEpoch: number; tokenEvaluations: { requests: number } };
    expect(r.store).toMatch(/^postgres:\/\/pcd:\*\*\*@/);
    expect(r.currentEpoch).toBe(1);
    expect(r.targets).toEqual([expect.objectContaining({ target: X, linkedRows: 0 })]);
    expect(r.tokenEvaluations.requests).toBe(2); // one through each node
    // The token-paid evaluations of both nodes are in the copy, counted, with no account and no number (token issuance names the account, as on one node).
    expect(blinded.stdout).not.toContain(password);
  });

  it('an unreachable store is one line and a non-zero exit, without the password', async () => {
    const u = new URL(dbUrl);
    u.port = String(await freePort());
    const run = await runPcd(['audit', '--store', u.toString(), '--design', 'plain', '--target', X]);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toMatch(/^pcd: audit --store postgres:\/\/pcd:\*\*\*@127\.0\.0\.1:\d+\/pcd_audit_\w+: /);
    expect(run.stderr).not.toContain(password);
  });

  it('a wrong password is one line, without either password', async () => {
    const u = new URL(dbUrl);
    u.password = 'not-the-password';
    const run = await runPcd(['audit', '--store', u.toString(), '--design', 'plain', '--target', X]);
    expect(run.code).not.toBe(0);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).not.toContain('not-the-password');
    expect(run.stderr).not.toContain(password);
  });

  it('the copy: BYTEA as BLOBs byte for byte, integers and NULLs as they are; its folder is 0700 and removed afterwards, also on error', async () => {
    const c = new pg.Client({ connectionString: dbUrl });
    await c.connect();
    const hashes = [Buffer.alloc(32, 0), Buffer.alloc(32, 0xff), Buffer.from('00ff0a0d095c4e'.padEnd(64, '7'), 'hex'), crypto.randomBytes(32)];
    const big = 2 ** 53 - 1;
    try {
      await c.query('INSERT INTO hashed_log (ts, hash, account_id, email, ip, answer) SELECT $1, h, 999, $2, $3, 0 FROM unnest($4::bytea[]) AS h', [
        big,
        'tab\there\nnewline\\é',
        '',
        hashes,
      ]);
      await c.query("INSERT INTO directory_changes (version, number, mask, previous) VALUES (999999, '+14155550199', 0, NULL)");
    } finally {
      await c.end();
    }
    const file = path.join(tempDir(), 'copy.sqlite');
    const info = await copyStore(dbUrl, file);
    expect(info.missing).toEqual([]);
    expect(info.tables.find((t) => t.name === 'hashed_log')!.rows).toBe(2 + hashes.length);
    const copy = new Database(file, { readonly: true });
    try {
      const rows = copy.prepare('SELECT ts, hash, email, ip FROM hashed_log WHERE account_id = 999 ORDER BY id').all() as { ts: number; hash: Buffer; email: string; ip: string }[];
      expect(rows.map((r) => r.hash)).toEqual(hashes);
      expect(rows.every((r) => Buffer.isBuffer(r.hash) && r.ts === big && r.email === 'tab\there\nnewline\\é' && r.ip === '')).toBe(true);
      expect(copy.prepare('SELECT previous, typeof(mask) AS t FROM directory_changes WHERE version = 999999').get()).toEqual({ previous: null, t: 'integer' });
      // The store's directory-write count, not the copy's inserts.
      expect(copy.prepare("SELECT value FROM meta WHERE key = 'directory_writes'").get()).toBeDefined();
    } finally {
      copy.close();
    }

    let seen = '';
    await withPgSnapshot(dbUrl, (dir) => {
      seen = dir;
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
      expect(fs.statSync(path.join(dir, 'pcd.sqlite')).mode & 0o777).toBe(0o600);
    });
    expect(fs.existsSync(seen)).toBe(false);
    await expect(
      withPgSnapshot(dbUrl, (dir) => {
        seen = dir;
        throw new Error('the audit failed');
      }),
    ).rejects.toThrow('the audit failed');
    expect(fs.existsSync(seen)).toBe(false);
    const before = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('pcd-audit-store-')).length;
    const u = new URL(dbUrl);
    u.port = String(await freePort());
    await expect(withPgSnapshot(u.toString(), () => undefined)).rejects.toThrow(/^audit --store/);
    expect(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('pcd-audit-store-')).length).toBe(before);
  });

  it('the same lookups on a SQLite-backed server audit to the same rows', async () => {
    const n = await startTestServer();
    try {
      await lookups([n, n]); // twice through one node: the two nodes' rows
    } finally {
      await n.close();
    }
    // --data given: the folder, whatever PCD_DATABASE_URL says.
    const folder = JSON.parse((await runPcd(['audit', '--data', n.dataDir, '--design', 'plain', '--target', X, '--format', 'json'], { PCD_DATABASE_URL: dbUrl })).stdout) as PlainJson;
    expect(folder.dataDir).toBe(path.resolve(n.dataDir));
    expect(folder.store).toBeUndefined();
    const store = JSON.parse((await runPcd(['audit', '--store', dbUrl, '--design', 'plain', '--target', X, '--format', 'json'])).stdout) as PlainJson;
    const shape = (r: PlainJson) => r.rows.map(({ number, email, answer }) => ({ number, email, answer }));
    expect(shape(store)).toEqual(shape(folder));
    expect(Object.keys(store.rows[0]!).sort()).toEqual(Object.keys(folder.rows[0]!).sort());
    const hashedFolder = JSON.parse((await runPcd(['audit', '--data', n.dataDir, '--design', 'hashed', '--target', X, '--format', 'json'])).stdout) as HashedJson;
    const hashedStore = JSON.parse((await runPcd(['audit', '--store', dbUrl, '--design', 'hashed', '--target', X, '--format', 'json'])).stdout) as HashedJson;
    expect(hashedStore.rows.map((r) => [r.number, r.hash, r.via])).toEqual(hashedFolder.rows.map((r) => [r.number, r.hash, r.via]));
    type BlindedJson = { targets: { linkedRows: number }[]; tokenEvaluations: { requests: number; classes: unknown[] } };
    const blindedFolder = JSON.parse((await runPcd(['audit', '--data', n.dataDir, '--design', 'blinded', '--target', X, '--format', 'json'])).stdout) as BlindedJson;
    const blindedStore = JSON.parse((await runPcd(['audit', '--store', dbUrl, '--design', 'blinded', '--target', X, '--format', 'json'])).stdout) as BlindedJson;
    expect(blindedStore.targets.map((t) => t.linkedRows)).toEqual(blindedFolder.targets.map((t) => t.linkedRows));
    expect(blindedStore.tokenEvaluations.classes).toEqual(blindedFolder.tokenEvaluations.classes);
  });
});

describe('pcd audit --pg-data: the raw scan of a Postgres data directory', () => {
  // A cluster of this test's own (durable, as a deployment's), so that its data directory is the test's to read.
  let cluster: EmbeddedPostgres | undefined;
  let dbUrl = '';
  const [asker, ...pool] = sampleNumbers({ count: 24, seed: 'audit-pg-data', regions: ['US'] }) as E164[];
  const lookedUp = pool.slice(0, 8);
  const never = pool.slice(8, 12); // neither looked up nor registered
  const hashedOnly = pool.slice(12, 15); // looked up through hashed only
  const blindedOnly = pool.slice(15, 23); // looked up through blinded only (tokens, the default)

  beforeAll(async () => {
    cluster = await pgDataCluster();
    dbUrl = await cluster.createDatabase('pcd_scan');
    const n = await startTestServer({ store: dbUrl, designs: ['plain', 'hashed', 'blinded'], nodeName: 'scan' });
    try {
      const a = await n.admin.createAccount({ email: 'scan@pcd.test', numbers: [asker!], capabilities: ['messages'] });
      await n.client(a.token, 'plain').lookupMany(lookedUp);
      await n.client(a.token, 'hashed').lookupMany(hashedOnly);
      // One number per lookup (an evaluation each), through one client: its config and tokens fetched once.
      const blinded = n.client(a.token, 'blinded');
      for (const x of blindedOnly) expect((await blinded.lookupMany([x]))[0]!.capabilities).toEqual([]);
    } finally {
      await n.close(); // its logs written
    }
    const c = new pg.Client({ connectionString: dbUrl });
    await c.connect();
    try {
      await c.query('CHECKPOINT'); // the pages from shared buffers to the relation files
    } finally {
      await c.end();
    }
  }, 120_000);
  // The cluster is stopped by the file's afterAll.

  it('finds every number looked up through plain (in the WAL and, after a checkpoint, in plain_log), the registered one, none looked up through blinded, and nothing of the others', async () => {
    const run = await runPcd(['audit', '--pg-data', cluster!.dataDir, '--store', dbUrl, '--target', [asker, ...lookedUp, ...never].join(','), '--format', 'json']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const r = JSON.parse(run.stdout) as PgScanResult;
    expect(r.files).toBeGreaterThan(100);
    expect(r.kinds['WAL segment']).toBeGreaterThanOrEqual(1);
    expect(r.notes.join(' ')).toMatch(/no attribution to designs/);
    const of = (x: E164) => r.numbers.find((n) => n.number === x)!;
    for (const x of lookedUp) {
      const n = of(x);
      expect(n.forms).toContain('e164');
      expect(n.places.some((p) => p.kind === 'WAL segment' && p.file.startsWith(`pg_wal${path.sep}`))).toBe(true);
      expect(n.places.some((p) => p.relation === 'public.plain_log' && p.file.startsWith(`base${path.sep}`))).toBe(true);
    }
    expect(of(asker!).places.some((p) => p.relation === 'public.numbers')).toBe(true);
    for (const x of never) expect(of(x)).toMatchObject({ files: 0, forms: [], places: [] });
    // hashed: its log holds the SHA-256 of the number as bytes, and nothing holds the number itself.
    const hashedRun = await runPcd(['audit', '--pg-data', cluster!.dataDir, '--store', dbUrl, '--target', hashedOnly.join(','), '--format', 'json']);
    for (const n of (JSON.parse(hashedRun.stdout) as PgScanResult).numbers) {
      expect(n.forms).toEqual(['sha256-raw']);
      expect(n.places.some((p) => p.relation === 'public.hashed_log')).toBe(true);
    }

    // blinded: 0 of the numbers looked up through it, anywhere in the cluster's files (relation files, WAL), where plain leaves every one.
    const blindedRun = await runPcd(['audit', '--pg-data', cluster!.dataDir, '--store', dbUrl, '--target', blindedOnly.join(','), '--format', 'json']);
    expect(blindedRun.code).toBe(0);
    const blindedScan = JSON.parse(blindedRun.stdout) as PgScanResult;
    expect(blindedScan.numbers).toHaveLength(blindedOnly.length);
    for (const n of blindedScan.numbers) expect(n).toMatchObject({ files: 0, forms: [], places: [] });
    // The evaluations were logged, in the store, without a number: what the scan searched was there.
    const c = new pg.Client({ connectionString: dbUrl });
    await c.connect();
    try {
      expect((await c.query<{ n: number }>('SELECT sum(count)::int AS n FROM blinded_token_eval_log')).rows[0]!.n).toBeGreaterThanOrEqual(blindedOnly.length);
    } finally {
      await c.end();
    }

    // The table, offline (no --store): the same numbers found, relation files by oid, and the note.
    const table = await runPcd(['audit', '--pg-data', cluster!.dataDir, '--target', [...lookedUp, ...never].join(',')]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(`${lookedUp.length + never.length} number(s), ${lookedUp.length} found`);
    expect(table.stdout).toContain('no attribution to designs');
    expect(table.stdout).toContain(`no trace anywhere in the data directory: ${never.join(', ')}`);
    expect(table.stdout).toMatch(/relation \(database \d+, relfilenode \d+\)/);
  });

  it('a folder that is not a cluster, and no number, are one line each', async () => {
    const notPg = await runPcd(['audit', '--pg-data', tempDir(), '--target', lookedUp[0]!]);
    expect(notPg.code).not.toBe(0);
    expect(notPg.stderr.trim().split('\n')).toHaveLength(1);
    expect(notPg.stderr).toMatch(/not a Postgres data directory/);
    const none = await runPcd(['audit', '--pg-data', cluster!.dataDir]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/give --target NUMBER or --scan NUMBERS_FILE/);
  });
});
