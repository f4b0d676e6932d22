/**
 * The scan (`pcd audit --scan`): searches every persisted byte of a data
 * folder for phone numbers in every form a server could have stored them,
 * and says which design each hit belongs to. It is the evidence behind
 * DESIGN.md §5: a number that was only looked up through the blinded design
 * appears nowhere, not as text, not hashed, not as a tag; registered numbers
 * are in the directory by necessity.
 *
 * Forms searched, per number (E.164 `x`):
 * - text: `x` in UTF-8 and UTF-16LE, its digits without '+', and (optional,
 *   default on, when 7 digits or more) its national significant number;
 *   a national-form hit right after a digit is the tail of another,
 *   longer number and does not count;
 * - SHA-256, SHA-1 and MD5 of utf8(x), each as raw bytes, lower- and
 *   upper-case hex, base64 and base64url (JSON bodies and log lines carry
 *   bytes as base64);
 * - for every epoch whose secret key is still on disk: its tag (the first
 *   tagBytes bytes of the RFC 9497 output) raw and hex, and the full 64-byte
 *   output raw, hex (both cases) and base64. Epochs whose key is destroyed
 *   cannot be searched, by anyone: that is what destroying it is for.
 *
 * Where: every regular file under the folder, recursively: the SQLite file
 * and its -wal and -shm, the key file, epoch bucket caches, anything else.
 * Attribution of a hit: in the SQLite file, byte offset -> page -> the table
 * or index owning the page (the `dbstat` virtual table, over the main file's
 * own bytes) -> design; pages on the freelist are 'free-page'. In the -wal,
 * each frame's header names its page, mapped the same way over the state
 * with the WAL applied ('wal:' prefix). `epochs/` and the key file belong to
 * 'blinded'; anything else is 'other:<file>'. `secure_delete` is on in the
 * store, so a correct server leaves no purged row in free pages: the scan
 * is how that is shown rather than assumed.
 *
 * Search: one pass per file, in chunks with an overlap of the longest
 * pattern, whatever the number of patterns (see {@link MultiPatternSearcher}:
 * one probe of a cache-sized bitmap per 4 bytes). Measured on the project's
 * 2-core VM, shared with other jobs, 1000 numbers (17,779 patterns): 100-260
 * MB/s over 100 MB of random bytes with digit runs in memory, and 60-140 MB/s
 * for `scanDataFolder` over a seeded 10^6-number data folder (130 MB), read,
 * search and attribution included. Numbers x forms x files passes of
 * Buffer.indexOf would be ~1.7 GB/s / 17,779 = 0.1 MB/s.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type Database from 'better-sqlite3';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import type { E164 } from '../shared/e164.ts';
import { evaluate, MODES, type OprfMode } from '../shared/oprf.ts';
import {
  csvRecord,
  isSqliteFile,
  openSnapshot,
  readWal,
  renderTable,
  sqlitePageSize,
  WAL_FRAME_HEADER_BYTES,
  WAL_HEADER_BYTES,
  type AuditFormat,
} from './audit.ts';
import { KEY_FILE, readEpochKeys } from '../disk/keyfile.ts';
import { DB_FILE } from '../disk/files.ts';

/** Where a hit is: a design's data, the directory, a free page, or something else. */
export type ScanDesign = 'plain' | 'hashed' | 'blinded' | 'directory' | 'free-page' | 'other';
export const SCAN_DESIGNS: readonly ScanDesign[] = ['plain', 'hashed', 'blinded', 'directory', 'free-page', 'other'];

export interface ScanHit {
  /** Path relative to the data folder. */
  file: string;
  offset: number;
  length: number;
  form: string;
  /** e.g. 'plain', 'wal:hashed', 'free-page', 'blinded', 'other:admin-token'. */
  attributedTo: string;
  design: ScanDesign;
  /** SQLite table or index owning the page, when in the database or its WAL. */
  table?: string;
  page?: number;
  /** In a WAL frame past the valid chain: a leftover of an earlier WAL generation (what a checkpoint that does not truncate leaves). */
  staleWalFrame?: true;
}

export interface ScanNumber {
  number: E164;
  /** In the `numbers` table: in the directory by necessity. */
  registered: boolean;
  hits: ScanHit[];
}

export interface ScanSummaryRow {
  design: ScanDesign;
  registeredNumbers: number;
  registeredHits: number;
  /** Numbers not in the directory (only looked up, or never seen) found here. */
  unregisteredNumbers: number;
  unregisteredHits: number;
}

export interface ScanResult {
  dataDir: string;
  files: { file: string; bytes: number; kind: string }[];
  forms: string[];
  /** Epochs in the database, and whether their tags could be searched (key on disk). */
  epochs: { epoch: number; mode: string; tagBytes: number; keyOnDisk: boolean }[];
  numbers: ScanNumber[];
  summary: ScanSummaryRow[];
  bytes: number;
  /** Time of the byte search alone, and its throughput. */
  searchMs: number;
  mbPerSecond: number;
  /** Whole scan, pattern derivation (tags) and attribution included. */
  totalMs: number;
  warnings: string[];
}

export interface ScanOptions {
  /** Also search national significant numbers of 7 digits or more (default true). */
  national?: boolean;
  /** Bytes read per chunk (default 16 MiB). */
  chunkBytes?: number;
  /** Epoch keys to derive tags with (default: the data folder's key file). */
  keys?: ReadonlyMap<number, Uint8Array>;
}

// ===========================================================================
// Multi-pattern search

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
 * 32-bit keys -> lists of int entries, in typed arrays: a presence bitmap
 * over the key's top bits (the filter nearly every probe stops at), then an
 * open-addressing table (linear probing) whose slot holds the key and where
 * its entries start and end in one flat array. No Map: keys above 2^31 are
 * heap numbers to a Map, and its lookups cost more than the rest of the scan.
 */
class KeyTable {
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
  private readonly q8: KeyTable;
  private readonly q4: KeyTable;
  private readonly tiny: KeyTable;
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
    this.q8 = new KeyTable(4 * n8);
    this.q4 = new KeyTable(4 * n4);
    this.tiny = new KeyTable(nTiny);
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
  private static find(t: KeyTable, key: number): number {
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
  private verifyGrid(t: KeyTable, slot: number, buf: Uint8Array, a: number, from: number, to: number, base: number, onHit: HitSink): void {
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

// ===========================================================================
// Forms of a number

export interface NumberForm {
  form: string;
  bytes: Uint8Array;
  boundary: Boundary;
}

export interface TagEpoch {
  epoch: number;
  mode: OprfMode;
  tagBytes: number;
  secretKey: Uint8Array;
}

function encodings(prefix: string, raw: Uint8Array): NumberForm[] {
  const b = Buffer.from(raw);
  const hex = b.toString('hex');
  return [
    { form: `${prefix}-raw`, bytes: b, boundary: 'none' },
    { form: `${prefix}-hex`, bytes: Buffer.from(hex, 'latin1'), boundary: 'none' },
    { form: `${prefix}-HEX`, bytes: Buffer.from(hex.toUpperCase(), 'latin1'), boundary: 'none' },
    // Without padding: the same bytes whether a writer padded or not.
    { form: `${prefix}-base64`, bytes: Buffer.from(b.toString('base64').replace(/=+$/, ''), 'latin1'), boundary: 'none' },
    { form: `${prefix}-base64url`, bytes: Buffer.from(b.toString('base64url'), 'latin1'), boundary: 'none' },
  ];
}

/** Every form of `number` the scan searches; identical byte strings are kept once (first form named). */
export function numberForms(number: E164, options: { national?: boolean; epochs?: readonly TagEpoch[] } = {}): NumberForm[] {
  const utf8 = Buffer.from(number, 'utf8');
  const forms: NumberForm[] = [
    { form: 'e164', bytes: utf8, boundary: 'none' },
    { form: 'e164-utf16le', bytes: Buffer.from(number, 'utf16le'), boundary: 'none' },
    { form: 'digits', bytes: Buffer.from(number.slice(1), 'latin1'), boundary: 'none' },
  ];
  if (options.national !== false) {
    const national = parsePhoneNumberFromString(number)?.nationalNumber;
    if (national && national.length >= 7) forms.push({ form: 'national', bytes: Buffer.from(national, 'latin1'), boundary: 'digit-before' });
  }
  for (const alg of ['sha256', 'sha1', 'md5'] as const) forms.push(...encodings(alg, crypto.createHash(alg).update(utf8).digest()));
  for (const e of options.epochs ?? []) {
    const output = evaluate(e.mode, e.secretKey, utf8ToBytes(number));
    const tag = output.subarray(0, e.tagBytes);
    forms.push({ form: `tag-e${e.epoch}-raw`, bytes: Buffer.from(tag), boundary: 'none' });
    forms.push({ form: `tag-e${e.epoch}-hex`, bytes: Buffer.from(Buffer.from(tag).toString('hex'), 'latin1'), boundary: 'none' });
    forms.push(...encodings(`output-e${e.epoch}`, output).filter((f) => !f.form.endsWith('base64url')));
  }
  const seen = new Set<string>();
  return forms.filter((f) => {
    const k = Buffer.from(f.bytes).toString('hex');
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

const FORM_ORDER = [
  'e164',
  'e164-utf16le',
  'digits',
  'national',
  ...['sha256', 'sha1', 'md5'].flatMap((a) => ['raw', 'hex', 'HEX', 'base64', 'base64url'].map((e) => `${a}-${e}`)),
  'tag-eN-raw',
  'tag-eN-hex',
  ...['raw', 'hex', 'HEX', 'base64'].map((e) => `output-eN-${e}`),
];

function formRank(form: string): number {
  const i = FORM_ORDER.indexOf(form);
  return i < 0 ? FORM_ORDER.length : i;
}

// ===========================================================================
// Attribution

interface Place {
  attributedTo: string;
  design: ScanDesign;
  table?: string;
  page?: number;
  staleWalFrame?: true;
}

const TABLE_DESIGN: Record<string, ScanDesign> = {
  plain_log: 'plain',
  hashed_log: 'hashed',
  blinded_eval_log: 'blinded',
  blinded_bucket_log: 'blinded',
  epochs: 'blinded',
  accounts: 'directory',
  numbers: 'directory',
  // The journal of directory changes (server/store.ts): registered numbers, and deleted ones until it is pruned.
  directory_changes: 'directory',
  // AUTOINCREMENT's counter (server/store.ts): the largest account id given out.
  sqlite_sequence: 'directory',
};

/** Page number -> owning table/index name ('free-page' for freelist pages), from dbstat and the freelist. */
export interface PageMap {
  pageSize: number;
  owner: (string | undefined)[];
  /** Index name -> its table. */
  tableOf: Map<string, string>;
}

export function pageMapOf(db: Database.Database, image: { pageSize: number; freelist: number[] }): PageMap {
  const owner: (string | undefined)[] = [];
  for (const r of db.prepare<[], { name: string; pageno: number }>('SELECT name, pageno FROM dbstat').iterate()) owner[r.pageno] = r.name;
  for (const p of image.freelist) owner[p] = 'free-page';
  const tableOf = new Map<string, string>();
  for (const r of db.prepare<[], { name: string; tbl_name: string }>("SELECT name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index')").iterate()) {
    tableOf.set(r.name, r.tbl_name);
  }
  tableOf.set('sqlite_schema', 'sqlite_schema');
  return { pageSize: image.pageSize, owner, tableOf };
}

/** Pages on the freelist (trunk and leaf), walked from the header of a database image. */
export function freelistPages(image: Buffer, pageSize: number): number[] {
  const pages: number[] = [];
  const total = Math.floor(image.length / pageSize);
  let trunk = image.readUInt32BE(32);
  const seen = new Set<number>();
  while (trunk > 0 && trunk <= total && !seen.has(trunk)) {
    seen.add(trunk);
    pages.push(trunk);
    const at = (trunk - 1) * pageSize;
    const leaves = Math.min(image.readUInt32BE(at + 4), (pageSize - 8) / 4);
    for (let i = 0; i < leaves; i++) {
      const leaf = image.readUInt32BE(at + 8 + 4 * i);
      if (leaf > 0 && leaf <= total) pages.push(leaf);
    }
    trunk = image.readUInt32BE(at);
  }
  return pages;
}

function placeOfPage(map: PageMap, page: number, prefix: string): Place {
  const name = map.owner[page];
  if (name === undefined || name === 'free-page') return { attributedTo: `${prefix}free-page`, design: 'free-page', page };
  const table = map.tableOf.get(name) ?? name;
  const design = TABLE_DESIGN[table];
  if (design) return { attributedTo: `${prefix}${design}`, design, table: name, page };
  return { attributedTo: `${prefix}other:${table}`, design: 'other', table: name, page };
}

/** Reads a database file (alone, or with its WAL applied) and maps its pages; never opens it for writing. */
function mapDatabase(file: string, withWal: boolean): PageMap {
  const snap = openSnapshot(path.dirname(file), { file, wal: withWal, keepImage: true });
  try {
    return pageMapOf(snap.db, { pageSize: snap.pageSize, freelist: freelistPages(snap.image!, snap.pageSize) });
  } finally {
    snap.close();
  }
}

type Attributor = (offset: number) => Place;

function otherPlace(rel: string): Place {
  return { attributedTo: `other:${rel}`, design: 'other' };
}

/** How offsets of one file map to places; databases are read once per file. */
function attributorFor(abs: string, rel: string, warnings: string[]): Attributor {
  const parts = rel.split(path.sep);
  if (parts[0] === 'epochs' || rel === KEY_FILE) return () => ({ attributedTo: 'blinded', design: 'blinded' });
  const head = Buffer.alloc(100);
  const fd = fs.openSync(abs, 'r');
  let headLen: number;
  try {
    headLen = fs.readSync(fd, head, 0, 100, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (headLen === 100 && isSqliteFile(head)) {
    const ps = sqlitePageSize(head);
    // The main file's own bytes, mapped by its own b-trees; if it cannot be
    // read alone (a checkpoint cut short), by the state with the WAL applied.
    for (const withWal of [false, true]) {
      try {
        const map = mapDatabase(abs, withWal);
        if (withWal) warnings.push(`${rel}: the file alone is not a consistent database; its pages are attributed by the state with the WAL applied`);
        return (off) => placeOfPage(map, Math.floor(off / ps) + 1, '');
      } catch (e) {
        if (withWal) warnings.push(`${rel}: pages could not be mapped (${(e as Error).message}); its hits are attributed to the file`);
      }
    }
    return () => otherPlace(rel);
  }
  if (abs.endsWith('-wal')) {
    const mainFile = abs.slice(0, -4);
    const wal = readWal(fs.readFileSync(abs));
    if (wal && fs.existsSync(mainFile)) {
      try {
        const map = mapDatabase(mainFile, true);
        const frameBytes = WAL_FRAME_HEADER_BYTES + wal.pageSize;
        return (off) => {
          if (off < WAL_HEADER_BYTES) return { attributedTo: 'wal:header', design: 'other' };
          const frame = wal.frames[Math.floor((off - WAL_HEADER_BYTES) / frameBytes)];
          if (!frame) return { attributedTo: 'wal:tail', design: 'other' };
          if ((off - WAL_HEADER_BYTES) % frameBytes < WAL_FRAME_HEADER_BYTES) return { attributedTo: 'wal:frame-header', design: 'other', page: frame.pageNumber };
          const place = placeOfPage(map, frame.pageNumber, 'wal:');
          return frame.valid ? place : { ...place, staleWalFrame: true };
        };
      } catch (e) {
        warnings.push(`${rel}: WAL frames could not be mapped (${(e as Error).message}); its hits are attributed to the file`);
      }
    }
  }
  return () => otherPlace(rel);
}

function listFiles(dir: string, warnings: string[], root = dir): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const abs = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(abs, warnings, root));
    else if (entry.isFile()) out.push(abs);
    else warnings.push(`${path.relative(root, abs)}: not a regular file (${entry.isSymbolicLink() ? 'symbolic link' : 'special file'}), not searched`);
  }
  return out;
}

function fileKind(rel: string): string {
  if (rel === DB_FILE) return 'database';
  if (rel === `${DB_FILE}-wal`) return 'write-ahead log';
  if (rel === `${DB_FILE}-shm`) return 'wal-index';
  if (rel === KEY_FILE) return 'oprf keys';
  if (rel.split(path.sep)[0] === 'epochs') return 'bucket cache';
  return 'other';
}

// ===========================================================================
// The scan

interface PatternMeta {
  number: number;
  form: string;
  length: number;
}

/**
 * Searches every file under `dataDir` for every form of every number and
 * attributes each hit. Reads only; opens nothing for writing.
 */
export function scanDataFolder(dataDir: string, numbers: readonly E164[], options: ScanOptions = {}): ScanResult {
  const started = performance.now();
  const warnings: string[] = [];
  const unique = [...new Set(numbers)];

  // The directory and the epochs, from the database as a reader sees it.
  const snap = openSnapshot(dataDir);
  let registered: boolean[];
  let epochRows: { epoch: number; mode: string; tag_bytes: number }[];
  try {
    const q = snap.db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM numbers WHERE number = ?');
    registered = unique.map((n) => q.get(n)!.n > 0);
    epochRows = snap.db.prepare<[], { epoch: number; mode: string; tag_bytes: number }>('SELECT epoch, mode, tag_bytes FROM epochs ORDER BY epoch').all();
  } finally {
    snap.close();
  }
  let keys: ReadonlyMap<number, Uint8Array>;
  if (options.keys) keys = options.keys;
  else {
    try {
      keys = readEpochKeys(dataDir);
    } catch (e) {
      keys = new Map();
      warnings.push(`the key file could not be read (${(e as Error).message}): no tag was searched`);
    }
  }
  const tagEpochs: TagEpoch[] = [];
  for (const r of epochRows) {
    const sk = keys.get(r.epoch);
    if (!sk) continue;
    if (!(MODES as readonly string[]).includes(r.mode)) {
      warnings.push(`epoch ${r.epoch} has unknown mode '${r.mode}': its tags were not searched`);
      continue;
    }
    tagEpochs.push({ epoch: r.epoch, mode: r.mode as OprfMode, tagBytes: r.tag_bytes, secretKey: sk });
    if (r.tag_bytes < 8) {
      warnings.push(`epoch ${r.epoch} has ${r.tag_bytes}-byte tags: a ${r.tag_bytes}-byte string occurs in random bytes with probability ~(bytes searched)/2^${8 * r.tag_bytes}, so a tag-e${r.epoch}-raw hit alone is weak evidence`);
    }
  }
  for (const k of keys.keys()) {
    if (!epochRows.some((r) => r.epoch === k)) warnings.push(`the key file holds a key for epoch ${k}, which the database does not list: its tags were not searched`);
  }

  const patterns: Uint8Array[] = [];
  const boundaries: Boundary[] = [];
  const meta: PatternMeta[] = [];
  const formNames = new Set<string>();
  unique.forEach((number, i) => {
    for (const f of numberForms(number, { national: options.national, epochs: tagEpochs })) {
      patterns.push(f.bytes);
      boundaries.push(f.boundary);
      meta.push({ number: i, form: f.form, length: f.bytes.length });
      formNames.add(f.form.replace(/-e\d+-/, '-eN-'));
    }
  });
  const searcher = new MultiPatternSearcher(patterns, boundaries);

  const hits: ScanHit[][] = unique.map(() => []);
  const files: ScanResult['files'] = [];
  let bytes = 0;
  let searchMs = 0;
  for (const abs of listFiles(dataDir, warnings)) {
    const rel = path.relative(dataDir, abs);
    const raw: { pattern: number; offset: number }[] = [];
    const t0 = performance.now();
    const size = searcher.searchFile(abs, (pattern, offset) => raw.push({ pattern, offset }), options.chunkBytes);
    searchMs += performance.now() - t0;
    bytes += size;
    files.push({ file: rel, bytes: size, kind: fileKind(rel) });
    if (raw.length === 0) continue;
    const attribute = attributorFor(abs, rel, warnings);
    // A hit inside a longer hit of the same number (the digits inside the E.164 text) is the same occurrence.
    const perNumber = new Map<number, { pattern: number; offset: number }[]>();
    for (const h of raw) {
      const n = meta[h.pattern]!.number;
      const list = perNumber.get(n);
      if (list) list.push(h);
      else perNumber.set(n, [h]);
    }
    for (const [n, list] of perNumber) {
      for (const h of list) {
        const m = meta[h.pattern]!;
        const inside = list.some((o) => {
          const om = meta[o.pattern]!;
          return o !== h && om.length > m.length && o.offset <= h.offset && h.offset + m.length <= o.offset + om.length;
        });
        if (inside) continue;
        hits[n]!.push({ file: rel, offset: h.offset, length: m.length, form: m.form, ...attribute(h.offset) });
      }
    }
  }

  const result: ScanNumber[] = unique.map((number, i) => ({
    number,
    registered: registered[i]!,
    hits: hits[i]!.sort((a, b) => a.file.localeCompare(b.file) || a.offset - b.offset),
  }));
  return {
    dataDir: path.resolve(dataDir),
    files,
    forms: [...formNames].sort((a, b) => formRank(a) - formRank(b)),
    epochs: epochRows.map((r) => ({ epoch: r.epoch, mode: r.mode, tagBytes: r.tag_bytes, keyOnDisk: keys.has(r.epoch) })),
    numbers: result,
    summary: summarize(result),
    bytes,
    searchMs: Math.round(searchMs * 1000) / 1000,
    mbPerSecond: searchMs > 0 ? Math.round((bytes / 1e6 / (searchMs / 1000)) * 10) / 10 : 0,
    totalMs: Math.round((performance.now() - started) * 1000) / 1000,
    warnings,
  };
}

/** Hits per design, registered numbers apart from the rest. */
export function summarize(numbers: readonly ScanNumber[]): ScanSummaryRow[] {
  return SCAN_DESIGNS.map((design) => {
    const row: ScanSummaryRow = { design, registeredNumbers: 0, registeredHits: 0, unregisteredNumbers: 0, unregisteredHits: 0 };
    for (const n of numbers) {
      const k = n.hits.filter((h) => h.design === design).length;
      if (k === 0) continue;
      if (n.registered) {
        row.registeredNumbers++;
        row.registeredHits += k;
      } else {
        row.unregisteredNumbers++;
        row.unregisteredHits += k;
      }
    }
    return row;
  });
}

// ===========================================================================
// Formatting

export function formatScan(r: ScanResult, format: AuditFormat): string {
  if (format === 'json') return JSON.stringify(r, null, 2);
  if (format === 'csv') {
    const lines = [csvRecord(['number', 'registered', 'file', 'offset', 'length', 'form', 'attributed_to', 'design', 'table', 'page'])];
    for (const n of r.numbers) {
      if (n.hits.length === 0) lines.push(csvRecord([n.number, n.registered, '', '', '', '', '', '', '', '']));
      for (const h of n.hits) lines.push(csvRecord([n.number, n.registered, h.file, h.offset, h.length, h.form, h.attributedTo, h.design, h.table, h.page]));
    }
    return lines.join('\n');
  }
  const reg = r.numbers.filter((n) => n.registered).length;
  const parts: string[] = [
    `scan of ${r.dataDir}: ${r.numbers.length} number(s) (${reg} registered, ${r.numbers.length - reg} not), ` +
      `${r.files.length} file(s), ${(r.bytes / 1e6).toFixed(1)} MB searched in ${(r.searchMs / 1000).toFixed(2)} s (${r.mbPerSecond} MB/s)`,
    `forms: ${r.forms.join(' ')}`,
    `epochs: ${r.epochs.length ? r.epochs.map((e) => `${e.epoch} (${e.keyOnDisk ? 'key on disk: tags searched' : 'key destroyed: tags unlinkable'})`).join(', ') : 'none'}`,
    renderTable(
      ['file', 'kind', 'bytes'],
      r.files.map((f) => [f.file, f.kind, String(f.bytes)]),
    ),
    'hits per design (registered numbers are in the directory, and in blinded bucket caches as tags, by necessity):\n' +
      renderTable(
        ['design', 'registered numbers', 'hits', 'numbers not registered', 'hits'],
        r.summary.map((s) => [s.design, String(s.registeredNumbers), String(s.registeredHits), String(s.unregisteredNumbers), String(s.unregisteredHits)]),
      ),
  ];
  const found = r.numbers.filter((n) => n.hits.length > 0);
  if (found.length) {
    parts.push(
      renderTable(
        ['number', 'registered', 'file', 'offset', 'form', 'attributed to', 'table', 'page'],
        found.flatMap((n) => n.hits.map((h) => [n.number, n.registered ? 'yes' : 'no', h.file, String(h.offset), h.form, h.attributedTo, h.table ?? '', h.page === undefined ? '' : String(h.page)])),
      ),
    );
  }
  const none = r.numbers.filter((n) => n.hits.length === 0);
  if (none.length) parts.push(`no trace anywhere in the data folder: ${none.map((n) => n.number).join(', ')}`);
  if (r.warnings.length) parts.push(r.warnings.map((w) => `warning: ${w}`).join('\n'));
  return parts.join('\n\n');
}
