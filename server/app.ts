/**
 * The express 5 app, built by a factory that never listens by itself.
 *
 * Every route, core or design, is a `Route` (shared/design.ts) and goes
 * through the same pipeline here, so no design repeats it:
 *   authentication (admin or requester token) -> content type -> load
 *   admission from the headers alone (Route.admit, before any body byte is
 *   read) -> bounded body read -> decode -> strict schema -> rate limit
 *   -> handler -> encode in the request's format (or Accept) -> one error
 *   middleware that turns every failure into `{ error: { code, message } }`
 *   with the status of its code.
 *
 * The server's own log (pino) records method, route pattern, status and
 * time only: never a path parameter value, a body, a token or an IP.
 *
 * Every reply carries `X-Content-Type-Options: nosniff`, and an error
 * message quotes a client's input only through shared/errors.ts quoteInput
 * (bounded, escaped). A request whose body is refused or left unread (a 413,
 * an error before the body was read) is answered with `Connection: close`
 * and its socket destroyed once the reply is flushed: the rest of an upload
 * is never read and discarded (docs/operations.md, "Connections and
 * timeouts"). `req.ip` is server/clientip.ts clientIp, for every reader.
 */
import crypto from 'node:crypto';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import { decodeBody, encodeBody, formatOfAccept, formatOfContentType, CONTENT_TYPE } from '../shared/codec.ts';
import type { Requester, Route } from '../shared/design.ts';
import { ErrorCode, PcdError, quoteInput } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { MAX_ENCAPSULATED_REQUEST_BYTES, OHTTP_GATEWAY_PATH } from '../shared/ohttp.ts';
import type { DesignName } from '../shared/messages.ts';
import { DESIGNS } from '../shared/messages.ts';
import { parseRequest, type Format } from '../shared/schema.ts';
import { clientIp, compileTrust, type TrustedProxies } from './clientip.ts';
import type { RateLimiter } from './ratelimit.ts';
import { storeErrorToPcdError } from './store.ts';

export interface AppDeps {
  routes: readonly Route<any, any>[];
  /** Designs this server serves; paths of the others answer design_disabled. */
  designs: readonly DesignName[];
  /** The requester of a bearer token (SQLite answers at once; a shared Postgres store asynchronously). */
  authenticate: (token: string) => Requester | undefined | Promise<Requester | undefined>;
  adminToken: string;
  rateLimiter?: RateLimiter;
  /** Proxies whose X-Forwarded-For is believed (server/clientip.ts parseTrustProxy); none by default. */
  trustProxy?: TrustedProxies;
  logger: Logger;
  /** True once the server is shutting down: new requests get 503 and every reply closes its connection. */
  draining?: () => boolean;
  /** Mounted after the API routes, before the 404: the web page (web/server.ts). */
  extra?: express.Router;
  // ---- OHTTP gateway (server/ohttp.ts) ----
  /** Mounted after the draining and per-IP checks, before the API routes: GET and POST /.well-known/ohttp-gateway. */
  gateway?: express.Router;
  /** Addresses the per-IP limit does not apply to: the configured OHTTP relays (ServerOptions.ohttpRelays), which speak for many clients. */
  ipLimitExempt?: (ip: string) => boolean;
  // ---- end OHTTP gateway ----
}

/** The bearer token of a request; undefined when the header is absent or malformed. */
export function bearer(req: Request): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  // The scheme is case-insensitive (RFC 9110 §11.1); the token is RFC 6750's b64token.
  const m = /^bearer +([A-Za-z0-9._~+/=-]{1,256}) *$/i.exec(h);
  return m?.[1];
}

/** The declared body size, when the header holds a plain decimal length. */
function contentLength(req: Request): number | undefined {
  const h = req.headers['content-length'];
  return h !== undefined && /^\d{1,15}$/.test(h) ? Number(h) : undefined;
}

function sameSecret(a: string, b: string): boolean {
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb);
}

/** The reply's format: what Accept asks for, else the request's (default MessagePack); 406 when neither can be. */
export function replyFormat(req: Request, requestFormat: Format | undefined): Format {
  const f = formatOfAccept(req.headers.accept, requestFormat ?? 'msgpack');
  if (!f) throw new PcdError(ErrorCode.NotAcceptable, `cannot answer in ${quoteInput(req.headers.accept)}: pcd speaks ${CONTENT_TYPE.msgpack} and ${CONTENT_TYPE.json}`);
  return f;
}

/**
 * Reads a request body of at most `limit` bytes. Past the limit it stops at
 * once (413 `body_too_large`): the stream is paused and the rest never read,
 * where express.raw (body-parser) would read and discard the whole upload
 * before answering. The error middleware then closes the connection. A
 * Content-Encoding other than identity is refused (415) before a byte is read.
 */
export function readBody(req: Request, limit: number, tooLarge: () => PcdError): Promise<Uint8Array> {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') {
    return Promise.reject(new PcdError(ErrorCode.UnsupportedMediaType, `Content-Encoding ${quoteInput(encoding)} is not supported: send the body as is`));
  }
  const declared = contentLength(req);
  if (declared !== undefined && declared > limit) return Promise.reject(tooLarge());
  return new Promise<Uint8Array>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const fail = (e: PcdError): void => {
      cleanup();
      req.pause();
      reject(e);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) return fail(tooLarge());
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(new Uint8Array(Buffer.concat(chunks, size)));
    };
    const onError = (): void => fail(new PcdError(ErrorCode.BadRequest, 'request aborted'));
    const onClose = (): void => {
      if (!req.complete) fail(new PcdError(ErrorCode.BadRequest, 'request aborted'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
    if (req.readableEnded) onEnd();
  });
}

export function send(res: Response, status: number, body: unknown, format: Format): void {
  res.status(status).type(CONTENT_TYPE[format]).send(Buffer.from(encodeBody(body, format)));
}

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag'); // routes set their own ETags
  // One answer to "who is asking" (server/clientip.ts): express's req.ip is replaced, so every reader of it gets clientIp.
  const trusted = compileTrust(deps.trustProxy ?? []);
  app.set('trust proxy', deps.trustProxy && deps.trustProxy.length > 0 ? [...deps.trustProxy] : false);
  Object.defineProperty(app.request, 'ip', {
    configurable: true,
    enumerable: true,
    get(this: Request): string {
      return clientIp(this, trusted);
    },
  });

  app.use(requestGuard(deps.logger));
  // Before routing, so unknown paths and failed authentication count too.
  app.use(admission(deps, trusted));

  if (deps.gateway) app.use(deps.gateway); // OHTTP gateway (server/ohttp.ts): its own body reading, before the API routes

  const byPath = new Map<string, Set<string>>();
  for (const r of deps.routes) {
    const methods = byPath.get(r.path) ?? new Set<string>();
    methods.add(r.method);
    byPath.set(r.path, methods);
    const m = r.method.toLowerCase() as 'get' | 'post' | 'delete';
    app[m](r.path, pipeline(r, deps, trusted));
  }

  // Known path, wrong method: 405 with the allowed ones.
  for (const [p, methods] of byPath) {
    app.all(p, (_req, res) => {
      res.setHeader('Allow', [...methods].join(', '));
      throw new PcdError(ErrorCode.MethodNotAllowed, `use ${[...methods].join(' or ')} on this path`);
    });
  }

  for (const d of DESIGNS) {
    if (deps.designs.includes(d)) continue;
    app.all(`/v1/${d}/{*rest}`, () => {
      throw new PcdError(ErrorCode.DesignDisabled, `this server does not serve the ${d} design (it serves ${deps.designs.join(', ') || 'none'})`);
    });
  }

  if (deps.extra) app.use(deps.extra);

  app.use(() => {
    throw new PcdError(ErrorCode.NotFound, 'no such endpoint');
  });

  app.use(errorMiddleware(deps.logger));
  return app;
}

const tooLarge = (): PcdError => new PcdError(ErrorCode.BodyTooLarge, `body is larger than ${LIMITS.maxBodyBytes} bytes`);

/** Every request: nosniff on its reply, a body announced too large refused before a byte is read, and its method, route, status and time logged. */
function requestGuard(logger: Logger): express.RequestHandler {
  return (req, res, next) => {
    res.setHeader('X-Content-Type-Options', 'nosniff'); // every reply, errors and 404s included: no body is ever sniffed into markup
    // A body announced larger than any endpoint reads is refused before a byte of it is read.
    const declared = contentLength(req);
    const max = req.path === OHTTP_GATEWAY_PATH ? MAX_ENCAPSULATED_REQUEST_BYTES : LIMITS.maxBodyBytes;
    if (declared !== undefined && declared > max) throw new PcdError(ErrorCode.BodyTooLarge, `a body of ${declared} bytes is larger than the ${max} bytes this endpoint reads`);
    const start = process.hrtime.bigint();
    res.on('finish', () => {
      logger.debug(
        {
          method: req.method,
          route: (req.route as { path?: string } | undefined)?.path ?? 'unmatched',
          status: res.statusCode,
          ms: Number(process.hrtime.bigint() - start) / 1e6,
        },
        'request',
      );
    });
    next();
  };
}

/** A draining server's 503, and the per-IP limit (a configured OHTTP relay's address exempt). */
function admission(deps: AppDeps, trusted: (ip: string) => boolean): express.RequestHandler {
  return (req, res, next) => {
    if (deps.draining?.()) {
      res.setHeader('Connection', 'close');
      throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down: retry in a moment', { retryAfterSeconds: 5 });
    }
    // OHTTP: a configured relay's address is exempt, for the outer request and for the inner one, which carries it (server/ohttp.ts).
    const ip = clientIp(req, trusted);
    if (!deps.ipLimitExempt?.(ip)) deps.rateLimiter?.takeIp(ip);
    next();
  };
}

/** Who asks: none for 'anyone' and 'token' routes, else the bearer token checked as the admin's or a requester's. */
async function authenticated(r: Route<any, any>, req: Request, deps: AppDeps): Promise<Requester | undefined> {
  if (r.auth === 'anyone' || r.auth === 'token') return undefined;
  const token = bearer(req);
  if (!token) {
    throw new PcdError(ErrorCode.Unauthenticated, `missing or malformed 'Authorization: Bearer <token>' header`);
  }
  if (r.auth === 'admin') {
    if (!sameSecret(token, deps.adminToken)) throw new PcdError(ErrorCode.Forbidden, 'the admin token is wrong');
    return undefined;
  }
  const requester = await deps.authenticate(token);
  if (!requester) throw new PcdError(ErrorCode.Unauthenticated, 'the requester token is unknown or revoked');
  return requester;
}

/** The pipeline one route's requests go through (module header), its handler last. */
function pipeline(r: Route<any, any>, deps: AppDeps, trusted: (ip: string) => boolean): (req: Request, res: Response) => Promise<void> {
  return async (req, res) => {
    // A Privacy Pass token (RFC 9577): checked from the header alone, before anything else is read.
    const payment = r.auth === 'token' ? await r.checkToken(req.headers.authorization, contentLength(req)) : undefined;
    const requester = await authenticated(r, req, deps);

    const ip = clientIp(req, trusted);
    let format: Format | undefined;
    let body: unknown;
    if (r.request) {
      format = formatOfContentType(req.headers['content-type']);
      if (!format) {
        throw new PcdError(
          ErrorCode.UnsupportedMediaType,
          `Content-Type must be ${CONTENT_TYPE.msgpack} or ${CONTENT_TYPE.json}, got ${req.headers['content-type'] === undefined ? 'none' : quoteInput(req.headers['content-type'])}`,
        );
      }
      // Load admission from the headers alone: a refused request costs no body read or decode.
      if (requester && r.auth === 'requester' && r.admit) r.admit({ requester, contentLength: contentLength(req), ip });
      if (r.auth === 'token' && r.admit) r.admit({ contentLength: contentLength(req), ip });
      const raw = await readBody(req, LIMITS.maxBodyBytes, tooLarge);
      body = parseRequest(r.request, decodeBody(raw, format), format);
    }
    const out = replyFormat(req, format);

    // Charged before the handler (concurrent requests cannot overdraw), given back when it refuses.
    const limiter = deps.rateLimiter;
    const charge = requester && r.auth === 'requester' && r.cost && limiter ? limiter.take(requester.accountId, r.cost(body)) : undefined;
    // The token's class against the body, then the spend (token_replayed when spent before); given back when the handler refuses.
    const unspend = payment ? await payment.spend(body) : undefined;
    let reply;
    try {
      const input = { body, params: req.params as Record<string, string>, ip, ifNoneMatch: req.headers['if-none-match'] };
      if (r.auth !== 'requester') reply = await r.handle({ ...input, requester: undefined });
      else if (requester) reply = await r.handle({ ...input, requester });
      else throw new Error(`route ${r.method} ${r.path}: a requester route reached its handler unauthenticated`);
    } catch (e) {
      if (charge) limiter?.refund(charge);
      // Awaited, so a client that tries again at once finds its token given back; a failed refund is logged, and the refusal stands.
      if (unspend) {
        try {
          await unspend();
        } catch (err) {
          deps.logger.error({ path: r.path, err: err instanceof Error ? err.message : String(err) }, "a refused request's token could not be given back");
        }
      }
      throw e;
    }
    if (deps.draining?.()) res.setHeader('Connection', 'close');
    if (reply.etag) res.setHeader('ETag', reply.etag);
    if (reply.cacheControl) res.setHeader('Cache-Control', reply.cacheControl);
    else res.setHeader('Cache-Control', 'no-store');
    if (reply.body === undefined) {
      res.status(reply.status ?? 204).end();
      return;
    }
    send(res, reply.status ?? 200, reply.body, out);
  };
}

/** The one error middleware: every failure as `{ error: { code, message } }` with its code's status, in the request's format. */
function errorMiddleware(logger: Logger): express.ErrorRequestHandler {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const e = toPcdError(err, req);
    if (e.code === ErrorCode.Internal) logger.error({ err: err instanceof Error ? err.message : String(err) }, 'internal error');
    let format: Format = 'msgpack';
    try {
      format = formatOfAccept(req.headers.accept, formatOfContentType(req.headers['content-type']) ?? 'json') ?? 'json';
    } catch {
      format = 'json';
    }
    if (res.headersSent) return;
    res.setHeader('Cache-Control', 'no-store');
    // A body not read to its end (refused as too large, or not read before the refusal) is never read and discarded:
    // the connection closes once the reply is flushed (node's server ends and destroys a `Connection: close` socket).
    if (!req.complete) {
      res.setHeader('Connection', 'close');
      res.once('finish', () => setImmediate(() => req.socket.destroy()));
    }
    // A refusal for load or limits always says when to come back (docs/protocol.md).
    if (e.status === 429 || e.status === 503) res.setHeader('Retry-After', String(e.retryAfterSeconds ?? 1));
    if (e.wwwAuthenticate !== undefined) res.setHeader('WWW-Authenticate', e.wwwAuthenticate);
    send(res, e.status, e.toBody(), format);
  };
}

function toPcdError(err: unknown, req: Request): PcdError {
  if (err instanceof PcdError) return err;
  // Disk full, I/O errors, a locked database: 503 with Retry-After, never a 500 (server/store.ts).
  const stored = storeErrorToPcdError(err);
  if (stored) return stored;
  const e = err as { type?: string; status?: number; message?: string };
  if (e?.type === 'entity.too.large') {
    return new PcdError(ErrorCode.BodyTooLarge, `body is larger than ${LIMITS.maxBodyBytes} bytes`);
  }
  if (e?.type === 'request.aborted') return new PcdError(ErrorCode.BadRequest, 'request aborted');
  if (e?.type === 'request.size.invalid') return new PcdError(ErrorCode.BadRequest, 'body length does not match Content-Length');
  // body-parser's own messages quote the header: ours quote it bounded and escaped.
  if (e?.type === 'encoding.unsupported') {
    return new PcdError(ErrorCode.UnsupportedMediaType, `Content-Encoding ${quoteInput(req.headers['content-encoding'])} is not supported: send the body as is`);
  }
  if (e?.type === 'charset.unsupported') return new PcdError(ErrorCode.UnsupportedMediaType, `the charset of Content-Type ${quoteInput(req.headers['content-type'])} is not supported`);
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new PcdError(ErrorCode.BadRequest, `bad request (${quoteInput(e.type ?? e.message ?? 'unknown')})`);
  return new PcdError(ErrorCode.Internal, 'internal error');
}
