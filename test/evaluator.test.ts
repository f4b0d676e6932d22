/**
 * The evaluator pool (server/blinded/pool.ts) on real worker threads: a
 * batch split into chunks over one or two workers gives exactly the reply of
 * the unsplit `blindEvaluateBatch` (the same elements and, with the same
 * proof randomness, the same proof, which the client's Finalize accepts), on
 * both backends and in both modes; a bad element fails its batch with 400
 * naming the lowest bad index; dropKey makes the workers forget the key and
 * fails the epoch's batches with 410; a crashed worker fails only its batch
 * (500, no secret in the message) and is replaced; close() answers 503; the
 * backlog bounds answer 503 with retryAfterSeconds; size 0 and workers that
 * cannot start evaluate inline. Then the same over HTTP.
 *
 * A pool's two workers take about a second to start, most of this file's
 * time once: tests that need no pool of their own share one (sharedPool:
 * sodium, two workers, 32-element chunks; its counters are read as the
 * difference a test made, `counting`, its keys dropped after each test, so
 * each test uses epochs no other used, `freshEpoch`), and the HTTP tests
 * share one server (sharedServer). The crash, bounds, inline and fallback
 * tests, and the byte-for-byte cases on noble or one worker, start pools of
 * their own. The close tests take the shared pool and server for themselves and
 * end them (they come last; a test after them would start new ones).
 *
 * Nothing here asserts a duration: the machine has two cores shared with
 * other jobs. What is asserted is order and state (chunks handed out,
 * counters, replies), which the pool determines.
 */
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { loadBackend } from '../shared/backends.ts';
import { decodeBody, encodeBody } from '../shared/codec.ts';
import { ErrorCode, isPcdError } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { EvaluateReply, PATHS } from '../shared/messages.ts';
import { rngForScalars } from '../shared/noble.ts';
import { parseReply } from '../shared/schema.ts';
import type { BackendName, KeyPair, OprfBackend, OprfMode, PointBytes } from '../shared/suite.ts';
import { EvaluatorPool, evalThreads, type EvaluatedBatch, type PoolOptions, type PoolStats } from '../server/blinded/pool.ts';
import type { BlindedServerDesign } from '../server/designs/blinded.ts';
import { designOf } from '../server/designs/index.ts';
import { readEpochKeys } from '../disk/keyfile.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { raw, startTestServer, type TestServer } from './helpers.ts';

const numbers = sampleNumbers({ count: 300, seed: 'evaluator-test', regions: ['US', 'GB', 'DE'] });

interface Batch {
  inputs: Uint8Array[];
  blinds: Uint8Array[];
  blinded: PointBytes[];
}

function batch(backend: OprfBackend, mode: OprfMode, n: number, offset = 0): Batch {
  const inputs = Array.from({ length: n }, (_, i) => utf8ToBytes(numbers[(offset + i) % numbers.length]!));
  return { inputs, ...backend.blindBatch(mode, inputs) };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** A fixed proof nonce: scalar 7 (little-endian), drawn through the backends' RandomScalar. */
const nonce = () => rngForScalars([Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 7 : 0))]);

/**
 * Evaluate(key, input), remembered: the batches cycle through the 300
 * numbers, so a 4096-element batch asks for each ~14 times (a second of
 * crypto saved there); the value compared is the same.
 */
const evaluations = new Map<string, string>();
function evaluateHex(backend: OprfBackend, mode: OprfMode, secretKey: Uint8Array, input: Uint8Array): string {
  const k = `${backend.name} ${mode} ${hex(secretKey)} ${hex(input)}`;
  let v = evaluations.get(k);
  if (v === undefined) evaluations.set(k, (v = hex(backend.evaluate(mode, secretKey, input))));
  return v;
}

/** The reply verifies (one proof in voprf mode, against the public key) and finalizes to Evaluate of every input. */
function expectCorrect(backend: OprfBackend, mode: OprfMode, key: KeyPair, b: Batch, r: EvaluatedBatch): void {
  expect(r.evaluated).toHaveLength(b.inputs.length);
  if (mode === 'oprf') expect(r.proof).toBeUndefined();
  const out = backend.finalizeBatch(mode, { ...b, evaluated: r.evaluated }, key.publicKey, r.proof);
  out.forEach((o, i) => expect(hex(o), `element ${i}`).toBe(evaluateHex(backend, mode, key.secretKey, b.inputs[i]!)));
}

function captureLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines, text: () => JSON.stringify(lines) };
}

/** The pool's live worker objects (to watch them exit). */
function workersOf(pool: EvaluatorPool): Worker[] {
  return (pool as unknown as { workers: { slots: ({ worker: Worker } | undefined)[] } }).workers.slots.flatMap((s) => (s ? [s.worker] : []));
}

/** Settles a promise into its value or its error, so a test can hold several. */
const settle = <T>(p: Promise<T>): Promise<{ ok: T } | { err: unknown }> => p.then((ok) => ({ ok }), (err: unknown) => ({ err }));

let pools: EvaluatorPool[] = [];
async function newPool(options: Partial<PoolOptions> & { backendName?: BackendName } = {}): Promise<EvaluatorPool> {
  const { backendName = 'sodium', ...rest } = options;
  const p = new EvaluatorPool({ backend: await loadBackend(backendName), ...rest });
  pools.push(p);
  await p.start();
  return p;
}

/**
 * The pool of the tests that need none of their own (module header):
 * sodium, two workers, 32-element chunks, started at first use. After each
 * test it holds no key (afterEach drops them), so each test using it takes
 * its epochs from freshEpoch (a dropped epoch is refused for good).
 */
let shared: Promise<EvaluatorPool> | undefined;
const SHARED = { size: 2, chunkElements: 32 } as const;
function sharedPool(): Promise<EvaluatorPool> {
  return (shared ??= (async () => {
    const p = new EvaluatorPool({ backend: await loadBackend('sodium'), ...SHARED });
    await p.start();
    return p;
  })());
}
/** The shared pool, no longer shared: the caller closes it (the close test; a later test would start another). */
async function takeSharedPool(): Promise<EvaluatorPool> {
  const p = await sharedPool();
  shared = undefined;
  pools.push(p);
  return p;
}
let lastEpoch = 100;
/** An epoch number no test used on the shared pool. */
const freshEpoch = (): number => ++lastEpoch;

/**
 * The pool's counters from now on (batches, elements, chunks, inlineChunks,
 * crashes, the rejections, workerChunks per worker) and its state as it is:
 * on the shared pool the counters also hold what earlier tests did.
 */
function counting(pool: EvaluatorPool): () => PoolStats {
  const before = pool.stats;
  return () => {
    const now = pool.stats;
    return {
      ...now,
      batches: now.batches - before.batches,
      elements: now.elements - before.elements,
      chunks: now.chunks - before.chunks,
      inlineChunks: now.inlineChunks - before.inlineChunks,
      crashes: now.crashes - before.crashes,
      rejected: now.rejected - before.rejected,
      rejectedRequester: now.rejectedRequester - before.rejectedRequester,
      rejectedGlobal: now.rejectedGlobal - before.rejectedGlobal,
      workerChunks: now.workerChunks.map((c, i) => c - (before.workerChunks[i] ?? 0)),
    };
  };
}

/**
 * The server of the HTTP tests (module header): plain and blinded, two
 * evaluator workers, the account path (these tests send evaluate requests
 * by hand, per account; the token path: test/rfc9578-privacypass.test.ts),
 * grace 0 (a rotation destroys the previous epoch at once), one account.
 * Started at first use; the tests read its current epoch rather than assume one.
 * Kept-alive connections stay open two minutes, not five seconds: this process
 * is both client and server, and a check that holds the event loop for
 * seconds (the 4096-element one) would otherwise let the server's idle timer
 * close a connection just as the next request is sent on it (`other side closed`).
 */
interface SharedServer {
  s: TestServer;
  design: BlindedServerDesign;
  pool: EvaluatorPool;
  backend: OprfBackend;
  token: string;
}
let server: Promise<SharedServer> | undefined;
function sharedServer(): Promise<SharedServer> {
  return (server ??= (async () => {
    const s = await startTestServer({
      designs: ['plain', 'blinded'],
      evalThreads: 2,
      blindedAuth: 'account',
      mode: 'voprf',
      graceMs: 0,
      connectionLimits: { keepAliveTimeoutMs: 120_000 },
    });
    const design = designOf(s.server.designs, 'blinded')!;
    await design.evaluator.start();
    const { token } = await s.admin.createAccount({ email: 'a@example.org', numbers: [numbers[0]!], capabilities: ['messages'] });
    return { s, design, pool: design.evaluator, backend: design.evaluator.backend, token };
  })());
}
/** The shared server, no longer shared: the caller closes it (the close test; a later test would start another). */
async function takeSharedServer(): Promise<SharedServer> {
  const x = await sharedServer();
  server = undefined;
  servers.push(x.s);
  return x;
}

let servers: TestServer[] = [];
afterEach(async () => {
  for (const p of pools) await p.close();
  pools = [];
  for (const s of servers) await s.close().catch(() => {});
  servers = [];
  if (shared) {
    const p = await shared.catch(() => undefined);
    for (const e of p?.epochs ?? []) p!.dropKey(e); // the next test finds no key (and no batch: dropKey fails the epoch's)
  }
});
afterAll(async () => {
  evaluations.clear();
  await (await shared?.catch(() => undefined))?.close();
  shared = undefined;
  await (await server?.catch(() => undefined))?.s.close();
  server = undefined;
});

describe('EvaluatorPool: one batch split over the workers under one proof', () => {
  // The sodium two-worker case is the shared pool's (sharedPool); the others start their own.
  const cases: { backend: BackendName; size: number; n: number; chunk: number }[] = [
    { backend: 'noble', size: 2, n: 9, chunk: 4 },
    { backend: 'noble', size: 1, n: 5, chunk: 2 },
    { backend: 'sodium', size: SHARED.size, n: 300, chunk: SHARED.chunkElements },
    { backend: 'sodium', size: 1, n: 130, chunk: 64 },
  ];
  for (const { backend: name, size, n, chunk } of cases) {
    it(`${name}, ${size} worker${size > 1 ? 's' : ''}: ${n} elements in chunks of ${chunk} equal blindEvaluateBatch byte for byte, in both modes`, async () => {
      const isShared = name === 'sodium' && size === SHARED.size && chunk === SHARED.chunkElements;
      const pool = isShared ? await sharedPool() : await newPool({ backendName: name, size, chunkElements: chunk });
      const backend = pool.backend;
      const since = counting(pool);
      expect(pool.stats).toMatchObject({ size, threads: size, inline: false, chunkElements: chunk });
      const chunks = Math.ceil(n / chunk);
      for (const mode of ['voprf', 'oprf'] as const) {
        const key = backend.generateKeyPair();
        const epoch = freshEpoch();
        pool.setKey(epoch, mode, key);
        const b = batch(backend, mode, n);
        const before = pool.stats.chunks;
        const got = await pool.evaluate(epoch, b.blinded, { requester: 1, rng: nonce() });
        const whole = backend.blindEvaluateBatch(mode, key, b.blinded, nonce());
        expect(got.evaluated.map(hex)).toEqual(whole.evaluated.map(hex));
        if (mode === 'voprf') expect(hex(got.proof!)).toBe(hex(whole.proof!)); // the same proof as the unsplit batch
        expectCorrect(backend, mode, key, b, got); // and the client's Finalize accepts it
        expect(pool.stats.chunks - before).toBe(chunks);
        // Without a fixed nonce the proof differs but still verifies.
        expectCorrect(backend, mode, key, b, await pool.evaluate(epoch, b.blinded, { requester: 1 }));
      }
      // Every worker took chunks: the first ones go to every idle worker at once.
      expect(since().workerChunks.every((c) => c > 0)).toBe(true);
      expect(since()).toMatchObject({ batches: 4, elements: 4 * n, pendingElements: 0, openBatches: 0, activeRequesters: 0, inlineChunks: 0 });
    });
  }

  it('answers many concurrent batches from several requesters over two epochs, each correctly', async () => {
    const pool = await sharedPool(); // 32-element chunks: batches of 1 to 67 elements take one to three
    const backend = pool.backend;
    const since = counting(pool);
    const epochs = [freshEpoch(), freshEpoch()] as const;
    const keys = new Map(epochs.map((e) => [e, backend.generateKeyPair()]));
    for (const e of epochs) pool.setKey(e, 'voprf', keys.get(e)!);
    const jobs = Array.from({ length: 12 }, (_, i) => {
      const epoch = epochs[i % 2]!;
      const b = batch(backend, 'voprf', 1 + ((i * 11) % 70), i * 13);
      return { epoch, b, reply: pool.evaluate(epoch, b.blinded, { requester: i % 3 }) };
    });
    expect(pool.stats).toMatchObject({ openBatches: 12, activeRequesters: 3, runningChunks: 2 });
    for (const j of jobs) expectCorrect(backend, 'voprf', keys.get(j.epoch)!, j.b, await j.reply);
    expect(since()).toMatchObject({ batches: 12, pendingElements: 0, openBatches: 0, runningChunks: 0 });
    expect(await pool.workerEpochs()).toEqual([[...epochs], [...epochs]]);
  });
});

describe('EvaluatorPool: failures, keys, bounds', () => {
  it('a bad element fails its batch with 400 invalid_element naming the lowest bad index; the pool goes on', async () => {
    const pool = await sharedPool(); // 32-element chunks
    const backend = pool.backend;
    const since = counting(pool);
    const key = backend.generateKeyPair();
    const epoch = freshEpoch();
    pool.setKey(epoch, 'voprf', key);
    const b = batch(backend, 'voprf', 200);
    const elements = [...b.blinded];
    elements[40] = new Uint8Array(32); // the identity, in the second chunk (on the second worker)
    elements[5] = new Uint8Array(32).fill(0xff); // not canonical, in the first chunk
    elements[150] = new Uint8Array(32); // in a chunk still queued when the first ones fail
    const err = await pool.evaluate(epoch, elements, { requester: 1 }).catch((e: unknown) => e);
    expect(isPcdError(err, ErrorCode.InvalidElement)).toBe(true);
    expect((err as Error).message).toMatch(/^elements\[5\]: .*canonical.*nothing was evaluated/);

    const identity = [...b.blinded];
    identity[100] = new Uint8Array(32);
    await expect(pool.evaluate(epoch, identity, { requester: 1 })).rejects.toMatchObject({
      code: ErrorCode.InvalidElement,
      message: expect.stringMatching(/^elements\[100\]: is the identity element/),
    });
    // An element that is not 32 bytes cannot be packed for a worker: the same error, from the same check.
    const short = [...b.blinded];
    short[70] = new Uint8Array(31);
    await expect(pool.evaluate(epoch, short, { requester: 1 })).rejects.toMatchObject({
      code: ErrorCode.InvalidElement,
      message: expect.stringMatching(/^elements\[70\]: expected 32 bytes, got 31; nothing was evaluated/),
    });
    expectCorrect(backend, 'voprf', key, b, await pool.evaluate(epoch, b.blinded, { requester: 1 }));
    expect(since()).toMatchObject({ batches: 1, pendingElements: 0, queuedElements: 0, openBatches: 0, runningChunks: 0, activeRequesters: 0 });
  });

  it('dropKey makes every worker forget the key and fails the epoch\'s batches, queued or running, with 410', async () => {
    const pool = await sharedPool(); // 32-element chunks
    const backend = pool.backend;
    const key = backend.generateKeyPair();
    const mine = { secretKey: key.secretKey.slice(), publicKey: key.publicKey.slice() };
    const [gone, kept] = [freshEpoch(), freshEpoch()];
    pool.setKey(gone, 'voprf', mine);
    pool.setKey(kept, 'voprf', key);
    expect(await pool.workerEpochs()).toEqual([
      [gone, kept],
      [gone, kept],
    ]);
    const running = settle(pool.evaluate(gone, batch(backend, 'voprf', 100).blinded, { requester: 1 }));
    const queued = settle(pool.evaluate(gone, batch(backend, 'voprf', 3).blinded, { requester: 2 }));
    const other = batch(backend, 'voprf', 20);
    const survivor = pool.evaluate(kept, other.blinded, { requester: 3 });
    expect(pool.stats.runningChunks).toBe(2);
    pool.dropKey(gone);
    for (const r of [await running, await queued]) expect(r).toMatchObject({ err: { code: ErrorCode.EpochRetired } });
    expectCorrect(backend, 'voprf', key, other, await survivor);
    expect(pool.epochs).toEqual([kept]);
    expect(await pool.workerEpochs()).toEqual([[kept], [kept]]);
    expect(hex(mine.secretKey)).toBe(hex(key.secretKey)); // the pool zeroed its own copy, not the caller's
    await expect(pool.evaluate(gone, other.blinded, { requester: 1 })).rejects.toMatchObject({ code: ErrorCode.EpochRetired });
    expect(() => pool.setKey(gone, 'voprf', key)).toThrow(expect.objectContaining({ code: ErrorCode.EpochRetired }));
    expect(pool.stats).toMatchObject({ pendingElements: 0, openBatches: 0, runningChunks: 0 });
  });

  it('a crashed worker fails only the batch it was on, with 500 internal and no secret; it is replaced and gets the keys again', async () => {
    const log = captureLogger();
    // noble, 128-element chunks (~0.3 s each): the crash lands while worker 0 is on requester 1's first chunk.
    const pool = await newPool({ backendName: 'noble', size: 2, chunkElements: 128, logger: log.logger });
    const backend = pool.backend;
    const key = backend.generateKeyPair();
    pool.setKey(1, 'voprf', key);
    // Requester 1's batch takes both workers (chunks 0 and 1); requester 2's waits its turn.
    const big = settle(pool.evaluate(1, batch(backend, 'voprf', 300).blinded, { requester: 1 }));
    const small = batch(backend, 'voprf', 5, 300);
    const other = pool.evaluate(1, small.blinded, { requester: 2 });
    expect(pool.stats).toMatchObject({ runningChunks: 2, openBatches: 2 });
    await pool.crashWorker(0);
    const r = await big;
    expect(r).toMatchObject({ err: { code: ErrorCode.Internal, message: expect.stringMatching(/evaluator worker stopped while evaluating this batch/) } });
    const message = ((r as { err: Error }).err).message;
    expect(message).not.toContain(hex(key.secretKey));
    expectCorrect(backend, 'voprf', key, small, await other);

    expect(pool.stats.openBatches).toBe(0);
    // The failed batch's chunk on the other worker still runs to its end (then it is ignored) and the replacement boots.
    await vi.waitFor(() => expect(pool.stats).toMatchObject({ threads: 2, pendingElements: 0 }), { timeout: 30_000, interval: 20 });
    expect(pool.stats).toMatchObject({ crashes: 1, inline: false, runningChunks: 0 });
    expect(await pool.workerEpochs()).toEqual([[1], [1]]);
    const again = batch(backend, 'voprf', 20);
    expectCorrect(backend, 'voprf', key, again, await pool.evaluate(1, again.blinded, { requester: 1 }));
    expect(log.lines.some((l) => l.level === 50 && l.msg === 'evaluator worker stopped: replacing it')).toBe(true);
    expect(log.text()).not.toContain(hex(key.secretKey));
  });

  it('close() answers everything unfinished with 503, ends the workers, forgets the keys, and refuses afterwards', async () => {
    const pool = await takeSharedPool(); // the shared pool, used by the tests before (a fresh one when run alone)
    const backend = pool.backend;
    const epoch = freshEpoch();
    pool.setKey(epoch, 'oprf', backend.generateKeyPair());
    const jobs = [0, 1, 2].map((i) => settle(pool.evaluate(epoch, batch(backend, 'oprf', 100, i).blinded, { requester: i })));
    const exited = workersOf(pool).map((w) => new Promise((resolve) => w.once('exit', resolve)));
    expect(exited).toHaveLength(2);
    await pool.close();
    for (const j of jobs) expect(await j).toMatchObject({ err: { code: ErrorCode.Unavailable, message: expect.stringMatching(/shutting down/) } });
    await Promise.all(exited);
    expect(pool.stats).toMatchObject({ threads: 0, runningChunks: 0, queuedElements: 0, pendingElements: 0, openBatches: 0 });
    expect(pool.epochs).toEqual([]);
    await expect(pool.evaluate(epoch, batch(backend, 'oprf', 1).blinded, { requester: 1 })).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    expect(() => pool.admit(1, 1)).toThrow(expect.objectContaining({ code: ErrorCode.Unavailable }));
    await pool.close(); // idempotent
  });

  it('bounds each requester\'s backlog and the pool\'s with 503 and retryAfterSeconds, but always admits a small request from an idle requester', async () => {
    const pool = await newPool({ size: 1, chunkElements: 32, maxPerRequester: 100, maxQueued: 150 });
    const backend = pool.backend;
    const key = backend.generateKeyPair();
    pool.setKey(1, 'oprf', key);
    const a60 = batch(backend, 'oprf', 60);
    const a40 = batch(backend, 'oprf', 40, 60);
    const first = pool.evaluate(1, a60.blinded, { requester: 1 });
    const over = await pool.evaluate(1, batch(backend, 'oprf', 50).blinded, { requester: 1 }).catch((e: unknown) => e);
    expect(over).toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/your evaluation backlog is full: 60 .*at most 100 per requester/) });
    expect((over as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(() => pool.admit(1, 50)).toThrow(expect.objectContaining({ code: ErrorCode.Unavailable }));
    const fits = pool.evaluate(1, a40.blinded, { requester: 1 }); // 60 + 40 = 100: at the bound, admitted
    const b50 = batch(backend, 'oprf', 50, 100);
    const second = pool.evaluate(1, b50.blinded, { requester: 2 }); // 150 in all: at the global bound
    const globalFull = await pool.evaluate(1, batch(backend, 'oprf', 33).blinded, { requester: 3 }).catch((e: unknown) => e);
    expect(globalFull).toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/the evaluators are busy: 150 .*at most 150 in all/) });
    expect((globalFull as { retryAfterSeconds: number }).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    const c32 = batch(backend, 'oprf', 32, 150);
    const small = pool.evaluate(1, c32.blinded, { requester: 3 }); // one chunk from an idle requester: always in
    expect(pool.stats).toMatchObject({ pendingElements: 182, activeRequesters: 3, rejected: 3, rejectedRequester: 2, rejectedGlobal: 1 });
    expectCorrect(backend, 'oprf', key, a60, await first);
    expectCorrect(backend, 'oprf', key, a40, await fits);
    expectCorrect(backend, 'oprf', key, b50, await second);
    expectCorrect(backend, 'oprf', key, c32, await small);
    // Nothing outstanding: one batch of any allowed size gets in.
    const big = batch(backend, 'oprf', 150);
    expectCorrect(backend, 'oprf', key, big, await pool.evaluate(1, big.blinded, { requester: 1 }));
    expect(pool.stats).toMatchObject({ batches: 5, pendingElements: 0, activeRequesters: 0 });
  });

  it('size 0 evaluates inline on the main thread, in chunks, with the same results', async () => {
    const pool = await newPool({ size: 0, chunkElements: 4 });
    const backend = pool.backend;
    const key = backend.generateKeyPair();
    pool.setKey(3, 'voprf', key);
    const b = batch(backend, 'voprf', 9);
    const got = await pool.evaluate(3, b.blinded, { requester: 1, rng: nonce() });
    expect(hex(got.proof!)).toBe(hex(backend.blindEvaluateBatch('voprf', key, b.blinded, nonce()).proof!));
    expectCorrect(backend, 'voprf', key, b, got);
    expect(pool.stats).toMatchObject({ size: 0, threads: 0, inline: true, inlineChunks: 3, chunks: 3, batches: 1 });
    expect(pool.stats.fallback).toBeUndefined();
    expect(await pool.workerEpochs()).toEqual([]);
    expect(pool.epochs).toEqual([3]);
  });

  it('falls back to inline, with a warning, when the workers cannot start', async () => {
    vi.resetModules();
    vi.doMock('../server/blinded/spawn.ts', () => ({
      startWorker: () => {
        const worker = new Worker('throw new Error("this worker cannot load its backend")', { eval: true, stderr: true });
        worker.stderr.resume();
        const ready = new Promise<void>((_, reject) => {
          worker.once('error', reject);
          worker.once('exit', (code) => reject(new Error(`exited with code ${code}`)));
        });
        ready.catch(() => {});
        return { worker, ready };
      },
    }));
    try {
      const { EvaluatorPool: Pool } = await import('../server/blinded/pool.ts');
      const log = captureLogger();
      const pool = new Pool({ size: 2, backend: await loadBackend('sodium'), logger: log.logger, chunkElements: 2 });
      pools.push(pool as unknown as EvaluatorPool);
      await pool.start();
      expect(pool.stats).toMatchObject({ size: 2, threads: 0, inline: true, fallback: expect.stringMatching(/cannot load its backend/) });
      expect(log.lines.find((l) => l.level === 40)?.msg).toBe('evaluator worker threads could not start: evaluating on the main thread');
      const backend = pool.backend;
      const key = backend.generateKeyPair();
      pool.setKey(1, 'oprf', key);
      const b = batch(backend, 'oprf', 5);
      expectCorrect(backend, 'oprf', key, b, await pool.evaluate(1, b.blinded, { requester: 1 }));
      expect(pool.stats.inlineChunks).toBe(3);
    } finally {
      vi.doUnmock('../server/blinded/spawn.ts');
      vi.resetModules();
    }
  });

  it('reads its size from PCD_EVAL_THREADS', async () => {
    expect(evalThreads('3')).toEqual({ threads: 3 });
    expect(evalThreads('0')).toEqual({ threads: 0 });
    expect(evalThreads(undefined).threads).toBeGreaterThanOrEqual(1);
    expect(evalThreads('two')).toMatchObject({ threads: evalThreads(undefined).threads, problem: expect.stringMatching(/PCD_EVAL_THREADS must be an integer >= 0/) });
    expect(evalThreads('-1').problem).toBeDefined();
    const saved = process.env.PCD_EVAL_THREADS;
    process.env.PCD_EVAL_THREADS = '3';
    try {
      expect(new EvaluatorPool({ backend: await loadBackend('sodium') }).size).toBe(3); // not started: no thread
    } finally {
      if (saved === undefined) delete process.env.PCD_EVAL_THREADS;
      else process.env.PCD_EVAL_THREADS = saved;
    }
  });
});

// ---------------------------------------------------------------------------

describe('POST /v1/blinded/evaluate on the pool', () => {
  const jsonAuth = (token: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });
  const body = (epoch: number, elements: Uint8Array[]) => JSON.stringify({ epoch, elements: elements.map((e) => Buffer.from(e).toString('base64')) });
  const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
  async function epochKey(s: TestServer, epoch: number): Promise<KeyPair> {
    const c = await raw(s.server.url + PATHS.blindedConfig, { method: 'GET' });
    const publicKey = fromB64((c.json.epochs as { epoch: number; publicKey: string }[]).find((e) => e.epoch === epoch)!.publicKey);
    return { secretKey: readEpochKeys(s.dataDir).get(epoch)!, publicKey };
  }
  /** The shared server's current epoch and its mode (the tests before may have rotated it). */
  const current = (design: BlindedServerDesign) => ({ epoch: design.epochs.currentNumber, mode: design.epochs.current.params.mode });

  it('answers a full 4096-element batch split over both workers, and concurrent clients in MessagePack, in both modes', async () => {
    const { s, design, pool, backend, token } = await sharedServer();
    for (const mode of ['voprf', 'oprf'] as const) {
      // An epoch in this mode: the server's first is voprf; a rotation makes the next one oprf (grace 0: the voprf one goes).
      const before = current(design);
      if (before.mode !== mode) expect(await s.admin.rotateKey({ mode })).toMatchObject({ epoch: before.epoch + 1, previous: before.epoch });
      const { epoch } = current(design);
      expect(current(design).mode).toBe(mode);
      const since = counting(pool);
      const big = batch(backend, mode, mode === 'voprf' ? LIMITS.maxBatch : 300); // the full batch once: it is the proof that matters
      const small = Array.from({ length: 4 }, (_, i) => batch(backend, mode, 10 + i * 7, i * 40));
      const send = async (b: Batch) => {
        const res = await fetch(s.server.url + PATHS.blindedEvaluate, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/msgpack' },
          body: encodeBody({ epoch, elements: b.blinded }, 'msgpack'),
        });
        expect(res.status).toBe(200);
        return parseReply(EvaluateReply, decodeBody(new Uint8Array(await res.arrayBuffer()), 'msgpack'), 'msgpack');
      };
      const replies = await Promise.all([big, ...small].map(send));
      const key = await epochKey(s, epoch);
      replies.forEach((r, i) => expectCorrect(backend, mode, key, [big, ...small][i]!, r));
      expect(since()).toMatchObject({ batches: 5, inlineChunks: 0, pendingElements: 0 });
      expect(since().chunks).toBeGreaterThanOrEqual(Math.ceil(big.blinded.length / pool.chunkElements));
      expect(since().workerChunks.every((c) => c > 0)).toBe(true);
    }
  });

  it('a bad element is 400 naming its index, checked by the workers', async () => {
    const { s, design, pool, backend, token } = await sharedServer();
    const { epoch, mode } = current(design);
    const since = counting(pool);
    const b = batch(backend, mode, 300);
    const elements = [...b.blinded];
    elements[250] = new Uint8Array(32).fill(0xff); // not canonical
    const r = await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(epoch, elements) });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatchObject({ code: ErrorCode.InvalidElement, message: expect.stringMatching(/^elements\[250\]: .*canonical/) });
    expect(since()).toMatchObject({ batches: 0, pendingElements: 0, openBatches: 0 });
  });

  it('a destroyed epoch\'s key leaves the workers once the design learns of it, and its batches get 410', async () => {
    const { s, design, pool, backend, token } = await sharedServer(); // grace 0
    const { epoch: old, mode } = current(design);
    const one = batch(backend, mode, 2);
    expect((await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(old, one.blinded) })).status).toBe(200);
    expect(await pool.workerEpochs()).toEqual([[old], [old]]);
    expect(await s.admin.rotateKey({})).toMatchObject({ epoch: old + 1, previous: old }); // grace 0: the old epoch is destroyed at once
    expect(pool.epochs).toEqual([]);
    expect(await pool.workerEpochs()).toEqual([[], []]);
    const gone = await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(old, one.blinded) });
    expect(gone.status).toBe(410);
    expect(gone.json.error.code).toBe(ErrorCode.EpochRetired);
    const now = await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(old + 1, one.blinded) });
    expect(now.status).toBe(200);
    expect(await pool.workerEpochs()).toEqual([[old + 1], [old + 1]]);
  });

  it('the design closes its pool', async () => {
    const { s, design, pool } = await takeSharedServer(); // the shared server, used by the tests before (a fresh one when run alone)
    const exited = workersOf(pool).map((w) => new Promise((resolve) => w.once('exit', resolve)));
    expect(exited).toHaveLength(2);
    await s.close();
    servers = servers.filter((x) => x !== s);
    await Promise.all(exited);
    expect(design.evaluator.stats.threads).toBe(0);
  });
});
