/**
 * One HTTP exchange with a pcd server: encodes the body (MessagePack by
 * default, JSON on request), sends the requester token, bounds and decodes
 * the reply, checks it against the caller's schema, and turns an error body
 * back into the same typed PcdError the server threw (with the server's
 * Retry-After, for a 429 or 503).
 *
 * A server base URL goes through {@link normalizeServerUrl} once, here:
 * `127.0.0.1:8787` gets `http://`, and anything that is still not an http(s)
 * URL is one clear PcdError before any request is made.
 */
import { CONTENT_TYPE, decodeBody, encodeBody, formatOfContentType } from '../shared/codec.ts';
import type { RequestOptions, Transport, TransportReply } from '../shared/design.ts';
import { ErrorCode, PcdError, errorFromBody } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { parseReply, type Format } from '../shared/schema.ts';

export interface TransportOptions {
  baseUrl: string;
  /** Requester token (Authorization: Bearer). */
  token?: string;
  format?: Format;
  /** Per-request timeout in ms (default 60 s). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * The one way from what a user typed as a server to a base URL: surrounding
 * whitespace dropped, `http://` added when there is no scheme, trailing
 * slashes removed. Only http and https are accepted, without credentials,
 * query or fragment; anything else is an `invalid_field` PcdError (which
 * never repeats credentials that were in the URL).
 */
export function normalizeServerUrl(input: string): string {
  const text = typeof input === 'string' ? input.trim() : '';
  const shown = /[@\s\p{Cc}]/u.test(text) || text.length > 200 ? 'the server URL' : `server URL '${text}'`;
  const bad = (why: string): never => {
    throw new PcdError(ErrorCode.InvalidField, `${shown} is not valid: ${why} (expected e.g. http://127.0.0.1:8787)`);
  };
  if (text === '') bad('it is empty');
  // A scheme is letters followed by "://"; "localhost:8787" has none (URL would read "localhost:" as one).
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return bad('it is not a URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') bad(`the scheme is ${url.protocol.slice(0, -1).slice(0, 20)}, only http and https are spoken`);
  if (url.hostname === '') bad('it names no host');
  if (url.username !== '' || url.password !== '') bad('it holds credentials: pass the token with --token or PCD_TOKEN');
  if (url.search !== '' || url.hash !== '') bad('it has a query or fragment');
  return (url.origin + url.pathname).replace(/\/+$/, '');
}

/** Retry-After in seconds (delta-seconds or an HTTP date), undefined when absent or unreadable. */
export function parseRetryAfter(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null) return undefined;
  const h = header.trim();
  if (/^\d{1,9}$/.test(h)) return Number(h);
  const at = Date.parse(h);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** What went wrong under fetch, in one line: undici puts the socket error in `cause`. */
function networkProblem(e: unknown): string {
  const cause = (e as { cause?: unknown })?.cause;
  const inner = cause instanceof Error ? cause : e instanceof Error ? e : undefined;
  const code = (inner as NodeJS.ErrnoException | undefined)?.code;
  const hint =
    code === 'ECONNREFUSED' ? 'connection refused, ECONNREFUSED (is the server running? pcd serve starts one)'
    : code === 'ENOTFOUND' || code === 'EAI_AGAIN' ? `the host name does not resolve, ${code}`
    : code === 'ECONNRESET' ? 'the connection was reset, ECONNRESET'
    : undefined;
  const text = hint ?? inner?.message ?? String(e);
  return text.replace(/\s+/g, ' ').slice(0, 200);
}

async function readBounded(res: Response, max: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > max) throw new PcdError(ErrorCode.MalformedReply, `reply of ${declared} bytes exceeds the client limit of ${max}`);
  const buf = new Uint8Array(await res.arrayBuffer());
  if (buf.length > max) throw new PcdError(ErrorCode.MalformedReply, `reply of ${buf.length} bytes exceeds the client limit of ${max}`);
  return buf;
}

export function createTransport(options: TransportOptions): Transport {
  const base = normalizeServerUrl(options.baseUrl);
  const format = options.format ?? 'msgpack';
  const doFetch = options.fetch ?? fetch;
  return {
    async request<T>(req: RequestOptions<T>): Promise<TransportReply<T>> {
      const headers: Record<string, string> = { accept: CONTENT_TYPE[format] };
      const auth = req.auth ?? req.method !== 'GET';
      if (req.authorization !== undefined) headers.authorization = req.authorization;
      else if (auth) {
        if (!options.token) throw new PcdError(ErrorCode.Unauthenticated, 'this request needs a requester token and the client has none');
        headers.authorization = `Bearer ${options.token}`;
      }
      let payload: Uint8Array | undefined;
      if (req.body !== undefined) {
        payload = encodeBody(req.body, format);
        headers['content-type'] = CONTENT_TYPE[format];
      }
      if (req.ifNoneMatch) headers['if-none-match'] = req.ifNoneMatch;
      const signal = req.signal
        ? AbortSignal.any([req.signal, AbortSignal.timeout(options.timeoutMs ?? 60_000)])
        : AbortSignal.timeout(options.timeoutMs ?? 60_000);
      let res: Response | undefined;
      // A GET is idempotent: when a kept-alive connection was closed under it
      // (by the server's keep-alive timeout, a proxy or a CDN), try once more.
      for (let attempt = 0; !res; attempt++) {
        try {
          // The DOM typings want an ArrayBuffer-backed view; encodeBody's always is.
          res = await doFetch(base + req.path, { method: req.method, headers, body: payload as Uint8Array<ArrayBuffer> | undefined, signal });
        } catch (e) {
          if (e instanceof PcdError) throw e; // a fetch of pcd's own (client/ohttp.ts) already says what went wrong, e.g. view_changed
          if (req.signal?.aborted) throw e;
          if (signal.aborted) throw new PcdError(ErrorCode.Network, `${req.method} ${req.path} timed out after ${options.timeoutMs ?? 60_000} ms`, { cause: e });
          if (req.method === 'GET' && attempt === 0) continue;
          throw new PcdError(ErrorCode.Network, `cannot reach ${base}: ${networkProblem(e)}`, { cause: e });
        }
      }
      const raw = await readBounded(res, LIMITS.maxReplyBytes);
      const etag = res.headers.get('etag') ?? undefined;
      const retryAfterSeconds = parseRetryAfter(res.headers.get('retry-after'));
      const sent = payload?.length ?? 0;
      if (res.status === 304) return { status: 304, body: undefined, etag, bytesSent: sent, bytesReceived: raw.length };
      const replyFormat = formatOfContentType(res.headers.get('content-type') ?? undefined);
      let decoded: unknown;
      if (raw.length > 0) {
        if (!replyFormat) {
          if (!res.ok) {
            throw new PcdError(ErrorCode.MalformedReply, `server answered HTTP ${res.status} with ${res.headers.get('content-type') ?? 'no content type'}`, {
              status: res.status,
              retryAfterSeconds,
            });
          }
          throw new PcdError(ErrorCode.MalformedReply, `reply has content type ${res.headers.get('content-type') ?? 'none'}, expected ${CONTENT_TYPE[format]}`);
        }
        try {
          decoded = decodeBody(raw, replyFormat);
        } catch (e) {
          throw new PcdError(ErrorCode.MalformedReply, `reply body (HTTP ${res.status}) is not valid ${replyFormat}`, { cause: e, status: res.status });
        }
      }
      if (!res.ok) {
        const e = errorFromBody(res.status, decoded);
        throw retryAfterSeconds === undefined ? e : new PcdError(e.code, e.message, { status: e.status, retryAfterSeconds });
      }
      return { status: res.status, body: parseReply(req.reply, decoded, replyFormat ?? format), etag, bytesSent: sent, bytesReceived: raw.length };
    },
  };
}

/** A transport that counts requests and bytes, for the sync summary. */
export function countingTransport(inner: Transport): { transport: Transport; stats: { requests: number; sent: number; received: number } } {
  const stats = { requests: 0, sent: 0, received: 0 };
  const transport: Transport = {
    async request<T>(o: RequestOptions<T>) {
      const r = await inner.request(o);
      stats.requests++;
      stats.sent += r.bytesSent;
      stats.received += r.bytesReceived;
      return r;
    },
  };
  return { transport, stats };
}
