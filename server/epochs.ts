/**
 * Epochs of the blinded design: an epoch is one OPRF key, the parameters
 * fixed with it (mode, bucketBits, tagBytes) and the buckets of tags built
 * from it. Everything derived from a key belongs to its epoch and dies with it.
 *
 * Where things live:
 * - metadata: the `epochs` table (epoch, public key, params, created_at,
 *   retires_at, destroyed_at);
 * - secret keys: `<dataDir>/oprf-keys.json` (server/keys.ts), never in the
 *   database, never logged, never sent;
 * - built buckets: in memory ({@link BucketTable}) and cached in
 *   `<dataDir>/epochs/<epoch>.bin` (format below), so a restart does not
 *   recompute every tag: the cache is used when it was built from the
 *   directory version the store has now, else the epoch is rebuilt.
 *
 * Building: tag(y) = first tagBytes bytes of Evaluate(sk, utf8(y)) for every
 * registered y (RFC 9497 §3.3.1), grouped by bucketOf(y, bucketBits) and
 * sorted. At ~300 Evaluate/s per core this is the directory build cost the
 * benchmarks measure (10^4 numbers: ~30 s on one core). It runs off the
 * request path: on worker threads when the directory is large enough to pay
 * for starting them (the secret key goes to them in memory only), else
 * inline in chunks that yield to the event loop, so the server keeps
 * answering while an epoch builds.
 *
 * Directory changes update every live epoch's affected bucket before the
 * admin call returns (one Evaluate per changed number per epoch); the cache
 * file follows, debounced.
 *
 * Lifecycle: the first start creates epoch 1. `rotate()` builds epoch N+1
 * with a fresh key while N keeps serving, then makes it current and gives N
 * `retires_at = now + graceMs`. Past that instant (checked at start, on every
 * request that names an epoch, and on a timer, always with the injected
 * clock) the epoch is destroyed: `destroyed_at` is set first, then its key is
 * removed from the key file and its cache file deleted; requests for it get
 * 410 epoch_retired. Every step is ordered so that a crash at any point is
 * finished at the next start (a destroyed epoch whose key is still in the
 * file loses it then; a key written by a rotation that never reached the
 * database is removed), and a live epoch whose key is missing stops the
 * server with an error that says so: a new key is never made up silently.
 *
 * Truncated tags may collide: two registered numbers of one bucket share a
 * tag with probability about n^2 / 2^(8 tagBytes + 1) for n numbers in the
 * bucket (3e-6 for a 10^7-number bucket at the default 8 bytes). A build
 * merges them into one entry with both masks OR'ed (a false positive for one
 * of them, never a false "SMS only"); a later change to one of the two
 * rewrites that shared entry until the next build. Builds report how many
 * collisions they merged.
 *
 * ## Cache file `<dataDir>/epochs/<epoch>.bin` (little-endian)
 *
 *   offset  size          field
 *   0       4             magic "PCDE"
 *   4       1             format version (1)
 *   5       1             mode (0 oprf, 1 voprf)
 *   6       1             bucketBits
 *   7       1             tagBytes
 *   8       4             epoch (u32)
 *   12      4             reserved, 0
 *   16      8             directory version it reflects (u64)
 *   24      8             entries n (u64)
 *   32      32            the epoch's public key
 *   64      4 * 2^bits    entries per bucket (u32 each)
 *   ...     n * tagBytes  tags, bucket by bucket, ascending within a bucket
 *   ...     n             capability masks, same order
 *   ...     32            SHA-256 of everything above
 *
 * It holds registered numbers' tags only (they are in the directory anyway),
 * is written atomically (temp, fsync, rename) and deleted with the epoch.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { Bucket, DEFAULT_TAG_BYTES, bucketCount, bucketOf, checkBucketBits, checkTagBytes, compareTags, truncateTag } from '../shared/buckets.ts';
import type { DirectoryChange } from '../shared/design.ts';
import { e164ToKey, keyToE164, type E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { MODES, evaluate, generateKeyPair, publicKeyOf, type KeyPair, type OprfMode } from '../shared/oprf.ts';
import type { ServerContext } from './context.ts';
import { KeyFile, writeFileAtomic } from './keys.ts';
import { IMPORT_OPRF_JS, oprfWorkerData } from './workers.ts';

export const EPOCHS_DIR = 'epochs';
export const DEFAULT_GRACE_MS = 24 * 60 * 60 * 1000;
/**
 * Default bucket bits of a new epoch when none is configured: 0, full
 * directory sync. It is the most private setting (the server learns no bit
 * about any looked-up number) and right for small and test directories; a
 * large directory should be given --bucket-bits explicitly, since a bucket
 * holds directory/2^b tags. Picking b from the directory size by default
 * would trade privacy away silently.
 */
export const DEFAULT_BUCKET_BITS = 0;
export const DEFAULT_MODE: OprfMode = 'voprf';

/** Longest stretch of build work on the main thread between two yields to the event loop, in ms. */
const SLICE_MS = 20;
/** Smallest directory worth starting worker threads for (they take ~0.3 s to start). */
const WORKER_MIN_NUMBERS = 2000;
/** Numbers per message to a worker. */
const WORKER_CHUNK = 500;
/** Directory size from which a progress bar is drawn (when options.progress). */
const PROGRESS_MIN_NUMBERS = 1000;
/** Epochs served at once: the config reply lists at most 64 (shared/messages.ts). */
const MAX_LIVE_EPOCHS = 64;
const PERSIST_DEBOUNCE_MS = 1000;
const PERSIST_MAX_WAIT_MS = 10_000;

export interface EpochParams {
  mode: OprfMode;
  bucketBits: number;
  tagBytes: number;
}

/** What `GET /v1/blinded/config` lists about an epoch. */
export interface PublicEpoch extends EpochParams {
  epoch: number;
  publicKey: Uint8Array;
  createdAt: number;
  retiresAt?: number;
}

/** Counters for tests, benchmarks and the operator: how the buckets came to be. */
export interface EpochStats {
  /** Epochs built from the directory (Evaluate for every number). */
  builds: number;
  /** Epochs loaded from their cache file. */
  cacheLoads: number;
  /** Server-side Evaluate calls (builds and directory changes). */
  evaluations: number;
  /** The last build: numbers, seconds, numbers per second, threads used, merged tag collisions. */
  lastBuild?: {
    epoch: number;
    numbers: number;
    seconds: number;
    rate: number;
    threads: number;
    collisions: number;
    /** Directory changes that arrived during the build and were applied after it. */
    pendingChanges: number;
  };
}

/** The current epoch among live ones, oldest first: the newest that is not retiring, else the newest. The audit applies the same rule. */
export function pickCurrent<T>(live: readonly T[], retiring: (e: T) => boolean): T | undefined {
  return live.filter((e) => !retiring(e)).at(-1) ?? live.at(-1);
}

/** A row of the `epochs` table. */
export interface EpochRow {
  epoch: number;
  public_key: Buffer;
  mode: string;
  bucket_bits: number;
  tag_bytes: number;
  created_at: number;
  retires_at: number | null;
  destroyed_at: number | null;
}

// ---------------------------------------------------------------------------
// Buckets of one epoch

/**
 * All buckets of one epoch: a compact base (per-bucket offsets, tags and
 * masks in bucket order, as built or loaded) plus an overlay of buckets
 * changed since, as immutable {@link Bucket}s. Writing the cache merges the
 * overlay into a new base.
 */
export class BucketTable {
  private readonly overlay = new Map<number, Bucket>();
  private readonly etags = new Map<number, string>();
  private entries: number;

  private constructor(
    readonly epoch: number,
    readonly bucketBits: number,
    readonly tagBytes: number,
    private offsets: Uint32Array,
    private tags: Uint8Array,
    private masks: Uint8Array,
  ) {
    this.entries = masks.length;
  }

  /** From per-bucket counts and the tags and masks in bucket order. */
  static fromCounts(epoch: number, bucketBits: number, tagBytes: number, counts: Uint32Array, tags: Uint8Array, masks: Uint8Array): BucketTable {
    const offsets = new Uint32Array(counts.length + 1);
    for (let b = 0; b < counts.length; b++) offsets[b + 1] = offsets[b]! + counts[b]!;
    if (offsets[counts.length] !== masks.length || tags.length !== masks.length * tagBytes) {
      throw new Error(`bucket table of epoch ${epoch}: counts, tags and masks disagree`);
    }
    return new BucketTable(epoch, bucketBits, tagBytes, offsets, tags, masks);
  }

  get bucketCount(): number {
    return this.offsets.length - 1;
  }

  /** Entries (tags) in all buckets. */
  get size(): number {
    return this.entries;
  }

  /** Buckets changed since the last merge. */
  get changedBuckets(): number {
    return this.overlay.size;
  }

  /** The wire form of a bucket: views, not copies; callers must not write to them. */
  view(bucket: number): { tags: Uint8Array; capabilities: Uint8Array } {
    const o = this.overlay.get(bucket);
    if (o) return { tags: o.tags, capabilities: o.capabilities };
    const start = this.offsets[bucket]!;
    const end = this.offsets[bucket + 1]!;
    return { tags: this.tags.subarray(start * this.tagBytes, end * this.tagBytes), capabilities: this.masks.subarray(start, end) };
  }

  /** Strong ETag of a bucket's content, memoised until the bucket changes. */
  etag(bucket: number): string {
    let etag = this.etags.get(bucket);
    if (etag === undefined) {
      const { tags, capabilities } = this.view(bucket);
      const h = crypto.createHash('sha256').update(tags).update(capabilities).digest('hex').slice(0, 16);
      etag = `"e${this.epoch}-b${bucket}-${h}"`;
      this.etags.set(bucket, etag);
    }
    return etag;
  }

  /** Sets `tag` in `bucket` to `mask` (0 removes it). */
  set(bucket: number, tag: Uint8Array, mask: number): void {
    let b = this.overlay.get(bucket);
    if (!b) {
      const v = this.view(bucket);
      b = Bucket.fromWire(v.tags, v.capabilities, this.tagBytes);
    }
    const next = b.with(tag, mask);
    if (next === b && this.overlay.has(bucket)) return;
    this.entries += next.count - b.count;
    this.overlay.set(bucket, next);
    this.etags.delete(bucket);
  }

  /** Merges the overlay into the base; returns per-bucket counts of the result. */
  compact(): Uint32Array {
    const n = this.bucketCount;
    const counts = new Uint32Array(n);
    for (let b = 0; b < n; b++) counts[b] = this.overlay.get(b)?.count ?? this.offsets[b + 1]! - this.offsets[b]!;
    if (this.overlay.size === 0) return counts;
    const tags = new Uint8Array(this.entries * this.tagBytes);
    const masks = new Uint8Array(this.entries);
    const offsets = new Uint32Array(n + 1);
    for (let b = 0; b < n; b++) {
      const v = this.view(b);
      const at = offsets[b]!;
      tags.set(v.tags, at * this.tagBytes);
      masks.set(v.capabilities, at);
      offsets[b + 1] = at + v.capabilities.length;
    }
    this.offsets = offsets;
    this.tags = tags;
    this.masks = masks;
    this.overlay.clear(); // content is unchanged, so the memoised ETags stay valid
    return counts;
  }

  /** The cache file's bytes (merges the overlay first). */
  serialize(header: { mode: OprfMode; publicKey: Uint8Array; directoryVersion: number }): Buffer {
    const counts = this.compact();
    const n = this.entries;
    const size = 64 + 4 * counts.length + n * this.tagBytes + n + 32;
    const out = Buffer.alloc(size);
    out.write('PCDE', 0, 'latin1');
    out.writeUInt8(1, 4);
    out.writeUInt8(MODES.indexOf(header.mode), 5);
    out.writeUInt8(this.bucketBits, 6);
    out.writeUInt8(this.tagBytes, 7);
    out.writeUInt32LE(this.epoch, 8);
    out.writeBigUInt64LE(BigInt(header.directoryVersion), 16);
    out.writeBigUInt64LE(BigInt(n), 24);
    out.set(header.publicKey, 32);
    let at = 64;
    for (let b = 0; b < counts.length; b++, at += 4) out.writeUInt32LE(counts[b]!, at);
    out.set(this.tags, at);
    at += this.tags.length;
    out.set(this.masks, at);
    at += this.masks.length;
    crypto.createHash('sha256').update(out.subarray(0, at)).digest().copy(out, at);
    return out;
  }

  /**
   * Reads a cache file; returns the table and the directory version it
   * reflects, or a reason it cannot be used for `expect`.
   */
  static deserialize(
    buf: Buffer,
    expect: { epoch: number; mode: OprfMode; bucketBits: number; tagBytes: number; publicKey: Uint8Array },
  ): { table: BucketTable; directoryVersion: number } | { problem: string } {
    if (buf.length < 96 || buf.toString('latin1', 0, 4) !== 'PCDE') return { problem: 'not a pcd epoch cache' };
    if (buf.readUInt8(4) !== 1) return { problem: `cache format ${buf.readUInt8(4)}, expected 1` };
    const body = buf.subarray(0, buf.length - 32);
    const sum = crypto.createHash('sha256').update(body).digest();
    if (!sum.equals(buf.subarray(buf.length - 32))) return { problem: 'checksum mismatch (truncated or corrupt)' };
    const mode = MODES[buf.readUInt8(5)];
    const bucketBits = buf.readUInt8(6);
    const tagBytes = buf.readUInt8(7);
    const epoch = buf.readUInt32LE(8);
    if (epoch !== expect.epoch || mode !== expect.mode || bucketBits !== expect.bucketBits || tagBytes !== expect.tagBytes) {
      return { problem: 'its epoch or parameters differ from the database' };
    }
    if (!buf.subarray(32, 64).equals(Buffer.from(expect.publicKey))) return { problem: "it was built with another key than the epoch's" };
    const directoryVersion = Number(buf.readBigUInt64LE(16));
    const n = Number(buf.readBigUInt64LE(24));
    const buckets = bucketCount(bucketBits);
    const countsAt = 64;
    const tagsAt = countsAt + 4 * buckets;
    const masksAt = tagsAt + n * tagBytes;
    if (masksAt + n !== body.length) return { problem: 'its length does not match its header' };
    const counts = new Uint32Array(buckets);
    for (let b = 0; b < buckets; b++) counts[b] = buf.readUInt32LE(countsAt + 4 * b);
    // Copies, so the file's buffer can be collected.
    const tags = new Uint8Array(buf.subarray(tagsAt, masksAt));
    const masks = new Uint8Array(buf.subarray(masksAt, masksAt + n));
    try {
      return { table: BucketTable.fromCounts(epoch, bucketBits, tagBytes, counts, tags, masks), directoryVersion };
    } catch (e) {
      return { problem: (e as Error).message };
    }
  }
}

// ---------------------------------------------------------------------------
// Building

/** A copy of the directory taken in one synchronous step, so a build sees one consistent state. */
interface Snapshot {
  keys: Float64Array; // e164ToKey of each number
  masks: Uint8Array;
}

function snapshotDirectory(ctx: ServerContext): Snapshot {
  const n = ctx.directory.size;
  const keys = new Float64Array(n);
  const masks = new Uint8Array(n);
  let i = 0;
  for (const { number, mask } of ctx.directory.entries()) {
    keys[i] = e164ToKey(number);
    masks[i] = mask;
    i++;
  }
  return { keys: keys.subarray(0, i), masks: masks.subarray(0, i) };
}

function tagOf(mode: OprfMode, secretKey: Uint8Array, number: E164, tagBytes: number): Uint8Array {
  return truncateTag(evaluate(mode, secretKey, utf8ToBytes(number)), tagBytes);
}

/** Progress bar on stderr: numbers done / total, rate, ETA; redrawn at most 4 times a second. */
class Progress {
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

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.ceil(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.ceil(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Stops a build (server closing): checked between chunks. */
export interface AbortFlag {
  aborted: boolean;
}

function checkAbort(abort: AbortFlag): void {
  if (abort.aborted) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down: the epoch build was abandoned');
}

/**
 * Lets requests in between slices of build work on the main thread: `due()`
 * is cheap to call per item and true once SLICE_MS have passed; then
 * `yield()` gives the event loop a turn and checks for an abort.
 */
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

/**
 * Code of a build worker. It loads shared/oprf.ts itself through tsx's
 * module API (server/workers.ts: the server runs its TypeScript through tsx,
 * and loader hooks are not inherited by worker threads), so the tags come from the project's
 * only binding of the suite. The secret key arrives in memory, in workerData.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
${IMPORT_OPRF_JS}
  .then(({ evaluate }) => {
    const { mode, secretKey, tagBytes } = workerData;
    const enc = new TextEncoder();
    parentPort.on('message', ({ id, keys }) => {
      const tags = new Uint8Array(keys.length * tagBytes);
      for (let i = 0; i < keys.length; i++) {
        tags.set(evaluate(mode, secretKey, enc.encode('+' + keys[i])).subarray(0, tagBytes), i * tagBytes);
      }
      parentPort.postMessage({ id, tags }, [tags.buffer]);
    });
    parentPort.postMessage({ ready: true });
  }, (e) => parentPort.postMessage({ error: String((e && e.stack) || e) }));
`;

/** Threads a build uses: PCD_BUILD_THREADS, else one per core (1 means inline). */
export function buildThreads(): number {
  const env = Number(process.env.PCD_BUILD_THREADS);
  if (Number.isInteger(env) && env >= 1) return env;
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/** Evaluates tags on worker threads; a string (why) when workers cannot start, so the caller builds inline. */
async function tagsOnWorkers(
  params: EpochParams,
  secretKey: Uint8Array,
  keys: Float64Array,
  threads: number,
  onProgress: (done: number) => void,
  abort: AbortFlag,
): Promise<Uint8Array | string> {
  const loader = oprfWorkerData(import.meta.url);
  if (!loader) return 'tsx is not installed';
  const tagBytes = params.tagBytes;
  const out = new Uint8Array(keys.length * tagBytes);
  let next = 0;
  let done = 0;

  // One listener per event for a worker's whole life; `phase` says what a message means.
  type Pending = { resolve: () => void; reject: (e: unknown) => void };
  const workers: { worker: Worker; ready: Promise<void>; finished?: Pending }[] = [];
  const stop = () => Promise.all(workers.map((w) => w.worker.terminate())).then(() => undefined);

  const send = (w: (typeof workers)[number]): void => {
    if (!w.finished) return;
    if (abort.aborted) return w.finished.reject(new PcdError(ErrorCode.Unavailable, 'the server is shutting down: the epoch build was abandoned'));
    if (next >= keys.length) return w.finished.resolve();
    const start = next;
    next = Math.min(keys.length, next + WORKER_CHUNK);
    w.worker.postMessage({ id: start, keys: keys.slice(start, next) });
  };

  for (let t = 0; t < threads; t++) {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { ...loader, mode: params.mode, secretKey, tagBytes },
      stdout: true,
      stderr: true,
    });
    let readyPending: Pending | undefined;
    const ready = new Promise<void>((resolve, reject) => (readyPending = { resolve, reject }));
    const entry: (typeof workers)[number] = { worker, ready };
    const fail = (e: unknown) => {
      readyPending?.reject(e);
      entry.finished?.reject(e);
    };
    worker.on('message', (m: { ready?: boolean; error?: string; id?: number; tags?: Uint8Array }) => {
      if (m.ready) return readyPending?.resolve();
      if (m.error !== undefined) return fail(new Error(m.error));
      out.set(m.tags!, m.id! * tagBytes);
      done += m.tags!.length / tagBytes;
      onProgress(done);
      send(entry);
    });
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`build worker exited with code ${code}`)));
    workers.push(entry);
  }

  try {
    await Promise.all(workers.map((w) => w.ready));
  } catch (e) {
    await stop();
    return (e as Error).message.split('\n', 1)[0]!;
  }
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            w.finished = { resolve, reject };
            send(w);
          }),
      ),
    );
  } finally {
    await stop();
  }
  return out;
}

async function tagsInline(
  params: EpochParams,
  secretKey: Uint8Array,
  keys: Float64Array,
  onProgress: (done: number) => void,
  abort: AbortFlag,
): Promise<Uint8Array> {
  const { mode, tagBytes } = params;
  const out = new Uint8Array(keys.length * tagBytes);
  const slicer = new Slicer(abort);
  for (let i = 0; i < keys.length; i++) {
    out.set(tagOf(mode, secretKey, keyToE164(keys[i]!), tagBytes), i * tagBytes);
    if (slicer.due()) {
      onProgress(i + 1);
      await slicer.yield();
    }
  }
  onProgress(keys.length);
  return out;
}

/**
 * The tags of `keys` (e164ToKey of numbers) under one epoch key, in order:
 * on `threads` worker threads when more than one (falling back to the main
 * thread, with the reason in `fallback`, when they cannot start), else
 * inline in slices that yield to the event loop. Exported for benchmarks
 * and tests, which check both paths give the same bytes.
 */
export async function computeTags(
  params: EpochParams,
  secretKey: Uint8Array,
  keys: Float64Array,
  options: { threads?: number; onProgress?: (done: number) => void; abort?: AbortFlag } = {},
): Promise<{ tags: Uint8Array; threads: number; fallback?: string }> {
  const onProgress = options.onProgress ?? (() => {});
  const abort = options.abort ?? { aborted: false };
  const threads = Math.max(1, Math.floor(options.threads ?? 1));
  let fallback: string | undefined;
  const workers = Math.min(threads, Math.ceil(keys.length / WORKER_CHUNK));
  if (workers > 1) {
    const got = await tagsOnWorkers(params, secretKey, keys, workers, onProgress, abort);
    if (typeof got !== 'string') return { tags: got, threads: workers };
    fallback = got;
  }
  const tags = await tagsInline(params, secretKey, keys, onProgress, abort);
  checkAbort(abort);
  return { tags, threads: 1, ...(fallback !== undefined ? { fallback } : {}) };
}

/** Groups tags by bucket and sorts each bucket; equal tags in a bucket are merged (masks OR'ed). */
async function assemble(
  epoch: number,
  params: EpochParams,
  snapshot: Snapshot,
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
    if ((i & 1023) === 1023 && slicer.due()) await slicer.yield();
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
    if (((b & 1023) === 1023 || end - start > 1024) && slicer.due()) await slicer.yield();
  }
  const table = BucketTable.fromCounts(epoch, bucketBits, tagBytes, counts, outTags.slice(0, w * tagBytes), outMasks.slice(0, w));
  return { table, collisions };
}

// ---------------------------------------------------------------------------
// Epochs

/** A served epoch: key, parameters, buckets. */
export interface LiveEpoch {
  readonly epoch: number;
  readonly params: EpochParams;
  readonly key: KeyPair;
  readonly createdAt: number;
  retiresAt: number | undefined;
  /** Undefined until built or loaded (only while the manager opens without building). */
  table: BucketTable | undefined;
  /** Directory version the table reflects. */
  version: number;
  /** Changed since the cache file was written. */
  dirty: boolean;
}

interface Building {
  epoch: number;
  pending: DirectoryChange[];
}

export interface OpenEpochsOptions {
  /**
   * Build (or load from cache) every live epoch's buckets at open (default
   * true). `pcd rotate-key` offline opens without, since it only builds the new epoch.
   */
  build?: boolean;
}

export class Epochs {
  private readonly live = new Map<number, LiveEpoch>();
  private readonly destroyed = new Set<number>();
  private currentEpoch = 0;
  private maxEpoch = 0;
  private building: Building | undefined;
  private readonly abort: AbortFlag = { aborted: false };
  private expiryTimer: NodeJS.Timeout | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private persistDeadline = 0;
  private closed = false;
  readonly stats: EpochStats = { builds: 0, cacheLoads: 0, evaluations: 0 };
  /** True when open() had to create the first epoch. */
  createdAtOpen = false;

  private readonly stmts;

  private constructor(
    private readonly ctx: ServerContext,
    private readonly keyFile: KeyFile,
  ) {
    const db = ctx.store.db;
    this.stmts = {
      all: db.prepare<[], EpochRow>('SELECT * FROM epochs ORDER BY epoch'),
      insert: db.prepare<[number, Buffer, string, number, number, number]>(
        'INSERT INTO epochs (epoch, public_key, mode, bucket_bits, tag_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      retire: db.prepare<[number, number]>('UPDATE epochs SET retires_at = ? WHERE epoch = ?'),
      destroy: db.prepare<[number, number]>('UPDATE epochs SET destroyed_at = ? WHERE epoch = ? AND destroyed_at IS NULL'),
    };
  }

  get graceMs(): number {
    return this.ctx.options.graceMs ?? DEFAULT_GRACE_MS;
  }

  get dataDir(): string {
    return this.ctx.options.dataDir;
  }

  cacheFile(epoch: number): string {
    return path.join(this.dataDir, EPOCHS_DIR, `${epoch}.bin`);
  }

  /**
   * Opens the epochs of a data folder: finishes interrupted destructions,
   * retires expired epochs, checks every live epoch has its key, creates the
   * first epoch when there is none, and builds or loads the buckets.
   */
  static async open(ctx: ServerContext, options: OpenEpochsOptions = {}): Promise<Epochs> {
    const keyFile = KeyFile.open(ctx.options.dataDir);
    for (const w of keyFile.warnings) ctx.logger.warn(w);
    fs.mkdirSync(path.join(ctx.options.dataDir, EPOCHS_DIR), { recursive: true, mode: 0o700 });
    const epochs = new Epochs(ctx, keyFile);
    try {
      await epochs.load(options.build ?? true);
    } catch (e) {
      await epochs.close();
      throw e;
    }
    return epochs;
  }

  private async load(build: boolean): Promise<void> {
    const rows = this.stmts.all.all();
    const now = this.ctx.now();
    const known = new Set(rows.map((r) => r.epoch));
    this.maxEpoch = rows.reduce((m, r) => Math.max(m, r.epoch), 0);

    // A key the database does not know: a rotation (or first start) that wrote
    // the key and stopped before its database row. Only the next epoch number
    // can be that; anything else means the database and key file do not belong together.
    for (const epoch of this.keyFile.epochs()) {
      if (known.has(epoch)) continue;
      if (epoch === this.maxEpoch + 1) {
        this.keyFile.destroy(epoch);
        this.ctx.logger.warn({ epoch }, 'removed the key of an epoch an interrupted rotation never finished');
        continue;
      }
      throw new Error(
        `${this.keyFile.file} holds a key for epoch ${epoch}, which the database ${this.ctx.store.file} does not know: ` +
          `the key file and the database do not belong together (move one of them away to start over)`,
      );
    }

    for (const row of rows) {
      if (row.destroyed_at !== null) {
        this.destroyed.add(row.epoch);
        this.finishDestruction(row.epoch);
        continue;
      }
      const mode = row.mode as OprfMode;
      if (!MODES.includes(mode)) throw new Error(`epoch ${row.epoch} in ${this.ctx.store.file} has unknown mode '${row.mode}'`);
      const sk = this.keyFile.get(row.epoch);
      if (row.retires_at !== null && row.retires_at <= now) {
        this.destroyEpoch(row.epoch, now);
        continue;
      }
      if (!sk) {
        throw new Error(
          `epoch ${row.epoch} is live in ${this.ctx.store.file} but its secret key is missing from ${this.keyFile.file}; ` +
            `restore the key file from a backup. The server does not make up a new key for an existing epoch ` +
            `(clients hold its public key); run 'pcd rotate-key' after restoring, or move the data folder away to start over.`,
        );
      }
      const publicKey = publicKeyOf(sk);
      if (!Buffer.from(publicKey).equals(row.public_key)) {
        throw new Error(`the key of epoch ${row.epoch} in ${this.keyFile.file} does not match the public key in ${this.ctx.store.file}`);
      }
      this.live.set(row.epoch, {
        epoch: row.epoch,
        params: { mode, bucketBits: row.bucket_bits, tagBytes: row.tag_bytes },
        key: { secretKey: sk, publicKey },
        createdAt: row.created_at,
        retiresAt: row.retires_at ?? undefined,
        table: undefined,
        version: -1,
        dirty: false,
      });
    }

    this.currentEpoch = pickCurrent([...this.live.values()], (e) => e.retiresAt !== undefined)?.epoch ?? 0;

    if (this.currentEpoch === 0) {
      await this.create(this.paramsFor({}), undefined);
      this.createdAtOpen = true;
    } else {
      const cur = this.live.get(this.currentEpoch)!;
      const wanted = this.paramsFor({}, cur.params);
      if (wanted.mode !== cur.params.mode || wanted.bucketBits !== cur.params.bucketBits || wanted.tagBytes !== cur.params.tagBytes) {
        this.ctx.logger.warn(
          { epoch: cur.epoch, epochParams: cur.params, configured: wanted },
          'the configured blinded parameters differ from the current epoch; they apply from the next key rotation',
        );
      }
    }
    if (build) {
      for (const e of this.live.values()) if (!e.table) await this.loadOrBuild(e);
    }
    this.startExpiryTimer();
  }

  /** Parameters of a new epoch: the request's, else the configured ones, else the base epoch's, else the defaults. */
  private paramsFor(req: { bucketBits?: number; mode?: OprfMode }, base?: EpochParams): EpochParams {
    const o = this.ctx.options;
    const mode = req.mode ?? o.mode ?? base?.mode ?? DEFAULT_MODE;
    if (!MODES.includes(mode)) throw new PcdError(ErrorCode.InvalidField, `mode must be one of ${MODES.join(', ')}, got '${String(mode)}'`);
    return {
      mode,
      bucketBits: checkBucketBits(req.bucketBits ?? o.bucketBits ?? base?.bucketBits ?? DEFAULT_BUCKET_BITS),
      tagBytes: checkTagBytes(o.tagBytes ?? base?.tagBytes ?? DEFAULT_TAG_BYTES),
    };
  }

  // ------------------------------------------------------------- building

  private async loadOrBuild(e: LiveEpoch): Promise<void> {
    const version = this.ctx.store.directoryVersion();
    const file = this.cacheFile(e.epoch);
    if (fs.existsSync(file)) {
      const got = BucketTable.deserialize(fs.readFileSync(file), { epoch: e.epoch, ...e.params, publicKey: e.key.publicKey });
      if ('table' in got && got.directoryVersion === version) {
        e.table = got.table;
        e.version = version;
        this.stats.cacheLoads++;
        this.ctx.logger.info({ epoch: e.epoch, entries: got.table.size }, 'loaded epoch buckets from cache');
        return;
      }
      this.ctx.logger.info(
        { epoch: e.epoch, reason: 'problem' in got ? got.problem : `built from directory version ${got.directoryVersion}, now ${version}` },
        'epoch cache not usable: rebuilding',
      );
    }
    // Changes that arrive while this (startup) build runs are applied after it.
    const building: Building = { epoch: e.epoch, pending: [] };
    this.building = building;
    try {
      const built = await this.build(e.epoch, e.params, e.key.secretKey, building);
      e.version = this.applyPending(built.table, e.params, e.key.secretKey, building, built.version);
      e.table = built.table;
    } finally {
      this.building = undefined;
    }
    this.writeCache(e);
  }

  /**
   * Builds the buckets of an epoch from a snapshot of the directory. Changes
   * that arrive meanwhile are queued in `building`: see {@link applyPending}.
   */
  private async build(
    epoch: number,
    params: EpochParams,
    secretKey: Uint8Array,
    building: Building,
  ): Promise<{ table: BucketTable; version: number }> {
    const version = this.ctx.store.directoryVersion();
    const snapshot = snapshotDirectory(this.ctx);
    const n = snapshot.keys.length;
    const progress = new Progress(`pcd: building epoch ${epoch}`, n, this.ctx.options.progress === true && n >= PROGRESS_MIN_NUMBERS);
    const t0 = performance.now();
    const { tags, threads, fallback } = await computeTags(params, secretKey, snapshot.keys, {
      threads: n >= WORKER_MIN_NUMBERS ? buildThreads() : 1,
      onProgress: (d) => progress.update(d),
      abort: this.abort,
    });
    if (fallback) this.ctx.logger.warn({ reason: fallback }, 'build worker threads could not start: building on the main thread');
    checkAbort(this.abort);
    this.stats.evaluations += n;
    const { table, collisions } = await assemble(epoch, params, snapshot, tags, this.abort);
    checkAbort(this.abort);
    const seconds = (performance.now() - t0) / 1000;
    const rate = seconds > 0 ? n / seconds : n;
    this.stats.builds++;
    this.stats.lastBuild = { epoch, numbers: n, seconds, rate, threads, collisions, pendingChanges: building.pending.length };
    progress.finish(`pcd: built epoch ${epoch}: ${n.toLocaleString('en-US')} numbers in ${seconds.toFixed(1)} s (${Math.round(rate)}/s, ${threads} thread${threads > 1 ? 's' : ''})`);
    this.ctx.logger.info({ epoch, numbers: n, seconds, rate: Math.round(rate), threads, collisions }, 'built epoch buckets');
    if (collisions > 0) {
      this.ctx.logger.warn({ epoch, collisions, tagBytes: params.tagBytes }, 'truncated tags collided in a bucket; their masks were merged');
    }
    return { table, version };
  }

  /**
   * Applies the directory changes that arrived while `building` ran (queued
   * by applyChanges), in order; idempotent for changes the snapshot already
   * had. Callers run it synchronously right after the build's last await and
   * clear `this.building` in the same synchronous step, so no change falls
   * between the queue and the live table. Returns the directory version the table now reflects.
   */
  private applyPending(table: BucketTable, params: EpochParams, secretKey: Uint8Array, building: Building, version: number): number {
    if (this.stats.lastBuild) this.stats.lastBuild.pendingChanges = building.pending.length;
    for (const c of building.pending) {
      table.set(bucketOf(c.number, params.bucketBits), tagOf(params.mode, secretKey, c.number, params.tagBytes), c.mask);
      this.stats.evaluations++;
    }
    return building.pending.length > 0 ? this.ctx.store.directoryVersion() : version;
  }

  /**
   * Makes a new epoch: key, build, then commit (key file first, then the
   * database row and the previous epoch's retirement in one transaction,
   * then the cache). Returns the new epoch and the retired one.
   */
  private async create(params: EpochParams, previous: LiveEpoch | undefined): Promise<{ epoch: number; retiresAt?: number }> {
    const epoch = this.maxEpoch + 1;
    const key = generateKeyPair(params.mode);
    const building: Building = { epoch, pending: [] };
    this.building = building;
    let table: BucketTable;
    let version: number;
    try {
      ({ table, version } = await this.build(epoch, params, key.secretKey, building));
      version = this.applyPending(table, params, key.secretKey, building, version);
    } finally {
      this.building = undefined;
    }
    if (this.closed) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down: the new epoch was abandoned');

    const now = this.ctx.now();
    const retiresAt = previous ? Math.min(previous.retiresAt ?? Infinity, now + this.graceMs) : undefined;
    this.keyFile.add(epoch, key.secretKey);
    this.ctx.store.db.transaction(() => {
      this.stmts.insert.run(epoch, Buffer.from(key.publicKey), params.mode, params.bucketBits, params.tagBytes, now);
      if (previous && retiresAt !== undefined) this.stmts.retire.run(retiresAt, previous.epoch);
    })();
    this.maxEpoch = epoch;
    const live: LiveEpoch = { epoch, params, key, createdAt: now, retiresAt: undefined, table, version, dirty: true };
    this.live.set(epoch, live);
    if (previous && retiresAt !== undefined) previous.retiresAt = retiresAt;
    this.currentEpoch = epoch;
    this.writeCache(live);
    this.ctx.logger.info({ epoch, ...params, previous: previous?.epoch, retiresAt }, 'created epoch');
    return { epoch, retiresAt };
  }

  /** Rotates the key: builds epoch N+1 (the server keeps serving N meanwhile), makes it current, retires N after the grace period. */
  async rotate(req: { bucketBits?: number; mode?: OprfMode } = {}): Promise<{ epoch: number; previous?: number; retiresAt?: number }> {
    if (this.closed) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down');
    if (this.building) throw new PcdError(ErrorCode.Conflict, `epoch ${this.building.epoch} is being built; rotate again once it is done`);
    this.expire();
    if (this.live.size >= MAX_LIVE_EPOCHS) {
      throw new PcdError(
        ErrorCode.Conflict,
        `${this.live.size} epochs are still served (the config lists at most ${MAX_LIVE_EPOCHS}): wait for older ones to retire before rotating again`,
      );
    }
    const previous = this.live.get(this.currentEpoch);
    const params = this.paramsFor(req, previous?.params);
    const { epoch, retiresAt } = await this.create(params, previous);
    this.expire(); // graceMs = 0 retires the previous epoch at once
    return { epoch, ...(previous ? { previous: previous.epoch, retiresAt } : {}) };
  }

  // ------------------------------------------------------------- retirement

  /** Destroys every epoch whose grace period has ended (injected clock). Never the current one. */
  expire(): void {
    if (this.closed) return;
    const now = this.ctx.now();
    for (const e of [...this.live.values()]) {
      if (e.epoch !== this.currentEpoch && e.retiresAt !== undefined && e.retiresAt <= now) this.destroyEpoch(e.epoch, now);
    }
  }

  /** destroyed_at first (the epoch is dead from then on), then the key, then the cache file. */
  private destroyEpoch(epoch: number, now: number): void {
    this.stmts.destroy.run(now, epoch);
    this.destroyed.add(epoch);
    const e = this.live.get(epoch);
    this.live.delete(epoch);
    this.finishDestruction(epoch);
    e?.key.secretKey.fill(0);
    this.ctx.logger.info({ epoch }, 'epoch retired: its key and cached buckets are destroyed');
  }

  private finishDestruction(epoch: number): void {
    if (this.keyFile.destroy(epoch)) this.ctx.logger.info({ epoch }, 'destroyed the key of a retired epoch');
    for (const f of [this.cacheFile(epoch), `${this.cacheFile(epoch)}.tmp`]) fs.rmSync(f, { force: true });
  }

  private startExpiryTimer(): void {
    const every = Math.min(60_000, Math.max(1000, this.graceMs));
    this.expiryTimer = setInterval(() => {
      try {
        this.expire();
      } catch (e) {
        this.ctx.logger.error({ err: (e as Error).message }, 'epoch retirement failed');
      }
    }, every);
    this.expiryTimer.unref();
  }

  // ------------------------------------------------------------- serving

  get current(): LiveEpoch {
    this.expire();
    const e = this.live.get(this.currentEpoch);
    if (!e) throw new PcdError(ErrorCode.Unavailable, 'no epoch is being served');
    return e;
  }

  /** Every served epoch, oldest first. */
  list(): PublicEpoch[] {
    this.expire();
    return [...this.live.values()]
      .sort((a, b) => a.epoch - b.epoch)
      .map((e) => ({
        epoch: e.epoch,
        publicKey: e.key.publicKey,
        ...e.params,
        createdAt: e.createdAt,
        ...(e.retiresAt !== undefined ? { retiresAt: e.retiresAt } : {}),
      }));
  }

  /** A served epoch, or 404 unknown_epoch / 410 epoch_retired. */
  get(epoch: number): LiveEpoch & { table: BucketTable } {
    this.expire();
    const e = this.live.get(epoch);
    if (e?.table) return e as LiveEpoch & { table: BucketTable };
    if (this.destroyed.has(epoch)) {
      throw new PcdError(ErrorCode.EpochRetired, `epoch ${epoch} is retired and its key destroyed: fetch /v1/blinded/config and use epoch ${this.currentEpoch}`);
    }
    if (e) throw new PcdError(ErrorCode.Unavailable, `epoch ${epoch} is not built yet`);
    throw new PcdError(ErrorCode.UnknownEpoch, `no epoch ${epoch}: the current epoch is ${this.currentEpoch} (see /v1/blinded/config)`);
  }

  // ------------------------------------------------------------- directory changes

  /** Updates every live epoch's buckets (and queues the changes for an epoch being built). */
  applyChanges(changes: readonly DirectoryChange[]): void {
    if (changes.length === 0) return;
    if (this.building) this.building.pending.push(...changes);
    for (const e of this.live.values()) {
      if (!e.table) continue;
      const { mode, bucketBits, tagBytes } = e.params;
      for (const { number, mask } of changes) {
        e.table.set(bucketOf(number, bucketBits), tagOf(mode, e.key.secretKey, number, tagBytes), mask);
        this.stats.evaluations++;
      }
      e.version = this.ctx.store.directoryVersion();
      e.dirty = true;
    }
    this.schedulePersist();
  }

  private schedulePersist(): void {
    if (this.closed) return;
    const now = Date.now();
    if (!this.persistTimer) this.persistDeadline = now + PERSIST_MAX_WAIT_MS;
    else clearTimeout(this.persistTimer);
    this.persistTimer = setTimeout(() => this.persist(), Math.max(0, Math.min(PERSIST_DEBOUNCE_MS, this.persistDeadline - now)));
    this.persistTimer.unref();
  }

  /** Writes the cache file of every changed epoch. */
  persist(): void {
    if (this.persistTimer) clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
    for (const e of this.live.values()) if (e.dirty) this.writeCache(e);
  }

  /**
   * Writes one epoch's cache file. A failure is logged, not thrown: the
   * buckets in memory are right, the epoch stays dirty and the next persist
   * (or the next start, which then rebuilds) makes up for it.
   */
  private writeCache(e: LiveEpoch): void {
    if (!e.table) return;
    try {
      const bytes = e.table.serialize({ mode: e.params.mode, publicKey: e.key.publicKey, directoryVersion: e.version });
      writeFileAtomic(this.cacheFile(e.epoch), bytes);
      e.dirty = false;
    } catch (err) {
      this.ctx.logger.error({ epoch: e.epoch, err: (err as Error).message }, 'could not write the epoch cache');
    }
  }

  /** Stops timers and any build, writes changed caches. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.abort.aborted = true;
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    this.persist(); // writes every changed epoch, logs (does not throw) on failure
    this.closed = true;
  }
}
