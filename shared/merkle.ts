/**
 * One view for everyone: a Merkle tree over an epoch's buckets.
 *
 * Why: the VOPRF proof shows a client that its tags were made with the
 * epoch's published key, and nothing about the buckets. A server could
 * single one client out by serving it a bucket with a tag dropped (a
 * messenger contact turns into "SMS only") or a config with a key of its
 * own. With a root over every bucket in the config, and an audit path in
 * each bucket reply, a bucket is the one the server committed to for that
 * directory version, and a client that remembers the roots it was shown
 * (client/designs/blinded.ts) catches a second root for the same (epoch,
 * version). What it does not give alone: that other clients were shown the
 * same root; that needs the roots compared between clients (gossip, a
 * transparency log), which pcd does not do.
 *
 * The tree, in the style of RFC 6962 §2.1 (Certificate Transparency), with
 * domain-separated hashing so that a leaf can never pass for a node:
 *
 *   leafData(b) = "pcd-bucket-v1" || u32be(epoch) || u32be(b) || u32be(n) || tags || capabilities
 *   leaf(b)     = SHA-256(0x00 || leafData(b))          RFC 6962 §2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))
 *   node(l, r)  = SHA-256(0x01 || l || r)               RFC 6962 §2.1: SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
 *   root        = the perfect binary tree over leaf(0) .. leaf(2^bucketBits - 1), in bucket order
 *   path(b)     = the sibling at height 0, then 1, ... up to bucketBits - 1: leaf to root (RFC 6962 §2.1.1)
 *
 * n is the bucket's tag count, `tags` its n * tagBytes bytes in ascending
 * order and `capabilities` its n masks (shared/buckets.ts), so leafData is
 * unambiguous. Unlike RFC 6962 the leaf count is always a power of two, so
 * every split is in the middle and a path has exactly bucketBits entries;
 * with bucketBits 0 the one leaf is the root and the path is empty. The
 * epoch and the bucket id are inside the leaf: a bucket cannot pass for
 * another bucket's, or for the same bucket of another epoch.
 *
 * SHA-256 is @noble/hashes by default (this module runs in browsers too);
 * every function takes another implementation of {@link Sha256}, which the
 * server passes (node:crypto, server/blinded/tree.ts): the bytes are the same.
 */
import { bytesEqual } from './bytes.ts';
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { LIMITS } from './limits.ts';

/** A SHA-256 digest: a leaf, a node, a root. */
export type Digest = Uint8Array;
export const DIGEST_BYTES = 32;
/** The label that opens every leaf's data; its version changes with the leaf layout. */
export const LEAF_LABEL = 'pcd-bucket-v1';
/** RFC 6962 §2.1 domain separation bytes. */
export const LEAF_PREFIX = 0x00;
export const NODE_PREFIX = 0x01;

const LABEL_BYTES = utf8ToBytes(LEAF_LABEL);
/** 0x00 || label || epoch || bucket || count: the part of a leaf's hashed bytes before the tags. */
export const LEAF_HEADER_BYTES = 1 + LABEL_BYTES.length + 12;

/** SHA-256 of the concatenation of `parts` (no copy needed: incremental). */
export type Sha256 = (parts: readonly Uint8Array[]) => Digest;

/** SHA-256 by @noble/hashes. */
export const nobleSha256: Sha256 = (parts) => {
  const h = sha256.create();
  for (const p of parts) h.update(p);
  return h.digest();
};

/** What a leaf commits to: one bucket of one epoch, as it travels (shared/buckets.ts Bucket layout). */
export interface BucketLeaf {
  epoch: number;
  bucket: number;
  tags: Uint8Array;
  capabilities: Uint8Array;
}

function u32(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`${what} must fit an unsigned 32-bit integer, got ${n}`);
  return n;
}

function putU32(out: Uint8Array, at: number, n: number): void {
  out[at] = n >>> 24;
  out[at + 1] = (n >>> 16) & 0xff;
  out[at + 2] = (n >>> 8) & 0xff;
  out[at + 3] = n & 0xff;
}

/**
 * Writes 0x00 || "pcd-bucket-v1" || u32be(epoch) || u32be(bucket) || u32be(tag count),
 * the hashed bytes before the tags, at `out[at ..]` ({@link LEAF_HEADER_BYTES} bytes).
 */
export function writeLeafHeader(out: Uint8Array, at: number, epoch: number, bucket: number, count: number): void {
  out[at] = LEAF_PREFIX;
  out.set(LABEL_BYTES, at + 1);
  const n = at + 1 + LABEL_BYTES.length;
  putU32(out, n, u32('epoch', epoch));
  putU32(out, n + 4, u32('bucket', bucket));
  putU32(out, n + 8, u32('tag count', count));
}

/** 0x00 || "pcd-bucket-v1" || u32be(epoch) || u32be(bucket) || u32be(tag count): the hashed bytes before the tags. */
export function leafHeader(epoch: number, bucket: number, count: number): Uint8Array {
  const out = new Uint8Array(LEAF_HEADER_BYTES);
  writeLeafHeader(out, 0, epoch, bucket, count);
  return out;
}

/** leafData(b) (without the 0x00 of the leaf hash): for tests and for reading the layout. */
export function bucketLeafData(leaf: BucketLeaf): Uint8Array {
  const head = leafHeader(leaf.epoch, leaf.bucket, leaf.capabilities.length).subarray(1);
  const out = new Uint8Array(head.length + leaf.tags.length + leaf.capabilities.length);
  out.set(head);
  out.set(leaf.tags, head.length);
  out.set(leaf.capabilities, head.length + leaf.tags.length);
  return out;
}

/** leaf(b) = SHA-256(0x00 || leafData(b)) (RFC 6962 §2.1). The tag count is the number of masks. */
export function bucketLeafHash(leaf: BucketLeaf, hash: Sha256 = nobleSha256): Digest {
  return hash([leafHeader(leaf.epoch, leaf.bucket, leaf.capabilities.length), leaf.tags, leaf.capabilities]);
}

const NODE_BYTE = Uint8Array.of(NODE_PREFIX);

/** node(l, r) = SHA-256(0x01 || l || r) (RFC 6962 §2.1). */
export function nodeHash(left: Digest, right: Digest, hash: Sha256 = nobleSha256): Digest {
  return hash([NODE_BYTE, left, right]);
}

/** log2 of a leaf count that must be a power of two, at least 1. */
export function treeHeight(leafCount: number): number {
  if (!Number.isSafeInteger(leafCount) || leafCount < 1 || (leafCount & (leafCount - 1)) !== 0 || leafCount > 2 ** 30) {
    throw new RangeError(`a bucket tree has a power-of-two number of leaves, got ${leafCount}`);
  }
  return Math.log2(leafCount);
}

/** The root over `leaves` (a power-of-two count; one leaf is its own root). */
export function merkleRoot(leaves: readonly Digest[], hash: Sha256 = nobleSha256): Digest {
  treeHeight(leaves.length);
  let level: readonly Digest[] = leaves;
  while (level.length > 1) {
    const up: Digest[] = new Array(level.length / 2);
    for (let i = 0; i < up.length; i++) up[i] = nodeHash(level[2 * i]!, level[2 * i + 1]!, hash);
    level = up;
  }
  return level[0]!;
}

/** The audit path of leaf `index`: its sibling at each height, leaf to root (RFC 6962 §2.1.1 order). */
export function auditPath(leaves: readonly Digest[], index: number, hash: Sha256 = nobleSha256): Digest[] {
  treeHeight(leaves.length);
  if (!Number.isInteger(index) || index < 0 || index >= leaves.length) throw new RangeError(`no leaf ${index} among ${leaves.length}`);
  const path: Digest[] = [];
  let level: readonly Digest[] = leaves;
  let i = index;
  while (level.length > 1) {
    path.push(level[i ^ 1]!);
    const up: Digest[] = new Array(level.length / 2);
    for (let j = 0; j < up.length; j++) up[j] = nodeHash(level[2 * j]!, level[2 * j + 1]!, hash);
    level = up;
    i >>>= 1;
  }
  return path;
}

/**
 * The root that leaf `index` with `path` leads to: at height h the running
 * hash is the left child when bit h of the index is 0, the right one when 1.
 */
export function rootFromPath(leaf: Digest, index: number, path: readonly Digest[], hash: Sha256 = nobleSha256): Digest {
  let h = leaf;
  for (let k = 0; k < path.length; k++) {
    const sibling = path[k]!;
    h = Math.floor(index / 2 ** k) % 2 === 0 ? nodeHash(h, sibling, hash) : nodeHash(sibling, h, hash);
  }
  return h;
}

/**
 * What a client checks of a bucket it received: that `path` takes its leaf
 * to `root`, the root published for the bucket's epoch and version. False
 * for a path of another length than `bucketBits`, an entry that is not a
 * digest, a bucket id out of range, or any other bucket content than the
 * one committed to (a tag dropped, added, or its mask changed).
 */
export function verifyBucketPath(leaf: BucketLeaf, path: readonly Uint8Array[], root: Digest, bucketBits: number, hash: Sha256 = nobleSha256): boolean {
  if (!Number.isInteger(bucketBits) || bucketBits < 0 || bucketBits > LIMITS.maxBucketBits) return false;
  if (path.length !== bucketBits || root.length !== DIGEST_BYTES) return false;
  if (!Number.isInteger(leaf.bucket) || leaf.bucket < 0 || leaf.bucket >= 2 ** bucketBits) return false;
  if (path.some((p) => p.length !== DIGEST_BYTES)) return false;
  return bytesEqual(rootFromPath(bucketLeafHash(leaf, hash), leaf.bucket, path, hash), root);
}
