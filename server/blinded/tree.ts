/**
 * The Merkle tree of one epoch's buckets, as the server keeps it
 * ({@link BucketTree}; the tree and its hashing are shared/merkle.ts).
 *
 * Why this shape: the root must be there for every config reply and a path
 * for every bucket reply, at the directory version the table reflects, for
 * 2^0 to 2^24 buckets and 10^6-10^7 numbers, while registrations change one
 * bucket at a time.
 *
 * - Memory. Node hashes are stored from height `low` = max(0, bits -
 *   storedBits) up to the root: at most 2^(storedBits+1) digests (16 MiB
 *   with the default storedBits 18, whatever bucketBits is). Below `low`
 *   (bucketBits above 18 only) a path's lower part is recomputed from the
 *   2^low buckets of its subtree, which hold a few tags each at that size.
 * - Change. A changed bucket only marks its stored ancestor stale
 *   ({@link BucketTree.changed}); the stale subtrees and their ancestors
 *   are rehashed on the first need after a burst of changes, not once per
 *   change, so a burst of k changes costs at most k * (2^low + bits) hashes.
 * - Time. The first computation hashes every bucket once (2^bits leaves and
 *   as many nodes: about 1 µs each with node:crypto, plus the tags' bytes);
 *   it and any large refresh run in slices that yield to the event loop
 *   ({@link BucketTree.ready}), so a 2^24-bucket epoch keeps answering the
 *   other routes meanwhile. Small refreshes run in the synchronous step that
 *   reads the root or a path, so root, path, bucket content and directory
 *   version are always read together.
 *
 * SHA-256 is node:crypto's here (about 3x noble for a node hash); the bytes
 * are those of shared/merkle.ts, which the tests check.
 */
import crypto from 'node:crypto';
import { DIGEST_BYTES, NODE_PREFIX, type Digest, type Sha256 } from '../../shared/merkle.ts';

/** Inputs up to this size are copied into one buffer and hashed in one call (cheaper than a Hash object). */
const ONE_SHOT_BYTES = 4096;
const oneShot = Buffer.alloc(ONE_SHOT_BYTES);

/** SHA-256 by node:crypto. */
export const nodeSha256: Sha256 = (parts) => {
  if (parts.length === 1) return crypto.hash('sha256', parts[0]!, 'buffer');
  let size = 0;
  for (const p of parts) size += p.length;
  if (size <= ONE_SHOT_BYTES) {
    let at = 0;
    for (const p of parts) {
      oneShot.set(p, at);
      at += p.length;
    }
    return crypto.hash('sha256', oneShot.subarray(0, size), 'buffer');
  }
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Default log2 of the stored nodes at the lowest stored height: 2^18 there, 16 MiB of digests in all. */
export const DEFAULT_STORED_BITS = 18;
/** A refresh costing more hashes than this is sliced ({@link BucketTree.ready}); below, it is done where the root is read. */
const SYNC_HASH_BUDGET = 4096;
/** Longest stretch of hashing before yielding to the event loop. */
const SLICE_MS = 8;
/** Hashes a second assumed before a run has measured its own rate (node:crypto does about 10^6 small ones). */
const DEFAULT_HASH_RATE = 500_000;

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

export interface BucketTreeOptions {
  /** log2 of the nodes stored at the lowest stored height (default {@link DEFAULT_STORED_BITS}); tests set it low to exercise the recomputed part. */
  storedBits?: number;
  /** SHA-256 (default node:crypto's). */
  hash?: Sha256;
}

export class BucketTree {
  /** Lowest stored height: 0 stores the leaves. */
  readonly low: number;
  private readonly hash: Sha256;
  /** levels[k]: the nodes at height low + k, DIGEST_BYTES each, left to right; the last one holds the root. Undefined until first computed. */
  private levels: Uint8Array[] | undefined;
  /** Per stored level, the nodes whose subtree changed since they were hashed. */
  private readonly stale: Set<number>[];
  /** The full computation or a sliced refresh under way. */
  private running: Promise<void> | undefined;
  /** How far the run under way is, in hashes, for {@link etaSeconds}. */
  private progress: { done: number; total: number; since: number } | undefined;
  private readonly scratch = Buffer.alloc(1 + 2 * DIGEST_BYTES);

  constructor(
    readonly bits: number,
    /** leaf(b) of shared/merkle.ts for bucket b as it is now. */
    private readonly leafOf: (bucket: number) => Digest,
    options: BucketTreeOptions = {},
  ) {
    const stored = options.storedBits ?? DEFAULT_STORED_BITS;
    if (!Number.isInteger(bits) || bits < 0 || bits > 30) throw new RangeError(`bucket tree of ${bits} bits`);
    if (!Number.isInteger(stored) || stored < 0) throw new RangeError(`storedBits ${stored}`);
    this.low = Math.max(0, bits - stored);
    this.hash = options.hash ?? nodeSha256;
    this.stale = Array.from({ length: bits - this.low + 1 }, () => new Set<number>());
    this.scratch[0] = NODE_PREFIX;
  }

  /** Bytes of digests held once computed. */
  get storedBytes(): number {
    return DIGEST_BYTES * (2 ** (this.bits - this.low + 1) - 1);
  }

  /** Marks bucket `b` changed: its stored ancestor and those above are rehashed on the next need. */
  changed(bucket: number): void {
    if (this.levels || this.running) this.stale[0]!.add(Math.floor(bucket / 2 ** this.low));
  }

  /**
   * Settles once the root and paths can be read in a synchronous step: the
   * first computation done, and no refresh left bigger than a few
   * milliseconds. Both run in slices that yield to the event loop.
   */
  ready(): Promise<void> {
    if (this.levels && this.staleCost() <= SYNC_HASH_BUDGET) return Promise.resolve();
    this.running ??= (this.levels ? this.refreshSliced(this.levels) : this.build()).finally(() => {
      this.running = undefined;
      this.progress = undefined;
    });
    return this.running.then(() => this.ready());
  }

  /**
   * Seconds until {@link ready} settles, estimated from the rate of the run
   * under way (else 2 µs a hash): 0 when ready. The server
   * answers 503 with Retry-After rather than keep a request waiting long.
   */
  etaSeconds(): number {
    if (this.isReady) return 0;
    const p = this.progress;
    const elapsed = p ? (performance.now() - p.since) / 1000 : 0;
    if (p && p.done > 0 && elapsed > 0.05) return (p.total - p.done) / (p.done / elapsed);
    return (this.levels ? this.staleCost() : 2 ** (this.bits + 1)) / DEFAULT_HASH_RATE;
  }

  /** What the run under way has done, in hashes (for a 503's message). */
  get computing(): { first: boolean; done: number; total: number } | undefined {
    return this.progress && { first: this.levels === undefined, done: this.progress.done, total: this.progress.total };
  }

  /** True when {@link root} and {@link path} may be called (and cost at most a small refresh). */
  get isReady(): boolean {
    return this.levels !== undefined && this.staleCost() <= SYNC_HASH_BUDGET;
  }

  /** The root at the table's content now. Call after {@link ready}. */
  root(): Digest {
    const levels = this.refreshed();
    return levels[levels.length - 1]!.slice(0, DIGEST_BYTES);
  }

  /** The audit path of bucket `b`, leaf to root: `bits` digests. Call after {@link ready}. */
  path(bucket: number): Digest[] {
    const levels = this.refreshed();
    const out: Digest[] = [];
    if (this.low > 0) {
      // Below the stored heights: the bucket's subtree from its leaves.
      const first = Math.floor(bucket / 2 ** this.low) * 2 ** this.low;
      let level: Digest[] = Array.from({ length: 2 ** this.low }, (_, j) => this.leafOf(first + j));
      let i = bucket - first;
      while (level.length > 1) {
        out.push(level[i ^ 1]!);
        level = this.fold(level);
        i >>>= 1;
      }
    }
    for (let k = 0; k < levels.length - 1; k++) {
      const sibling = Math.floor(bucket / 2 ** (this.low + k)) ^ 1;
      out.push(levels[k]!.slice(sibling * DIGEST_BYTES, (sibling + 1) * DIGEST_BYTES));
    }
    return out;
  }

  // ------------------------------------------------------------- hashing

  private node(left: Uint8Array, right: Uint8Array): Buffer {
    this.scratch.set(left, 1);
    this.scratch.set(right, 1 + DIGEST_BYTES);
    return this.hash === nodeSha256 ? crypto.hash('sha256', this.scratch, 'buffer') : Buffer.from(this.hash([this.scratch]));
  }

  private fold(level: readonly Digest[]): Digest[] {
    const up: Digest[] = new Array(level.length / 2);
    for (let j = 0; j < up.length; j++) up[j] = this.node(level[2 * j]!, level[2 * j + 1]!);
    return up;
  }

  /** The node at height `low` over buckets [i * 2^low, (i + 1) * 2^low). */
  private subtreeRoot(i: number): Digest {
    if (this.low === 0) return this.leafOf(i);
    const first = i * 2 ** this.low;
    let level: Digest[] = Array.from({ length: 2 ** this.low }, (_, j) => this.leafOf(first + j));
    while (level.length > 1) level = this.fold(level);
    return level[0]!;
  }

  /** Node i of stored level k, from what is below it now. */
  private recompute(levels: Uint8Array[], k: number, i: number): void {
    const d =
      k === 0
        ? this.subtreeRoot(i)
        : this.node(levels[k - 1]!.subarray(2 * i * DIGEST_BYTES, (2 * i + 1) * DIGEST_BYTES), levels[k - 1]!.subarray((2 * i + 1) * DIGEST_BYTES, (2 * i + 2) * DIGEST_BYTES));
    levels[k]!.set(d, i * DIGEST_BYTES);
  }

  /** Hashes a refresh of the stale nodes would cost. */
  private staleCost(): number {
    return this.stale[0]!.size * (2 ** (this.low + 1) + this.bits - this.low) + this.stale.reduce((n, s) => n + s.size, 0);
  }

  /** The first computation: every stored level, bottom up, in slices. Changes meanwhile are marked stale and refreshed after. */
  private async build(): Promise<void> {
    const levels = Array.from({ length: this.bits - this.low + 1 }, (_, k) => new Uint8Array(DIGEST_BYTES * 2 ** (this.bits - this.low - k)));
    const progress = (this.progress = { done: 0, total: 2 ** (this.bits + 1) - 1, since: performance.now() });
    const lowCost = 2 ** (this.low + 1) - 1;
    let t0 = performance.now();
    for (let k = 0; k < levels.length; k++) {
      const count = 2 ** (this.bits - this.low - k);
      for (let i = 0; i < count; i++) {
        this.recompute(levels, k, i);
        progress.done += k === 0 ? lowCost : 1;
        if ((i & 63) === 63 && performance.now() - t0 > SLICE_MS) {
          await yieldToLoop();
          t0 = performance.now();
        }
      }
    }
    this.levels = levels;
  }

  /** Rehashes the stale nodes, level by level, in slices; changes that arrive meanwhile are taken in the next round. */
  private async refreshSliced(levels: Uint8Array[]): Promise<void> {
    let t0 = performance.now();
    while (this.staleCost() > SYNC_HASH_BUDGET) {
      const progress = (this.progress = { done: 0, total: this.staleCost(), since: performance.now() });
      const lowCost = 2 ** (this.low + 1) - 1 + this.bits - this.low;
      for (let k = 0; k < levels.length; k++) {
        // A synchronous refresh may run between slices: take each node out before hashing it, re-read the set after a yield.
        for (;;) {
          const next = this.stale[k]!.values().next();
          if (next.done) break;
          const i = next.value;
          this.stale[k]!.delete(i);
          this.recompute(levels, k, i);
          progress.done += k === 0 ? lowCost : 0;
          if (k + 1 < levels.length) this.stale[k + 1]!.add(i >>> 1);
          if (performance.now() - t0 > SLICE_MS) {
            await yieldToLoop();
            t0 = performance.now();
          }
        }
      }
    }
  }

  /** The stored levels with every stale node rehashed (synchronously). */
  private refreshed(): Uint8Array[] {
    const levels = this.levels;
    if (!levels) throw new Error('bucket tree read before it was computed: await ready() first');
    for (let k = 0; k < levels.length; k++) {
      const stale = this.stale[k]!;
      if (stale.size === 0) continue;
      for (const i of stale) {
        this.recompute(levels, k, i);
        if (k + 1 < levels.length) this.stale[k + 1]!.add(i >>> 1);
      }
      stale.clear();
    }
    return levels;
  }
}
