/**
 * The three designs through one real server and the real client give
 * identical answers for the same directory and contact list: registered and
 * unregistered numbers, duplicates, several regions, national input; for
 * bucketBits 0 (full directory sync) and a larger value. Also: the hashed
 * server's node:crypto hash is the protocol's hashNumber, byte for byte.
 *
 * The servers take token size classes 1, 16, 64 and 4096: the blinded
 * lookup of the contact list (40 distinct numbers) is padded to 64
 * elements, not to the test server's 256.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/designs/hashed.ts';
import { serverHash } from '../server/designs/hashed.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { SHORT_LIST_SIZE_CLASSES, describeDesigns, runs, startTestServer, type TestServer } from './helpers.ts';

const REGIONS = ['US', 'GB', 'DE', 'FR', 'IN', 'BR', 'JP', 'NG'];
const pool = sampleNumbers({ count: 60, seed: 'e2e-designs', regions: REGIONS });
const registered = pool.slice(0, 30);
const unregistered = pool.slice(30);
const CAPS = [['messages', 'facetime'], ['messages'], ['facetime']] as const;

describe.each([0, 6])('all designs agree, bucketBits %i', (bucketBits) => {
  let s: TestServer;
  let token: string;
  const expected = new Map<string, string[]>();
  /** An account registered without capabilities: it is not in the directory. */
  const noCaps = unregistered[12]!;
  // A contact list: registered and not, duplicates, shuffled deterministically.
  const list = [...registered.slice(0, 20), ...unregistered.slice(0, 20), registered[3]!, unregistered[5]!, registered[3]!];
  list.sort((a, b) => (a.slice(-3) < b.slice(-3) ? -1 : 1));
  const truth = () => list.map((n) => expected.get(n) ?? []);

  beforeAll(async () => {
    // One evaluator worker: the pool, end to end (other tests evaluate inline).
    s = await startTestServer({ bucketBits, evalThreads: 1, sizeClasses: SHORT_LIST_SIZE_CLASSES });
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
    await s.admin.createAccount({ email: 'nocaps@example.org', numbers: [noCaps], capabilities: [] });
  });
  afterAll(() => s.close());

  it('asks a contact list with every case: unregistered numbers, duplicates, several regions', () => {
    expect(truth().filter((c) => c.length === 0).length).toBeGreaterThan(10);
    expect(new Set(list).size).toBeLessThan(list.length);
    expect(new Set(list.map((n) => n.slice(0, 3))).size).toBeGreaterThan(3);
  });

  // Each design answers exactly what the directory says, so all of them agree.
  describeDesigns('%s', (design) => {
    it('answers the contact list as the directory does, in order, duplicates kept', async () => {
      const results = await s.client(token, design).lookupMany(list);
      expect(results.map((r) => r.number)).toEqual(list);
      expect(results.map((r) => r.capabilities)).toEqual(truth());
    });

    it('agrees on national-format input with a default region', async () => {
      const us = sampleNumbers({ count: 1, seed: 'national', regions: ['US'] })[0]!;
      const national = `(${us.slice(2, 5)}) ${us.slice(5, 8)}-${us.slice(8)}`;
      const r = await s.client(token, design, { defaultRegion: 'US' }).lookup(national);
      expect(r.number).toBe(us);
      expect(r.capabilities).toEqual(expected.get(us) ?? []);
    });

    it('sees a registration and a deletion on the next lookup', async () => {
      const n = unregistered[10]!;
      const { accountId } = await s.admin.createAccount({ email: `late${bucketBits}-${design}@example.org`, numbers: [n], capabilities: ['facetime'] });
      expect((await s.client(token, design).lookup(n)).capabilities).toEqual(['facetime']);
      await s.admin.deleteAccount(accountId);
      expect((await s.client(token, design).lookup(n)).capabilities).toEqual([]);
    });

    it('leaves an account without capabilities out of the directory', async () => {
      const r = await s.client(token, design).lookupMany([noCaps, registered[0]!]);
      expect(r.map((x) => x.capabilities)).toEqual([[], expected.get(registered[0]!)]);
    });
  });

  describe('after a restart (the directory loaded from the store) and a new epoch built from it', () => {
    beforeAll(async () => {
      s = await s.restart();
      await s.admin.rotateKey({});
    });

    describeDesigns('%s', (design) => {
      it('answers the contact list as the directory does, and still leaves the account without capabilities out', async () => {
        expect((await s.client(token, design).lookupMany(list)).map((r) => r.capabilities)).toEqual(truth());
        const r = await s.client(token, design).lookupMany([noCaps, registered[0]!]);
        expect(r.map((x) => x.capabilities)).toEqual([[], expected.get(registered[0]!)]);
      });
    });
  });
});

describe('the hashed index hash', () => {
  it('is shared/designs/hashed.ts hashNumber byte for byte, for numbers of every region and any UTF-8 text', () => {
    // Compared as hex strings: the same bytes, without a deep equality per byte of 2,000 buffers.
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    const numbers = sampleNumbers({ count: 2000, seed: 'hashed-agree' });
    expect(numbers.filter((n) => hex(serverHash(n)) !== hex(hashNumber(n)))).toEqual([]);
    expect(hex(serverHash(numbers[0]!))).toMatch(/^[0-9a-f]{64}$/);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => {
        expect(hex(serverHash(s as E164))).toBe(hex(hashNumber(s as E164)));
      }),
      { numRuns: runs(100) },
    );
  });
});
