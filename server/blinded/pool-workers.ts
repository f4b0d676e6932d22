/**
 * The evaluator pool's worker threads (server/blinded/pool.ts): their
 * lifecycle, apart from what they evaluate. {@link EvaluatorWorkers} starts
 * them (server/blinded/spawn.ts), sends each one the epoch keys it must
 * hold as soon as it is ready, hands a job to an idle one, routes its answer
 * back, replaces one that dies, and on close makes each zero its keys before
 * it is terminated. A job is opaque here: the pool says what to post and
 * gets the answer through {@link WorkerEvents}.
 *
 * Keys travel by postMessage only, as fresh exact-size copies transferred
 * to the worker (never workerData, never a file); the pool's own copy stays
 * on the main thread.
 */
import type { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { BackendName, KeyPair, OprfMode } from '../../shared/suite.ts';
import { startWorker } from './spawn.ts';
import type { FromWorker, ToWorker } from './worker.ts';

/** How long close() waits for the workers to say they zeroed their keys before terminating them, ms. */
const CLOSE_WAIT_MS = 2000;

/** An epoch's key as the pool holds it (and sends it to each worker). */
export interface HeldKey {
  readonly mode: OprfMode;
  readonly key: KeyPair;
}

/** What the workers tell the pool. `worker` is the slot index (a replacement keeps its slot's). */
export interface WorkerEvents<J> {
  /** A worker answered `job`. */
  chunk(job: J, out: Uint8Array, worker: number): void;
  /** A worker failed `job`: `code` is the PcdError code the backend threw, if any. */
  error(job: J, code: string | undefined, message: string, worker: number): void;
  /** A ready worker stopped, while running `job` or idle; it is being replaced. */
  crashed(job: J | undefined, worker: number): void;
  /** The number of ready workers changed (`threads`): idle ones may take jobs. */
  changed(threads: number): void;
  /** No worker could start, or none is left: from now on there are none. */
  fallBack(reason: string): void;
}

interface Slot<J> {
  readonly index: number;
  readonly worker: Worker;
  state: 'starting' | 'ready' | 'dead';
  readonly ready: Promise<void>;
  running?: { readonly id: number; readonly job: J };
  readonly queries: Map<number, (epochs: number[] | undefined) => void>;
  lastError?: string;
}

export class EvaluatorWorkers<J> {
  private readonly slots: (Slot<J> | undefined)[] = [];
  private nextId = 1;
  /** Closed, or fallen back: nothing is started or replaced any more. */
  private stopped = false;
  private closed = false;

  constructor(
    private readonly o: {
      size: number;
      backend: BackendName;
      logger: Logger;
      /** The keys every ready worker must hold: the pool's map, read when a worker becomes ready. */
      keys: ReadonlyMap<number, HeldKey>;
      events: WorkerEvents<J>;
    },
  ) {}

  /** Workers ready now. */
  get threads(): number {
    return this.slots.filter((s) => s?.state === 'ready').length;
  }

  /** True when a ready worker has no job. */
  get idle(): boolean {
    return this.idleSlot() !== undefined;
  }

  /**
   * Starts `size` workers and resolves once each is ready or failed; when
   * none could start, reports {@link WorkerEvents.fallBack}. Never rejects.
   */
  async start(): Promise<void> {
    if (this.stopped) return;
    const t0 = performance.now();
    const slots = Array.from({ length: this.o.size }, (_, i) => this.spawn(i));
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
      this.o.logger.error({ failed: failed.length, err: reason }, 'some evaluator worker threads could not start');
      results.forEach((r, i) => {
        if (r.status === 'rejected') this.slots[i] = undefined;
      });
    }
    this.o.logger.info({ threads: this.threads, backend: this.o.backend, ms: Math.round(performance.now() - t0) }, 'evaluator worker threads started');
    this.o.events.changed(this.threads);
  }

  /** Hands `job` to the first idle worker, posting `message(id)` (and transferring `transfer`); false when none is idle. */
  dispatch(job: J, message: (id: number) => ToWorker, transfer: ArrayBuffer[] = []): boolean {
    const slot = this.idleSlot();
    if (!slot) return false;
    const id = this.nextId++;
    slot.running = { id, job };
    slot.worker.ref(); // a busy worker keeps the process alive until it answers
    this.post(slot, message(id), transfer);
    return true;
  }

  /** Sends `epoch`'s key to every ready worker (one that becomes ready later gets it then). */
  sendKey(epoch: number, held: HeldKey): void {
    for (const slot of this.slots) if (slot?.state === 'ready') this.postKey(slot, epoch, held);
  }

  /** Makes every ready worker zero and forget `epoch`'s key. */
  dropKey(epoch: number): void {
    for (const slot of this.slots) if (slot?.state === 'ready') this.post(slot, { t: 'drop', epoch });
  }

  /** Epochs whose keys each running worker holds (asked of the workers themselves), ascending. */
  async epochs(): Promise<number[][]> {
    const ready = this.slots.filter((s): s is Slot<J> => s?.state === 'ready');
    const lists = await Promise.all(ready.map((slot) => this.ask(slot)));
    return lists.filter((l): l is number[] => l !== undefined).map((l) => l.sort((a, b) => a - b));
  }

  /** For tests: ends worker `index` abruptly, as a crash would (it is replaced). */
  async crash(index: number): Promise<void> {
    const slot = this.slots[index];
    if (slot?.state === 'ready') await slot.worker.terminate();
  }

  /**
   * Forgets every job, makes every ready worker zero the keys it holds (the
   * drops are posted before this returns, so the caller may zero its own
   * copies right after the call), waits for them to confirm (bounded: a
   * stuck worker is terminated all the same, its memory goes with the
   * thread) and terminates them. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = this.stopped = true;
    const slots = this.slots.filter((s): s is Slot<J> => s !== undefined);
    const zeroed: Promise<unknown>[] = [];
    for (const s of slots) {
      s.running = undefined;
      if (s.state !== 'ready') continue;
      for (const epoch of this.o.keys.keys()) this.post(s, { t: 'drop', epoch });
      // A worker handles messages in order: its answer to this comes after it zeroed every key dropped above.
      zeroed.push(this.ask(s));
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(zeroed), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)))]);
    clearTimeout(timer);
    await Promise.all(slots.map((s) => this.kill(s)));
    this.slots.length = 0;
  }

  private idleSlot(): Slot<J> | undefined {
    if (this.stopped) return undefined;
    return this.slots.find((s): s is Slot<J> => s?.state === 'ready' && s.running === undefined);
  }

  private fallBack(reason: string): void {
    this.stopped = true;
    this.o.events.fallBack(reason);
  }

  private spawn(index: number): Slot<J> {
    const { worker, ready } = startWorker(this.o.backend);
    const slot: Slot<J> = { index, worker, state: 'starting', ready, queries: new Map() };
    this.slots[index] = slot;
    ready.then(
      () => {
        if (slot.state !== 'starting' || this.closed) return;
        slot.state = 'ready';
        for (const [epoch, k] of this.o.keys) this.postKey(slot, epoch, k);
        this.o.events.changed(this.threads);
      },
      () => {},
    );
    worker.on('message', (m: FromWorker) => {
      switch (m.t) {
        case 'chunk': {
          const job = this.answered(slot, m.id);
          if (job !== undefined) this.o.events.chunk(job, m.out, slot.index);
          return;
        }
        case 'error': {
          const job = this.answered(slot, m.id);
          if (job !== undefined) this.o.events.error(job, m.code, m.message, slot.index);
          return;
        }
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

  /** The job answer `id` is for, if it is the slot's current one; the slot is idle again. */
  private answered(slot: Slot<J>, id: number): J | undefined {
    const running = slot.running;
    if (!running || running.id !== id) return undefined;
    slot.running = undefined;
    slot.worker.unref();
    return running.job;
  }

  private onCrash(slot: Slot<J>, code: number): void {
    if (this.closed) return;
    const job = slot.running?.job;
    slot.running = undefined;
    this.o.logger.error({ worker: slot.index, exitCode: code, err: slot.lastError === undefined ? undefined : firstLine(slot.lastError) }, 'evaluator worker stopped: replacing it');
    this.o.events.crashed(job, slot.index);
    this.o.events.changed(this.threads);
    void this.replace(slot.index);
  }

  private async replace(index: number): Promise<void> {
    if (this.stopped) return;
    const slot = this.spawn(index);
    try {
      await slot.ready;
    } catch (e) {
      if (this.closed) return;
      this.slots[index] = undefined;
      const reason = firstLine(e);
      this.o.logger.error({ worker: index, err: reason }, 'a replacement evaluator worker could not start');
      if (!this.slots.some((s) => s && s.state !== 'dead')) this.fallBack(`no evaluator worker left: ${reason}`);
    }
  }

  /** Asks a worker which epochs it holds; undefined if it stops first. */
  private ask(slot: Slot<J>): Promise<number[] | undefined> {
    return new Promise((resolve) => {
      const id = this.nextId++;
      slot.queries.set(id, resolve);
      this.post(slot, { t: 'epochs', id });
    });
  }

  private postKey(slot: Slot<J>, epoch: number, { mode, key }: HeldKey): void {
    // Fresh exact-size copies, transferred: the pool's own copy stays here.
    const secretKey = Uint8Array.from(key.secretKey);
    const publicKey = Uint8Array.from(key.publicKey);
    this.post(slot, { t: 'key', epoch, mode, secretKey, publicKey }, [secretKey.buffer, publicKey.buffer]);
  }

  private async kill(slot: Slot<J>): Promise<void> {
    slot.state = 'dead';
    await slot.worker.terminate();
  }

  private post(slot: Slot<J>, m: ToWorker, transfer: ArrayBuffer[] = []): void {
    slot.worker.postMessage(m, transfer);
  }
}

/** The first line of an error's message, at most 200 characters: what the log may hold of a worker's failure. */
export function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n', 1)[0]?.slice(0, 200) ?? '';
}
