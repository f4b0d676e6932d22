/**
 * The build of an epoch's buckets: tag(y) = the first tagBytes bytes of
 * Evaluate(sk, utf8(y)) for every registered y (RFC 9497 §3.3.1), grouped by
 * bucketOf(y, bucketBits) and sorted.
 *
 * Steps:
 * 1. {@link snapshotDirectory}: a copy of the in-memory directory, taken in
 *    one synchronous step together with the directory version it reflects,
 *    so a build sees one consistent state (changes made later reach the
 *    table through the caller's pending queue, server/blinded/epochs.ts).
 * 2. {@link computeTags}: the Evaluates, on one worker thread per core
 *    (`PCD_BUILD_THREADS` overrides; server/blinded/worker.ts `tags` jobs of
 *    {@link WORKER_CHUNK} numbers, the key sent to each worker by
 *    postMessage and dropped at the end), with progress. A small job, or
 *    one whose workers cannot start, runs on the main thread in slices that
 *    yield to the event loop, with the backend already loaded there.
 * 3. {@link assemble}: bucket ids, a counting sort into buckets, a sort of
 *    each bucket, merging of colliding tags; in slices too.
 *
 * Throughput is the backend's Evaluate rate times the threads: about 780/s
 * per core with `noble`, ~4,500/s with `sodium` (shared/suite.ts).
 *
 * Truncated tags may collide: two registered numbers of one bucket share a
 * tag with probability about n^2 / 2^(8 tagBytes + 1) for n numbers in the
 * bucket (3e-6 for a 10^7-number bucket at the default 8 bytes). A build
 * merges them into one entry with both masks OR'ed (a false positive for one
 * of them, never a false "SMS only"); a later change to one of the two
 * rewrites that shared entry until the next build. Builds report how many
 * collisions they merged.
 */
import type { Logger } from 'pino';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { bucketCount, bucketOf, compareTags, truncateTag } from '../../shared/buckets.ts';
import { e164ToKey, keyToE164, type E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import type { KeyPair, OprfBackend, OprfMode, ScalarBytes } from '../../shared/suite.ts';
import type { Directory } from '../directory.ts';
import type { EpochStats } from './epoch.ts';
import { startWorker } from './spawn.ts';
import { BUILD_THREADS_ENV, threadCount } from './threads.ts';
import { BucketTable, type EpochParams } from './table.ts';
import type { FromWorker, ToWorker } from './worker.ts';

/** Longest stretch of build work on the main thread between two yields to the event loop, in ms. */
const SLICE_MS = 20;
/** Smallest job worth starting worker threads for (they take ~0.3 s to start). */
export const WORKER_MIN_NUMBERS = 2000;
/** Numbers per `tags` job sent to a worker. */
export const WORKER_CHUNK = 500;
/** Directory size from which a progress bar is drawn. */
const PROGRESS_MIN_NUMBERS = 1000;

/** A copy of the directory: numbers as e164ToKey, their masks, and the directory version they reflect. */
export interface Snapshot {
  keys: Float64Array;
  masks: Uint8Array;
  version: number;
}

/** Copies the directory in one synchronous step; `version` must be read in the same step (the caller passes its reader). */
export function snapshotDirectory(directory: Directory, version: () => number): Snapshot {
  const n = directory.size;
  const keys = new Float64Array(n);
  const masks = new Uint8Array(n);
  let i = 0;
  for (const { number, mask } of directory.entries()) {
    keys[i] = e164ToKey(number);
    masks[i] = mask;
    i++;
  }
  return { keys: keys.subarray(0, i), masks: masks.subarray(0, i), version: version() };
}

const utf8 = new TextEncoder();

/** One tag on the calling thread (directory changes, small replays). */
export function tagOf(backend: OprfBackend, mode: OprfMode, secretKey: ScalarBytes, number: E164, tagBytes: number): Uint8Array {
  return truncateTag(backend.evaluate(mode, secretKey, utf8.encode(number)), tagBytes);
}

/** Stops a build (server closing, epoch destroyed): checked between chunks. */
export interface AbortFlag {
  aborted: boolean;
}

export function checkAbort(abort: AbortFlag): void {
  if (abort.aborted) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down: the epoch build was abandoned');
}

/**
 * Lets requests in between slices of work on the main thread: `due()` is
 * cheap to call per item and true once SLICE_MS have passed; then `yield()`
 * gives the event loop a turn and checks for an abort.
 */
/** Items a loop handles between looks at the clock (a power of two, so the test is a mask). */
const CLOCK_EVERY = 1024;
const atCheckpoint = (i: number): boolean => (i & (CLOCK_EVERY - 1)) === CLOCK_EVERY - 1;

class Slicer {
  private since = performance.now();

  constructor(private readonly abort: AbortFlag) {}

  due(): boolean {
    return performance.now() - this.since >= SLICE_MS;
  }

  async yield(): Promise<void> {
    await yieldToLoop();
    checkAbort(this.abort);
    this.since = performance.now();
  }
}

/** Threads a build uses: PCD_BUILD_THREADS, else one per core (1 means the main thread). */
export function buildThreads(): number {
  return threadCount(BUILD_THREADS_ENV, process.env[BUILD_THREADS_ENV], 1).threads;
}

export interface TagOptions {
  /** The backend loaded on this thread: used inline, and its name picks the workers' backend. */
  backend: OprfBackend;
  /** Worker threads (default 1: the main thread). */
  threads?: number;
  onProgress?: (done: number) => void;
  abort?: AbortFlag;
}

/**
 * Evaluates on worker threads (server/blinded/worker.ts `tags` jobs); a
 * string (why) when the workers cannot start, so the caller computes inline.
 */
async function tagsOnWorkers(
  mode: OprfMode,
  tagBytes: number,
  key: KeyPair,
  keys: Float64Array,
  threads: number,
  options: Required<TagOptions>,
): Promise<Uint8Array | string> {
  const started = Array.from({ length: threads }, () => startWorker(options.backend.name));
  const stop = () => Promise.all(started.map((s) => s.worker.terminate())).then(() => undefined);
  try {
    await Promise.all(started.map((s) => s.ready));
  } catch (e) {
    await stop();
    return (e as Error).message.split('\n', 1)[0]!;
  }

  const out = new Uint8Array(keys.length * tagBytes);
  const SLOT = 0; // a build worker is ours alone: one key slot is enough
  let next = 0;
  let done = 0;
  try {
    await Promise.all(
      started.map(
        ({ worker }) =>
          new Promise<void>((resolve, reject) => {
            worker.ref(); // working: keep the process alive until the job ends
            const post = (m: ToWorker, transfer: ArrayBuffer[] = []) => worker.postMessage(m, transfer);
            const send = (): void => {
              if (options.abort.aborted) return reject(new PcdError(ErrorCode.Unavailable, 'the server is shutting down: the epoch build was abandoned'));
              if (next >= keys.length) {
                // Zero the worker's copy of the key, and wait until it has, before the thread is terminated.
                post({ t: 'drop', epoch: SLOT });
                post({ t: 'epochs', id: -1 });
                return;
              }
              const first = next;
              next = Math.min(keys.length, next + WORKER_CHUNK);
              const numbers = keys.slice(first, next);
              post({ t: 'tags', id: first, epoch: SLOT, tagBytes, numbers }, [numbers.buffer]);
            };
            worker.on('message', (m: FromWorker) => {
              if (m.t === 'tags') {
                out.set(m.tags, m.id * tagBytes);
                done += m.tags.length / tagBytes;
                options.onProgress(done);
                send();
              } else if (m.t === 'epochs') {
                resolve();
              } else if (m.t === 'error') {
                reject(new Error(`build worker: ${m.message}`));
              }
            });
            worker.on('error', reject);
            worker.on('exit', (code) => reject(new Error(`build worker exited with code ${code}`)));
            const secretKey = key.secretKey.slice(); // a copy, transferred: the worker's own
            post({ t: 'key', epoch: SLOT, mode, secretKey, publicKey: key.publicKey.slice() }, [secretKey.buffer]);
            send();
          }),
      ),
    );
  } finally {
    await stop();
  }
  return out;
}

async function tagsInline(mode: OprfMode, tagBytes: number, key: KeyPair, keys: Float64Array, options: Required<TagOptions>): Promise<Uint8Array> {
  const out = new Uint8Array(keys.length * tagBytes);
  const slicer = new Slicer(options.abort);
  for (let i = 0; i < keys.length; i++) {
    out.set(tagOf(options.backend, mode, key.secretKey, keyToE164(keys[i]!), tagBytes), i * tagBytes);
    if (slicer.due()) {
      options.onProgress(i + 1);
      await slicer.yield();
    }
  }
  options.onProgress(keys.length);
  return out;
}

/**
 * The tags of `keys` (e164ToKey of numbers) under one epoch key, in order:
 * on `threads` worker threads when more than one and the job is worth it
 * (falling back to the main thread, with the reason in `fallback`, when they
 * cannot start), else inline in slices that yield to the event loop.
 * Exported for benchmarks and tests, which check both paths give the same bytes.
 */
export async function computeTags(
  params: Pick<EpochParams, 'mode' | 'tagBytes'>,
  key: KeyPair,
  keys: Float64Array,
  options: TagOptions,
): Promise<{ tags: Uint8Array; threads: number; fallback?: string }> {
  const o: Required<TagOptions> = { threads: 1, onProgress: () => {}, abort: { aborted: false }, ...options };
  const threads = Math.min(Math.max(1, Math.floor(o.threads)), Math.ceil(keys.length / WORKER_CHUNK));
  let fallback: string | undefined;
  if (threads > 1) {
    const got = await tagsOnWorkers(params.mode, params.tagBytes, key, keys, threads, o);
    checkAbort(o.abort);
    if (typeof got !== 'string') return { tags: got, threads };
    fallback = got;
  }
  const tags = await tagsInline(params.mode, params.tagBytes, key, keys, o);
  checkAbort(o.abort);
  return { tags, threads: 1, ...(fallback !== undefined ? { fallback } : {}) };
}

/** Threads worth using for `n` numbers: all of {@link buildThreads} from {@link WORKER_MIN_NUMBERS} on, else the main thread. */
export function threadsFor(n: number): number {
  return n >= WORKER_MIN_NUMBERS ? buildThreads() : 1;
}

/** Groups tags by bucket and sorts each bucket; equal tags in a bucket are merged (masks OR'ed). */
export async function assemble(
  epoch: number,
  params: EpochParams,
  snapshot: Pick<Snapshot, 'keys' | 'masks'>,
  tags: Uint8Array,
  abort: AbortFlag,
): Promise<{ table: BucketTable; collisions: number }> {
  const { bucketBits, tagBytes } = params;
  const n = snapshot.keys.length;
  const buckets = bucketCount(bucketBits);
  const slicer = new Slicer(abort);
  const bucketIds = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    bucketIds[i] = bucketOf(keyToE164(snapshot.keys[i]!), bucketBits);
    if (atCheckpoint(i) && slicer.due()) await slicer.yield();
  }
  const offsets = new Uint32Array(buckets + 1);
  for (let i = 0; i < n; i++) offsets[bucketIds[i]! + 1]!++;
  for (let b = 0; b < buckets; b++) offsets[b + 1]! += offsets[b]!;
  const order = new Uint32Array(n);
  const cursor = offsets.slice(0, buckets);
  for (let i = 0; i < n; i++) order[cursor[bucketIds[i]!]!++] = i;

  // Sort key: the first 4 bytes as an unsigned integer (tagBytes >= 4), full compare on ties.
  const head = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const at = i * tagBytes;
    head[i] = ((tags[at]! << 24) | (tags[at + 1]! << 16) | (tags[at + 2]! << 8) | tags[at + 3]!) >>> 0;
  }
  const cmp = (x: number, y: number): number => head[x]! - head[y]! || compareTags(tags, x * tagBytes, tags, y * tagBytes, tagBytes);

  const counts = new Uint32Array(buckets);
  const outTags = new Uint8Array(n * tagBytes);
  const outMasks = new Uint8Array(n);
  let w = 0;
  let collisions = 0;
  for (let b = 0; b < buckets; b++) {
    const start = offsets[b]!;
    const end = offsets[b + 1]!;
    if (end - start > 1) order.subarray(start, end).sort(cmp);
    const first = w;
    for (let k = start; k < end; k++) {
      const i = order[k]!;
      if (w > first && compareTags(outTags, (w - 1) * tagBytes, tags, i * tagBytes, tagBytes) === 0) {
        outMasks[w - 1]! |= snapshot.masks[i]!;
        collisions++;
        continue;
      }
      outTags.set(tags.subarray(i * tagBytes, (i + 1) * tagBytes), w * tagBytes);
      outMasks[w] = snapshot.masks[i]!;
      w++;
    }
    counts[b] = w - first;
    // One bucket is sorted in one go: a full-sync (bucketBits 0) bucket of 10^7 tags blocks for seconds.
    if ((atCheckpoint(b) || end - start > CLOCK_EVERY) && slicer.due()) await slicer.yield();
  }
  // Copies only when collisions were merged (the arrays are then too long): at 10^7 numbers a copy is 90 MB of peak memory.
  const exact = w === n;
  const table = BucketTable.fromCounts(epoch, bucketBits, tagBytes, counts, exact ? outTags : outTags.slice(0, w * tagBytes), exact ? outMasks : outMasks.slice(0, w));
  return { table, collisions };
}

/** What a finished build reports. */
export interface BuildResult {
  table: BucketTable;
  /** The directory version of the snapshot it was built from. */
  version: number;
  numbers: number;
  seconds: number;
  threads: number;
  collisions: number;
  /** Why worker threads were not used, when they could not start. */
  fallback?: string;
  /** Tags taken from elsewhere rather than computed (a shared store's stored parts, server/pg/epochbuild.ts). */
  reused?: number;
}

/**
 * What builds a table from a snapshot: {@link buildTable}, or one that takes
 * some tags from elsewhere and says how many in `reused` (a shared store's
 * build in stored parts, server/pg/epochbuild.ts).
 */
export type TableBuilder = (
  epoch: number,
  params: EpochParams,
  key: KeyPair,
  snapshot: Snapshot,
  options: { backend: OprfBackend; onProgress: (done: number) => void; abort: AbortFlag },
) => Promise<BuildResult>;

/** Builds an epoch's table from a snapshot: tags (on workers), then assembly. */
export async function buildTable(
  epoch: number,
  params: EpochParams,
  key: KeyPair,
  snapshot: Snapshot,
  options: { backend: OprfBackend; threads?: number; onProgress?: (done: number) => void; abort: AbortFlag },
): Promise<BuildResult> {
  const n = snapshot.keys.length;
  const t0 = performance.now();
  // A turn for the event loop after the (synchronous) snapshot, before any work.
  await yieldToLoop();
  checkAbort(options.abort);
  const { tags, threads, fallback } = await computeTags(params, key, snapshot.keys, {
    backend: options.backend,
    threads: options.threads ?? threadsFor(n),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    abort: options.abort,
  });
  const { table, collisions } = await assemble(epoch, params, snapshot, tags, options.abort);
  checkAbort(options.abort);
  const seconds = (performance.now() - t0) / 1000;
  return { table, version: snapshot.version, numbers: n, seconds, threads, collisions, ...(fallback !== undefined ? { fallback } : {}) };
}

/**
 * {@link buildTable} with what the operator sees: a progress bar on stderr
 * (`progressBar`, from {@link PROGRESS_MIN_NUMBERS} numbers), the build
 * counters in `stats`, and log lines (collisions merged, workers that could not start).
 */
export async function buildEpoch(
  epoch: number,
  params: EpochParams,
  key: KeyPair,
  snapshot: Snapshot,
  o: { backend: OprfBackend; abort: AbortFlag; logger: Logger; progressBar: boolean; stats: EpochStats; onProgress: (done: number) => void; builder?: TableBuilder },
): Promise<BuildResult> {
  const n = snapshot.keys.length;
  const bar = new ProgressBar(`pcd: building epoch ${epoch}`, n, o.progressBar && n >= PROGRESS_MIN_NUMBERS);
  const built = await (o.builder ?? buildTable)(epoch, params, key, snapshot, {
    backend: o.backend,
    abort: o.abort,
    onProgress: (done) => {
      o.onProgress(done);
      bar.update(done);
    },
  });
  if (built.fallback) o.logger.warn({ reason: built.fallback }, 'build worker threads could not start: built on the main thread');
  const { seconds, threads, collisions } = built;
  const rate = seconds > 0 ? n / seconds : n;
  const reused = built.reused;
  o.stats.evaluations += n - (reused ?? 0);
  o.stats.builds++;
  o.stats.lastBuild = { epoch, numbers: n, seconds, rate, threads, collisions, pendingChanges: 0, ...(reused !== undefined ? { reused } : {}) };
  const from = reused ? `, ${reused.toLocaleString('en-US')} tags from an earlier builder` : '';
  bar.finish(`pcd: built epoch ${epoch}: ${n.toLocaleString('en-US')} numbers in ${seconds.toFixed(1)} s (${Math.round(rate)}/s, ${threads} thread${threads > 1 ? 's' : ''}${from})`);
  o.logger.info({ epoch, numbers: n, seconds, rate: Math.round(rate), threads, collisions, backend: o.backend.name, ...(reused !== undefined ? { reused } : {}) }, 'built epoch buckets');
  if (collisions > 0) o.logger.warn({ epoch, collisions, tagBytes: params.tagBytes }, 'truncated tags collided in a bucket; their masks were merged');
  return built;
}

/** Progress bar on stderr: numbers done / total, rate, ETA; redrawn at most 4 times a second (every 5 s when not a TTY). */
export class ProgressBar {
  private readonly start = performance.now();
  private last = 0;
  private lastDone = -1;
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly enabled: boolean,
  ) {}

  update(done: number): void {
    if (!this.enabled || done === this.lastDone) return;
    const t = performance.now();
    if (t - this.last < (this.tty ? 250 : 5000) && done < this.total) return;
    this.last = t;
    this.lastDone = done;
    const secs = (t - this.start) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const eta = rate > 0 ? (this.total - done) / rate : Infinity;
    const width = 24;
    const filled = this.total ? Math.round((done / this.total) * width) : width;
    const line =
      `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ` +
      `${done.toLocaleString('en-US')}/${this.total.toLocaleString('en-US')} ` +
      `${this.total ? Math.floor((done / this.total) * 100) : 100}% ${Math.round(rate)}/s ETA ${formatSeconds(eta)}`;
    process.stderr.write(this.tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }

  finish(summary: string): void {
    if (!this.enabled) return;
    process.stderr.write(this.tty ? `\r\x1b[2K${summary}\n` : `${summary}\n`);
  }
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
