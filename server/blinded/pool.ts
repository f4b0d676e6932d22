/**
 * The evaluator pool: RFC 9497 BlindEvaluate for `POST /v1/blinded/evaluate`
 * on persistent worker threads (server/blinded/worker.ts, started by
 * server/blinded/spawn.ts), so a large batch neither blocks the event loop
 * nor leaves cores idle, and one requester's flood does not starve another.
 *
 * ## One batch, many threads, one proof
 *
 * A batch is cut into chunks of `chunkElements` elements; each chunk is a
 * `chunk` job (its elements and its `first` index) that any free worker
 * takes. In VOPRF mode a chunk also returns its part of the composite
 * M = sum d_i * C_i (RFC 9497 §2.2.1 ComputeCompositesFast: each weight d_i
 * depends only on the public key, i and (C_i, D_i)); once every chunk is
 * back the main thread concatenates the evaluated elements in order and
 * computes the batch's one DLEQ proof from the parts
 * ({@link OprfBackend.proveComposite}). The reply equals
 * `blindEvaluateBatch` of the whole batch for the same proof randomness, so
 * a 4096-element request uses every core. A VOPRF batch of one chunk (a
 * single lookup, a small sync) is proven by the worker that evaluates it,
 * so it costs the main thread no crypto at all. Elements travel packed in one
 * transferred ArrayBuffer per chunk, both ways.
 *
 * Each element is validated where it is evaluated (evaluateChunk, RFC 9497
 * §3.3); a bad one fails its batch with 400 `invalid_element` naming the
 * lowest bad index as `elements[i]`: the batch's queued chunks are dropped
 * and its running ones awaited (they are the only ones that could hold a
 * lower index, since a batch's chunks are handed out in order).
 *
 * ## Order and admission
 *
 * server/blinded/fair.ts decides which chunk a free worker takes next:
 * round-robin over requesters, one chunk per turn, each requester with a
 * bounded backlog and the pool with a global one. {@link admit} asks it
 * before the HTTP body is read (from an estimate), {@link evaluate} again
 * with the real count; a refusal is 503 with Retry-After.
 *
 * ## Threads
 *
 * `size` workers: the option, else `PCD_EVAL_THREADS` ({@link evalThreads}),
 * else one per core. 0 means inline: chunks run on the main thread, one per
 * turn of the event loop, with the same backend and the same scheduler.
 * Workers that cannot start (no tsx, a backend that fails to load) make the
 * pool fall back to inline, logged.
 *
 * ## Keys
 *
 * {@link setKey} keeps a copy and sends each ready worker its own fresh
 * copy by postMessage (transferred: never workerData, never a file); a
 * replacement worker gets every held key when it is ready. {@link dropKey}
 * (called when the epoch is destroyed) zeroes the pool's copy, makes every
 * worker zero and forget its own, fails the epoch's unfinished batches with
 * 410 `epoch_retired`, and refuses the epoch from then on.
 *
 * ## Failures
 *
 * A worker that dies fails only the batch of the chunk it was evaluating,
 * with 500 `internal` and a fixed message (nothing from the worker, no key
 * material), and is replaced. `close()` fails everything unfinished with
 * 503 and terminates the workers.
 */
import type { Worker } from 'node:worker_threads';
import pino, { type Logger } from 'pino';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { LIMITS } from '../../shared/limits.ts';
import {
  ELEMENT_BYTES,
  MAX_BATCH_ELEMENTS,
  PROOF_BYTES,
  type BackendName,
  type KeyPair,
  type OprfBackend,
  type OprfMode,
  type PointBytes,
  type ProofBytes,
  type Rng,
} from '../../shared/suite.ts';
import { DEFAULT_MAX_PER_REQUESTER, FairScheduler, type Chunk, type RequesterKey } from './fair.ts';
import { startWorker } from './spawn.ts';
import { EVAL_THREADS_ENV, threadCount } from './threads.ts';
import type { FromWorker, ToWorker } from './worker.ts';

export { EVAL_THREADS_ENV };

/**
 * Elements per chunk. Measured on the 2-core VM (Node 20, minimum of
 * repeated runs): evaluateChunk in VOPRF costs ~0.28 ms per element plus
 * ~0.1 ms per chunk with sodium (noble: ~2.6 ms per element), a round trip
 * through an idle worker adds ~0.1 ms, and proveComposite costs ~0.03 ms
 * (sodium) or ~0.3 ms (noble) per chunk on the main thread. At 128 elements
 * a chunk's overhead is under 1 % with sodium and a 4096-element batch costs
 * the main thread ~1 ms (noble ~10 ms) of proof; what a light requester
 * waits behind, per active requester, is one chunk: ~36 ms with sodium
 * (~330 ms with noble). 4096 elements over two workers: ~0.68 s against
 * ~1.25 s unsplit on one (sodium; 16 to 512 elements per chunk were within
 * noise of each other, 2048 lost a third of the gain).
 */
export const DEFAULT_CHUNK_ELEMENTS = 128;

/** First guess of one VOPRF element's cost on one core, ms, until chunks are measured (for Retry-After). */
const COST_GUESS_MS: Readonly<Record<BackendName, number>> = { noble: 2.5, sodium: 0.35 };

export interface PoolOptions {
  /** Worker threads; default {@link evalThreads}. 0: inline on the main thread. */
  size?: number;
  /** The main thread's backend: inline evaluation, proveComposite, and the workers load the same one by name. */
  backend: OprfBackend;
  logger?: Logger;
  /** Elements per chunk; default {@link DEFAULT_CHUNK_ELEMENTS}. */
  chunkElements?: number;
  /** Backlog per requester, elements; default 2 x LIMITS.maxBatch. */
  maxPerRequester?: number;
  /** Backlog of the whole pool, elements; default max(2, size) x 2 x LIMITS.maxBatch. */
  maxQueued?: number;
  /** Clock in ms for the cost estimate behind Retry-After; default performance.now. */
  now?: () => number;
}

/** The result of one batch: what the evaluate reply carries. */
export interface EvaluatedBatch {
  evaluated: PointBytes[];
  proof?: ProofBytes;
}

export interface EvaluateOptions {
  /** Whose backlog the batch counts against (the account id). */
  requester: RequesterKey;
  /** Randomness of the batch's proof (tests); default crypto.getRandomValues. */
  rng?: Rng;
}

/** Counters for tests, benchmarks and the operator. */
export interface PoolStats {
  /** Configured workers (0: inline by configuration). */
  size: number;
  /** Workers ready now. */
  threads: number;
  /** True when chunks run on the main thread (size 0, or workers could not start). */
  inline: boolean;
  /** Why the pool fell back to inline, if it did. */
  fallback?: string;
  chunkElements: number;
  /** Elements queued or being evaluated. */
  pendingElements: number;
  /** Elements not yet handed to a worker. */
  queuedElements: number;
  /** Batches accepted and not yet answered. */
  openBatches: number;
  runningChunks: number;
  /** Requesters with elements queued or being evaluated. */
  activeRequesters: number;
  /** Batches answered, their elements, and chunks evaluated (workers and inline). */
  batches: number;
  elements: number;
  chunks: number;
  /** Chunks evaluated on the main thread. */
  inlineChunks: number;
  /** Chunks evaluated by each worker slot (a replacement continues its slot's count). */
  workerChunks: number[];
  /** Requests refused with 503 (admission or enqueue), in all and by the bound that was full. */
  rejected: number;
  rejectedRequester: number;
  rejectedGlobal: number;
  /** Workers that died while running and were replaced. */
  crashes: number;
  /** Measured cost of one element on one thread, ms (exponential average). */
  msPerElement: number;
}

/**
 * Evaluator threads from `PCD_EVAL_THREADS` (an integer >= 0), else one per
 * core. A value that is not such an integer is reported in `problem` and ignored.
 */
export function evalThreads(env: string | undefined = process.env[EVAL_THREADS_ENV]): { threads: number; problem?: string } {
  return threadCount(EVAL_THREADS_ENV, env, 0);
}

interface HeldKey {
  readonly mode: OprfMode;
  readonly key: KeyPair;
}

interface Batch {
  readonly epoch: number;
  readonly requester: RequesterKey;
  readonly held: HeldKey;
  readonly elements: readonly Uint8Array[];
  /** Evaluated elements, n x 32, filled chunk by chunk. */
  readonly out: Uint8Array<ArrayBuffer>;
  /** voprf: each chunk's composite part, by its first index. */
  readonly composites: Map<number, PointBytes>;
  readonly rng: Rng | undefined;
  /** voprf, a batch of one chunk: the proof its worker computed. */
  proof?: ProofBytes;
  /** Elements not yet evaluated. */
  remaining: number;
  /** Chunks handed out and not yet back. */
  running: number;
  /** The lowest failing chunk's error, while its batch's running chunks finish. */
  failure?: { first: number; error: PcdError };
  settled: boolean;
  resolve(r: EvaluatedBatch): void;
  reject(e: unknown): void;
}

interface Job {
  readonly id: number;
  readonly chunk: Chunk<Batch>;
}

interface Slot {
  readonly index: number;
  readonly worker: Worker;
  state: 'starting' | 'ready' | 'dead';
  readonly ready: Promise<void>;
  job?: Job;
  readonly queries: Map<number, (epochs: number[] | undefined) => void>;
  lastError?: string;
}

/** How long close() waits for the workers to say they zeroed their keys before terminating them, ms. */
const CLOSE_WAIT_MS = 2000;
const SHUTTING_DOWN = 'the server is shutting down: the batch was not evaluated';
const CRASHED = 'an evaluator worker stopped while evaluating this batch (it is being replaced); nothing was returned: retry';
const FAILED = 'the evaluator failed on this batch; nothing was returned';
/** Codes a worker may pass through to the client: about the client's own data. */
const CLIENT_CODES: ReadonlySet<string> = new Set([ErrorCode.InvalidElement, ErrorCode.BadRequest]);

export class EvaluatorPool {
  /** Configured workers (0: inline). */
  readonly size: number;
  readonly chunkElements: number;
  readonly backend: OprfBackend;
  private readonly logger: Logger;
  private readonly scheduler: FairScheduler<Batch>;
  private readonly keys = new Map<number, HeldKey>();
  /** Epochs whose keys were dropped: refused from then on. */
  private readonly retired = new Set<number>();
  private readonly slots: (Slot | undefined)[] = [];
  private readonly open = new Set<Batch>();
  private starting: Promise<void> | undefined;
  private inline: boolean;
  private fallback: string | undefined;
  private inlineBusy = false;
  private closed = false;
  private nextId = 1;
  private readonly counters = { batches: 0, elements: 0, chunks: 0, inlineChunks: 0, crashes: 0 };
  private readonly workerChunks: number[] = [];

  constructor(options: PoolOptions) {
    this.logger = options.logger ?? pino({ level: 'silent' });
    this.backend = options.backend;
    let size = options.size;
    if (size === undefined) {
      const fromEnv = evalThreads();
      if (fromEnv.problem) this.logger.warn({ threads: fromEnv.threads }, `${fromEnv.problem}: using one evaluator thread per core`);
      size = fromEnv.threads;
    }
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`evaluator pool size must be an integer >= 0, got ${size}`);
    this.size = size;
    this.inline = size === 0;
    this.chunkElements = options.chunkElements ?? DEFAULT_CHUNK_ELEMENTS;
    this.scheduler = new FairScheduler<Batch>({
      chunkElements: this.chunkElements,
      maxPerRequester: options.maxPerRequester ?? DEFAULT_MAX_PER_REQUESTER,
      maxQueued: options.maxQueued ?? Math.max(2, size) * 2 * LIMITS.maxBatch,
      ...(options.now ? { now: options.now } : {}),
      msPerElement: COST_GUESS_MS[options.backend.name],
      parallelism: Math.max(1, size),
    });
  }

  // ------------------------------------------------------------------ workers

  /**
   * Starts the workers (idempotent) and resolves once they are ready, or once
   * the pool has fallen back to inline evaluation (logged). Never rejects.
   */
  start(): Promise<void> {
    return (this.starting ??= this.startWorkers());
  }

  private async startWorkers(): Promise<void> {
    if (this.inline || this.closed) return;
    const t0 = performance.now();
    const slots = Array.from({ length: this.size }, (_, i) => this.spawn(i));
    const results = await Promise.allSettled(slots.map((s) => s.ready));
    if (this.closed) return;
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    const first = failed[0];
    const reason = first ? firstLine(first.reason) : '';
    if (failed.length === slots.length) {
      await Promise.all(slots.map((s) => this.kill(s)));
      return this.fallBack(reason);
    }
    if (failed.length > 0) {
      this.logger.error({ failed: failed.length, err: reason }, 'some evaluator worker threads could not start');
      results.forEach((r, i) => {
        if (r.status === 'rejected') this.slots[i] = undefined;
      });
    }
    this.logger.info({ threads: this.threads, backend: this.backend.name, ms: Math.round(performance.now() - t0) }, 'evaluator worker threads started');
    this.pump();
  }

  private fallBack(reason: string): void {
    this.inline = true;
    this.fallback = reason;
    this.scheduler.parallelism = 1;
    this.logger.warn({ reason, threads: this.size }, 'evaluator worker threads could not start: evaluating on the main thread');
    this.pump();
  }

  private spawn(index: number): Slot {
    const { worker, ready } = startWorker(this.backend.name);
    const slot: Slot = { index, worker, state: 'starting', ready, queries: new Map() };
    this.slots[index] = slot;
    ready.then(
      () => {
        if (slot.state !== 'starting' || this.closed) return;
        slot.state = 'ready';
        for (const [epoch, k] of this.keys) this.sendKey(slot, epoch, k);
        this.scheduler.parallelism = Math.max(1, this.threads);
        this.pump();
      },
      () => {},
    );
    worker.on('message', (m: FromWorker) => {
      switch (m.t) {
        case 'chunk':
          return this.fromWorker(slot, m.id, (job) => {
            this.workerChunks[slot.index] = (this.workerChunks[slot.index] ?? 0) + 1;
            this.chunkDone(job.chunk, m.out);
          });
        case 'error':
          return this.fromWorker(slot, m.id, (job) => this.chunkFailed(job.chunk, m.code, m.message, slot.index));
        case 'epochs': {
          const q = slot.queries.get(m.id);
          slot.queries.delete(m.id);
          q?.(m.epochs);
          return;
        }
        default:
          return; // ready / failed: handled by startWorker; tags: not ours
      }
    });
    worker.on('error', (e) => (slot.lastError = e.message));
    worker.on('exit', (code) => {
      const was = slot.state;
      slot.state = 'dead';
      for (const q of slot.queries.values()) q(undefined);
      slot.queries.clear();
      if (was === 'ready') this.onCrash(slot, code);
    });
    return slot;
  }

  private get threads(): number {
    return this.slots.filter((s) => s?.state === 'ready').length;
  }

  private fromWorker(slot: Slot, id: number, fn: (job: Job) => void): void {
    const job = slot.job;
    if (!job || job.id !== id) return;
    slot.job = undefined;
    slot.worker.unref();
    fn(job);
    this.pump();
  }

  private onCrash(slot: Slot, code: number): void {
    if (this.closed) return;
    this.counters.crashes++;
    const job = slot.job;
    slot.job = undefined;
    if (job) {
      this.scheduler.done(job.chunk, false);
      job.chunk.item.running--;
      this.fail(job.chunk.item, new PcdError(ErrorCode.Internal, CRASHED));
    }
    this.logger.error({ worker: slot.index, exitCode: code, err: slot.lastError === undefined ? undefined : firstLine(slot.lastError) }, 'evaluator worker stopped: replacing it');
    this.scheduler.parallelism = Math.max(1, this.threads);
    void this.replace(slot.index);
  }

  private async replace(index: number): Promise<void> {
    if (this.closed || this.inline) return;
    const slot = this.spawn(index);
    try {
      await slot.ready;
    } catch (e) {
      if (this.closed) return;
      this.slots[index] = undefined;
      const reason = firstLine(e);
      this.logger.error({ worker: index, err: reason }, 'a replacement evaluator worker could not start');
      if (!this.slots.some((s) => s && s.state !== 'dead')) this.fallBack(`no evaluator worker left: ${reason}`);
    }
  }

  private async kill(slot: Slot): Promise<void> {
    slot.state = 'dead';
    await slot.worker.terminate();
  }

  private post(slot: Slot, m: ToWorker, transfer: ArrayBuffer[] = []): void {
    slot.worker.postMessage(m, transfer);
  }

  // ------------------------------------------------------------------ keys

  /**
   * Holds an epoch's key for evaluation (a copy) and sends it to every worker
   * (now, or when a worker becomes ready). An epoch has one key for life:
   * the same key again is a no-op, another one a bug.
   */
  setKey(epoch: number, mode: OprfMode, key: KeyPair): void {
    if (this.closed) return;
    if (this.retired.has(epoch)) throw retired(epoch);
    const previous = this.keys.get(epoch);
    if (previous) {
      if (previous.mode === mode && equalBytes(previous.key.secretKey, key.secretKey) && equalBytes(previous.key.publicKey, key.publicKey)) return;
      throw new Error(`the evaluator pool already holds another key for epoch ${epoch}`);
    }
    const held: HeldKey = { mode, key: { secretKey: Uint8Array.from(key.secretKey), publicKey: Uint8Array.from(key.publicKey) } };
    this.keys.set(epoch, held);
    for (const slot of this.slots) if (slot?.state === 'ready') this.sendKey(slot, epoch, held);
  }

  /** True when the pool holds `epoch`'s key. */
  hasKey(epoch: number): boolean {
    return this.keys.has(epoch);
  }

  private sendKey(slot: Slot, epoch: number, { mode, key }: HeldKey): void {
    // Fresh exact-size copies, transferred: the pool's own copy stays here.
    const secretKey = Uint8Array.from(key.secretKey);
    const publicKey = Uint8Array.from(key.publicKey);
    this.post(slot, { t: 'key', epoch, mode, secretKey, publicKey }, [secretKey.buffer, publicKey.buffer]);
  }

  /**
   * The epoch is destroyed: zeroes the pool's copy of its key, makes every
   * worker zero and forget its own, fails the epoch's unfinished batches
   * with 410, and refuses the epoch from now on. Idempotent.
   */
  dropKey(epoch: number): void {
    this.retired.add(epoch);
    const held = this.keys.get(epoch);
    this.keys.delete(epoch);
    for (const slot of this.slots) if (slot?.state === 'ready') this.post(slot, { t: 'drop', epoch });
    for (const b of [...this.open]) if (b.epoch === epoch) this.fail(b, retired(epoch));
    held?.key.secretKey.fill(0);
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
            this.post(slot, { t: 'epochs', id });
          }),
      ),
    );
    return lists.filter((l): l is number[] => l !== undefined).map((l) => l.sort((a, b) => a - b));
  }

  // ------------------------------------------------------------------ admission and evaluation

  /**
   * Throws 503 `unavailable` (with retryAfterSeconds) unless about `n` more
   * elements from `requester` fit now; changes nothing. The HTTP layer calls
   * it with an estimate before reading the body.
   */
  admit(requester: RequesterKey, n: number): void {
    if (this.closed) throw new PcdError(ErrorCode.Unavailable, SHUTTING_DOWN);
    this.scheduler.check(requester, Math.min(Math.max(1, n), LIMITS.maxBatch));
  }

  /**
   * RFC 9497 BlindEvaluate of one batch under `epoch`'s key (held by
   * {@link setKey}): the evaluated elements in order and, in VOPRF mode, the
   * batch's one proof. Elements are validated as they are evaluated.
   * Rejects with 400 for a bad element, 503 when the requester's or the
   * pool's backlog is full or the pool is closing, 410 when the epoch was
   * dropped, 500 when a worker died on the batch.
   */
  evaluate(epoch: number, elements: readonly Uint8Array[], options: EvaluateOptions): Promise<EvaluatedBatch> {
    try {
      if (this.closed) throw new PcdError(ErrorCode.Unavailable, SHUTTING_DOWN);
      if (this.retired.has(epoch)) throw retired(epoch);
      const held = this.keys.get(epoch);
      if (!held) throw new Error(`the evaluator pool holds no key for epoch ${epoch}: setKey first`);
      const n = elements.length;
      if (n === 0) throw new PcdError(ErrorCode.BadRequest, 'the batch holds no blinded element');
      if (n > MAX_BATCH_ELEMENTS) throw new RangeError(`a batch holds at most ${MAX_BATCH_ELEMENTS} elements (RFC 9497 §2.2.1), got ${n}`);
      return new Promise<EvaluatedBatch>((resolve, reject) => {
        const batch: Batch = {
          epoch,
          requester: options.requester,
          held,
          elements,
          out: new Uint8Array(n * ELEMENT_BYTES),
          composites: new Map(),
          rng: options.rng,
          remaining: n,
          running: 0,
          settled: false,
          resolve,
          reject,
        };
        this.scheduler.enqueue(options.requester, batch, n); // throws the 503 when it does not fit
        this.open.add(batch);
        if (!this.inline) void this.start();
        this.pump();
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Hands queued chunks to idle workers (or to the main thread when inline), in the scheduler's order. */
  private pump(): void {
    if (this.closed) return;
    if (this.inline) {
      if (this.inlineBusy || this.scheduler.idle) return;
      this.inlineBusy = true;
      // One chunk per turn of the event loop: other requests are served in between.
      setImmediate(() => {
        this.inlineBusy = false;
        this.runInline();
        this.pump();
      });
      return;
    }
    for (const slot of this.slots) {
      if (slot?.state !== 'ready' || slot.job) continue;
      const chunk = this.scheduler.next();
      if (!chunk) return;
      const batch = chunk.item;
      const packed = this.pack(chunk);
      if (!packed) continue;
      batch.running++;
      const job: Job = { id: this.nextId++, chunk };
      slot.job = job;
      slot.worker.ref(); // a busy worker keeps the process alive until it answers
      // A voprf batch that is one chunk gets its proof from the worker (no crypto on the main thread);
      // a batch with a test rng keeps the proof here, where the rng is.
      const prove = batch.held.mode === 'voprf' && batch.rng === undefined && chunk.count === batch.elements.length;
      this.post(slot, { t: 'chunk', id: job.id, epoch: batch.epoch, first: chunk.first, elements: packed, prove }, [packed.buffer]);
    }
  }

  /** The chunk's elements in one new buffer; undefined (and the batch failed) when one is not 32 bytes. */
  private pack(chunk: Chunk<Batch>): Uint8Array<ArrayBuffer> | undefined {
    const { item: batch, first, count } = chunk;
    const packed = new Uint8Array(count * ELEMENT_BYTES);
    for (let i = 0; i < count; i++) {
      const el = batch.elements[first + i]!;
      if (el.length !== ELEMENT_BYTES) {
        this.scheduler.done(chunk, false);
        this.fail(batch, new PcdError(ErrorCode.InvalidElement, `elements[${first + i}] is not ${ELEMENT_BYTES} bytes (RFC 9497 §3.3): nothing was evaluated`));
        return undefined;
      }
      packed.set(el, i * ELEMENT_BYTES);
    }
    return packed;
  }

  private runInline(): void {
    const chunk = this.scheduler.next();
    if (!chunk) return;
    const batch = chunk.item;
    const { first, count } = chunk;
    batch.running++;
    this.counters.inlineChunks++;
    let r: ReturnType<OprfBackend['evaluateChunk']>;
    try {
      r = this.backend.evaluateChunk(batch.held.mode, batch.held.key, batch.elements.slice(first, first + count), first);
    } catch (e) {
      const code = e instanceof PcdError ? e.code : undefined;
      return this.chunkFailed(chunk, code, e instanceof Error ? e.message : String(e), 'main');
    }
    const out = new Uint8Array(count * ELEMENT_BYTES + (r.composite ? ELEMENT_BYTES : 0));
    r.evaluated.forEach((d, i) => out.set(d, i * ELEMENT_BYTES));
    if (r.composite) out.set(r.composite, count * ELEMENT_BYTES);
    this.chunkDone(chunk, out);
  }

  /** A chunk came back: out = count x 32 evaluated [|| 32-byte composite in voprf]. */
  private chunkDone(chunk: Chunk<Batch>, out: Uint8Array): void {
    this.scheduler.done(chunk);
    this.counters.chunks++;
    const batch = chunk.item;
    batch.running--;
    if (batch.settled) return;
    const bytes = chunk.count * ELEMENT_BYTES;
    const voprf = batch.held.mode === 'voprf';
    const proven = voprf && out.length === bytes + PROOF_BYTES && chunk.count === batch.elements.length;
    if (!proven && out.length !== bytes + (voprf ? ELEMENT_BYTES : 0)) {
      this.logger.error({ got: out.length, expected: bytes }, 'an evaluator worker answered a chunk of the wrong size');
      return this.fail(batch, new PcdError(ErrorCode.Internal, FAILED));
    }
    if (batch.failure) {
      if (batch.running === 0) this.fail(batch, batch.failure.error);
      return;
    }
    batch.out.set(out.subarray(0, bytes), chunk.first * ELEMENT_BYTES);
    if (proven) batch.proof = out.subarray(bytes);
    else if (voprf) batch.composites.set(chunk.first, out.subarray(bytes));
    batch.remaining -= chunk.count;
    if (batch.remaining === 0) this.finish(batch);
  }

  /** A chunk failed: an element the client sent (keeps its code, the lowest index wins), or anything else (500, fixed message). */
  private chunkFailed(chunk: Chunk<Batch>, code: string | undefined, message: string, worker: number | 'main'): void {
    this.scheduler.done(chunk, false);
    const batch = chunk.item;
    batch.running--;
    if (batch.settled) return;
    if (code === undefined || !CLIENT_CODES.has(code)) {
      this.logger.error({ worker, err: firstLine(message) }, 'evaluator failed to evaluate a chunk');
      return this.fail(batch, new PcdError(ErrorCode.Internal, FAILED));
    }
    if (!batch.failure || chunk.first < batch.failure.first) {
      batch.failure = { first: chunk.first, error: this.elementError(chunk) ?? new PcdError(code as ErrorCode, message) };
    }
    // Later chunks cannot hold a lower index: drop them; earlier ones still running might.
    this.scheduler.cancel(batch);
    if (batch.running === 0) this.fail(batch, batch.failure.error);
  }

  /**
   * The failing chunk's first bad element, named as the client sent it
   * (`elements[i]`): found again here, on the failure path only, up to the
   * first bad element of one chunk, so the message never depends on a
   * backend's wording.
   */
  private elementError(chunk: Chunk<Batch>): PcdError | undefined {
    for (let i = chunk.first; i < chunk.first + chunk.count; i++) {
      const problem = this.backend.elementProblem(chunk.item.elements[i]);
      if (problem !== undefined) return new PcdError(ErrorCode.InvalidElement, `elements[${i}] ${problem} (RFC 9497 §3.3): nothing was evaluated`);
    }
    return undefined;
  }

  private finish(batch: Batch): void {
    const n = batch.elements.length;
    let proof: ProofBytes | undefined = batch.proof;
    if (batch.held.mode === 'voprf' && proof === undefined) {
      const parts = [...batch.composites.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c);
      try {
        // RFC 9497 §2.2.1: M = sum of the parts, Z = k * M, one DLEQ proof for the whole batch.
        proof = this.backend.proveComposite(batch.held.key, parts, batch.rng);
      } catch (e) {
        this.logger.error({ err: firstLine(e) }, 'the batch proof failed');
        return this.fail(batch, new PcdError(ErrorCode.Internal, FAILED));
      }
    }
    batch.settled = true;
    this.open.delete(batch);
    this.counters.batches++;
    this.counters.elements += n;
    const evaluated = Array.from({ length: n }, (_, i) => batch.out.subarray(i * ELEMENT_BYTES, (i + 1) * ELEMENT_BYTES));
    batch.resolve(proof ? { evaluated, proof } : { evaluated });
  }

  /** Settles a batch with an error; its queued chunks leave the scheduler, its running ones are ignored when they return. */
  private fail(batch: Batch, error: PcdError): void {
    if (batch.settled) return;
    batch.settled = true;
    this.open.delete(batch);
    this.scheduler.cancel(batch);
    batch.reject(error);
  }

  get stats(): PoolStats {
    const s = this.scheduler.stats;
    return {
      size: this.size,
      threads: this.threads,
      inline: this.inline,
      ...(this.fallback !== undefined ? { fallback: this.fallback } : {}),
      chunkElements: this.chunkElements,
      pendingElements: s.outstandingElements,
      queuedElements: s.queuedElements,
      openBatches: this.open.size,
      runningChunks: s.runningChunks,
      activeRequesters: s.activeRequesters,
      ...this.counters,
      workerChunks: Array.from({ length: this.size }, (_, i) => this.workerChunks[i] ?? 0),
      rejected: s.rejected.requester + s.rejected.global,
      rejectedRequester: s.rejected.requester,
      rejectedGlobal: s.rejected.global,
      msPerElement: s.msPerElement,
    };
  }

  /** For tests: ends worker `index` abruptly, as a crash would (it is replaced). */
  async crashWorker(index: number): Promise<void> {
    const slot = this.slots[index];
    if (slot?.state === 'ready') await slot.worker.terminate();
  }

  /** Fails every unfinished batch with 503, zeroes and forgets the keys (the workers theirs, before they are terminated), terminates the workers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const b of [...this.open]) this.fail(b, new PcdError(ErrorCode.Unavailable, SHUTTING_DOWN));
    this.scheduler.clear();
    const slots = this.slots.filter((s): s is Slot => s !== undefined);
    const zeroed: Promise<unknown>[] = [];
    for (const s of slots) {
      s.job = undefined;
      if (s.state !== 'ready') continue;
      for (const epoch of this.keys.keys()) this.post(s, { t: 'drop', epoch });
      // A worker handles messages in order: its answer to this comes after it zeroed every key dropped above.
      const id = this.nextId++;
      zeroed.push(new Promise((resolve) => s.queries.set(id, resolve)));
      this.post(s, { t: 'epochs', id });
    }
    for (const k of this.keys.values()) k.key.secretKey.fill(0);
    this.keys.clear();
    // Bounded: a worker that is stuck is terminated all the same (its memory goes with the thread).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(zeroed), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
    await Promise.all(slots.map((s) => this.kill(s)));
    this.slots.length = 0;
  }
}

/** The first line of an error's message, at most 200 characters: what the log may hold of a worker's failure. */
function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n', 1)[0]?.slice(0, 200) ?? '';
}

function retired(epoch: number): PcdError {
  return new PcdError(ErrorCode.EpochRetired, `epoch ${epoch} was retired and its key destroyed: fetch /v1/blinded/config`);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}
