/**
 * A mixed-design load run: many concurrent clients, each with its own
 * requester token and design, look up contact lists (registered and
 * unregistered numbers, in random batch sizes, duplicates included) against
 * one real server at once, while the admin registers new accounts. Every
 * answer is checked against the directory the store holds: the designs
 * under concurrency answer exactly what a lone client would.
 *
 * Under PCD_TEST_FULL=1: 1,500 seeded numbers, lists of up to 250 numbers in
 * batches of up to 300, four lists per client, the test server's size
 * classes. Otherwise a smaller run of the same: 500 numbers, lists of up to
 * 64 in batches of up to 80, two lists per client, and a size class of 64
 * (most of a blinded lookup's CPU is its elements, padding included, so the
 * classes follow the lists down).
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maskToCapabilities } from '../shared/capabilities.ts';
import { DESIGNS, type DesignName } from '../shared/messages.ts';
import { seedDataFolder } from '../server/seed.ts';
import { FULL, SHORT_LIST_SIZE_CLASSES, TEST_SIZE_CLASSES, describeDesigns, runs, startTestServer, tempDir, type TestServer } from './helpers.ts';

/** A small deterministic generator (mulberry32), so a failure replays. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Lists each client looks up: 4 under PCD_TEST_FULL=1, 2 in a quick run. */
const ROUNDS = runs(4, 2);
/** Numbers seeded, the longest list and the largest batch a client asks (module header). */
const SEEDED = FULL ? 1500 : 500;
const MAX_LIST = FULL ? 250 : 64;
const MAX_BATCH = FULL ? 300 : 80;
/** The server's token size classes: the test server's, or with 64 for the quick run's shorter lists. */
const SIZE_CLASSES = FULL ? TEST_SIZE_CLASSES : SHORT_LIST_SIZE_CLASSES;

describe('mixed-design load from many concurrent clients', () => {
  const root = tempDir('pcd-load-');
  let ts: TestServer;
  const expected = new Map<string, string[]>();
  let registered: string[] = [];
  const tokens: string[] = [];
  /** Numbers the admin registered while the clients ran. */
  const newcomers: string[] = [];

  beforeAll(async () => {
    const dataDir = path.join(root, 'data');
    await seedDataFolder(dataDir, path.join(root, 'contacts'), { size: SEEDED, requesters: 0 });
    // One evaluator worker: the pool under concurrent requesters (its scaling over workers is test/evaluator.test.ts's).
    ts = await startTestServer({ dataDir, bucketBits: 4, evalThreads: 1, sizeClasses: SIZE_CLASSES });
    for (const { number, mask } of ts.server.store.directory()) expected.set(number, maskToCapabilities(mask));
    registered = [...expected.keys()];
    for (let i = 0; i < 12; i++) {
      const { token } = await ts.admin.createAccount({ email: `load${i}@example.org`, numbers: [`+1415555${String(1000 + i).padStart(4, '0')}`], capabilities: ['messages'] });
      tokens.push(token);
      expected.set(`+1415555${String(1000 + i).padStart(4, '0')}`, ['messages']);
    }
  });
  afterAll(() => ts?.close());

  it('answers every lookup of 12 concurrent clients over the three designs as the directory says', async () => {
    const random = rng(20261202);
    const unregistered = Array.from({ length: 400 }, (_, i) => `+1415555${String(2000 + i).padStart(4, '0')}`);
    for (const n of unregistered) expected.set(n, []);
    const pick = (): string => (random() < 0.5 ? registered[Math.floor(random() * registered.length)]! : unregistered[Math.floor(random() * unregistered.length)]!);

    let checked = 0;
    const client = async (i: number): Promise<void> => {
      const design: DesignName = DESIGNS[i % DESIGNS.length]!;
      const c = ts.client(tokens[i]!, design, { batchSize: 1 + Math.floor(random() * MAX_BATCH) });
      for (let round = 0; round < ROUNDS; round++) {
        const list = Array.from({ length: 1 + Math.floor(random() * MAX_LIST) }, pick);
        const results = await c.lookupMany(list);
        expect(results.map((r) => r.number), design).toEqual(list);
        results.forEach((r) => expect(r.capabilities, `${design} ${r.number}`).toEqual(expected.get(r.number)));
        checked += results.length;
      }
    };
    // The admin registers while the clients run; those numbers are looked up once every client is done.
    const registrar = (async () => {
      for (let i = 0; i < 10; i++) {
        const n = `+1415555${String(3000 + i).padStart(4, '0')}`;
        await ts.admin.createAccount({ email: `new${i}@example.org`, numbers: [n], capabilities: ['facetime'] });
        newcomers.push(n);
      }
    })();
    await Promise.all([...tokens.map((_, i) => client(i)), registrar]);
    expect(checked).toBeGreaterThan(12 * ROUNDS);
    expect(newcomers).toHaveLength(10);
  });

  describeDesigns('once the clients are done, %s', (design) => {
    it('answers the numbers registered during the load', async () => {
      const results = await ts.client(tokens[0]!, design).lookupMany(newcomers);
      expect(results.map((r) => r.capabilities)).toEqual(newcomers.map(() => ['facetime']));
    });
  });
});
