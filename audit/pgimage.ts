/**
 * The audit on a shared Postgres store (`pcd audit --store postgres://…`):
 * the audits' SQL is SQLite's and stays so. {@link withPgSnapshot} copies the
 * tables the audits read from Postgres into a fresh SQLite database made with
 * the SQLite schema (disk/sql.ts SCHEMA), in a temporary folder laid out
 * as a data folder (`pcd.sqlite`), and hands that folder to the audit code,
 * which reads it as it reads any data folder (audit/image.ts).
 *
 * - One transaction, `REPEATABLE READ READ ONLY`: every table is copied from
 *   the same snapshot of the store, as a folder's image is one state of its
 *   file, and nothing is written to the store (not even the schema: the
 *   audit does not use PgStore.open, which creates it).
 * - Each table is `COPY (SELECT cols FROM t) TO STDOUT (FORMAT binary)`
 *   (pg-copy-streams), every column cast to one of bigint, float8, bytea or
 *   text by its Postgres type: BYTEA arrives as its bytes, byte for byte,
 *   and is stored as a BLOB; integers beyond 2^53 are refused, not rounded.
 * - The columns copied are those both schemas have (by name), so a store
 *   one column ahead or behind still audits; a table the store lacks stays
 *   empty in the copy and is named in {@link PgSnapshotInfo.missing}.
 * - The folder is 0700, its file 0600 (it holds a copy of the query logs),
 *   and removed when `f` settles, also when the copy or `f` fails.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { SCHEMA } from '../disk/sql.ts';
import { DB_FILE } from '../disk/files.ts';
import { ErrorCode, PcdError, isPcdError } from '../shared/errors.ts';
import { LOG_TABLES } from '../shared/designs/index.ts';
import { createPool, inTransaction, redactUrl } from '../server/pg/connect.ts';

/** The tables the audits read, beside every declared log table. */
export const AUDITED_TABLES: readonly string[] = ['meta', 'accounts', 'numbers', 'directory_changes', 'epochs', 'spent_tokens', 'rate_limits', ...LOG_TABLES.map((t) => t.name)];

/** The isolation of the copy: one snapshot of the whole store, and no write. */
export const SNAPSHOT_BEGIN = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';

export interface PgSnapshotInfo {
  /** The store's URL without its password. */
  readonly source: string;
  /** Rows copied per table, in the order copied. */
  readonly tables: { name: string; rows: number }[];
  /** Tables the audits read that the store does not have (left empty in the copy). */
  readonly missing: string[];
}

/** How a column travels: the cast in the SELECT and how its binary value is read. */
type Wire = 'int8' | 'float8' | 'bytea' | 'text';

function wireOf(pgType: string): Wire {
  if (pgType === 'bigint' || pgType === 'integer' || pgType === 'smallint') return 'int8';
  if (pgType === 'double precision' || pgType === 'real' || pgType === 'numeric') return 'float8';
  if (pgType === 'bytea') return 'bytea';
  return 'text';
}

type Value = number | string | Buffer | null;

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/**
 * Parses COPY's binary format (https://www.postgresql.org/docs/current/sql-copy.html#SQL-COPY-BINARY-FORMAT)
 * as it streams: the header, then per tuple a field count and each field's
 * length (-1: NULL) and bytes; the trailer is a field count of -1. Emits
 * rows (arrays of values) in object mode.
 */
export class CopyBinaryParser extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  private headerDone = false;
  private ended = false;

  constructor(private readonly wires: readonly Wire[], private readonly table: string) {
    super({ readableObjectMode: true });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error) => void): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    try {
      this.parse();
      done();
    } catch (e) {
      done(e as Error);
    }
  }

  override _flush(done: (err?: Error) => void): void {
    if (!this.ended) return done(new Error(`COPY of ${this.table} ended without its trailer`));
    done();
  }

  private parse(): void {
    let off = 0;
    const b = this.buf;
    if (!this.headerDone) {
      if (b.length < 19) return;
      if (!b.subarray(0, 11).equals(SIGNATURE)) throw new Error(`COPY of ${this.table}: not the binary COPY signature`);
      const extension = b.readUInt32BE(15);
      if (b.length < 19 + extension) return;
      off = 19 + extension;
      this.headerDone = true;
    }
    for (;;) {
      if (this.ended || b.length - off < 2) break;
      const fields = b.readInt16BE(off);
      if (fields === -1) {
        this.ended = true;
        off += 2;
        break;
      }
      if (fields !== this.wires.length) throw new Error(`COPY of ${this.table}: ${fields} fields in a row, ${this.wires.length} expected`);
      // The whole tuple must be in the buffer before any of it is read.
      let p = off + 2;
      let complete = true;
      for (let i = 0; i < fields; i++) {
        if (b.length - p < 4) {
          complete = false;
          break;
        }
        const len = b.readInt32BE(p);
        p += 4 + Math.max(0, len);
        if (p > b.length) {
          complete = false;
          break;
        }
      }
      if (!complete) break;
      const row: Value[] = new Array<Value>(fields);
      p = off + 2;
      for (let i = 0; i < fields; i++) {
        const len = b.readInt32BE(p);
        p += 4;
        if (len < 0) {
          row[i] = null;
          continue;
        }
        row[i] = this.value(this.wires[i]!, b, p, len);
        p += len;
      }
      off = p;
      this.push(row);
    }
    this.buf = off === b.length ? Buffer.alloc(0) : b.subarray(off);
  }

  private value(wire: Wire, b: Buffer, p: number, len: number): Value {
    switch (wire) {
      case 'int8': {
        const v = b.readBigInt64BE(p);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new Error(`${this.table}: an integer of ${v} is beyond what the audit reads exactly`);
        return Number(v);
      }
      case 'float8':
        return b.readDoubleBE(p);
      case 'bytea':
        return Buffer.from(b.subarray(p, p + len)); // a copy: the stream's buffer is reused
      case 'text':
        return b.toString('utf8', p, p + len);
    }
  }
}

/** Rows into SQLite, in transactions of a few thousand. */
function sqliteSink(db: Database.Database, table: string, columns: readonly string[], counted: { rows: number }): Writable {
  const insert = db.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`);
  const many = db.transaction((rows: Value[][]) => {
    for (const r of rows) insert.run(r);
  });
  return new Writable({
    objectMode: true,
    highWaterMark: 4096,
    writev(chunks, done) {
      try {
        const batch = chunks.map((c) => c.chunk as Value[]);
        many(batch);
        counted.rows += batch.length;
        done();
      } catch (e) {
        done(e as Error);
      }
    },
  });
}

/** The store's columns of `table` with their types, or undefined when it has no such table. */
async function pgColumns(client: pg.PoolClient, table: string): Promise<Map<string, string> | undefined> {
  const r = await client.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, NULL) AS type
       FROM pg_attribute a
      WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [`public.${table}`],
  );
  if (r.rows.length === 0) return undefined;
  return new Map(r.rows.map((c) => [c.name, c.type]));
}

/** Copies `table` (the columns both have) from the store into the SQLite database: the number of rows. */
async function copyTable(client: pg.PoolClient, db: Database.Database, table: string): Promise<number | undefined> {
  const have = await pgColumns(client, table);
  if (!have) return undefined;
  const sqliteCols = db.prepare<[string], { name: string }>('SELECT name FROM pragma_table_info(?)').all(table).map((c) => c.name);
  const cols = sqliteCols.filter((c) => have.has(c));
  if (cols.length === 0) return 0;
  const wires = cols.map((c) => wireOf(have.get(c)!));
  const select = cols.map((c, i) => `${c}::${wires[i] === 'int8' ? 'bigint' : wires[i] === 'float8' ? 'float8' : wires[i]}`).join(', ');
  const counted = { rows: 0 };
  await pipeline(
    client.query(copyTo(`COPY (SELECT ${select} FROM public.${table}) TO STDOUT (FORMAT binary)`)),
    new CopyBinaryParser(wires, table),
    sqliteSink(db, table, cols, counted),
  );
  return counted.rows;
}

/** The password of `url` as written and decoded, if it has one (to keep it out of messages). */
function passwordsOf(url: string): string[] {
  try {
    const p = new URL(url).password;
    return p ? [p, decodeURIComponent(p)] : [];
  } catch {
    return [];
  }
}

/** Any failure as one PcdError line that names the store (redacted) and never its password. */
function storeError(url: string, e: unknown): PcdError {
  const source = redactUrl(url);
  let message = (e as Error)?.message ?? String(e);
  for (const secret of passwordsOf(url)) message = message.split(secret).join('***');
  message = message.replace(/\s*\n\s*/g, ' ');
  const code = isPcdError(e) ? e.code : ErrorCode.Unavailable;
  return new PcdError(code, `audit --store ${source}: ${message}`, { cause: e });
}

/**
 * Copies the store at `url` into a temporary data folder (module header)
 * and runs `f` on it; the folder is removed when `f` settles.
 */
export async function withPgSnapshot<T>(url: string, f: (dataDir: string, info: PgSnapshotInfo) => T | Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-audit-store-'));
  try {
    fs.chmodSync(dir, 0o700);
    const info = await copyStore(url, path.join(dir, DB_FILE));
    return await f(dir, info);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The copy itself: the SQLite file at `file` from one snapshot of the store. */
export async function copyStore(url: string, file: string): Promise<PgSnapshotInfo> {
  const db = new Database(file);
  fs.chmodSync(file, 0o600);
  const info: PgSnapshotInfo = { source: redactUrl(url), tables: [], missing: [] };
  const pool = createPool(url, { max: 1, applicationName: 'pcd audit' });
  try {
    db.pragma('journal_mode = DELETE');
    db.pragma('foreign_keys = OFF');
    db.exec(SCHEMA);
    // The directory-write triggers would count the copy's inserts in meta: the copy has the store's count instead.
    for (const { name } of db.prepare<[], { name: string }>("SELECT name FROM sqlite_schema WHERE type = 'trigger'").all()) db.exec(`DROP TRIGGER ${name}`);
    await inTransaction(
      pool,
      async (client) => {
        for (const table of AUDITED_TABLES) {
          const rows = await copyTable(client, db, table);
          if (rows === undefined) info.missing.push(table);
          else info.tables.push({ name: table, rows });
        }
      },
      SNAPSHOT_BEGIN,
    );
  } catch (e) {
    throw storeError(url, e);
  } finally {
    db.close();
    await pool.end().catch(() => {});
  }
  return info;
}

/**
 * The names of the store's relations by where their files are, for the
 * scan of the cluster's data directory (audit/scan/pgdata.ts):
 * `<database oid>/<relfilenode>` for the store's database, `global/<relfilenode>`
 * for the shared catalogs. Other databases of the cluster stay unnamed.
 */
export async function relationNames(url: string): Promise<Map<string, string>> {
  const pool = createPool(url, { max: 1, applicationName: 'pcd audit' });
  try {
    return await inTransaction(
      pool,
      async (client) => {
        const db = (await client.query<{ oid: number }>('SELECT oid::int AS oid FROM pg_database WHERE datname = current_database()')).rows[0]!.oid;
        const rows = (
          await client.query<{ name: string; node: number; shared: boolean }>(
            `SELECT n.nspname || '.' || c.relname AS name, pg_relation_filenode(c.oid)::bigint AS node, c.relisshared AS shared
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE pg_relation_filenode(c.oid) IS NOT NULL`,
          )
        ).rows;
        return new Map(rows.map((r) => [r.shared ? `global/${r.node}` : `${db}/${r.node}`, r.name]));
      },
      SNAPSHOT_BEGIN,
    );
  } catch (e) {
    throw storeError(url, e);
  } finally {
    await pool.end().catch(() => {});
  }
}
