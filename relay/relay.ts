/**
 * `pcd relay`: an Oblivious HTTP relay (RFC 9458 §2, the "Oblivious Relay
 * Resource") in front of one pcd server's gateway (server/ohttp.ts).
 *
 *   POST /                                message/ohttp-req  -> the gateway's POST /.well-known/ohttp-gateway, reply streamed back
 *   GET  /  and  GET /.well-known/ohttp-gateway                -> the gateway's key configuration (application/ohttp-keys)
 *
 * It is the half of the split that knows who is asking and not what: it
 * sees client addresses and ciphertext. So it keeps as little as it can:
 *
 * - no log line per request: no address, no body, no timing; only the
 *   line it prints when it listens;
 * - nothing of the client goes on: the gateway gets the body and a content
 *   type the relay sets itself; no X-Forwarded-For, no cookie, no user
 *   agent, no header of the client's at all (RFC 9458 §7.2);
 * - its own per-IP limit (in memory, refilling every minute: the server
 *   exempts the relay's address from its own, and cannot tell clients apart
 *   behind it), a body limit and a timeout.
 *
 * Its refusals are the API's: `{ error: { code, message } }` (JSON) with the
 * status of the code, Retry-After on 429 and 503. What the gateway answers,
 * success or error, is passed back with its status and content type only.
 *
 * Run by one operator and the server by another, the two must not collude
 * for the split to mean anything (RFC 9458 §7); run on the same machine, as
 * the tests and a demo do, it shows the mechanics and hides nothing.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { OHTTP_GATEWAY_PATH, OHTTP_MEDIA, MAX_ENCAPSULATED_REQUEST_BYTES } from '../shared/ohttp.ts';
import { normalizeServerUrl } from '../client/transport.ts';

export const DEFAULT_RELAY_PORT = 8788;
export const DEFAULT_RELAY_IP_PER_MINUTE = 600;
export const DEFAULT_RELAY_MAX_BODY = MAX_ENCAPSULATED_REQUEST_BYTES;
export const DEFAULT_RELAY_TIMEOUT_MS = 60_000;
/** A key list is a few dozen bytes; this is far more than any. */
const MAX_KEY_LIST_BYTES = 64 * 1024;
/** Per-IP entries kept before the full ones are swept out early. */
const MAX_IP_ENTRIES = 100_000;

export interface RelayOptions {
  /** The pcd server whose gateway this relay serves (its base URL; `/.well-known/ohttp-gateway` is added). */
  gateway: string;
  port?: number;
  host?: string;
  /** Requests per minute per client IP (the burst is as large). */
  ipLimitPerMinute?: number;
  /** Largest encapsulated request forwarded, in bytes. */
  maxBodyBytes?: number;
  /** How long one forwarded exchange may take, reply included. */
  timeoutMs?: number;
  /** The fetch that reaches the gateway (tests and instrumentation see exactly what the relay forwards). */
  fetch?: typeof fetch;
  now?: () => number;
}

export interface RunningRelay {
  readonly url: string;
  readonly port: number;
  /** The gateway's URL requests go to. */
  readonly gateway: string;
  readonly http: http.Server;
  close(): Promise<void>;
}

/** The gateway URL of a server base URL (or of a gateway URL given as such). */
export function gatewayUrl(input: string): string {
  const base = normalizeServerUrl(input);
  return base.endsWith(OHTTP_GATEWAY_PATH) ? base : base + OHTTP_GATEWAY_PATH;
}

/** A token bucket per client address, in memory only: it refills within a minute, and nothing about clients is kept longer. */
class IpLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly perMinute: number,
    private readonly now: () => number,
  ) {}

  /** Undefined when the request may go, else the seconds until it could. */
  take(ip: string): number | undefined {
    const t = this.now();
    if (this.buckets.size >= MAX_IP_ENTRIES && !this.buckets.has(ip)) this.sweep(t);
    const b = this.buckets.get(ip) ?? { tokens: this.perMinute, at: t };
    b.tokens = Math.min(this.perMinute, b.tokens + (Math.max(0, t - b.at) * this.perMinute) / 60_000);
    b.at = Math.max(b.at, t);
    this.buckets.set(ip, b);
    if (b.tokens < 1) return ((1 - b.tokens) / this.perMinute) * 60;
    b.tokens -= 1;
    return undefined;
  }

  private sweep(t: number): void {
    for (const [ip, b] of this.buckets) if (b.tokens + ((t - b.at) * this.perMinute) / 60_000 >= this.perMinute) this.buckets.delete(ip);
  }
}

function sendError(res: http.ServerResponse, e: PcdError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(e.toBody());
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' };
  if (e.status === 429 || e.status === 503) headers['retry-after'] = String(e.retryAfterSeconds ?? 1);
  res.writeHead(e.status, headers).end(body);
}

/** Reads a request body of at most `max` bytes; larger is body_too_large (413) before more is read. */
function readBody(req: http.IncomingMessage, max: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > max) {
      reject(new PcdError(ErrorCode.BodyTooLarge, `an encapsulated request is at most ${max} bytes`));
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(new PcdError(ErrorCode.BodyTooLarge, `an encapsulated request is at most ${max} bytes`));
      } else parts.push(chunk);
    });
    req.on('end', () => resolve(new Uint8Array(Buffer.concat(parts))));
    req.on('error', reject);
  });
}

function mediaType(header: string | undefined): string {
  return (header ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
}

/** The gateway did not answer: unreachable, or too slow. */
function upstreamProblem(e: unknown, timeoutMs: number): PcdError {
  const name = (e as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new PcdError(ErrorCode.Unavailable, `the gateway did not answer within ${timeoutMs / 1000} s`, { status: 504, retryAfterSeconds: 5 });
  }
  return new PcdError(ErrorCode.Unavailable, 'the gateway cannot be reached', { status: 502, retryAfterSeconds: 5 });
}

/** Sends the gateway's reply back: its status, content type, cache control (key lists) and Retry-After; its body streamed. */
async function relayReply(upstream: Response, res: http.ServerResponse, maxBytes?: number): Promise<void> {
  const headers: Record<string, string> = {};
  for (const name of ['content-type', 'cache-control', 'retry-after', 'content-length']) {
    const v = upstream.headers.get(name);
    if (v !== null) headers[name] = v;
  }
  if (maxBytes !== undefined) {
    const bytes = new Uint8Array(await upstream.arrayBuffer());
    if (bytes.length > maxBytes) throw new PcdError(ErrorCode.Unavailable, 'the gateway answered with a key list that is not one', { status: 502 });
    headers['content-length'] = String(bytes.length);
    res.writeHead(upstream.status, headers).end(bytes);
    return;
  }
  res.writeHead(upstream.status, headers);
  if (!upstream.body) {
    res.end();
    return;
  }
  // A client that goes away, or a gateway that breaks off, ends both sides.
  await pipeline(Readable.fromWeb(upstream.body as unknown as NodeReadableStream<Uint8Array>), res);
}

/** The gateway a relay forwards to, and how. */
interface Gateway {
  /** Its URL (`/.well-known/ohttp-gateway`). */
  target: string;
  fetch: typeof fetch;
  timeoutMs: number;
  maxBody: number;
}

/** One exchange with the gateway; a failure to get any answer is 502 or 504. */
async function askGateway(gateway: Gateway, init: RequestInit): Promise<Response> {
  try {
    return await gateway.fetch(gateway.target, { ...init, signal: AbortSignal.timeout(gateway.timeoutMs) });
  } catch (e) {
    throw upstreamProblem(e, gateway.timeoutMs);
  }
}

/** GET / or GET /.well-known/ohttp-gateway: the gateway's key configuration, passed back whole (it is small). */
async function forwardKeys(gateway: Gateway, res: http.ServerResponse): Promise<void> {
  const upstream = await askGateway(gateway, { method: 'GET', headers: { accept: OHTTP_MEDIA.keys } });
  await relayReply(upstream, res, MAX_KEY_LIST_BYTES);
}

/** POST /: an encapsulated request forwarded, its reply streamed back. */
async function forwardRequest(gateway: Gateway, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  if (mediaType(req.headers['content-type']) !== OHTTP_MEDIA.request) {
    req.resume();
    throw new PcdError(ErrorCode.UnsupportedMediaType, `Content-Type must be ${OHTTP_MEDIA.request}`);
  }
  const body = await readBody(req, gateway.maxBody);
  // Only the body and a content type of the relay's own: nothing of the client's goes on.
  const upstream = await askGateway(gateway, { method: 'POST', headers: { 'content-type': OHTTP_MEDIA.request, accept: OHTTP_MEDIA.response }, body });
  await relayReply(upstream, res);
}

/** Listens, and turns node's refusals into the errors `pcd relay` prints. */
async function listen(server: http.Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((e: unknown) => {
    const code = (e as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'EADDRINUSE') throw new PcdError(ErrorCode.Conflict, `${host}:${port} is in use: choose another --port`, { cause: e });
    if (code === 'EACCES') throw new PcdError(ErrorCode.Forbidden, `not allowed to listen on ${host}:${port}: choose another --port`, { cause: e });
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new PcdError(ErrorCode.InvalidField, `cannot listen on ${host}:${port}: this host has no such address (--host)`, { cause: e });
    throw e;
  });
}

/** The HTTP server around `handle`: its timeouts, and every error answered as the API's. */
function relayServer(handle: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>, timeoutMs: number): http.Server {
  const server = http.createServer((req, res) => {
    // As the server's every reply (server/app.ts): no browser guesses another type than the one sent.
    res.setHeader('X-Content-Type-Options', 'nosniff');
    handle(req, res).catch((e: unknown) => {
      sendError(res, e instanceof PcdError ? e : upstreamProblem(e, timeoutMs));
    });
  });
  server.requestTimeout = timeoutMs;
  server.headersTimeout = Math.min(timeoutMs, 20_000);
  server.keepAliveTimeout = 5_000;
  // What node's parser refuses (bad HTTP, headers over 16 KB) is answered and closed, as by the server (server/server.ts).
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const e = new PcdError(ErrorCode.BadRequest, 'not a valid HTTP/1.1 request');
    const body = JSON.stringify(e.toBody());
    socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
  return server;
}

/** Starts a relay (port 0: an ephemeral port) and resolves once it listens. */
export async function startRelay(options: RelayOptions): Promise<RunningRelay> {
  const target = gatewayUrl(options.gateway);
  const gateway: Gateway = {
    target,
    fetch: options.fetch ?? fetch,
    timeoutMs: options.timeoutMs ?? DEFAULT_RELAY_TIMEOUT_MS,
    maxBody: options.maxBodyBytes ?? DEFAULT_RELAY_MAX_BODY,
  };
  const limiter = new IpLimiter(options.ipLimitPerMinute ?? DEFAULT_RELAY_IP_PER_MINUTE, options.now ?? Date.now);

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const wait = limiter.take(req.socket.remoteAddress ?? 'unknown');
    if (wait !== undefined) {
      req.resume();
      throw new PcdError(ErrorCode.RateLimited, `too many requests from this address: ${options.ipLimitPerMinute ?? DEFAULT_RELAY_IP_PER_MINUTE} a minute`, {
        retryAfterSeconds: wait,
      });
    }
    const path = (req.url ?? '/').split('?', 1)[0];
    const keysPath = path === '/' || path === OHTTP_GATEWAY_PATH;
    if (req.method === 'GET' && keysPath) return forwardKeys(gateway, res);
    if (req.method === 'POST' && path === '/') return forwardRequest(gateway, req, res);
    req.resume();
    if (keysPath) {
      res.setHeader('Allow', path === '/' ? 'GET, POST' : 'GET');
      throw new PcdError(ErrorCode.MethodNotAllowed, path === '/' ? 'POST an encapsulated request here, or GET the key configuration' : 'GET the key configuration here');
    }
    throw new PcdError(ErrorCode.NotFound, `this relay answers POST / (message/ohttp-req) and GET ${OHTTP_GATEWAY_PATH}`);
  };

  const server = relayServer(handle, gateway.timeoutMs);
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? DEFAULT_RELAY_PORT;
  await listen(server, host, port);
  const bound = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${bound}`,
    port: bound,
    gateway: target,
    http: server,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      })),
  };
}
