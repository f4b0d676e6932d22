/**
 * The directory snapshot (server/directory-snapshot.ts): a restart loads the
 * in-memory directory from it and replays the journal, instead of scanning
 * the numbers table, and gives the same directory as the scan:
 * - property: random registrations and deletions through the admin API, a
 *   restart, then every number of the pool looked up through the real plain
 *   client answers as the model says, and the directory equals a scan;
 * - changes after the snapshot (a crash: no write at shutdown) are replayed
 *   from the journal;
 * - a corrupt, truncated or other-format snapshot, one older than the
 *   pruned journal, and one from another folder (digest mismatch) are
 *   ignored with a warning, and the scan is used.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DB_FILE } from '../disk/files.ts';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { Directory, type DirectorySource } from '../server/directory.ts';
import { snapshotPath } from '../server/directory-snapshot.ts';
import { Store } from '../server/store.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { capabilitiesToMask, type Capability } from '../shared/capabilities.ts';
import type { E164 } from '../shared/e164.ts';
import { startTestServer, tempDir } from './helpers.ts';
import crypto from 'node:crypto';
import { scanDataFolder } from '../audit/scan/scan.ts';

const pool = sampleNumbers({ count: 40, seed: 'directory-snapshot', regions: ['US', 'GB', 'DE'] });
const asker = sampleNumbers({ count: 1, seed: 'directory-snapshot-asker', exclude: (n) => pool.includes(n) })[0]!;
const CAPS: Capability[][] = [['messages'], ['facetime'], ['messages', 'facetime']];

/** A logger that keeps what it is told. */
function recorder() {
  const warnings: string[] = [];
  return {
    warnings,
    warn: (o: object, msg: string) => void warnings.push(`${msg} ${JSON.stringify(o)}`),
    info: () => {},
  };
}

function sorted(d: Directory): [string, number][] {
  return [...d.entries()].map((e): [string, number] => [e.number, e.mask]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/** Opens the folder's directory as a start does, and checks it against a scan of the same store. */
async function reopen(dataDir: string): Promise<{ source: DirectorySource; warnings: string[]; entries: [string, number][] }> {
  const store = Store.open(dataDir);
  try {
    store.enableDirectoryJournal();
    const log = recorder();
    const { directory, source } = await Directory.open(store, dataDir, log);
    const { directory: scanned } = await Directory.load(store);
    expect(sorted(directory)).toEqual(sorted(scanned));
    expect(directory.digest().bytes()).toEqual(scanned.digest().bytes());
    expect(store.directoryDigest()!.bytes()).toEqual(scanned.digest().bytes());
    return { source, warnings: log.warnings, entries: sorted(directory) };
  } finally {
    store.close();
  }
}

/** A folder with `numbers` registered through the store (journaled), one account each, and its snapshot written by a first open. */
async function folderWith(numbers: readonly E164[]): Promise<string> {
  const dataDir = tempDir('pcd-snapshot-');
  const store = Store.open(dataDir);
  try {
    store.enableDirectoryJournal();
    numbers.forEach((n, i) => store.createAccount({ email: `a${i}@example.org`, numbers: [n], mask: capabilitiesToMask(CAPS[i % 3]!) }, 0));
  } finally {
    store.close();
  }
  expect((await reopen(dataDir)).source).toBe('scan'); // no snapshot yet: scanned, and one written
  return dataDir;
}

/** Registers more numbers in the folder's store, as a server would before a crash (no snapshot written). */
function register(dataDir: string, numbers: readonly E164[], from = 100): void {
  const store = Store.open(dataDir);
  try {
    store.enableDirectoryJournal();
    numbers.forEach((n, i) => store.createAccount({ email: `b${from + i}@example.org`, numbers: [n], mask: capabilitiesToMask(['messages']) }, 0));
  } finally {
    store.close();
  }
}

describe('restart from the directory snapshot', () => {
  it('gives the same answers through the real plain client as the model, and the same directory as a scan (property)', async () => {
    const op = fc.record({ del: fc.boolean(), i: fc.nat(pool.length - 1), caps: fc.nat(2) });
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        let s = await startTestServer({ designs: ['plain'] });
        try {
          const model = new Map<E164, { id: number; caps: Capability[] }>();
          let email = 0;
          for (const o of ops) {
            const n = pool[o.i]!;
            const have = model.get(n);
            if (o.del && have) {
              await s.admin.deleteAccount(have.id);
              model.delete(n);
            } else if (!o.del && !have) {
              const { accountId } = await s.admin.createAccount({ email: `p${email++}@example.org`, numbers: [n], capabilities: CAPS[o.caps]! });
              model.set(n, { id: accountId, caps: CAPS[o.caps]! });
            }
          }
          s = await s.restart();
          expect(s.server.directorySource).toBe('snapshot');
          const { token } = await s.admin.createAccount({ email: 'asker@example.org', numbers: [asker], capabilities: ['messages'] });
          const answers = await s.client(token, 'plain').lookupMany(pool);
          expect(answers.map((a) => a.capabilities)).toEqual(pool.map((n) => model.get(n)?.caps ?? []));
          const { directory: scanned } = await Directory.load(s.server.store);
          expect(sorted(s.server.directory)).toEqual(sorted(scanned));
        } finally {
          await s.close();
        }
      }),
      { numRuns: 6 },
    );
  });

  it('replays the changes made after the snapshot (a crash: none written at shutdown)', async () => {
    const dataDir = await folderWith(pool.slice(0, 10));
    register(dataDir, pool.slice(10, 15));
    const r = await reopen(dataDir);
    expect(r.source).toBe('snapshot');
    expect(r.warnings).toEqual([]);
    expect(r.entries.map((e) => e[0])).toEqual(expect.arrayContaining(pool.slice(10, 15)));
    // A deletion after the snapshot too.
    const store = Store.open(dataDir);
    store.enableDirectoryJournal();
    store.deleteAccount(store.accountByEmail('a0@example.org')!.accountId);
    store.close();
    const again = await reopen(dataDir);
    expect(again.source).toBe('snapshot');
    expect(again.entries.map((e) => e[0])).not.toContain(pool[0]);
  });

  it('a server keeps the journal rows its snapshot on disk replays, and drops them once a new one is written', async () => {
    const s = await startTestServer({ designs: ['plain'] });
    const rows = () => s.server.store.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM directory_changes').get()!.n;
    try {
      await s.admin.createAccount({ email: 'x@example.org', numbers: [pool[0]!], capabilities: ['messages'] });
      expect(rows()).toBe(1);
      s.server.persistDirectory();
      expect(rows()).toBe(0);
      expect(fs.statSync(snapshotPath(s.dataDir)).mode & 0o777).toBe(0o600);
    } finally {
      await s.close();
    }
  });
});

describe('the periodic snapshot', () => {
  it('is rewritten every directorySnapshotMs while the directory changes, dropping the journal rows it kept', async () => {
    const s = await startTestServer({ designs: ['plain'], directorySnapshotMs: 30 });
    const rows = () => s.server.store.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM directory_changes').get()!.n;
    try {
      const { accountId } = await s.admin.createAccount({ email: 'x@example.org', numbers: [pool[0]!], capabilities: ['messages'] });
      await s.admin.deleteAccount(accountId);
      await vi.waitFor(() => expect(rows()).toBe(0), { timeout: 2000, interval: 20 });
      // The deleted number is in neither the journal nor the snapshot.
      expect(fs.readFileSync(snapshotPath(s.dataDir)).includes(Buffer.from(new Float64Array([Number(pool[0]!.slice(1))]).buffer))).toBe(false);
    } finally {
      await s.close();
    }
  });
});

describe('a snapshot that cannot be trusted is ignored with a warning, and the scan is used', () => {
  const damaged = (f: (bytes: Buffer) => Buffer, why: RegExp) => async () => {
    const dataDir = await folderWith(pool.slice(0, 8));
    register(dataDir, pool.slice(8, 10));
    fs.writeFileSync(snapshotPath(dataDir), f(fs.readFileSync(snapshotPath(dataDir))));
    const r = await reopen(dataDir);
    expect(r.source).toBe('scan');
    expect(r.warnings.join('\n')).toMatch(why);
    expect((await reopen(dataDir)).source).toBe('snapshot'); // the scan wrote a sound one
  };

  it('corrupt (one flipped bit)', damaged((b) => (b[60]! ^= 1, b), /checksum mismatch/));
  it('truncated', damaged((b) => b.subarray(0, b.length - 5), /truncated/));
  it('empty', damaged(() => Buffer.alloc(0), /truncated/));
  it('of another format version (checksum recomputed)', damaged((b) => {
    b.writeUInt32LE(2, 8);
    crypto.createHash('sha256').update(b.subarray(0, b.length - 32)).digest().copy(b, b.length - 32);
    return b;
  }, /format 2/));

  it('older than the pruned journal', async () => {
    const dataDir = await folderWith(pool.slice(0, 8));
    register(dataDir, pool.slice(8, 10));
    const store = Store.open(dataDir);
    store.pruneDirectoryChanges(store.directoryVersion());
    store.close();
    const r = await reopen(dataDir);
    expect(r.source).toBe('scan');
    expect(r.warnings.join('\n')).toMatch(/journal no longer holds/);
  });

  it('from another folder at the same version (digest mismatch)', async () => {
    const a = await folderWith(pool.slice(0, 8));
    const b = await folderWith(pool.slice(8, 16));
    fs.copyFileSync(snapshotPath(b), snapshotPath(a));
    const r = await reopen(a);
    expect(r.source).toBe('scan');
    expect(r.warnings.join('\n')).toMatch(/digest mismatch/);
    expect(r.entries.map((e) => e[0]).sort()).toEqual(pool.slice(0, 8).sort());
  });

  it('the numbers table edited outside the server (no version bump, no journal row)', async () => {
    const dataDir = await folderWith(pool.slice(0, 8));
    const db = new Database(path.join(dataDir, DB_FILE));
    expect(db.prepare<[string, string]>('UPDATE numbers SET number = ? WHERE number = ?').run(pool[30]!, pool[0]!).changes).toBe(1);
    db.close();
    const r = await reopen(dataDir);
    expect(r.source).toBe('scan');
    expect(r.warnings.join('\n')).toMatch(/written outside the server/);
    expect(r.entries.map((e) => e[0])).toContain(pool[30]);
    expect((await reopen(dataDir)).source).toBe('snapshot');
  });

  it('a bulk insert (pcd seed) after the snapshot leaves a gap in the journal', async () => {
    const dataDir = await folderWith(pool.slice(0, 8));
    const store = Store.open(dataDir);
    store.bulkInsert([{ email: 'bulk@example.org', numbers: [pool[20]!], mask: 1 }], 0);
    store.close();
    const r = await reopen(dataDir);
    expect(r.source).toBe('scan');
    expect(r.entries.map((e) => e[0])).toContain(pool[20]);
  });
});

describe('pcd audit --scan', () => {
  it('finds the registered numbers in the snapshot, as the directory, and no deleted one', async () => {
    const dataDir = await folderWith(pool.slice(0, 4));
    const store = Store.open(dataDir);
    store.enableDirectoryJournal();
    store.deleteAccount(store.accountByEmail('a0@example.org')!.accountId);
    const { directory } = await Directory.open(store, dataDir); // loaded from the snapshot and replayed
    directory.writeSnapshot(dataDir, store.directoryVersion());
    store.pruneDirectoryChanges(store.directoryVersion());
    store.close();
    const scan = scanDataFolder(dataDir, pool.slice(0, 4));
    const inSnapshot = (n: E164) => scan.numbers.find((x) => x.number === n)!.hits.filter((h) => h.file === 'directory.snapshot');
    for (const n of pool.slice(1, 4)) expect(inSnapshot(n)).toEqual([expect.objectContaining({ form: 'digits-f64le', design: 'directory' })]);
    expect(inSnapshot(pool[0]!)).toEqual([]);
  });
});
