/**
 * The directory's digest: what a cache (the directory snapshot, a blinded
 * epoch's cache) is checked against at a start, kept current by the
 * directory (server/directory.ts) and stored beside the journal
 * (server/store.ts, server/directory-store.ts).
 */
import type { CapabilityMask } from '../shared/capabilities.ts';

/** Bytes of a {@link DirectoryDigest}. */
export const DIRECTORY_DIGEST_BYTES = 16;
const LANES = DIRECTORY_DIGEST_BYTES / 4;
/** A key's two 32-bit halves: keys are E.164 digits as a safe integer (shared/e164.ts e164ToKey), up to 2^53. */
const WORD = 2 ** 32;
const SEEDS = [0x9e3779b1, 0x85ebca6b, 0xc2b2ae35, 0x27d4eb2f] as const;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** MurmurHash3's block step and finaliser (32-bit), over the words of one entry. */
function mixWord(h: number, k: number): number {
  k = Math.imul(rotl(Math.imul(k, 0xcc9e2d51), 15), 0x1b873593);
  return (Math.imul(rotl(h ^ k, 13), 5) + 0xe6546b64) | 0;
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A digest of a set of (number, mask) entries: the sum, lane by lane mod
 * 2^32, of a 128-bit hash of each entry. Being a sum, it is independent of
 * order and updated in O(1) per change (subtract the old entry, add the new
 * one), so the directory keeps it current and a replayed journal can be
 * rewound on it. It detects accidental change (a flipped digit or mask), not
 * a forger: whoever can rewrite the database can rewrite the cache too.
 */
export class DirectoryDigest {
  readonly lanes = new Uint32Array(LANES);

  /** Adds (`sign` 1) or removes (`sign` -1) one entry; a mask of 0 is no entry. */
  update(key: number, mask: CapabilityMask, sign: 1 | -1): void {
    if (mask === 0) return;
    const lo = key % WORD;
    const hi = (key - lo) / WORD;
    for (let i = 0; i < LANES; i++) {
      const h = finish(mixWord(mixWord(mixWord(SEEDS[i]!, lo), hi), mask) ^ 12);
      this.lanes[i] = (this.lanes[i]! + sign * h) >>> 0;
    }
  }

  static fromBytes(bytes: Uint8Array): DirectoryDigest {
    if (bytes.length !== DIRECTORY_DIGEST_BYTES) throw new Error(`a directory digest is ${DIRECTORY_DIGEST_BYTES} bytes, got ${bytes.length}`);
    const d = new DirectoryDigest();
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < LANES; i++) d.lanes[i] = view.getUint32(4 * i, true);
    return d;
  }

  equals(other: DirectoryDigest): boolean {
    return this.lanes.every((v, i) => v === other.lanes[i]);
  }

  copy(): DirectoryDigest {
    const d = new DirectoryDigest();
    d.lanes.set(this.lanes);
    return d;
  }

  /** The digest's bytes (lanes little-endian). */
  bytes(): Uint8Array {
    const out = new Uint8Array(DIRECTORY_DIGEST_BYTES);
    const view = new DataView(out.buffer);
    this.lanes.forEach((v, i) => view.setUint32(4 * i, v, true));
    return out;
  }
}
