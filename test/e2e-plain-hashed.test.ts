/**
 * Foundation end to end: a real server on an ephemeral port, the real client,
 * the plain and hashed designs; registration, deletion, order, duplicates,
 * the batched query log across a restart, and retention with an injected clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { sampleNumbers } from '../synth/directory.ts';
import { DB_FILE } from '../disk/files.ts';
import { DAY_MS } from '../server/querylog.ts';
import { LIMITS } from '../shared/limits.ts';
import { describeDesigns, runs, startTestServer, testClock, type TestServer } from './helpers.ts';

const [a1, a2, b1, c1, x1, x2, x3] = sampleNumbers({ count: 7, seed: 'e2e-plain', regions: ['US', 'GB', 'DE', 'IN'] });

let open: TestServer[] = [];
afterEach(async () => {
  for (const s of open) await s.close().catch(() => {});
  open = [];
});

async function setup(options: Parameters<typeof startTestServer>[0] = {}) {
  const s = await startTestServer({ designs: ['plain', 'hashed'], ...options });
  open.push(s);
  const alice = await s.admin.createAccount({ email: 'alice@example.org', numbers: [a1!, a2!], capabilities: ['messages', 'facetime'] });
  const bob = await s.admin.createAccount({ email: 'bob@example.org', numbers: [b1!], capabilities: ['messages'] });
  return { s, alice, bob };
}

describeDesigns('%s design end to end', (design) => {
  it('answers registered numbers with their capabilities and others SMS only, in order, duplicates kept', async () => {
    const { s, alice } = await setup();
    const client = s.client(alice.token, design);
    const results = await client.lookupMany([b1!, x1!, a2!, b1!, x2!, a1!]);
    expect(results.map((r) => r.number)).toEqual([b1, x1, a2, b1, x2, a1]);
    expect(results.map((r) => r.capabilities)).toEqual([
      ['messages'],
      [],
      ['messages', 'facetime'],
      ['messages'],
      [],
      ['messages', 'facetime'],
    ]);
  });

  it('sees a registration and a deletion on the very next lookup', async () => {
    const { s, alice, bob } = await setup();
    const client = s.client(alice.token, design);
    expect((await client.lookup(c1!)).capabilities).toEqual([]);
    const carol = await s.admin.createAccount({ email: 'carol@example.org', numbers: [c1!], capabilities: ['facetime'] });
    expect((await client.lookup(c1!)).capabilities).toEqual(['facetime']);
    await s.admin.deleteAccount(carol.accountId);
    expect((await client.lookup(c1!)).capabilities).toEqual([]);
    await s.admin.deleteAccount(bob.accountId);
    expect((await client.lookup(b1!)).capabilities).toEqual([]);
  });

  it('accepts national and formatted input with a default region, over JSON too', async () => {
    const { s, alice } = await setup();
    const client = s.client(alice.token, design, { format: 'json' });
    const [r] = await client.lookupMany([a1!]);
    expect(r!.capabilities).toEqual(['messages', 'facetime']);
  });

  it('splits a contact list larger than one request into batches', async () => {
    const { s, alice } = await setup();
    const list = Array.from({ length: LIMITS.maxBatch + 10 }, (_, i) => (i % 3 === 0 ? a1! : i % 3 === 1 ? x3! : b1!));
    const results = await s.client(alice.token, design).lookupMany(list);
    expect(results).toHaveLength(list.length);
    expect(results.filter((r) => r.capabilities.length === 0)).toHaveLength(list.filter((n) => n === x3).length);
  });
}, ['plain', 'hashed']);

describe('the query logs', () => {
  it('plain: holds time, number, requester account and email, IP and answer; survives a restart', async () => {
    const clock = testClock();
    const { s, alice } = await setup({ now: clock.now, logIntervalMs: 60_000 });
    await s.client(alice.token, 'plain').lookupMany([b1!, x1!]);
    // Batched: nothing on disk until the interval or a graceful close.
    const before = new Database(path.join(s.dataDir, DB_FILE), { readonly: true });
    expect(before.prepare('SELECT count(*) AS n FROM plain_log').get()).toEqual({ n: 0 });
    before.close();
    const s2 = await s.restart({ now: clock.now });
    open.push(s2);
    const db = new Database(path.join(s.dataDir, DB_FILE), { readonly: true });
    const rows = db.prepare('SELECT ts, account_id, email, ip, number, answer FROM plain_log ORDER BY id').all();
    db.close();
    expect(rows).toEqual([
      { ts: clock.now(), account_id: alice.accountId, email: 'alice@example.org', ip: '127.0.0.1', number: b1, answer: 1 },
      { ts: clock.now(), account_id: alice.accountId, email: 'alice@example.org', ip: '127.0.0.1', number: x1, answer: 0 },
    ]);
  });

  it('hashed: holds the hash of the number, never the number', async () => {
    const { s, alice } = await setup();
    await s.client(alice.token, 'hashed').lookupMany([x1!]);
    await s.close();
    const db = new Database(path.join(s.dataDir, DB_FILE), { readonly: true });
    const rows = db.prepare('SELECT * FROM hashed_log').all() as Record<string, unknown>[];
    db.close();
    expect(rows).toHaveLength(1);
    const row = rows[0]!;
    expect(row).toMatchObject({ email: 'alice@example.org', account_id: alice.accountId, answer: 0 });
    // The stored hash is SHA-256 of the looked-up number's E.164 text (computed here independently of the server).
    expect(Buffer.from(row.hash as Buffer).toString('hex')).toBe(createHash('sha256').update(x1!, 'utf8').digest('hex'));
    // The number's digits (with or without its '+') are in no column of the row, as text or as bytes.
    const digits = x1!.slice(1);
    expect(Object.keys(row).sort()).toEqual(['account_id', 'answer', 'email', 'hash', 'id', 'ip', 'ts']);
    for (const [column, value] of Object.entries(row)) {
      const text = Buffer.isBuffer(value) ? value.toString('latin1') : String(value);
      expect(text, column).not.toContain(digits);
    }
  });

  it('keep who asked after the account is deleted; its id never goes to a new account, across a restart too', async () => {
    const { s, alice, bob } = await setup();
    await s.client(bob.token, 'plain').lookup(x1!);
    await s.admin.deleteAccount(bob.accountId);
    const s2 = await s.restart();
    open.push(s2);
    const carol = await s2.admin.createAccount({ email: 'carol@example.org', numbers: [c1!], capabilities: ['messages'] });
    expect(carol.accountId).toBeGreaterThan(bob.accountId);
    expect(carol.accountId).toBeGreaterThan(alice.accountId);
    expect(await s2.client(carol.token, 'plain').health()).toEqual({ ok: true, designs: ['plain', 'hashed'] });
    await s2.close();
    const db = new Database(path.join(s.dataDir, DB_FILE), { readonly: true });
    const rows = db.prepare('SELECT account_id, email FROM plain_log').all();
    db.close();
    expect(rows).toEqual([{ account_id: bob.accountId, email: 'bob@example.org' }]);
  });

  it('purge rows past the retention period', async () => {
    const clock = testClock();
    const { s, alice } = await setup({ now: clock.now, retentionMs: 30 * DAY_MS });
    const client = s.client(alice.token, 'plain');
    await client.lookup(x1!);
    clock.advance(20 * DAY_MS);
    await client.lookup(x2!);
    clock.advance(11 * DAY_MS); // x1's row is now 31 days old, x2's 11
    const s2 = await s.restart({ now: clock.now, retentionMs: 30 * DAY_MS }); // purges at start
    open.push(s2);
    const db = new Database(path.join(s.dataDir, DB_FILE), { readonly: true });
    const numbers = db.prepare('SELECT number FROM plain_log').all();
    db.close();
    expect(numbers).toEqual([{ number: x2 }]);
  });
});

describe('plain lookups of numbers that need normalising', () => {
  it('yield to the event loop: a health check sent after several 4,096-number requests is answered before any of them', async () => {
    const { s, alice } = await setup();
    // International format with spaces and dashes: not canonical, so each goes through libphonenumber.
    const national = Array.from({ length: LIMITS.maxBatch }, (_, i) => `+1 415-555-${String(i % 10_000).padStart(4, '0')}`);
    const body = JSON.stringify({ numbers: national });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${alice.token}` };
    const order: string[] = [];
    // Ten under PCD_TEST_FULL=1; three are as many seconds of normalising as the health check can be stuck behind.
    const lookups = Array.from({ length: runs(10, 3) }, () =>
      fetch(s.server.url + '/v1/plain/lookup', { method: 'POST', headers, body }).then(async (r) => {
        expect(r.status).toBe(200);
        const reply = (await r.json()) as { results: { number: string }[] };
        expect(reply.results[1]!.number).toBe('+14155550001');
        order.push('lookup');
      }),
    );
    // Once every lookup's body is in (the server is normalising), ask for health.
    await new Promise((r) => setTimeout(r, 50));
    const health = fetch(s.server.url + '/v1/health').then(async (r) => {
      expect(r.status).toBe(200);
      await r.arrayBuffer();
      order.push('health');
    });
    await Promise.all([...lookups, health]);
    expect(order.indexOf('health')).toBe(0);
  });
});
