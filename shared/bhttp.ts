/**
 * Binary HTTP (RFC 9292), the known-length form only: the inner message of
 * Oblivious HTTP (RFC 9458, shared/ohttp.ts). The client writes its request
 * to the server as one of these, the relay carries it encrypted, the
 * gateway (server/ohttp.ts) reads it and answers with a binary response.
 *
 * Why known-length only: OHTTP seals a whole message at once (no chunked
 * OHTTP here), so every length is known before the first byte is written,
 * and a reader never has to guess where a section ends. Indeterminate-length
 * messages (framing indicators 2 and 3) are refused as malformed.
 *
 * ## Wire layout (RFC 9292 §3; (i) is a QUIC variable-length integer, RFC 9000 §16)
 *
 *   Known-Length Request {                    Known-Length Response {
 *     Framing Indicator (i) = 0,                Framing Indicator (i) = 1,
 *     Request Control Data (..),                Known-Length Informational Response (..) ...,
 *     Known-Length Field Section (..),          Final Response Control Data (..),
 *     Known-Length Content (..),                Known-Length Field Section (..),
 *     Known-Length Field Section (..),          Known-Length Content (..),
 *     Padding (..),                             Known-Length Field Section (..),
 *   }                                           Padding (..),
 *                                             }
 *   Request Control Data { Method Length (i), Method (..), Scheme Length (i), Scheme (..),
 *                          Authority Length (i), Authority (..), Path Length (i), Path (..) }
 *   Known-Length Informational Response { Status Code (i) = 100..199, Known-Length Field Section (..) }
 *   Final Response Control Data { Status Code (i) = 200..599 }
 *   Known-Length Field Section { Length (i), Field Line (..) ... }
 *   Field Line { Name Length (i) = 1.., Name (..), Value Length (i), Value (..) }
 *   Known-Length Content { Content Length (i), Content (..) }
 *
 * The first field section holds the header fields, the second the trailers.
 *
 * ## Reading strictly
 *
 * Everything read comes from the other side of a relay, so nothing is
 * trusted: the whole message, each field section, each field line, the
 * number of lines and the content are bounded ({@link BhttpLimits}) before
 * anything is allocated, a length that points past the end is malformed
 * (never a short read), and so is anything but zero bytes after the last
 * section. Every failure is a {@link PcdError} with the code the caller
 * names: `bad_request` where the server reads a client's request,
 * `malformed_reply` where the client reads the server's response.
 *
 * Strings are handled byte for byte (each byte one character, latin1), so a
 * field value's bytes survive a round trip unchanged; what is allowed in
 * them is checked against RFC 9110's grammar, not guessed from an encoding.
 */
import { ErrorCode, PcdError } from './errors.ts';

/** A binary HTTP message as it travels: a request (framing indicator 0) or a response (1). */
export type BhttpBytes = Uint8Array;

/** One field line: a lowercase name and its value, in the order they appear. */
export type FieldLine = readonly [name: string, value: string];

export interface BhttpRequest {
  method: string;
  /** `https` or `http`, without the colon. */
  scheme: string;
  /** `host[:port]`; may be empty (RFC 9292 §3.4). */
  authority: string;
  /** Origin form (`/path?query`), or `*`. */
  path: string;
  headers: readonly FieldLine[];
  content: Uint8Array;
  /** Trailer fields; written only when given, read when present. */
  trailers?: readonly FieldLine[];
}

export interface BhttpResponse {
  /** The final status, 200..599 (informational responses are read and dropped). */
  status: number;
  headers: readonly FieldLine[];
  content: Uint8Array;
  trailers?: readonly FieldLine[];
}

/** Bounds a reader applies before it allocates anything. */
export interface BhttpLimits {
  /** The whole message, padding included. */
  maxMessageBytes: number;
  /** Field lines in one field section. */
  maxFieldLines: number;
  /** Bytes of one field section (its Length). */
  maxFieldSectionBytes: number;
  /** Bytes of the content. */
  maxContentBytes: number;
}

/** Informational responses a reader skips at most before the final one. */
const MAX_INFORMATIONAL = 8;

/** Sized for pcd's requests: a 4,096-element evaluate body (~140 KiB) fits with room; headers like an HTTP/1.1 server's 16 KiB. */
export const DEFAULT_BHTTP_LIMITS: Readonly<BhttpLimits> = {
  maxMessageBytes: 600 * 1024,
  maxFieldLines: 64,
  maxFieldSectionBytes: 16 * 1024,
  maxContentBytes: 512 * 1024,
};

const FRAMING_KNOWN_LENGTH_REQUEST = 0;
const FRAMING_KNOWN_LENGTH_RESPONSE = 1;

// ------------------------------------------------------------------ QUIC variable-length integers (RFC 9000 §16)

/** The largest value a varint holds (2^62 - 1); pcd writes only lengths and statuses, far below. */
const VARINT_MAX = 2 ** 62 - 1;

/** Bytes the minimal encoding of `v` takes: 1, 2, 4 or 8 (RFC 9000 §16, Table 4). */
export function varintLength(v: number): 1 | 2 | 4 | 8 {
  if (!Number.isSafeInteger(v) || v < 0 || v > VARINT_MAX) throw new RangeError(`varint out of range: ${v}`);
  return v < 0x40 ? 1 : v < 0x4000 ? 2 : v < 0x4000_0000 ? 4 : 8;
}

/** Writes `v` in its minimal encoding at `out[at]`; returns the offset after it. */
export function writeVarint(out: Uint8Array, at: number, v: number): number {
  const n = varintLength(v);
  // The two most significant bits of the first byte give the length: 00, 01, 10, 11 for 1, 2, 4, 8 bytes.
  const prefix = n === 1 ? 0 : n === 2 ? 1 : n === 4 ? 2 : 3;
  let rest = v;
  for (let i = n - 1; i >= 0; i--) {
    // Beyond 2^32 JavaScript's bit operators truncate: divide instead.
    out[at + i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  out[at] = (out[at] ?? 0) | (prefix << 6);
  return at + n;
}

export function encodeVarint(v: number): Uint8Array {
  const out = new Uint8Array(varintLength(v));
  writeVarint(out, 0, v);
  return out;
}

// ------------------------------------------------------------------ reading

/** Reads one varint at `at` (RFC 9000 §16): its value and how many bytes it took; a PcdError with `code` when truncated or beyond 2^53. */
export function readVarint(bytes: Uint8Array, at: number, code: ErrorCode): { value: number; length: number } {
  const r = new Reader(bytes, code, 'variable-length integer');
  r.at = at;
  const value = r.varint('the integer');
  return { value, length: r.at - at };
}

/** A cursor over untrusted bytes: every read is bounds-checked and fails with the caller's code. */
class Reader {
  at = 0;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly code: ErrorCode,
    private readonly what: string,
  ) {}

  fail(why: string): never {
    throw new PcdError(this.code, `malformed ${this.what} (RFC 9292): ${why}`);
  }

  get remaining(): number {
    return this.bytes.length - this.at;
  }

  /**
   * A varint (RFC 9000 §16). Non-minimal encodings are valid there (0x4025
   * is 37); a value beyond 2^53 cannot be a length or status of ours and is
   * refused rather than rounded.
   */
  varint(field: string): number {
    const first = this.bytes[this.at];
    if (first === undefined) this.fail(`truncated before ${field}`);
    const n = 1 << (first >> 6);
    if (this.remaining < n) this.fail(`truncated inside ${field}`);
    let v = first & 0x3f;
    for (let i = 1; i < n; i++) v = v * 256 + (this.bytes[this.at + i] ?? 0);
    if (!Number.isSafeInteger(v)) this.fail(`${field} does not fit in 53 bits`);
    this.at += n;
    return v;
  }

  /** A reader over the next `n` bytes (a field section), failing the same way. */
  sub(n: number, field: string): Reader {
    return new Reader(this.take(n, field), this.code, this.what);
  }

  /** `n` bytes, a view into the input (the caller copies what it keeps). */
  take(n: number, field: string): Uint8Array {
    if (n > this.remaining) this.fail(`${field} of ${n} bytes runs past the end of the message (${this.remaining} left)`);
    const out = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }

  /** A length-prefixed byte string of at most `max` bytes, read as latin1 (one character per byte). */
  string(field: string, max: number): string {
    const n = this.varint(`${field} length`);
    if (n > max) this.fail(`${field} of ${n} bytes exceeds ${max}`);
    return latin1(this.take(n, field));
  }

  /** Only zero bytes may follow the last section (RFC 9292 §3.8, padding). */
  padding(): void {
    for (let i = this.at; i < this.bytes.length; i++) {
      if (this.bytes[i] !== 0) this.fail(`a non-zero byte at offset ${i} after the message (padding is zero bytes)`);
    }
    this.at = this.bytes.length;
  }
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x2000) s += String.fromCharCode(...bytes.subarray(i, i + 0x2000));
  return s;
}

// RFC 9110 §5.6.2: token = 1*tchar.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Field names are tokens, lowercase as HTTP/2 and HTTP/3 carry them (RFC 9113 §8.2.1), which binary HTTP maps to and from.
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
// RFC 9110 §5.5: field-value = *field-content, visible characters, SP, HTAB, obs-text; never CR, LF or NUL,
// and no leading or trailing whitespace.
const FIELD_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\x20\x09\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;
// RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
const SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*$/;
// RFC 3986 §3.2: an authority, with no path, query or fragment delimiter; may be empty (RFC 9292 §3.4).
const AUTHORITY = /^[\x21-\x7e]*$/;
const AUTHORITY_DELIMS = /[/?#]/;
// Origin form (RFC 9112 §3.2.1) in visible ASCII, or the asterisk form (RFC 9112 §3.2.4).
const PATH = /^(?:\/[\x21-\x7e]*|\*)$/;

function checkRequestLine(r: Pick<BhttpRequest, 'method' | 'scheme' | 'authority' | 'path'>, fail: (why: string) => never): void {
  if (!TOKEN.test(r.method)) fail(`the method is not a token`);
  if (!SCHEME.test(r.scheme)) fail(`the scheme is not a URI scheme`);
  if (!AUTHORITY.test(r.authority) || AUTHORITY_DELIMS.test(r.authority)) fail(`the authority is not an authority`);
  if (!PATH.test(r.path)) fail(r.path === '' ? 'the path is empty' : `the path is not in origin form`);
}

function checkField(name: string, value: string, fail: (why: string) => never): void {
  if (!FIELD_NAME.test(name)) fail(`a field name is not a lowercase token`);
  // RFC 9110 §5.5: a recipient of CR, LF or NUL in a field value MUST reject the message or replace them; we reject.
  if (!FIELD_VALUE.test(value)) fail(`the value of field '${name}' holds a character a field value cannot hold`);
}

/** An absent section is an empty one: a message may end after any complete section (RFC 9292 §3.8, truncation). */
function fieldSection(r: Reader, limits: BhttpLimits, which: string): FieldLine[] {
  if (r.remaining === 0) return [];
  const length = r.varint(`${which} section length`);
  if (length > limits.maxFieldSectionBytes) r.fail(`${which} section of ${length} bytes exceeds ${limits.maxFieldSectionBytes}`);
  const section = r.sub(length, `${which} section`);
  const fail = (why: string): never => section.fail(`${which} section: ${why}`);
  const lines: FieldLine[] = [];
  while (section.remaining > 0) {
    if (lines.length >= limits.maxFieldLines) fail(`more than ${limits.maxFieldLines} field lines`);
    const name = section.string('field name', length);
    const value = section.string('field value', length);
    if (name === '') fail('a field name is empty');
    checkField(name, value, fail);
    lines.push([name, value]);
  }
  return lines;
}

function content(r: Reader, limits: BhttpLimits): Uint8Array {
  if (r.remaining === 0) return new Uint8Array(0);
  const n = r.varint('content length');
  if (n > limits.maxContentBytes) r.fail(`content of ${n} bytes exceeds ${limits.maxContentBytes}`);
  return r.take(n, 'content').slice();
}

function start(bytes: Uint8Array, limits: BhttpLimits, code: ErrorCode, what: string): Reader {
  const r = new Reader(bytes, code, what);
  if (bytes.length > limits.maxMessageBytes) r.fail(`${bytes.length} bytes exceed ${limits.maxMessageBytes}`);
  return r;
}

/** What the caller reads with: its error code (who is to blame) and, optionally, tighter or looser bounds. */
export interface DecodeOptions {
  code: ErrorCode;
  limits?: Partial<BhttpLimits>;
}

/** Reads a known-length binary request (framing indicator 0). */
export function decodeRequest(bytes: BhttpBytes, options: DecodeOptions): BhttpRequest {
  const limits = { ...DEFAULT_BHTTP_LIMITS, ...options.limits };
  const r = start(bytes, limits, options.code, 'binary HTTP request');
  const framing = r.varint('framing indicator');
  if (framing !== FRAMING_KNOWN_LENGTH_REQUEST) {
    r.fail(framing === 2 ? 'indeterminate-length messages are not accepted' : `framing indicator ${framing} is not a known-length request (0)`);
  }
  const line = limits.maxFieldSectionBytes;
  const method = r.string('method', line);
  const scheme = r.string('scheme', line);
  const authority = r.string('authority', line);
  const path = r.string('path', line);
  checkRequestLine({ method, scheme, authority, path }, (why) => r.fail(why));
  const headers = fieldSection(r, limits, 'header');
  const body = content(r, limits);
  const trailers = fieldSection(r, limits, 'trailer');
  r.padding();
  return { method, scheme, authority, path, headers, content: body, trailers };
}

/** Reads a known-length binary response (framing indicator 1); informational (1xx) responses are read and dropped. */
export function decodeResponse(bytes: BhttpBytes, options: DecodeOptions): BhttpResponse {
  const limits = { ...DEFAULT_BHTTP_LIMITS, ...options.limits };
  const r = start(bytes, limits, options.code, 'binary HTTP response');
  const framing = r.varint('framing indicator');
  if (framing !== FRAMING_KNOWN_LENGTH_RESPONSE) {
    r.fail(framing === 3 ? 'indeterminate-length messages are not accepted' : `framing indicator ${framing} is not a known-length response (1)`);
  }
  let status = r.varint('status code');
  for (let informational = 0; status >= 100 && status <= 199; informational++) {
    // RFC 9292 §3.5.1: informational responses precede the final one, each with its own header section.
    if (informational >= MAX_INFORMATIONAL) r.fail(`more than ${MAX_INFORMATIONAL} informational responses`);
    if (r.remaining === 0) r.fail('truncated after an informational response');
    fieldSection(r, limits, 'informational header');
    status = r.varint('status code');
  }
  // RFC 9292 §3.5: the final status code is 200..599.
  if (status < 200 || status > 599) r.fail(`status ${status} is not a final status (200..599)`);
  const headers = fieldSection(r, limits, 'header');
  const body = content(r, limits);
  const trailers = fieldSection(r, limits, 'trailer');
  r.padding();
  return { status, headers, content: body, trailers };
}

// ------------------------------------------------------------------ writing

/** Latin1 bytes of a string the caller checked (every character below 256). */
function latin1Bytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Writes a message from its parts: each `Uint8Array` length-prefixed, each number a varint. */
function assemble(parts: readonly (number | Uint8Array | readonly (number | Uint8Array)[])[]): Uint8Array {
  const flat: (number | Uint8Array)[] = [];
  for (const p of parts) {
    if (Array.isArray(p)) flat.push(...(p as (number | Uint8Array)[]));
    else flat.push(p as number | Uint8Array);
  }
  let size = 0;
  for (const p of flat) size += typeof p === 'number' ? varintLength(p) : p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of flat) {
    if (typeof p === 'number') at = writeVarint(out, at, p);
    else {
      out.set(p, at);
      at += p.length;
    }
  }
  return out;
}

/** A length-prefixed string. */
function prefixed(s: Uint8Array): (number | Uint8Array)[] {
  return [s.length, s];
}

function encodeSection(fields: readonly FieldLine[], fail: (why: string) => never): (number | Uint8Array)[] {
  const body: (number | Uint8Array)[] = [];
  let length = 0;
  for (const [rawName, value] of fields) {
    const name = rawName.toLowerCase();
    checkField(name, value, fail);
    const n = latin1Bytes(name);
    const v = latin1Bytes(value);
    body.push(...prefixed(n), ...prefixed(v));
    length += varintLength(n.length) + n.length + varintLength(v.length) + v.length;
  }
  return [length, ...body];
}

/** Options of the writer. */
export interface EncodeOptions {
  /**
   * Leave out the empty sections at the end (RFC 9292 §3.8): a request or
   * response whose trailers, content and headers are empty can stop early.
   * Default false: every section is written, as RFC 9292 Figure 8 does.
   */
  truncate?: boolean;
}

/** Drops trailing parts that are an empty section (a zero length) when truncating. */
function trimmed(sections: (number | Uint8Array)[][], truncate: boolean | undefined): (number | Uint8Array)[][] {
  if (!truncate) return sections;
  const out = [...sections];
  while (out.length > 0 && out[out.length - 1]?.[0] === 0) out.pop(); // a section whose length is 0
  return out;
}

/** Writes a known-length binary request. A field or request line a reader would refuse is an invalid_field error, never written. */
export function encodeRequest(request: BhttpRequest, options: EncodeOptions = {}): BhttpBytes {
  const fail = (why: string): never => {
    throw new PcdError(ErrorCode.InvalidField, `cannot write this binary HTTP request: ${why}`);
  };
  checkRequestLine(request, fail);
  const sections = trimmed(
    [encodeSection(request.headers, fail), [request.content.length, request.content], encodeSection(request.trailers ?? [], fail)],
    options.truncate,
  );
  return assemble([
    FRAMING_KNOWN_LENGTH_REQUEST,
    prefixed(latin1Bytes(request.method)),
    prefixed(latin1Bytes(request.scheme)),
    prefixed(latin1Bytes(request.authority)),
    prefixed(latin1Bytes(request.path)),
    ...sections,
  ]);
}

/** Writes a known-length binary response (no informational responses). */
export function encodeResponse(response: BhttpResponse, options: EncodeOptions = {}): BhttpBytes {
  const fail = (why: string): never => {
    throw new PcdError(ErrorCode.InvalidField, `cannot write this binary HTTP response: ${why}`);
  };
  if (!Number.isInteger(response.status) || response.status < 200 || response.status > 599) fail(`status ${response.status} is not a final status (200..599)`);
  const sections = trimmed(
    [encodeSection(response.headers, fail), [response.content.length, response.content], encodeSection(response.trailers ?? [], fail)],
    options.truncate,
  );
  return assemble([FRAMING_KNOWN_LENGTH_RESPONSE, response.status, ...sections]);
}

/** The value of the first field named `name` (lowercase), if any. */
export function fieldValue(fields: readonly FieldLine[], name: string): string | undefined {
  return fields.find(([n]) => n === name)?.[1];
}
