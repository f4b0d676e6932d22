/**
 * The one codec for bodies: MessagePack (msgpackr, the default) and JSON, with
 * byte fields as `bin` in MessagePack and base64 strings in JSON.
 *
 * Decoding never trusts the input: the caller bounds the byte length first
 * (LIMITS.maxBodyBytes on the server), msgpackr runs without records or
 * structured clones, and the result then goes through a strict schema
 * (schema.ts) before anything else sees it.
 */
import { Packr } from 'msgpackr';
import { bytesToBase64, utf8Decode, utf8Encode } from './bytes.ts';
import { ErrorCode, PcdError } from './errors.ts';
import type { Format } from './schema.ts';

export type { Format } from './schema.ts';

export const CONTENT_TYPE: Readonly<Record<Format, string>> = {
  msgpack: 'application/msgpack',
  json: 'application/json',
};

// Plain maps and arrays only: no record extension, no structured clone, no
// shared structures between messages, bin as Uint8Array-compatible Buffer.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, structuredClone: false });

/** Format named by a Content-Type header, ignoring parameters such as charset. */
export function formatOfContentType(header: string | undefined): Format | undefined {
  if (!header) return undefined;
  const type = header.split(';', 1)[0]!.trim().toLowerCase();
  if (type === CONTENT_TYPE.msgpack || type === 'application/x-msgpack' || type === 'application/vnd.msgpack') return 'msgpack';
  if (type === CONTENT_TYPE.json) return 'json';
  return undefined;
}

/**
 * Reply format from an Accept header (RFC 9110 §12.5.1): the format with
 * the highest weight, `q=0` meaning "not this one"; among equals, the one
 * listed first, then one reached by a wildcard (any type, or application/any),
 * the fallback first. The fallback when the header is absent; undefined when
 * it accepts neither format pcd speaks (the server answers 406).
 */
export function formatOfAccept(header: string | undefined, fallback: Format): Format | undefined {
  if (!header) return fallback;
  const listed = new Map<Format, { q: number; at: number }>();
  let wildcard = 0;
  header.split(',').forEach((part, at) => {
    const [type = '', ...params] = part.split(';').map((x) => x.trim().toLowerCase());
    let q = 1;
    for (const p of params) {
      const m = /^q\s*=\s*([0-9.]{1,5})$/.exec(p);
      if (m && Number.isFinite(Number(m[1]))) q = Math.min(1, Math.max(0, Number(m[1])));
    }
    const f = formatOfContentType(type);
    if (f) {
      if (!listed.has(f)) listed.set(f, { q, at });
    } else if (type === '*/*' || type === 'application/*') {
      wildcard = Math.max(wildcard, q);
    }
  });
  const formats: Format[] = fallback === 'msgpack' ? ['msgpack', 'json'] : ['json', 'msgpack'];
  const rank = (f: Format) => ({ q: listed.get(f)?.q ?? wildcard, at: listed.get(f)?.at ?? Infinity });
  let best: Format | undefined;
  for (const f of formats) {
    const r = rank(f);
    if (r.q <= 0) continue;
    if (best === undefined) best = f;
    else {
      const b = rank(best);
      if (r.q > b.q || (r.q === b.q && r.at < b.at)) best = f;
    }
  }
  return best;
}

function toJsonValue(value: unknown): unknown {
  if (value instanceof Uint8Array) return bytesToBase64(value);
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toJsonValue(v);
    return out;
  }
  return value;
}

export function encodeBody(value: unknown, format: Format): Uint8Array {
  if (format === 'json') return utf8Encode(JSON.stringify(toJsonValue(value)));
  return packr.pack(value);
}

/** Decodes a body whose length the caller has already bounded. */
export function decodeBody(body: Uint8Array, format: Format): unknown {
  if (body.length === 0) throw new PcdError(ErrorCode.MalformedBody, `empty body: expected a ${format === 'json' ? 'JSON' : 'MessagePack'} object`);
  try {
    if (format === 'json') return JSON.parse(utf8Decode(body));
    return packr.unpack(body);
  } catch (e) {
    throw new PcdError(
      ErrorCode.MalformedBody,
      `body is not valid ${format === 'json' ? 'JSON' : 'MessagePack'}: ${(e as Error).message.slice(0, 120)}`,
    );
  }
}
