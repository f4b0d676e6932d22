/**
 * The audit: what a pen-register order yields under each design
 * (DESIGN.md §5), computed on the server's real persisted data.
 *
 * - `plain`: the exact rows of the target numbers: who looked them up, when,
 *   from which IP, and what the answer was.
 * - `hashed`: the same rows, after reversing the logged SHA-256 hashes by
 *   enumerating a numbering-plan range. The rate is measured: it is the point.
 * - `blinded`: no row is derived from a number. What the operator can produce
 *   is the target's bucket id (shared by every number of the bucket), the
 *   fetches of that bucket and the evaluation rows (who asked how many
 *   blinded elements when); the audit reports the anonymity set.
 *
 * Each row is shown against the account as it was when logged: plain and
 * hashed rows carry the requester's email themselves; evaluation rows carry
 * an account id only, which is named only if that account already existed
 * when the row was written (ids are never reused, server/store.ts; data
 * folders of versions that did reuse them are guarded by the creation time),
 * so a deleted account shows as deleted, never as a later account. Bucket
 * fetches are counted per minute, IP, epoch and bucket (server/designs/blinded.ts).
 *
 * The companion `scan.ts` searches every persisted byte of the data folder
 * for the numbers themselves.
 *
 * ## Reading the data folder without writing to it
 *
 * Opening the database in place, even with `{ readonly: true }`, makes
 * SQLite create `pcd.sqlite-wal` and `pcd.sqlite-shm` beside it when the
 * server is stopped (WAL mode needs its wal-index), and leave them there: a
 * write to the evidence. So the audit reads the files as bytes and builds
 * the state SQLite would see: the main file, plus every frame of the
 * write-ahead log up to its last valid commit (salts and checksum chain as
 * in the WAL format spec, https://www.sqlite.org/fileformat2.html#walformat),
 * then opens that image in memory, read-only (`sqlite3_deserialize`). Nothing
 * under the data folder is opened for writing. The server need not run, and
 * may: the image is then the state at the WAL's last commit (the WAL is read
 * before and after the main file, and again if it changed in between).
 *
 * Functions here return structured results; {@link formatAudit} renders them.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { bucketOf } from '../shared/buckets.ts';
import { maskToCapabilities } from '../shared/capabilities.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { HASH_BYTES, hashNumber } from '../shared/hashed.ts';
import { pickCurrent, type EpochRow } from '../disk/epochs.ts';
import { readEpochKeys } from '../disk/keyfile.ts';
import { DB_FILE } from '../disk/files.ts';
import { BUCKET_LOG_WINDOW_MS } from '../shared/designs/blinded.ts';

export const AUDIT_DESIGNS = ['plain', 'hashed', 'blinded'] as const;
export type AuditDesign = (typeof AUDIT_DESIGNS)[number];
export const AUDIT_FORMATS = ['table', 'csv', 'json'] as const;
export type AuditFormat = (typeof AUDIT_FORMATS)[number];

/** Time range in Unix ms: `since <= ts < until`; either end may be open. */
export interface AuditRange {
  since?: number;
  until?: number;
}

export interface AuditOptions extends AuditRange {
  /** Target numbers; empty means every number in the log (the whole graph). */
  targets: readonly E164[];
}

// ===========================================================================
// Reading the SQLite file as it is on disk

const SQLITE_MAGIC = 'SQLite format 3\0';
const WAL_MAGIC_LE = 0x377f0682;
const WAL_MAGIC_BE = 0x377f0683;
export const WAL_HEADER_BYTES = 32;
export const WAL_FRAME_HEADER_BYTES = 24;

/** True when `buf` starts with the SQLite database header. */
export function isSqliteFile(buf: Uint8Array): boolean {
  return buf.length >= 100 && Buffer.from(buf.buffer, buf.byteOffset, 16).toString('latin1') === SQLITE_MAGIC;
}

/** Page size from a database header (offset 16, big-endian; 1 means 65536). */
export function sqlitePageSize(header: Uint8Array): number {
  const v = (header[16]! << 8) | header[17]!;
  return v === 1 ? 65536 : v;
}

export interface WalFrame {
  /** Byte offset of the frame header in the WAL file. */
  offset: number;
  pageNumber: number;
  /** Database size in pages after this frame's commit; 0 for a non-commit frame. */
  commitSize: number;
  /** In the valid chain (header salts, cumulative checksums); later frames are leftovers of an earlier WAL generation. */
  valid: boolean;
}

export interface WalInfo {
  pageSize: number;
  frames: WalFrame[];
  /** Latest committed frame index per page, for frames in the valid chain up to the last commit. */
  committed: Map<number, number>;
  /** Database size in pages after the last valid commit, 0 when there is none. */
  dbPages: number;
}

function walChecksum(buf: Buffer, start: number, end: number, s: [number, number], bigEndian: boolean): void {
  let [s0, s1] = s;
  for (let i = start; i < end; i += 8) {
    const x0 = bigEndian ? buf.readUInt32BE(i) : buf.readUInt32LE(i);
    const x1 = bigEndian ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4);
    s0 = (s0 + x0 + s1) >>> 0;
    s1 = (s1 + x1 + s0) >>> 0;
  }
  s[0] = s0;
  s[1] = s1;
}

/**
 * Parses a write-ahead log: every frame physically present (each frame's
 * page number is what the scan attributes WAL bytes with), and which frames
 * a reader would apply: those whose salts match the header and whose
 * cumulative checksums verify, up to the last commit frame. Returns
 * undefined for a file too short or without the WAL magic.
 */
export function readWal(buf: Buffer): WalInfo | undefined {
  if (buf.length < WAL_HEADER_BYTES) return undefined;
  const magic = buf.readUInt32BE(0);
  if (magic !== WAL_MAGIC_LE && magic !== WAL_MAGIC_BE) return undefined;
  const bigEndian = magic === WAL_MAGIC_BE;
  const pageSize = buf.readUInt32BE(8);
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return undefined;
  const salt1 = buf.readUInt32BE(16);
  const salt2 = buf.readUInt32BE(20);
  const sum: [number, number] = [0, 0];
  walChecksum(buf, 0, 24, sum, bigEndian);
  let chainOk = sum[0] === buf.readUInt32BE(24) && sum[1] === buf.readUInt32BE(28);

  const frames: WalFrame[] = [];
  const committed = new Map<number, number>();
  const pending = new Map<number, number>();
  let dbPages = 0;
  const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
  for (let off = WAL_HEADER_BYTES; off + frameBytes <= buf.length; off += frameBytes) {
    const pageNumber = buf.readUInt32BE(off);
    const commitSize = buf.readUInt32BE(off + 4);
    if (chainOk) {
      chainOk = pageNumber > 0 && buf.readUInt32BE(off + 8) === salt1 && buf.readUInt32BE(off + 12) === salt2;
      if (chainOk) {
        walChecksum(buf, off, off + 8, sum, bigEndian);
        walChecksum(buf, off + WAL_FRAME_HEADER_BYTES, off + frameBytes, sum, bigEndian);
        chainOk = sum[0] === buf.readUInt32BE(off + 16) && sum[1] === buf.readUInt32BE(off + 20);
      }
    }
    const index = frames.length;
    frames.push({ offset: off, pageNumber, commitSize, valid: chainOk });
    if (!chainOk) continue;
    pending.set(pageNumber, index);
    if (commitSize > 0) {
      for (const [p, i] of pending) committed.set(p, i);
      pending.clear();
      dbPages = commitSize;
    }
  }
  // Pages past the last commit's size were truncated away by it.
  if (dbPages > 0) for (const p of [...committed.keys()]) if (p > dbPages) committed.delete(p);
  return { pageSize, frames, committed, dbPages };
}

/**
 * The database image a reader sees: the main file with the WAL's committed
 * frames applied. `inPlace`: `main` may be modified and returned (saves a
 * copy of the whole file when there is no WAL to apply).
 */
export function databaseImage(
  main: Buffer,
  wal: Buffer | undefined,
  options: { inPlace?: boolean } = {},
): { image: Buffer; pageSize: number; walFramesApplied: number } {
  if (!isSqliteFile(main)) throw new PcdError(ErrorCode.InvalidField, 'not an SQLite database file (no SQLite header)');
  let pageSize = sqlitePageSize(main);
  const info = wal ? readWal(wal) : undefined;
  if (!info || info.dbPages === 0) {
    const image = options.inPlace ? main : Buffer.from(main); // the header is patched below
    markRollbackJournal(image);
    return { image, pageSize, walFramesApplied: 0 };
  }
  if (info.pageSize !== pageSize) pageSize = info.pageSize;
  const image = Buffer.alloc(info.dbPages * pageSize);
  main.copy(image, 0, 0, Math.min(main.length, image.length));
  const frameBytes = WAL_FRAME_HEADER_BYTES + pageSize;
  for (const [page, index] of info.committed) {
    const start = WAL_HEADER_BYTES + index * frameBytes + WAL_FRAME_HEADER_BYTES;
    wal!.copy(image, (page - 1) * pageSize, start, start + pageSize);
  }
  markRollbackJournal(image);
  return { image, pageSize, walFramesApplied: info.committed.size };
}

/**
 * Header bytes 18 and 19 say "WAL mode" (2); an in-memory image cannot have
 * a WAL, and SQLite refuses to open it so. 1 (rollback journal) is what the
 * bytes would be without WAL; no other byte changes.
 */
function markRollbackJournal(image: Buffer): void {
  image[18] = 1;
  image[19] = 1;
}

export interface DbSnapshot {
  readonly db: Database.Database;
  /** The database file the snapshot was read from. */
  readonly file: string;
  readonly pageSize: number;
  /** Pages taken from the WAL (0: none, or no WAL). */
  readonly walFramesApplied: number;
  /** The image opened, when asked for with `keepImage` (the scan reads its freelist). */
  readonly image?: Buffer;
  close(): void;
}

/** The database file of a data folder; a missing file is an error that says what is missing. */
export function databaseFile(dataDir: string): string {
  const file = path.join(dataDir, DB_FILE);
  if (!fs.existsSync(file)) {
    throw new PcdError(ErrorCode.NotFound, `no pcd database at ${file}: is --data the server's data folder?`);
  }
  return file;
}

/**
 * Opens the data folder's database as it is on disk, read-only and in
 * memory (see the module header for why not in place). `wal: false` reads
 * the main file alone (what its bytes hold without the WAL).
 */
export function openSnapshot(dataDir: string, options: { wal?: boolean; file?: string; keepImage?: boolean } = {}): DbSnapshot {
  const file = options.file ?? databaseFile(dataDir);
  const walFile = `${file}-wal`;
  const readWalFile = (): Buffer | undefined => {
    if (options.wal === false) return undefined;
    try {
      return fs.readFileSync(walFile);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  };
  // A running server only changes the main file by checkpointing frames that
  // are in the WAL; with the same WAL read before and after the main file,
  // WAL-over-main is the state at the WAL's last commit whatever the
  // checkpoint copied meanwhile. A WAL that changed under us: read again.
  let main: Buffer | undefined;
  let wal: Buffer | undefined;
  for (let attempt = 0; main === undefined; attempt++) {
    const before = readWalFile();
    const m = fs.readFileSync(file);
    const after = readWalFile();
    if (before === after || (before !== undefined && after !== undefined && before.equals(after))) {
      main = m;
      wal = after;
    } else if (attempt >= 4) {
      throw new PcdError(ErrorCode.Unavailable, `${file}: its write-ahead log changed during every read; retry, or stop the server`);
    }
  }
  const { image, pageSize, walFramesApplied } = databaseImage(main, wal, { inPlace: true });
  let db: Database.Database;
  try {
    db = new Database(image, { readonly: true });
  } catch (e) {
    throw new PcdError(ErrorCode.InvalidField, `${file}: cannot open as an SQLite database: ${(e as Error).message}`, { cause: e });
  }
  return { db, file, pageSize, walFramesApplied, image: options.keepImage ? image : undefined, close: () => db.close() };
}

export function withSnapshot<T>(dataDir: string, f: (s: DbSnapshot) => T): T {
  const s = openSnapshot(dataDir);
  try {
    return f(s);
  } finally {
    s.close();
  }
}

function tableExists(db: Database.Database, name: string): boolean {
  return db.prepare<[string], { n: number }>("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name = ?").get(name)!.n > 0;
}

export function requireTable(db: Database.Database, name: string): void {
  if (!tableExists(db, name)) throw new PcdError(ErrorCode.NotFound, `the database has no table ${name}: not a pcd data folder, or an older schema`);
}

function bounds(r: AuditRange): [number, number] {
  return [r.since ?? Number.MIN_SAFE_INTEGER, r.until ?? Number.MAX_SAFE_INTEGER];
}

function rangeOf(r: AuditRange): { since: number | null; until: number | null } {
  return { since: r.since ?? null, until: r.until ?? null };
}

// ===========================================================================
// Hashing for the reversal
//
// SHA-256 comes from node:crypto (OpenSSL). Measured on this project's
// machine (Node 20.20, one core, 12-byte messages): @noble/hashes ~0.30-0.37
// M/s, createHash().update().digest() ~0.27-0.32 M/s, crypto.hash() ~0.43-0.45
// M/s. A hand-tuned one-block SHA-256 reached ~1.7-2 M/s, but a reference
// implementation should not carry its own hash; and the rate it shows is a
// floor: one GPU running an off-the-shelf cracker does billions per second.

function sha256(message: Uint8Array): Buffer {
  return crypto.hash('sha256', message, 'buffer');
}

// ===========================================================================
// Numbering-plan patterns

export interface PlanPattern {
  /** As written, upper-case X: '+1415555XXXX'. */
  pattern: string;
  /** Numbers it spans: 10^(count of X). */
  size: number;
}

/** Largest plan the audit enumerates (10^10 is ~1.5 hours at 2 M hashes/s on one core). */
export const MAX_PLAN_SIZE = 1e10;

/**
 * Parses a numbering-plan range: '+1415555XXXX' (X is any digit), several
 * comma separated. A pattern contained in another one of the list is dropped
 * (it would only be enumerated twice).
 */
export function parsePlan(spec: string): PlanPattern[] {
  const out: PlanPattern[] = [];
  for (const raw of spec.split(',')) {
    const p = raw.trim().replace(/[\s().-]/g, '').toUpperCase();
    if (p === '') continue;
    if (!/^\+[1-9X][0-9X]{6,14}$/.test(p)) {
      throw new PcdError(
        ErrorCode.InvalidField,
        `plan pattern '${raw.trim()}' is not '+' and 7 to 15 digits or X (any digit), the first not 0, e.g. +1415555XXXX`,
      );
    }
    out.push({ pattern: p, size: 10 ** (p.length - p.replaceAll('X', '').length) });
  }
  if (out.length === 0) throw new PcdError(ErrorCode.InvalidField, 'the plan holds no pattern, e.g. +1415555XXXX');
  const kept = out.filter((p, i) => !out.some((q, j) => j !== i && patternCovers(q.pattern, p.pattern) && (!patternCovers(p.pattern, q.pattern) || j < i)));
  const total = kept.reduce((s, p) => s + p.size, 0);
  if (total > MAX_PLAN_SIZE) {
    throw new PcdError(
      ErrorCode.InvalidField,
      `the plan spans ${total.toExponential(1)} numbers; the audit enumerates at most ${MAX_PLAN_SIZE.toExponential(0)} (fix more digits)`,
    );
  }
  return kept;
}

function patternCovers(outer: string, inner: string): boolean {
  if (outer.length !== inner.length) return false;
  for (let i = 0; i < outer.length; i++) if (outer[i] !== 'X' && outer[i] !== inner[i]) return false;
  return true;
}

/** True when `number` is one of the numbers the plan spans. */
export function planContains(plan: readonly PlanPattern[], number: string): boolean {
  return plan.some((p) => p.pattern.length === number.length && [...p.pattern].every((c, i) => c === 'X' || c === number[i]));
}

/** Default hashed plan for a target: its surrounding range of 10^digits numbers, the last `digits` digits as X. */
export function surroundingRange(target: E164, digits = 4): string {
  return target.slice(0, target.length - digits) + 'X'.repeat(digits);
}

export function planSize(plan: readonly PlanPattern[]): number {
  return plan.reduce((s, p) => s + p.size, 0);
}

// ===========================================================================
// Arguments shared by the CLI and tests

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/**
 * A point in time: 'now', a relative age before `now` ('90s', '30m', '12h',
 * '7d', '2w'), or an ISO 8601 date or date-time ('2026-11-01',
 * '2026-11-01T12:00:00Z'). Returns Unix ms.
 */
export function parseTime(input: string, now: number = Date.now()): number {
  const s = input.trim();
  if (s === 'now') return now;
  const rel = /^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$/i.exec(s);
  if (rel) return Math.round(now - Number(rel[1]) * UNIT_MS[rel[2]!.toLowerCase()]!);
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/i.test(s)) {
    const t = Date.parse(s);
    if (Number.isFinite(t)) return t;
  }
  throw new PcdError(
    ErrorCode.InvalidField,
    `'${input}' is not a time: use ISO 8601 (2026-11-01, 2026-11-01T12:00:00Z), 'now', or an age like 7d, 12h, 30m`,
  );
}

/** Target numbers from repeated and/or comma separated arguments, normalised (PcdError names the bad one). */
export function parseTargets(values: readonly string[], region?: string): E164[] {
  const out: E164[] = [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const s = part.trim();
      if (s === '') continue;
      out.push(normalizeNumber(s, region));
    }
  }
  return [...new Set(out)];
}

// ===========================================================================
// plain

export interface PlainRow {
  ts: number;
  target: E164;
  number: E164;
  accountId: number;
  email: string;
  ip: string;
  answer: string[];
}

export interface PlainAudit {
  design: 'plain';
  dataDir: string;
  range: { since: number | null; until: number | null };
  targets: E164[];
  rows: PlainRow[];
  /** Distinct requester accounts among the rows. */
  requesters: number;
  warnings: string[];
}

interface PlainDbRow {
  id: number;
  ts: number;
  account_id: number;
  email: string;
  ip: string;
  number: string;
  answer: number;
}

function byTsThenId<T extends { ts: number; id: number }>(a: T, b: T): number {
  return a.ts - b.ts || a.id - b.id;
}

/** The rows of plain_log for the targets in the range, ordered by time: exactly what the plain design hands over. */
export function auditPlain(dataDir: string, options: AuditOptions): PlainAudit {
  return withSnapshot(dataDir, ({ db }) => {
    requireTable(db, 'plain_log');
    const [since, until] = bounds(options);
    const cols = 'id, ts, account_id, email, ip, number, answer';
    let found: PlainDbRow[];
    if (options.targets.length === 0) {
      found = db.prepare<[number, number], PlainDbRow>(`SELECT ${cols} FROM plain_log WHERE ts >= ? AND ts < ? ORDER BY ts, id`).all(since, until);
    } else {
      const q = db.prepare<[string, number, number], PlainDbRow>(`SELECT ${cols} FROM plain_log WHERE number = ? AND ts >= ? AND ts < ?`);
      found = [...new Set(options.targets)].flatMap((t) => q.all(t, since, until)).sort(byTsThenId);
    }
    const rows = found.map((r) => ({
      ts: r.ts,
      target: r.number as E164,
      number: r.number as E164,
      accountId: r.account_id,
      email: r.email,
      ip: r.ip,
      answer: maskToCapabilities(r.answer),
    }));
    return {
      design: 'plain',
      dataDir: path.resolve(dataDir),
      range: rangeOf(options),
      targets: [...options.targets],
      rows,
      requesters: new Set(rows.map((r) => r.accountId)).size,
      warnings: [],
    };
  });
}

// ===========================================================================
// hashed

export interface Reversal {
  plan: string[];
  /** Numbers of the plan hashed. */
  candidates: number;
  /** Distinct hashes in hashed_log within the range. */
  distinctHashes: number;
  /** Of those, how many the enumeration turned back into numbers. */
  reversed: number;
  /** Enumeration time (hashing and matching), ms. */
  ms: number;
  /** Candidates hashed per second, one core. */
  ratePerSecond: number;
}

export interface HashedRow extends PlainRow {
  /** SHA-256 as logged, hex. */
  hash: string;
  /** 'enumeration': reversed by hashing the plan; 'target-hash': the target is outside the plan, matched by hashing it. */
  via: 'enumeration' | 'target-hash';
}

export interface HashedTarget {
  target: E164;
  hash: string;
  inPlan: boolean;
  reversed: boolean;
  rows: number;
}

export interface HashedAudit {
  design: 'hashed';
  dataDir: string;
  range: { since: number | null; until: number | null };
  targets: HashedTarget[];
  reversal: Reversal;
  rows: HashedRow[];
  requesters: number;
  warnings: string[];
}

/**
 * Reverses `hashes` (32-byte SHA-256 of E.164) by hashing every number of
 * `plan`: returns hex hash -> number for those found, and how fast it went.
 *
 * The hashes are indexed by their first 32 bits: a 2^24-bit presence bitmap
 * (2 MB) rejects almost every candidate with one load, and only a bitmap
 * hit looks in the Map and compares the full 32 bytes.
 */
export function reverseHashes(
  hashes: Iterable<Uint8Array>,
  plan: readonly PlanPattern[],
): { numbers: Map<string, E164>; candidates: number; distinct: number; ms: number } {
  const bitmap = new Uint8Array(1 << 21);
  const byWord = new Map<number, Uint8Array[]>();
  let distinct = 0;
  for (const h of hashes) {
    if (h.length !== HASH_BYTES) continue;
    distinct++;
    const word = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
    const top = word >>> 8;
    bitmap[top >>> 3]! |= 1 << (top & 7);
    const list = byWord.get(word);
    if (list) list.push(h);
    else byWord.set(word, [h]);
  }
  const numbers = new Map<string, E164>();
  let candidates = 0;
  const started = performance.now();
  for (const { pattern, size } of plan) {
    // The candidate is edited in place, the X digits counting up like an odometer.
    const candidate = Buffer.from(pattern.replaceAll('X', '0'), 'latin1');
    const xs = [...pattern].flatMap((c, i) => (c === 'X' ? [i] : []));
    const last = xs.length - 1;
    for (let n = 0; n < size; n++) {
      const digest = sha256(candidate);
      const word = digest.readUInt32BE(0);
      const top = word >>> 8;
      if ((bitmap[top >>> 3]! & (1 << (top & 7))) !== 0) {
        for (const h of byWord.get(word) ?? []) {
          if (Buffer.compare(digest, h) === 0) numbers.set(digest.toString('hex'), candidate.toString('latin1') as E164);
        }
      }
      for (let k = last; k >= 0; k--) {
        const p = xs[k]!;
        if (candidate[p] === 57) candidate[p] = 48;
        else {
          candidate[p]!++;
          break;
        }
      }
    }
    candidates += size;
  }
  return { numbers, candidates, distinct, ms: performance.now() - started };
}

interface HashedDbRow {
  id: number;
  ts: number;
  account_id: number;
  email: string;
  ip: string;
  hash: Buffer;
  answer: number;
}

/**
 * The hashed design's answer to the order: every distinct hash logged in the
 * range is matched against SHA-256 of every number of `plan`, and the rows
 * of the targets come back as numbers. Without targets, every reversed row.
 */
export function auditHashed(dataDir: string, options: AuditOptions & { plan: string }): HashedAudit {
  const plan = parsePlan(options.plan);
  return withSnapshot(dataDir, ({ db }) => {
    requireTable(db, 'hashed_log');
    const [since, until] = bounds(options);
    const distinctHashes = function* () {
      const q = db.prepare<[number, number], { hash: Buffer }>('SELECT DISTINCT hash FROM hashed_log WHERE ts >= ? AND ts < ?');
      for (const r of q.iterate(since, until)) yield r.hash;
    };
    const { numbers, candidates, distinct, ms } = reverseHashes(distinctHashes(), plan);
    const reversal: Reversal = {
      plan: plan.map((p) => p.pattern),
      candidates,
      distinctHashes: distinct,
      reversed: numbers.size,
      ms: Math.round(ms * 1000) / 1000,
      ratePerSecond: ms > 0 ? Math.round((candidates / ms) * 1000) : 0,
    };
    const warnings: string[] = [];
    const cols = 'id, ts, account_id, email, ip, hash, answer';
    const toRow = (r: HashedDbRow, target: E164, via: HashedRow['via']): HashedRow => ({
      ts: r.ts,
      target,
      number: target,
      accountId: r.account_id,
      email: r.email,
      ip: r.ip,
      answer: maskToCapabilities(r.answer),
      hash: r.hash.toString('hex'),
      via,
    });

    const targets: HashedTarget[] = [];
    let rows: HashedRow[];
    if (options.targets.length === 0) {
      const all = db.prepare<[number, number], HashedDbRow>(`SELECT ${cols} FROM hashed_log WHERE ts >= ? AND ts < ? ORDER BY ts, id`);
      rows = [];
      for (const r of all.iterate(since, until)) {
        const n = numbers.get(r.hash.toString('hex'));
        if (n !== undefined) rows.push(toRow(r, n, 'enumeration'));
      }
    } else {
      const byHash = db.prepare<[Buffer, number, number], HashedDbRow>(`SELECT ${cols} FROM hashed_log WHERE hash = ? AND ts >= ? AND ts < ?`);
      const found: (HashedRow & { id: number })[] = [];
      for (const target of new Set(options.targets)) {
        const hash = hashNumber(target);
        const hex = Buffer.from(hash).toString('hex');
        const inPlan = planContains(plan, target);
        const reversed = numbers.get(hex) === target;
        const matched = byHash.all(Buffer.from(hash), since, until);
        for (const r of matched) found.push({ ...toRow(r, target, reversed ? 'enumeration' : 'target-hash'), id: r.id });
        targets.push({ target, hash: hex, inPlan, reversed, rows: matched.length });
        if (!inPlan) {
          warnings.push(
            `${target} is outside the plan ${reversal.plan.join(',')}: its ${matched.length} row(s) were matched by hashing the target itself; ` +
              `enumerating a range that covers it (e.g. ${surroundingRange(target)}) reverses them as well`,
          );
        }
      }
      rows = found.sort(byTsThenId).map(({ id: _id, ...r }) => r);
    }
    if (reversal.reversed < reversal.distinctHashes) {
      warnings.push(
        `${reversal.distinctHashes - reversal.reversed} of ${reversal.distinctHashes} distinct hashes are outside the plan and stay unreversed here; a larger plan reverses them too`,
      );
    }
    return {
      design: 'hashed',
      dataDir: path.resolve(dataDir),
      range: rangeOf(options),
      targets,
      reversal,
      rows,
      requesters: new Set(rows.map((r) => r.accountId)).size,
      warnings,
    };
  });
}

// ===========================================================================
// blinded

export interface EpochSummary {
  epoch: number;
  mode: string;
  bucketBits: number;
  tagBytes: number;
  createdAt: number;
  retiresAt: number | null;
  destroyedAt: number | null;
  /** The secret key is still in the key file (tags of this epoch can still be computed). */
  keyOnDisk: boolean;
}

export interface BucketFetchRow {
  /** Start of the minute the fetches were counted in (the log aggregates per minute; older data folders: the fetch's time). */
  ts: number;
  ip: string;
  epoch: number;
  bucket: number;
  /** Fetches from this IP of this bucket in that minute (1 per row in data folders of earlier versions). */
  count: number;
  /**
   * Accounts with an evaluation request from the same IP within
   * {@link CORRELATION_WINDOW_MS}: what joining the two logs suggests (that
   * account asked about SOME number of this bucket), no more.
   */
  sameIpRequesters: number[];
}

/** How far apart an evaluation and a bucket fetch from one IP may be for the audit to pair them. */
export const CORRELATION_WINDOW_MS = 60_000;

export interface EvaluationRow {
  ts: number;
  accountId: number;
  /**
   * The email of the account with that id, only if it existed when the row
   * was logged (created at or before `ts`); null when it was deleted since,
   * or the id was another account's (data folders of versions that reused ids).
   */
  email: string | null;
  ip: string;
  epoch: number;
  count: number;
}

export interface AnonymitySet {
  /** Numbers the operator must consider (the plan). */
  planSize: number;
  /** Where planSize comes from. */
  planSource: string;
  /** planSize / 2^bucketBits: possible numbers behind one bucket id. */
  estimate: number;
}

export interface BlindedTargetEpoch {
  epoch: number;
  bucketBits: number;
  bucket: number;
  /** Registered numbers (today's directory) in that bucket. */
  registeredInBucket: number;
  /** Fetches of that bucket in the range; each one equally concerns every number of the bucket. */
  fetches: BucketFetchRow[];
}

export interface BlindedTarget {
  target: E164;
  /** Rows of blinded_eval_log or blinded_bucket_log derived from this number: none, by construction. */
  linkedRows: 0;
  registered: boolean;
  /** The current epoch, its bucket bits and the target's bucket in it (undefined: no live epoch). */
  epoch: number | null;
  bucketBits: number | null;
  bucket: number | null;
  registeredInBucket: number | null;
  anonymitySet: AnonymitySet | null;
  /** Per epoch in the database: the target's bucket and its fetches in the range. */
  epochs: BlindedTargetEpoch[];
}

export interface BlindedAudit {
  design: 'blinded';
  dataDir: string;
  range: { since: number | null; until: number | null };
  statement: string;
  directorySize: number;
  currentEpoch: number | null;
  epochs: EpochSummary[];
  targets: BlindedTarget[];
  /** Evaluation rows in the range: the same for every target, since none is derived from a number. */
  evaluations: { rows: EvaluationRow[]; requests: number; elements: number };
  /** Bucket fetches in the range, all buckets (the sum of the rows' counts). */
  bucketFetches: number;
  warnings: string[];
}

export const BLINDED_STATEMENT =
  'No row of blinded_eval_log or blinded_bucket_log is derived from a number: evaluation rows hold time, account, IP, epoch and ' +
  'a count of blinded elements (uniformly random group elements to the server); bucket rows hold a minute, IP, epoch, a bucket id ' +
  'that every number of the bucket shares, and how many fetches. Linked rows per target: 0. What the operator can produce is below.';

/** Columns the blinded logs may have; anything else is reported, since the statement above would no longer be checked. */
const BLINDED_COLUMNS: Record<string, readonly string[]> = {
  blinded_eval_log: ['id', 'ts', 'account_id', 'ip', 'epoch', 'count'],
  // 'id': the per-fetch shape of earlier versions, before the server migrates it.
  blinded_bucket_log: ['id', 'ts', 'ip', 'epoch', 'bucket', 'count'],
};

type EpochDbRow = Omit<EpochRow, 'public_key'>;

/** The epoch the server serves as current, by the server's own rule (server/blinded/epoch.ts). */
export function currentEpochOf(epochs: readonly EpochSummary[]): EpochSummary | undefined {
  return pickCurrent(
    epochs.filter((e) => e.destroyedAt === null),
    (e) => e.retiresAt !== null,
  );
}

/**
 * The numbers an operator would consider for a target: the given plan, else
 * every national number of the target's length in its country calling code
 * (10^length: an upper bound, since not every prefix is in service).
 */
export function planFor(target: E164, plan?: readonly PlanPattern[]): { planSize: number; planSource: string } {
  if (plan && plan.length) {
    return { planSize: planSize(plan), planSource: `plan ${plan.map((p) => p.pattern).join(',')}` };
  }
  const p = parsePhoneNumberFromString(target);
  const cc = p?.countryCallingCode ?? '';
  const national = p ? p.nationalNumber.length : target.length - 2;
  const where = p?.country ? `${p.country} (+${cc})` : `+${cc}`;
  return {
    planSize: 10 ** national,
    planSource: `${where} national numbers of ${national} digits: 10^${national} (upper bound; not every prefix is in service)`,
  };
}

/** What the blinded design's logs yield for the targets: no linked row, the bucket, its anonymity set, and the rows the operator can produce. */
export function auditBlinded(dataDir: string, options: AuditOptions & { plan?: string }): BlindedAudit {
  const plan = options.plan ? parsePlan(options.plan) : undefined;
  const warnings: string[] = [];
  let keys: Map<number, Uint8Array>;
  try {
    keys = readEpochKeys(dataDir);
  } catch (e) {
    keys = new Map();
    warnings.push(`the key file could not be read (${(e as Error).message}); keyOnDisk is reported as false`);
  }
  const result = withSnapshot(dataDir, ({ db }): BlindedAudit => {
    for (const t of ['blinded_eval_log', 'blinded_bucket_log', 'epochs', 'numbers']) requireTable(db, t);
    for (const [table, allowed] of Object.entries(BLINDED_COLUMNS)) {
      const cols = db.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${table}')`).all().map((c) => c.name);
      const extra = cols.filter((c) => !allowed.includes(c));
      if (extra.length) warnings.push(`${table} has column(s) ${extra.join(', ')} the audit does not know: check that none is derived from a number`);
    }
    const [since, until] = bounds(options);
    const epochs: EpochSummary[] = db
      .prepare<[], EpochDbRow>('SELECT epoch, mode, bucket_bits, tag_bytes, created_at, retires_at, destroyed_at FROM epochs ORDER BY epoch')
      .all()
      .map((r) => ({
        epoch: r.epoch,
        mode: r.mode,
        bucketBits: r.bucket_bits,
        tagBytes: r.tag_bytes,
        createdAt: r.created_at,
        retiresAt: r.retires_at,
        destroyedAt: r.destroyed_at,
        keyOnDisk: keys.has(r.epoch),
      }));
    const current = currentEpochOf(epochs);
    if (!current) warnings.push('no live epoch in the database: the blinded design has not run on this data folder, or every epoch is destroyed');
    for (const e of epochs) {
      if (e.destroyedAt !== null && e.keyOnDisk) warnings.push(`epoch ${e.epoch} is marked destroyed but its key is still in the key file`);
    }

    // One pass over the directory: registered numbers per (bucketBits, bucket) of the targets.
    const targets = [...new Set(options.targets)];
    const bitsInUse = [...new Set(epochs.map((e) => e.bucketBits))];
    const wanted = new Map<number, Map<number, number>>(); // bits -> bucket -> count
    for (const bits of bitsInUse) {
      const m = new Map<number, number>();
      for (const t of targets) m.set(bucketOf(t, bits), 0);
      wanted.set(bits, m);
    }
    const registered = new Set<string>();
    const targetSet = new Set<string>(targets);
    let directorySize = 0;
    for (const { number } of db.prepare<[], { number: string }>('SELECT number FROM numbers').iterate()) {
      directorySize++;
      if (targetSet.has(number)) registered.add(number);
      if (targets.length === 0) continue;
      for (const [bits, m] of wanted) {
        const b = bucketOf(number as E164, bits);
        const c = m.get(b);
        if (c !== undefined) m.set(b, c + 1);
      }
    }

    // Per-minute counts; a data folder the previous version wrote (and no server has migrated yet) has one row per fetch.
    const aggregated = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('blinded_bucket_log')").all().some((c) => c.name === 'count');
    const fetchRows = db.prepare<[number, number, number, number], Omit<BucketFetchRow, 'sameIpRequesters'>>(
      aggregated
        ? 'SELECT ts, ip, epoch, bucket, count FROM blinded_bucket_log WHERE epoch = ? AND bucket = ? AND ts >= ? AND ts < ? ORDER BY ts, ip'
        : 'SELECT ts, ip, epoch, bucket, 1 AS count FROM blinded_bucket_log WHERE epoch = ? AND bucket = ? AND ts >= ? AND ts < ? ORDER BY ts, id',
    );
    // The operator can join the logs on IP and time: a fetch near an evaluation from the same IP points at that requester.
    const sameIp = db.prepare<[string, number, number], { account_id: number }>(
      'SELECT DISTINCT account_id FROM blinded_eval_log WHERE ip = ? AND ts >= ? AND ts <= ? ORDER BY account_id',
    );
    const fetchesOf = (epoch: number, bucket: number): BucketFetchRow[] =>
      fetchRows.all(epoch, bucket, since, until).map((f) => ({
        ...f,
        // An aggregated row stands for fetches anywhere in its minute.
        sameIpRequesters: sameIp
          .all(f.ip, f.ts - CORRELATION_WINDOW_MS, f.ts + (aggregated ? BUCKET_LOG_WINDOW_MS : 0) + CORRELATION_WINDOW_MS)
          .map((r) => r.account_id),
      }));
    const blindedTargets: BlindedTarget[] = targets.map((target) => {
      const perEpoch: BlindedTargetEpoch[] = epochs.map((e) => {
        const bucket = bucketOf(target, e.bucketBits);
        return {
          epoch: e.epoch,
          bucketBits: e.bucketBits,
          bucket,
          registeredInBucket: wanted.get(e.bucketBits)!.get(bucket)!,
          fetches: fetchesOf(e.epoch, bucket),
        };
      });
      const cur = current && perEpoch.find((p) => p.epoch === current.epoch);
      const { planSize: size, planSource } = planFor(target, plan);
      if (plan && !planContains(plan, target)) warnings.push(`${target} is outside the plan ${plan.map((p) => p.pattern).join(',')}: its anonymity set is counted in a plan it is not in`);
      return {
        target,
        linkedRows: 0,
        registered: registered.has(target),
        epoch: cur ? cur.epoch : null,
        bucketBits: cur ? cur.bucketBits : null,
        bucket: cur ? cur.bucket : null,
        registeredInBucket: cur ? cur.registeredInBucket : null,
        anonymitySet: cur ? { planSize: size, planSource, estimate: size / 2 ** cur.bucketBits } : null,
        epochs: perEpoch,
      };
    });

    const evalRows = db
      .prepare<[number, number], { ts: number; account_id: number; email: string | null; ip: string; epoch: number; count: number }>(
        // The row holds an account id only: name the account only if it is the one that asked (it existed then), never a later one.
        'SELECT e.ts, e.account_id, a.email, e.ip, e.epoch, e.count FROM blinded_eval_log e ' +
          'LEFT JOIN accounts a ON a.id = e.account_id AND a.created_at <= e.ts WHERE e.ts >= ? AND e.ts < ? ORDER BY e.ts, e.id',
      )
      .all(since, until)
      .map((r) => ({ ts: r.ts, accountId: r.account_id, email: r.email, ip: r.ip, epoch: r.epoch, count: r.count }));
    const bucketFetches = db
      .prepare<[number, number], { n: number }>(
        `SELECT ${aggregated ? 'coalesce(sum(count), 0)' : 'count(*)'} AS n FROM blinded_bucket_log WHERE ts >= ? AND ts < ?`,
      )
      .get(since, until)!.n;

    return {
      design: 'blinded',
      dataDir: path.resolve(dataDir),
      range: rangeOf(options),
      statement: BLINDED_STATEMENT,
      directorySize,
      currentEpoch: current?.epoch ?? null,
      epochs,
      targets: blindedTargets,
      evaluations: { rows: evalRows, requests: evalRows.length, elements: evalRows.reduce((s, r) => s + r.count, 0) },
      bucketFetches,
      warnings,
    };
  });
  return result;
}

// ===========================================================================
// Running and formatting

export type AuditResult = PlainAudit | HashedAudit | BlindedAudit;

/** Runs one design's audit; `plan` is required for hashed (else it defaults to the targets' surrounding ranges). */
export function runAudit(dataDir: string, design: AuditDesign, options: AuditOptions & { plan?: string }): AuditResult {
  switch (design) {
    case 'plain':
      return auditPlain(dataDir, options);
    case 'hashed': {
      const plan = options.plan ?? defaultHashedPlan(options.targets);
      return auditHashed(dataDir, { ...options, plan });
    }
    case 'blinded':
      return auditBlinded(dataDir, options);
  }
}

/** The hashed plan used when none is given: every target's surrounding 10^4 range (last four digits as X). */
export function defaultHashedPlan(targets: readonly E164[]): string {
  if (targets.length === 0) {
    throw new PcdError(ErrorCode.InvalidField, 'the hashed audit needs --plan (a numbering-plan range such as +1415555XXXX) when no --target is given');
  }
  return [...new Set(targets.map((t) => surroundingRange(t)))].join(',');
}

export function isoTime(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '' : new Date(ms).toISOString();
}

/** Aligned columns for humans. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** One CSV record (RFC 4180 quoting). */
export function csvRecord(values: readonly (string | number | boolean | null | undefined)[]): string {
  return values
    .map((v) => {
      const s = v === null || v === undefined ? '' : String(v);
      return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
    })
    .join(',');
}

function rangeText(r: { since: number | null; until: number | null }): string {
  return `${r.since === null ? 'the beginning' : isoTime(r.since)} .. ${r.until === null ? 'now' : isoTime(r.until)}`;
}

function fmtCount(n: number): string {
  return n >= 1e6 ? n.toExponential(2).replace('e+', 'e') : n.toLocaleString('en-US', { maximumFractionDigits: 1 });
}

/** Renders an audit result: 'table' (aligned, for humans), 'csv' (rows with a header) or 'json'. */
export function formatAudit(result: AuditResult, format: AuditFormat): string {
  if (format === 'json') return JSON.stringify(result, null, 2);
  switch (result.design) {
    case 'plain':
      return format === 'csv' ? plainCsv(result) : plainTable(result);
    case 'hashed':
      return format === 'csv' ? hashedCsv(result) : hashedTable(result);
    case 'blinded':
      return format === 'csv' ? blindedCsv(result) : blindedTable(result);
  }
}

function warningsText(w: readonly string[]): string {
  return w.length ? '\n' + w.map((s) => `warning: ${s}`).join('\n') : '';
}

function targetsText(t: readonly string[]): string {
  return t.length ? t.join(', ') : 'every number in the log';
}

function plainTable(r: PlainAudit): string {
  return (
    `plain design: what a pen-register order yields\n` +
    `targets: ${targetsText(r.targets)}\nrange:   ${rangeText(r.range)}\n` +
    `${r.rows.length} row(s) from ${r.requesters} requester account(s): each names the number, the requester, the IP, the time and the answer\n\n` +
    renderTable(
      ['time', 'number', 'account', 'email', 'ip', 'answer'],
      r.rows.map((x) => [isoTime(x.ts), x.number, String(x.accountId), x.email, x.ip, x.answer.join('+') || 'sms']),
    ) +
    warningsText(r.warnings)
  );
}

function plainCsv(r: PlainAudit): string {
  return [
    csvRecord(['ts', 'time', 'target', 'number', 'account_id', 'email', 'ip', 'answer']),
    ...r.rows.map((x) => csvRecord([x.ts, isoTime(x.ts), x.target, x.number, x.accountId, x.email, x.ip, x.answer.join(' ')])),
  ].join('\n');
}

function hashedTable(r: HashedAudit): string {
  const v = r.reversal;
  const head =
    `hashed design: what a pen-register order yields after reversing the hashes\n` +
    `targets: ${targetsText(r.targets.map((t) => t.target))}\nrange:   ${rangeText(r.range)}\n` +
    `reversal: plan ${v.plan.join(',')}: ${fmtCount(v.candidates)} candidates hashed in ${(v.ms / 1000).toFixed(3)} s ` +
    `(${fmtCount(v.ratePerSecond)} hashes/s, one core); ${v.reversed} of ${v.distinctHashes} distinct logged hashes reversed\n` +
    `${r.rows.length} row(s) from ${r.requesters} requester account(s)\n\n`;
  return (
    head +
    renderTable(
      ['time', 'number', 'account', 'email', 'ip', 'answer', 'via', 'hash'],
      r.rows.map((x) => [isoTime(x.ts), x.number, String(x.accountId), x.email, x.ip, x.answer.join('+') || 'sms', x.via, x.hash.slice(0, 16) + '…']),
    ) +
    warningsText(r.warnings)
  );
}

function hashedCsv(r: HashedAudit): string {
  return [
    csvRecord(['ts', 'time', 'target', 'number', 'account_id', 'email', 'ip', 'answer', 'hash', 'via']),
    ...r.rows.map((x) => csvRecord([x.ts, isoTime(x.ts), x.target, x.number, x.accountId, x.email, x.ip, x.answer.join(' '), x.hash, x.via])),
  ].join('\n');
}

function blindedTable(r: BlindedAudit): string {
  const parts: string[] = [
    `blinded design: what a pen-register order yields\nrange: ${rangeText(r.range)}\n${r.statement}`,
    `directory: ${r.directorySize} registered numbers; current epoch: ${r.currentEpoch ?? 'none'}`,
    renderTable(
      ['epoch', 'mode', 'bucket bits', 'tag bytes', 'created', 'retires', 'destroyed', 'key on disk'],
      r.epochs.map((e) => [String(e.epoch), e.mode, String(e.bucketBits), String(e.tagBytes), isoTime(e.createdAt), isoTime(e.retiresAt), isoTime(e.destroyedAt), e.keyOnDisk ? 'yes' : 'no']),
    ),
    renderTable(
      ['target', 'linked rows', 'registered', 'epoch', 'bucket bits', 'bucket', 'registered in bucket', 'anonymity set', 'bucket fetches'],
      r.targets.map((t) => [
        t.target,
        String(t.linkedRows),
        t.registered ? 'yes' : 'no',
        String(t.epoch ?? '-'),
        String(t.bucketBits ?? '-'),
        String(t.bucket ?? '-'),
        String(t.registeredInBucket ?? '-'),
        t.anonymitySet ? fmtCount(t.anonymitySet.estimate) : '-',
        String(t.epochs.reduce((s, e) => s + e.fetches.reduce((n, f) => n + f.count, 0), 0)),
      ]),
    ),
  ];
  for (const t of r.targets) {
    if (t.anonymitySet) parts.push(`${t.target}: anonymity set = ${t.anonymitySet.planSource} / 2^${t.bucketBits} = ${fmtCount(t.anonymitySet.estimate)} possible numbers per bucket id`);
    const fetches = t.epochs.flatMap((e) => e.fetches);
    if (fetches.length) {
      parts.push(
        `fetches of ${t.target}'s bucket (each concerns every number of the bucket equally; joined with the evaluation log on IP ` +
          `within ${CORRELATION_WINDOW_MS / 1000} s, a fetch suggests which account asked about SOME number of the bucket):\n` +
          renderTable(
            ['minute', 'ip', 'epoch', 'bucket', 'fetches', 'same-IP requesters'],
            fetches.map((f) => [isoTime(f.ts), f.ip, String(f.epoch), String(f.bucket), String(f.count), f.sameIpRequesters.join(' ')]),
          ),
      );
    }
  }
  parts.push(
    `evaluation requests in the range: ${r.evaluations.requests} (${r.evaluations.elements} blinded elements; the same for every target)` +
      (r.evaluations.rows.length
        ? '\n' +
          renderTable(
            ['time', 'account', 'email', 'ip', 'epoch', 'elements'],
            r.evaluations.rows.map((e) => [isoTime(e.ts), String(e.accountId), e.email ?? '(deleted)', e.ip, String(e.epoch), String(e.count)]),
          )
        : ''),
  );
  parts.push(`bucket fetches in the range, all buckets: ${r.bucketFetches}`);
  return parts.join('\n\n') + warningsText(r.warnings);
}

/** One CSV with a `record` column: a 'target' line per target, then its 'bucket_fetch' lines, then the 'evaluation' lines. */
function blindedCsv(r: BlindedAudit): string {
  const lines = [
    csvRecord(['record', 'target', 'linked_rows', 'registered', 'epoch', 'bucket_bits', 'bucket', 'registered_in_bucket', 'anonymity_set', 'ts', 'time', 'account_id', 'email', 'ip', 'count', 'same_ip_requesters']),
  ];
  for (const t of r.targets) {
    lines.push(csvRecord(['target', t.target, t.linkedRows, t.registered, t.epoch, t.bucketBits, t.bucket, t.registeredInBucket, t.anonymitySet?.estimate, '', '', '', '', '', '', '']));
    for (const e of t.epochs) {
      for (const f of e.fetches) {
        lines.push(csvRecord(['bucket_fetch', t.target, '', '', f.epoch, e.bucketBits, f.bucket, '', '', f.ts, isoTime(f.ts), '', '', f.ip, f.count, f.sameIpRequesters.join(' ')]));
      }
    }
  }
  for (const e of r.evaluations.rows) lines.push(csvRecord(['evaluation', '', '', '', e.epoch, '', '', '', '', e.ts, isoTime(e.ts), e.accountId, e.email, e.ip, e.count, '']));
  return lines.join('\n');
}
