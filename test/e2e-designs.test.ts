/**
 * The three designs through one real server and the real client give
 * identical answers for the same directory and contact list: registered and
 * unregistered numbers, duplicates, several regions, national input; for
 * bucketBits 0 (full directory sync) and a larger value. Also: the hashed
 * server's node:crypto hash is the protocol's hashNumber, byte for byte.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DESIGNS } from '../shared/messages.ts';
import type { E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/hashed.ts';
import { serverHash } from '../server/designs/hashed.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { startTestServer, type TestServer } from './helpers.ts';

const REGIONS = ['US', 'GB', 'DE', 'FR', 'IN', 'BR', 'JP', 'NG'];
const pool = sampleNumbers({ count: 60, seed: 'e2e-designs', regions: REGIONS });
const registered = pool.slice(0, 30);
const unregistered = pool.slice(30);
const CAPS = [['messages', 'facetime'], ['messages'], ['facetime']] as const;

describe.each([0, 6])('all designs agree, bucketBits %i', (bucketBits) => {
  let s: TestServer;
  let token: string;
  const expected = new Map<string, string[]>();

  beforeAll(async () => {
    s = await startTestServer({ bucketBits });
    // 30 registered numbers on 20 accounts (some with two numbers), three capability sets.
    for (let i = 0, acct = 0; i < registered.length; acct++) {
      const numbers = acct % 3 === 0 && i + 1 < registered.length ? [registered[i]!, registered[i + 1]!] : [registered[i]!];
      const capabilities = [...CAPS[acct % 3]!];
      await s.admin.createAccount({ email: `u${acct}@example.org`, numbers, capabilities });
      for (const n of numbers) expected.set(n, capabilities);
      i += numbers.length;
    }
    token = (await s.admin.createAccount({ email: 'requester@example.org', numbers: [unregistered[0]!], capabilities: ['messages'] })).token;
    expected.set(unregistered[0]!, ['messages']);
  });
  afterAll(() => s.close());

  it('gives identical answers in every design', async () => {
    // A contact list: registered and not, duplicates, shuffled deterministically.
    const list = [...registered.slice(0, 20), ...unregistered.slice(0, 20), registered[3]!, unregistered[5]!, registered[3]!];
    list.sort((a, b) => (a.slice(-3) < b.slice(-3) ? -1 : 1));
    const answers: Record<string, string[][]> = {};
    for (const design of DESIGNS) {
      const results = await s.client(token, design).lookupMany(list);
      expect(results.map((r) => r.number)).toEqual(list);
      answers[design] = results.map((r) => r.capabilities);
    }
    const truth = list.map((n) => expected.get(n) ?? []);
    for (const design of DESIGNS) expect(answers[design], design).toEqual(truth);
    expect(truth.filter((c) => c.length === 0).length).toBeGreaterThan(10);
    expect(new Set(list.map((n) => n.slice(0, 3))).size).toBeGreaterThan(3);
  });

  it('agrees on national-format input with a default region', async () => {
    const us = sampleNumbers({ count: 1, seed: 'national', regions: ['US'] })[0]!;
    const national = `(${us.slice(2, 5)}) ${us.slice(5, 8)}-${us.slice(8)}`;
    for (const design of DESIGNS) {
      const r = await s.client(token, design, { defaultRegion: 'US' }).lookup(national);
      expect(r.number).toBe(us);
      expect(r.capabilities).toEqual(expected.get(us) ?? []);
    }
  });

  it('sees a registration and a deletion on the next lookup in every design', async () => {
    const n = unregistered[10]!;
    const { accountId } = await s.admin.createAccount({ email: `late${bucketBits}@example.org`, numbers: [n], capabilities: ['facetime'] });
    for (const design of DESIGNS) expect((await s.client(token, design).lookup(n)).capabilities, design).toEqual(['facetime']);
    await s.admin.deleteAccount(accountId);
    for (const design of DESIGNS) expect((await s.client(token, design).lookup(n)).capabilities, design).toEqual([]);
  });

  it('leaves an account without capabilities out of the directory, before and after a restart', async () => {
    const n = unregistered[12]!;
    await s.admin.createAccount({ email: `nocaps${bucketBits}@example.org`, numbers: [n], capabilities: [] });
    const check = async () => {
      for (const design of DESIGNS) {
        const r = await s.client(token, design).lookupMany([n, registered[0]!]);
        expect(r.map((x) => x.capabilities), design).toEqual([[], expected.get(registered[0]!)]);
      }
    };
    await check();
    s = await s.restart(); // the directory is loaded from the store
    await s.admin.rotateKey({}); // and a new epoch is built from it
    await check();
  });
});

describe('the hashed index hash', () => {
  it('is shared/hashed.ts hashNumber byte for byte, for numbers of every region and any UTF-8 text', () => {
    for (const n of sampleNumbers({ count: 2000, seed: 'hashed-agree' })) expect(Buffer.from(serverHash(n))).toEqual(Buffer.from(hashNumber(n)));
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => {
        expect(Buffer.from(serverHash(s as E164))).toEqual(Buffer.from(hashNumber(s as E164)));
      }),
    );
  });
});
