/**
 * The OPRF key file's format: `<dataDir>/oprf-keys.json`, one secret key per
 * live epoch, kept apart from the SQLite database so the database can be
 * copied, audited or handed over without the keys.
 *
 *   { "version": 1, "keys": [{ "epoch": 1, "secretKey": "<64 hex digits>" }] }
 *
 * A key is never a JavaScript string: the file is read into a buffer of our
 * own, each `"secretKey"` value is found and hex-decoded in the bytes, and
 * only a copy with those values masked is handed to JSON.parse
 * ({@link parseKeyFileBytes}); writing puts the hex digits straight into a
 * buffer ({@link serializeKeyFile}). The caller zeroes the buffers after use.
 *
 * The server's key lifecycle (atomic writes, scrubbing, destruction) is
 * server/blinded/keys.ts; the audit reads the file with {@link readEpochKeys}.
 * The messages here name epochs and files, never key bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { publicKeyOf } from '../shared/noble.ts';
import { SCALAR_BYTES, type ScalarBytes } from '../shared/suite.ts';
import { KEY_FILE } from './files.ts';

export { KEY_FILE };
const KEY_FILE_VERSION = 1;
/** 64 epochs of ~100 bytes each fit many times over; anything larger is not a key file. */
const MAX_KEY_FILE_BYTES = 1 << 20;

export function keyFilePath(dataDir: string): string {
  return path.join(dataDir, KEY_FILE);
}

/** A key file that cannot be used: one line naming the file and the entry, never key bytes. */
export function badKeyFile(file: string, what: string): PcdError {
  return new PcdError(
    ErrorCode.Conflict,
    `${file}: ${what}. Restore the key file from a backup; or move it away and run \`pcd rotate-key --data ${path.dirname(file)} --repair\`, ` +
      'which retires the epochs whose keys are lost and starts a new one',
  );
}

// ------------------------------------------------------------------ bytes, never strings

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const SECRET_KEY_NAME = Buffer.from('secretKey', 'latin1');
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');
/** What a masked value reads as: `@<index of the value in the file>`. */
const PLACEHOLDER = /^@(\d+)$/;

const isSpace = (c: number | undefined) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

function nibble(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

/** Decodes exactly 2 x SCALAR_BYTES hex digits of `buf[start, end)` into a new array; undefined (nothing kept) otherwise. */
function decodeHex(buf: Uint8Array, start: number, end: number): ScalarBytes | undefined {
  if (end - start !== 2 * SCALAR_BYTES) return undefined;
  const out = new Uint8Array(SCALAR_BYTES);
  for (let i = 0; i < SCALAR_BYTES; i++) {
    const hi = nibble(buf[start + 2 * i]!);
    const lo = nibble(buf[start + 2 * i + 1]!);
    if (hi < 0 || lo < 0) {
      out.fill(0);
      return undefined;
    }
    out[i] = (hi << 4) | lo;
  }
  return out;
}

/** End (index of the closing quote) of the JSON string whose content starts at `start`; -1 when unterminated. */
function stringEnd(buf: Uint8Array, start: number): number {
  let j = start;
  while (j < buf.length && buf[j] !== QUOTE) j += buf[j] === BACKSLASH ? 2 : 1;
  return j < buf.length ? j : -1;
}

function skipSpace(buf: Uint8Array, i: number): number {
  while (isSpace(buf[i])) i++;
  return i;
}

/**
 * The content spans `[start, end)` of every string value of a `"secretKey"`
 * member, found by walking the JSON tokens in the bytes: outside strings
 * JSON has no quote, so every quote opens a string; a string followed by a
 * colon is a member name.
 */
function locateSecretKeys(buf: Uint8Array): { start: number; end: number }[] {
  const spans: { start: number; end: number }[] = [];
  let i = 0;
  while (i < buf.length) {
    if (buf[i] !== QUOTE) {
      i++;
      continue;
    }
    const start = i + 1;
    const end = stringEnd(buf, start);
    if (end < 0) break; // unterminated: JSON.parse says so
    i = end + 1;
    const afterName = skipSpace(buf, i);
    if (buf[afterName] !== COLON) continue;
    const isSecretKey = end - start === SECRET_KEY_NAME.length && SECRET_KEY_NAME.equals(buf.subarray(start, end));
    const value = skipSpace(buf, afterName + 1);
    if (!isSecretKey || buf[value] !== QUOTE) continue;
    const valueEnd = stringEnd(buf, value + 1);
    if (valueEnd < 0) break;
    spans.push({ start: value + 1, end: valueEnd });
    i = valueEnd + 1;
  }
  return spans;
}

/**
 * Parses and checks a key file's bytes without ever making a string that
 * holds key hex: the secret keys are found and decoded in the bytes, and
 * JSON.parse gets a copy in which each is replaced by a placeholder. Does
 * not modify `bytes` (the caller zeroes them). Errors are PcdErrors naming
 * the file and the entry, never key bytes.
 */
export function parseKeyFileBytes(file: string, bytes: Uint8Array): Map<number, ScalarBytes> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const spans = locateSecretKeys(buf);
  const decoded = spans.map((s) => decodeHex(buf, s.start, s.end));
  const keys = new Map<number, ScalarBytes>();
  const used = new Set<number>();
  let masked: Buffer | undefined;
  try {
    const parts: Buffer[] = [];
    let at = 0;
    spans.forEach((s, i) => {
      parts.push(buf.subarray(at, s.start), Buffer.from(`@${i}`, 'latin1'));
      at = s.end;
    });
    parts.push(buf.subarray(at));
    masked = Buffer.concat(parts);
    let json: unknown;
    try {
      json = JSON.parse(masked.toString('utf8'));
    } catch {
      throw badKeyFile(file, 'not valid JSON');
    }
    const obj = json as { version?: unknown; keys?: unknown } | null;
    if (typeof obj !== 'object' || obj === null || obj.version !== KEY_FILE_VERSION || !Array.isArray(obj.keys)) {
      throw badKeyFile(file, `expected { "version": ${KEY_FILE_VERSION}, "keys": [...] }`);
    }
    obj.keys.forEach((entry: unknown, i) => {
      const e = entry as { epoch?: unknown; secretKey?: unknown } | null;
      if (typeof e !== 'object' || e === null) throw badKeyFile(file, `keys[${i}] is not an object`);
      const { epoch, secretKey } = e;
      if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 1) throw badKeyFile(file, `keys[${i}].epoch must be a positive integer`);
      if (keys.has(epoch)) throw badKeyFile(file, `epoch ${epoch} is listed twice`);
      const ref = typeof secretKey === 'string' ? PLACEHOLDER.exec(secretKey) : null;
      const index = ref ? Number(ref[1]) : -1;
      const sk = decoded[index];
      if (!sk || used.has(index)) throw badKeyFile(file, `keys[${i}].secretKey (epoch ${epoch}) must be ${2 * SCALAR_BYTES} hex digits`);
      try {
        publicKeyOf(sk); // canonical, nonzero scalar
      } catch {
        throw badKeyFile(file, `the secret key of epoch ${epoch} is not a valid ristretto255 scalar`);
      }
      used.add(index);
      keys.set(epoch, sk);
    });
    return keys;
  } catch (e) {
    for (const sk of keys.values()) sk.fill(0);
    keys.clear();
    throw e;
  } finally {
    decoded.forEach((sk, i) => {
      if (sk && !used.has(i)) sk.fill(0); // a value JSON.parse did not keep (a duplicate member), or a failed parse
    });
    masked?.fill(0);
  }
}

/**
 * The key file's bytes, the format above (as JSON.stringify with 2 spaces
 * writes it), with the hex digits written straight into the buffer: no
 * string ever holds a key. The caller zeroes the buffer once written.
 */
export function serializeKeyFile(keys: ReadonlyMap<number, ScalarBytes>): Buffer {
  const entries = [...keys.entries()].sort(([a], [b]) => a - b);
  const head = `{\n  "version": ${KEY_FILE_VERSION},\n  "keys": [`;
  const before = (epoch: number) => `\n    {\n      "epoch": ${epoch},\n      "secretKey": "`;
  const after = (last: boolean) => `"\n    }${last ? '' : ','}`;
  const tail = entries.length ? '\n  ]\n}\n' : ']\n}\n';
  let size = head.length + tail.length;
  entries.forEach(([epoch, sk], i) => (size += before(epoch).length + 2 * sk.length + after(i === entries.length - 1).length));
  const out = Buffer.alloc(size); // zero-filled, never from the shared pool
  let at = out.write(head, 0, 'latin1');
  entries.forEach(([epoch, sk], i) => {
    at += out.write(before(epoch), at, 'latin1');
    for (const byte of sk) {
      out[at++] = HEX_DIGITS[byte >> 4]!;
      out[at++] = HEX_DIGITS[byte & 15]!;
    }
    at += out.write(after(i === entries.length - 1), at, 'latin1');
  });
  out.write(tail, at, 'latin1');
  return out;
}

/** Reads a whole file into a zero-filled buffer of our own (not the shared pool), for the caller to zero. */
function readBytes(file: string): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size > MAX_KEY_FILE_BYTES) throw badKeyFile(file, `${size} bytes, more than a key file holds`);
    const buf = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const n = fs.readSync(fd, buf, got, size - got, got);
      if (n === 0) break;
      got += n;
    }
    return got === size ? buf : buf.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

export function readKeyFile(file: string): Map<number, ScalarBytes> {
  const bytes = readBytes(file);
  try {
    return parseKeyFileBytes(file, bytes);
  } finally {
    bytes.fill(0);
  }
}

/**
 * Read-only view for tools (the audit): every epoch's secret key in the key
 * file, or an empty map when there is none. Never writes, never fixes modes.
 * The caller owns the arrays (and zeroes them when done).
 */
export function readEpochKeys(dataDir: string): Map<number, Uint8Array> {
  const file = keyFilePath(dataDir);
  if (!fs.existsSync(file)) return new Map();
  return readKeyFile(file);
}
