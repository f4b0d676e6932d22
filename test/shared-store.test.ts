/**
 * Several nodes on one Postgres (`pcd serve --store postgres://…`): each a
 * real server with a data folder of its own, on a database of the run's
 * embedded Postgres (test/pg-global-setup.ts), through the real client.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DesignName } from '../shared/messages.ts';
import { isPcdError } from '../shared/errors.ts';
import type { E164 } from '../shared/e164.ts';
import { PgStore } from '../server/pg/store.ts';
import { startServer } from '../server/server.ts';
import { ADMIN_TOKEN, startTestServer, tempDir, type TestServer } from './helpers.ts';
import { freshDatabase } from './stores.ts';

const DESIGNS: DesignName[] = ['plain', 'hashed'];
const X = '+14155550101' as E164;
const Y = '+14155550102' as E164;
const ASKER = '+14155550109';

describe('several nodes on one Postgres (serve --store)', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let dbUrl = '';
  const nodes: TestServer[] = [];
  const node = async (name: string, extra: object = {}) => {
    const n = await startTestServer({ store: dbUrl, designs: DESIGNS, nodeName: name, ...extra });
    nodes.push(n);
    return n;
  };
  /** What `design` answers for `number` on node `n` with `token`: the capabilities, or undefined for "SMS only". */
  const answer = async (n: TestServer, token: string, design: DesignName, number: string) => {
    const [r] = await n.client(token, design).lookupMany([number]);
    return r!.capabilities.length ? r!.capabilities : undefined;
  };

  beforeAll(async () => {
    db = await freshDatabase('pcd_nodes');
    dbUrl = db.url;
  });
  afterAll(async () => {
    for (const n of nodes) await n.close().catch(() => {});
    await db?.drop();
  });

  it('a registration through node 1 answers on node 2 in every design, a deletion through node 2 on node 1, and a third node starts with both', async () => {
    const [n1, n2] = [await node('n1'), await node('n2')];
    const asker = await n1.admin.createAccount({ email: 'asker@pcd.test', numbers: [ASKER], capabilities: ['messages'] });
    const x = await n1.admin.createAccount({ email: 'x@pcd.test', numbers: [X], capabilities: ['messages', 'facetime'] });
    // The admin call answered once node 1 had the change; node 2 follows the journal (NOTIFY, else a poll within a second).
    for (const design of DESIGNS) expect(await answer(n1, asker.token, design, X)).toEqual(['messages', 'facetime']);
    for (let t = 0; n2.server.directory.mask(X) === 0; t += 10) {
      if (t > 5000) throw new Error('node 2 did not see the registration within 5 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const design of DESIGNS) {
      expect(await answer(n2, asker.token, design, X)).toEqual(['messages', 'facetime']); // the token works on every node: one accounts table
      expect(await answer(n2, asker.token, design, Y)).toBeUndefined();
    }
    await n2.admin.createAccount({ email: 'y@pcd.test', numbers: [Y], capabilities: ['messages'] });
    expect(await answer(n2, asker.token, 'hashed', Y)).toEqual(['messages']); // its own change: visible when the call answers
    await n2.admin.deleteAccount(x.accountId);
    for (let t = 0; n1.server.directory.mask(X) !== 0; t += 10) {
      if (t > 5000) throw new Error('node 1 did not see the deletion within 5 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const design of DESIGNS) expect(await answer(n1, asker.token, design, X)).toBeUndefined();
    // A node that joins later loads the directory from the shared store, with every change so far.
    const n3 = await node('n3');
    // One of the nodes leads (the retention purge runs there alone).
    expect([n1, n2, n3].filter((n) => n.server.leadership?.isLeader).length).toBe(1);
    expect(n3.server.directory.size).toBe(2);
    expect(await answer(n3, asker.token, 'plain', Y)).toEqual(['messages']);
    expect(await answer(n3, asker.token, 'plain', X)).toBeUndefined();
    // An email taken through another node is a conflict on this one.
    await expect(n3.admin.createAccount({ email: 'y@pcd.test', numbers: ['+14155550150'], capabilities: [] })).rejects.toMatchObject({ status: 409 });
  });

  it('a seeding through the shared store (a gap in the journal) reaches running nodes by a rescan', async () => {
    const n1 = nodes[0]!;
    const store = await PgStore.open(dbUrl, { node: 'seeder' });
    try {
      await store.bulkInsert([{ email: 'seeded@pcd.test', numbers: ['+14155550177' as E164], mask: 1 }], Date.now());
    } finally {
      await store.close();
    }
    for (let t = 0; n1.server.directory.mask('+14155550177' as E164) === 0; t += 10) {
      if (t > 5000) throw new Error('node 1 did not rescan after the seeding');
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(n1.server.directory.mask(Y)).toBe(1); // the rest of the directory is as it was
  });

  it('every node writes its query logs to the shared store, none to its data folder; the retention purge deletes them there', async () => {
    const [n1, n2] = [nodes[0]!, nodes[1]!];
    const asker = await n1.admin.createAccount({ email: 'logged@pcd.test', numbers: ['+14155550120'], capabilities: ['messages'] });
    await n1.client(asker.token, 'plain').lookupMany([Y]);
    await n2.client(asker.token, 'plain').lookupMany(['+14155550130']);
    await n2.client(asker.token, 'hashed').lookupMany([Y]);
    const c = new pg.Client({ connectionString: dbUrl });
    await c.connect();
    try {
      const rows = async (table: string) => (await c.query(`SELECT * FROM ${table} WHERE account_id = $1 ORDER BY id`, [asker.accountId])).rows as Record<string, unknown>[];
      for (let t = 0; (await rows('plain_log')).length < 2 || (await rows('hashed_log')).length < 1; t += 20) {
        if (t > 5000) throw new Error('the logs did not reach the shared store within 5 s');
        await new Promise((r) => setTimeout(r, 20));
      }
      // Each node batches its own log rows: which node's reach the store first is not fixed.
      expect((await rows('plain_log')).map((r) => [r.number, r.email]).sort()).toEqual(
        [
          [Y, 'logged@pcd.test'],
          ['+14155550130', 'logged@pcd.test'],
        ].sort(),
      );
      for (const n of [n1, n2]) expect(n.server.store.db.prepare('SELECT count(*) AS n FROM plain_log').get()).toEqual({ n: 0 });
      // The retention of a node purges the shared logs (a retention of 0: every row is past it).
      const purged = await PgStore.open(dbUrl, { node: 'purger' });
      try {
        expect(await purged.purgeLogs(Date.now() + 1)).toBeGreaterThanOrEqual(3);
      } finally {
        await purged.close();
      }
      expect(await rows('plain_log')).toEqual([]);
    } finally {
      await c.end();
    }
  });

  it('a node without --node-name makes its name once and keeps it in its data folder, so a restart takes up its own journal holds', async () => {
    const n = await startTestServer({ store: dbUrl, designs: DESIGNS });
    const name = n.server.context.shared!.node;
    expect(fs.readFileSync(path.join(n.dataDir, 'node-name'), 'utf8').trim()).toBe(name);
    const again = await n.restart();
    nodes.push(again);
    expect(again.server.context.shared!.node).toBe(name);
    const holders = (await again.server.context.shared!.pool.query('SELECT holder FROM directory_journal_holds WHERE node = $1 ORDER BY holder', [name])).rows.map((r: { holder: string }) => r.holder);
    expect(holders).toEqual(['directory', 'snapshot']);
  });

  it('refuses the page on a shared store, in one line, and starts nothing', async () => {
    const web = (() => {
      throw new Error('the page was mounted');
    }) as never;
    const refused = await startServer({ store: dbUrl, designs: ['plain'], web, dataDir: tempDir(), adminToken: ADMIN_TOKEN, port: 0 }).catch((e: unknown) => e);
    expect(isPcdError(refused) && refused.message).toBe('--store: the web page does not run on a shared store yet; serve it without --ui');
  });
});
