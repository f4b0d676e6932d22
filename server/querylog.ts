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
 * ## When the database cannot be written (disk full, I/O error)
 *
 * A write that fails keeps its rows in memory and is retried with backoff
 * (intervalMs doubling up to `retryMaxMs`, default 30 s). Over Postgres,
 * where a failed write's outcome may be unknown (the reply lost after the
 * commit), the failed batch is tried again as it was, under its id, before
 * any row that came since, and is written at most once (server/pg/logs.ts);
 * over SQLite its rows join the ones that came since. Nothing is thrown
 * out of a timer, a request or close(). Memory is bounded: past `maxPending`
 * rows (default 100,000 per log) the oldest are dropped and counted (over
 * Postgres, the oldest but those of the batch waiting for its next try), and the
 * count is reported in the server log (a warning with the table and how many,
 * never a row's content). `health()` exposes the state and every log
 * registers under its store (server/loghealth.ts), which `GET /v1/health`
 * reads. A design whose policy is "every lookup is logged" calls
 * {@link QueryLog.requireRoom} before answering: while the log is failing and
 * its buffer is full, that refuses with 503 instead of answering unlogged.
 *
 * ## Shutdown while the database still cannot be written
 *
 * close() tries a last write; rows it cannot write are spilled to
 * `<dataDir>/log-spill-<table>.json` (disk/files.ts; mode 0600, written
 * atomically): exactly the rows the table would have received, in its
 * columns (BLOBs as hex), nothing more. The next start's log of that table
 * ({@link QueryLog.replaySpill}) takes them back into its buffer, writes
 * them with its first write and removes the file once they are written;
 * until then they are pending like any other row (health, retries, the
 * bound), and a shutdown spills them again. Only when the spill cannot be
 * written either (the file system itself is full) are rows lost, and the
 * warning says how many. See docs/operations.md, "Shutdown".
 *
 * Retention: `Retention` purges every log table of rows older than the
 * retention period, at start and then periodically, with an injected clock;
 * a purge that fails is reported and tried again at the next period.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { columnNames, type CountKey, type CountLogTable, type LogRow, type RowLogTable } from '../shared/logs.ts';
import type { ServerContext } from './context.ts';
import { registerLog, type LogHealth, type MonitoredLog } from './loghealth.ts';
import { isLogWriter, sqliteCountsWriter, sqliteRowsWriter, type LogWriter } from './logwriter.ts';
import { readSpill, writeSpill } from './logspill.ts';
import { pgLogWriter } from './pg/logs.ts';
import { logSpillFile } from '../disk/files.ts';

// The retention purge lives in server/retention.ts; here for the modules that import it from the logs.
export { DAY_MS, Retention } from './retention.ts';

export const DEFAULT_MAX_ROWS = 1000;
export const DEFAULT_INTERVAL_MS = 1000;
/** Rows one log holds in memory at most while it cannot write them. */
export const DEFAULT_MAX_PENDING = 100_000;
export const DEFAULT_RETRY_MAX_MS = 30_000;
export const MINUTE_MS = 60_000;

export interface LogOptions {
  /** Flush once this many rows are pending (default 1000). */
  maxRows?: number;
  /** Flush this long after the first pending row (default 1 s); also the first retry delay. */
  intervalMs?: number;
  /** Rows held in memory at most; past it the oldest are dropped and counted (default 100,000). */
  maxPending?: number;
  /** Longest retry delay after failed writes (default 30 s). */
  retryMaxMs?: number;
  /** Where failures and drops are reported (warn); never with row contents. */
  logger?: Logger;
  /** The data folder: rows a shutdown cannot write are spilled there and replayed by the next start (see the module header). */
  spillDir?: string;
}

/** The failure handling, bounds, timer and health shared by both kinds of log; where the rows go is the writer's (server/logwriter.ts). */
export abstract class QueryLog implements MonitoredLog {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private failing = false;
  private lastError: string | undefined;
  private failures = 0;
  private dropped = 0;
  private droppedReported = 0;
  private unregister: (() => void) | undefined;
  /** An asynchronous writer's write in flight (at most one per log); settles (never rejects) once its rows are written or put back. */
  private writing: Promise<void> | undefined;
  /** A write was asked for while one was in flight: the next follows it at once. */
  private again = false;
  private closing: Promise<void> | undefined;
  protected readonly maxRows: number;
  protected readonly intervalMs: number;
  readonly maxPending: number;
  private readonly retryMaxMs: number;
  private readonly logger: Logger | undefined;
  private readonly spillFile: string | undefined;
  /** Set while rows replayed from the spill file wait to be written: the file is removed once they are. */
  private replayed = false;
  /** The batch being written and its id; kept after a failure only for a writer that keepsFailedBatch (take() then gives it back). */
  private batch: { rows: unknown[][]; id: string } | undefined;

  constructor(
    protected readonly writer: LogWriter,
    readonly table: string,
    options: LogOptions,
  ) {
    this.maxPending = Math.max(1, options.maxPending ?? DEFAULT_MAX_PENDING);
    // A log that writes never holds more than its bound: it flushes at the bound at the latest.
    this.maxRows = Math.max(1, Math.min(options.maxRows ?? DEFAULT_MAX_ROWS, this.maxPending));
    this.intervalMs = Math.max(1, options.intervalMs ?? DEFAULT_INTERVAL_MS);
    this.retryMaxMs = Math.max(this.intervalMs, options.retryMaxMs ?? DEFAULT_RETRY_MAX_MS);
    this.logger = options.logger;
    this.spillFile = options.spillDir === undefined ? undefined : path.join(options.spillDir, logSpillFile(table));
  }

  /** The kind of rows a spill file of this log holds. */
  protected abstract readonly spillKind: 'rows' | 'counts';

  /** Every pending row as the table would hold it (for the spill file). */
  protected abstract spillRows(): unknown[][];

  /** Takes spilled rows back into the buffer (within its bound: past it the oldest are dropped and counted). */
  protected abstract restoreRows(rows: unknown[][]): void;

  /**
   * At start: takes back the rows a previous shutdown spilled for this
   * table, and writes them now (with what is pending). The file is removed
   * once they are written; while they cannot be, they are pending like any
   * row. A file that cannot be read is moved aside (`.unreadable`), with a
   * warning, never deleted.
   */
  replaySpill(): this {
    const file = this.spillFile;
    if (!file || !fs.existsSync(file)) return this;
    const rows = readSpill(file, this.table, this.spillKind, this.logger);
    if (!rows) return this;
    this.restoreRows(rows);
    this.replayed = true;
    this.logger?.info({ table: this.table, rows: rows.length }, 'query log rows spilled at the last shutdown are being written');
    this.attempt(true);
    return this;
  }

  /** Rows waiting in memory (a write in flight included). */
  abstract get pending(): number;

  /** Takes the pending rows (all, or only those due) out of the buffer as one batch, in the table's columns; they count as pending until settled. */
  protected abstract take(all: boolean): unknown[][];

  /** The batch taken was written (forgotten) or not (put back before the rows that came since, within the bound). */
  protected abstract settle(written: boolean): void;

  /** True when some pending row is due for a regular (not forced) write. */
  protected abstract hasDue(): boolean;

  /** Registers with the store's health registry (server/loghealth.ts). */
  register(owner: object): this {
    this.unregister?.();
    this.unregister = registerLog(owner, this, this.logger);
    return this;
  }

  health(): LogHealth {
    return {
      table: this.table,
      pending: this.pending,
      failing: this.failing,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      dropped: this.dropped,
    };
  }

  /**
   * For designs that log every answer: throws 503 (Retry-After) when the log
   * is failing and `rows` more would pass its bound, so nothing is answered
   * that could not be logged. While the log writes, or has room, it passes.
   */
  requireRoom(rows: number): void {
    if (!this.failing || this.pending + rows <= this.maxPending) return;
    throw new PcdError(
      ErrorCode.Unavailable,
      `the server cannot write its query log (${this.lastError ?? 'storage error'}) and holds as many unwritten rows as it may: ` +
        'lookups are refused until the log can be written again',
      { retryAfterSeconds: this.retryDelay() / 1000 },
    );
  }

  /**
   * Writes everything pending now (also while failing: a manual retry).
   * Returns false when the write failed; the rows are then kept and retried
   * with backoff. Never throws. An asynchronous writer's write is only
   * started (or, with one in flight, follows it): the result is the last
   * one known; {@link flushed} waits for it.
   */
  flush(): boolean {
    return this.attempt(true);
  }

  /** {@link flush}, waiting for an asynchronous writer's write; false when it failed. Never rejects. */
  async flushed(): Promise<boolean> {
    await this.writing;
    // Until nothing is pending: a batch tried again goes alone, and the rows that came since follow it.
    for (;;) {
      const before = this.pending;
      const ok = this.attempt(true);
      if (this.writing) await this.writing;
      else if (!ok) return false;
      if (this.failing) return false;
      if (this.pending === 0 || this.pending >= before) return true;
    }
  }

  /**
   * Last flush, then closed for appends. Rows that cannot be written are
   * spilled or reported, not thrown. Synchronous over SQLite; with an
   * asynchronous writer a promise, settled once a write in flight, the last
   * write and the spill are done.
   */
  close(): void | Promise<void> {
    if (this.closed) return this.closing;
    this.closed = true;
    this.clearTimer();
    // Writes until nothing is pending, the writes fail, or one makes no progress (a batch tried again goes alone).
    const last = (): void | Promise<void> => {
      const before = this.pending;
      if (before > 0) this.attempt(true);
      const next = (): void | Promise<void> => (!this.failing && this.pending > 0 && this.pending < before ? last() : this.finishClose());
      return this.writing ? this.writing.then(next) : next();
    };
    const done = this.writing ? this.writing.then(last) : last();
    if (done) this.closing = done;
    return done;
  }

  /** After close's last write: spills or reports what is left. */
  private finishClose(): void {
    this.clearTimer();
    const left = this.pending;
    if (left > 0) {
      const code = this.lastError ?? (this.writer.open ? undefined : 'closed');
      const spilled = this.spill();
      if (spilled) {
        this.logger?.warn({ table: this.table, rows: left, code, file: spilled }, 'query log closed with rows it could not write: spilled to a file the next start writes to the log');
      } else {
        this.logger?.warn({ table: this.table, rows: left, code }, 'query log closed with rows it could not write: they are lost');
      }
    } else if (this.replayed && this.spillFile) {
      fs.rmSync(this.spillFile, { force: true });
    }
    this.reportDrops();
    this.unregister?.();
  }

  /** Writes the pending rows to the spill file (replacing one this log replayed: they are among them); its path, or undefined when there is none or it failed. */
  private spill(): string | undefined {
    return this.spillFile && writeSpill(this.spillFile, this.table, this.spillKind, this.spillRows(), this.logger);
  }

  protected checkOpen(): void {
    if (this.closed) throw new Error(`query log ${this.table} is closed`);
  }

  /** After a row was added: flush when enough are pending (unless failing: the retry timer is on), else make sure a timer runs; with a write in flight, its end does. */
  protected added(): void {
    if (this.writing) return;
    if (!this.failing && this.pending >= this.maxRows) this.attempt(true);
    else if (!this.timer) this.schedule();
  }

  /** Counts rows dropped for the memory bound; reported at the next write attempt and on close. */
  protected countDropped(n: number): void {
    this.dropped += n;
  }

  private attempt(all: boolean): boolean {
    this.clearTimer();
    if (this.writing) {
      this.again = true;
      return !this.failing;
    }
    if (this.pending === 0) {
      this.reportDrops();
      return true;
    }
    if (!this.writer.open) return false;
    this.again = false;
    let result: void | Promise<void>;
    try {
      const rows = this.take(all);
      // A new batch gets a new id; the failed batch tried again (the array take gave back) keeps its own.
      const batch = this.writer.keepsFailedBatch === true && this.batch?.rows === rows ? this.batch : { rows, id: crypto.randomUUID() };
      this.batch = batch;
      result = rows.length > 0 ? this.writer.write(rows, batch.id) : undefined;
    } catch (e) {
      return this.failed(e);
    }
    if (!result) return this.written();
    const after = (settle: () => void) => () => {
      this.writing = undefined;
      try {
        settle();
        if (!this.closed && !this.failing && (this.again || this.pending >= this.maxRows)) this.attempt(true);
      } catch (e) {
        this.logger?.warn({ table: this.table, err: (e as Error).message }, 'query log write could not be completed');
      }
    };
    this.writing = result.then(after(() => this.written()), (e: unknown) => after(() => this.failed(e))());
    return !this.failing;
  }

  private failed(e: unknown): false {
    this.settle(false);
    // A batch put back among the later rows is no longer that batch: its next write is a new one.
    if (!this.writer.keepsFailedBatch) this.batch = undefined;
    const code = this.writer.errorCode(e);
    this.failures++;
    if (!this.failing || code !== this.lastError) {
      this.logger?.warn({ table: this.table, code }, 'query log write failed: its rows are kept in memory and retried');
    }
    this.failing = true;
    this.lastError = code;
    this.reportDrops();
    this.schedule();
    return false;
  }

  private written(): true {
    this.settle(true);
    this.batch = undefined;
    if (this.failing) this.logger?.warn({ table: this.table }, 'query log written again after failed writes');
    if (this.replayed && this.spillFile && !this.spillPending()) {
      // Every replayed row is in the table now (or was dropped for the bound, counted): the file has done its job.
      fs.rmSync(this.spillFile, { force: true });
      this.replayed = false;
      this.logger?.info({ table: this.table }, 'query log rows spilled at the last shutdown are written');
    }
    this.failing = false;
    this.failures = 0;
    this.lastError = undefined;
    this.reportDrops();
    this.schedule();
    return true;
  }

  private reportDrops(): void {
    const n = this.dropped - this.droppedReported;
    if (n <= 0) return;
    this.droppedReported = this.dropped;
    this.logger?.warn({ table: this.table, dropped: n, droppedTotal: this.dropped }, 'query log dropped its oldest unwritten rows: the in-memory bound was reached');
  }

  private retryDelay(): number {
    return Math.min(this.retryMaxMs, this.intervalMs * 2 ** Math.min(30, Math.max(0, this.failures - 1)));
  }

  private schedule(): void {
    this.clearTimer();
    if (this.closed || this.pending === 0) return;
    const delay = this.failing ? this.retryDelay() : this.intervalMs;
    this.timer = setTimeout(() => this.tick(), delay);
    this.timer.unref();
  }

  private tick(): void {
    this.timer = undefined;
    try {
      // A failing log retries everything; otherwise what is due (all rows of a BatchedLog, the closed windows of a CountingLog).
      if (this.failing) this.attempt(true);
      else if (this.hasDue()) this.attempt(this.allDue());
      else this.schedule();
    } catch {
      // attempt() does not throw; a timer must never take the server down even if it did.
    }
  }

  /** Whether rows replayed from the spill file may still be pending (a CountingLog's regular write leaves the open window). */
  protected spillPending(): boolean {
    return false;
  }

  /** Whether a regular write takes every pending row (BatchedLog) or only the due ones (CountingLog). */
  protected allDue(): boolean {
    return true;
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

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
