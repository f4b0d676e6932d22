/**
 * Bucket ids, tag truncation and the bucket layout of the blinded design
 * (docs/protocol.md, "Bucket ids" and "Tags").
 *
 * - bucket id: the first `bucketBits` bits, most significant first, of
 *   SHA-256(utf8("pcd-bucket:" + E.164)); with bucketBits = 0 the one bucket
 *   0 is the whole directory. The bucket id is the only thing derived from a
 *   looked-up number that the server sees, and it carries `bucketBits` bits:
 *   the anonymity set of a lookup is (numbering plan) / 2^bucketBits.
 * - tag: the first `tagBytes` bytes of the RFC 9497 Finalize output.
 * - a bucket: `tags` is the concatenation of its tags in ascending byte order,
 *   `capabilities[i]` the capability mask of tag i.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import type { E164 } from './e164.ts';
import { ErrorCode, PcdError } from './errors.ts';
import { LIMITS } from './limits.ts';

export const BUCKET_PREFIX = 'pcd-bucket:';
/** Default truncation: 8 bytes keep false positives below 1e-12 per lookup at 10^7 numbers. */
export const DEFAULT_TAG_BYTES = 8;
export const MIN_TAG_BYTES = 4;
export const MAX_TAG_BYTES = 32;

export function checkBucketBits(bits: number): number {
  if (!Number.isInteger(bits) || bits < 0 || bits > LIMITS.maxBucketBits) {
    throw new PcdError(ErrorCode.InvalidField, `bucketBits must be an integer from 0 to ${LIMITS.maxBucketBits}, got ${bits}`);
  }
  return bits;
}

export function checkTagBytes(n: number): number {
  if (!Number.isInteger(n) || n < MIN_TAG_BYTES || n > MAX_TAG_BYTES) {
    throw new PcdError(ErrorCode.InvalidField, `tagBytes must be an integer from ${MIN_TAG_BYTES} to ${MAX_TAG_BYTES}, got ${n}`);
  }
  return n;
}

/** The bucket a number falls in: first `bits` bits of SHA-256("pcd-bucket:" || E.164). */
export function bucketOf(number: E164, bits: number): number {
  if (bits === 0) return 0;
  const h = sha256(utf8ToBytes(BUCKET_PREFIX + number));
  // bits <= 24, so the first four bytes hold them; >>> 0 keeps it unsigned.
  const word = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
  return word >>> (32 - bits);
}

export function bucketCount(bits: number): number {
  return 2 ** bits;
}

/** Tag = first tagBytes bytes of the Finalize output. */
export function truncateTag(output: Uint8Array, tagBytes: number): Uint8Array {
  return output.slice(0, tagBytes);
}

/** Lexicographic comparison of a[ai..ai+n) and b[bi..bi+n). */
export function compareTags(a: Uint8Array, ai: number, b: Uint8Array, bi: number, n: number): number {
  for (let k = 0; k < n; k++) {
    const d = a[ai + k]! - b[bi + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * A bucket as it travels: sorted tags and one capability byte per tag.
 * `received` (a bucket from a server, on the client) checks the layout and
 * the masks so a malformed bucket is an error, never a silent "SMS only";
 * `fromWire` checks the layout only (the server re-reading its own tables).
 */
export class Bucket {
  readonly count: number;

  private constructor(
    readonly tags: Uint8Array,
    readonly capabilities: Uint8Array,
    readonly tagBytes: number,
  ) {
    this.count = capabilities.length;
  }

  /**
   * A bucket a server sent: the layout as {@link fromWire}, and no tag with
   * an all-zero capability mask (a registered tag always has a capability;
   * mask 0 means not registered, so such a tag has no place in a bucket).
   */
  static received(tags: Uint8Array, capabilities: Uint8Array, tagBytes: number): Bucket {
    const bucket = Bucket.fromWire(tags, capabilities, tagBytes);
    const zero = capabilities.indexOf(0);
    if (zero >= 0) throw new PcdError(ErrorCode.MalformedReply, `bucket tag ${zero} has an empty capability mask (a registered tag has at least one capability)`);
    return bucket;
  }

  /** Checks lengths and ascending order (not the masks: see {@link received}). */
  static fromWire(tags: Uint8Array, capabilities: Uint8Array, tagBytes: number): Bucket {
    if (tags.length !== capabilities.length * tagBytes) {
      throw new PcdError(
        ErrorCode.MalformedReply,
        `bucket holds ${tags.length} tag bytes for ${capabilities.length} capability masks of ${tagBytes}-byte tags`,
      );
    }
    for (let i = 1; i < capabilities.length; i++) {
      if (compareTags(tags, (i - 1) * tagBytes, tags, i * tagBytes, tagBytes) >= 0) {
        throw new PcdError(ErrorCode.MalformedReply, `bucket tags are not in strictly ascending order at index ${i}`);
      }
    }
    return new Bucket(tags, capabilities, tagBytes);
  }

  /** Builds a bucket from unsorted (tag, mask) pairs; used by the server's epoch build. */
  static build(entries: readonly { tag: Uint8Array; mask: number }[], tagBytes: number): Bucket {
    const sorted = [...entries].sort((x, y) => compareTags(x.tag, 0, y.tag, 0, tagBytes));
    const tags = new Uint8Array(sorted.length * tagBytes);
    const caps = new Uint8Array(sorted.length);
    sorted.forEach((e, i) => {
      tags.set(e.tag.subarray(0, tagBytes), i * tagBytes);
      caps[i] = e.mask;
    });
    return new Bucket(tags, caps, tagBytes);
  }

  /** Index of `tag` in the bucket, or -(insertion point) - 1 when absent. */
  indexOf(tag: Uint8Array): number {
    const n = this.tagBytes;
    let lo = 0;
    let hi = this.count - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareTags(this.tags, mid * n, tag, 0, n);
      if (c < 0) lo = mid + 1;
      else if (c > 0) hi = mid - 1;
      else return mid;
    }
    return -lo - 1;
  }

  /** Capability mask of `tag`, 0 when the tag is not in the bucket. */
  lookup(tag: Uint8Array): number {
    const i = this.indexOf(tag);
    return i >= 0 ? this.capabilities[i]! : 0;
  }

  /** A new bucket with `tag` set to `mask` (mask 0 removes it). Buckets are immutable. */
  with(tag: Uint8Array, mask: number): Bucket {
    const n = this.tagBytes;
    const i = this.indexOf(tag);
    if (i >= 0) {
      if (mask === 0) {
        const tags = new Uint8Array(this.tags.length - n);
        tags.set(this.tags.subarray(0, i * n));
        tags.set(this.tags.subarray((i + 1) * n), i * n);
        const caps = new Uint8Array(this.count - 1);
        caps.set(this.capabilities.subarray(0, i));
        caps.set(this.capabilities.subarray(i + 1), i);
        return new Bucket(tags, caps, n);
      }
      const caps = this.capabilities.slice();
      caps[i] = mask;
      return new Bucket(this.tags, caps, n);
    }
    if (mask === 0) return this;
    const at = -i - 1;
    const tags = new Uint8Array(this.tags.length + n);
    tags.set(this.tags.subarray(0, at * n));
    tags.set(tag.subarray(0, n), at * n);
    tags.set(this.tags.subarray(at * n), (at + 1) * n);
    const caps = new Uint8Array(this.count + 1);
    caps.set(this.capabilities.subarray(0, at));
    caps[at] = mask;
    caps.set(this.capabilities.subarray(at), at + 1);
    return new Bucket(tags, caps, n);
  }
}
