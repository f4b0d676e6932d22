/**
 * The hashed design's index snapshot (server/designs/hashed-snapshot.ts): a
 * restart from the directory snapshot loads the index instead of hashing
 * every number, replays the journal on it, and answers as the plain design:
 * - registered and unregistered numbers, including numbers registered and
 *   deleted after the snapshot (a crash: the journal replayed), through the
 *   real hashed and plain clients;
 * - a corrupt, truncated or stale (other version) file is ignored with a
 *   warning: the index is built by hashing, and a fresh file written;
 * - a node no longer serving hashed removes the file; `pcd audit --scan`
 *   labels it as the hashed design's.
 */
import fs from 'node:fs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { scanDataFolder } from '../audit/scan/scan.ts';
import { hashedSnapshotPath } from '../server/designs/hashed-snapshot.ts';
import { Store } from '../server/store.ts';
import { capabilitiesToMask, type Capability } from '../shared/capabilities.ts';
import type { E164 } from '../shared/e164.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { startTestServer, type TestServer } from './helpers.ts';

const pool = sampleNumbers({ count: 40, seed: 'hashed-snapshot', regions: ['US', 'GB', 'DE'] });
const asker = sampleNumbers({ count: 1, seed: 'hashed-snapshot-asker', exclude: (n) => pool.includes(n) })[0]!;
const CAPS: Capability[][] = [['messages'], ['facetime'], ['messages', 'facetime']];

/** A pino logger that keeps its lines. */
function recorder() {
  const lines: { msg: string; reason?: string }[] = [];
  return { lines, logger: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) }) };
}

function hashedLoaded(s: TestServer): boolean | undefined {
  return s.server.designs.find((d) => d.name === 'hashed')!.snapshotLoaded;
}

/** The asker's token, per data folder (it survives restarts). */
const askers = new Map<string, string>();

/** Every pool number looked up through the hashed and the plain client: the same answers, and `expected`'s. */
async function expectAgreement(s: TestServer, expected: Map<E164, Capability[]>): Promise<void> {
  let token = askers.get(s.dataDir);
  if (!token) askers.set(s.dataDir, (token = (await s.admin.createAccount({ email: 'asker@example.org', numbers: [asker], capabilities: ['messages'] })).token));
  const hashed = await s.client(token, 'hashed').lookupMany(pool);
  const plain = await s.client(token, 'plain').lookupMany(pool);
  expect(hashed.map((a) => a.capabilities)).toEqual(plain.map((a) => a.capabilities));
  expect(hashed.map((a) => a.capabilities)).toEqual(pool.map((n) => expected.get(n) ?? []));
}

/** A stopped folder with pool[0..20) registered through a plain+hashed server (snapshots written at its clean stop). */
async function folder(): Promise<{ dataDir: string; expected: Map<E164, Capability[]> }> {
  const s = await startTestServer({ designs: ['plain', 'hashed'] });
  const expected = new Map<E164, Capability[]>();
  for (let i = 0; i < 20; i++) {
    await s.admin.createAccount({ email: `a${i}@example.org`, numbers: [pool[i]!], capabilities: CAPS[i % 3]! });
    expected.set(pool[i]!, CAPS[i % 3]!);
  }
  await s.close();
  expect(fs.existsSync(hashedSnapshotPath(s.dataDir))).toBe(true);
  return { dataDir: s.dataDir, expected };
}

/** Registers pool[20..30) and deletes pool[0..5) through the store alone: journaled, no snapshot written (a crash). */
function changeWhileDown(dataDir: string, expected: Map<E164, Capability[]>): void {
  const store = Store.open(dataDir);
  try {
    store.enableDirectoryJournal();
    for (let i = 20; i < 30; i++) {
      store.createAccount({ email: `b${i}@example.org`, numbers: [pool[i]!], mask: capabilitiesToMask(CAPS[i % 3]!) }, 0);
      expected.set(pool[i]!, CAPS[i % 3]!);
    }
    for (let i = 0; i < 5; i++) {
      store.deleteAccount(store.accountByEmail(`a${i}@example.org`)!.accountId);
      expected.delete(pool[i]!);
    }
  } finally {
    store.close();
  }
}

describe('restart with the hashed index snapshot', () => {
  it('loads the index and answers as plain, for registered and unregistered numbers', async () => {
    const { dataDir, expected } = await folder();
    const log = recorder();
    const s = await startTestServer({ designs: ['plain', 'hashed'], dataDir, logger: log.logger });
    try {
      expect(s.server.directorySource).toBe('snapshot');
      expect(hashedLoaded(s)).toBe(true);
      expect(log.lines.map((l) => l.msg)).toContain('hashed index loaded from its snapshot');
      await expectAgreement(s, expected);
    } finally {
      await s.close();
    }
  });

  it('replays the journal on it: numbers registered and deleted after the snapshot (a crash)', async () => {
    const { dataDir, expected } = await folder();
    changeWhileDown(dataDir, expected);
    const s = await startTestServer({ designs: ['plain', 'hashed'], dataDir });
    try {
      expect(s.server.directorySource).toBe('snapshot');
      expect(hashedLoaded(s)).toBe(true);
      await expectAgreement(s, expected);
      // Changes while it runs reach the loaded index too.
      const { accountId } = await s.admin.createAccount({ email: 'c@example.org', numbers: [pool[35]!], capabilities: ['facetime'] });
      expected.set(pool[35]!, ['facetime']);
      await s.admin.deleteAccount(s.server.store.accountByEmail('a10@example.org')!.accountId);
      expected.delete(pool[10]!);
      await expectAgreement(s, expected);
      expect(accountId).toBeGreaterThan(0);
    } finally {
      await s.close();
    }
  });

  const damaged = (damage: (b: Buffer, dataDir: string) => Buffer | undefined, reason: RegExp) => async () => {
    const { dataDir, expected } = await folder();
    const file = hashedSnapshotPath(dataDir);
    const bytes = damage(fs.readFileSync(file), dataDir);
    if (bytes) fs.writeFileSync(file, bytes);
    const log = recorder();
    let s = await startTestServer({ designs: ['plain', 'hashed'], dataDir, logger: log.logger });
    try {
      expect(s.server.directorySource).toBe('snapshot');
      expect(hashedLoaded(s)).toBe(false);
      const warning = log.lines.find((l) => l.msg === 'hashed index snapshot ignored: hashing every number');
      expect(warning?.reason).toMatch(reason);
      await expectAgreement(s, expected);
      // It wrote a fresh one at start: the next start loads it.
      s = await s.restart({ logger: undefined });
      expect(hashedLoaded(s)).toBe(true);
      await expectAgreement(s, expected);
    } finally {
      await s.close();
    }
  };
  it('corrupt (one flipped bit): built by hashing, then rewritten', damaged((b) => ((b[60]! ^= 1), b), /checksum mismatch/));
  it('truncated', damaged((b) => b.subarray(0, b.length - 5), /truncated/));
  it('of another directory version (stale, from before a crash)', async () => {
    const { dataDir, expected } = await folder();
    const stale = fs.readFileSync(hashedSnapshotPath(dataDir));
    // A clean run with changes writes both files at the new version; the stale hashed file is put back.
    let s = await startTestServer({ designs: ['plain', 'hashed'], dataDir });
    await s.admin.createAccount({ email: 'd@example.org', numbers: [pool[36]!], capabilities: ['messages'] });
    expected.set(pool[36]!, ['messages']);
    await s.close();
    fs.writeFileSync(hashedSnapshotPath(dataDir), stale);
    const log = recorder();
    s = await startTestServer({ designs: ['plain', 'hashed'], dataDir, logger: log.logger });
    try {
      expect(hashedLoaded(s)).toBe(false);
      expect(log.lines.find((l) => l.msg === 'hashed index snapshot ignored: hashing every number')?.reason).toMatch(/of directory version/);
      await expectAgreement(s, expected);
    } finally {
      await s.close();
    }
  });

  it('a directory from a scan never uses it', async () => {
    const { dataDir, expected } = await folder();
    fs.rmSync(`${dataDir}/directory.snapshot`);
    const s = await startTestServer({ designs: ['plain', 'hashed'], dataDir });
    try {
      expect(s.server.directorySource).toBe('scan');
      expect(hashedLoaded(s)).toBe(false);
      await expectAgreement(s, expected);
    } finally {
      await s.close();
    }
  });

  it('a node no longer serving hashed removes it when it writes its snapshot', async () => {
    const { dataDir } = await folder();
    const s = await startTestServer({ designs: ['plain'], dataDir });
    await s.admin.createAccount({ email: 'e@example.org', numbers: [pool[37]!], capabilities: ['messages'] });
    await s.close();
    expect(fs.existsSync(hashedSnapshotPath(dataDir))).toBe(false);
  });
});

describe('pcd audit --scan', () => {
  it('finds the registered numbers in hashed.snapshot, labelled the hashed design', async () => {
    const { dataDir } = await folder();
    const scan = scanDataFolder(dataDir, pool.slice(0, 3));
    for (const n of pool.slice(0, 3)) {
      const hits = scan.numbers.find((x) => x.number === n)!.hits.filter((h) => h.file === 'hashed.snapshot');
      expect(hits).toEqual([expect.objectContaining({ form: 'digits-f64le', design: 'hashed' })]);
    }
  });
});
