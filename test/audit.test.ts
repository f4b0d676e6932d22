/**
 * The audit and the scan (docs/threat-model.md) on real data folders: a real server
 * on an ephemeral port, lookups through the real client with an injected
 * clock, the directory seeded through POST /v1/accounts; the server is
 * closed (logs flushed) before the data folder is audited. The blinded
 * audit's linked rows on a tampered copy of a served folder, and its
 * statement against the declarations. Also: the building blocks (hash
 * reversal, plan patterns and times, number forms, the multi-pattern
 * searcher, the WAL reader) against their references, and the claim that
 * the audit writes nothing under the data folder.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import Database from 'better-sqlite3';
import { auditBlinded, BLINDED_LOGS, blindedStatement } from '../audit/designs/blinded.ts';
import { auditHashed } from '../audit/designs/hashed.ts';
import { reverseHashes } from '../shared/reversal.ts';
import { formatAudit, type AuditResult } from '../audit/designs/index.ts';
import { auditPlain } from '../audit/designs/plain.ts';
import { databaseImage } from '../audit/image.ts';
import { parseTime } from '../audit/plan.ts';
import { parsePlan, planContains, surroundingRange } from '../shared/numbering.ts';
import { numberForms } from '../audit/scan/forms.ts';
import { scanDataFolder, type ScanResult } from '../audit/scan/scan.ts';
import { MultiPatternSearcher, type Boundary } from '../audit/scan/search.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { DB_FILE } from '../disk/files.ts';
import { readEpochKeys } from '../disk/keyfile.ts';
import { BLINDED_BUCKET_LOG, BLINDED_EVAL_LOG } from '../shared/designs/blinded.ts';
import { LOG_TABLES } from '../shared/designs/index.ts';
import { numberColumns, type LogTable } from '../shared/logs.ts';
import { Store } from '../server/store.ts';
import { DAY_MS } from '../server/querylog.ts';
import { bucketOf } from '../shared/buckets.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/designs/hashed.ts';
import { runPcd, startTestServer, tempDir, testClock, type TestServer } from './helpers.ts';

const HOUR = 3_600_000;
const BUCKET_BITS = 4;

// Valid US numbers: the target T, registered ones, and numbers only ever looked up.
const pool = sampleNumbers({ count: 40, seed: 'audit-test', regions: ['US'] });
const [T, alicePhone, bobPhone, x1, x2, x3, x4, ...rest] = pool as [E164, E164, E164, E164, E164, E164, E164, ...E164[]];
const registered = rest.slice(0, 20);
const blindedOnlyLookups = rest.slice(20, 26);

function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const abs = path.join(d, e.name);
      if (e.isDirectory()) walk(abs);
      else {
        const st = fs.statSync(abs);
        out.push(`${path.relative(dir, abs)} ${st.size} ${st.mtimeMs}`);
      }
    }
  };
  walk(dir);
  return out.sort();
}

function hitsOf(scan: ScanResult, n: E164) {
  return scan.numbers.find((x) => x.number === n)!.hits;
}

// ---------------------------------------------------------------------------
// One data folder served with all three designs

describe('audit of a data folder served with plain, hashed and blinded', () => {
  const clock = testClock();
  const t0 = clock.now();
  let s: TestServer;
  let dataDir: string;
  let alice: { accountId: number; token: string };
  let bob: { accountId: number; token: string };

  beforeAll(async () => {
    // Evaluations paid with the account (the blinded design's account path), so that its rows and the IP join are tested here;
    // the token path (the default) is test/audit-tokens.test.ts's.
    s = await startTestServer({ designs: ['plain', 'hashed', 'blinded'], now: clock.now, bucketBits: BUCKET_BITS, blindedAuth: 'account' });
    dataDir = s.dataDir;
    alice = await s.admin.createAccount({ email: 'alice@example.org', numbers: [alicePhone], capabilities: ['messages', 'facetime'] });
    bob = await s.admin.createAccount({ email: 'bob@example.org', numbers: [bobPhone], capabilities: ['messages'] });
    for (let i = 0; i < registered.length; i += 4) {
      await s.admin.createAccount({ email: `r${i}@example.org`, numbers: registered.slice(i, i + 4), capabilities: ['messages'] });
    }
    // t0: alice asks about T, a registered number and x1 in plain; t0+1h bob asks about T.
    await s.client(alice.token, 'plain').lookupMany([T, registered[0]!, x1]);
    clock.advance(HOUR);
    await s.client(bob.token, 'plain').lookup(T);
    // t0+2h, t0+3h: the same in hashed (x2 besides).
    clock.advance(HOUR);
    await s.client(alice.token, 'hashed').lookupMany([T, x2]);
    clock.advance(HOUR);
    await s.client(bob.token, 'hashed').lookup(T);
    // t0+4h: alice in blinded: T, x3 (only ever looked up blinded) and a registered number.
    clock.advance(HOUR);
    const r = await s.client(alice.token, 'blinded').lookupMany([T, x3, registered[1]!]);
    expect(r.map((x) => x.capabilities)).toEqual([[], [], ['messages']]);
    await s.close(); // flushes the batched logs
  });

  afterAll(async () => {
    await s?.close().catch(() => {});
  });

  it('plain: exactly the rows of the target, ordered by time, and none of other numbers', () => {
    const a = auditPlain(dataDir, { targets: [T] });
    expect(a.rows).toHaveLength(2);
    expect(a.rows.map((r) => [r.ts, r.number, r.accountId, r.email, r.answer])).toEqual([
      [t0, T, alice.accountId, 'alice@example.org', []],
      [t0 + HOUR, T, bob.accountId, 'bob@example.org', []],
    ]);
    for (const r of a.rows) expect(r.ip).toMatch(/127\.0\.0\.1$/);
    expect(a.requesters).toBe(2);
    // A registered target gets its answer; another number is not among T's rows.
    const reg = auditPlain(dataDir, { targets: [registered[0]!] });
    expect(reg.rows.map((r) => [r.number, r.answer])).toEqual([[registered[0], ['messages']]]);
    expect(auditPlain(dataDir, { targets: [x2] }).rows).toEqual([]); // x2 was only looked up hashed
    // No targets: the whole log, 4 rows.
    expect(auditPlain(dataDir, { targets: [] }).rows).toHaveLength(4);
  });

  it('plain: since is inclusive, until exclusive', () => {
    expect(auditPlain(dataDir, { targets: [T], since: t0 + 1 }).rows.map((r) => r.email)).toEqual(['bob@example.org']);
    expect(auditPlain(dataDir, { targets: [T], until: t0 + HOUR }).rows.map((r) => r.email)).toEqual(['alice@example.org']);
    expect(auditPlain(dataDir, { targets: [T], since: t0 + HOUR, until: t0 + HOUR + 1 }).rows).toHaveLength(1);
    expect(auditPlain(dataDir, { targets: [T], since: t0 + 2 * HOUR }).rows).toEqual([]);
  });

  it('hashed: enumerating a range that covers the target reverses its rows; the rate is reported', () => {
    const plan = surroundingRange(T, 5); // 10^5 candidates
    const a = auditHashed(dataDir, { targets: [T], plan });
    expect(a.reversal.candidates).toBe(100_000);
    expect(a.reversal.distinctHashes).toBe(2); // T and x2
    expect(a.reversal.reversed).toBeGreaterThanOrEqual(1);
    expect(a.reversal.ratePerSecond).toBeGreaterThan(0);
    expect(a.targets).toEqual([{ target: T, hash: Buffer.from(hashNumber(T)).toString('hex'), inPlan: true, reversed: true, rows: 2 }]);
    expect(a.rows.map((r) => [r.ts, r.number, r.email, r.via])).toEqual([
      [t0 + 2 * HOUR, T, 'alice@example.org', 'enumeration'],
      [t0 + 3 * HOUR, T, 'bob@example.org', 'enumeration'],
    ]);
    console.log(`hashed reversal: ${a.reversal.candidates} candidates in ${a.reversal.ms.toFixed(1)} ms = ${a.reversal.ratePerSecond} hashes/s`);
    // Range filter applies to the hashes enumerated against and to the rows.
    const late = auditHashed(dataDir, { targets: [T], plan, since: t0 + 3 * HOUR });
    expect(late.reversal.distinctHashes).toBe(1);
    expect(late.rows.map((r) => r.email)).toEqual(['bob@example.org']);
  });

  it('hashed: without targets, every row whose hash falls in the plan comes back as a number', () => {
    const a = auditHashed(dataDir, { targets: [], plan: `${surroundingRange(T)},${surroundingRange(x2)}` });
    expect(a.reversal.reversed).toBe(2);
    expect(a.rows.map((r) => r.number).sort()).toEqual([T, T, x2].sort());
    expect(a.warnings).toEqual([]);
  });

  it('hashed: a target outside the plan is said so, and still matched by its own hash', () => {
    const outside = x2.slice(0, -4) + 'XXXX';
    expect(planContains(parsePlan(outside), T)).toBe(false);
    const a = auditHashed(dataDir, { targets: [T], plan: outside });
    expect(a.targets[0]).toMatchObject({ target: T, inPlan: false, reversed: false, rows: 2 });
    expect(a.rows.every((r) => r.via === 'target-hash')).toBe(true);
    expect(a.warnings.join('\n')).toMatch(/outside the plan/);
  });

  it('blinded: no linked row; the bucket, who shares it, the anonymity set, and what the operator can produce', () => {
    const a = auditBlinded(dataDir, { targets: [T, registered[1]!] });
    expect(a.statement).toBe(blindedStatement());
    // The served database has exactly the declared columns (and id): nothing the audit does not know.
    expect(a.warnings).toEqual([]);
    expect(a.currentEpoch).toBe(1);
    expect(a.epochs).toMatchObject([{ epoch: 1, bucketBits: BUCKET_BITS, destroyedAt: null, keyOnDisk: true }]);
    const directory = [alicePhone, bobPhone, ...registered];
    expect(a.directorySize).toBe(directory.length);
    const [t, r] = a.targets;
    for (const x of [t!, r!]) {
      expect(x.linkedRows).toBe(0);
      expect(x.epoch).toBe(1);
      expect(x.bucketBits).toBe(BUCKET_BITS);
      expect(x.bucket).toBe(bucketOf(x.target, BUCKET_BITS));
      expect(x.registeredInBucket).toBe(directory.filter((n) => bucketOf(n, BUCKET_BITS) === x.bucket).length);
      expect(x.anonymitySet).toMatchObject({ planSize: 1e10, estimate: 1e10 / 2 ** BUCKET_BITS });
      expect(x.anonymitySet!.planSource).toMatch(/US \(\+1\) national numbers of 10 digits/);
    }
    expect(t!.registered).toBe(false);
    expect(r!.registered).toBe(true);
    // The one evaluation request: alice's, three blinded elements, no number.
    expect(a.evaluations.rows).toMatchObject([{ ts: t0 + 4 * HOUR, accountId: alice.accountId, email: 'alice@example.org', epoch: 1, count: 3 }]);
    expect(a.evaluations.elements).toBe(3);
    // T's bucket was fetched at t0+4h: that row concerns every number of the bucket alike.
    const fetches = t!.epochs.flatMap((e) => e.fetches);
    expect(fetches.length).toBeGreaterThanOrEqual(1);
    // Joined with the evaluation log on IP and time, a fetch points at alice: she asked about SOME number of the bucket.
    for (const f of fetches) expect(f).toMatchObject({ ts: t0 + 4 * HOUR, epoch: 1, bucket: t!.bucket, sameIpRequesters: [alice.accountId] });
    // With a plan, the anonymity set is counted in it.
    const p = auditBlinded(dataDir, { targets: [T], plan: surroundingRange(T, 6) });
    expect(p.targets[0]!.anonymitySet).toMatchObject({ planSize: 1e6, estimate: 1e6 / 16 });
    // Out of range: nothing to produce.
    const none = auditBlinded(dataDir, { targets: [T], until: t0 });
    expect(none.evaluations.rows).toEqual([]);
    expect(none.targets[0]!.epochs.flatMap((e) => e.fetches)).toEqual([]);
  });

  it('blinded: linked rows are counted in every column of every declared log table, for every form of the target', () => {
    // A tampered copy of the served folder: rows a server that logs as declared never writes.
    const copy = tempDir('pcd-audit-tampered-');
    fs.cpSync(dataDir, copy, { recursive: true });
    const keys = readEpochKeys(copy);
    const tag = numberForms(T, { epochs: [{ epoch: 1, mode: 'voprf', tagBytes: 8, secretKey: keys.get(1)! }] }).find((f) => f.form === 'tag-e1-hex')!;
    const sha256 = Buffer.from(hashNumber(T));
    const at = t0 + 5 * HOUR;
    const db = new Database(path.join(copy, DB_FILE));
    try {
      const evalRow = db.prepare(`INSERT INTO ${BLINDED_EVAL_LOG.name} (ts, account_id, ip, epoch, count) VALUES (?, ?, ?, 1, 1)`);
      evalRow.run(at, alice.accountId, T); // the E.164 text in the ip column
      evalRow.run(at, alice.accountId, sha256.toString('hex')); // its SHA-256 as hex text
      evalRow.run(at, alice.accountId, sha256); // its SHA-256 as a BLOB (column types are affinities to SQLite)
      evalRow.run(at, alice.accountId, `10.0.0.9 ${Buffer.from(tag.bytes).toString('latin1')}`); // its epoch-1 tag, inside a longer value
      evalRow.run(at, alice.accountId, x4); // an unrelated number
      db.prepare(`INSERT INTO ${BLINDED_BUCKET_LOG.name} (ts, ip, epoch, bucket, count) VALUES (?, ?, 1, 0, 1)`).run(at, T.slice(1)); // its digits
    } finally {
      db.close();
    }
    const a = auditBlinded(copy, { targets: [T, x4, x3] });
    expect(a.targets.map((t) => [t.target, t.linkedRows])).toEqual([
      [T, 5],
      [x4, 1],
      [x3, 0],
    ]);
    expect(a.warnings.find((w) => w.startsWith(`${T}: 4 row(s) of ${BLINDED_EVAL_LOG.name} hold a form of it`))).toMatch(/e164.*sha256-hex.*sha256-raw.*tag-e1-hex/);
    expect(a.warnings.find((w) => w.startsWith(`${T}: 1 row(s) of ${BLINDED_BUCKET_LOG.name} hold a form of it (digits)`))).toBeDefined();
    expect(formatAudit(a, 'csv').split('\n').find((l) => l.startsWith(`target,${T},`))).toMatch(new RegExp(`^target,\\${T},5,`));
    // The range applies: before the tampered rows, nothing is linked; the untampered folder links nothing.
    expect(auditBlinded(copy, { targets: [T, x4], until: at }).targets.map((t) => t.linkedRows)).toEqual([0, 0]);
    expect(auditBlinded(dataDir, { targets: [T, x4] }).targets.map((t) => t.linkedRows)).toEqual([0, 0]);
    // Without the key file, the tag is not a form that can be derived: the other four rows still count.
    fs.rmSync(path.join(copy, 'oprf-keys.json'));
    expect(auditBlinded(copy, { targets: [T] }).targets[0]!.linkedRows).toBe(4);
  });

  it('blinded: the statement is the declarations: every table and column, and no column derived from a number', () => {
    // The audit reads the design's declared log tables, all of them.
    expect(BLINDED_LOGS.map((t) => t.name)).toEqual(LOG_TABLES.filter((t) => t.design === 'blinded').map((t) => t.name));
    const statement = blindedStatement();
    for (const t of BLINDED_LOGS) {
      expect(numberColumns(t)).toEqual([]);
      // Every declared column, in order, with what it holds when that is not its name.
      const columns = t.columns.map((c) => (c.name === c.holds ? c.name : `${c.name} (${c.holds})`)).join(', ');
      expect(statement).toContain(`${t.name} rows hold ${columns} (${t.description})`);
    }
    const names = BLINDED_LOGS.map((t) => t.name).join(' or ');
    expect(statement.startsWith(`No row of ${names} is derived from a number`)).toBe(true);
    // Declare a column that holds a number's hash, and the statement says the opposite.
    const leaky: LogTable = { ...BLINDED_EVAL_LOG, name: 'leaky_log', columns: [...BLINDED_EVAL_LOG.columns, { name: 'hash', type: 'BLOB', holds: 'number-hash' }] };
    const told = blindedStatement([...BLINDED_LOGS, leaky]);
    expect(told.startsWith(`Rows of ${names} or leaky_log are derived from a number: leaky_log.hash hold`)).toBe(true);
    expect(told).not.toMatch(/No row/);
  });

  it('formats every result as a table, CSV and JSON', () => {
    const results: AuditResult[] = [
      auditPlain(dataDir, { targets: [T] }),
      auditHashed(dataDir, { targets: [T], plan: surroundingRange(T) }),
      auditBlinded(dataDir, { targets: [T] }),
    ];
    for (const r of results) {
      const table = formatAudit(r, 'table');
      expect(table).toContain(T);
      const csv = formatAudit(r, 'csv').split('\n');
      expect(csv[0]).toMatch(/^(ts|record),/);
      expect(csv.length).toBeGreaterThan(1);
      expect(JSON.parse(formatAudit(r, 'json'))).toEqual(JSON.parse(JSON.stringify(r)));
    }
    expect(formatAudit(results[0]!, 'csv').split('\n')).toHaveLength(3); // header + 2 rows
    expect(formatAudit(results[2]!, 'table')).toMatch(/linked rows/);
  });

  it('scan: looked-up numbers are in plain and hashed data, registered ones in the directory, blinded-only lookups nowhere', () => {
    const scan = scanDataFolder(dataDir, [T, x1, x2, x3, registered[0]!, registered[1]!]);
    const designsOf = (n: E164) => new Set(hitsOf(scan, n).map((h) => h.design));
    // T: looked up in plain (text) and hashed (SHA-256 raw).
    expect(hitsOf(scan, T).some((h) => h.design === 'plain' && h.form === 'e164')).toBe(true);
    expect(hitsOf(scan, T).some((h) => h.design === 'hashed' && h.form === 'sha256-raw')).toBe(true);
    expect([...designsOf(x1)]).toEqual(['plain']);
    expect([...designsOf(x2)]).toEqual(['hashed']);
    // x3 was only looked up through the blinded design: no trace anywhere.
    expect(hitsOf(scan, x3)).toEqual([]);
    // Registered numbers: the directory, and their tags in the bucket cache.
    for (const r of [registered[0]!, registered[1]!]) {
      expect(scan.numbers.find((n) => n.number === r)!.registered).toBe(true);
      expect(hitsOf(scan, r).some((h) => h.design === 'directory' && h.form === 'e164' && (h.table === 'numbers' || h.table === 'numbers_account'))).toBe(true);
      expect(hitsOf(scan, r).some((h) => h.attributedTo === 'blinded' && h.form === 'tag-e1-raw' && h.file === path.join('epochs', '1.bin'))).toBe(true);
    }
    // No unregistered number anywhere in blinded data.
    expect(scan.summary.find((r) => r.design === 'blinded')).toMatchObject({ unregisteredNumbers: 0, unregisteredHits: 0 });
    expect(scan.summary.find((r) => r.design === 'plain')!.unregisteredNumbers).toBe(2); // T, x1
    expect(scan.summary.find((r) => r.design === 'hashed')!.unregisteredNumbers).toBe(2); // T, x2
    expect(scan.epochs).toEqual([{ epoch: 1, mode: 'voprf', tagBytes: 8, keyOnDisk: true }]);
  });

  it('reads only: no file under the data folder is created or changed', () => {
    const before = listing(dataDir);
    auditPlain(dataDir, { targets: [T] });
    auditHashed(dataDir, { targets: [T], plan: surroundingRange(T) });
    auditBlinded(dataDir, { targets: [T] });
    scanDataFolder(dataDir, [T, x4]);
    expect(listing(dataDir)).toEqual(before);
    expect(before.some((l) => l.startsWith(`${DB_FILE}-shm`))).toBe(false);
  });

  it('the CLI prints the audit and the scan (exit code 0)', async () => {
    // In-process (test/helpers.ts runPcd): the program and its exit codes are the binary's.
    const run = async (...args: string[]) => {
      const r = await runPcd(['audit', ...args]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      return r.stdout;
    };
    const plain = await run('--data', dataDir, '--design', 'plain', '--target', T, '--format', 'json');
    expect(JSON.parse(plain).rows).toHaveLength(2);
    const hashed = await run('--data', dataDir, '--design', 'hashed', '--target', T.slice(2), '--region', 'US', '--format', 'csv');
    expect(hashed.trim().split('\n')).toHaveLength(3);
    const file = path.join(tempDir('pcd-audit-numbers-'), 'numbers.txt');
    fs.writeFileSync(file, `# numbers to look for\n${T}\n\n${x3}\n`);
    const parsed = JSON.parse(await run('--data', dataDir, '--scan', file, '--format', 'json')) as ScanResult;
    expect(parsed.numbers.map((n) => [n.number, n.hits.length > 0])).toEqual([
      [T, true],
      [x3, false],
    ]);
    const all = await run('--data', dataDir, '--target', T);
    expect(all).toMatch(/plain design/);
    expect(all).toMatch(/hashed design/);
    expect(all).toMatch(/blinded design/);
    expect(await runPcd(['audit', '--data', dataDir, '--design', 'hashed'])).toMatchObject({ code: 2 });
    // --account and --relay are the blinded design's: asked of another design alone, a user error.
    expect(await runPcd(['audit', '--data', dataDir, '--design', 'plain', '--target', T, '--account', String(alice.accountId)])).toMatchObject({ code: 2 });
  }, 120_000);
});

// ---------------------------------------------------------------------------
// A server that runs the blinded design only

describe('a data folder served with the blinded design only', () => {
  it('holds no trace of a number that was only looked up, anywhere', async () => {
    const clock = testClock();
    const s = await startTestServer({ designs: ['blinded'], now: clock.now, bucketBits: BUCKET_BITS });
    let scan: ScanResult;
    try {
      const alice = await s.admin.createAccount({ email: 'alice@example.org', numbers: [alicePhone], capabilities: ['messages'] });
      await s.admin.createAccount({ email: 'reg@example.org', numbers: registered.slice(0, 8), capabilities: ['messages', 'facetime'] });
      const client = s.client(alice.token, 'blinded');
      const answers = await client.lookupMany([...blindedOnlyLookups, registered[2]!]);
      expect(answers.map((a) => a.capabilities.length > 0)).toEqual([...blindedOnlyLookups.map(() => false), true]);
      clock.advance(HOUR);
      await client.lookupMany(blindedOnlyLookups.slice(0, 2));
    } finally {
      await s.close();
    }
    scan = scanDataFolder(s.dataDir, [...blindedOnlyLookups, registered[2]!, alicePhone]);
    for (const n of blindedOnlyLookups) {
      expect(scan.numbers.find((x) => x.number === n)).toEqual({ number: n, registered: false, hits: [] });
    }
    const reg = hitsOf(scan, registered[2]!);
    expect(reg.some((h) => h.design === 'directory')).toBe(true);
    expect(reg.some((h) => h.design === 'blinded')).toBe(true);
    // Every file of the folder was searched: database, key file, bucket cache, admin token.
    const files = scan.files.map((f) => f.file);
    expect(files).toEqual(expect.arrayContaining([DB_FILE, 'oprf-keys.json', path.join('epochs', '1.bin')]));
    expect(scan.forms).toEqual(expect.arrayContaining(['e164', 'digits', 'sha256-raw', 'sha1-hex', 'md5-HEX', 'tag-eN-raw', 'output-eN-hex']));

    // The audit says the same from the logs' side; the evaluations were paid with tokens (the default), padded to their size class.
    const a = auditBlinded(s.dataDir, { targets: blindedOnlyLookups });
    expect(a.targets.every((t) => t.linkedRows === 0 && t.registered === false)).toBe(true);
    expect(a.evaluations.rows).toEqual([]);
    expect(a.tokenEvaluations.paddedElements).toBeGreaterThanOrEqual(blindedOnlyLookups.length + 1);
  });
});

// ---------------------------------------------------------------------------
// Account ids are never reused: the audit shows each lookup against the account that asked

describe('account ids after a deletion', () => {
  it('are never given again, and the audit attributes a deleted account\'s lookups to it, not to a newer account', async () => {
    const clock = testClock();
    const [aPhone, bPhone, target] = sampleNumbers({ count: 3, seed: 'audit-id-reuse', regions: ['US'] }) as [E164, E164, E164];
    // The account path: only its evaluation rows name an account.
    const s = await startTestServer({ designs: ['plain', 'blinded'], now: clock.now, bucketBits: BUCKET_BITS, blindedAuth: 'account' });
    let a: { accountId: number; token: string };
    let b: { accountId: number; token: string };
    try {
      await s.admin.createAccount({ email: 'keeper@example.org', numbers: [alicePhone], capabilities: ['messages'] });
      a = await s.admin.createAccount({ email: 'a@example.org', numbers: [aPhone], capabilities: ['messages'] });
      await s.client(a.token, 'plain').lookup(target);
      await s.client(a.token, 'blinded').lookup(target);
      clock.advance(HOUR);
      await s.admin.deleteAccount(a.accountId);
      b = await s.admin.createAccount({ email: 'b@example.org', numbers: [bPhone], capabilities: ['messages'] });
      expect(b.accountId).not.toBe(a.accountId);
      expect(b.accountId).toBeGreaterThan(a.accountId);
      clock.advance(HOUR);
      await s.client(b.token, 'plain').lookup(target);
    } finally {
      await s.close();
    }
    const plain = auditPlain(s.dataDir, { targets: [target] });
    expect(plain.rows.map((r) => [r.accountId, r.email])).toEqual([
      [a.accountId, 'a@example.org'],
      [b.accountId, 'b@example.org'],
    ]);
    const blinded = auditBlinded(s.dataDir, { targets: [target] });
    // A is gone: its evaluation shows its id and no email, never B's.
    expect(blinded.evaluations.rows.map((r) => [r.accountId, r.email])).toEqual([[a.accountId, null]]);
    const table = formatAudit(blinded, 'table');
    expect(table).toContain('(deleted)');
    expect(table).not.toContain('b@example.org');
  });

  it('a log row of an id an earlier version gave to a later account is not attributed to that account', () => {
    const dataDir = tempDir();
    const t0 = Date.UTC(2026, 10, 1, 12, 0, 0);
    const store = Store.open(dataDir);
    try {
      // Carol (id 3) evaluated at t0 and was deleted; an earlier version then gave id 3 to dave (created at t0 + 1h).
      store.db.prepare('INSERT INTO blinded_eval_log (ts, account_id, ip, epoch, count) VALUES (?, 3, ?, 1, 2)').run(t0, '10.0.0.3');
      store.db.prepare("INSERT INTO accounts (id, email, token_hash, capabilities, created_at) VALUES (3, 'dave@example.org', NULL, 1, ?)").run(t0 + HOUR);
      store.db.prepare('INSERT INTO blinded_eval_log (ts, account_id, ip, epoch, count) VALUES (?, 3, ?, 1, 5)').run(t0 + 2 * HOUR, '10.0.0.4');
    } finally {
      store.close();
    }
    const a = auditBlinded(dataDir, { targets: [T] });
    expect(a.evaluations.rows.map((r) => [r.ts, r.accountId, r.email, r.count])).toEqual([
      [t0, 3, null, 2],
      [t0 + 2 * HOUR, 3, 'dave@example.org', 5],
    ]);
  });
});

// ---------------------------------------------------------------------------
// Retention: purged rows must not survive anywhere

describe('a data folder after the retention period', () => {
  it('holds no trace of purged lookups: not in tables, not in free pages, not in the WAL', async () => {
    const looked = sampleNumbers({ count: 60, seed: 'audit-retention', regions: ['US', 'GB', 'DE'] });
    const clock = testClock();
    let s = await startTestServer({ designs: ['plain', 'hashed'], now: clock.now, retentionMs: DAY_MS });
    try {
      const alice = await s.admin.createAccount({ email: 'alice@example.org', numbers: [alicePhone], capabilities: ['messages'] });
      await s.client(alice.token, 'plain').lookupMany(looked);
      await s.client(alice.token, 'hashed').lookupMany(looked);
      await s.close();
      const before = scanDataFolder(s.dataDir, looked);
      expect(before.numbers.every((n) => n.hits.some((h) => h.design === 'plain') && n.hits.some((h) => h.design === 'hashed'))).toBe(true);
      clock.advance(2 * DAY_MS);
      s = await s.restart(); // purges at start with the injected clock
    } finally {
      await s.close();
    }
    expect(auditPlain(s.dataDir, { targets: [] }).rows).toEqual([]);
    const after = scanDataFolder(s.dataDir, looked);
    expect(after.numbers.filter((n) => n.hits.length > 0).map((n) => [n.number, n.hits])).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// The WAL and free pages: where a careless server would leave numbers

describe('the scan reads the write-ahead log and free pages', () => {
  let dir: string;
  let store: Store;
  beforeAll(() => {
    dir = tempDir('pcd-audit-wal-');
    store = Store.open(dir);
    store.db.pragma('wal_autocheckpoint = 0'); // keep everything in the WAL
  });
  afterAll(() => store?.close());

  it('finds rows that are only in the WAL, attributed to their table, and the audit reads them too', () => {
    store.db.prepare('INSERT INTO plain_log (ts, account_id, email, ip, number, answer) VALUES (?, ?, ?, ?, ?, ?)').run(1000, 7, 'eve@example.org', '10.0.0.1', x4, 0);
    expect(fs.statSync(path.join(dir, `${DB_FILE}-wal`)).size).toBeGreaterThan(0);
    const scan = scanDataFolder(dir, [x4]);
    const hits = hitsOf(scan, x4);
    expect(hits.some((h) => h.attributedTo === 'wal:plain' && h.file === `${DB_FILE}-wal` && h.form === 'e164')).toBe(true);
    expect(auditPlain(dir, { targets: [x4] }).rows).toMatchObject([{ ts: 1000, email: 'eve@example.org', ip: '10.0.0.1' }]);
  });

  it('finds a dropped table in free pages when secure_delete is off, and nothing when it is on', () => {
    const run = (secureDelete: boolean, n: E164) => {
      store.db.pragma(`secure_delete = ${secureDelete ? 'ON' : 'OFF'}`);
      store.db.exec('CREATE TABLE junk (v TEXT)');
      const ins = store.db.prepare('INSERT INTO junk (v) VALUES (?)');
      for (let i = 0; i < 200; i++) ins.run(`${n} ${'.'.repeat(100)} ${i}`);
      store.db.pragma('wal_checkpoint(TRUNCATE)');
      store.db.exec('DROP TABLE junk');
      store.db.pragma('wal_checkpoint(TRUNCATE)');
      return hitsOf(scanDataFolder(dir, [n]), n);
    };
    const insecure = run(false, x3);
    expect(insecure.length).toBeGreaterThan(0);
    expect(insecure.every((h) => h.file === DB_FILE)).toBe(true);
    expect(insecure.some((h) => h.attributedTo === 'free-page')).toBe(true);
    expect(run(true, x2)).toEqual([]);
    store.db.pragma('secure_delete = ON');
  });

  it('labels hits in stale WAL frames (left behind when the WAL restarts without truncation)', () => {
    const y = rest[26]!;
    store.db.pragma('wal_checkpoint(TRUNCATE)');
    const ins = store.db.prepare('INSERT INTO plain_log (ts, account_id, email, ip, number, answer) VALUES (?, ?, ?, ?, ?, ?)');
    store.db.transaction(() => {
      for (let i = 0; i < 300; i++) ins.run(3000 + i, 9, `${'x'.repeat(60)}@example.org`, '10.0.0.3', y, 0);
    })();
    store.db.pragma('wal_checkpoint(RESTART)');
    store.setMeta('touch', 'a'); // the next write starts the WAL over: one new frame, the old ones stay behind it
    const hits = hitsOf(scanDataFolder(dir, [y]), y);
    const inWal = hits.filter((h) => h.file === `${DB_FILE}-wal`);
    expect(inWal.length).toBeGreaterThan(0);
    expect(inWal.every((h) => h.staleWalFrame === true && h.attributedTo.startsWith('wal:'))).toBe(true);
    expect(inWal.some((h) => h.attributedTo === 'wal:plain')).toBe(true);
    expect(hits.some((h) => h.file === DB_FILE && h.attributedTo === 'plain')).toBe(true);
    // The audit reads the state SQLite sees: the rows, once each.
    expect(auditPlain(dir, { targets: [y] }).rows).toHaveLength(300);
  });

  it('databaseImage equals what SQLite itself reads through the WAL', () => {
    store.db.prepare('INSERT INTO plain_log (ts, account_id, email, ip, number, answer) VALUES (?, ?, ?, ?, ?, ?)').run(2000, 8, 'mallory@example.org', '10.0.0.2', x1, 1);
    const main = fs.readFileSync(path.join(dir, DB_FILE));
    const wal = fs.readFileSync(path.join(dir, `${DB_FILE}-wal`));
    const mem = new Database(databaseImage(main, wal).image, { readonly: true });
    const live = store.db.prepare('SELECT * FROM plain_log ORDER BY id').all();
    expect(mem.prepare('SELECT * FROM plain_log ORDER BY id').all()).toEqual(live);
    mem.close();
    // The main file alone does not hold the WAL's rows.
    const old = new Database(databaseImage(main, undefined).image, { readonly: true });
    expect(old.prepare('SELECT count(*) AS n FROM plain_log WHERE ts = 2000').get()).toEqual({ n: 0 });
    old.close();
  });
});

// ---------------------------------------------------------------------------
// Building blocks against their references

describe('audit building blocks', () => {
  it('the test numbers are valid and distinct', () => {
    for (const n of pool) expect(normalizeNumber(n)).toBe(n);
    expect(new Set(pool).size).toBe(pool.length);
  });

  it('reverseHashes finds exactly the logged numbers of the plan', () => {
    const inside = [T.slice(0, -4) + '0000', T.slice(0, -4) + '9999', T] as E164[];
    const hashes = [...inside.map(hashNumber), hashNumber(x1), crypto.randomBytes(32)];
    const r = reverseHashes(hashes, parsePlan(surroundingRange(T)));
    expect(r.candidates).toBe(10_000);
    expect(new Set(r.numbers.values())).toEqual(new Set(inside));
    for (const [hex, n] of r.numbers) expect(Buffer.from(hashNumber(n)).toString('hex')).toBe(hex);
  });

  it('parsePlan reads patterns, drops contained ones, refuses bad ones', () => {
    expect(parsePlan('+1415555XXXX')).toEqual([{ pattern: '+1415555XXXX', size: 10_000 }]);
    expect(parsePlan('+1415555xxxx, +14155550XXX').map((p) => p.pattern)).toEqual(['+1415555XXXX']);
    expect(parsePlan('+1415555XXXX,+1212555XXXX')).toHaveLength(2);
    for (const bad of ['', '1415555XXXX', '+0415555XXXX', '+14A5555XXXX', '+1XX', '+1XXXXXXXXXXXX']) expect(() => parsePlan(bad)).toThrow();
  });

  it('parseTime reads ISO 8601 and ages', () => {
    const now = Date.UTC(2026, 10, 8);
    expect(parseTime('7d', now)).toBe(now - 7 * 86_400_000);
    expect(parseTime('12h', now)).toBe(now - 12 * HOUR);
    expect(parseTime('30m', now)).toBe(now - 30 * 60_000);
    expect(parseTime('now', now)).toBe(now);
    expect(parseTime('2026-11-01', now)).toBe(Date.UTC(2026, 10, 1));
    expect(parseTime('2026-11-01T12:00:00Z', now)).toBe(Date.UTC(2026, 10, 1, 12));
    for (const bad of ['yesterday', '7 days', '2026-13-45', '']) expect(() => parseTime(bad, now)).toThrow(/not a time/);
  });

  it('numberForms holds the text, digit, hash and tag forms', () => {
    const forms = numberForms(T);
    const byName = new Map(forms.map((f) => [f.form, Buffer.from(f.bytes)]));
    expect(byName.get('e164')!.toString()).toBe(T);
    expect(byName.get('digits')!.toString()).toBe(T.slice(1));
    expect(byName.get('national')!.toString()).toBe(T.slice(2));
    expect(byName.get('sha256-raw')).toEqual(Buffer.from(hashNumber(T)));
    expect(byName.get('sha1-HEX')!.toString()).toBe(crypto.createHash('sha1').update(T).digest('hex').toUpperCase());
    expect(byName.get('md5-hex')!.toString()).toBe(crypto.createHash('md5').update(T).digest('hex'));
    expect(numberForms(T, { national: false }).some((f) => f.form === 'national')).toBe(false);
  });

  it('a national number at the end of a longer digit string is no trace of it; binary after a number does not hide it', () => {
    const national = T.slice(2);
    const s = new MultiPatternSearcher(
      numberForms(T).map((f) => f.bytes),
      numberForms(T).map((f) => f.boundary),
    );
    const hits = (text: string) => {
      const out: number[] = [];
      s.searchBuffer(Buffer.from(text, 'latin1'), (_p, at) => out.push(at));
      return out;
    };
    expect(hits(`x${T}x`)).not.toEqual([]);
    expect(hits(`${T}7`)).not.toEqual([]); // e.g. an account id 0x37.. stored right after the number
    expect(hits(`127.0.0.1${T}`)).not.toEqual([]); // an IP column right before it
    expect(hits(`x${national},`)).not.toEqual([]);
    expect(hits(`+339${national}`)).toEqual([]);
  });

  it('MultiPatternSearcher finds what indexOf finds, across chunk boundaries', () => {
    const dir = tempDir('pcd-audit-search-');
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 4, maxLength: 40 }), { minLength: 1, maxLength: 20 }),
        fc.uint8Array({ minLength: 0, maxLength: 3000 }),
        fc.array(fc.tuple(fc.nat(20), fc.nat(3000)), { maxLength: 20 }),
        fc.integer({ min: 1, max: 300 }),
        fc.array(fc.constantFrom<Boundary>('none', 'digit-before'), { minLength: 20, maxLength: 20 }),
        (patterns, base, inserts, chunk, kinds) => {
          const buf = Buffer.from(base);
          for (const [pi, at] of inserts) {
            const p = patterns[pi % patterns.length]!;
            if (buf.length >= p.length) buf.set(p, at % (buf.length - p.length + 1));
          }
          // Digits and digit-free bytes both, so boundaries matter.
          for (let i = 0; i < buf.length; i += 3) if (buf[i]! % 2 === 0) buf[i] = 0x30 + (buf[i]! % 10);
          const boundaries = patterns.map((_p, i) => kinds[i]!);
          const digit = (at: number) => at >= 0 && buf[at]! >= 0x30 && buf[at]! <= 0x39;
          const expected: string[] = [];
          patterns.forEach((p, i) => {
            for (let at = buf.indexOf(p); at >= 0; at = buf.indexOf(p, at + 1)) {
              if (boundaries[i] === 'digit-before' && digit(at - 1)) continue;
              expected.push(`${i}@${at}`);
            }
          });
          const s = new MultiPatternSearcher(patterns, boundaries);
          const inMemory: string[] = [];
          s.searchBuffer(buf, (i, at) => inMemory.push(`${i}@${at}`));
          const file = path.join(dir, 'f.bin');
          fs.writeFileSync(file, buf);
          const fromFile: string[] = [];
          expect(s.searchFile(file, (i, at) => fromFile.push(`${i}@${at}`), chunk)).toBe(buf.length);
          expect(inMemory.sort()).toEqual(expected.sort());
          expect(fromFile.sort()).toEqual(expected.sort());
        },
      ),
      { numRuns: 200 },
    );
  });

  it('finds planted numbers among many patterns in a file larger than one read chunk', () => {
    const dir = tempDir('pcd-audit-big-');
    const numbers = sampleNumbers({ count: 1000, seed: 'audit-big', regions: ['US', 'DE', 'GB', 'IN'] });
    const patterns = numbers.flatMap((n) => numberForms(n).map((f) => f.bytes));
    // 16 MB of SQLite-like content: random bytes with runs of digits (throughput is measured by the bench, not here).
    const size = 16 << 20;
    const buf = crypto.randomBytes(size);
    for (let at = 0; at < size - 16; at += 97) buf.write(String(1e11 + ((at * 7919) % 9e11)), at, 'latin1');
    const planted = [5, size >> 1, size - 20];
    planted.forEach((at, i) => buf.set(Buffer.from(numbers[i]!), at));
    const file = path.join(dir, 'big.bin');
    fs.writeFileSync(file, buf);
    const s = new MultiPatternSearcher(patterns);
    const found: number[] = [];
    s.searchFile(file, (_p, at) => found.push(at), 1 << 20);
    for (const at of planted) expect(found).toContain(at);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
