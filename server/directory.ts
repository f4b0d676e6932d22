/**
 * The in-memory directory index: every registered number's capability mask,
 * keyed by the number's digits (e164ToKey) in a compact KeyTable. Loaded
 * from the store at start; every registration or deletion updates it before
 * the admin call returns, so the very next lookup sees it.
 *
 * It also keeps a digest of its content ({@link Directory.digest}), which the
 * blinded design's epoch caches record and check when loaded
 * (server/blinded/recovery.ts, docs/operations.md): a cache built from one
 * directory is never served for another, even when the database changed
 * under it without a version bump (a damaged or edited `pcd.sqlite` whose
 * SQLite integrity check still passes).
 */
import type { CapabilityMask } from '../shared/capabilities.ts';
import type { DirectoryChange } from '../shared/design.ts';
import { e164ToKey, keyToE164, type E164 } from '../shared/e164.ts';
import { KeyTable } from './keytable.ts';
import type { Store } from './store.ts';

/** Bytes of a {@link DirectoryDigest}. */
export const DIRECTORY_DIGEST_BYTES = 16;
const LANES = DIRECTORY_DIGEST_BYTES / 4;
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
    const lo = key % 4294967296;
    const hi = (key - lo) / 4294967296;
    for (let i = 0; i < LANES; i++) {
      const h = finish(mixWord(mixWord(mixWord(SEEDS[i]!, lo), hi), mask) ^ 12);
      this.lanes[i] = (this.lanes[i]! + sign * h) >>> 0;
    }
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

export class Directory {
  private readonly table: KeyTable;
  private readonly sum = new DirectoryDigest();

  private constructor(expected: number) {
    this.table = new KeyTable(Uint8Array, false, expected);
  }

  static load(store: Store): Directory {
    const d = new Directory(store.directorySize());
    for (const { number, mask } of store.directory()) {
      const key = e164ToKey(number);
      d.sum.update(key, d.table.get(key), -1); // a number listed twice counts once, as in the table
      d.table.set(key, mask);
      d.sum.update(key, mask, 1);
    }
    return d;
  }

  get size(): number {
    return this.table.size;
  }

  get byteLength(): number {
    return this.table.byteLength;
  }

  /** Capability mask of a number; 0 when it is not registered. */
  mask(number: E164): CapabilityMask {
    return this.table.get(e164ToKey(number));
  }

  apply(changes: readonly DirectoryChange[]): void {
    for (const { number, mask } of changes) {
      const key = e164ToKey(number);
      this.sum.update(key, this.table.get(key), -1);
      this.sum.update(key, mask, 1);
      if (mask === 0) this.table.delete(key);
      else this.table.set(key, mask);
    }
  }

  /** The digest of the entries now (a copy: see {@link DirectoryDigest}). */
  digest(): DirectoryDigest {
    return this.sum.copy();
  }

  *entries(): Generator<DirectoryChange> {
    for (const [key, mask] of this.table.entries()) yield { number: keyToE164(key), mask };
  }
}
