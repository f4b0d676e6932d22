/**
 * Query logs written in batches, as the report describes: rows collect in
 * memory and go to SQLite in one transaction when `maxRows` have collected or
 * `intervalMs` has passed, and on close (graceful shutdown). A crash loses at
 * most one interval of rows, which is the trade the batching makes.
 *
 * Retention: `Retention` purges every log table of rows older than the
 * retention period, at start and then periodically, with an injected clock.
 */
import type Database from 'better-sqlite3';
import type { ServerContext } from './context.ts';
import type { Store } from './store.ts';

export class BatchedLog<Row extends unknown[]> {
  private rows: Row[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly insert: Database.Statement<unknown[]>;
  private readonly writeAll: (rows: Row[]) => void;
  private closed = false;

  constructor(
    private readonly db: Database.Database,
    readonly table: string,
    columns: readonly string[],
    private readonly options: { maxRows?: number; intervalMs?: number } = {},
  ) {
    this.insert = db.prepare(`INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`);
    this.writeAll = db.transaction((rows: Row[]) => {
      for (const r of rows) this.insert.run(...r);
    });
  }

  append(row: Row): void {
    if (this.closed) throw new Error(`query log ${this.table} is closed`);
    this.rows.push(row);
    if (this.rows.length >= (this.options.maxRows ?? 1000)) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.options.intervalMs ?? 1000);
      this.timer.unref();
    }
  }

  /** Rows waiting in memory. */
  get pending(): number {
    return this.rows.length;
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.rows.length === 0 || !this.db.open) return;
    const rows = this.rows;
    this.rows = [];
    this.writeAll(rows);
  }

  close(): void {
    this.flush();
    this.closed = true;
  }
}

/** A design's query log, batched as the server's options say. */
export function designLog<Row extends unknown[]>(ctx: ServerContext, table: string, columns: readonly string[]): BatchedLog<Row> {
  return new BatchedLog<Row>(ctx.store.db, table, columns, { intervalMs: ctx.options.logIntervalMs, maxRows: ctx.options.logMaxRows });
}

export const DAY_MS = 24 * 60 * 60 * 1000;

export class Retention {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    readonly retentionMs: number,
    private readonly now: () => number,
    private readonly flushAll: () => void = () => {},
  ) {}

  /** Deletes rows older than now - retention; returns how many. */
  purge(): number {
    this.flushAll();
    return this.store.purgeLogs(this.now() - this.retentionMs);
  }

  start(everyMs = 60 * 60 * 1000): void {
    this.purge();
    this.timer = setInterval(() => this.purge(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
