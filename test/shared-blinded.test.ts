/**
 * The blinded design on a shared Postgres store (server/pg/epochs.ts):
 * real nodes on one database of the run's embedded Postgres, the real
 * client with tokens. One node (the leader) builds each epoch and stores
 * it; the others load it; keys are in the store only wrapped.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { E164 } from '../shared/e164.ts';
import { bytesEqual } from '../shared/bytes.ts';
import { designOf } from '../server/designs/index.ts';
import { SharedEpochs } from '../server/pg/epochs.ts';
import { PgSpentTokens } from '../server/tokens/spent.ts';
import { PgStore } from '../server/pg/store.ts';
import { FULL, runPcd, startTestServer, tempDir, type TestServer } from './helpers.ts';
import { createMasterKey } from '../server/pg/epochkeys.ts';
import { freshDatabase } from './stores.ts';

const X = '+14155550201' as E164;
const Y = '+14155550202' as E164;
const ASKER = '+14155550209';
const HOUR = 3600_000;

const blinded = (n: TestServer) => designOf(n.server.designs, 'blinded')!;
const waitFor = async (what: string, ok: () => boolean | Promise<boolean>, ms = 20_000) => {
  for (const t0 = Date.now(); !(await ok()); ) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 25));
  }
};

const answer = async (n: TestServer, token: string, number: string) => {
  const [r] = await n.client(token, 'blinded').lookupMany([number]);
  return r!.capabilities.length ? r!.capabilities : undefined;
};

describe('the blinded design on a shared store', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let masterKeyFile = '';
  const nodes: TestServer[] = [];
  const node = async (name: string, extra: object = {}) => {
    const n = await startTestServer({ store: db.url, designs: ['plain', 'blinded'], nodeName: name, masterKeyFile, graceMs: HOUR, epochStoreMs: 200, ...extra });
    nodes.push(n);
    return n;
  };
  const sql = async <T extends pg.QueryResultRow>(q: string, params: unknown[] = []): Promise<T[]> => {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      return (await c.query<T>(q, params)).rows;
    } finally {
      await c.end();
    }
  };

  beforeAll(async () => {
    db = await freshDatabase('pcd_blinded');
    masterKeyFile = path.join(tempDir(), 'master.key');
  });
  afterAll(async () => {
    for (const n of nodes) await n.close().catch(() => {});
    await db?.drop();
  });

  it('one node builds epoch 1 and stores it, the other loads it; a registration through either answers on both; one view, one token store', async () => {
    const n1 = await node('n1');
    // The first node made the master key (0600) and the first epoch, and built it (it leads).
    expect(fs.statSync(masterKeyFile).mode & 0o777).toBe(0o600);
    expect(n1.server.leadership?.isLeader).toBe(true);
    expect(blinded(n1).epochs).toBeInstanceOf(SharedEpochs);
    expect(blinded(n1).epochs.stats.builds).toBe(1);
    const n2 = await node('n2');
    expect(blinded(n2).epochs.stats).toMatchObject({ builds: 0, cacheLoads: 1 });

    const asker = await n1.admin.createAccount({ email: 'asker@pcd.test', numbers: [ASKER], capabilities: ['messages'] });
    await n1.admin.createAccount({ email: 'x@pcd.test', numbers: [X], capabilities: ['messages', 'facetime'] });
    expect(await answer(n1, asker.token, X)).toEqual(['messages', 'facetime']);
    await waitFor('node 2 has the registration', () => n2.server.directory.mask(X) !== 0);
    expect(await answer(n2, asker.token, X)).toEqual(['messages', 'facetime']);
    expect(await answer(n2, asker.token, Y)).toBeUndefined();
    await n2.admin.createAccount({ email: 'y@pcd.test', numbers: [Y], capabilities: ['messages'] });
    expect(await answer(n2, asker.token, Y)).toEqual(['messages']);
    await waitFor('node 1 has the registration', () => n1.server.directory.mask(Y) !== 0);
    expect(await answer(n1, asker.token, Y)).toEqual(['messages']);

    // One view: both configs name the same epoch, public key, Merkle root at the same version, and token keys.
    const config = async (n: TestServer): Promise<any> => (await fetch(`${n.server.url}/v1/blinded/config`, { headers: { accept: 'application/json' } })).json();
    const [c1, c2] = [await config(n1), await config(n2)];
    expect(c2.current).toBe(c1.current);
    expect(c2.epochs).toEqual(c1.epochs);
    expect(c1.epochs[0].tokenKeys.length).toBeGreaterThan(0);
    // The spent tokens are the store's: a token spent on one node is refused on every other (test/spent-tokens.test.ts).
    expect(blinded(n1).tokens!.spent).toBeInstanceOf(PgSpentTokens);
    expect(blinded(n2).tokens!.spent).toBeInstanceOf(PgSpentTokens);
    // The store holds the epoch key and the token keys only wrapped; no data folder holds a key file.
    const keys = await sql<{ wrapped: Buffer }>('SELECT wrapped FROM epoch_keys');
    expect(keys).toHaveLength(1);
    for (const n of [n1, n2]) {
      const secret = blinded(n).epochs.get(1).key.secretKey;
      expect(bytesEqual(keys[0]!.wrapped.subarray(12, 44), secret)).toBe(false);
      expect(keys[0]!.wrapped.includes(Buffer.from(secret))).toBe(false);
      expect(fs.existsSync(path.join(n.dataDir, 'oprf-keys.json'))).toBe(false);
      expect(fs.existsSync(path.join(n.dataDir, 'token-keys.json'))).toBe(false);
    }
    expect((await sql<{ n: number }>('SELECT count(*)::int AS n FROM token_keys'))[0]!.n).toBe(c1.epochs[0].tokenKeys.length);
    // One OHTTP gateway key for both nodes (a relay may forward to either), in the store wrapped, in no data folder.
    const gateway = async (n: TestServer) => Buffer.from(await (await fetch(`${n.server.url}/.well-known/ohttp-gateway`)).arrayBuffer());
    const [g1, g2] = [await gateway(n1), await gateway(n2)];
    expect(g1.length).toBeGreaterThan(32);
    expect(g2.equals(g1)).toBe(true);
    expect(await sql('SELECT key_id FROM ohttp_keys')).toEqual([{ key_id: 1 }]);
    for (const n of [n1, n2]) expect(fs.existsSync(path.join(n.dataDir, 'ohttp-key.json'))).toBe(false);
  });

  it('a node without the store\'s master key, or with another, stops at start in one line, without the password', async () => {
    const none = await runPcd(['serve', '--store', db.url, '--data', tempDir(), '--port', '0']);
    expect(none.code).not.toBe(0);
    expect(none.stderr.trim().split('\n')).toHaveLength(1);
    expect(none.stderr).toMatch(/master\.key: no master key there \(make one on one node and copy it to every node of the store\)/);
    const otherFile = path.join(tempDir(), 'other.key');
    createMasterKey(otherFile);
    const other = await runPcd(['serve', '--store', db.url, '--data', tempDir(), '--port', '0', '--master-key', otherFile]);
    expect(other.code).not.toBe(0);
    expect(other.stderr.trim().split('\n')).toHaveLength(1);
    expect(other.stderr).toMatch(/wrapped under another master key .*: copy master\.key from a node of this store/);
    for (const r of [none, other]) expect(r.stderr).not.toContain(new URL(db.url).password);
  });

  it('a rotation through a node that does not lead is built by the leader; every node serves the new epoch, the old one retires after the grace period', async () => {
    const [n1, n2] = [nodes[0]!, nodes[1]!];
    const follower = n1.server.leadership?.isLeader ? n2 : n1;
    const leader = follower === n1 ? n2 : n1;
    const r = await follower.admin.rotateKey({});
    expect(r).toEqual({ epoch: 2, previous: 1, retiresAt: expect.any(Number) });
    expect(blinded(leader).epochs.stats.builds).toBeGreaterThanOrEqual(1);
    expect(blinded(follower).epochs.currentNumber).toBe(2);
    await waitFor('the leader serves epoch 2 as current', () => blinded(leader).epochs.currentNumber === 2);
    const asker = await n1.admin.createAccount({ email: 'asker2@pcd.test', numbers: ['+14155550219'], capabilities: ['messages'] });
    for (const n of [n1, n2]) expect(await answer(n, asker.token, X)).toEqual(['messages', 'facetime']);
    const rows = await sql<{ epoch: number; retires_at: string | null }>('SELECT epoch, retires_at FROM epochs ORDER BY epoch');
    expect(rows.map((row) => [row.epoch, row.retires_at !== null])).toEqual([
      [1, true],
      [2, false],
    ]);
  });

  it('a node that joins later loads every epoch from the store and builds none; changes made meanwhile are replayed from the journal', async () => {
    const n1 = nodes[0]!;
    const z = '+14155550203' as E164;
    await n1.admin.createAccount({ email: 'z@pcd.test', numbers: [z], capabilities: ['messages'] });
    const n3 = await node('n3');
    const e = blinded(n3).epochs;
    // list() names an epoch while it loads: wait until both are loaded (or built, which the assertion below refuses).
    await waitFor('node 3 loads both epochs', () => e.stats.cacheLoads + e.stats.builds >= 2);
    expect(e.list()).toHaveLength(2);
    expect(e.stats.builds).toBe(0);
    expect(e.stats.cacheLoads).toBe(2);
    const asker = await n3.admin.createAccount({ email: 'asker3@pcd.test', numbers: ['+14155550229'], capabilities: ['messages'] });
    expect(await answer(n3, asker.token, z)).toEqual(['messages']);
    expect(await answer(n3, asker.token, X)).toEqual(['messages', 'facetime']);
  });
});

describe('the leader of a shared store stops during an epoch build', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  const nodes: TestServer[] = [];
  afterAll(async () => {
    for (const n of nodes) await n.close().catch(() => {});
    await db?.drop();
  });

  it('another node takes the lead and finishes the build; no registration acknowledged meanwhile is lost', async () => {
    db = await freshDatabase('pcd_failover');
    // Enough numbers that a build takes a second or more with the noble backend (1 to 2 ms per number per thread): the
    // leader is stopped a third of the way in, with two thirds of its build (most of a second at least) still ahead.
    // The builds are most of the test's time: 3000 numbers only under PCD_TEST_FULL=1.
    const seeded = FULL ? 3000 : 1000;
    const store = await PgStore.open(db.url, { node: 'seeder' });
    try {
      const accounts = Array.from({ length: seeded }, (_, i) => ({ email: `seed${i}@pcd.test`, numbers: [`+1415556${String(i).padStart(4, '0')}` as E164], mask: 1 }));
      await store.bulkInsert(accounts, Date.now());
    } finally {
      await store.close();
    }
    const masterKeyFile = path.join(tempDir(), 'master.key');
    // Epoch 1 built and stored by a node on the default backend, gone before the others start: they load it and
    // build none (noble would take seconds over it too), and the one that leads builds epoch 2, on noble.
    const first = await startTestServer({ store: db.url, designs: ['blinded'], nodeName: 'f0', masterKeyFile, graceMs: HOUR });
    nodes.push(first); // closed by afterAll if what follows fails
    expect(blinded(first).epochs.stats.builds).toBe(1);
    await first.close();
    nodes.splice(nodes.indexOf(first), 1);
    for (const name of ['f1', 'f2', 'f3']) {
      nodes.push(await startTestServer({ store: db.url, designs: ['blinded'], nodeName: name, masterKeyFile, graceMs: HOUR, backend: 'noble' }));
    }
    const leader = nodes.find((n) => n.server.leadership?.isLeader)!;
    const others = nodes.filter((n) => n !== leader);
    // The rotation is asked of a node that does not lead; it answers once the epoch is stored, whoever builds it.
    const rotation = others[0]!.admin.rotateKey({});
    await waitFor('the leader starts building epoch 2', () => blinded(leader).epochs.building?.epoch === 2);
    const during = await others[1]!.admin.createAccount({ email: 'during@pcd.test', numbers: ['+14155550299'], capabilities: ['messages', 'facetime'] });
    // A third of the way in: several of its 16 parts are stored (server/pg/epochbuild.ts).
    await waitFor('the leader is a third of the way through', () => (blinded(leader).epochs.building?.done ?? 0) >= seeded / 3, 60_000);
    await leader.close(); // its session, and the lock with it, ends
    nodes.splice(nodes.indexOf(leader), 1);
    expect(await rotation).toMatchObject({ epoch: 2, previous: 1 });
    const next = nodes.filter((n) => n.server.leadership?.isLeader);
    expect(next).toHaveLength(1);
    // The new leader built epoch 2 from where the old one stopped: the parts it stored, the rest computed.
    const resumed = blinded(next[0]!).epochs.stats.lastBuild!;
    expect(resumed.epoch).toBe(2);
    expect(resumed.reused).toBeGreaterThanOrEqual(seeded / 6);
    expect(resumed.reused).toBeLessThan(resumed.numbers);
    // The parts went with the build: the stored table has the tags.
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      expect((await c.query('SELECT count(*)::int AS n FROM epoch_build_parts')).rows[0].n).toBe(0);
    } finally {
      await c.end();
    }
    for (const n of nodes) {
      await waitFor('every node serves epoch 2', () => blinded(n).epochs.currentNumber === 2);
      expect(await answer(n, during.token, '+14155550299')).toEqual(['messages', 'facetime']);
      expect(await answer(n, during.token, '+14155560007')).toEqual(['messages']);
      // One seeded number of every part, and one never registered: the reused tags and the computed ones answer alike.
      // Two lookups: the 16 fill the 16-element size class, where 17 would be padded to 256 (evaluated on noble).
      const ofEveryPart = Array.from({ length: 16 }, (_, i) => `+1415556${String(100 + i).padStart(4, '0')}`);
      const client = n.client(during.token, 'blinded');
      expect((await client.lookupMany(ofEveryPart)).map((r) => r.capabilities)).toEqual(ofEveryPart.map(() => ['messages']));
      expect((await client.lookupMany(['+14155579999'])).map((r) => r.capabilities)).toEqual([[]]);
    }
  });
});

/** A describe's own database of the run's Postgres and master key; `node` starts a node on it (every node closed, and the database dropped, after the describe). */
function ownStore(prefix: string): { node(name: string, options: Parameters<typeof startTestServer>[0]): Promise<TestServer> } {
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
  let masterKeyFile = '';
  const nodes: TestServer[] = [];
  beforeAll(async () => {
    db = await freshDatabase(prefix);
    masterKeyFile = path.join(tempDir(), 'master.key');
  });
  afterAll(async () => {
    for (const n of nodes) await n.close().catch(() => {});
    await db?.drop();
  });
  return {
    async node(name, options) {
      const n = await startTestServer({ store: db!.url, nodeName: name, masterKeyFile, ...options });
      nodes.push(n);
      return n;
    },
  };
}

describe('nodes of one store that serve different designs', () => {
  const store = ownStore('pcd_mixed');

  it('a node without the blinded design that leads first gives the lead to one with it, which builds the epoch', async () => {
    const plainOnly = await store.node('plain-only', { designs: ['plain'] });
    expect(plainOnly.server.leadership?.isLeader).toBe(true); // alone, it leads (it purges the shared logs)
    // A blinded node is ready once its first epoch is built, which only the leader does: within the leader's poll,
    // not never (before, the plain-only leader kept the lead and the blinded node waited for an epoch no one built).
    let timer: NodeJS.Timeout | undefined;
    const withBlinded = await Promise.race([
      store.node('with-blinded', { designs: ['plain', 'blinded'] }),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the blinded node was not ready within 20 s')), 20_000))),
    ]).finally(() => clearTimeout(timer));
    expect(withBlinded.server.leadership?.isLeader).toBe(true);
    expect(plainOnly.server.leadership?.isLeader).toBe(false);
    expect(blinded(withBlinded).epochs.currentNumber).toBe(1);
    const token = (await withBlinded.admin.createAccount({ email: 'mixed@pcd.example', numbers: [X], capabilities: ['messages'] })).token;
    expect(await answer(withBlinded, token, X)).toEqual(['messages']);
  });
});

describe('a rotation through a node a refresh behind the store', () => {
  const store = ownStore('pcd_rotate_behind');

  it('follows the store\'s current epoch, not the one the node served: its reply names it as previous, and keeps its bucket bits', async () => {
    const first = await store.node('first', { designs: ['plain', 'blinded'], bucketBits: 5, graceMs: HOUR });
    const behind = await store.node('behind', { designs: ['plain', 'blinded'], graceMs: HOUR });
    expect(blinded(behind).epochs.currentNumber).toBe(1);
    // The second node's once-a-second read of the store held back, as on a node that has not read it since the rotation below.
    (blinded(behind).epochs as unknown as { tick(): void }).tick = () => {};
    expect(await blinded(first).epochs.rotate({ bucketBits: 6 })).toMatchObject({ epoch: 2, previous: 1 });
    expect(blinded(behind).epochs.currentNumber).toBe(1);
    // Before, the node took "previous" and the parameters to keep from the epoch it served (1, 5 bucket bits).
    const rotation = await blinded(behind).epochs.rotate({});
    expect(rotation).toMatchObject({ epoch: 3, previous: 2 });
    expect(rotation.retiresAt).toBeGreaterThan(Date.now());
    expect(blinded(behind).epochs.current.params.bucketBits).toBe(6);
  });
});
