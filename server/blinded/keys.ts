/**
 * The OPRF key file: `<dataDir>/oprf-keys.json`, one secret key per live
 * epoch, kept apart from the SQLite database so the database can be copied,
 * audited or handed over without the keys (DESIGN.md §4).
 *
 *   { "version": 1, "keys": [{ "epoch": 1, "secretKey": "<64 hex digits>" }] }
 *
 * - Created with mode 0600; on every open the mode is checked and tightened
 *   to 0600 if group or other could read it.
 * - Every write is atomic: a temp file (0600) in the same folder, written and
 *   fsync'ed, renamed over the key file, then the folder fsync'ed. A crash
 *   leaves the old or the new file, never half of one.
 * - Every write, adding a key as well as destroying one, then overwrites the
 *   replaced file's blocks with zeros through a descriptor kept open across
 *   the rename (see {@link KeyFile.destroy}), so no old inode keeps keys.
 * - A key is never a JavaScript string: the file is read into a buffer of
 *   our own, each `"secretKey"` value is found and hex-decoded in the bytes,
 *   and only a copy with those values masked is handed to JSON.parse
 *   ({@link parseKeyFileBytes}); writing puts the hex digits straight into a
 *   buffer ({@link serializeKeyFile}). The buffers are zeroed after use, and
 *   so is every key buffer of a destroyed epoch and, on {@link KeyFile.close},
 *   every key held.
 *
 * A secret key never appears in a log line, an error message or a reply:
 * the messages here name epochs and files, never key bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { publicKeyOf } from '../../shared/oprf.ts';
import { SCALAR_BYTES, type ScalarBytes } from '../../shared/suite.ts';

export const KEY_FILE = 'oprf-keys.json';
const FILE_MODE = 0o600;
const KEY_FILE_VERSION = 1;
/** 64 epochs of ~100 bytes each fit many times over; anything larger is not a key file. */
const MAX_KEY_FILE_BYTES = 1 << 20;

export function keyFilePath(dataDir: string): string {
  return path.join(dataDir, KEY_FILE);
}

/** A key file that cannot be used: one line naming the file and the entry, never key bytes. */
function bad(file: string, what: string): PcdError {
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
      throw bad(file, 'not valid JSON');
    }
    const obj = json as { version?: unknown; keys?: unknown } | null;
    if (typeof obj !== 'object' || obj === null || obj.version !== KEY_FILE_VERSION || !Array.isArray(obj.keys)) {
      throw bad(file, `expected { "version": ${KEY_FILE_VERSION}, "keys": [...] }`);
    }
    obj.keys.forEach((entry: unknown, i) => {
      const e = entry as { epoch?: unknown; secretKey?: unknown } | null;
      if (typeof e !== 'object' || e === null) throw bad(file, `keys[${i}] is not an object`);
      const { epoch, secretKey } = e;
      if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 1) throw bad(file, `keys[${i}].epoch must be a positive integer`);
      if (keys.has(epoch)) throw bad(file, `epoch ${epoch} is listed twice`);
      const ref = typeof secretKey === 'string' ? PLACEHOLDER.exec(secretKey) : null;
      const index = ref ? Number(ref[1]) : -1;
      const sk = decoded[index];
      if (!sk || used.has(index)) throw bad(file, `keys[${i}].secretKey (epoch ${epoch}) must be ${2 * SCALAR_BYTES} hex digits`);
      try {
        publicKeyOf(sk); // canonical, nonzero scalar
      } catch {
        throw bad(file, `the secret key of epoch ${epoch} is not a valid ristretto255 scalar`);
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
    if (size > MAX_KEY_FILE_BYTES) throw bad(file, `${size} bytes, more than a key file holds`);
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

function readKeyFile(file: string): Map<number, ScalarBytes> {
  const bytes = readBytes(file);
  try {
    return parseKeyFileBytes(file, bytes);
  } finally {
    bytes.fill(0);
  }
}

// ------------------------------------------------------------------ files

/** fsync of a folder, so a rename in it is durable. Some platforms cannot open folders: best effort there. */
function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Windows cannot fsync a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Overwrites a file's current blocks with zeros and syncs; used on leftovers that may hold keys. */
function scrubFd(fd: number): void {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return;
  const zeros = Buffer.alloc(Math.min(size, 1 << 16));
  for (let off = 0; off < size; off += zeros.length) fs.writeSync(fd, zeros, 0, Math.min(zeros.length, size - off), off);
  fs.fsyncSync(fd);
}

/**
 * Writes `data` to `file` atomically with mode 0600: temp file, fsync, rename,
 * fsync of the folder. A temp file left by a crash may hold keys: it is
 * overwritten with zeros before it is removed.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = FILE_MODE): void {
  const tmp = `${file}.tmp`;
  if (fs.existsSync(tmp)) {
    const old = fs.openSync(tmp, 'r+');
    try {
      scrubFd(old);
    } finally {
      fs.closeSync(old);
    }
    fs.unlinkSync(tmp);
  }
  // 'wx': we just removed any leftover, so the file we open is ours, with our mode.
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    fs.fchmodSync(fd, mode); // the umask may have narrowed or the platform ignored the open mode
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let off = 0; off < bytes.length; ) off += fs.writeSync(fd, bytes, off, bytes.length - off);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

/** The key file, loaded: epochs' secret keys in memory, every change written through atomically. */
export class KeyFile {
  private constructor(
    readonly file: string,
    private readonly keys: Map<number, ScalarBytes>,
    /** What opening had to fix, for the caller to log (never key bytes). */
    readonly warnings: readonly string[],
  ) {}

  /**
   * Loads `<dataDir>/oprf-keys.json`, creating an empty one (0600) when absent.
   * A key file readable by group or other is tightened to 0600 and reported in `warnings`.
   */
  static open(dataDir: string): KeyFile {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const file = keyFilePath(dataDir);
    const warnings: string[] = [];
    if (!fs.existsSync(file)) {
      const keys = new Map<number, ScalarBytes>();
      writeFileAtomic(file, serializeKeyFile(keys));
      return new KeyFile(file, keys, warnings);
    }
    const st = fs.statSync(file);
    if (!st.isFile()) throw bad(file, 'not a regular file');
    if (process.platform !== 'win32' && (st.mode & 0o777) !== FILE_MODE) {
      fs.chmodSync(file, FILE_MODE);
      warnings.push(`${file} had mode ${(st.mode & 0o777).toString(8)}; set it to 600 (only the server user may read OPRF keys)`);
    }
    return new KeyFile(file, readKeyFile(file), warnings);
  }

  /** Epochs that have a key, ascending. */
  epochs(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  has(epoch: number): boolean {
    return this.keys.has(epoch);
  }

  /** The secret key of `epoch` (a copy: the caller owns it and zeroes it when done), or undefined. */
  get(epoch: number): ScalarBytes | undefined {
    const sk = this.keys.get(epoch);
    return sk && sk.slice();
  }

  /** Adds the key of a new epoch and writes the file (scrubbing the replaced one) before returning. */
  add(epoch: number, secretKey: ScalarBytes): void {
    if (this.keys.has(epoch)) throw new PcdError(ErrorCode.Conflict, `${this.file}: epoch ${epoch} has a key already`);
    publicKeyOf(secretKey); // throws on a bad scalar before anything is written
    const copy = secretKey.slice();
    const next = new Map(this.keys);
    next.set(epoch, copy);
    try {
      this.rewrite(next);
    } catch (e) {
      copy.fill(0);
      throw e;
    }
    this.keys.set(epoch, copy);
  }

  /**
   * Destroys the key of `epoch`: the file is rewritten without it (atomic
   * rename), then the replaced file, still open here, is overwritten with
   * zeros and fsync'ed before its descriptor is closed, so its blocks do not
   * keep the key. The in-memory copy is zeroed too.
   *
   * Caveat: a filesystem may keep old blocks anyway (copy-on-write
   * filesystems such as btrfs, ZFS or APFS, journals, snapshots, SSD wear
   * levelling, backups). We rewrite and fsync, which is all a process can
   * do; full-disk encryption with the key file on it, or a key held in an
   * HSM, is the operator's answer to that. Returns false when the epoch had
   * no key.
   */
  destroy(epoch: number): boolean {
    const sk = this.keys.get(epoch);
    if (!sk) return false;
    const next = new Map(this.keys);
    next.delete(epoch);
    this.rewrite(next);
    sk.fill(0);
    this.keys.delete(epoch);
    return true;
  }

  /** Zeroes and forgets every key held in memory (the file stays). Idempotent. */
  close(): void {
    for (const sk of this.keys.values()) sk.fill(0);
    this.keys.clear();
  }

  /**
   * Writes `keys` as the new file, then scrubs the replaced file through a
   * descriptor opened before the rename: after the rename that descriptor is
   * the old inode, which a hard link, a backup tool or an open reader may
   * keep alive; its blocks are overwritten with zeros and synced.
   */
  private rewrite(keys: ReadonlyMap<number, ScalarBytes>): void {
    let old: number | undefined;
    try {
      old = fs.openSync(this.file, 'r+');
    } catch {
      old = undefined; // no old file to scrub (deleted by hand); the write below still happens
    }
    const bytes = serializeKeyFile(keys);
    try {
      writeFileAtomic(this.file, bytes);
      if (old !== undefined) scrubFd(old);
    } finally {
      bytes.fill(0);
      if (old !== undefined) fs.closeSync(old);
    }
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
