/**
 * A compact open-addressing hash table from integer keys (0 <= key < 2^53,
 * held in a Float64Array) to numeric values, with linear probing.
 *
 * It is the plain design's in-memory directory index: 10^7 numbers take
 * 2^24 slots of 8 + 1 bytes (about 150 MB) instead of 10^7 JS objects, and a
 * registration or deletion is one O(1) update, so it is visible to the very
 * next lookup. In `multi` mode a key may hold several values (the hashed
 * design keys by a 48-bit hash prefix, where collisions are expected).
 */

const EMPTY = -1;
const DELETED = -2;
const MAX_LOAD = 0.7;

type ValueArray = Uint8Array | Float64Array;
type ValueArrayConstructor = Uint8ArrayConstructor | Float64ArrayConstructor;

/** Keys are safe integers (up to 53 bits): hashed as their low and high 32-bit words. */
const WORD = 2 ** 32;

function hashKey(key: number): number {
  const lo = key % WORD;
  const hi = (key - lo) / WORD;
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class KeyTable {
  private keys: Float64Array;
  private values: ValueArray;
  private capacityMask: number;
  private used = 0; // live + deleted slots
  private live = 0;

  constructor(
    private readonly Values: ValueArrayConstructor,
    private readonly multi = false,
    expected = 1024,
  ) {
    const capacity = KeyTable.capacityFor(expected);
    this.keys = new Float64Array(capacity).fill(EMPTY);
    this.values = new Values(capacity);
    this.capacityMask = capacity - 1;
  }

  private static capacityFor(n: number): number {
    let c = 1024;
    while (c * MAX_LOAD < n) c *= 2;
    return c;
  }

  get size(): number {
    return this.live;
  }

  /** Bytes held by the table's arrays. */
  get byteLength(): number {
    return this.keys.byteLength + this.values.byteLength;
  }

  /** The value for `key` (unique mode), or `missing`. */
  get(key: number, missing = 0): number {
    let i = hashKey(key) & this.capacityMask;
    for (;;) {
      const k = this.keys[i]!;
      if (k === key) return this.values[i]!;
      if (k === EMPTY) return missing;
      i = (i + 1) & this.capacityMask;
    }
  }

  /** Every value stored under `key` (multi mode). */
  getAll(key: number): number[] {
    const out: number[] = [];
    let i = hashKey(key) & this.capacityMask;
    for (;;) {
      const k = this.keys[i]!;
      if (k === key) out.push(this.values[i]!);
      else if (k === EMPTY) return out;
      i = (i + 1) & this.capacityMask;
    }
  }

  /** Unique mode: sets key to value. Multi mode: adds the (key, value) pair unless present. */
  set(key: number, value: number): void {
    if (!(key >= 0 && key <= Number.MAX_SAFE_INTEGER && Number.isInteger(key))) {
      throw new RangeError(`KeyTable key must be an integer in [0, 2^53), got ${key}`);
    }
    let i = hashKey(key) & this.capacityMask;
    let free = -1;
    for (;;) {
      const k = this.keys[i]!;
      if (k === key && (!this.multi || this.values[i] === value)) {
        this.values[i] = value;
        return;
      }
      if (k === DELETED && free < 0) free = i;
      if (k === EMPTY) break;
      i = (i + 1) & this.capacityMask;
    }
    if (free < 0) {
      free = i;
      this.used++;
    }
    this.keys[free] = key;
    this.values[free] = value;
    this.live++;
    if (this.used > this.keys.length * MAX_LOAD) this.rehash(KeyTable.capacityFor(this.live * 2));
  }

  /** Removes `key` (unique mode) or the (key, value) pair (multi mode). */
  delete(key: number, value?: number): boolean {
    let i = hashKey(key) & this.capacityMask;
    for (;;) {
      const k = this.keys[i]!;
      if (k === key && (!this.multi || value === undefined || this.values[i] === value)) {
        this.keys[i] = DELETED;
        this.values[i] = 0;
        this.live--;
        return true;
      }
      if (k === EMPTY) return false;
      i = (i + 1) & this.capacityMask;
    }
  }

  *entries(): Generator<[number, number]> {
    for (let i = 0; i < this.keys.length; i++) {
      const k = this.keys[i]!;
      if (k >= 0) yield [k, this.values[i]!];
    }
  }

  private rehash(capacity: number): void {
    const oldKeys = this.keys;
    const oldValues = this.values;
    this.keys = new Float64Array(capacity).fill(EMPTY);
    this.values = new this.Values(capacity);
    this.capacityMask = capacity - 1;
    this.used = 0;
    this.live = 0;
    for (let j = 0; j < oldKeys.length; j++) {
      const k = oldKeys[j]!;
      if (k < 0) continue;
      let i = hashKey(k) & this.capacityMask;
      while (this.keys[i] !== EMPTY) i = (i + 1) & this.capacityMask;
      this.keys[i] = k;
      this.values[i] = oldValues[j]!;
      this.used++;
      this.live++;
    }
  }
}
