/**
 * A connection pool to the shared Postgres store (node-postgres), and how
 * its errors are answered.
 *
 * - `--store postgres://…` or `PCD_DATABASE_URL` names the database
 *   ({@link storeUrl}); the URL may carry a password, so it is never logged
 *   or printed whole ({@link redactUrl}).
 * - BIGINT (OID 20) is read as a JavaScript number: pcd's ids, versions and
 *   Unix-ms times stay far below 2^53, and a value that does not is refused
 *   rather than rounded. The parser is the pool's own, not pg's global one.
 * - An idle connection that the server ends (a restart, a failover,
 *   `pg_terminate_backend`) makes the pool emit 'error': it is logged and
 *   the pool opens a new connection on the next query. Without the handler
 *   node would exit on it.
 * - A condition of the store, not of the request, is the 503 `unavailable`
 *   PcdError with Retry-After ({@link pgErrorToPcdError}), as SQLite's full
 *   disk is (server/store.ts storeErrorToPcdError): classes 08 (connection),
 *   53 (disk full, out of memory, too many connections), 57P0x (shut down,
 *   starting up), 25006 (read-only transaction), 40001/40P01 (serialization
 *   failure, deadlock: try again), and the socket's own errors.
 */
import pg from 'pg';
import { ErrorCode, PcdError } from '../../shared/errors.ts';

/** The environment variable that names the shared store when `--store` is not given. */
export const STORE_URL_ENV = 'PCD_DATABASE_URL';

/** Whether `value` names a Postgres store (`postgres://` or `postgresql://`). */
export function isPostgresUrl(value: string | undefined): value is string {
  return value !== undefined && /^postgres(ql)?:\/\//i.test(value);
}

/** The Postgres URL from `--store` or, without it, {@link STORE_URL_ENV}; undefined for the SQLite data folder. */
export function storeUrl(option: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = option ?? env[STORE_URL_ENV];
  if (v === undefined || v === '') return undefined;
  if (!isPostgresUrl(v)) throw new PcdError(ErrorCode.InvalidField, `--store takes a postgres:// URL, got '${redactUrl(v)}'`);
  return v;
}

/** The URL with its password replaced by `***`, for logs and messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}

const INT8_OID = 20;

function parseBigint(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`a BIGINT of ${value} is beyond what pcd reads exactly`);
  return n;
}

/** pg's type parsers, with BIGINT as a number (module header). */
const TYPES = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return parseBigint;
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

interface ErrorLogger {
  error(obj: object, msg: string): void;
}

/** A pool to `url`; idle connections' errors go to `logger` rather than ending the process. */
export function createPool(url: string, options: { max?: number; logger?: ErrorLogger; applicationName?: string; asyncCommit?: boolean } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    types: TYPES,
    application_name: options.applicationName ?? 'pcd',
    // A commit that does not wait for its WAL flush (the spent tokens: server/tokens/spent.ts says what that risks).
    ...(options.asyncCommit ? { options: '-c synchronous_commit=off' } : {}),
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
  });
  pool.on('error', (err) => options.logger?.error({ err: err.message }, 'a pooled Postgres connection failed; the next query opens another'));
  return pool;
}

/** SQLSTATEs of a store that cannot take the request now (module header). */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0)|^(25006|40001|40P01)$/;
/** Socket errors of a lost or refused connection. */
const UNAVAILABLE_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** node-postgres' own errors for a connection that ended or never came, which carry no code. */
const UNAVAILABLE_MESSAGES = /Connection terminated|Client has encountered a connection error|timeout exceeded when trying to connect|Client was closed|Cannot use a pool after calling end/i;

/** The SQLSTATE or errno of a pg error, if it has one. */
export function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A Postgres error as the API answers it: a store condition is 503 `unavailable` with Retry-After; anything else undefined. */
export function pgErrorToPcdError(err: unknown): PcdError | undefined {
  if (err instanceof PcdError || !(err instanceof Error)) return undefined;
  const code = pgCode(err);
  const unavailable = code !== undefined ? UNAVAILABLE_SQLSTATE.test(code) || UNAVAILABLE_ERRNOS.has(code) : UNAVAILABLE_MESSAGES.test(err.message);
  if (!unavailable) return undefined;
  const what =
    code === '53100'
      ? "the server's storage is full"
      : code === '25006'
        ? "the server's storage is read-only"
        : code === '40001' || code === '40P01'
          ? "the server's storage is busy"
          : "the server's storage cannot be reached";
  return new PcdError(ErrorCode.Unavailable, `${what} (Postgres${code ? ` ${code}` : ''}): try again later`, { cause: err, retryAfterSeconds: 30 });
}

/** Runs a store operation; storage conditions are thrown as their 503 PcdError. */
export async function pgGuarded<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw pgErrorToPcdError(e) ?? e;
  }
}

/** Runs `f` in one transaction on one pooled connection: COMMIT when it settles, ROLLBACK when it throws; `begin` may set the isolation level. */
export async function inTransaction<T>(pool: pg.Pool, f: (client: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  return pgGuarded(async () => {
    const client = await pool.connect();
    // A connection that ends while checked out emits 'error' on the client, which the pool only listens to when it is idle.
    let broken: Error | undefined;
    const onError = (e: Error) => (broken = e);
    client.on('error', onError);
    try {
      await client.query(begin);
      const result = await f(client);
      await client.query('COMMIT');
      return result;
    } catch (e) {
      try {
        await client.query('ROLLBACK');
      } catch (rollback) {
        broken = rollback as Error; // the connection is gone: do not give it back to the pool
      }
      throw e;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  });
}
