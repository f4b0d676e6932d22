/**
 * Connections: how many, from whom, for how long (docs/operations.md,
 * "Connections and timeouts").
 *
 * Every connection holds a file descriptor until it is closed, and the
 * process has a fixed number of them (`ulimit -n`). Without limits one
 * address holding thousands of idle sockets starves everyone, health checks
 * included. So:
 *
 * - **Per address**: at most `maxConnectionsPerIp` open connections from one
 *   TCP peer; the next one is destroyed as soon as it is accepted. Trusted
 *   proxies and configured OHTTP relays are exempt (they speak for many
 *   clients), up to the global cap.
 * - **Global, with a reserve**: at most `maxConnections` in all, never more
 *   than the open-file limit less {@link FD_HEADROOM} (the store, the key
 *   files, workers, logs). The last `reserve` of them go only to addresses
 *   holding fewer than {@link RESERVE_PER_IP} connections: when many
 *   addresses each fill their share, a health check or an admin call from a
 *   fresh address still gets a descriptor. Past the cap, node's own
 *   `server.maxConnections` closes the handle before any JavaScript runs.
 * - **Timeouts**: the request line and headers within `headersTimeoutMs`,
 *   the whole request, body included, within `requestTimeoutMs`, a kept-alive
 *   connection idle at most `keepAliveTimeoutMs`, any socket with no traffic
 *   at all for `idleTimeoutMs`; checked every second. A connection that
 *   runs out of time is answered 408 `request_timeout` when nothing else was
 *   written to it, then destroyed: never half-closed, which would keep its
 *   descriptor until the client closes its side.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { canonicalIp } from './clientip.ts';

export interface ConnectionLimits {
  /** Open connections one TCP peer may hold (trusted proxies and OHTTP relays exempt). */
  maxConnectionsPerIp: number;
  /** Open connections in all; lowered to the open-file limit less FD_HEADROOM. */
  maxConnections: number;
  /** Of maxConnections, how many only an address holding fewer than RESERVE_PER_IP connections may take. */
  reserve: number;
  /** Request line and headers must arrive within this (node's headersTimeout). */
  headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this (node's requestTimeout). */
  requestTimeoutMs: number;
  /** A kept-alive connection with no request is closed after this (node's keepAliveTimeout). */
  keepAliveTimeoutMs: number;
  /** A socket with no traffic either way is destroyed after this (a reply the client does not read included). */
  idleTimeoutMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: Readonly<ConnectionLimits> = {
  maxConnectionsPerIp: 256,
  maxConnections: 10_000,
  reserve: 64,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 60_000,
};

/** Descriptors kept out of the connection budget: the SQLite files, key files, worker threads, the log, the folder lock. */
export const FD_HEADROOM = 256;
/** An address holding fewer connections than this may take a reserved slot. */
export const RESERVE_PER_IP = 4;
/** Below this open-file limit the server warns at start-up. */
export const LOW_NOFILE = 8192;
/** How often node checks the headers and request timeouts (its default, 30 s, lets a stalled request live far past them). */
const TIMEOUT_CHECK_MS = 1_000;

/**
 * The process's soft open-file limit: /proc/self/limits on Linux, else
 * `ulimit -n` in a child shell; undefined when neither says (or unlimited).
 */
export function openFileLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    if (m) return m[1] === 'unlimited' ? undefined : Number(m[1]);
  } catch {
    // not Linux: ask a shell
  }
  try {
    const out = execFileSync('/bin/sh', ['-c', 'ulimit -n'], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return /^\d+$/.test(out) ? Number(out) : undefined;
  } catch {
    return undefined;
  }
}

/** Checks limits given as options: whole positive numbers, a reserve below the cap; an invalid_field error names the first that is not. */
export function resolveConnectionLimits(given: Partial<ConnectionLimits> = {}): ConnectionLimits {
  const l = { ...DEFAULT_CONNECTION_LIMITS, ...given };
  for (const [k, v] of Object.entries(l)) {
    if (!Number.isSafeInteger(v) || v < (k === 'reserve' ? 0 : 1)) throw new PcdError(ErrorCode.InvalidField, `connection limit ${k} must be a whole positive number, got ${String(v)}`);
  }
  if (l.headersTimeoutMs > l.requestTimeoutMs) throw new PcdError(ErrorCode.InvalidField, `the headers timeout (${l.headersTimeoutMs} ms) must not exceed the request timeout (${l.requestTimeoutMs} ms)`);
  if (l.reserve >= l.maxConnections) throw new PcdError(ErrorCode.InvalidField, `the connection reserve (${l.reserve}) must be below the connection cap (${l.maxConnections})`);
  return l;
}

/** The global cap the open-file limit allows, and a warning line when that limit is low. */
export function fitToFileLimit(limits: ConnectionLimits, nofile: number | undefined): { maxConnections: number; warning?: string } {
  if (nofile === undefined) return { maxConnections: limits.maxConnections };
  const fits = Math.max(limits.reserve + 1, nofile - FD_HEADROOM);
  const maxConnections = Math.min(limits.maxConnections, fits);
  if (nofile >= LOW_NOFILE && maxConnections === limits.maxConnections) return { maxConnections };
  return {
    maxConnections,
    warning:
      `the open-file limit is ${nofile} (ulimit -n): at most ${maxConnections} connections at once` +
      `${maxConnections < limits.maxConnections ? ` (--max-connections ${limits.maxConnections} lowered to fit)` : ''}; ` +
      `raise it (ulimit -n 65536, systemd LimitNOFILE=65536) for a public server`,
  };
}

/** What the guard counts, for tests and the operator. */
export interface ConnectionStats {
  open: number;
  /** Connections destroyed at once: over the per-address cap, or over the cap in the reserve. */
  refused: number;
  /** Addresses holding at least one connection. */
  addresses: number;
}

/**
 * Applies the limits to a listening (or about to listen) http server. Its
 * 'clientError' listener is installed here too: a coded answer, then the
 * socket destroyed.
 */
export function guardConnections(http: Server, limits: ConnectionLimits, options: { exempt?: (ip: string) => boolean; logger?: Logger; nofile?: number }): ConnectionStats {
  const { maxConnections } = fitToFileLimit(limits, options.nofile);
  http.maxConnections = maxConnections; // node closes the handle past it, before a socket object exists
  http.headersTimeout = limits.headersTimeoutMs;
  http.requestTimeout = limits.requestTimeoutMs;
  http.keepAliveTimeout = limits.keepAliveTimeoutMs;
  http.setTimeout(limits.idleTimeoutMs); // no 'timeout' listener: node destroys the socket

  const perIp = new Map<string, number>();
  const stats: ConnectionStats = { open: 0, refused: 0, addresses: 0 };
  const softCap = maxConnections - limits.reserve;
  http.on('connection', (socket: Socket) => {
    const a = socket.remoteAddress;
    const ip = a === undefined ? 'unknown' : (canonicalIp(a) ?? a);
    const held = perIp.get(ip) ?? 0;
    const exempt = options.exempt?.(ip) ?? false;
    if ((!exempt && held >= limits.maxConnectionsPerIp) || (stats.open >= softCap && held >= RESERVE_PER_IP)) {
      stats.refused++;
      socket.destroy();
      return;
    }
    perIp.set(ip, held + 1);
    stats.open++;
    stats.addresses = perIp.size;
    socket.once('close', () => {
      stats.open--;
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n <= 0) perIp.delete(ip);
      else perIp.set(ip, n);
      stats.addresses = perIp.size;
    });
  });
  http.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket));
  return stats;
}

/** The http.createServer options the limits need: node checks the timeouts every second, not every 30 s. */
export function serverOptions(limits: ConnectionLimits) {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: TIMEOUT_CHECK_MS,
  };
}

/**
 * What node's HTTP parser refuses before express sees a request (a request
 * line or headers over 16 KB, a method it does not know, bytes that are not
 * HTTP) and a request that ran out of time get a coded error body, written
 * straight to the socket as the node docs prescribe for 'clientError'; then
 * the socket is destroyed: at once if the client does not take the reply.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // A reply already under way (the request timed out mid-body, inside a handler): nothing more can be said on this socket.
  const busy = (socket as { _httpMessage?: unknown })._httpMessage != null;
  if (err.code === 'ECONNRESET' || !socket.writable || busy) {
    socket.destroy();
    return;
  }
  const e =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new PcdError(ErrorCode.HeadersTooLarge, 'the request line and headers exceed 16 KB')
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new PcdError(ErrorCode.RequestTimeout, 'the request did not arrive in time: send its headers and body promptly')
        : new PcdError(ErrorCode.BadRequest, `not a valid HTTP/1.1 request (${err.code ?? 'parse error'})`);
  const body = JSON.stringify(e.toBody());
  const cut = setTimeout(() => socket.destroy(), 1000);
  cut.unref();
  socket.end(
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status] ?? ''}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
    () => {
      clearTimeout(cut);
      socket.destroy();
    },
  );
}
