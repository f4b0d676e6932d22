/**
 * Fair admission and scheduling of blinded evaluations, as a pure data
 * structure: no threads, no timers, no clock but an injectable one. The
 * evaluator pool (server/blinded/pool.ts) owns one {@link FairScheduler} and
 * asks it, whenever a worker is free, for the next chunk to evaluate.
 *
 * ## Order
 *
 * One FIFO queue per requester (the account id); a batch is served as
 * chunks of at most `chunkElements` elements. Requesters with queued work
 * form a ring served round-robin, ONE chunk per turn:
 *
 *   ring  [A, B, C]   next() -> chunk of A's oldest batch, A goes to the back
 *   ring  [B, C, A]   next() -> B's chunk; B had one chunk, it leaves the ring
 *   ring  [C, A]      ...
 *
 * A requester that joins the ring goes to the back. So while A floods (two
 * 4096-element batches = 64 chunks of 128), B's 1-element request is handed
 * out after at most one chunk of every other requester in the ring: its wait
 * is about (active requesters) x (one chunk) / (workers), plus the chunks
 * already running, never A's whole backlog. Within one requester batches
 * are served in arrival order, so each batch completes as early as it can.
 *
 * ## Bounds (what is counted: elements queued or being evaluated)
 *
 * - Per requester, `maxPerRequester` (default 2 x LIMITS.maxBatch): a
 *   requester with nothing outstanding always gets one batch in.
 * - Globally, `maxQueued` (memory, and the longest wait of an admitted
 *   batch), except that a requester with nothing outstanding always gets a
 *   small request (at most one chunk) in, and anyone gets in when nothing at
 *   all is outstanding. A flood therefore can fill the global bound but
 *   never lock out a light requester.
 *
 * A refusal is 503 `unavailable` saying which bound was full, with
 * `retryAfterSeconds` estimated from the backlog ahead and the measured cost
 * per element (an exponential average of chunk service times on the
 * injected clock, starting from the caller's guess).
 */
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { LIMITS } from '../../shared/limits.ts';

/** Who a queue belongs to: the requester's account id. */
export type RequesterKey = number;

/** Default per-requester backlog, in elements: two of the largest batches. */
export const DEFAULT_MAX_PER_REQUESTER = 2 * LIMITS.maxBatch;

export interface FairOptions {
  /** Largest chunk handed out, in elements (>= 1). */
  chunkElements: number;
  /** Backlog bound per requester, in elements; default {@link DEFAULT_MAX_PER_REQUESTER}. */
  maxPerRequester?: number;
  /** Global backlog bound, in elements; default 2 x {@link DEFAULT_MAX_PER_REQUESTER}. */
  maxQueued?: number;
  /** Clock in ms, for the cost estimate only; default performance.now. */
  now?: () => number;
  /** First guess of the cost of one element on one worker, in ms, until chunks have been measured; default 1. */
  msPerElement?: number;
  /** Chunks evaluated at once (workers), for the retry estimate; default 1. Settable. */
  parallelism?: number;
}

/** One chunk handed out by {@link FairScheduler.next}: elements `first .. first + count - 1` of `item`. */
export interface Chunk<T> {
  readonly item: T;
  readonly requester: RequesterKey;
  readonly first: number;
  readonly count: number;
  /** Clock reading when it was handed out. */
  readonly startedAt: number;
}

interface Entry<T> {
  readonly item: T;
  readonly queue: RequesterQueue<T>;
  readonly n: number;
  /** Index of the first element not handed out yet. */
  next: number;
}

interface RequesterQueue<T> {
  readonly requester: RequesterKey;
  /** Batches with elements not yet handed out, oldest first. */
  readonly entries: Entry<T>[];
  /** Elements queued or being evaluated. */
  outstanding: number;
  /** Chunks handed out and not yet done. */
  running: number;
}

export interface FairStats {
  /** Elements not yet handed out. */
  queuedElements: number;
  /** Elements queued or being evaluated. */
  outstandingElements: number;
  /** Chunks handed out and not yet done. */
  runningChunks: number;
  /** Requesters with elements outstanding. */
  activeRequesters: number;
  /** Requests refused, by the bound that was full. */
  rejected: { requester: number; global: number };
  /** Current estimate of one element's cost on one worker, ms. */
  msPerElement: number;
}

/** Weight of the newest chunk in the cost average. */
const EWMA_WEIGHT = 0.2;

export class FairScheduler<T extends object> {
  readonly chunkElements: number;
  readonly maxPerRequester: number;
  readonly maxQueued: number;
  /** Chunks evaluated at once (the pool keeps it equal to its running workers). */
  parallelism: number;
  private readonly now: () => number;
  private msPerElement: number;
  private readonly queues = new Map<RequesterKey, RequesterQueue<T>>();
  /** Requesters with elements not handed out, in round-robin order (Map keeps insertion order). */
  private readonly ring = new Map<RequesterKey, RequesterQueue<T>>();
  private readonly entries = new Map<T, Entry<T>>();
  private queued = 0;
  private outstanding = 0;
  private running = 0;
  private readonly rejected = { requester: 0, global: 0 };

  constructor(options: FairOptions) {
    const positive = (name: string, v: number) => {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be an integer >= 1, got ${v}`);
      return v;
    };
    this.chunkElements = positive('chunkElements', options.chunkElements);
    this.maxPerRequester = positive('maxPerRequester', options.maxPerRequester ?? DEFAULT_MAX_PER_REQUESTER);
    this.maxQueued = positive('maxQueued', options.maxQueued ?? 2 * DEFAULT_MAX_PER_REQUESTER);
    this.now = options.now ?? (() => performance.now());
    this.msPerElement = options.msPerElement ?? 1;
    if (!(this.msPerElement > 0)) throw new RangeError(`msPerElement must be > 0, got ${options.msPerElement}`);
    this.parallelism = options.parallelism ?? 1;
  }

  /**
   * Throws 503 `unavailable` (with retryAfterSeconds) unless `n` more
   * elements from `requester` fit the bounds now. Changes nothing but the
   * refusal counters: the HTTP layer calls it with an estimate before it
   * reads the body, {@link enqueue} again with the real count.
   */
  check(requester: RequesterKey, n: number): void {
    const refusal = this.refusal(requester, Math.max(1, n));
    if (refusal) throw refusal;
  }

  private refusal(requester: RequesterKey, n: number): PcdError | undefined {
    const mine = this.queues.get(requester)?.outstanding ?? 0;
    if (mine > 0 && mine + n > this.maxPerRequester) {
      this.rejected.requester++;
      const active = Math.max(1, this.activeRequesters);
      // This requester's share drains at (workers / active requesters) of the pool's rate.
      const seconds = this.seconds((mine + n - this.maxPerRequester) * active);
      return new PcdError(
        ErrorCode.Unavailable,
        `your evaluation backlog is full: ${mine} of your blinded elements are queued or being evaluated (at most ${this.maxPerRequester} per requester): retry in about ${seconds} s`,
        { retryAfterSeconds: seconds },
      );
    }
    const small = mine === 0 && n <= this.chunkElements;
    if (this.outstanding > 0 && !small && this.outstanding + n > this.maxQueued) {
      this.rejected.global++;
      const seconds = this.seconds(this.outstanding + n - this.maxQueued);
      return new PcdError(
        ErrorCode.Unavailable,
        `the evaluators are busy: ${this.outstanding} blinded elements are queued or being evaluated (at most ${this.maxQueued} in all): retry in about ${seconds} s`,
        { retryAfterSeconds: seconds },
      );
    }
    return undefined;
  }

  /** Whole seconds (>= 1) for the pool to evaluate `elements` elements. */
  private seconds(elements: number): number {
    return Math.max(1, Math.ceil((elements * this.msPerElement) / Math.max(1, this.parallelism) / 1000));
  }

  /** Queues `item` (`n` >= 1 elements) for `requester` after {@link check}; throws its 503 if it does not fit. */
  enqueue(requester: RequesterKey, item: T, n: number): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`a batch holds at least one element, got ${n}`);
    if (this.entries.has(item)) throw new Error('this batch is already queued');
    this.check(requester, n);
    let queue = this.queues.get(requester);
    if (!queue) {
      queue = { requester, entries: [], outstanding: 0, running: 0 };
      this.queues.set(requester, queue);
    }
    const entry: Entry<T> = { item, queue, n, next: 0 };
    queue.entries.push(entry);
    this.entries.set(item, entry);
    queue.outstanding += n;
    this.outstanding += n;
    this.queued += n;
    if (!this.ring.has(requester)) this.ring.set(requester, queue);
  }

  /** The next chunk in round-robin order, now marked as running; undefined when nothing is queued. */
  next(): Chunk<T> | undefined {
    const first = this.ring.values().next();
    if (first.done) return undefined;
    const queue = first.value;
    const entry = queue.entries[0]!;
    const count = Math.min(this.chunkElements, entry.n - entry.next);
    const chunk: Chunk<T> = { item: entry.item, requester: queue.requester, first: entry.next, count, startedAt: this.now() };
    entry.next += count;
    if (entry.next === entry.n) {
      queue.entries.shift();
      this.entries.delete(entry.item);
    }
    this.queued -= count;
    queue.running++;
    this.running++;
    // To the back of the ring, or out of it when nothing of this requester is left to hand out.
    this.ring.delete(queue.requester);
    if (queue.entries.length > 0) this.ring.set(queue.requester, queue);
    return chunk;
  }

  /**
   * A chunk from {@link next} is finished (evaluated, failed, or its worker
   * died): its elements leave the backlog. `measured` (default true) feeds
   * its service time into the cost estimate; pass false for a failure.
   */
  done(chunk: Chunk<T>, measured = true): void {
    const queue = this.queues.get(chunk.requester);
    if (!queue) return; // cleared meanwhile
    queue.running--;
    this.running--;
    this.release(queue, chunk.count);
    if (measured && chunk.count > 0) {
      const ms = (this.now() - chunk.startedAt) / chunk.count;
      if (ms > 0 && Number.isFinite(ms)) this.msPerElement += EWMA_WEIGHT * (ms - this.msPerElement);
    }
  }

  /**
   * Removes what is still queued of `item` (chunks already handed out stay
   * running until {@link done}). Returns the elements removed; 0 when none
   * were queued.
   */
  cancel(item: T): number {
    const entry = this.entries.get(item);
    if (!entry) return 0;
    this.entries.delete(item);
    const { queue } = entry;
    const i = queue.entries.indexOf(entry);
    if (i >= 0) queue.entries.splice(i, 1);
    if (queue.entries.length === 0) this.ring.delete(queue.requester);
    const left = entry.n - entry.next;
    this.queued -= left;
    this.release(queue, left);
    return left;
  }

  /** Removes everything queued (running chunks are forgotten too); returns the items that had queued chunks. */
  clear(): T[] {
    const items = [...this.entries.keys()];
    this.entries.clear();
    this.ring.clear();
    this.queues.clear();
    this.queued = 0;
    this.outstanding = 0;
    this.running = 0;
    return items;
  }

  private release(queue: RequesterQueue<T>, n: number): void {
    queue.outstanding -= n;
    this.outstanding -= n;
    if (queue.outstanding === 0 && queue.running === 0 && queue.entries.length === 0) this.queues.delete(queue.requester);
  }

  /** Elements `requester` has queued or being evaluated. */
  outstandingOf(requester: RequesterKey): number {
    return this.queues.get(requester)?.outstanding ?? 0;
  }

  get activeRequesters(): number {
    return this.queues.size;
  }

  /** True when no chunk is queued (some may be running). */
  get idle(): boolean {
    return this.ring.size === 0;
  }

  get stats(): FairStats {
    return {
      queuedElements: this.queued,
      outstandingElements: this.outstanding,
      runningChunks: this.running,
      activeRequesters: this.queues.size,
      rejected: { ...this.rejected },
      msPerElement: this.msPerElement,
    };
  }
}
