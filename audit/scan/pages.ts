/**
 * Where a scan hit is (audit/scan/scan.ts): which design's data, the
 * directory, a free page, or another file.
 *
 * In the SQLite file: byte offset -> page -> the table or index owning the
 * page (the `dbstat` virtual table, over the main file's own bytes) ->
 * design: each declared log table is its design's (shared/designs/index.ts
 * LOG_TABLES), the other tables of disk/sql.ts are listed below
 * ({@link TABLE_DESIGN}: the directory's, and the blinded design's epochs
 * and spent tokens); pages on the freelist are 'free-page'. In the -wal,
 * each frame's header names its page, mapped the same way over the state
 * with the WAL applied ('wal:' prefix). The files outside the database
 * are listed below too ({@link DATA_FILES}: the key files of the blinded
 * design, its OPRF keys, its token keys and its OHTTP gateway key, and
 * `epochs/`, its bucket caches); anything else is 'other:<file>'. `secure_delete` is on in the store, so a correct server
 * leaves no purged row in free pages: the scan is how that is shown rather
 * than assumed.
 */
import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { DESIGN_KEEPS } from '../../disk/designs.ts';
import { ADMIN_TOKEN_FILE, DB_FILE, DIRECTORY_SNAPSHOT_FILE, logSpillFile } from '../../disk/files.ts';
import { DESIGNS, LOG_TABLES, type DesignName } from '../../shared/designs/index.ts';
import { isSqliteFile, openSnapshot, readWal, sqlitePageSize, WAL_FRAME_HEADER_BYTES, WAL_HEADER_BYTES } from '../image.ts';

/** Where a hit is: a design's data, the directory, a free page, or something else. */
export type ScanDesign = DesignName | 'directory' | 'free-page' | 'other';
export const SCAN_DESIGNS: readonly ScanDesign[] = [...DESIGNS, 'directory', 'free-page', 'other'];

/** Where one hit is. */
export interface Place {
  attributedTo: string;
  design: ScanDesign;
  table?: string;
  page?: number;
  staleWalFrame?: true;
}

/** The design a table's pages belong to: every declared log table's own, and the tables outside the designs' logs. */
export const TABLE_DESIGN: ReadonlyMap<string, ScanDesign> = new Map<string, ScanDesign>([
  ...LOG_TABLES.map((t): [string, ScanDesign] => [t.name, t.design]),
  // The tables each design keeps besides its logs (disk/designs.ts).
  ...DESIGNS.flatMap((d) => DESIGN_KEEPS[d].tables.map((t): [string, ScanDesign] => [t.name, d])),
  ['accounts', 'directory'],
  ['numbers', 'directory'],
  // The journal of directory changes (server/store.ts): registered numbers, and deleted ones until it is pruned.
  ['directory_changes', 'directory'],
  // AUTOINCREMENT's counter (server/store.ts): the largest account id given out.
  ['sqlite_sequence', 'directory'],
  // Rate-limit buckets per requester account (server/ratelimit.ts).
  ['rate_limits', 'directory'],
]);

/** What a file of the data folder outside the database is, and whose (disk/files.ts). */
export interface DataFile {
  kind: string;
  design: ScanDesign;
}

/** The files of a data folder besides the database, its -wal and -shm: what each is and whose. `epochs/` holds the bucket caches. */
export const DATA_FILES: ReadonlyMap<string, DataFile> = new Map<string, DataFile>([
  // The files each design keeps (disk/designs.ts), and their temp files while written.
  ...DESIGNS.flatMap((d) => DESIGN_KEEPS[d].files.flatMap((f): [string, DataFile][] => [[f.name, { kind: f.kind, design: d }], [`${f.name}.tmp`, { kind: f.kind, design: d }]])),
  [ADMIN_TOKEN_FILE, { kind: 'admin token', design: 'other' }],
  // The in-memory directory as of a version (server/directory-snapshot.ts): the numbers table's registered numbers and masks; its temp file while written.
  [DIRECTORY_SNAPSHOT_FILE, { kind: 'directory snapshot', design: 'directory' }],
  [`${DIRECTORY_SNAPSHOT_FILE}.tmp`, { kind: 'directory snapshot', design: 'directory' }],
]);


/** What a file is, by its path relative to the data folder. The database and its WAL are no one's whole: their hits are attributed page by page ({@link attributorFor}). */
export function dataFileOf(rel: string): DataFile {
  if (rel === DB_FILE) return { kind: 'database', design: 'other' };
  if (rel === `${DB_FILE}-wal`) return { kind: 'write-ahead log', design: 'other' };
  if (rel === `${DB_FILE}-shm`) return { kind: 'wal-index', design: 'other' };
  const top = rel.split(path.sep)[0];
  for (const d of DESIGNS) {
    const folder = DESIGN_KEEPS[d].folders.find((f) => f.name === top);
    if (folder) return { kind: folder.kind, design: d };
  }
  // A query log's rows a shutdown could not write (server/querylog.ts): that log's design's, until the next start writes them.
  const spilled = LOG_TABLES.find((t) => rel === logSpillFile(t.name) || rel === `${logSpillFile(t.name)}.unreadable`);
  if (spilled) return { kind: 'query log spill', design: spilled.design };
  return DATA_FILES.get(rel) ?? { kind: 'other', design: 'other' };
}

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
  const design = TABLE_DESIGN.get(table);
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

export type Attributor = (offset: number) => Place;

function otherPlace(rel: string): Place {
  return { attributedTo: `other:${rel}`, design: 'other' };
}

/** How offsets of one file map to places; databases are read once per file. */
export function attributorFor(abs: string, rel: string, warnings: string[]): Attributor {
  // A design's own files (key files, bucket caches) belong to it whole.
  const own = dataFileOf(rel);
  if (own.design !== 'other') {
    const place: Place = { attributedTo: own.design, design: own.design };
    return () => place;
  }
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
