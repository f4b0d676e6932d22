/**
 * One HTTP exchange with a pcd server: encodes the body (MessagePack by
 * default, JSON on request), sends the requester token, bounds and decodes
 * the reply, checks it against the caller's schema, and turns an error body
 * back into the same typed PcdError the server threw.
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

async function readBounded(res: Response, max: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > max) throw new PcdError(ErrorCode.MalformedReply, `reply of ${declared} bytes exceeds the client limit of ${max}`);
  const buf = new Uint8Array(await res.arrayBuffer());
  if (buf.length > max) throw new PcdError(ErrorCode.MalformedReply, `reply of ${buf.length} bytes exceeds the client limit of ${max}`);
  return buf;
}

export function createTransport(options: TransportOptions): Transport {
  const base = options.baseUrl.replace(/\/+$/, '');
  const format = options.format ?? 'msgpack';
  const doFetch = options.fetch ?? fetch;
  return {
    async request<T>(req: RequestOptions<T>): Promise<TransportReply<T>> {
      const headers: Record<string, string> = { accept: CONTENT_TYPE[format] };
      const auth = req.auth ?? req.method !== 'GET';
      if (auth) {
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
          res = await doFetch(base + req.path, { method: req.method, headers, body: payload, signal });
        } catch (e) {
          if (req.signal?.aborted) throw e;
          if (signal.aborted) throw new PcdError(ErrorCode.Network, `${req.method} ${req.path} timed out after ${options.timeoutMs ?? 60_000} ms`, { cause: e });
          if (req.method === 'GET' && attempt === 0) continue;
          throw new PcdError(ErrorCode.Network, `cannot reach ${base}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}`, { cause: e });
        }
      }
      const raw = await readBounded(res, LIMITS.maxReplyBytes);
      const etag = res.headers.get('etag') ?? undefined;
      const sent = payload?.length ?? 0;
      if (res.status === 304) return { status: 304, body: undefined, etag, bytesSent: sent, bytesReceived: raw.length };
      const replyFormat = formatOfContentType(res.headers.get('content-type') ?? undefined);
      let decoded: unknown;
      if (raw.length > 0) {
        if (!replyFormat) {
          if (!res.ok) throw new PcdError(ErrorCode.MalformedReply, `server answered HTTP ${res.status} with ${res.headers.get('content-type') ?? 'no content type'}`, { status: res.status });
          throw new PcdError(ErrorCode.MalformedReply, `reply has content type ${res.headers.get('content-type') ?? 'none'}, expected ${CONTENT_TYPE[format]}`);
        }
        try {
          decoded = decodeBody(raw, replyFormat);
        } catch (e) {
          throw new PcdError(ErrorCode.MalformedReply, `reply body (HTTP ${res.status}) is not valid ${replyFormat}`, { cause: e, status: res.status });
        }
      }
      if (!res.ok) throw errorFromBody(res.status, decoded);
      return { status: res.status, body: parseReply(req.reply, decoded, replyFormat ?? format), etag, bytesSent: sent, bytesReceived: raw.length };
    },
  };
}
