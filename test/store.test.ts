/**
 * The accounts and directory store's guarantees (server/directory-store.ts),
 * once over SQLite and once over a real Postgres (test/stores.ts). Also
 * `pcd seed --store postgres://` (3,000 numbers under PCD_TEST_FULL=1, 1,000
 * otherwise), and several nodes on one Postgres: the journal followed by
 * NOTIFY and by polling, one leader at a time, and journal holds.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import type { DirectoryChange } from '../shared/design.ts';
import type { E164 } from '../shared/e164.ts';
import { e164ToKey } from '../shared/e164.ts';
import { isPcdError } from '../shared/errors.ts';
import { LOG_TABLES } from '../shared/designs/index.ts';
import { Directory } from '../server/directory.ts';
import { DirectoryDigest } from '../server/directory-digest.ts';
import type { DirectoryStore } from '../server/directory-store.ts';
import { PgStore, type FollowEvent } from '../server/pg/store.ts';
import { freePort } from '../server/pg/embedded.ts';
import { leaderOf, startLeadership } from '../server/pg/leader.ts';
import type { JournaledChange, NewAccount } from '../server/store.ts';
import { describeStores, freshDatabase, pgAdmin } from './stores.ts';
import { FULL, runPcd } from './helpers.ts';

const n = (i: number) => `+1415555${String(i).padStart(4, '0')}` as E164;
const account = (email: string, numbers: E164[], mask = 1): NewAccount => ({ email, numbers, mask });

async function all(s: DirectoryStore): Promise<DirectoryChange[]> {
  const out: DirectoryChange[] = [];
  for await (const c of s.directory()) out.push(c);
  return out.sort((a, b) => a.number.localeCompare(b.number));
}

async function scanDigest(s: DirectoryStore): Promise<DirectoryDigest> {
  const d = new DirectoryDigest();
  for await (const c of s.directory()) d.update(e164ToKey(c.number), c.mask, 1);
  return d;
}

/** The PcdError code a promise rejects with (fails when it resolves or throws something else). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (isPcdError(e)) return e.code;
    throw e;
  }
  throw new Error('expected a refusal');
}

describeStores('the accounts and directory store', (f) => {
  it('creates accounts whose token authenticates, and finds them by email, id and number', async () => {
    const s = await f.open();
    const a = await s.createAccount(account('a@pcd.test', [n(1), n(2)]), 1000);
    expect(a.changes).toEqual([
      { number: n(1), mask: 1 },
      { number: n(2), mask: 1 },
    ]);
    expect(await s.authenticate(a.token)).toEqual({ accountId: a.accountId, email: 'a@pcd.test' });
    expect(await s.authenticate('not-a-token')).toBeUndefined();
    expect(await s.accountByEmail('a@pcd.test')).toEqual({ accountId: a.accountId, email: 'a@pcd.test' });
    expect(await s.accountById(a.accountId)).toEqual({ accountId: a.accountId, email: 'a@pcd.test' });
    expect(await s.accountById(a.accountId + 1000)).toBeUndefined();
    expect(await s.numberRegistered(n(2))).toBe(true);
    expect(await s.numberRegistered(n(3))).toBe(false);
    expect(await s.sampleNumber()).toMatch(/^\+14155550/);
    // An account without capabilities is registered but not in the directory.
    await s.createAccount(account('b@pcd.test', [n(3)], 0), 1000);
    expect(await s.directorySize()).toBe(3);
    expect(await all(s)).toEqual([
      { number: n(1), mask: 1 },
      { number: n(2), mask: 1 },
    ]);
    // A fresh token: the old one stops working.
    const t = await s.issueToken(a.accountId);
    expect(await s.authenticate(a.token)).toBeUndefined();
    expect((await s.authenticate(t))?.accountId).toBe(a.accountId);
  });

  it('refuses a taken email or number (409) and a number listed twice (400), writing nothing', async () => {
    const s = await f.open();
    await s.createAccount(account('a@pcd.test', [n(1)]), 1000);
    const version = await s.directoryVersion();
    expect(await codeOf(s.createAccount(account('a@pcd.test', [n(5)]), 1000))).toBe('conflict');
    expect(await codeOf(s.createAccount(account('c@pcd.test', [n(6), n(1)]), 1000))).toBe('conflict');
    expect(await codeOf(s.createAccount(account('d@pcd.test', [n(7), n(7)]), 1000))).toBe('invalid_field');
    expect(await s.directoryVersion()).toBe(version);
    expect(await s.directorySize()).toBe(1);
    for (const x of [5, 6, 7]) expect(await s.numberRegistered(n(x))).toBe(false);
    expect(await s.accountByEmail('c@pcd.test')).toBeUndefined();
  });

  it('never gives an id to a second account: not after a delete, a refusal or a restart', async () => {
    const s = await f.open();
    const a = await s.createAccount(account('a@pcd.test', [n(1)]), 1000);
    const b = await s.createAccount(account('b@pcd.test', [n(2)]), 1000);
    expect(await s.deleteAccount(b.accountId)).toMatchObject({ changes: [{ number: n(2), mask: 0 }] });
    expect(await s.deleteAccount(b.accountId)).toBeUndefined();
    await codeOf(s.createAccount(account('a@pcd.test', [n(3)]), 1000));
    const c = await s.createAccount(account('c@pcd.test', [n(2)]), 1000);
    expect(c.accountId).toBeGreaterThan(b.accountId);
    await s.close();
    const again = await f.reopen();
    await again.deleteAccount(c.accountId);
    const d = await again.createAccount(account('d@pcd.test', [n(4)]), 1000);
    expect(d.accountId).toBeGreaterThan(c.accountId);
    expect(a.accountId).toBeLessThan(b.accountId);
  });

  it('bumps the version per changed number and journals each change with the mask before it, in the same transaction', async () => {
    const s = await f.open();
    s.enableDirectoryJournal();
    expect(s.directoryJournal).toBe(true);
    const v0 = await s.directoryVersion();
    const a = await s.createAccount(account('a@pcd.test', [n(1), n(2)], 3), 1000);
    expect(a.version).toBe(v0 + 2);
    const del = await s.deleteAccount(a.accountId);
    expect(del!.version).toBe(v0 + 4);
    expect(await s.directoryChangesSince(v0)).toEqual([
      { version: v0 + 1, number: n(1), mask: 3, previous: 0 },
      { version: v0 + 2, number: n(2), mask: 3, previous: 0 },
      { version: v0 + 3, number: n(1), mask: 0, previous: 3 },
      { version: v0 + 4, number: n(2), mask: 0, previous: 3 },
    ]);
    expect(await s.directoryChangesSince(v0 + 4)).toEqual([]);
    expect(await s.directoryChangesSince(v0 + 5)).toBeUndefined();
    expect(await s.directoryChangesSince(-1)).toBeUndefined();
    // A refused change journals nothing and bumps nothing.
    await s.createAccount(account('b@pcd.test', [n(9)]), 1000);
    await codeOf(s.createAccount(account('c@pcd.test', [n(9)]), 1000));
    expect(await s.directoryVersion()).toBe(v0 + 5);
    expect((await s.directoryChangesSince(v0))!.map((c) => c.version)).toEqual([1, 2, 3, 4, 5].map((i) => v0 + i));
  });

  it('prunes the journal only below what every holder has, and a bulk load is a gap that a replay cannot cross', async () => {
    const s = await f.open();
    s.enableDirectoryJournal();
    for (let i = 1; i <= 4; i++) await s.createAccount(account(`a${i}@pcd.test`, [n(i)]), 1000);
    await s.holdDirectoryChanges(1, 'snapshot');
    expect(await s.pruneDirectoryChanges(3)).toBe(1); // the snapshot still needs 2 and up
    expect(await s.directoryChangesSince(0)).toBeUndefined();
    expect((await s.directoryChangesSince(1))!.length).toBe(3);
    expect(await s.pruneDirectoryChanges(3, 'snapshot')).toBe(2);
    expect((await s.directoryChangesSince(3))!.map((c) => c.number)).toEqual([n(4)]);
    const before = await s.directoryVersion();
    await s.bulkInsert([account('bulk@pcd.test', [n(50)])], 1000);
    expect(await s.directoryVersion()).toBe(before + 1);
    expect(await s.directoryChangesSince(before)).toBeUndefined();
  });

  it('keeps the directory digest of a scan up to date through every change, and seeds in chunks', async () => {
    const s = await f.open();
    await s.createAccount(account('a@pcd.test', [n(1)]), 1000);
    expect(await s.directoryDigest()).toBeUndefined(); // none until a scan sets it
    await s.setDirectoryDigest(await scanDigest(s));
    const b = await s.createAccount(account('b@pcd.test', [n(2), n(3)], 2), 1000);
    await s.deleteAccount(b.accountId);
    const accounts = Array.from({ length: 1000 }, (_, i) => account(`seed${i}@pcd.test`, [n(1000 + i)], 1 + (i % 3)));
    const progress: number[] = [];
    const v = await s.directoryVersion();
    expect(await s.bulkInsert(accounts, 2000, (k) => progress.push(k), 300)).toBe(1000);
    expect(progress).toEqual([300, 600, 900, 1000]);
    expect(await s.directoryVersion()).toBe(v + 4); // one bump per chunk
    expect(await s.directorySize()).toBe(1001);
    expect(await s.numberRegistered(n(1999))).toBe(true);
    expect((await s.directoryDigest())!.equals(await scanDigest(s))).toBe(true);
    // Seeded accounts have no token until one is issued; a number seeded twice is refused.
    const seeded = await s.accountByEmail('seed7@pcd.test');
    expect((await s.authenticate(await s.issueToken(seeded!.accountId)))?.email).toBe('seed7@pcd.test');
    await expect(s.bulkInsert([account('again@pcd.test', [n(1500)])], 2000)).rejects.toThrow();
    expect(await s.directorySize()).toBe(1001);
    expect(await s.accountByEmail('again@pcd.test')).toBeUndefined();
  });

  it('tells its own directory writes from an outside edit', async () => {
    const s = await f.open();
    const a = await s.createAccount(account('a@pcd.test', [n(1)]), 1000);
    await s.deleteAccount((await s.createAccount(account('b@pcd.test', [n(2)]), 1000)).accountId);
    expect(await s.directoryWritesAcknowledged()).toBe(true);
    await f.outside(`UPDATE accounts SET capabilities = 3 WHERE id = ${a.accountId}`);
    expect(await s.directoryWritesAcknowledged()).toBe(false);
    await s.acknowledgeDirectoryWrites();
    expect(await s.directoryWritesAcknowledged()).toBe(true);
    await f.outside(`DELETE FROM numbers WHERE number = '${n(1)}'`);
    expect(await s.directoryWritesAcknowledged()).toBe(false);
  });

  it('keeps meta values and purges every declared log past its retention', async () => {
    const s = await f.open();
    expect(await s.getMeta('x')).toBeUndefined();
    await s.setMeta('x', '1');
    await s.setMeta('x', '2');
    expect(await s.getMeta('x')).toBe('2');
    const value = (type: string) => (type === 'INTEGER' ? '7' : type === 'TEXT' ? "'t'" : f.kind === 'postgres' ? "'\\x00'::bytea" : "x'00'");
    // The rows written from outside in one go (one connection, not one per row).
    const inserts: string[] = [];
    for (const t of LOG_TABLES) {
      for (const ts of [10, 20, 30]) {
        const cols = t.columns.filter((c) => c.name !== 'ts');
        // Counts tables are keyed by (ts, key): the other values may repeat across ts.
        inserts.push(`INSERT INTO ${t.name} (ts, ${cols.map((c) => c.name).join(', ')}) VALUES (${ts}, ${cols.map((c) => value(c.type)).join(', ')})`);
      }
    }
    await f.outside(inserts.join(';\n'));
    expect(await s.purgeLogs(25)).toBe(2 * LOG_TABLES.length);
    expect(await s.purgeLogs(25)).toBe(0);
  });

  it.runIf(f.kind === 'postgres')('a read-only or unreachable database is 503 unavailable, and the store works again after', async () => {
    const s = await f.open();
    await s.createAccount(account('a@pcd.test', [n(1)]), 1000);
    const admin = await f.admin!();
    const endSessions = () => admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [f.database!()]);
    try {
      await admin.query(`ALTER DATABASE ${f.database!()} SET default_transaction_read_only = on`);
      await endSessions(); // the pool's idle connections end ('error' on the pool, not a crash); new ones are read-only
      // A connection ended under a query is itself a 503 ("cannot be reached"); a client tries again, as this does.
      const attempt = () => s.createAccount(account('b@pcd.test', [n(2)]), 1000).catch((e: unknown) => e);
      let refused = await attempt();
      for (let i = 0; i < 5 && isPcdError(refused) && /cannot be reached/.test(refused.message); i++) refused = await attempt();
      expect(isPcdError(refused) && refused.code).toBe('unavailable');
      expect(isPcdError(refused) && refused.retryAfterSeconds).toBeGreaterThan(0);
      expect(isPcdError(refused) && refused.message).toMatch(/read-only \(Postgres 25006\)/);
      expect(await s.numberRegistered(n(1))).toBe(true); // reads still answer
      await admin.query(`ALTER DATABASE ${f.database!()} SET default_transaction_read_only = off`);
      await endSessions();
      let again = await attempt();
      for (let i = 0; i < 5 && isPcdError(again) && again.code === 'unavailable'; i++) again = await attempt();
      expect(again).toMatchObject({ changes: [{ number: n(2), mask: 1 }] });
    } finally {
      await admin.query(`ALTER DATABASE ${f.database!()} RESET default_transaction_read_only`).catch(() => {});
      await admin.end();
    }
    // Nobody listening: opening is 503, not a crash.
    const nobody = `postgres://pcd:x@127.0.0.1:${await freePort()}/none`;
    const unreachable = await PgStore.open(nobody).catch((e: unknown) => e);
    expect(isPcdError(unreachable) && unreachable.code).toBe('unavailable');
  });

  it.runIf(f.kind === 'postgres')('stores BIGINT ids and times as numbers, and the schema is made once by nodes opening together', async () => {
    const s = await f.open();
    const [a, b] = await Promise.all([f.reopen(), f.reopen()]);
    const big = 2 ** 40 + 1;
    const made = await a.createAccount(account('t@pcd.test', [n(1)]), big);
    // Read through the store's own pool: a BIGINT comes back as a number, exactly.
    const row = (await (s as PgStore).pool.query('SELECT created_at, id FROM accounts WHERE id = $1', [made.accountId])).rows[0] as { created_at: unknown; id: unknown };
    expect(row).toEqual({ created_at: big, id: made.accountId });
    expect((await b.accountById(made.accountId))?.email).toBe('t@pcd.test');
  });
});

describe('pcd seed --store postgres://', () => {
  /** Numbers seeded: the COPY is the point, not its size. */
  const SIZE = FULL ? 3000 : 1000;
  let db: Awaited<ReturnType<typeof freshDatabase>> | undefined;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-seed-pg-'));
  afterAll(async () => {
    fs.rmSync(root, { recursive: true, force: true });
    await db?.drop();
  });

  it('seeds a fresh database by COPY, with contact lists and tokens that authenticate; refuses a seeded one and a URL that is not Postgres, in one line', async () => {
    db = await freshDatabase('pcd_seed');
    const dbUrl = db.url;
    const contacts = path.join(root, 'contacts');
    const run = await runPcd(['seed', '--store', dbUrl, '--size', String(SIZE), '--requesters', '2', '--contacts', '40', '--contacts-dir', contacts]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^seeded ${SIZE} numbers into postgres://pcd:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/pcd_seed_\\w+ in [\\d.]+ s$`, 'm'));
    expect(run.stdout).not.toContain(decodeURIComponent(new URL(dbUrl).password)); // the password is never printed
    const requesters = JSON.parse(fs.readFileSync(path.join(contacts, 'requesters.json'), 'utf8')) as { email: string; token: string; registered: number; total: number }[];
    expect(requesters).toHaveLength(2);
    const store = await PgStore.open(dbUrl);
    try {
      expect(await store.directorySize()).toBe(SIZE);
      for (const r of requesters) {
        expect((await store.authenticate(r.token))?.email).toBe(r.email);
        let registered = 0;
        for (const line of fs.readFileSync(path.join(contacts, `${r.email.split('@')[0]}.txt`), 'utf8').trim().split('\n')) if (await store.numberRegistered(line)) registered++;
        expect(registered).toBe(r.registered);
      }
    } finally {
      await store.close();
    }
    const again = await runPcd(['seed', '--store', dbUrl, '--size', '10', '--contacts-dir', contacts]);
    expect(again.code).not.toBe(0);
    expect(again.stderr.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`already holds a directory of ${SIZE} numbers; seed an empty database \\(conflict\\)$`))]);
    expect(again.stderr).not.toContain(decodeURIComponent(new URL(dbUrl).password));
    // PCD_DATABASE_URL names the store only when no --data is given: a folder on the command line wins.
    const folder = path.join(root, 'folder');
    const local = await runPcd(['seed', '--data', folder, '--size', '10', '--requesters', '0'], { PCD_DATABASE_URL: dbUrl });
    expect(local.code, local.stderr).toBe(0);
    expect(local.stdout).toContain(`seeded 10 numbers into ${path.resolve(folder)}`);
    const wrong = await runPcd(['seed', '--store', 'mysql://u:secret@host/db', '--size', '10']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr.trim()).toMatch(/^.*--store takes a postgres:\/\/ URL, got 'mysql:\/\/u:\*\*\*@host\/db'.*$/);
  });
});

describe('several nodes on one Postgres: following the journal (PgStore.follow)', () => {
  const dbs: Awaited<ReturnType<typeof freshDatabase>>[] = [];
  const opened: PgStore[] = [];
  let dbUrl = '';
  const admin = pgAdmin;
  const node = async (name: string) => {
    const s = await PgStore.open(dbUrl, { node: name });
    opened.push(s);
    return s;
  };
  /** Waits until `cond` holds (polling every 10 ms), failing after 10 s. */
  const until = async (cond: () => boolean, what: string) => {
    for (let t = 0; !cond(); t += 10) {
      if (t > 10_000) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };

  beforeEach(async () => {
    const db = await freshDatabase('pcd_follow');
    dbs.push(db);
    dbUrl = db.url;
  });
  afterAll(async () => {
    for (const s of opened) await s.close().catch(() => {});
    for (const db of dbs) await db.drop();
  });

  it('a registration through one node reaches another by NOTIFY, in version order, each change once', async () => {
    const [a, b] = [await node('a'), await node('b')];
    const seen: JournaledChange[] = [];
    const f = await a.follow(await a.directoryVersion(), (e) => void (e.kind === 'changes' && seen.push(...e.changes)), { pollMs: 3_600_000 });
    try {
      expect(f.listening).toBe(true);
      for (let i = 1; i <= 20; i++) await b.createAccount(account(`u${i}@pcd.test`, [n(i)]), 1000);
      const gone = await b.createAccount(account('gone@pcd.test', [n(99)]), 1000);
      await b.deleteAccount(gone.accountId);
      await until(() => seen.length === 22, '22 changes on node a');
      expect(seen.map((c) => c.version)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
      expect(seen.slice(0, 20).map((c) => c.number)).toEqual(Array.from({ length: 20 }, (_, i) => n(i + 1)));
      expect(seen.slice(20)).toEqual([
        { version: 21, number: n(99), mask: 1, previous: 0 },
        { version: 22, number: n(99), mask: 0, previous: 1 },
      ]);
      expect(f.version).toBe(22);
    } finally {
      await f.close();
    }
  });

  it('polls when its LISTEN connection is lost, and listens again after; a seeding is a gap', async () => {
    const [a, b] = [await node('a'), await node('b')];
    const events: FollowEvent[] = [];
    const f = await a.follow(0, (e) => void events.push(e), { pollMs: 20 }); // well under the LISTEN's 100 ms reconnect
    try {
      const c = await admin();
      await c.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pcd follower' AND datname = $1", [dbUrl.split('/').pop()]);
      await c.end();
      await until(() => !f.listening, 'the follower to notice its connection ended');
      await b.createAccount(account('p@pcd.test', [n(1)]), 1000);
      await until(() => f.version === 1, 'the poll to deliver version 1');
      await until(() => f.listening, 'the follower to listen again');
      await b.bulkInsert([account('seed@pcd.test', [n(500)])], 1000);
      await until(() => events.some((e) => e.kind === 'gap'), 'a gap after a seeding');
      expect(events.at(-1)).toEqual({ kind: 'gap', version: 2 });
    } finally {
      await f.close();
    }
  });

  it('one leader at a time: another takes the lead when the leader closes, or when its session is ended', async () => {
    const changes: string[] = [];
    const lead = await Promise.all(['a', 'b', 'c'].map((name) => startLeadership(dbUrl, { node: name, pollMs: 20, onChange: (on) => changes.push(`${name}:${on}`) })));
    try {
      const leaders = () => lead.filter((l) => l.isLeader).length;
      await until(() => leaders() === 1, 'one leader');
      const first = lead.findIndex((l) => l.isLeader);
      await lead[first]!.close();
      await until(() => leaders() === 1, 'a new leader after a close');
      const second = lead.findIndex((l) => l.isLeader);
      expect(second).not.toBe(first);
      // The leader's session ended from outside (a cut connection): it stops believing it leads, Postgres frees the
      // lock, and a node takes it (the other one, or this one again once it has reconnected: whichever tries first).
      const name = 'abc'[second]!;
      const lostBefore = changes.filter((x) => x === `${name}:false`).length;
      const c = await admin();
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [`pcd leader ${name}`]);
      await c.end();
      await until(() => changes.filter((x) => x === `${name}:false`).length > lostBefore, 'the leader to notice its session ended');
      await until(() => leaders() === 1, 'a leader after the session ended');
      expect(changes.filter((x) => x.endsWith(':true')).length).toBeGreaterThanOrEqual(3);
    } finally {
      for (const l of lead) await l.close();
    }
  });

  it('a node that builds no epochs (no blinded design) leads only while no node that does is there', async () => {
    const plainOnly = await startLeadership(dbUrl, { node: 'p', pollMs: 20, builds: false });
    const others: Awaited<ReturnType<typeof startLeadership>>[] = [];
    try {
      await until(() => plainOnly.isLeader, 'the plain-only node to lead while it is alone');
      const c = new pg.Client({ connectionString: dbUrl });
      await c.connect();
      try {
        expect(await leaderOf(c)).toBe('p');
        const builder = await startLeadership(dbUrl, { node: 'b', pollMs: 20 });
        others.push(builder);
        await until(() => builder.isLeader && !plainOnly.isLeader, 'the plain-only node to give the lead to one that builds');
        expect(await leaderOf(c)).toBe('b');
        // While a node that builds is there, the plain-only one does not take the lock, even when it is free.
        await builder.close();
        const second = await startLeadership(dbUrl, { node: 'b2', pollMs: 20 });
        others.push(second);
        await until(() => second.isLeader, 'the second builder to lead');
        expect(plainOnly.isLeader).toBe(false);
        // With no node that builds left, it leads again (the retention purge needs a leader).
        await second.close();
        await until(() => plainOnly.isLeader, 'the plain-only node to lead again once alone');
      } finally {
        await c.end();
      }
    } finally {
      for (const l of others) await l.close();
      await plainOnly.close();
    }
  });

  it('a node prunes no journal row another node still holds; a hold not refreshed for a day no longer counts', async () => {
    const [a, b] = [await node('a'), await node('b')];
    await a.holdDirectoryChanges(0, 'caches');
    for (let i = 1; i <= 3; i++) await b.createAccount(account(`h${i}@pcd.test`, [n(i)]), 1000);
    expect(await b.pruneDirectoryChanges(3)).toBe(0); // node a holds everything above 0
    expect((await a.directoryChangesSince(0))!.length).toBe(3);
    await a.holdDirectoryChanges(2, 'caches');
    expect(await b.pruneDirectoryChanges(3)).toBe(2);
    expect((await a.directoryChangesSince(2))!.map((c) => c.number)).toEqual([n(3)]);
    // Node a's hold goes stale (its node died a day ago): b prunes past it.
    const c = new pg.Client({ connectionString: dbUrl });
    await c.connect();
    await c.query("UPDATE directory_journal_holds SET at = at - 2 * 86400000 WHERE node = 'a'");
    await c.end();
    expect(await b.pruneDirectoryChanges(3)).toBe(1);
    expect(await a.directoryChangesSince(2)).toBeUndefined();
  });
});

describeStores('a node\'s start: the directory from a scan, then from its snapshot and the journal', (f) => {
  it('scans once and records the digest, then loads the snapshot and replays the changes after it; the same directory as a scan', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-start-'));
    try {
      const s = await f.open();
      s.enableDirectoryJournal();
      for (let i = 1; i <= 6; i++) await s.createAccount(account(`s${i}@pcd.test`, [n(i)], 1 + (i % 2)), 1000);
      const first = await Directory.open(s, dataDir);
      expect(first).toMatchObject({ source: 'scan', version: 6, snapshotVersion: 6 });
      expect((await s.directoryDigest())!.equals(first.directory.digest())).toBe(true);
      await s.holdDirectoryChanges(6, 'snapshot');
      // Changes after the snapshot (a crash: none written at shutdown), from this node or another.
      const other = f.kind === 'postgres' ? await f.reopen() : s;
      await other.deleteAccount((await other.accountByEmail('s2@pcd.test'))!.accountId);
      await other.createAccount(account('s7@pcd.test', [n(7)], 3), 1000);
      const second = await Directory.open(s, dataDir);
      expect(second).toMatchObject({ source: 'snapshot', version: 8, snapshotVersion: 6 });
      expect(second.restart!.changes).toHaveLength(2);
      const scan = await Directory.load(s);
      expect(scan.version).toBe(8);
      expect([...second.directory.entries()].sort((a, b) => a.number.localeCompare(b.number))).toEqual(await all(s));
      expect(second.directory.digest().equals(scan.directory.digest())).toBe(true);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
