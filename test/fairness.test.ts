/**
 * Fair admission of blinded evaluations (server/blinded/fair.ts): the
 * scheduler's round-robin order (a flood from one requester delays another's
 * small request by at most one chunk per active requester), the
 * per-requester and global bounds, the always-admit-small rule and the
 * Retry-After estimate, all with counters and a fake clock; then one HTTP
 * test through a real server: a flood of large requests from one account
 * does not make another account's 1-element request fail, and a refused
 * request is 503 with Retry-After and an error body, refused before its
 * body is decoded.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { loadBackend } from '../shared/backends.ts';
import { encodeBody } from '../shared/codec.ts';
import { ErrorCode, PcdError, isPcdError } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { PATHS } from '../shared/messages.ts';
import { FairScheduler, DEFAULT_MAX_PER_REQUESTER, type Chunk } from '../server/blinded/fair.ts';
import { designOf } from '../server/designs/index.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { raw, runs, startTestServer, type TestServer } from './helpers.ts';

interface Item {
  name: string;
}

/** A scheduler on a fake clock. */
function scheduler(options: Partial<ConstructorParameters<typeof FairScheduler>[0]> = {}) {
  let t = 0;
  const s = new FairScheduler<Item>({ chunkElements: 4, now: () => t, msPerElement: 10, ...options });
  return { s, advance: (ms: number) => (t += ms) };
}

/** What a refusal threw. */
function refusal(f: () => void): PcdError {
  try {
    f();
  } catch (e) {
    if (isPcdError(e)) return e;
    throw e;
  }
  throw new Error('expected a refusal');
}

/** Hands out chunks `workers` at a time and finishes them, until nothing is queued; returns who got each chunk, in order. */
function drain(s: FairScheduler<Item>, workers: number): string[] {
  const order: string[] = [];
  while (!s.idle) {
    const running: Chunk<Item>[] = [];
    for (let w = 0; w < workers; w++) {
      const c = s.next();
      if (c) running.push(c);
    }
    for (const c of running) {
      order.push(c.item.name);
      s.done(c);
    }
  }
  return order;
}

describe('FairScheduler: order', () => {
  it('serves requesters round-robin, one chunk per turn, batches of one requester in arrival order', () => {
    const { s } = scheduler();
    const a1 = { name: 'A1' };
    const a2 = { name: 'A2' };
    s.enqueue(1, a1, 10); // 3 chunks: 4 + 4 + 2
    s.enqueue(1, a2, 4);
    s.enqueue(2, { name: 'B' }, 6);
    s.enqueue(3, { name: 'C' }, 1);
    const got: string[] = [];
    for (let c = s.next(); c; c = s.next()) {
      got.push(`${c.item.name}@${c.first}+${c.count}`);
      s.done(c);
    }
    expect(got).toEqual(['A1@0+4', 'B@0+4', 'C@0+1', 'A1@4+4', 'B@4+2', 'A1@8+2', 'A2@0+4']);
    expect(s.stats).toMatchObject({ queuedElements: 0, outstandingElements: 0, runningChunks: 0, activeRequesters: 0 });
  });

  it('while A floods, single requests from B and C are each handed out within one chunk per active requester', () => {
    const { s } = scheduler({ chunkElements: 128 });
    // A fills its share: two full batches, 64 chunks.
    s.enqueue(1, { name: 'A' }, LIMITS.maxBatch);
    s.enqueue(1, { name: 'A' }, LIMITS.maxBatch);
    const order: string[] = [];
    const joined = new Map<string, number>();
    // Two workers; B and C arrive once 6 of A's chunks are out.
    while (!s.idle) {
      if (order.length === 6) {
        for (const [requester, name] of [[2, 'B'], [3, 'C']] as const) {
          s.enqueue(requester, { name }, 1);
          joined.set(name, order.length);
        }
      }
      const running = [s.next(), s.next()].filter((c): c is Chunk<Item> => c !== undefined);
      for (const c of running) {
        order.push(c.item.name);
        s.done(c);
      }
    }
    const active = 3;
    // Chunks of others handed out between each one's arrival and its own: at most one per other active requester.
    for (const [name, at] of joined) expect(order.indexOf(name) - at, name).toBeLessThanOrEqual(active - 1);
    expect(joined.size).toBe(2);
    expect(order.filter((n) => n === 'A')).toHaveLength(64);
  });

  it('property: between a requester joining and its first chunk, every other requester gets at most one chunk, whatever the arrivals and workers', () => {
    const arrival = fc.record({ requester: fc.integer({ min: 1, max: 6 }), n: fc.integer({ min: 1, max: 40 }), at: fc.integer({ min: 0, max: 30 }) });
    fc.assert(
      fc.property(fc.array(arrival, { minLength: 1, maxLength: 25 }), fc.integer({ min: 1, max: 3 }), (arrivals, workers) => {
        const { s } = scheduler({ chunkElements: 4, maxPerRequester: 10_000, maxQueued: 100_000 });
        const events: ({ t: 'join'; r: number } | { t: 'chunk'; r: number })[] = [];
        const pending = [...arrivals].sort((x, y) => x.at - y.at);
        for (let round = 0; pending.length > 0 || !s.idle; round++) {
          while (pending.length > 0 && pending[0]!.at <= round) {
            const a = pending.shift()!;
            if (s.outstandingOf(a.requester) === 0) events.push({ t: 'join', r: a.requester });
            s.enqueue(a.requester, { name: String(a.requester) }, a.n);
          }
          const running: Chunk<Item>[] = [];
          for (let w = 0; w < workers; w++) {
            const c = s.next();
            if (!c) break;
            running.push(c);
            events.push({ t: 'chunk', r: c.requester });
          }
          for (const c of running) s.done(c);
        }
        for (let i = 0; i < events.length; i++) {
          const e = events[i]!;
          if (e.t !== 'join') continue;
          const before = new Map<number, number>();
          for (let j = i + 1; j < events.length; j++) {
            const f = events[j]!;
            if (f.t !== 'chunk') continue;
            if (f.r === e.r) break;
            before.set(f.r, (before.get(f.r) ?? 0) + 1);
          }
          for (const count of before.values()) if (count > 1) return false;
        }
        return true;
      }),
      { numRuns: runs(300) },
    );
  });

  it('cancel drops what is queued of a batch and frees its share; running chunks count until done', () => {
    const { s } = scheduler();
    const a = { name: 'A' };
    s.enqueue(1, a, 12);
    const c = s.next()!;
    expect(s.cancel(a)).toBe(8);
    expect(s.stats).toMatchObject({ queuedElements: 0, outstandingElements: 4, runningChunks: 1, activeRequesters: 1 });
    expect(s.next()).toBeUndefined();
    s.done(c, false);
    expect(s.stats).toMatchObject({ outstandingElements: 0, activeRequesters: 0 });
    expect(s.cancel(a)).toBe(0);
  });
});

describe('FairScheduler: bounds', () => {
  it('refuses a requester whose backlog would pass its bound, with 503 and a Retry-After from the backlog', () => {
    const { s } = scheduler({ maxPerRequester: 1000, maxQueued: 100_000, msPerElement: 10, parallelism: 1 });
    s.enqueue(1, { name: 'A' }, 1000);
    const e = refusal(() => s.check(1, 500));
    expect(e.code).toBe(ErrorCode.Unavailable);
    expect(e.status).toBe(503);
    expect(e.message).toMatch(/your evaluation backlog is full: 1000 of your blinded elements .*at most 1000 per requester/);
    // 500 of A's elements must be done first, at A's share (all of it: A is alone) of 10 ms each on one worker.
    expect(e.retryAfterSeconds).toBe(5);
    s.enqueue(2, { name: 'B' }, 1);
    // Two active requesters: A's share is half the pool, so twice as long.
    expect(refusal(() => s.check(1, 500)).retryAfterSeconds).toBe(10);
    s.parallelism = 2;
    expect(refusal(() => s.check(1, 500)).retryAfterSeconds).toBe(5);
    expect(s.stats.rejected).toEqual({ requester: 3, global: 0 });
    expect(() => s.enqueue(1, { name: 'A2' }, 1)).toThrow(PcdError);
  });

  it('always admits one batch from a requester with nothing outstanding, even above its bound', () => {
    const { s } = scheduler({ maxPerRequester: 10 });
    s.enqueue(1, { name: 'A' }, 12);
    expect(s.outstandingOf(1)).toBe(12);
    expect(() => s.check(1, 1)).toThrow(PcdError);
    // The default bound, by behaviour: two of the largest batches from one requester get in, not one element more.
    const { s: d } = scheduler();
    d.enqueue(1, { name: 'A1' }, LIMITS.maxBatch);
    expect(() => d.check(1, LIMITS.maxBatch)).not.toThrow();
    d.enqueue(1, { name: 'A2' }, LIMITS.maxBatch);
    expect(refusal(() => d.check(1, 1)).message).toMatch(new RegExp(`your evaluation backlog is full: ${2 * LIMITS.maxBatch} of your blinded elements`));
    expect(d.outstandingOf(1)).toBe(DEFAULT_MAX_PER_REQUESTER);
  });

  it('bounds the global backlog, but a requester with nothing outstanding always gets a request of at most one chunk in', () => {
    const { s } = scheduler({ chunkElements: 4, maxPerRequester: 100, maxQueued: 20 });
    s.enqueue(1, { name: 'A' }, 10);
    s.enqueue(2, { name: 'B' }, 10);
    const full = refusal(() => s.check(3, 5)); // more than one chunk
    expect(full.message).toMatch(/the evaluators are busy: 20 blinded elements .*at most 20 in all/);
    expect(full.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    s.enqueue(3, { name: 'C' }, 4); // one chunk, C idle: in, past the bound
    expect(() => s.check(3, 1)).toThrow(/evaluators are busy/); // C now has work outstanding: the bound applies
    s.enqueue(4, { name: 'D' }, 1); // D idle: in
    expect(s.stats).toMatchObject({ outstandingElements: 25, activeRequesters: 4, rejected: { requester: 0, global: 2 } });
    // A's second request waits for the backlog to drain.
    expect(() => s.check(1, 4)).toThrow(/evaluators are busy/);
    const order = drain(s, 2);
    expect(order).toHaveLength(8); // 3 + 3 + 1 + 1 chunks
    expect(s.stats.outstandingElements).toBe(0);
    // Nothing outstanding at all: anything up to the largest batch gets in, whatever the bounds.
    expect(() => s.enqueue(1, { name: 'A2' }, LIMITS.maxBatch)).not.toThrow();
  });

  it('learns the cost per element from chunk service times on the injected clock', () => {
    const { s, advance } = scheduler({ chunkElements: 4, msPerElement: 10 });
    s.enqueue(1, { name: 'A' }, 8);
    const c = s.next()!;
    advance(80); // 4 elements in 80 ms: 20 ms each
    s.done(c);
    expect(s.stats.msPerElement).toBeCloseTo(12); // an exponential average: 10 + 0.2 x (20 - 10)
    const d = s.next()!;
    advance(1000);
    s.done(d, false); // a failure is not a measurement
    expect(s.stats.msPerElement).toBeCloseTo(12);
  });

  it('rejects nonsense options and empty batches', () => {
    expect(() => new FairScheduler({ chunkElements: 0 })).toThrow(RangeError);
    expect(() => new FairScheduler({ chunkElements: 4, maxQueued: 1.5 })).toThrow(RangeError);
    const { s } = scheduler();
    expect(() => s.enqueue(1, { name: 'A' }, 0)).toThrow(RangeError);
    const a = { name: 'A' };
    s.enqueue(1, a, 1);
    expect(() => s.enqueue(1, a, 1)).toThrow(/already queued/);
  });
});

// ---------------------------------------------------------------------------

describe('fair admission over HTTP', () => {
  let servers: TestServer[] = [];
  afterEach(async () => {
    for (const s of servers) await s.close().catch(() => {});
    servers = [];
  });

  it("a flood of large requests from one account does not make another's 1-element request fail; refusals are 503 with Retry-After, before decoding", async () => {
    // noble on one worker (~2.5 ms per element): the flood is ~20 s of work, far longer than this test lets it run.
    // The account path: fairness is per account (with tokens it is per request: server/designs/blinded.ts anonymousFairnessKey).
    const s = await startTestServer({ designs: ['blinded'], evalThreads: 1, backend: 'noble', blindedAuth: 'account' });
    servers.push(s);
    const design = designOf(s.server.designs, 'blinded')!;
    const pool = design.evaluator;
    await pool.start();
    const [numberA, numberB] = sampleNumbers({ count: 2, seed: 'fairness-test', regions: ['US'] });
    const a = await s.admin.createAccount({ email: 'flood@example.org', numbers: [numberA!], capabilities: ['messages'] });
    const b = await s.admin.createAccount({ email: 'light@example.org', numbers: [numberB!], capabilities: ['messages'] });

    const client = await loadBackend('sodium'); // the client side blinds fast; the server evaluates with noble
    // 64 blinded elements repeated to a full batch: the server evaluates every one of the 4096 all the same, and the
    // test does not spend a second blinding them.
    const distinct = client.blindBatch('voprf', Array.from({ length: 64 }, (_, i) => utf8ToBytes(`+1202555${String(i).padStart(4, '0')}`))).blinded;
    const flood = Array.from({ length: LIMITS.maxBatch }, (_, i) => distinct[i % distinct.length]!);
    const url = s.server.url + PATHS.blindedEvaluate;
    const post = (token: string, body: Uint8Array) =>
      fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/msgpack', accept: 'application/json' }, body });
    const floodBody = encodeBody({ epoch: 1, elements: flood }, 'msgpack');

    // A fills its share (2 x 4096 elements) ...
    const admitted = [post(a.token, floodBody), post(a.token, floodBody)].map((p) => p.then((r) => r.status));
    await vi.waitFor(() => expect(pool.stats.openBatches).toBe(2), { timeout: 30_000, interval: 5 });
    expect(pool.stats.activeRequesters).toBe(1);

    // ... so its next request is refused from the headers alone: this body is not even MessagePack.
    const junk = new Uint8Array(floodBody.length).fill(0xc1); // 0xc1 is never used in MessagePack
    const refused = await post(a.token, junk);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    const refusedBody = (await refused.json()) as { error: { code: string; message: string } };
    expect(refusedBody).toEqual({ error: { code: ErrorCode.Unavailable, message: expect.stringMatching(/your evaluation backlog is full/) } });
    const again = await post(a.token, floodBody);
    expect(again.status).toBe(503);
    expect(Number(again.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);

    // B's one element is served in its turn, between A's chunks, while A's flood is still being evaluated.
    const one = client.blindBatch('voprf', [utf8ToBytes(numberA!)]);
    const light = await raw(url, {
      headers: { authorization: `Bearer ${b.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ epoch: 1, elements: [Buffer.from(one.blinded[0]!).toString('base64')] }),
    });
    expect(light.status).toBe(200);
    expect(pool.stats.openBatches).toBe(2); // A's batches: not done
    const config = await raw(s.server.url + PATHS.blindedConfig, { method: 'GET' });
    const publicKey = new Uint8Array(Buffer.from(config.json.epochs[0].publicKey as string, 'base64'));
    const [tag] = client.finalizeBatch(
      'voprf',
      { inputs: [utf8ToBytes(numberA!)], ...one, evaluated: [new Uint8Array(Buffer.from(light.json.evaluated[0] as string, 'base64'))] },
      publicKey,
      new Uint8Array(Buffer.from(light.json.proof as string, 'base64')),
    );
    expect(tag).toHaveLength(64); // the proof verified against the epoch key

    // Closing the pool (as the server's shutdown does once its connections are done) answers A's flood with 503.
    await pool.close();
    for (const status of await Promise.all(admitted)) expect([200, 503]).toContain(status);
    expect(pool.stats.rejected).toBeGreaterThanOrEqual(2);
  });
});
