/**
 * The buckets of one epoch ({@link BucketTable}) and their cache file.
 *
 * A table is the compact form of every bucket of an epoch: per-bucket
 * offsets, the tags and the masks in bucket order, as built
 * (server/blinded/build.ts) or loaded, plus an overlay of the buckets that
 * changed since, as immutable {@link Bucket}s. Writing the cache merges the
 * overlay back into a new base.
 *
 * A table also keeps the Merkle tree over its buckets ({@link BucketTable.merkle},
 * server/blinded/tree.ts; the hashing is shared/merkle.ts): every change
 * marks its bucket stale there, and the root and paths are rehashed when
 * next read. A bucket's ETag is made from its leaf hash, which commits to
 * the epoch, the bucket id and the content: it changes exactly when the
 * content does. The tree is not in the cache file: it is recomputed from
 * the buckets after a load.
 *
 * ## Cache file `<dataDir>/epochs/<epoch>.bin` (little-endian)
 *
 *   offset  size          field
 *   0       4             magic "PCDE"
 *   4       1             format version (2)
 *   5       1             mode (0 oprf, 1 voprf)
 *   6       1             bucketBits
 *   7       1             tagBytes
 *   8       4             epoch (u32)
 *   12      4             reserved, 0
 *   16      8             directory version it reflects (u64)
 *   24      8             entries n (u64)
 *   32      32            the epoch's public key
 *   64      16            digest of the directory it reflects (server/directory.ts)
 *   80      4 * 2^bits    entries per bucket (u32 each)
 *   ...     n * tagBytes  tags, bucket by bucket, ascending within a bucket
 *   ...     n             capability masks, same order
 *   ...     32            SHA-256 of everything above
 *
 * It holds registered numbers' tags only (they are in the directory anyway),
 * is written atomically (temp, fsync, rename; server/blinded/keys.ts) and
 * deleted with the epoch. The directory version in the header is what lets a
 * start replay only the changes made since (server/blinded/epochs.ts); the
 * directory digest is what lets it notice a database changed under the cache
 * without a version bump, and rebuild (server/blinded/recovery.ts). Format 1
 * had no digest: such a cache is rebuilt once.
 */
import fs from 'node:fs';
import { EPOCHS_DIR } from '../../disk/files.ts';
import path from 'node:path';
import crypto from 'node:crypto';
import { Bucket, bucketCount } from '../../shared/buckets.ts';
import { LEAF_HEADER_BYTES, bucketLeafHash, writeLeafHeader, type Digest } from '../../shared/merkle.ts';
import { MODES, type OprfMode, type PointBytes } from '../../shared/suite.ts';
import { DIRECTORY_DIGEST_BYTES } from '../directory-digest.ts';
import { writeFileAtomic } from '../atomic.ts';
import { BucketTree, nodeSha256 } from './tree.ts';

/** Folder of the cache files, under the data folder. */
export { EPOCHS_DIR };
const MAGIC = 'PCDE';
const FORMAT_VERSION = 2;
const DIGEST_AT = 64;
const HEADER_BYTES = DIGEST_AT + DIRECTORY_DIGEST_BYTES;
const CHECKSUM_BYTES = 32;
/**
 * Buckets of at least this many entries keep their leaf hash until they
 * change: the ETag and the tree both need it, and hashing such a bucket
 * costs more than keeping 32 bytes (at most size / 1024 of them are kept).
 */
const LEAF_MEMO_MIN_ENTRIES = 1024;

/** The parameters fixed with an epoch's key. */
export interface EpochParams {
  mode: OprfMode;
  bucketBits: number;
  tagBytes: number;
}

/** What a cache file must match to be used: the epoch, its parameters and its public key. */
export interface CacheExpectation extends EpochParams {
  epoch: number;
  publicKey: PointBytes;
}

/** What a cache file's header records besides the table's own parameters. */
export interface CacheHeader {
  mode: OprfMode;
  publicKey: PointBytes;
  /** The directory version the table reflects. */
  directoryVersion: number;
  /** The digest of the directory at that version (server/directory.ts DirectoryDigest). */
  directoryDigest: Uint8Array;
}

/** A cache file read back. */
export interface CacheContent {
  table: BucketTable;
  directoryVersion: number;
  directoryDigest: Uint8Array;
}

export function cacheFilePath(dataDir: string, epoch: number): string {
  return path.join(dataDir, EPOCHS_DIR, `${epoch}.bin`);
}

/**
 * All buckets of one epoch: a compact base (per-bucket offsets, tags and
 * masks in bucket order, as built or loaded) plus an overlay of buckets
 * changed since, as immutable {@link Bucket}s. Writing the cache merges the
 * overlay into a new base.
 */
export class BucketTable {
  private readonly overlay = new Map<number, Bucket>();
  private readonly etags = new Map<number, string>();
  private readonly leafMemo = new Map<number, Digest>();
  private readonly leafScratch = Buffer.alloc(1024);
  private tree: BucketTree | undefined;
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

  /** Strong ETag of a bucket's content (from its leaf hash), memoised until the bucket changes. */
  etag(bucket: number): string {
    let etag = this.etags.get(bucket);
    if (etag === undefined) {
      etag = `"e${this.epoch}-b${bucket}-${Buffer.from(this.leafHash(bucket)).toString('hex', 0, 8)}"`;
      this.etags.set(bucket, etag);
    }
    return etag;
  }

  /** leaf(b) of shared/merkle.ts: SHA-256(0x00 || "pcd-bucket-v1" || epoch || b || count || tags || masks). */
  leafHash(bucket: number): Digest {
    const memo = this.leafMemo.get(bucket);
    if (memo) return memo;
    const v = this.view(bucket);
    const size = LEAF_HEADER_BYTES + v.tags.length + v.capabilities.length;
    if (size <= this.leafScratch.length) {
      // A small bucket (most of them, once bucketBits is large): one buffer, one call.
      writeLeafHeader(this.leafScratch, 0, this.epoch, bucket, v.capabilities.length);
      this.leafScratch.set(v.tags, LEAF_HEADER_BYTES);
      this.leafScratch.set(v.capabilities, LEAF_HEADER_BYTES + v.tags.length);
      return crypto.hash('sha256', this.leafScratch.subarray(0, size), 'buffer');
    }
    const leaf = bucketLeafHash({ epoch: this.epoch, bucket, tags: v.tags, capabilities: v.capabilities }, nodeSha256);
    if (v.capabilities.length >= LEAF_MEMO_MIN_ENTRIES) this.leafMemo.set(bucket, leaf);
    return leaf;
  }

  /** The Merkle tree over the buckets (server/blinded/tree.ts), made on first use; its root and paths follow every {@link set}. */
  get merkle(): BucketTree {
    return (this.tree ??= new BucketTree(this.bucketBits, (b) => this.leafHash(b)));
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
    this.leafMemo.delete(bucket);
    this.tree?.changed(bucket);
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
    this.overlay.clear(); // content is unchanged, so the memoised ETags, leaf hashes and the tree stay valid
    return counts;
  }

  /** The cache file's bytes (merges the overlay first). */
  serialize(header: CacheHeader): Buffer {
    const counts = this.compact();
    const n = this.entries;
    const size = HEADER_BYTES + 4 * counts.length + n * this.tagBytes + n + CHECKSUM_BYTES;
    const out = Buffer.alloc(size);
    out.write(MAGIC, 0, 'latin1');
    out.writeUInt8(FORMAT_VERSION, 4);
    out.writeUInt8(MODES.indexOf(header.mode), 5);
    out.writeUInt8(this.bucketBits, 6);
    out.writeUInt8(this.tagBytes, 7);
    out.writeUInt32LE(this.epoch, 8);
    out.writeBigUInt64LE(BigInt(header.directoryVersion), 16);
    out.writeBigUInt64LE(BigInt(n), 24);
    out.set(header.publicKey, 32);
    out.set(header.directoryDigest, DIGEST_AT);
    let at = HEADER_BYTES;
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
    expect: CacheExpectation,
  ): CacheContent | { problem: string } {
    if (buf.length < HEADER_BYTES + CHECKSUM_BYTES || buf.toString('latin1', 0, 4) !== MAGIC) return { problem: 'not a pcd epoch cache' };
    if (buf.readUInt8(4) !== FORMAT_VERSION) return { problem: `cache format ${buf.readUInt8(4)}, expected ${FORMAT_VERSION}` };
    const body = buf.subarray(0, buf.length - CHECKSUM_BYTES);
    const sum = crypto.createHash('sha256').update(body).digest();
    if (!sum.equals(buf.subarray(buf.length - CHECKSUM_BYTES))) return { problem: 'checksum mismatch (truncated or corrupt)' };
    const mode = MODES[buf.readUInt8(5)];
    const bucketBits = buf.readUInt8(6);
    const tagBytes = buf.readUInt8(7);
    const epoch = buf.readUInt32LE(8);
    if (epoch !== expect.epoch || mode !== expect.mode || bucketBits !== expect.bucketBits || tagBytes !== expect.tagBytes) {
      return { problem: 'its epoch or parameters differ from the database' };
    }
    if (!buf.subarray(32, 64).equals(Buffer.from(expect.publicKey))) return { problem: "it was built with another key than the epoch's" };
    const directoryVersion = Number(buf.readBigUInt64LE(16));
    const directoryDigest = new Uint8Array(buf.subarray(DIGEST_AT, DIGEST_AT + DIRECTORY_DIGEST_BYTES));
    const n = Number(buf.readBigUInt64LE(24));
    const buckets = bucketCount(bucketBits);
    const countsAt = HEADER_BYTES;
    const tagsAt = countsAt + 4 * buckets;
    const masksAt = tagsAt + n * tagBytes;
    if (masksAt + n !== body.length) return { problem: 'its length does not match its header' };
    const counts = new Uint32Array(buckets);
    for (let b = 0; b < buckets; b++) counts[b] = buf.readUInt32LE(countsAt + 4 * b);
    // Copies, so the file's buffer can be collected.
    const tags = new Uint8Array(buf.subarray(tagsAt, masksAt));
    const masks = new Uint8Array(buf.subarray(masksAt, masksAt + n));
    try {
      return { table: BucketTable.fromCounts(epoch, bucketBits, tagBytes, counts, tags, masks), directoryVersion, directoryDigest };
    } catch (e) {
      return { problem: (e as Error).message };
    }
  }
}

/** Reads an epoch's cache file: undefined when there is none, else the table or why it cannot be used. */
export function readCacheFile(dataDir: string, expect: CacheExpectation): CacheContent | { problem: string } | undefined {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(cacheFilePath(dataDir, expect.epoch));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return { problem: `cannot read it: ${(e as Error).message}` };
  }
  return BucketTable.deserialize(buf, expect);
}

/** Writes an epoch's cache file atomically (mode 0600). */
export function writeCacheFile(dataDir: string, table: BucketTable, header: CacheHeader): void {
  writeFileAtomic(cacheFilePath(dataDir, table.epoch), table.serialize(header));
}

/** Deletes an epoch's cache file and any temp file a crash left. */
export function removeCacheFile(dataDir: string, epoch: number): void {
  const file = cacheFilePath(dataDir, epoch);
  for (const f of [file, `${file}.tmp`]) fs.rmSync(f, { force: true });
}

/** The directory version in an epoch's cache file header, without reading or checking the rest; undefined without a readable header. */
export function readCacheVersion(dataDir: string, epoch: number): number | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(cacheFilePath(dataDir, epoch), 'r');
    const head = Buffer.alloc(24);
    if (fs.readSync(fd, head, 0, 24, 0) !== 24 || head.toString('latin1', 0, 4) !== MAGIC) return undefined;
    return Number(head.readBigUInt64LE(16));
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
