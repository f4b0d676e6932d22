/**
 * The audit and the scan on a data folder served with anonymous requesters
 * (Privacy Pass tokens, the blinded design's default): a real server, the
 * real client paying each evaluation with a token, an injected clock over
 * two days; then the same folder served once more with the account path,
 * so that both kinds of rows sit in one folder. The server is closed (logs
 * flushed) before the audit runs, in-process through the CLI
 * (test/helpers.ts runPcd) and through the functions.
 *
 * What is checked: the token evaluation rows name no account and carry a
 * size class, not an element count; an order on an account yields its
 * issuance per day and nothing that links it to an evaluation; spent
 * tokens are counted per token key with no time and no account; numbers
 * only looked up are nowhere in the folder; the scan attributes the token
 * tables and files to the blinded design (shown on a tampered copy).
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditBlinded, type BlindedAudit } from '../audit/designs/blinded.ts';
import { scanDataFolder, type ScanResult } from '../audit/scan/scan.ts';
import { readTokenKeyIds } from '../audit/tokenkeys.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { DB_FILE, OHTTP_KEY_FILE, TOKEN_KEY_FILE } from '../disk/files.ts';
import { BLINDED_TOKEN_EVAL_LOG, SPENT_TOKENS_TABLE } from '../shared/designs/blinded.ts';
import type { E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/designs/hashed.ts';
import { runPcd, startTestServer, tempDir, testClock, type TestServer } from './helpers.ts';

/** This folder's size classes: three numbers are one request of class 64. */
const CLASSES = [1, 64, 4096];

const DAY = 86_400_000;
const BUCKET_BITS = 4;

const pool = sampleNumbers({ count: 16, seed: 'audit-tokens-test', regions: ['US'] });
const [alicePhone, bobPhone, T, x1, x2, x3, x4, ...registered] = pool as [E164, E164, E164, E164, E164, E164, E164, ...E164[]];
/** Numbers only ever looked up: with tokens (T, x1, x2, x3) and with the account path (x4). */
const lookedUpOnly = [T, x1, x2, x3, x4];

/** Tokens fetched one at a time, when a lookup needs one: issuance is then exactly what the lookups spent. */
const ONE_AT_A_TIME = { tokens: { ahead: {}, periodMs: Infinity } };

/** `pcd audit ARGS` in-process; fails the test on a non-zero exit. */
async function audit(...args: string[]): Promise<string> {
  const r = await runPcd(['audit', ...args]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
}

describe('audit of a data folder served with tokens, then with the account path', () => {
  const clock = testClock(); // 2026-11-01T12:00:00Z
  const day1 = Date.UTC(2026, 10, 1);
  const day2 = day1 + DAY;
  let s: TestServer;
  let dataDir: string;
  let alice: { accountId: number; token: string };
  let bob: { accountId: number; token: string };
  let carolId: number;

  beforeAll(async () => {
    s = await startTestServer({ designs: ['blinded'], now: clock.now, bucketBits: BUCKET_BITS, sizeClasses: CLASSES });
    dataDir = s.dataDir;
    alice = await s.admin.createAccount({ email: 'alice@example.org', numbers: [alicePhone], capabilities: ['messages'] });
    bob = await s.admin.createAccount({ email: 'bob@example.org', numbers: [bobPhone], capabilities: ['messages'] });
    const carol = await s.admin.createAccount({ email: 'carol@example.org', numbers: registered, capabilities: ['messages', 'facetime'] });
    carolId = carol.accountId;
    // Day 1, 12:00: alice looks up three numbers: one request, padded to class 64, paid with one token of class 64.
    const a = await s.client(alice.token, 'blinded', ONE_AT_A_TIME).lookupMany([T, x1, registered[0]!]);
    expect(a.map((r) => r.capabilities.length > 0)).toEqual([false, false, true]);
    // Day 2, 12:00: alice and bob each look up one number from the same IP in the same minute: two tokens of class 1.
    clock.advance(DAY);
    await s.client(alice.token, 'blinded', ONE_AT_A_TIME).lookup(x2);
    await s.client(bob.token, 'blinded', ONE_AT_A_TIME).lookup(x3);
    // Day 2, 13:00: the same folder served with the account path; bob looks up x4 and pays with his account.
    clock.advance(3_600_000);
    s = await s.restart({ blindedAuth: 'account' });
    await s.client(bob.token, 'blinded').lookup(x4);
    await s.close(); // flushes the logs
  }, 60_000);

  afterAll(async () => {
    await s?.close().catch(() => {});
  });

  it('the token evaluation rows name no account and no element count: a minute, an IP, an epoch, a size class, a count', () => {
    const a = auditBlinded(dataDir, { targets: [T] });
    expect(a.warnings).toEqual([]);
    expect(a.tokenEvaluations.rows.map((r) => Object.keys(r).sort())).toEqual(a.tokenEvaluations.rows.map(() => ['count', 'epoch', 'ip', 'relay', 'sizeClass', 'ts']));
    // Alice's three numbers are class 64; alice's and bob's single lookups are one row of class 1, count 2: nothing tells them apart.
    expect(a.tokenEvaluations.rows.map((r) => [r.ts, r.epoch, r.sizeClass, r.count])).toEqual([
      [day1 + 12 * 3_600_000, 1, 64, 1],
      [day2 + 12 * 3_600_000, 1, 1, 2],
    ]);
    expect(a.tokenEvaluations).toMatchObject({ requests: 3, classes: [{ sizeClass: 1, requests: 2 }, { sizeClass: 64, requests: 1 }], paddedElements: 66 });
    for (const r of a.tokenEvaluations.rows) expect(r.ip).toMatch(/127\.0\.0\.1$/);
    // Neither an account id nor an email of the requesters appears in what the token rows yield.
    const json = JSON.stringify(a.tokenEvaluations);
    for (const x of ['alice@example.org', 'bob@example.org', 'accountId', 'account_id']) expect(json).not.toContain(x);
    // The account path's rows are there too, as before: bob's evaluation with his account, one element.
    expect(a.evaluations.rows).toMatchObject([{ ts: day2 + 13 * 3_600_000, accountId: bob.accountId, email: 'bob@example.org', epoch: 1, count: 1 }]);
    // T's bucket was fetched on day 1: the IP join finds one evaluation paid with a token, and no account.
    const fetches = a.targets[0]!.epochs.flatMap((e) => e.fetches);
    expect(fetches.length).toBeGreaterThan(0);
    const day1Fetch = fetches.find((f) => f.ts === day1 + 12 * 3_600_000)!;
    expect(day1Fetch).toMatchObject({ sameIpRequesters: [], sameIpTokenEvaluations: 1, relay: false });
    expect(a.targets[0]!.linkedRows).toBe(0);
  });

  it('an order on an account yields its token issuance per day (elements\' worth), and its account-path evaluations', async () => {
    const one = JSON.parse(await audit('--data', dataDir, '--design', 'blinded', '--target', T, '--account', String(alice.accountId), '--format', 'json')) as BlindedAudit;
    expect(one.accountsNamed).toEqual([alice.accountId]);
    expect(one.accounts).toEqual([
      {
        accountId: alice.accountId,
        status: 'exists',
        email: 'alice@example.org',
        createdAt: day1 + 12 * 3_600_000,
        // Beside each day: that day's evaluations paid with a token, every requester's (day 2: alice's and bob's).
        issuance: [
          { day: day1, elements: 64, sameDay: { requests: 1, paddedElements: 64, ips: 1 } },
          { day: day2, elements: 1, sameDay: { requests: 2, paddedElements: 2, ips: 1 } },
        ],
        issuedElements: 65,
        evaluations: [],
        evaluatedElements: 0,
      },
    ]);
    // Repeated and comma separated; an id no account ever had is said so.
    const three = JSON.parse(
      await audit('--data', dataDir, '--design', 'blinded', '--account', `${bob.accountId},${carolId}`, '--account', '99', '--format', 'json'),
    ) as BlindedAudit;
    expect(three.accounts.map((x) => [x.accountId, x.status, x.issuance.map((d) => [d.day, d.elements]), x.evaluations.map((e) => e.count)])).toEqual([
      [bob.accountId, 'exists', [[day2, 1]], [1]],
      [carolId, 'exists', [], []],
      [99, 'unknown', [], []],
    ]);
    // No --account: every account with a row in the range (carol has none).
    const every = auditBlinded(dataDir, { targets: [] });
    expect(every.accountsNamed).toBeNull();
    expect(every.accounts.map((x) => [x.accountId, x.issuedElements, x.evaluatedElements])).toEqual([
      [alice.accountId, 65, 0],
      [bob.accountId, 1, 1],
    ]);
    // A day's row is in a range that starts after its midnight; the day before is not.
    const late = auditBlinded(dataDir, { targets: [], since: day2 + 6 * 3_600_000, accounts: [alice.accountId] });
    expect(late.accounts[0]!.issuance.map((d) => [d.day, d.elements])).toEqual([[day2, 1]]);
    expect(late.tokenEvaluations.rows.map((r) => r.sizeClass)).toEqual([1]);
  });

  it('spent tokens are counted per token key, with its epoch and class from the token key file, and no time or account', () => {
    const a = auditBlinded(dataDir, { targets: [] });
    expect(a.spentTokens.total).toBe(3);
    expect(a.spentTokens.keys.map((k) => [k.epoch, k.sizeClass, k.spent])).toEqual([
      [1, 1, 2],
      [1, 64, 1],
    ]);
    const ids = readTokenKeyIds(dataDir);
    expect(ids.map((k) => k.sizeClass).sort((x, y) => x - y)).toEqual([...CLASSES]);
    for (const k of a.spentTokens.keys) {
      expect(k.keyIdPrefix).toMatch(/^[0-9a-f]{16}$/);
      expect(ids.find((i) => i.keyId.startsWith(k.keyIdPrefix))).toMatchObject({ epoch: k.epoch, sizeClass: k.sizeClass });
    }
    // Without the token key file the keys are still counted, unnamed.
    const copy = tempDir('pcd-audit-tokens-nokeys-');
    fs.cpSync(dataDir, copy, { recursive: true });
    fs.rmSync(path.join(copy, TOKEN_KEY_FILE));
    expect(auditBlinded(copy, { targets: [] }).spentTokens.keys.map((k) => [k.epoch, k.sizeClass, k.spent]).sort()).toEqual([
      [null, null, 1],
      [null, null, 2],
    ]);
  });

  it('pcd audit prints the token rows, the issuance per day and the spent tokens, as a table and as CSV; --relay marks a relay\'s rows', async () => {
    const table = await audit('--data', dataDir, '--design', 'blinded', '--target', T, '--relay', '127.0.0.1');
    expect(table).toMatch(/evaluation requests paid with a token \(blinded_token_eval_log\) in the range: 3 /);
    expect(table).toContain('They name no account and no element count');
    expect(table).toMatch(/127\.0\.0\.1 \(relay\)/);
    expect(table).toMatch(/Nothing links a token to its issuance/);
    expect(table).toMatch(/2026-11-01\s+1\s+alice@example\.org\s+64/);
    expect(table).toMatch(/2026-11-02\s+2\s+bob@example\.org\s+1/);
    expect(table).toMatch(/spent tokens held \(spent_tokens\): 3; .*no time and no account/);
    expect(table).toMatch(/evaluation requests paid with an account \(blinded_eval_log\) in the range: 1 /);
    const relayed = auditBlinded(dataDir, { targets: [], relays: ['::ffff:127.0.0.1'] });
    expect(relayed.tokenEvaluations.rows.every((r) => r.relay)).toBe(true);
    expect(auditBlinded(dataDir, { targets: [], relays: ['10.0.0.1'] }).tokenEvaluations.rows.some((r) => r.relay)).toBe(false);

    const csv = (await audit('--data', dataDir, '--design', 'blinded', '--target', T, '--format', 'csv')).trim().split('\n');
    const header = csv[0]!.split(',');
    const records = csv.slice(1).map((l) => Object.fromEntries(l.split(',').map((v, i) => [header[i]!, v])));
    expect(records.filter((r) => r.record === 'token_evaluation').map((r) => [r.size_class, r.count, r.account_id, r.email])).toEqual([
      ['64', '1', '', ''],
      ['1', '2', '', ''],
    ]);
    expect(records.filter((r) => r.record === 'issuance').map((r) => [r.account_id, r.time!.slice(0, 10), r.count])).toEqual([
      [String(alice.accountId), '2026-11-01', '64'],
      [String(alice.accountId), '2026-11-02', '1'],
      [String(bob.accountId), '2026-11-02', '1'],
    ]);
    expect(records.filter((r) => r.record === 'spent_tokens').map((r) => r.count)).toEqual(['2', '1']);
    // A bad account id or relay address is a user error (exit 2), named.
    for (const [opt, bad] of [['--account', 'x1'], ['--relay', 'relay.example']] as const) {
      const r = await runPcd(['audit', '--data', dataDir, '--design', 'blinded', opt, bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(bad);
    }
  });

  it('scan: a number only looked up, with a token or with the account, is nowhere in the folder; the token key file is the blinded design\'s', async () => {
    const file = path.join(tempDir('pcd-audit-tokens-numbers-'), 'numbers.txt');
    fs.writeFileSync(file, [...lookedUpOnly, registered[0]!].join('\n') + '\n');
    const scan = JSON.parse(await audit('--data', dataDir, '--scan', file, '--format', 'json')) as ScanResult;
    for (const n of lookedUpOnly) expect(scan.numbers.find((x) => x.number === n)).toEqual({ number: n, registered: false, hits: [] });
    const reg = scan.numbers.find((x) => x.number === registered[0])!;
    expect(reg.hits.some((h) => h.design === 'directory')).toBe(true);
    expect(reg.hits.some((h) => h.design === 'blinded' && h.file === path.join('epochs', '1.bin'))).toBe(true);
    expect(scan.summary.find((r) => r.design === 'blinded')).toMatchObject({ unregisteredNumbers: 0, unregisteredHits: 0 });
    // Every file was searched, the token key file among them as what it is.
    const kinds = new Map(scan.files.map((f) => [f.file, f.kind]));
    expect(kinds.get(TOKEN_KEY_FILE)).toBe('token keys');
    expect(kinds.get(OHTTP_KEY_FILE)).toBe('ohttp gateway key'); // made at the first start of a server that serves the blinded design (server/ohttp.ts)
    expect(kinds.get(DB_FILE)).toBe('database');
  });

  it('reads only: the audit and the scan, token key file included, create or change no file under the data folder', async () => {
    const listing = () =>
      fs
        .readdirSync(dataDir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => {
          const abs = path.join(e.parentPath, e.name);
          const st = fs.statSync(abs);
          return `${path.relative(dataDir, abs)} ${st.size} ${st.mtimeMs} ${st.mode.toString(8)}`;
        })
        .sort();
    const before = listing();
    auditBlinded(dataDir, { targets: [T], accounts: [alice.accountId] });
    await audit('--data', dataDir, '--design', 'blinded', '--format', 'csv');
    scanDataFolder(dataDir, [T]);
    expect(listing()).toEqual(before);
    expect(before.some((l) => l.startsWith(`${TOKEN_KEY_FILE} `))).toBe(true);
  });

  it('on a tampered copy, a number planted in the token tables is found, attributed to the blinded design and counted as linked rows', () => {
    const copy = tempDir('pcd-audit-tokens-tampered-');
    fs.cpSync(dataDir, copy, { recursive: true });
    const db = new Database(path.join(copy, DB_FILE));
    try {
      // Rows a server that keeps what it declares never writes: T's SHA-256 as a spent token's hash, x1's text as an IP.
      db.prepare(`INSERT INTO ${SPENT_TOKENS_TABLE} (nonce_hash, key_id) VALUES (?, ?)`).run(Buffer.from(hashNumber(T)), Buffer.alloc(32, 7));
      db.prepare(`INSERT INTO ${BLINDED_TOKEN_EVAL_LOG.name} (ts, ip, epoch, size_class, count) VALUES (?, ?, 1, 1, 1)`).run(day2, x1);
    } finally {
      db.close();
    }
    const scan = scanDataFolder(copy, [T, x1, x2]);
    const hits = (n: E164) => scan.numbers.find((x) => x.number === n)!.hits;
    expect(hits(T).some((h) => h.design === 'blinded' && h.table === SPENT_TOKENS_TABLE && h.form === 'sha256-raw')).toBe(true);
    expect(hits(x1).some((h) => h.design === 'blinded' && h.table === BLINDED_TOKEN_EVAL_LOG.name && h.form === 'e164')).toBe(true);
    expect(hits(x2)).toEqual([]);
    // The audit: spent tokens have no time, so they are searched whatever the range; the planted eval row only in its range.
    const a = auditBlinded(copy, { targets: [T, x1, x2] });
    expect(a.targets.map((t) => [t.target, t.linkedRows])).toEqual([
      [T, 1],
      [x1, 1],
      [x2, 0],
    ]);
    expect(a.warnings.some((w) => w.startsWith(`${T}: 1 row(s) of ${SPENT_TOKENS_TABLE} hold a form of it (sha256-raw)`))).toBe(true);
    expect(auditBlinded(copy, { targets: [T, x1], until: day2 }).targets.map((t) => t.linkedRows)).toEqual([1, 0]);
    expect(a.spentTokens.keys.some((k) => k.epoch === null && k.spent === 1)).toBe(true);
  });
});

describe('the relays a server was started with are recorded in the folder, and the audit marks their rows without --relay', () => {
  it('recorded, named by the order instead, or none', async () => {
    const s = await startTestServer({ designs: ['blinded'], sizeClasses: CLASSES, ohttpRelays: ['127.0.0.1'] });
    const a = await s.admin.createAccount({ email: 'r@example.org', numbers: [alicePhone], capabilities: ['messages'] });
    await s.client(a.token, 'blinded', ONE_AT_A_TIME).lookup(x1); // from 127.0.0.1: the configured relay's address
    const dataDir = s.dataDir;
    await s.close(); // the counting logs are written at close
    const recorded = auditBlinded(dataDir, { targets: [] });
    expect(recorded.relaysFrom).toBe('recorded');
    expect(recorded.relays).toEqual(['127.0.0.1']);
    expect(recorded.tokenEvaluations.rows.length).toBeGreaterThan(0);
    expect(recorded.tokenEvaluations.rows.every((r) => r.relay)).toBe(true);
    const table = await audit('--data', dataDir, '--design', 'blinded');
    expect(table).toMatch(/127\.0\.0\.1 \(relay\)/);
    expect(table).toMatch(/the OHTTP relays the server was started with \(127\.0\.0\.1, recorded in the folder/);
    // The order's --relay replaces what the folder recorded.
    const named = auditBlinded(dataDir, { targets: [], relays: ['10.0.0.1'] });
    expect(named.relaysFrom).toBe('order');
    expect(named.tokenEvaluations.rows.some((r) => r.relay)).toBe(false);
    // A folder never served with a relay records none.
    const plain = await startTestServer({ designs: ['blinded'], sizeClasses: CLASSES });
    const other = plain.dataDir;
    await plain.close();
    expect(auditBlinded(other, { targets: [] })).toMatchObject({ relaysFrom: 'none', relays: [] });
  });
});
