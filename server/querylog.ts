/**
 * Query logs written in batches, as the report describes: rows collect in
 * memory and go to the store in one transaction when `maxRows` have collected
 * or `intervalMs` has passed, and on close (graceful shutdown). A crash loses
 * at most one interval of rows, which is the trade the batching makes.
 *
 * Where rows go is a {@link LogWriter} (server/logwriter.ts): SQLite's,
 * synchronous, by default; Postgres's (server/pg/logs.ts) asynchronous, with
 * at most one write in flight per log (rows that come meanwhile wait for the
 * next; close() waits for it before its last write and the spill).
 *
 * Two kinds:
 * - {@link BatchedLog}: one row per event (the lookup logs).
 * - {@link CountingLog}: events counted per key and time window (a minute by
 *   default) in memory, each window written once it is over as one row with
 *   a count (upserted, so a window written early is added to, never
 *   duplicated). Anonymous traffic (bucket fetches) thus grows the database
 *   by at most one row per distinct key per window, however many requests
 *   come. A crash loses at most the open window's counts.
 *
 * The failure handling, the retries, the bound and the shutdown spill are
 * the base class's (server/querylog-base.ts).
 *
 * Retention: `Retention` purges every log table of rows older than the
 * retention period, at start and then periodically, with an injected clock;
 * a purge that fails is reported and tried again at the next period.
 */
import type Database from 'better-sqlite3';
import { columnNames, type CountKey, type CountLogTable, type LogRow, type RowLogTable } from '../shared/logs.ts';
import type { ServerContext } from './context.ts';
import { isLogWriter, sqliteCountsWriter, sqliteRowsWriter, type LogWriter } from './logwriter.ts';
import { pgLogWriter } from './pg/logs.ts';
import { MINUTE_MS, QueryLog, type LogOptions } from './querylog-base.ts';

export type { LogOptions } from './querylog-base.ts';
// The retention purge lives in server/retention.ts; here for the modules that import it from the logs.
export { DAY_MS, Retention } from './retention.ts';

/** One row per event, written in batches. Over SQLite by default; any store given a {@link LogWriter} (server/pg/logs.ts). */
export class BatchedLog<Row extends unknown[]> extends QueryLog {
  private rows: Row[] = [];
  /** Rows before `head` are dropped (kept in the array until it is compacted). */
  private head = 0;
  /** The batch being written. */
  private inflight: Row[] = [];
  protected readonly spillKind = 'rows';

  constructor(db: Database.Database | LogWriter, table: string, columns: readonly string[], options: LogOptions = {}) {
    super(isLogWriter(db) ? db : sqliteRowsWriter(db, table, columns), table, options);
  }

  append(row: Row): void {
    this.checkOpen();
    this.rows.push(row);
    this.bound();
    this.added();
  }

  get pending(): number {
    return this.rows.length - this.head + this.inflight.length;
  }

  protected spillRows(): unknown[][] {
    return this.inflight.concat(this.rows.slice(this.head));
  }

  protected restoreRows(rows: unknown[][]): void {
    this.rows = (rows as Row[]).concat(this.rows.slice(this.head)); // older than anything appended since
    this.head = 0;
    this.bound();
  }

  protected hasDue(): boolean {
    return this.pending > 0;
  }

  protected take(): unknown[][] {
    if (this.inflight.length > 0) return this.inflight; // the failed batch, tried again as it was (settle)
    this.inflight = this.head === 0 ? this.rows : this.rows.slice(this.head);
    this.rows = [];
    this.head = 0;
    return this.inflight;
  }

  protected settle(written: boolean): void {
    if (!written && this.writer.keepsFailedBatch) {
      this.bound(); // the batch stays whole, for its next try; the bound takes from the rows that came since
      return;
    }
    if (!written) {
      this.rows = this.head === this.rows.length ? this.inflight : this.inflight.concat(this.rows.slice(this.head));
      this.head = 0;
    }
    this.inflight = [];
    if (!written) this.bound();
  }

  /** Past the bound, drops the oldest rows not being written, counted. */
  private bound(): void {
    const n = Math.min(this.pending - this.maxPending, this.rows.length - this.head);
    if (n <= 0) return;
    this.head += n;
    this.countDropped(n);
    if (this.head >= 1024 && this.head * 2 >= this.rows.length) {
      this.rows = this.rows.slice(this.head);
      this.head = 0;
    }
  }
}

type Count<Key> = { ts: number; key: Key; count: number };

/**
 * Events counted per (window start, key) in memory; a window is written
 * once it is over, as one row `(ts = window start, ...key, count)`, upserted
 * (`count = count + excluded.count`): the table needs a unique key on
 * `(ts, ...keyColumns)`. `pending` counts rows (distinct keys), the drop
 * counter counts events.
 */
export class CountingLog<Key extends (string | number)[]> extends QueryLog {
  private entries = new Map<string, Count<Key>>();
  /** The batch being written (or kept for its next try), by id, and as the rows written. */
  private inflight: [string, Count<Key>][] = [];
  private inflightRows: unknown[][] = [];
  protected readonly spillKind = 'counts';
  /** Window starts of the replayed rows not yet written. */
  private replayedIds = new Set<string>();

  constructor(
    db: Database.Database | LogWriter,
    table: string,
    keyColumns: readonly string[],
    private readonly now: () => number,
    private readonly windowMs = MINUTE_MS,
    options: LogOptions = {},
  ) {
    super(isLogWriter(db) ? db : sqliteCountsWriter(db, table, keyColumns), table, options);
  }

  /** Counts one event (or `n`) for `key` in the current window. */
  add(key: Key, n = 1): void {
    this.checkOpen();
    const ts = Math.floor(this.now() / this.windowMs) * this.windowMs;
    const id = JSON.stringify([ts, ...key]);
    const e = this.entries.get(id);
    if (e) e.count += n;
    else {
      this.entries.set(id, { ts, key, count: n });
      this.bound();
    }
    this.added();
  }

  get pending(): number {
    return this.entries.size + this.inflight.length;
  }

  protected spillRows(): unknown[][] {
    return [...this.inflight.map(([, e]) => e), ...this.entries.values()].map((e) => [e.ts, ...e.key, e.count]);
  }

  protected restoreRows(rows: unknown[][]): void {
    const restored = new Map<string, Count<Key>>();
    for (const r of rows) {
      const ts = r[0] as number;
      const key = r.slice(1, -1) as Key;
      const count = r.at(-1) as number;
      const id = JSON.stringify([ts, ...key]);
      const e = restored.get(id);
      if (e) e.count += count;
      else restored.set(id, { ts, key, count });
      this.replayedIds.add(id);
    }
    this.putBefore(restored);
  }

  /** Puts `older` before the entries counted since (first in iteration order, so the bound drops them first), adding up counts of the same row. */
  private putBefore(older: Map<string, Count<Key>>): void {
    for (const [id, e] of this.entries) {
      const r = older.get(id);
      if (r) r.count += e.count;
      else older.set(id, e);
    }
    this.entries = older;
    this.bound();
  }

  /** Past the bound, drops the oldest window's rows (Map iteration is insertion order), counting their events. */
  private bound(): void {
    while (this.pending > this.maxPending && this.entries.size > 0) {
      const [oldest, entry] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      this.countDropped(entry.count);
    }
  }

  protected override spillPending(): boolean {
    for (const id of this.replayedIds) if (!this.entries.has(id)) this.replayedIds.delete(id);
    return this.replayedIds.size > 0;
  }

  /** Events waiting in memory (the sum of the pending rows' counts). */
  get pendingEvents(): number {
    let n = 0;
    for (const [, e] of this.inflight) n += e.count;
    for (const e of this.entries.values()) n += e.count;
    return n;
  }

  protected hasDue(): boolean {
    const cutoff = this.now() - this.windowMs;
    for (const e of this.entries.values()) if (e.ts <= cutoff) return true;
    return false;
  }

  protected override allDue(): boolean {
    return false;
  }

  protected take(all: boolean): unknown[][] {
    if (this.inflight.length > 0) return this.inflightRows; // the failed batch, tried again as it was (settle)
    const cutoff = this.now() - this.windowMs;
    this.inflight = [...this.entries].filter(([, e]) => all || e.ts <= cutoff);
    for (const [id] of this.inflight) this.entries.delete(id);
    this.inflightRows = this.inflight.map(([, e]) => [e.ts, ...e.key, e.count]);
    return this.inflightRows;
  }

  protected settle(written: boolean): void {
    if (!written && this.writer.keepsFailedBatch) {
      this.bound(); // the batch stays whole, for its next try; counts that came since wait in their own rows
      return;
    }
    const batch = this.inflight;
    this.inflight = [];
    this.inflightRows = [];
    if (!written && batch.length > 0) this.putBefore(new Map(batch));
  }
}

function logOptions(ctx: ServerContext): LogOptions {
  return {
    intervalMs: ctx.options.logIntervalMs,
    maxRows: ctx.options.logMaxRows,
    maxPending: ctx.options.logMaxPending,
    logger: ctx.logger,
    spillDir: ctx.store.dataDir,
  };
}

/** A design's query log (its declaration: shared/designs/<name>.ts), batched as the server's options say, registered under the store for health reports. */
export function designLog<const T extends RowLogTable>(ctx: ServerContext, table: T): BatchedLog<LogRow<T>> {
  // On a shared store the rows go there (server/pg/logs.ts); health, spills and retries are the same.
  const to = ctx.shared ? pgLogWriter(ctx.shared.pool, table) : ctx.store.db;
  return new BatchedLog<LogRow<T>>(to, table.name, columnNames(table), logOptions(ctx)).register(ctx.store).replaySpill();
}

/** A design's aggregated log: counts per key and window (a minute by default), on the server's clock. */
export function countingLog<const T extends CountLogTable>(ctx: ServerContext, table: T): CountingLog<CountKey<T>> {
  const to = ctx.shared ? pgLogWriter(ctx.shared.pool, table) : ctx.store.db;
  return new CountingLog<CountKey<T>>(to, table.name, table.key, ctx.now, table.windowMs, logOptions(ctx)).register(ctx.store).replaySpill();
}
