/**
 * Which query logs a server holds, and how they are doing: every log that
 * `designLog` / `countingLog` (server/querylog.ts) makes registers here under
 * its store, so `GET /v1/health` (server/server.ts), the tests and shutdown
 * code can ask all of them at once without knowing the designs.
 *
 * A log is *failing* while its last write attempt failed (a full disk, an
 * I/O error): it keeps its rows in memory, up to a bound, and retries. The
 * server is *degraded* while any log is failing.
 */
import type { Logger } from 'pino';

/** One log's state, as `GET /v1/health` reports it. */
export interface LogHealth {
  table: string;
  /** Rows waiting in memory (written at the next flush, or kept after a failed one). */
  pending: number;
  /** The last write attempt failed; rows are kept and retried with backoff. */
  failing: boolean;
  /** Error code of the last failed write (SQLite's, e.g. SQLITE_FULL; a Postgres SQLSTATE, e.g. 25006); absent when the last write succeeded. */
  lastError?: string;
  /** Rows dropped (oldest first) since the server started because the in-memory bound was reached; for an aggregated log, events. */
  dropped: number;
}

export interface MonitoredLog {
  readonly table: string;
  health(): LogHealth;
  /** Writes what is pending now; false when the write failed (rows kept). Never throws. */
  flush(): boolean;
}

interface Registry {
  logs: Set<MonitoredLog>;
  logger?: Logger;
}

const registries = new WeakMap<object, Registry>();

function registryOf(owner: object): Registry {
  let r = registries.get(owner);
  if (!r) registries.set(owner, (r = { logs: new Set() }));
  return r;
}

/** Registers a log under its owner (the store); returns the function that removes it again. */
export function registerLog(owner: object, log: MonitoredLog, logger?: Logger): () => void {
  const r = registryOf(owner);
  r.logs.add(log);
  if (logger) r.logger ??= logger;
  return () => {
    r.logs.delete(log);
  };
}

/** The server logger registered with the owner's logs, if any (for code that has no logger of its own). */
export function loggerOf(owner: object): Logger | undefined {
  return registries.get(owner)?.logger;
}

/** Every registered log of the owner, by table name. */
export function logHealth(owner: object): LogHealth[] {
  const logs = [...(registries.get(owner)?.logs ?? [])];
  return logs.map((l) => l.health()).sort((a, b) => a.table.localeCompare(b.table));
}

/** Undefined while every log writes; else every log's state (the failing ones among them). */
export function degradedState(owner: object): { logs: LogHealth[] } | undefined {
  const logs = logHealth(owner);
  return logs.some((l) => l.failing) ? { logs } : undefined;
}

/** Flushes every log of the owner now (also retries failing ones); true when all were written. */
export function flushLogs(owner: object): boolean {
  let ok = true;
  for (const l of registries.get(owner)?.logs ?? []) ok = l.flush() && ok;
  return ok;
}
