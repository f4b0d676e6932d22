/**
 * The evaluator pool (server/evaluator.ts): BlindEvaluate on worker threads
 * gives the same elements as inline evaluation and proofs that verify
 * against the epoch's public key; concurrent batches are all answered;
 * the event loop keeps answering other requests while a large batch is
 * evaluated over HTTP; destroyed epochs' keys leave the workers; a crashed
 * worker fails only its batch and is replaced; the backlog is bounded;
 * close() ends the workers; size 0 and workers that cannot start evaluate inline.
 */
import { Writable } from 'node:stream';
import type { Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import pino from 'pino';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { ErrorCode, isPcdError } from '../shared/errors.ts';
import { decodeBody, encodeBody } from '../shared/codec.ts';
import { EvaluateReply, PATHS } from '../shared/messages.ts';
import { parseReply } from '../shared/schema.ts';
import { blindBatch, blindEvaluateBatch, evaluate, finalizeBatch, generateKeyPair, type KeyPair, type OprfMode } from '../shared/oprf.ts';
import { EvaluatorPool, MAX_QUEUED_PER_WORKER, evalThreads, type EvaluatedBatch } from '../server/evaluator.ts';
import type { BlindedServerDesign } from '../server/designs/blinded.ts';
import { readEpochKeys } from '../server/keys.ts';
import { sampleNumbers } from '../server/seed.ts';
import { raw, startTestServer, testClock, type TestServer } from './helpers.ts';

const HOUR = 3_600_000;
const numbers = sampleNumbers({ count: 300, seed: 'evaluator-test', regions: ['US', 'GB', 'DE'] });

interface Batch {
  inputs: Uint8Array[];
  blinds: Uint8Array[];
  blinded: Uint8Array[];
}

function batch(mode: OprfMode, n: number, offset = 0): Batch {
  const inputs = Array.from({ length: n }, (_, i) => utf8ToBytes(numbers[(offset + i) % numbers.length]!));
  return { inputs, ...blindBatch(mode, inputs) };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** The reply verifies (one proof in voprf mode, against the public key) and finalizes to Evaluate of every input. */
function expectCorrect(mode: OprfMode, key: KeyPair, b: Batch, r: EvaluatedBatch): void {
  expect(r.evaluated).toHaveLength(b.inputs.length);
  if (mode === 'oprf') expect(r.proof).toBeUndefined();
  const out = finalizeBatch(mode, { ...b, evaluated: r.evaluated }, key.publicKey, r.proof);
  out.forEach((o, i) => expect(hex(o), `element ${i}`).toBe(hex(evaluate(mode, key.secretKey, b.inputs[i]!))));
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
  return (pool as unknown as { slots: ({ worker: Worker } | undefined)[] }).slots.flatMap((s) => (s ? [s.worker] : []));
}

let pools: EvaluatorPool[] = [];
async function newPool(...args: ConstructorParameters<typeof EvaluatorPool>): Promise<EvaluatorPool> {
  const p = new EvaluatorPool(...args);
  pools.push(p);
  await p.start();
  return p;
}

let servers: TestServer[] = [];
const savedThreads = process.env.PCD_EVAL_THREADS;
beforeAll(() => {
  process.env.PCD_EVAL_THREADS = '2'; // the servers below run two evaluator workers whatever the machine
});
afterAll(() => {
  if (savedThreads === undefined) delete process.env.PCD_EVAL_THREADS;
  else process.env.PCD_EVAL_THREADS = savedThreads;
});
afterEach(async () => {
  for (const p of pools) await p.close();
  pools = [];
  for (const s of servers) await s.close().catch(() => {});
  servers = [];
});

describe('EvaluatorPool', () => {
  it('gives the elements of inline BlindEvaluate, and proofs that verify against the public key, in both modes', async () => {
    const pool = await newPool({ size: 2 });
    expect(pool.stats).toMatchObject({ size: 2, threads: 2, inline: false });
    for (const mode of ['voprf', 'oprf'] as const) {
      const key = generateKeyPair(mode);
      for (const n of [1, 7, 40]) {
        const b = batch(mode, n);
        const got = await pool.evaluateBatch(mode === 'voprf' ? 1 : 2, mode, key, b.blinded);
        const inline = blindEvaluateBatch(mode, key, b.blinded);
        expect(got.evaluated.map(hex)).toEqual(inline.evaluated.map(hex));
        expectCorrect(mode, key, b, got);
      }
    }
    expect(pool.stats).toMatchObject({ batches: 6, elements: 96, inlineBatches: 0, pendingElements: 0 });
    expect(await pool.workerEpochs()).toEqual([
      [1, 2],
      [1, 2],
    ]);
  });

  it('answers many concurrent batches over two epochs, each correctly', async () => {
    const pool = await newPool({ size: 2 });
    const keys = { 1: generateKeyPair('voprf'), 2: generateKeyPair('voprf') } as const;
    pool.setKey(1, 'voprf', keys[1]);
    pool.setKey(2, 'voprf', keys[2]);
    const jobs = Array.from({ length: 12 }, (_, i) => {
      const epoch = (i % 2) + 1;
      const b = batch('voprf', 1 + ((i * 5) % 23), i * 13);
      return { epoch, b, reply: pool.evaluate(epoch, b.blinded) };
    });
    expect(pool.stats.runningBatches).toBe(2);
    expect(pool.stats.queuedBatches).toBe(10);
    for (const j of jobs) expectCorrect('voprf', keys[j.epoch as 1 | 2], j.b, await j.reply);
    expect(pool.stats).toMatchObject({ batches: 12, pendingElements: 0, queuedBatches: 0, runningBatches: 0 });
  });

  it('dropKey makes every worker forget the key; a batch still queued for it gets 410, the running one completes', async () => {
    const pool = await newPool({ size: 1 });
    const key = generateKeyPair('oprf');
    pool.setKey(7, 'oprf', key);
    expect(await pool.workerEpochs()).toEqual([[7]]);
    const running = batch('oprf', 30);
    const first = pool.evaluate(7, running.blinded);
    const second = pool.evaluate(7, batch('oprf', 3).blinded);
    expect(pool.stats).toMatchObject({ runningBatches: 1, queuedBatches: 1 });
    pool.dropKey(7);
    await expect(second).rejects.toMatchObject({ code: ErrorCode.EpochRetired });
    expectCorrect('oprf', key, running, await first);
    expect(pool.epochs).toEqual([]);
    expect(await pool.workerEpochs()).toEqual([[]]);
    await expect(pool.evaluate(7, running.blinded)).rejects.toMatchObject({ code: ErrorCode.EpochRetired });
  });

  it('treats a key its owner zeroed (as Epochs does when it destroys an epoch) as dropped', async () => {
    const pool = await newPool({ size: 1 });
    const key = generateKeyPair('oprf');
    const mine = { secretKey: key.secretKey.slice(), publicKey: key.publicKey };
    pool.setKey(4, 'oprf', mine);
    const running = batch('oprf', 20);
    const first = pool.evaluate(4, running.blinded);
    const second = pool.evaluate(4, batch('oprf', 2).blinded);
    mine.secretKey.fill(0);
    expectCorrect('oprf', key, running, await first); // its worker had the key when it started
    await expect(second).rejects.toMatchObject({ code: ErrorCode.EpochRetired });
    expect(pool.epochs).toEqual([]);
    expect(await pool.workerEpochs()).toEqual([[]]);
  });

  it('bounds the backlog with 503 unavailable, but always admits a batch into an empty pool', async () => {
    expect(new EvaluatorPool({ size: 3 }).maxQueuedElements).toBe(3 * MAX_QUEUED_PER_WORKER);
    const pool = await newPool({ size: 1, maxQueuedElements: 100 });
    const key = generateKeyPair('oprf');
    pool.setKey(1, 'oprf', key);
    const b60 = batch('oprf', 60);
    const b40 = batch('oprf', 40, 60);
    const first = pool.evaluate(1, b60.blinded);
    const over = pool.evaluate(1, batch('oprf', 50).blinded);
    await expect(over).rejects.toMatchObject({
      code: ErrorCode.Unavailable,
      message: expect.stringMatching(/busy: 60 blinded elements are queued or being evaluated \(at most 100 on 1 thread\): retry/),
    });
    const fits = pool.evaluate(1, b40.blinded); // 60 + 40 = 100: at the bound, admitted
    expectCorrect('oprf', key, b60, await first);
    expectCorrect('oprf', key, b40, await fits);
    const b150 = batch('oprf', 150);
    expectCorrect('oprf', key, b150, await pool.evaluate(1, b150.blinded));
    expect(pool.stats).toMatchObject({ rejected: 1, batches: 3 });
  });

  it('a crashed worker fails its batch with 500 internal (no secret in it), is replaced and gets the keys again', async () => {
    const log = captureLogger();
    const pool = await newPool({ size: 2, logger: log.logger });
    const key = generateKeyPair('voprf');
    pool.setKey(1, 'voprf', key);
    const big = pool.evaluate(1, batch('voprf', 300).blinded).then(
      () => undefined,
      (e: unknown) => e,
    );
    const small = batch('voprf', 5, 300);
    const other = pool.evaluate(1, small.blinded); // the second, idle worker takes it
    expect(pool.stats.runningBatches).toBe(2);
    await pool.crashWorker(0);
    const err = await big;
    expect(isPcdError(err, ErrorCode.Internal)).toBe(true);
    expect((err as Error).message).toMatch(/evaluator worker stopped while evaluating this batch/);
    expect((err as Error).message).not.toContain(hex(key.secretKey));
    expectCorrect('voprf', key, small, await other);

    await vi.waitFor(() => expect(pool.stats.threads).toBe(2), { timeout: 20_000, interval: 20 });
    expect(pool.stats).toMatchObject({ crashes: 1, inline: false });
    expect(await pool.workerEpochs()).toEqual([[1], [1]]);
    const again = batch('voprf', 4);
    expectCorrect('voprf', key, again, await pool.evaluate(1, again.blinded));
    expect(log.lines.some((l) => l.level === 50 && l.msg === 'evaluator worker stopped: replacing it')).toBe(true);
    expect(log.text()).not.toContain(hex(key.secretKey));
  });

  it('close() fails running and queued batches with 503 and terminates every worker', async () => {
    const pool = await newPool({ size: 2 });
    pool.setKey(1, 'oprf', generateKeyPair('oprf'));
    const workers = workersOf(pool);
    expect(workers).toHaveLength(2);
    const exited = workers.map((w) => new Promise<number>((resolve) => w.once('exit', resolve)));
    const jobs = [200, 200, 10].map((n) =>
      pool.evaluate(1, batch('oprf', n).blinded).then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    expect(pool.stats).toMatchObject({ runningBatches: 2, queuedBatches: 1 });
    await pool.close();
    for (const j of jobs) expect(await j).toMatchObject({ code: ErrorCode.Unavailable, message: expect.stringMatching(/shutting down/) });
    await Promise.all(exited);
    expect(pool.stats).toMatchObject({ threads: 0, runningBatches: 0, queuedBatches: 0, pendingElements: 0 });
    expect(pool.epochs).toEqual([]);
    await expect(pool.evaluate(1, batch('oprf', 1).blinded)).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await pool.close(); // idempotent
  });

  it('size 0 evaluates inline on the main thread', async () => {
    const pool = await newPool({ size: 0 });
    const key = generateKeyPair('voprf');
    const b = batch('voprf', 9);
    const got = await pool.evaluateBatch(3, 'voprf', key, b.blinded);
    expect(got.evaluated.map(hex)).toEqual(blindEvaluateBatch('voprf', key, b.blinded).evaluated.map(hex));
    expectCorrect('voprf', key, b, got);
    expect(pool.stats).toMatchObject({ size: 0, threads: 0, inline: true, inlineBatches: 1, batches: 1 });
    expect(pool.stats.fallback).toBeUndefined();
    expect(await pool.workerEpochs()).toEqual([]);
    expect(pool.epochs).toEqual([3]);
  });

  it('falls back to inline, with a warning, when the workers cannot load the suite', async () => {
    vi.resetModules();
    vi.doMock('../server/workers.ts', async (importOriginal) => {
      const real = await importOriginal<typeof import('../server/workers.ts')>();
      return { ...real, oprfWorkerData: (parentUrl: string) => ({ ...real.oprfWorkerData(parentUrl)!, tsxApi: 'file:///nonexistent/tsx-api.mjs' }) };
    });
    try {
      const { EvaluatorPool: Pool } = await import('../server/evaluator.ts');
      const log = captureLogger();
      const pool = new Pool({ size: 2, logger: log.logger });
      pools.push(pool as unknown as EvaluatorPool);
      await pool.start();
      expect(pool.stats).toMatchObject({ size: 2, threads: 0, inline: true, fallback: expect.stringMatching(/nonexistent|Cannot find/) });
      const warn = log.lines.find((l) => l.level === 40);
      expect(warn?.msg).toBe('evaluator worker threads could not start: evaluating on the main thread');
      const key = generateKeyPair('oprf');
      const b = batch('oprf', 5);
      expectCorrect('oprf', key, b, await pool.evaluateBatch(1, 'oprf', key, b.blinded));
    } finally {
      vi.doUnmock('../server/workers.ts');
      vi.resetModules();
    }
  });

  it('reads its size from PCD_EVAL_THREADS', () => {
    expect(evalThreads('3')).toEqual({ threads: 3 });
    expect(evalThreads('0')).toEqual({ threads: 0 });
    expect(evalThreads(undefined).threads).toBeGreaterThanOrEqual(1);
    expect(evalThreads('two')).toMatchObject({ threads: evalThreads(undefined).threads, problem: expect.stringMatching(/PCD_EVAL_THREADS must be an integer >= 0/) });
    expect(evalThreads('-1').problem).toBeDefined();
    expect(new EvaluatorPool().size).toBe(2); // this file sets PCD_EVAL_THREADS=2
  });
});

// ---------------------------------------------------------------------------

describe('POST /v1/blinded/evaluate on the pool', () => {
  async function start(options: Parameters<typeof startTestServer>[0] = {}) {
    const s = await startTestServer({ designs: ['plain', 'blinded'], evalThreads: 2, ...options });
    servers.push(s);
    const design = s.server.designs.find((d) => d.name === 'blinded') as BlindedServerDesign;
    await design.evaluator.start();
    const { token } = await s.admin.createAccount({ email: 'a@example.org', numbers: [numbers[0]!], capabilities: ['messages'] });
    return { s, design, pool: design.evaluator, token };
  }

  const jsonAuth = (token: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });
  const body = (epoch: number, elements: Uint8Array[]) => JSON.stringify({ epoch, elements: elements.map((e) => Buffer.from(e).toString('base64')) });
  const fromB64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
  async function publicKey(s: TestServer, epoch: number): Promise<Uint8Array> {
    const c = await raw(s.server.url + PATHS.blindedConfig, { method: 'GET' });
    return fromB64((c.json.epochs as { epoch: number; publicKey: string }[]).find((e) => e.epoch === epoch)!.publicKey);
  }

  it('keeps answering health, plain lookups and bucket fetches while a 300-element batch is evaluated', async () => {
    const { s, pool, token } = await start();
    expect(pool.stats).toMatchObject({ threads: 2, inline: false });
    const b = batch('voprf', 300);
    const done: string[] = [];
    const evaluation = raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(1, b.blinded) }).then((r) => {
      done.push('evaluate');
      return r;
    });
    await vi.waitFor(() => expect(pool.stats.runningBatches).toBe(1), { timeout: 20_000, interval: 2 });
    const health = await raw(s.server.url + PATHS.health, { method: 'GET' });
    done.push('health');
    const lookup = await raw(s.server.url + PATHS.plainLookup, { headers: jsonAuth(token), body: JSON.stringify({ numbers: [numbers[0]] }) });
    done.push('plain');
    const bucket = await raw(s.server.url + PATHS.blindedBucket(1, 0), { method: 'GET' });
    done.push('bucket');
    expect([health.status, lookup.status, bucket.status]).toEqual([200, 200, 200]);
    expect(lookup.json.results[0].capabilities).toEqual(['messages']);
    const r = await evaluation;
    expect(done).toEqual(['health', 'plain', 'bucket', 'evaluate']);
    expect(r.status).toBe(200);
    const sk = readEpochKeys(s.dataDir).get(1)!;
    expectCorrect('voprf', { secretKey: sk, publicKey: await publicKey(s, 1) }, b, {
      evaluated: (r.json.evaluated as string[]).map(fromB64),
      proof: fromB64(r.json.proof as string),
    });
    expect(pool.stats).toMatchObject({ batches: 1, elements: 300, inlineBatches: 0 });
  });

  it('checks every element on the main thread first: a bad one is 400 naming its index and nothing reaches the pool', async () => {
    const { s, pool, token } = await start();
    const b = batch('voprf', 300);
    const elements = [...b.blinded];
    elements[150] = new Uint8Array(32).fill(0xff); // not canonical
    const r = await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(1, elements) });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe(ErrorCode.InvalidElement);
    expect(r.json.error.message).toMatch(/^elements\[150\] /);
    expect(pool.stats).toMatchObject({ batches: 0, pendingElements: 0 });
    expect(pool.epochs).toEqual([]); // not even the key was sent
  });

  it('a destroyed epoch key leaves the workers, without any request, and its batches get 410', async () => {
    const clock = testClock();
    const { s, pool, token } = await start({ now: clock.now, graceMs: HOUR });
    const one = batch('voprf', 2);
    expect((await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(1, one.blinded) })).status).toBe(200);
    expect(await pool.workerEpochs()).toEqual([[1], [1]]);
    expect(await s.admin.rotateKey({})).toMatchObject({ epoch: 2, previous: 1 });
    expect((await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(2, one.blinded) })).status).toBe(200);
    expect(pool.epochs).toEqual([1, 2]);
    expect(await pool.workerEpochs()).toEqual([
      [1, 2],
      [1, 2],
    ]);

    clock.advance(HOUR + 1);
    // The design's key sync (every second, on the injected clock) retires epoch 1 and drops its key.
    await vi.waitFor(() => expect(pool.epochs).toEqual([2]), { timeout: 5000, interval: 50 });
    expect(await pool.workerEpochs()).toEqual([[2], [2]]);
    const gone = await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: body(1, one.blinded) });
    expect(gone.status).toBe(410);
    expect(gone.json.error.code).toBe(ErrorCode.EpochRetired);
  });

  it('answers concurrent clients correctly (MessagePack, both modes), and the design closes its pool', async () => {
    for (const mode of ['voprf', 'oprf'] as const) {
      const { s, design, pool, token } = await start({ mode });
      const batches = Array.from({ length: 6 }, (_, i) => batch(mode, 10 + i * 7, i * 40));
      const replies = await Promise.all(
        batches.map(async (b) => {
          const res = await fetch(s.server.url + PATHS.blindedEvaluate, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'content-type': 'application/msgpack' },
            body: encodeBody({ epoch: 1, elements: b.blinded }, 'msgpack'),
          });
          expect(res.status).toBe(200);
          return parseReply(EvaluateReply, decodeBody(new Uint8Array(await res.arrayBuffer()), 'msgpack'), 'msgpack');
        }),
      );
      const key = { secretKey: readEpochKeys(s.dataDir).get(1)!, publicKey: await publicKey(s, 1) };
      replies.forEach((r, i) => expectCorrect(mode, key, batches[i]!, r));
      expect(pool.stats).toMatchObject({ batches: 6, inlineBatches: 0 });
      if (mode === 'oprf') await closesItsPool(s, design, pool);
    }
  });

  async function closesItsPool(s: TestServer, design: BlindedServerDesign, pool: EvaluatorPool): Promise<void> {
    const exited = workersOf(pool).map((w) => new Promise((resolve) => w.once('exit', resolve)));
    expect(exited).toHaveLength(2);
    await s.close();
    servers = servers.filter((x) => x !== s);
    await Promise.all(exited);
    expect(design.evaluator.stats.threads).toBe(0);
  }
});
