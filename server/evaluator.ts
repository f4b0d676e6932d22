/**
 * The evaluator pool: RFC 9497 BlindEvaluate for `POST /v1/blinded/evaluate`
 * on persistent worker threads, so a large batch (4096 elements: ~13-20 s of
 * VOPRF on one core) neither blocks the event loop (health, plain and hashed
 * lookups, bucket fetches keep being answered) nor leaves the other cores idle.
 *
 * ## Threads
 *
 * `size` workers: the constructor option, else `PCD_EVAL_THREADS` (an
 * integer >= 0), else `os.availableParallelism()`. 0 means inline: every
 * batch is evaluated on the main thread, synchronously, as before the pool
 * existed. Each worker loads shared/oprf.ts through tsx (server/workers.ts),
 * the project's only binding of the suite, exactly as the epoch build
 * workers do. Workers are started by {@link EvaluatorPool.start} (the blinded
 * design calls it at start, in the background; it takes ~0.5 s of CPU per
 * worker). A batch that arrives before they are ready runs inline if it is
 * small ({@link WARMUP_INLINE_MAX_ELEMENTS}), else waits for them. If they
 * cannot start (no tsx, a load error), the pool logs a warning and evaluates inline.
 *
 * ## Keys
 *
 * An epoch's key pair is sent to every worker once, in memory (postMessage of
 * a fresh copy whose buffer is transferred, never workerData, never a file),
 * by {@link EvaluatorPool.setKey} (or lazily by evaluateBatch); a request then
 * carries only the epoch id and the elements. {@link EvaluatorPool.dropKey}
 * (the design calls it when an epoch is destroyed) makes every worker zero
 * its copy and forget it; {@link EvaluatorPool.workerEpochs} asks the workers
 * which keys they hold. A worker started later (a replacement) gets the
 * registered keys when it is ready.
 *
 * ## Scheduling
 *
 * One FIFO queue on the main thread; a worker takes the next batch as soon
 * as it is idle (one batch per worker at a time), so each batch goes to the
 * least-busy worker and never waits behind a long one on a busy worker while
 * another is free. A batch is not split: in VOPRF mode its one DLEQ proof
 * covers all its elements (RFC 9497 §2.2.1). Elements travel packed in one
 * ArrayBuffer, transferred both ways (no per-element structured clone).
 *
 * Backlog bound: at most {@link MAX_QUEUED_PER_WORKER} elements (2 x
 * LIMITS.maxBatch = 8192) per worker, queued or being evaluated. A request
 * that would exceed it gets 503 `unavailable` (retry later) instead of
 * waiting; a request always gets in when nothing is queued. The bound keeps
 * the wait of an admitted request under the client's default 60 s timeout:
 * with least-busy dispatch a worker has at most ~8192 elements ahead of and
 * including a new batch, 8192 x 4.7 ms (the slowest VOPRF cost per element
 * measured) = 39 s.
 *
 * Small batches are not evaluated inline once the workers run
 * ({@link INLINE_MAX_ELEMENTS} = 0): measured, the worker round trip adds
 * 0.2-0.9 ms to a batch that costs >= 2 ms (OPRF) or ~13 ms (VOPRF) even
 * with one element (numbers there), while inline evaluation would block
 * every other request for that time and compete with the workers for a
 * core. The option exists for benchmarks.
 *
 * ## Failures
 *
 * A worker that dies (crash, out of memory, terminated) fails the batch it
 * was evaluating with 500 `internal` (a fixed message: nothing from the
 * worker, no key material) and is replaced; the batches still queued run on
 * the other workers or the replacement. A replacement that cannot start is
 * logged; with no worker left the pool falls back to inline evaluation.
 * `close()` fails queued and running batches with 503 and terminates the workers.
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import pino, { type Logger } from 'pino';
import { ErrorCode, PcdError, isErrorCode } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { ELEMENT_BYTES, PROOF_BYTES, blindEvaluateBatch, type KeyPair, type OprfMode } from '../shared/oprf.ts';
import { IMPORT_OPRF_JS, oprfWorkerData, type OprfWorkerData } from './workers.ts';

/** Environment variable with the number of evaluator threads (0: inline on the main thread). */
export const EVAL_THREADS_ENV = 'PCD_EVAL_THREADS';
/** Elements (queued or being evaluated) per worker above which a request gets 503: 2 x the largest batch. */
export const MAX_QUEUED_PER_WORKER = 2 * LIMITS.maxBatch;
/**
 * Batches of at most this many elements are evaluated on the main thread even
 * when workers run. 0: none. Measured on a 2-core VM (noble, warm JIT, medians
 * of interleaved runs), one batch inline vs through an idle worker: VOPRF
 * 1 element 12.9 vs 13.5 ms, 100 elements 335 vs 314 ms (equal within
 * noise); OPRF 1 element 1.8 vs 2.0 ms. The round trip (0.2-0.9 ms) is at
 * most ~10% of even a 1-element batch: not worth blocking the event loop for.
 */
export const INLINE_MAX_ELEMENTS = 0;
/**
 * While the workers start (~0.5 s, loading tsx and the suite), batches of at
 * most this many elements (~0.2 s of VOPRF) are evaluated inline rather than
 * wait for them; larger ones wait.
 */
export const WARMUP_INLINE_MAX_ELEMENTS = 64;

export interface EvaluatorOptions {
  /** Worker threads; default {@link evalThreads}. 0: inline. */
  size?: number;
  /** Backlog bound in elements; default size x {@link MAX_QUEUED_PER_WORKER}. */
  maxQueuedElements?: number;
  /** Batches of at most this many elements run inline; default {@link INLINE_MAX_ELEMENTS}. */
  inlineMaxElements?: number;
  logger?: Logger;
}

/** The result of one batch: what the evaluate reply carries. */
export interface EvaluatedBatch {
  evaluated: Uint8Array[];
  proof?: Uint8Array;
}

/** Counters for tests, benchmarks and the operator. */
export interface EvaluatorStats {
  /** Configured workers (0: inline by configuration). */
  size: number;
  /** Workers running now (ready). */
  threads: number;
  /** True when batches are evaluated on the main thread (size 0, or workers could not start). */
  inline: boolean;
  /** Why the pool fell back to inline, if it did. */
  fallback?: string;
  /** Elements queued or being evaluated on workers. */
  pendingElements: number;
  queuedBatches: number;
  runningBatches: number;
  /** Batches and elements evaluated (workers and inline). */
  batches: number;
  elements: number;
  /** Batches evaluated on the main thread. */
  inlineBatches: number;
  /** Requests turned away with 503 because the backlog was full. */
  rejected: number;
  /** Workers that died while running and were replaced. */
  crashes: number;
}

/**
 * Evaluator threads from `PCD_EVAL_THREADS` (an integer >= 0), else one per
 * core. A value that is not such an integer is reported in `problem` and ignored.
 */
export function evalThreads(env: string | undefined = process.env[EVAL_THREADS_ENV]): { threads: number; problem?: string } {
  const cores = Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  if (env === undefined || env.trim() === '') return { threads: cores };
  const n = Number(env);
  if (Number.isInteger(n) && n >= 0) return { threads: n };
  return { threads: cores, problem: `${EVAL_THREADS_ENV} must be an integer >= 0 (0: evaluate on the main thread), got '${env.slice(0, 40)}'` };
}

/**
 * Code of an evaluator worker (plain JS, `eval: true`). Messages in:
 * `key` (epoch, mode, secretKey, publicKey), `drop` (epoch), `epochs` (id),
 * `eval` (id, epoch, elements packed n x 32). Out: `ready` or `failed` once,
 * then `done` (id, out = evaluated n x 32 [|| proof 64]), `error` (id, code,
 * message) and `epochs` (id, epochs). Secret keys live in `keys` only.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const keys = new Map();
${IMPORT_OPRF_JS}
  .then((oprf) => {
    const E = oprf.ELEMENT_BYTES;
    const P = oprf.PROOF_BYTES;
    const forget = (epoch) => {
      const k = keys.get(epoch);
      if (k) k.key.secretKey.fill(0);
      keys.delete(epoch);
    };
    parentPort.on('message', (m) => {
      if (m.t === 'key') {
        forget(m.epoch);
        keys.set(m.epoch, { mode: m.mode, key: { secretKey: m.secretKey, publicKey: m.publicKey } });
      } else if (m.t === 'drop') {
        forget(m.epoch);
      } else if (m.t === 'epochs') {
        parentPort.postMessage({ t: 'epochs', id: m.id, epochs: [...keys.keys()] });
      } else if (m.t === 'eval') {
        try {
          const k = keys.get(m.epoch);
          if (!k) throw new Error('no key for epoch ' + m.epoch);
          const n = m.elements.length / E;
          const blinded = [];
          for (let i = 0; i < n; i++) blinded.push(m.elements.subarray(i * E, (i + 1) * E));
          const r = oprf.blindEvaluateBatch(k.mode, k.key, blinded);
          const out = new Uint8Array(n * E + (r.proof ? P : 0));
          for (let i = 0; i < n; i++) out.set(r.evaluated[i], i * E);
          if (r.proof) out.set(r.proof, n * E);
          parentPort.postMessage({ t: 'done', id: m.id, out }, [out.buffer]);
        } catch (e) {
          parentPort.postMessage({ t: 'error', id: m.id, code: e && e.code, message: String((e && e.message) || e) });
        }
      }
    });
    parentPort.postMessage({ t: 'ready' });
  }, (e) => parentPort.postMessage({ t: 'failed', error: String((e && e.stack) || e) }));
`;

type FromWorker =
  | { t: 'ready' }
  | { t: 'failed'; error: string }
  | { t: 'done'; id: number; out: Uint8Array }
  | { t: 'error'; id: number; code?: unknown; message: string }
  | { t: 'epochs'; id: number; epochs: number[] };

interface Job {
  readonly id: number;
  readonly epoch: number;
  readonly mode: OprfMode;
  readonly n: number;
  /** The elements, packed; transferred to the worker at dispatch. */
  readonly packed: Uint8Array<ArrayBuffer>;
  resolve(r: EvaluatedBatch): void;
  reject(e: unknown): void;
}

interface Slot {
  readonly index: number;
  readonly worker: Worker;
  state: 'starting' | 'ready' | 'dead';
  /** Settles when the worker is ready (resolves) or dies first (rejects with the reason). */
  readonly started: Promise<void>;
  job?: Job;
  /** Pending `epochs` queries. */
  readonly queries: Map<number, (epochs: number[] | undefined) => void>;
  /** Message of an uncaught error in the worker, for the log. */
  lastError?: string;
}

interface RegisteredKey {
  mode: OprfMode;
  key: KeyPair;
}

const SHUTTING_DOWN = 'the server is shutting down: the batch was not evaluated';

export class EvaluatorPool {
  /** Configured workers (0: inline). */
  readonly size: number;
  readonly maxQueuedElements: number;
  readonly inlineMaxElements: number;
  private readonly logger: Logger;
  private readonly keys = new Map<number, RegisteredKey>();
  private readonly slots: (Slot | undefined)[] = [];
  private readonly queue: Job[] = [];
  private loader: OprfWorkerData | null = null;
  private starting: Promise<void> | undefined;
  /** True once start() has settled: workers ready, or inline. */
  private started = false;
  private inline: boolean;
  private fallback: string | undefined;
  private closed = false;
  private nextId = 1;
  private pending = 0;
  private readonly counters = { batches: 0, elements: 0, inlineBatches: 0, rejected: 0, crashes: 0 };

  constructor(options: EvaluatorOptions = {}) {
    this.logger = options.logger ?? pino({ level: 'silent' });
    let size = options.size;
    if (size === undefined) {
      const fromEnv = evalThreads();
      if (fromEnv.problem) this.logger.warn({ threads: fromEnv.threads }, `${fromEnv.problem}: using one evaluator thread per core`);
      size = fromEnv.threads;
    }
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`evaluator pool size must be an integer >= 0, got ${size}`);
    this.size = size;
    this.inline = size === 0;
    this.maxQueuedElements = options.maxQueuedElements ?? Math.max(1, size) * MAX_QUEUED_PER_WORKER;
    this.inlineMaxElements = options.inlineMaxElements ?? INLINE_MAX_ELEMENTS;
  }

  /**
   * Starts the workers (idempotent) and resolves once they are ready, or once
   * the pool has fallen back to inline evaluation (logged). Never rejects.
   */
  start(): Promise<void> {
    return (this.starting ??= this.startWorkers().finally(() => (this.started = true)));
  }

  private async startWorkers(): Promise<void> {
    if (this.inline || this.closed) return;
    const t0 = performance.now();
    this.loader = oprfWorkerData(import.meta.url);
    if (!this.loader) return this.fallBack('tsx is not installed');
    const slots = Array.from({ length: this.size }, (_, i) => this.spawn(i));
    const results = await Promise.allSettled(slots.map((s) => s.started));
    if (this.closed) return;
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(slots.map((s) => this.kill(s)));
      return this.fallBack(failed.reason instanceof Error ? failed.reason.message : String(failed.reason));
    }
    this.logger.info({ threads: this.size, ms: Math.round(performance.now() - t0) }, 'evaluator worker threads started');
    this.pump();
  }

  private fallBack(reason: string): void {
    this.inline = true;
    this.fallback = reason.split('\n', 1)[0]!;
    this.logger.warn({ reason: this.fallback, threads: this.size }, 'evaluator worker threads could not start: evaluating on the main thread');
    // Batches already queued (a replacement failed while they waited) run inline now.
    for (const job of this.queue.splice(0)) this.runInline(job);
  }

  private spawn(index: number): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: this.loader!, stdout: true, stderr: true });
    worker.stdout.resume();
    worker.stderr.resume();
    worker.unref(); // an idle pool never keeps the process alive (a busy worker does: see pump); close() ends it
    let settle!: { resolve: () => void; reject: (e: Error) => void };
    const started = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    started.catch(() => {}); // observed by start() or replace()
    const slot: Slot = { index, worker, state: 'starting', started, queries: new Map() };
    this.slots[index] = slot;

    worker.on('message', (m: FromWorker) => {
      switch (m.t) {
        case 'ready':
          if (slot.state !== 'starting') return;
          slot.state = 'ready';
          for (const [epoch, k] of this.keys) this.sendKey(slot, epoch, k);
          settle.resolve();
          this.pump();
          return;
        case 'failed':
          slot.lastError = m.error;
          void worker.terminate();
          return;
        case 'done':
          return this.settleJob(slot, m.id, (job) => job.resolve(unpack(m.out, job.n, job.mode)));
        case 'error':
          return this.settleJob(slot, m.id, (job) => job.reject(this.workerError(slot, m.code, m.message)));
        case 'epochs': {
          const q = slot.queries.get(m.id);
          slot.queries.delete(m.id);
          q?.(m.epochs);
          return;
        }
      }
    });
    worker.on('error', (e) => (slot.lastError = e.message));
    worker.on('exit', (code) => {
      const was = slot.state;
      slot.state = 'dead';
      for (const q of slot.queries.values()) q(undefined);
      slot.queries.clear();
      // A no-op once ready; otherwise (a load failure, or killed while starting) start() learns why.
      settle.reject(new Error(slot.lastError ?? `evaluator worker exited with code ${code} before it was ready`));
      if (was === 'ready') this.onCrash(slot, code);
    });
    return slot;
  }

  private settleJob(slot: Slot, id: number, fn: (job: Job) => void): void {
    const job = slot.job;
    if (!job || job.id !== id) return;
    slot.job = undefined;
    slot.worker.unref();
    this.pending -= job.n;
    fn(job);
    this.pump();
  }

  /** A PcdError the worker threw (from shared/oprf.ts) keeps its code; anything else is 500 with a fixed message. */
  private workerError(slot: Slot, code: unknown, message: string): PcdError {
    if (isErrorCode(code) && code !== ErrorCode.Internal) return new PcdError(code, message);
    this.logger.error({ worker: slot.index, err: message.slice(0, 200) }, 'evaluator worker failed to evaluate a batch');
    return new PcdError(ErrorCode.Internal, 'the evaluator failed on this batch; nothing was returned');
  }

  private onCrash(slot: Slot, code: number): void {
    if (this.closed) return;
    this.counters.crashes++;
    const job = slot.job;
    slot.job = undefined;
    if (job) {
      this.pending -= job.n;
      job.reject(new PcdError(ErrorCode.Internal, 'an evaluator worker stopped while evaluating this batch (it is being replaced); nothing was returned: retry'));
    }
    this.logger.error({ worker: slot.index, exitCode: code, err: slot.lastError?.split('\n', 1)[0] }, 'evaluator worker stopped: replacing it');
    void this.replace(slot.index);
  }

  private async replace(index: number): Promise<void> {
    if (this.closed || this.inline) return;
    const slot = this.spawn(index);
    try {
      await slot.started;
    } catch (e) {
      if (this.closed) return;
      this.slots[index] = undefined;
      this.logger.error({ worker: index, err: (e as Error).message.split('\n', 1)[0] }, 'a replacement evaluator worker could not start');
      if (!this.slots.some((s) => s && s.state !== 'dead')) this.fallBack(`no evaluator worker left: ${(e as Error).message}`);
    }
  }

  private async kill(slot: Slot): Promise<void> {
    slot.state = 'dead';
    await slot.worker.terminate();
  }

  // ------------------------------------------------------------------ keys

  /** Registers an epoch's key with every worker (now, or when a worker becomes ready). */
  setKey(epoch: number, mode: OprfMode, key: KeyPair): void {
    if (this.closed) return;
    const k: RegisteredKey = { mode, key };
    this.keys.set(epoch, k);
    for (const slot of this.slots) if (slot?.state === 'ready') this.sendKey(slot, epoch, k);
  }

  private sendKey(slot: Slot, epoch: number, { mode, key }: RegisteredKey): void {
    // Fresh exact-size copies: a view's whole underlying buffer would be cloned otherwise.
    const secretKey = Uint8Array.from(key.secretKey);
    const publicKey = Uint8Array.from(key.publicKey);
    slot.worker.postMessage({ t: 'key', epoch, mode, secretKey, publicKey }, [secretKey.buffer, publicKey.buffer]);
  }

  /**
   * Forgets an epoch's key here and makes every worker zero and forget its
   * copy. Queued batches of the epoch fail with 410. (A key its owner zeroes
   * is dropped the same way at the next dispatch.)
   */
  dropKey(epoch: number): void {
    if (!this.keys.delete(epoch)) return;
    for (const slot of this.slots) if (slot?.state === 'ready') slot.worker.postMessage({ t: 'drop', epoch });
  }

  /**
   * The registered key of `epoch`, unless it was dropped or its owner zeroed
   * it (Epochs zeroes a key when it destroys its epoch; a zero scalar is
   * never a valid key), in which case it is dropped now, workers included.
   */
  private liveKey(epoch: number): RegisteredKey | undefined {
    const k = this.keys.get(epoch);
    if (k && k.key.secretKey.every((b) => b === 0)) {
      this.dropKey(epoch);
      return undefined;
    }
    return k;
  }

  /** Epochs whose keys the pool holds, ascending. */
  get epochs(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  /** Epochs whose keys each running worker holds (asked of the workers themselves), ascending. */
  async workerEpochs(): Promise<number[][]> {
    const ready = this.slots.filter((s): s is Slot => s?.state === 'ready');
    const lists = await Promise.all(
      ready.map(
        (slot) =>
          new Promise<number[] | undefined>((resolve) => {
            const id = this.nextId++;
            slot.queries.set(id, resolve);
            slot.worker.postMessage({ t: 'epochs', id });
          }),
      ),
    );
    return lists.filter((l): l is number[] => l !== undefined).map((l) => l.sort((a, b) => a - b));
  }

  // ------------------------------------------------------------------ evaluation

  /** Throws 503 `unavailable` when `n` more elements would overfill the backlog. */
  checkCapacity(n: number): void {
    if (this.closed) throw new PcdError(ErrorCode.Unavailable, SHUTTING_DOWN);
    if (this.inline || this.pending === 0 || this.pending + n <= this.maxQueuedElements) return;
    this.counters.rejected++;
    throw new PcdError(
      ErrorCode.Unavailable,
      `the evaluators are busy: ${this.pending} blinded elements are queued or being evaluated ` +
        `(at most ${this.maxQueuedElements} on ${this.size} thread${this.size === 1 ? '' : 's'}): retry in a few seconds`,
    );
  }

  /**
   * RFC 9497 BlindEvaluate of one batch under `epoch`'s key (registered
   * first if the pool does not hold it yet): evaluated elements in order and,
   * in VOPRF mode, the batch's one proof. The elements must already be
   * validated (32-byte canonical non-identity encodings): this only checks
   * lengths. Rejects with 503 when the backlog is full or the pool closing,
   * 410 when the epoch's key was dropped while the batch waited, 500 when its worker died.
   */
  async evaluateBatch(epoch: number, mode: OprfMode, key: KeyPair, elements: readonly Uint8Array[]): Promise<EvaluatedBatch> {
    if (elements.length === 0) throw new PcdError(ErrorCode.BadRequest, 'the batch holds no blinded element');
    const known = this.keys.get(epoch);
    if (!known || known.mode !== mode || !sameKey(known.key, key)) this.setKey(epoch, mode, key);
    return this.evaluate(epoch, elements);
  }

  /**
   * Like {@link evaluateBatch} with a key registered by {@link setKey}. Once
   * the pool has started, the batch is queued before this returns, so
   * batches are served in call order.
   */
  evaluate(epoch: number, elements: readonly Uint8Array[]): Promise<EvaluatedBatch> {
    try {
      if (elements.length === 0) throw new PcdError(ErrorCode.BadRequest, 'the batch holds no blinded element');
      this.checkCapacity(elements.length);
      if (this.started) return this.dispatch(epoch, elements);
      // Workers still starting (~0.5 s after boot): a small batch runs now rather than wait for them.
      const starting = this.start();
      if (elements.length <= WARMUP_INLINE_MAX_ELEMENTS && !this.closed) return this.dispatch(epoch, elements, true);
      return starting.then(() => this.dispatch(epoch, elements));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private dispatch(epoch: number, elements: readonly Uint8Array[], inline = false): Promise<EvaluatedBatch> {
    const n = elements.length;
    if (this.closed) throw new PcdError(ErrorCode.Unavailable, SHUTTING_DOWN);
    const k = this.liveKey(epoch);
    if (!k) throw retired(epoch);
    if (inline || this.inline || n <= this.inlineMaxElements) {
      this.counters.inlineBatches++;
      return Promise.resolve(this.count(n, blindEvaluateBatch(k.mode, k.key, elements)));
    }
    this.checkCapacity(n);
    const packed = new Uint8Array(n * ELEMENT_BYTES);
    elements.forEach((el, i) => {
      if (el.length !== ELEMENT_BYTES) throw new PcdError(ErrorCode.InvalidElement, `elements[${i}] is not ${ELEMENT_BYTES} bytes`);
      packed.set(el, i * ELEMENT_BYTES);
    });
    return new Promise<EvaluatedBatch>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, epoch, mode: k.mode, n, packed, resolve: (r) => resolve(this.count(n, r)), reject });
      this.pending += n;
      this.pump();
    });
  }

  private count(n: number, r: EvaluatedBatch): EvaluatedBatch {
    this.counters.batches++;
    this.counters.elements += n;
    return r;
  }

  private runInline(job: Job): void {
    this.pending -= job.n;
    const k = this.liveKey(job.epoch);
    if (!k) return job.reject(retired(job.epoch));
    try {
      this.counters.inlineBatches++;
      const elements = Array.from({ length: job.n }, (_, i) => job.packed.subarray(i * ELEMENT_BYTES, (i + 1) * ELEMENT_BYTES));
      job.resolve(blindEvaluateBatch(k.mode, k.key, elements));
    } catch (e) {
      job.reject(e);
    }
  }

  /** Hands queued batches to idle workers, oldest first. */
  private pump(): void {
    if (this.closed) return;
    while (this.queue.length > 0) {
      const slot = this.slots.find((s): s is Slot => s?.state === 'ready' && s.job === undefined);
      if (!slot) return;
      const job = this.queue.shift()!;
      if (!this.liveKey(job.epoch)) {
        this.pending -= job.n;
        job.reject(retired(job.epoch));
        continue;
      }
      slot.job = job;
      slot.worker.ref();
      slot.worker.postMessage({ t: 'eval', id: job.id, epoch: job.epoch, elements: job.packed }, [job.packed.buffer]);
    }
  }

  get stats(): EvaluatorStats {
    return {
      size: this.size,
      threads: this.slots.filter((s) => s?.state === 'ready').length,
      inline: this.inline,
      ...(this.fallback !== undefined ? { fallback: this.fallback } : {}),
      pendingElements: this.pending,
      queuedBatches: this.queue.length,
      runningBatches: this.slots.filter((s) => s?.job !== undefined).length,
      ...this.counters,
    };
  }

  /** For tests: ends worker `index` abruptly, as a crash would (it is replaced). */
  async crashWorker(index: number): Promise<void> {
    const slot = this.slots[index];
    if (slot?.state === 'ready') await slot.worker.terminate();
  }

  /** Fails queued and running batches with 503, forgets the keys and terminates the workers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const shuttingDown = () => new PcdError(ErrorCode.Unavailable, SHUTTING_DOWN);
    for (const job of this.queue.splice(0)) job.reject(shuttingDown());
    const slots = this.slots.filter((s): s is Slot => s !== undefined);
    for (const s of slots) {
      s.job?.reject(shuttingDown());
      s.job = undefined;
      // Best effort: a worker that reads this before it is terminated zeroes its keys.
      if (s.state === 'ready') for (const epoch of this.keys.keys()) s.worker.postMessage({ t: 'drop', epoch });
    }
    this.pending = 0;
    this.keys.clear();
    await Promise.all(slots.map((s) => this.kill(s)));
    this.slots.length = 0;
  }
}

function retired(epoch: number): PcdError {
  return new PcdError(ErrorCode.EpochRetired, `epoch ${epoch} was retired and its key destroyed while this batch waited: fetch /v1/blinded/config`);
}

function sameKey(a: KeyPair, b: KeyPair): boolean {
  if (a === b) return true;
  return Buffer.from(a.publicKey).equals(Buffer.from(b.publicKey)) && Buffer.from(a.secretKey).equals(Buffer.from(b.secretKey));
}

/** Splits a worker's reply: views into the transferred buffer, not copies. */
function unpack(out: Uint8Array, n: number, mode: OprfMode): EvaluatedBatch {
  const evaluated = Array.from({ length: n }, (_, i) => out.subarray(i * ELEMENT_BYTES, (i + 1) * ELEMENT_BYTES));
  if (mode === 'oprf') return { evaluated };
  return { evaluated, proof: out.subarray(n * ELEMENT_BYTES, n * ELEMENT_BYTES + PROOF_BYTES) };
}
