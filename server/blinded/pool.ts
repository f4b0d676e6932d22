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
 * §3.3, by the one element check of shared/voprf.ts); a bad one fails its
 * batch with 400 `invalid_element` naming the lowest bad index as
 * `elements[i]`: the batch's queued chunks are dropped and its running ones
 * awaited (they are the only ones that could hold a lower index, since a
 * batch's chunks are handed out in order).
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
 *
 * ## Files
 *
 * This module is the pool itself: admission, scheduling, the keys, handing
 * chunks out and settling batches. The worker threads' lifecycle (start,
 * keys sent, crash replacement, close) is server/blinded/pool-workers.ts;
 * one batch's state, a chunk's layout, the element error and the proof
 * assembly are server/blinded/pool-batch.ts.
 */
import pino, { type Logger } from 'pino';
import { bytesEqual } from '../../shared/bytes.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { LIMITS } from '../../shared/limits.ts';
import { ELEMENT_BYTES, MAX_BATCH_ELEMENTS, type BackendName, type KeyPair, type OprfBackend, type OprfMode, type RandomSource } from '../../shared/suite.ts';
import { DEFAULT_MAX_PER_REQUESTER, FairScheduler, type Chunk, type RequesterKey } from './fair.ts';
import { batchReply, elementError, evaluateInline, newBatch, packChunk, storeChunk, workerProves, type Batch, type EvaluatedBatch } from './pool-batch.ts';
import { EvaluatorWorkers, firstLine, type HeldKey } from './pool-workers.ts';
import { EVAL_THREADS_ENV, threadCount } from './threads.ts';

export { EVAL_THREADS_ENV };
export type { EvaluatedBatch };

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

export interface EvaluateOptions {
  /** Whose backlog the batch counts against (the account id). */
  requester: RequesterKey;
  /** Randomness of the batch's proof (tests); default crypto.getRandomValues. */
  rng?: RandomSource;
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
  /** The pool's copy of each epoch's key; every ready worker holds its own. */
  private readonly keys = new Map<number, HeldKey>();
  /** Epochs whose keys were dropped: refused from then on. */
  private readonly retired = new Set<number>();
  private readonly workers: EvaluatorWorkers<Chunk<Batch>>;
  private readonly open = new Set<Batch>();
  private starting: Promise<void> | undefined;
  private inline: boolean;
  private fallback: string | undefined;
  private inlineBusy = false;
  private closed = false;
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
    this.workers = new EvaluatorWorkers<Chunk<Batch>>({
      size,
      backend: this.backend.name,
      logger: this.logger,
      keys: this.keys,
      events: {
        chunk: (chunk, out, worker) => {
          this.workerChunks[worker] = (this.workerChunks[worker] ?? 0) + 1;
          this.chunkDone(chunk, out);
          this.pump();
        },
        error: (chunk, code, message, worker) => {
          this.chunkFailed(chunk, code, message, worker);
          this.pump();
        },
        crashed: (chunk) => {
          this.counters.crashes++;
          if (!chunk) return;
          this.scheduler.done(chunk, false);
          chunk.item.running--;
          this.fail(chunk.item, new PcdError(ErrorCode.Internal, CRASHED));
        },
        changed: (threads) => {
          this.scheduler.parallelism = Math.max(1, threads);
          this.pump();
        },
        fallBack: (reason) => {
          this.inline = true;
          this.fallback = reason;
          this.scheduler.parallelism = 1;
          this.logger.warn({ reason, threads: this.size }, 'evaluator worker threads could not start: evaluating on the main thread');
          this.pump();
        },
      },
    });
  }

  /**
   * Starts the workers (idempotent) and resolves once they are ready, or once
   * the pool has fallen back to inline evaluation (logged). Never rejects.
   */
  start(): Promise<void> {
    return (this.starting ??= this.inline || this.closed ? Promise.resolve() : this.workers.start());
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
      if (previous.mode === mode && bytesEqual(previous.key.secretKey, key.secretKey) && bytesEqual(previous.key.publicKey, key.publicKey)) return;
      throw new Error(`the evaluator pool already holds another key for epoch ${epoch}`);
    }
    const held: HeldKey = { mode, key: { secretKey: Uint8Array.from(key.secretKey), publicKey: Uint8Array.from(key.publicKey) } };
    this.keys.set(epoch, held);
    this.workers.sendKey(epoch, held);
  }

  /** True when the pool holds `epoch`'s key. */
  hasKey(epoch: number): boolean {
    return this.keys.has(epoch);
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
    this.workers.dropKey(epoch);
    for (const b of [...this.open]) if (b.epoch === epoch) this.fail(b, retired(epoch));
    held?.key.secretKey.fill(0);
  }

  /** Epochs whose keys the pool holds, ascending. */
  get epochs(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  /** Epochs whose keys each running worker holds (asked of the workers themselves), ascending. */
  workerEpochs(): Promise<number[][]> {
    return this.workers.epochs();
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
        const batch = newBatch(epoch, held, elements, { requester: options.requester, rng: options.rng }, resolve, reject);
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
    while (this.workers.idle) {
      const chunk = this.scheduler.next();
      if (!chunk) return;
      const batch = chunk.item;
      batch.running++;
      const elements = packChunk(chunk);
      // An element that is not 32 bytes cannot travel packed: it fails its batch as a bad element.
      if (!elements) {
        this.chunkFailed(chunk, ErrorCode.InvalidElement, 'an element is not 32 bytes', 'main');
        continue;
      }
      const { epoch } = batch;
      const { first } = chunk;
      const prove = workerProves(chunk);
      this.workers.dispatch(chunk, (id) => ({ t: 'chunk', id, epoch, first, elements, prove }), [elements.buffer]);
    }
  }

  private runInline(): void {
    const chunk = this.scheduler.next();
    if (!chunk) return;
    chunk.item.running++;
    this.counters.inlineChunks++;
    let out: Uint8Array;
    try {
      out = evaluateInline(this.backend, chunk);
    } catch (e) {
      const code = e instanceof PcdError ? e.code : undefined;
      return this.chunkFailed(chunk, code, e instanceof Error ? e.message : String(e), 'main');
    }
    this.chunkDone(chunk, out);
  }

  /** A chunk came back, in the layout of server/blinded/pool-batch.ts. */
  private chunkDone(chunk: Chunk<Batch>, out: Uint8Array): void {
    this.scheduler.done(chunk);
    this.counters.chunks++;
    const batch = chunk.item;
    batch.running--;
    if (batch.settled) return;
    if (!storeChunk(chunk, out)) {
      this.logger.error({ got: out.length, expected: chunk.count * ELEMENT_BYTES }, 'an evaluator worker answered a chunk of the wrong size');
      return this.fail(batch, new PcdError(ErrorCode.Internal, FAILED));
    }
    if (batch.failure) {
      if (batch.running === 0) this.fail(batch, batch.failure.error);
      return;
    }
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
      batch.failure = { first: chunk.first, error: elementError(this.backend, chunk) ?? new PcdError(code as ErrorCode, message) };
    }
    // Later chunks cannot hold a lower index: drop them; earlier ones still running might.
    this.scheduler.cancel(batch);
    if (batch.running === 0) this.fail(batch, batch.failure.error);
  }

  private finish(batch: Batch): void {
    let reply: EvaluatedBatch;
    try {
      reply = batchReply(this.backend, batch);
    } catch (e) {
      this.logger.error({ err: firstLine(e) }, 'the batch proof failed');
      return this.fail(batch, new PcdError(ErrorCode.Internal, FAILED));
    }
    batch.settled = true;
    this.open.delete(batch);
    this.counters.batches++;
    this.counters.elements += batch.elements.length;
    batch.resolve(reply);
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
      threads: this.workers.threads,
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
  crashWorker(index: number): Promise<void> {
    return this.workers.crash(index);
  }

  /** Fails every unfinished batch with 503, zeroes and forgets the keys (the workers theirs, before they are terminated), terminates the workers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const b of [...this.open]) this.fail(b, new PcdError(ErrorCode.Unavailable, SHUTTING_DOWN));
    this.scheduler.clear();
    const stopped = this.workers.close(); // has posted every worker its drops when it returns
    for (const k of this.keys.values()) k.key.secretKey.fill(0);
    this.keys.clear();
    await stopped;
  }
}

function retired(epoch: number): PcdError {
  return new PcdError(ErrorCode.EpochRetired, `epoch ${epoch} was retired and its key destroyed: fetch /v1/blinded/config`);
}

