/**
 * Byte helpers that run the same in Node and in a browser bundle (the
 * protocol module and the client must not need Node's Buffer): base64 for
 * the JSON format of byte fields (RFC 4648 §4, with padding) and UTF-8.
 * Node's Buffer is used when present, for speed; btoa/atob otherwise.
 */

interface NodeBufferStatic {
  from(buffer: ArrayBufferLike, byteOffset: number, length: number): { toString(encoding: 'base64'): string };
  from(text: string, encoding: 'base64'): Uint8Array;
}
const NodeBuffer = (globalThis as { Buffer?: NodeBufferStatic }).Buffer;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

export function bytesToBase64(bytes: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** Decodes base64 the caller has checked (shared/schema.ts bounds and validates it first). */
export function base64ToBytes(text: string): Uint8Array {
  if (NodeBuffer) return new Uint8Array(NodeBuffer.from(text, 'base64'));
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function utf8Encode(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

export function utf8Decode(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes);
}

/** Equal length and bytes, compared without an early exit once the lengths match (digests, keys, roots, hashes). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}
