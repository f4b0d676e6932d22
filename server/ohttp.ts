/**
 * The Oblivious HTTP gateway (RFC 9458 §5-6): the server's end of
 * shared/ohttp.ts. A client that does not want the server to learn its
 * address seals its blinded-design requests to this gateway's key and
 * sends them through a relay (relay/relay.ts, or anyone's); the gateway
 * opens them, runs them through the same express app in-process, and seals
 * the answer.
 *
 *   GET  /.well-known/ohttp-gateway   application/ohttp-keys (RFC 9540 §3), cacheable
 *   POST /.well-known/ohttp-gateway   message/ohttp-req -> message/ohttp-res
 *
 * ## What the server sees, and what its logs hold
 *
 * The inner request is dispatched with the OUTER request's address as its
 * own: the relay's. So every row that holds an IP (blinded_eval_log,
 * blinded_bucket_log, the per-IP limit's buckets) holds the relay's address,
 * the same for everybody who uses that relay: it carries nothing that
 * separates one client from another. The server still has to see it, so it
 * can exempt configured relays (`ServerOptions.ohttpRelays`, `pcd serve
 * --ohttp-relay`) from the per-IP limit, which would otherwise throttle all
 * of a relay's clients as one; the relay enforces its own per-IP limit on
 * the addresses only it sees. The per-requester limit (account, or later a
 * token) is untouched: that is what bounds the oracle.
 *
 * ## What it dispatches
 *
 * Only what shared/ohttp.ts RELAYED_REQUESTS lists: the blinded design's
 * config, evaluate and bucket requests and health. Anything else inside a
 * valid encapsulation is answered, encapsulated, with 403 `forbidden`
 * (RFC 9458 §5.2: errors after the encapsulation is removed travel inside
 * it). Only these request headers go in: accept, content-type,
 * authorization (a bearer token, or a Privacy Pass token later: passed
 * through unchanged), if-none-match; in particular no forwarding header, so
 * an inner request cannot name an address. Only these response headers come
 * out: content-type, etag, retry-after, cache-control, www-authenticate.
 *
 * ## Errors
 *
 * A request that cannot be opened (wrong media type, too large, truncated,
 * unknown key id, another suite, a failed AEAD) is a plain 4xx with the
 * usual `{ error: { code, message } }` body (RFC 9458 §5.2, §6): nothing
 * can be encrypted to a client whose request was not read. (For a key
 * problem RFC 9458 §5.3 names a problem type, `ohttp-key`, with the same
 * 400; pcd keeps its one error body.) Everything after that (a malformed
 * binary request, a refused path, the app's own errors) is an encapsulated
 * response with the app's status and coded body.
 *
 * A client that posts to the gateway itself, with no relay, is charged the
 * per-IP limit twice per request (the outer request and the inner one both
 * come from its address); it gains nothing by skipping the relay anyway.
 *
 * ## The key
 *
 * One X25519 key pair per data folder, key id 1, generated on first start
 * into `<dataDir>/ohttp-key.json` (mode 0600, atomic write):
 *
 *   { "version": 1, "keys": [{ "keyId": 1, "privateKey": "<64 hex digits>" }] }
 *
 * Every key listed is published and accepted, so a successor can be added
 * with the next id. On a shared store the keys are the store's instead,
 * wrapped under the master key, the same for every node (server/pg/ohttpkeys.ts). Unlike the OPRF keys it cannot evaluate a number: whoever
 * holds it and the relay's traffic sees blinded elements and bucket ids with
 * the relay's view of client addresses, what the server sees without a relay.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Duplex } from 'node:stream';
import express, { type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { decodeRequest, encodeResponse, fieldValue, type BhttpRequest, type FieldLine } from '../shared/bhttp.ts';
import { CONTENT_TYPE, encodeBody, formatOfAccept } from '../shared/codec.ts';
import { ErrorCode, PcdError, quoteInput } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import {
  MAX_ENCAPSULATED_REQUEST_BYTES,
  OHTTP_GATEWAY_PATH,
  OHTTP_MEDIA,
  decapsulateRequest,
  encapsulateResponse,
  encodeKeyConfigList,
  importGatewayKey,
  isRelayed,
  type GatewayKey,
} from '../shared/ohttp.ts';
import { OHTTP_KEY_FILE } from '../disk/files.ts';
import { writeFileAtomic } from './atomic.ts';
import { readBody } from './app.ts';
import { canonicalIp } from './clientip.ts';

export { OHTTP_KEY_FILE };

/** The key id of the first key a data folder gets. */
export const FIRST_KEY_ID = 1;
/** How long clients and caches may keep the key list. */
const KEYS_MAX_AGE_S = 3600;
/** An inner reply larger than this is refused (the whole reply is sealed at once: RFC 9458 has no streaming). */
export const MAX_INNER_REPLY_BYTES = 64 * 1024 * 1024;
/** How long an inner request may take before the gateway answers 503 for it. */
const DEFAULT_INNER_TIMEOUT_MS = 60_000;

/** Request headers an inner request keeps; everything else (forwarding headers above all) is dropped. */
const INNER_REQUEST_HEADERS = new Set(['accept', 'content-type', 'authorization', 'if-none-match']);
/** Response headers an inner reply keeps. */
const INNER_REPLY_HEADERS = ['content-type', 'etag', 'retry-after', 'cache-control', 'www-authenticate'] as const;

// ------------------------------------------------------------------ relay addresses

/** An address as the server compares it: canonical (server/clientip.ts canonicalIp), as every client IP is. */
export function normalizeAddress(address: string): string {
  return canonicalIp(address) ?? address.trim().toLowerCase();
}

/** The configured relays' addresses, checked once: an entry that is not an IP address is an invalid_field error naming it. */
export function relayAddresses(list: readonly string[]): ReadonlySet<string> {
  const out = new Set<string>();
  for (const raw of list) {
    const a = raw.trim();
    if (net.isIP(a) === 0) throw new PcdError(ErrorCode.InvalidField, `an OHTTP relay is named by its IP address, got ${quoteInput(a)}`);
    out.add(normalizeAddress(a));
  }
  return out;
}

// ------------------------------------------------------------------ the key file

function badKeyFile(file: string, what: string): PcdError {
  return new PcdError(
    ErrorCode.Conflict,
    `${file}: ${what}. Restore it from a backup, or move it away to have a new key generated (clients then fetch the new key configuration)`,
  );
}

interface KeyFileEntry {
  keyId: number;
  privateKey: Uint8Array;
}

function readKeyFile(file: string): KeyFileEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw badKeyFile(file, e instanceof SyntaxError ? 'not valid JSON' : `cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const obj = json as { version?: unknown; keys?: unknown } | null;
  if (typeof obj !== 'object' || obj === null || obj.version !== 1 || !Array.isArray(obj.keys) || obj.keys.length === 0) {
    throw badKeyFile(file, 'expected { "version": 1, "keys": [{ "keyId": 1, "privateKey": "<64 hex digits>" }] }');
  }
  const seen = new Set<number>();
  return obj.keys.map((entry: unknown, i): KeyFileEntry => {
    const e = entry as { keyId?: unknown; privateKey?: unknown } | null;
    const keyId = e?.keyId;
    if (typeof keyId !== 'number' || !Number.isInteger(keyId) || keyId < 0 || keyId > 255) throw badKeyFile(file, `keys[${i}].keyId must be 0..255`);
    if (seen.has(keyId)) throw badKeyFile(file, `key id ${keyId} is listed twice`);
    seen.add(keyId);
    if (typeof e?.privateKey !== 'string' || !/^[0-9a-f]{64}$/i.test(e.privateKey)) throw badKeyFile(file, `keys[${i}].privateKey (key ${keyId}) must be 64 hex digits`);
    return { keyId, privateKey: new Uint8Array(Buffer.from(e.privateKey, 'hex')) };
  });
}

/**
 * The gateway's keys: read from the data folder's key file, or a first key
 * generated into it. Called under the folder's lock (server/server.ts).
 */
export async function loadGatewayKeys(dataDir: string, logger?: Logger): Promise<GatewayKey[]> {
  const file = path.join(dataDir, OHTTP_KEY_FILE);
  let entries: KeyFileEntry[];
  if (fs.existsSync(file)) {
    if ((fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600); // the folder lock tightens too; this file holds a private key
    entries = readKeyFile(file);
  } else {
    const privateKey = new Uint8Array(crypto.randomBytes(32));
    const json = JSON.stringify({ version: 1, keys: [{ keyId: FIRST_KEY_ID, privateKey: Buffer.from(privateKey).toString('hex') }] }, null, 2) + '\n';
    writeFileAtomic(file, json);
    logger?.info({ file, keyId: FIRST_KEY_ID }, 'OHTTP gateway key generated');
    entries = [{ keyId: FIRST_KEY_ID, privateKey }];
  }
  return importKeys(entries);
}

/** Gateway keys from ids and private key bytes, which are zeroed afterwards. */
async function importKeys(entries: { keyId: number; privateKey: Uint8Array }[]): Promise<GatewayKey[]> {
  try {
    return await Promise.all(entries.map((e) => importGatewayKey(e.keyId, e.privateKey)));
  } finally {
    for (const e of entries) e.privateKey.fill(0);
  }
}

// ------------------------------------------------------------------ in-process dispatch

/** What the app answered an inner request. */
export interface InnerReply {
  status: number;
  headers: FieldLine[];
  body: Uint8Array;
}

export type Dispatch = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * Runs one request through the express app without a socket: a real
 * IncomingMessage and ServerResponse over an in-memory stream whose
 * `remoteAddress` is the given address, so the app's whole pipeline
 * (per-IP limit, authentication, admission, body limits, schemas, logs)
 * runs as for a request from that address. The reply is written without
 * chunking and the connection "closed", so the bytes after the head are
 * exactly the body.
 */
export function dispatchInProcess(
  dispatch: Dispatch,
  request: { method: string; path: string; headers: Record<string, string>; body: Uint8Array; remoteAddress: string },
  options: { maxReplyBytes?: number; timeoutMs?: number } = {},
): Promise<InnerReply> {
  const maxReply = options.maxReplyBytes ?? MAX_INNER_REPLY_BYTES;
  return new Promise<InnerReply>((resolve, reject) => {
    const out: Buffer[] = [];
    let size = 0;
    let overflow = false;
    const socket = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        if (size > maxReply + 64 * 1024) overflow = true; // the head is a few hundred bytes; the body is checked exactly below
        else out.push(Buffer.from(chunk));
        callback();
      },
    });
    Object.defineProperty(socket, 'remoteAddress', { value: request.remoteAddress });

    const req = new http.IncomingMessage(socket as unknown as net.Socket);
    req.method = request.method;
    req.url = request.path;
    req.httpVersionMajor = 1;
    req.httpVersionMinor = 1;
    req.httpVersion = '1.1';
    const headers: Record<string, string> = { ...request.headers, host: 'ohttp-gateway', connection: 'close' };
    if (request.body.length > 0 || request.method === 'POST') headers['content-length'] = String(request.body.length);
    req.headers = headers;
    req.rawHeaders = Object.entries(headers).flat();
    if (request.body.length > 0) req.push(Buffer.from(request.body));
    req.push(null);
    req.complete = true;

    const res = new http.ServerResponse(req);
    res.shouldKeepAlive = false;
    res.useChunkedEncodingByDefault = false;
    res.assignSocket(socket as unknown as net.Socket);

    const timer = setTimeout(() => {
      socket.destroy();
      reject(new PcdError(ErrorCode.Unavailable, 'the request took too long inside the gateway: retry later', { retryAfterSeconds: 5 }));
    }, options.timeoutMs ?? DEFAULT_INNER_TIMEOUT_MS);
    timer.unref();

    res.on('finish', () => {
      clearTimeout(timer);
      const all = Buffer.concat(out);
      const headEnd = all.indexOf('\r\n\r\n');
      const body = headEnd < 0 ? new Uint8Array(0) : new Uint8Array(all.subarray(headEnd + 4));
      if (overflow || body.length > maxReply) {
        reject(new PcdError(ErrorCode.Internal, `the reply exceeds the gateway's limit of ${maxReply} bytes for an encapsulated reply`));
        return;
      }
      if (res.chunkedEncoding) {
        reject(new Error('in-process dispatch: the app wrote a chunked reply'));
        return;
      }
      const kept: FieldLine[] = [];
      for (const name of INNER_REPLY_HEADERS) {
        const v = res.getHeader(name);
        if (v !== undefined) kept.push([name, Array.isArray(v) ? v.join(', ') : String(v)]);
      }
      resolve({ status: res.statusCode, headers: kept, body });
    });
    res.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    dispatch(req, res);
  });
}

// ------------------------------------------------------------------ the gateway's endpoints

/** A coded error as an inner reply, in the format the inner request accepts (MessagePack by default, as the API's). */
function innerError(e: PcdError, accept: string | undefined): InnerReply {
  const format = formatOfAccept(accept, 'msgpack') ?? 'json';
  const headers: FieldLine[] = [
    ['content-type', CONTENT_TYPE[format]],
    ['cache-control', 'no-store'],
  ];
  if (e.status === 429 || e.status === 503) headers.push(['retry-after', String(e.retryAfterSeconds ?? 1)]);
  return { status: e.status, headers, body: encodeBody(e.toBody(), format) };
}

export interface GatewayOptions {
  keys: readonly GatewayKey[];
  /** The app inner requests run through (server/app.ts createApp's result). */
  dispatch: Dispatch;
  logger?: Logger;
  innerTimeoutMs?: number;
}

export interface Gateway {
  /** Mounted by createApp (AppDeps.gateway) after the draining and per-IP checks, before the API routes. */
  readonly router: express.Router;
  /** The application/ohttp-keys body the gateway publishes. */
  readonly keyList: Uint8Array;
  /** Encapsulated requests answered (opened and dispatched), for tests and the operator. */
  readonly stats: { requests: number; refused: number };
}

export function createGateway(options: GatewayOptions): Gateway {
  const keyList = encodeKeyConfigList(options.keys.map((k) => k.config));
  const stats = { requests: 0, refused: 0 };
  const router = express.Router();
  const tooLarge = (): PcdError => new PcdError(ErrorCode.BodyTooLarge, `an encapsulated request is at most ${MAX_ENCAPSULATED_REQUEST_BYTES} bytes`);

  router.get(OHTTP_GATEWAY_PATH, (_req, res) => {
    res.status(200).type(OHTTP_MEDIA.keys).setHeader('Cache-Control', `public, max-age=${KEYS_MAX_AGE_S}`);
    res.send(Buffer.from(keyList));
  });

  router.post(OHTTP_GATEWAY_PATH, async (req: Request, res: Response) => {
    const type = (req.headers['content-type'] ?? '').split(';', 1)[0]?.trim().toLowerCase();
    // RFC 9458 §5: the request's media type is message/ohttp-req.
    if (type !== OHTTP_MEDIA.request) {
      stats.refused++;
      throw new PcdError(ErrorCode.UnsupportedMediaType, `Content-Type must be ${OHTTP_MEDIA.request}, got ${req.headers['content-type'] === undefined ? 'none' : quoteInput(req.headers['content-type'])}`);
    }
    const body = await readBody(req, MAX_ENCAPSULATED_REQUEST_BYTES, tooLarge); // stops at the limit: the rest is never read (server/app.ts)
    let opened;
    try {
      opened = await decapsulateRequest(options.keys, body);
    } catch (e) {
      stats.refused++;
      throw e; // RFC 9458 §5.2: not encapsulated; the app's error middleware answers 400 with a coded body
    }
    stats.requests++;

    let reply: InnerReply;
    let accept: string | undefined;
    try {
      const inner: BhttpRequest = decodeRequest(opened.request, {
        code: ErrorCode.BadRequest,
        limits: { maxContentBytes: LIMITS.maxBodyBytes, maxMessageBytes: MAX_ENCAPSULATED_REQUEST_BYTES },
      });
      accept = fieldValue(inner.headers, 'accept');
      if (!isRelayed(inner.method, inner.path)) {
        throw new PcdError(
          ErrorCode.Forbidden,
          `this gateway forwards only the blinded design's config, evaluate and bucket requests and health; ${inner.method} ${inner.path.slice(0, 80)} goes to the server directly`,
        );
      }
      const headers: Record<string, string> = {};
      for (const [name, value] of inner.headers) if (INNER_REQUEST_HEADERS.has(name) && !(name in headers)) headers[name] = value;
      reply = await dispatchInProcess(
        options.dispatch,
        { method: inner.method, path: inner.path, headers, body: inner.content, remoteAddress: req.ip ?? 'unknown' }, // req.ip is clientIp (server/app.ts)
        { timeoutMs: options.innerTimeoutMs },
      );
    } catch (e) {
      if (!(e instanceof PcdError)) throw e;
      reply = innerError(e, accept);
    }
    const sealed = await encapsulateResponse(opened.context, encodeResponse({ status: reply.status, headers: reply.headers, content: reply.body }));
    res.status(200).setHeader('Cache-Control', 'no-store');
    res.type(OHTTP_MEDIA.response).send(Buffer.from(sealed));
  });

  router.all(OHTTP_GATEWAY_PATH, (_req, res) => {
    res.setHeader('Allow', 'GET, POST');
    throw new PcdError(ErrorCode.MethodNotAllowed, 'use GET (the key configuration) or POST (an encapsulated request) on this path');
  });

  options.logger?.debug({ keys: options.keys.map((k) => k.config.keyId) }, 'OHTTP gateway ready');
  return { router, keyList, stats };
}

/** The gateway of a data folder: its keys loaded or generated, its router built around `dispatch`. */
export async function openGateway(options: {
  dataDir: string;
  dispatch: Dispatch;
  logger?: Logger;
  innerTimeoutMs?: number;
  /** The keys from elsewhere than the data folder's file (a shared store's, server/pg/ohttpkeys.ts); zeroed once imported. */
  keys?: () => Promise<{ keyId: number; privateKey: Uint8Array }[]>;
}): Promise<Gateway> {
  const keys = options.keys ? await importKeys(await options.keys()) : await loadGatewayKeys(options.dataDir, options.logger);
  return createGateway({ keys, dispatch: options.dispatch, logger: options.logger, innerTimeoutMs: options.innerTimeoutMs });
}
