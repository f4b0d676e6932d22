/**
 * The scan's byte search (audit/scan/scan.ts): every occurrence of many
 * byte patterns in one pass over a file, whatever their number.
 *
 * One pass per file, in chunks with an overlap of the longest pattern (see
 * {@link MultiPatternSearcher}: one probe of a cache-sized bitmap per 4
 * bytes). Measured on the project's 2-core VM, shared with other jobs, 1000
 * numbers (17,779 patterns): 100-260 MB/s over 100 MB of random bytes with
 * digit runs in memory, and 60-140 MB/s for `scanDataFolder` over a seeded
 * 10^6-number data folder (130 MB), read, search and attribution included.
 * Numbers x forms x files passes of Buffer.indexOf would be ~1.7 GB/s /
 * 17,779 = 0.1 MB/s.
 */
import fs from 'node:fs';

const MIX_A = 0x9e3779b1 | 0;
const MIX_B = 0x85ebca6b | 0;

/** Hits are reported as (pattern index, absolute offset). */
export type HitSink = (pattern: number, offset: number) => void;

/** 32-bit key of 8 bytes given as two words. */
function gridKey8(w1: number, w2: number): number {
  return Math.imul(w1 ^ Math.imul(w2, MIX_B), MIX_A);
}

/** Bits of a presence bitmap for `n` keys: ~64 bits per key (about 1.5 % false positives), 2^16 .. 2^24. */
function bitmapBits(n: number): number {
  return Math.min(24, Math.max(16, Math.ceil(Math.log2(Math.max(1, n) * 64))));
}

/**
 * The searcher's index of pattern q-grams: 32-bit keys (a q-gram of a
 * pattern, mixed) -> lists of int entries (which pattern, at which offset),
 * in typed arrays (not server/keytable.ts, the tag index): a presence bitmap
 * over the key's top bits (the filter nearly every probe stops at), then an
 * open-addressing table (linear probing) whose slot holds the key and where
 * its entries start and end in one flat array. No Map: keys above 2^31 are
 * heap numbers to a Map, and its lookups cost more than the rest of the scan.
 */
class PatternKeyTable {
  readonly bits: Uint8Array;
  readonly shift: number;
  slotKey = new Int32Array(1);
  /** Start of the slot's entries in `entries`, and one past their end; end 0: empty slot. */
  slotStart = new Int32Array(1);
  slotEnd = new Int32Array(1);
  entries = new Int32Array(0);
  mask = 0;
  private readonly pending = new Map<number, number[]>();

  constructor(entries: number) {
    const b = bitmapBits(entries);
    this.bits = new Uint8Array(1 << (b - 3));
    this.shift = 32 - b;
  }

  get size(): number {
    return this.pending.size;
  }

  add(key: number, entry: number): void {
    const k = key | 0;
    const h = k >>> this.shift;
    this.bits[h >>> 3]! |= 1 << (h & 7);
    const list = this.pending.get(k);
    if (list) list.push(entry);
    else this.pending.set(k, [entry]);
  }

  /** Lays the entries out; call once after the last add. */
  seal(): void {
    let slots = 2;
    while (slots < 2 * this.pending.size) slots *= 2;
    this.mask = slots - 1;
    this.slotKey = new Int32Array(slots);
    this.slotStart = new Int32Array(slots);
    this.slotEnd = new Int32Array(slots);
    const total = [...this.pending.values()].reduce((n, l) => n + l.length, 0);
    this.entries = new Int32Array(total);
    let at = 0;
    for (const [k, list] of this.pending) {
      let slot = slotOf(k) & this.mask;
      while (this.slotEnd[slot] !== 0) slot = (slot + 1) & this.mask;
      this.slotKey[slot] = k;
      this.slotStart[slot] = at;
      for (const e of list) this.entries[at++] = e;
      this.slotEnd[slot] = at;
    }
  }
}

/** Slot of a key: its low bits, remixed (the bitmap already used the top bits). */
function slotOf(k: number): number {
  return Math.imul(k ^ (k >>> 16), MIX_B);
}

/**
 * 'digit-before': a match directly after an ASCII digit is the tail of a
 * longer digit string, not this pattern: the national number 772297381
 * inside another registered number +33677229738 is no trace of it. Only
 * the national form uses it. The byte AFTER a match says nothing: in a
 * database record the next column is binary and may well be 0x30..0x39.
 */
export type Boundary = 'none' | 'digit-before';
const BOUNDARY_BYTES = 1;

/** Smallest pattern the 8-byte grid key covers at every alignment: 8 bytes + 3 of slack. */
const Q8_MIN = 11;
/** Smallest pattern the 4-byte grid key covers at every alignment. */
const Q4_MIN = 7;

/**
 * Finds every occurrence of many byte patterns (each at least 4 bytes) in
 * one pass over the input, whatever their number.
 *
 * The input is read as 32-bit words at every 4th byte (a grid). An
 * occurrence of a pattern of m >= 7 bytes at offset s contains exactly one
 * grid point a = s + j (j in 0..3), and the q bytes from a are inside the
 * pattern when j + q <= m. So every pattern is indexed by its q-grams at
 * offsets 0..3 (q = 8 when m >= 11, else q = 4), and the scan looks only at
 * grid points: one table probe per 4 bytes. A presence bitmap over the key,
 * sized to stay in cache, rejects almost every grid point with one load;
 * only bitmap hits look in the Map and compare whole patterns. 8-byte keys
 * where possible because database pages are full of digits: a 4-byte key
 * such as "1415" is shared by every number of an area code. Patterns of 4
 * to 6 bytes (only tags of fewer than 7 bytes) get a per-byte pass of their own.
 *
 * Words are read in the platform's byte order and the keys are computed
 * the same way, so the grid works on any endianness.
 */
export class MultiPatternSearcher {
  readonly maxLength: number;
  private readonly q8: PatternKeyTable;
  private readonly q4: PatternKeyTable;
  private readonly tiny: PatternKeyTable;
  private readonly scratch = new Uint8Array(4);
  private readonly scratch32 = new Int32Array(this.scratch.buffer);

  /** Per pattern: 1 when a match directly after an ASCII digit does not count. */
  private readonly boundary: Uint8Array;

  constructor(
    readonly patterns: readonly Uint8Array[],
    boundaries?: readonly Boundary[],
  ) {
    this.boundary = Uint8Array.from(patterns, (_p, i) => (boundaries?.[i] === 'digit-before' ? 1 : 0));
    let max = 4;
    let n8 = 0;
    let n4 = 0;
    let nTiny = 0;
    patterns.forEach((p, i) => {
      if (p.length < 4) throw new RangeError(`pattern ${i} has ${p.length} bytes; at least 4 are needed`);
      max = Math.max(max, p.length);
      if (p.length >= Q8_MIN) n8++;
      else if (p.length >= Q4_MIN) n4++;
      else nTiny++;
    });
    this.maxLength = max;
    this.q8 = new PatternKeyTable(4 * n8);
    this.q4 = new PatternKeyTable(4 * n4);
    this.tiny = new PatternKeyTable(nTiny);
    patterns.forEach((p, i) => {
      if (p.length >= Q8_MIN) {
        for (let j = 0; j < 4; j++) this.q8.add(gridKey8(this.word(p, j), this.word(p, j + 4)), (i << 2) | j);
      } else if (p.length >= Q4_MIN) {
        for (let j = 0; j < 4; j++) this.q4.add(Math.imul(this.word(p, j), MIX_A), (i << 2) | j);
      } else {
        const w = (p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!;
        this.tiny.add(Math.imul(w, MIX_A), i);
      }
    });
    this.q8.seal();
    this.q4.seal();
    this.tiny.seal();
  }

  /** The 4 bytes of `p` at `off` as this platform's Uint32Array reads them. */
  private word(p: Uint8Array, off: number): number {
    this.scratch.set(p.subarray(off, off + 4));
    return this.scratch32[0]!;
  }

  /** False when pattern `pi` asks for no digit before it and there is one at s - 1. */
  private bounded(pi: number, buf: Uint8Array, s: number): boolean {
    if (this.boundary[pi] === 0 || s === 0) return true;
    const c = buf[s - 1]!;
    return c < 0x30 || c > 0x39;
  }

  /** The slot of `key` in `t`, or -1 when `t` has no entry for it. */
  private static find(t: PatternKeyTable, key: number): number {
    const mask = t.mask;
    const keys = t.slotKey;
    const ends = t.slotEnd;
    let slot = slotOf(key) & mask;
    while (ends[slot] !== 0) {
      if (keys[slot] === key) return slot;
      slot = (slot + 1) & mask;
    }
    return -1;
  }

  /** Verifies grid entries (pattern << 2 | j) of `slot` at grid point `a`: the occurrence starts at a - j. */
  private verifyGrid(t: PatternKeyTable, slot: number, buf: Uint8Array, a: number, from: number, to: number, base: number, onHit: HitSink): void {
    const entries = t.entries;
    for (let k = t.slotStart[slot]!, end = t.slotEnd[slot]!; k < end; k++) {
      const e = entries[k]!;
      const s = a - (e & 3);
      if (s < from || s >= to) continue;
      const pi = e >>> 2;
      const p = this.patterns[pi]!;
      const n = p.length;
      if (s + n > buf.length) continue;
      let j = 0;
      while (j < n && buf[s + j] === p[j]) j++;
      if (j === n && this.bounded(pi, buf, s)) onHit(pi, base + s);
    }
  }

  /**
   * Reports every occurrence that starts at `from <= s < to` in `buf`
   * (patterns may run to the end of `buf`); `base` is the absolute offset of buf[0].
   */
  searchBuffer(input: Uint8Array, onHit: HitSink, from = 0, to = input.length, base = 0): void {
    let buf = input;
    if (buf.byteOffset % 4 !== 0) {
      buf = new Uint8Array(input.length);
      buf.set(input);
    }
    const len = buf.length;
    to = Math.min(to, len);
    if (from >= to) return;
    const words = new Int32Array(buf.buffer, buf.byteOffset, len >>> 2);
    const has8 = this.q8.size > 0;
    const has4 = this.q4.size > 0;
    if (has8 || has4) {
      const q8 = this.q8;
      const q4 = this.q4;
      const bits8 = q8.bits;
      const shift8 = q8.shift;
      const bits4 = q4.bits;
      const shift4 = q4.shift;
      // Grid points a = 4i with from <= a and a - 3 < to.
      const first = Math.ceil(from / 4);
      const last = Math.min(Math.floor((to + 2) / 4), words.length - 1);
      for (let i = first; i <= last; i++) {
        const w = words[i]!;
        if (has8 && i + 1 < words.length) {
          const k = Math.imul(w ^ Math.imul(words[i + 1]!, MIX_B), MIX_A);
          const h = k >>> shift8;
          if ((bits8[h >>> 3]! & (1 << (h & 7))) !== 0) {
            const slot = MultiPatternSearcher.find(q8, k);
            if (slot >= 0) this.verifyGrid(q8, slot, buf, i << 2, from, to, base, onHit);
          }
        }
        if (has4) {
          const k = Math.imul(w, MIX_A);
          const h = k >>> shift4;
          if ((bits4[h >>> 3]! & (1 << (h & 7))) !== 0) {
            const slot = MultiPatternSearcher.find(q4, k);
            if (slot >= 0) this.verifyGrid(q4, slot, buf, i << 2, from, to, base, onHit);
          }
        }
      }
    }
    if (this.tiny.size > 0) {
      const tiny = this.tiny;
      const bits = tiny.bits;
      const shift = tiny.shift;
      const end = Math.min(to, len - 3);
      if (from < end) {
        let w = (buf[from]! << 16) | (buf[from + 1]! << 8) | buf[from + 2]!;
        for (let s = from; s < end; s++) {
          w = (w << 8) | buf[s + 3]!;
          const k = Math.imul(w, MIX_A);
          const h = k >>> shift;
          if ((bits[h >>> 3]! & (1 << (h & 7))) === 0) continue;
          const slot = MultiPatternSearcher.find(tiny, k);
          if (slot < 0) continue;
          for (let e = tiny.slotStart[slot]!, stop = tiny.slotEnd[slot]!; e < stop; e++) {
            const pi = tiny.entries[e]!;
            const p = this.patterns[pi]!;
            if (s + p.length > len) continue;
            let j = 0;
            while (j < p.length && buf[s + j] === p[j]) j++;
            if (j === p.length && this.bounded(pi, buf, s)) onHit(pi, base + s);
          }
        }
      }
    }
  }

  /**
   * Searches a whole file in chunks of `chunkBytes`. Each chunk keeps the
   * bytes after its last searched start (the longest pattern and the byte
   * that follows it) and the two before its first one (boundary checks), so
   * no occurrence is missed or reported twice at a chunk edge. Returns bytes read.
   */
  searchFile(file: string, onHit: HitSink, chunkBytes = 16 << 20): number {
    const lookahead = this.maxLength + BOUNDARY_BYTES;
    const buf = Buffer.from(new ArrayBuffer(Math.max(chunkBytes, 4096) + lookahead + BOUNDARY_BYTES)); // 4-byte aligned for the word grid
    const fd = fs.openSync(file, 'r');
    let bufStart = 0; // absolute offset of buf[0]
    let len = 0; // bytes held in buf
    let scanned = 0; // absolute offset of the first start not yet searched
    try {
      for (;;) {
        const n = fs.readSync(fd, buf, len, buf.length - len, bufStart + len);
        len += n;
        const eof = n === 0;
        const stop = eof ? bufStart + len : bufStart + len - lookahead;
        if (stop > scanned) {
          this.searchBuffer(buf.subarray(0, len), onHit, scanned - bufStart, stop - bufStart, bufStart);
          scanned = stop;
        }
        if (eof) break;
        const keepFrom = Math.max(bufStart, scanned - BOUNDARY_BYTES) - bufStart;
        buf.copy(buf, 0, keepFrom, len);
        bufStart += keepFrom;
        len -= keepFrom;
      }
    } finally {
      fs.closeSync(fd);
    }
    return bufStart + len;
  }
}
