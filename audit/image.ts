/**
 * Reading a data folder's SQLite database as it is on disk, for the audit
 * (audit/designs/) and the scan (audit/scan/).
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
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { DB_FILE } from '../disk/files.ts';
import type { ColumnValue, LogTable } from '../shared/logs.ts';

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

export function tableExists(db: Database.Database, name: string): boolean {
  return db.prepare<[string], { n: number }>("SELECT count(*) AS n FROM sqlite_schema WHERE type = 'table' AND name = ?").get(name)!.n > 0;
}

export function requireTable(db: Database.Database, name: string): void {
  if (!tableExists(db, name)) throw new PcdError(ErrorCode.NotFound, `the database has no table ${name}: not a pcd data folder, or an older schema`);
}

/** The columns of a table as the database has them (not as declared), in order. */
export function tableColumns(db: Database.Database, name: string): string[] {
  return db.prepare<[string], { name: string }>('SELECT name FROM pragma_table_info(?)').all(name).map((c) => c.name);
}

/**
 * A row of a declared log table as read from the database: one property per
 * declared column, typed by its declaration (shared/logs.ts ColumnValue),
 * plus the store's `id` for a `rows` table.
 */
export type LogDbRow<T extends LogTable> = (T extends { readonly kind: 'rows' } ? { id: number } : unknown) & {
  -readonly [C in T['columns'][number] as C['name']]: ColumnValue<C, Buffer>;
};
