/**
 * What both kinds of query log share (server/querylog.ts has the kinds and
 * their factories): the batching's timer, the failure handling and its
 * retries, the memory bound, the health report, close() and the shutdown
 * spill. Where rows go is a {@link LogWriter} (server/logwriter.ts).
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
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { registerLog, type LogHealth, type MonitoredLog } from './loghealth.ts';
import type { LogWriter } from './logwriter.ts';
import { readSpill, writeSpill } from './logspill.ts';
import { logSpillFile } from '../disk/files.ts';

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
