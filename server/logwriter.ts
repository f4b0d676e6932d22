/**
 * Where a query log's rows go (server/querylog-base.ts keeps the batching, the
 * retries, the bound and the spill; a writer only writes one batch).
 *
 * A batch is a list of rows as the table holds them: a `rows` table's
 * declared columns in order (the store assigns `id`), a `counts` table's
 * `(ts, ...key, count)`, each row added to the row of its window and key
 * (upserted), never duplicating it. A batch is written in one transaction:
 * all of it or nothing, so a failed write keeps every row for the retry;
 * over Postgres, a batch is written at most once however often it is tried
 * ({@link LogWriter.keepsFailedBatch}).
 *
 * - SQLite ({@link sqliteRowsWriter}, {@link sqliteCountsWriter}): prepared
 *   statements in one transaction, synchronously, as the logs always wrote.
 * - Postgres (server/pg/logs.ts): one statement per batch over a pool,
 *   asynchronously; the log keeps at most one write in flight.
 */
import type Database from 'better-sqlite3';
import { sqliteCode } from './store.ts';

export interface LogWriter {
  /**
   * Writes one batch in one transaction; throws (or rejects) having written none of it, or, for a writer that
   * {@link keepsFailedBatch}, with its outcome unknown. `batch` is the batch's id, the same for every try of it.
   */
  write(rows: unknown[][], batch: string): void | Promise<void>;
  /**
   * True for a writer whose failure may leave the outcome unknown (Postgres: the connection lost after the commit,
   * before the reply): the log then tries the same batch again, as it was and under the same id, before any later
   * row, and the writer writes a batch it has written once no second time. False (SQLite): a failed write wrote
   * nothing, and the log puts its rows back with the ones that came since.
   */
  readonly keepsFailedBatch?: boolean;
  /** The code a failed write is reported with (health's `lastError`, the warning): SQLITE_FULL, a Postgres SQLSTATE, ... */
  errorCode(err: unknown): string;
  /** False once the database is closed: nothing is tried any more (close() then spills). */
  readonly open: boolean;
}

/** A writer given to a log's constructor rather than a database (which makes a SQLite writer). */
export function isLogWriter(x: unknown): x is LogWriter {
  return typeof (x as LogWriter | null)?.write === 'function' && typeof (x as LogWriter).errorCode === 'function';
}

function sqliteWriter(db: Database.Database, sql: string): LogWriter {
  const stmt = db.prepare(sql);
  const writeAll = db.transaction((rows: unknown[][]) => {
    for (const r of rows) stmt.run(...r);
  });
  return {
    write: writeAll,
    errorCode: (e) => sqliteCode(e) ?? (e instanceof Error ? e.name : 'error'),
    get open() {
      return db.open;
    },
  };
}

/** Inserts rows of `columns` into `table`. */
export function sqliteRowsWriter(db: Database.Database, table: string, columns: readonly string[]): LogWriter {
  return sqliteWriter(db, `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`);
}

/** Upserts `(ts, ...keyColumns, count)` rows into `table`: a count is added to its window's row. */
export function sqliteCountsWriter(db: Database.Database, table: string, keyColumns: readonly string[]): LogWriter {
  const cols = ['ts', ...keyColumns];
  return sqliteWriter(
    db,
    `INSERT INTO ${table} (${cols.join(', ')}, count) VALUES (${cols.map(() => '?').join(', ')}, ?) ` +
      `ON CONFLICT (${cols.join(', ')}) DO UPDATE SET count = count + excluded.count`,
  );
}
