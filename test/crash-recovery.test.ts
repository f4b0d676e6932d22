/**
 * The blinded epochs across crashes and slow starts:
 * - a REAL server process (harness/fork.ts) killed with SIGKILL right after a
 *   registration, restarted on the same data folder as another process,
 *   which is killed the same way right after a deletion: each time the
 *   epoch comes back from its cache plus the journaled change (no build),
 *   and the real client sees the change. The two processes are forked up
 *   front (the second loads while the first runs); the last restart, which
 *   is not killed but stopped, is a server in this process;
 * - the directory journal (server/store.ts): written in the transaction of
 *   the change, pruned once the caches and the directory snapshot
 *   (server/directory-snapshot.ts) reflect it;
 * - each design comes up on its own: while the blinded epoch builds (held
 *   at a gate, so nothing depends on the machine's speed) the server
 *   listens, plain and hashed answer, blinded answers 503 with Retry-After
 *   and its progress, and a registration made meanwhile is not lost.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAdminClient, createClient } from '../client/client.ts';
import { forkServer, type ServerChild } from '../harness/fork.ts';
import type { ChildServerOptions } from '../harness/child.ts';
import { readCacheVersion } from '../server/blinded/table.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { Store } from '../server/store.ts';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import { PATHS } from '../shared/messages.ts';
import { designOf } from '../server/designs/index.ts';
import type { E164 } from '../shared/e164.ts';
import { ADMIN_TOKEN, TEST_SIZE_CLASSES, describeDesigns, holdEpochBuilds, raw, startTestServer, tempDir } from './helpers.ts';

const pool = sampleNumbers({ count: 60, seed: 'crash-recovery', regions: ['US', 'GB', 'DE'] });
const seeded = pool.slice(0, 40);
const fresh = pool.slice(40);

/** A data folder with `numbers` registered straight into the store, one account each (ids 1..n), capability 'messages'. */
function seedFolder(numbers: readonly E164[]): string {
  const dataDir = tempDir('pcd-crash-');
  const store = Store.open(dataDir);
  try {
    store.bulkInsert(numbers.map((n, i) => ({ email: `seed${i}@example.org`, numbers: [n], mask: capabilitiesToMask(['messages']) })), Date.now());
  } finally {
    store.close();
  }
  return dataDir;
}

function onDisk(dataDir: string): { version: number; journal: { version: number; number: string; mask: number }[]; cacheVersion: number | undefined } {
  const store = Store.open(dataDir);
  try {
    return {
      version: store.directoryVersion(),
      journal: store.db.prepare<[], { version: number; number: string; mask: number }>('SELECT version, number, mask FROM directory_changes ORDER BY version').all(),
      cacheVersion: readCacheVersion(dataDir, 1),
    };
  } finally {
    store.close();
  }
}

const children: ServerChild[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) await c.close().catch(() => {});
});

function child(): ServerChild {
  const c = forkServer();
  children.push(c);
  return c;
}

/** SIGKILL: no close, no cache write, no log flush; resolves once the process is gone. */
async function kill9(c: ServerChild): Promise<void> {
  process.kill(c.pid, 'SIGKILL');
  await c.close(); // the process is exiting: this only waits for its exit
}

describe('a server killed with SIGKILL right after a directory change', () => {
  it('comes back from its cache plus the journaled change, without a rebuild, for a registration and a deletion', async () => {
    const dataDir = seedFolder(seeded);
    const options: ChildServerOptions = { dataDir, adminToken: ADMIN_TOKEN, designs: ['plain', 'blinded'], bucketBits: 2, evalThreads: 0, sizeClasses: TEST_SIZE_CLASSES };
    // The two processes to kill, forked up front: the second loads tsx and the module graph (a second or so of CPU)
    // while the first runs, and touches the data folder only once told to start, after the first is gone.
    const [first, second] = [child(), child()];

    // First start: no cache, one build.
    const up = await first.start(options, 120_000);
    expect(up.epochStats).toMatchObject({ builds: 1, cacheLoads: 0 });
    const admin = createAdminClient({ baseUrl: up.url, adminToken: ADMIN_TOKEN });
    const carol = fresh[0]!;
    const { token } = await admin.createAccount({ email: 'carol@example.org', numbers: [carol], capabilities: ['messages'] });
    // Killed before the debounced cache write: the change is only in the journal.
    await kill9(first);
    const afterKill = onDisk(dataDir);
    expect(afterKill.cacheVersion).toBeLessThan(afterKill.version);
    expect(afterKill.journal).toEqual([{ version: afterKill.version, number: carol, mask: capabilitiesToMask(['messages']) }]);

    const again = await second.start(options, 120_000);
    expect(again.epochStats).toMatchObject({ builds: 0, cacheLoads: 1, replayedChanges: 1, evaluations: 1 });
    const blinded = createClient({ baseUrl: again.url, token, design: 'blinded' });
    expect(await blinded.lookupMany([carol, seeded[0]!, fresh[1]!])).toEqual([
      { number: carol, capabilities: ['messages'] },
      { number: seeded[0], capabilities: ['messages'] },
      { number: fresh[1], capabilities: [] },
    ]);

    // A deletion, killed the same way.
    await createAdminClient({ baseUrl: again.url, adminToken: ADMIN_TOKEN }).deleteAccount(1); // seeded[0]'s account
    await kill9(second);
    // The restart that is not killed: a server in this process, on the same options (no process start to pay for).
    const third = await startTestServer(options);
    let thirdOpen = true;
    try {
      const backStats = designOf(third.server.designs, 'blinded')!.epochs.stats;
      expect(backStats).toMatchObject({ builds: 0, cacheLoads: 1 });
      expect(backStats.replayedChanges).toBeGreaterThanOrEqual(1); // the deletion, and carol again unless the cache was written in between
      const after = createClient({ baseUrl: third.server.url, token, design: 'blinded' });
      expect((await after.lookupMany([seeded[0]!, carol, seeded[1]!])).map((r) => r.capabilities)).toEqual([[], ['messages'], ['messages']]);
      expect((await createClient({ baseUrl: third.server.url, token, design: 'plain' }).lookup(seeded[0]!)).capabilities).toEqual([]);

      // A graceful stop writes the cache and prunes the journal: deleted numbers are not kept.
      thirdOpen = false;
      await third.close();
    } finally {
      if (thirdOpen) await third.close().catch(() => {});
    }
    const clean = onDisk(dataDir);
    expect(clean.cacheVersion).toBe(clean.version);
    expect(clean.journal).toEqual([]);
  }, 240_000);
});

describe('the directory journal', () => {
  it('is written in the transaction of the change, one version per number, and not at all for a refused change', () => {
    const store = Store.open(tempDir());
    try {
      store.enableDirectoryJournal();
      const v0 = store.directoryVersion();
      const a = store.createAccount({ email: 'a@example.org', numbers: [fresh[0]!, fresh[1]!], mask: 1 }, 0);
      expect(a.version).toBe(v0 + 2);
      expect(store.directoryChangesSince(v0)).toEqual([
        { version: v0 + 1, number: fresh[0], mask: 1, previous: 0 },
        { version: v0 + 2, number: fresh[1], mask: 1, previous: 0 },
      ]);
      expect(() => store.createAccount({ email: 'b@example.org', numbers: [fresh[2]!, fresh[1]!], mask: 2 }, 0)).toThrow(/registered to another account/);
      expect(store.directoryVersion()).toBe(v0 + 2);
      const d = store.deleteAccount(a.accountId)!;
      expect(d.version).toBe(v0 + 4);
      const removed = store.directoryChangesSince(v0 + 2)!;
      expect(removed.map((c) => c.version)).toEqual([v0 + 3, v0 + 4]);
      expect(removed.map((c) => [c.number, c.mask, c.previous]).sort()).toEqual([[fresh[0], 0, 1], [fresh[1], 0, 1]].sort());
      // A bulk insert is not journaled: the journal no longer reaches back past it.
      store.bulkInsert([{ email: 'c@example.org', numbers: [fresh[3]!], mask: 1 }], 0);
      expect(store.directoryChangesSince(v0 + 4)).toBeUndefined();
      expect(store.directoryChangesSince(store.directoryVersion())).toEqual([]);
      expect(store.pruneDirectoryChanges(v0 + 3)).toBe(3);
      expect(store.directoryChangesSince(v0 + 3)).toBeUndefined(); // still the gap of the bulk insert
    } finally {
      store.close();
    }
  });

  it('is pruned once every cache and the directory snapshot reflect it, with or without the blinded design', async () => {
    const s = await startTestServer({ designs: ['plain', 'blinded'] });
    try {
      await s.admin.createAccount({ email: 'a@example.org', numbers: [fresh[0]!], capabilities: ['messages'] });
      const rows = () => s.server.store.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM directory_changes').get()!.n;
      expect(rows()).toBe(1);
      const blinded = s.server.designs.find((d) => d.name === 'blinded') as unknown as { epochs: { persist(): void } };
      blinded.epochs.persist();
      expect(rows()).toBe(1); // the directory snapshot still replays it
      s.server.persistDirectory();
      expect(rows()).toBe(0);
    } finally {
      await s.close();
    }
    const p = await startTestServer({ designs: ['plain'] });
    try {
      await p.admin.createAccount({ email: 'b@example.org', numbers: [fresh[1]!], capabilities: ['messages'] });
      const rows = () => p.server.store.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM directory_changes').get()!.n;
      expect(rows()).toBe(1);
      p.server.persistDirectory();
      expect(rows()).toBe(0);
    } finally {
      await p.close();
    }
  });
});

describe('each design comes up on its own', () => {
  // One server for the block, its epoch build held at a gate until the last test releases it.
  let release: () => void = () => {};
  let server: Awaited<ReturnType<Awaited<ReturnType<typeof holdEpochBuilds>>['startServer']>>;
  let token: string;
  let dataDir: string;
  const carol = fresh[0]!;

  beforeAll(async () => {
    const held = await holdEpochBuilds();
    release = held.release;
    dataDir = seedFolder(seeded);
    server = await held.startServer({ dataDir, adminToken: ADMIN_TOKEN, evalThreads: 0, logIntervalMs: 20, sizeClasses: TEST_SIZE_CLASSES, port: 0 });
    const admin = createAdminClient({ baseUrl: server.url, adminToken: ADMIN_TOKEN });
    ({ token } = await admin.createAccount({ email: 'carol@example.org', numbers: [carol], capabilities: ['facetime'] }));
  });
  afterAll(async () => {
    release();
    await server?.close();
    vi.doUnmock('../server/blinded/build.ts');
    vi.resetModules();
  });

  describeDesigns(
    'while the blinded epoch builds, %s',
    (design) => {
      it('answers, a registration made meanwhile included', async () => {
        const r = await createClient({ baseUrl: server.url, token, design }).lookupMany([carol, seeded[0]!, fresh[1]!]);
        expect(r.map((x) => x.capabilities)).toEqual([['facetime'], ['messages'], []]);
      });
    },
    ['plain', 'hashed'],
  );

  it('while it builds, blinded answers 503 with its progress and a Retry-After', async () => {
    const config = await raw(server.url + PATHS.blindedConfig, { method: 'GET' });
    expect(config.status).toBe(503);
    expect(config.json.error).toMatchObject({ code: 'unavailable', message: expect.stringMatching(/epoch 1 is building: 0 of 40 numbers evaluated \(0%\)/) });
    const res = await fetch(server.url + PATHS.blindedBucket(1, 0));
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await res.arrayBuffer();
    const blinded = createClient({ baseUrl: server.url, token, design: 'blinded' });
    await expect(blinded.lookup(carol)).rejects.toMatchObject({ code: 'unavailable' });
  });

  it('once built, blinded answers too: the build kept the registration made meanwhile', async () => {
    release();
    await server.ready;
    const design = server.designs.find((d) => d.name === 'blinded') as unknown as { epochs: { stats: { lastBuild?: { pendingChanges: number } } } };
    expect(design.epochs.stats.lastBuild).toMatchObject({ pendingChanges: 1 });
    const after = createClient({ baseUrl: server.url, token, design: 'blinded' });
    expect((await after.lookupMany([carol, seeded[0]!, fresh[1]!])).map((x) => x.capabilities)).toEqual([['facetime'], ['messages'], []]);
    expect(fs.existsSync(path.join(dataDir, 'epochs', '1.bin'))).toBe(true);
  });
});
