/**
 * The blinded epoch cache against a database changed under it (issue 17,
 * item 9): a registered number's digit changed inside `pcd.sqlite`, with
 * SQLite's integrity check still passing and the directory version
 * unchanged. The cache records the digest of the directory it was built
 * from (server/directory.ts, server/blinded/recovery.ts); the next start
 * sees the mismatch, warns and rebuilds, so all three designs give the same
 * answers. An untouched folder, and one whose cache lags behind journaled
 * changes (registration and deletion), still load without a rebuild.
 */
import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { sampleNumbers } from '../synth/directory.ts';
import type { E164 } from '../shared/e164.ts';
import type { BlindedServerDesign } from '../server/designs/blinded.ts';
import { designOf } from '../server/designs/index.ts';
import { Store } from '../server/store.ts';
import { DB_FILE } from '../disk/files.ts';
import { Directory } from '../server/directory.ts';
import { directoryDigestAt } from '../server/blinded/recovery.ts';
import type { ServerContext } from '../server/context.ts';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import { startTestServer, type TestServer } from './helpers.ts';

const numbers = sampleNumbers({ count: 12, seed: 'epoch-digest', regions: ['US', 'GB'] });
const registered = numbers.slice(0, 8);

const open: TestServer[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => {});
});

function blinded(s: TestServer): BlindedServerDesign {
  return designOf(s.server.designs, 'blinded')!;
}

/** A logger whose lines the test reads. */
function capture(): { logger: pino.Logger; lines: () => { msg: string; level: number }[] } {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines: () => out.map((l) => JSON.parse(l) as { msg: string; level: number }) };
}

async function answers(s: TestServer, token: string, asked: readonly E164[]): Promise<Record<string, string[][]>> {
  const out: Record<string, string[][]> = {};
  for (const design of ['plain', 'hashed', 'blinded'] as const) {
    const client = s.client(token, design);
    out[design] = (await client.lookupMany([...asked])).map((r) => [...r.capabilities]);
  }
  return out;
}

/** A number with one digit changed (the last one, to another digit), so it stays a valid E.164 number of the same region. */
function flipLastDigit(n: E164): E164 {
  const last = Number(n.at(-1));
  return `${n.slice(0, -1)}${(last + 1) % 10}` as E164;
}

describe('an epoch cache whose directory changed in the database without a version bump', () => {
  it('is rebuilt at the next start, with a warning, and all three designs agree', async () => {
    let s = await startTestServer({ designs: ['plain', 'hashed', 'blinded'], bucketBits: 1 });
    open.push(s);
    const { token } = await s.admin.createAccount({ email: 'asker@example.org', numbers: [numbers[11]!], capabilities: ['messages'] });
    for (const [i, n] of registered.entries()) await s.admin.createAccount({ email: `u${i}@example.org`, numbers: [n], capabilities: ['messages', 'facetime'] });
    const victim = registered[3]!;
    const changed = flipLastDigit(victim);
    expect(numbers).not.toContain(changed);
    await s.close();
    open.splice(0);

    // One digit of a registered number, changed straight in the file: no journal row, no version bump.
    const db = new Database(path.join(s.dataDir, DB_FILE));
    const version = db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'directory_version'").get()!.value;
    expect(db.prepare<[string, string]>('UPDATE numbers SET number = ? WHERE number = ?').run(changed, victim).changes).toBe(1);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'directory_version'").get()!.value).toBe(version);
    db.close();

    const log = capture();
    s = await startTestServer({ dataDir: s.dataDir, designs: ['plain', 'hashed', 'blinded'], bucketBits: 1, logger: log.logger });
    open.push(s);
    const stats = blinded(s).epochs.stats;
    expect(stats.cacheLoads).toBe(0);
    expect(stats.builds).toBe(1);
    const warning = log.lines().find((l) => /differs from the one epoch 1's cache was built from/.test(l.msg));
    expect(warning?.level).toBe(40); // pino's warn
    expect(JSON.stringify(log.lines())).not.toContain(victim.slice(1)); // the warning names no number

    const got = await answers(s, token, [victim, changed, registered[0]!, numbers[9]!]);
    expect(got.plain).toEqual([[], ['messages', 'facetime'], ['messages', 'facetime'], []]);
    expect(got.hashed).toEqual(got.plain);
    expect(got.blinded).toEqual(got.plain);

    // The rebuilt cache carries the directory's digest as it is now: the start after loads it.
    s = await s.restart({ logger: undefined });
    open.splice(0, 1, s);
    expect(blinded(s).epochs.stats).toMatchObject({ cacheLoads: 1, builds: 0 });
    expect((await answers(s, token, [changed])).blinded).toEqual([['messages', 'facetime']]);
  });

  it('an untouched folder loads from its cache; the digest rewound through journaled registrations and deletions is the one the cache recorded', async () => {
    const s = await startTestServer({ designs: ['plain', 'blinded'], bucketBits: 1 });
    open.push(s);
    for (const [i, n] of registered.entries()) await s.admin.createAccount({ email: `u${i}@example.org`, numbers: [n], capabilities: ['messages'] });
    const again = await s.restart();
    open.splice(0, 1, again);
    expect(blinded(again).epochs.stats).toMatchObject({ cacheLoads: 1, builds: 0 });
    await again.close();
    open.splice(0);

    // The rewind a start does when a cache lags behind the journal (server/blinded/recovery.ts), on the store offline.
    const store = Store.open(again.dataDir);
    try {
      store.enableDirectoryJournal();
      const before = { version: store.directoryVersion(), digest: (await Directory.load(store)).directory.digest().bytes() };
      const owner = store.db.prepare<[string], { account_id: number }>('SELECT account_id FROM numbers WHERE number = ?').get(registered[2]!)!.account_id;
      store.deleteAccount(owner);
      store.createAccount({ email: 'late@example.org', numbers: [numbers[10]!, registered[2]!], mask: capabilitiesToMask(['facetime']) }, Date.now());
      const { directory } = await Directory.load(store);
      const ctx = { store, directory, directoryVersion: () => store.directoryVersion() } as unknown as ServerContext;
      expect(store.directoryVersion()).toBe(before.version + 3);
      expect(Buffer.from(directory.digest().bytes()).equals(Buffer.from(before.digest))).toBe(false);
      expect(Buffer.from(directoryDigestAt(ctx, before.version)!).equals(Buffer.from(before.digest))).toBe(true);
      // Rows of an earlier version (no `previous`) cannot be rewound: the start then rebuilds.
      store.db.exec('UPDATE directory_changes SET previous = NULL');
      expect(directoryDigestAt(ctx, before.version)).toBeUndefined();
      expect(directoryDigestAt(ctx, store.directoryVersion())).toEqual(directory.digest().bytes());
    } finally {
      store.close();
    }
  });
});
