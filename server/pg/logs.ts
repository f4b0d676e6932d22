/**
 * The query logs over the shared Postgres store (server/querylog-base.ts has the
 * batching, the retries, the bound and the spill file; server/logwriter.ts
 * the writer's contract): a batch is ONE statement, hence one transaction,
 * whatever its size.
 *
 * - A `rows` table: `INSERT INTO t (cols) SELECT * FROM unnest($1::bigint[],
 *   $2::text[], ...)`, one array per declared column (INTEGER → bigint,
 *   TEXT → text, BLOB → bytea); `id` is the table's identity, given in the
 *   batch's order and never reused.
 * - A `counts` table: the same unnest, summed per (ts, key...) and upserted:
 *   `ON CONFLICT (ts, key...) DO UPDATE SET count = t.count + excluded.count`,
 *   so a window written early is added to, never duplicated.
 * - Either way, the statement first records the batch's id in `log_batches`
 *   (ON CONFLICT DO NOTHING) and writes the rows only if that row is new. A
 *   write whose reply was lost (the connection cut after the commit) leaves
 *   its outcome unknown; the log tries the same batch again under the same
 *   id (`keepsFailedBatch`), and a batch already written is not written
 *   twice: no duplicate rows, no count added twice.
 *
 * Writes are asynchronous: a log keeps at most one in flight, rows that
 * arrive meanwhile wait for the next, a failed write keeps its rows, and
 * close() waits for the write in flight before its last write and the
 * spill. A failed write is reported with its SQLSTATE (25006 read-only,
 * 53100 disk full, ...) or, for a lost connection without one, `unavailable`
 * when {@link pgErrorToPcdError} calls it a store condition; the log retries
 * either way, as it does SQLite's.
 */
import type pg from 'pg';
import { columnNames, type ColumnType, type LogTable } from '../../shared/logs.ts';
import type { LogWriter } from '../logwriter.ts';
import { pgCode, pgErrorToPcdError } from './connect.ts';

/** How long the id of a written batch is kept: a batch tried again later than this could be written twice. */
export const LOG_BATCH_KEEP_MS = 24 * 3600_000;

/** Deletes the ids of batches written more than {@link LOG_BATCH_KEEP_MS} ago (on the wall clock they are written by), or before `cutoff`, the logs' own. */
export async function purgeLogBatches(c: Pick<pg.ClientBase, 'query'>, cutoff: number): Promise<void> {
  await c.query('DELETE FROM log_batches WHERE at < $1', [Math.max(cutoff, Date.now() - LOG_BATCH_KEEP_MS)]);
}

/** The array type of a declared column's values (disk/sql.ts: INTEGER is BIGINT, BLOB is BYTEA). */
const ARRAY_TYPE: Record<ColumnType, string> = { INTEGER: 'bigint[]', TEXT: 'text[]', BLOB: 'bytea[]' };

/**
 * The statement that writes one batch of `table`: its parameters one array per declared column, then the batch's id
 * and the time of the write. The rows are written only when the batch's id is new to `log_batches`.
 */
export function pgLogSql(table: LogTable): string {
  const cols = columnNames(table);
  const n = table.columns.length;
  const arrays = table.columns.map((c, i) => `$${i + 1}::${ARRAY_TYPE[c.type]}`).join(', ');
  const from = `unnest(${arrays}) AS u(${cols.join(', ')})`;
  const once = `WITH batch AS (INSERT INTO log_batches (id, at) VALUES ($${n + 1}::uuid, $${n + 2}::bigint) ON CONFLICT (id) DO NOTHING RETURNING id) `;
  const isNew = 'EXISTS (SELECT 1 FROM batch)';
  if (table.kind === 'rows') return `${once}INSERT INTO ${table.name} (${cols.join(', ')}) SELECT * FROM ${from} WHERE ${isNew}`;
  // A batch holds a (ts, key) once (CountingLog keys its counts so); summing makes it hold even if it did not.
  const key = ['ts', ...table.key].join(', ');
  return (
    `${once}INSERT INTO ${table.name} (${cols.join(', ')}) SELECT ${key}, sum(u.count)::bigint FROM ${from} WHERE ${isNew} GROUP BY ${key} ` +
    `ON CONFLICT (${key}) DO UPDATE SET count = ${table.name}.count + excluded.count`
  );
}

/** The code a failed write is reported with: its SQLSTATE or errno, `unavailable` for a lost connection, else the error's name. */
export function pgLogErrorCode(err: unknown): string {
  return pgCode(err) ?? (pgErrorToPcdError(err) ? 'unavailable' : err instanceof Error ? err.name : 'error');
}

/** Writes batches of `table` (rows in its declared columns) over `pool`. */
export function pgLogWriter(pool: pg.Pool, table: LogTable): LogWriter {
  const sql = pgLogSql(table);
  const n = table.columns.length;
  return {
    async write(rows, batch) {
      const columns: unknown[][] = Array.from({ length: n }, () => new Array<unknown>(rows.length));
      for (let r = 0; r < rows.length; r++) {
        const row = rows[r]!;
        for (let c = 0; c < n; c++) columns[c]![r] = row[c];
      }
      await pool.query(sql, [...columns, batch, Date.now()]);
    },
    keepsFailedBatch: true,
    errorCode: pgLogErrorCode,
    get open() {
      return !pool.ending;
    },
  };
}
