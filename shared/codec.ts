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
 * Reply format from an Accept header: the first listed format pcd speaks, the
 * fallback when the header is absent or a wildcard, undefined when it names
 * only formats pcd does not speak.
 */
export function formatOfAccept(header: string | undefined, fallback: Format): Format | undefined {
  if (!header) return fallback;
  let wildcard = false;
  for (const part of header.split(',')) {
    const type = part.split(';', 1)[0]!.trim().toLowerCase();
    const f = formatOfContentType(type);
    if (f) return f;
    if (type === '*/*' || type === 'application/*') wildcard = true;
  }
  return wildcard ? fallback : undefined;
}

function toJsonValue(value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toJsonValue(v);
    return out;
  }
  return value;
}

export function encodeBody(value: unknown, format: Format): Uint8Array {
  if (format === 'json') return Buffer.from(JSON.stringify(toJsonValue(value)), 'utf8');
  return packr.pack(value);
}

/** Decodes a body whose length the caller has already bounded. */
export function decodeBody(body: Uint8Array, format: Format): unknown {
  if (body.length === 0) throw new PcdError(ErrorCode.MalformedBody, `empty body: expected a ${format === 'json' ? 'JSON' : 'MessagePack'} object`);
  try {
    if (format === 'json') return JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
    return packr.unpack(body);
  } catch (e) {
    throw new PcdError(
      ErrorCode.MalformedBody,
      `body is not valid ${format === 'json' ? 'JSON' : 'MessagePack'}: ${(e as Error).message.slice(0, 120)}`,
    );
  }
}
