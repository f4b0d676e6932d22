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
 * - Destroying an epoch's key rewrites the file without it and then
 *   overwrites the old file's blocks through a descriptor kept open across
 *   the rename (see {@link KeyFile.destroy}).
 *
 * A secret key never appears in a log line, an error message or a reply:
 * the messages here name epochs and files, never key bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { bytesToHex, hexToBytes } from '@noble/hashes/utils.js';
import { publicKeyOf } from '../../shared/oprf.ts';
import { SCALAR_BYTES, type ScalarBytes } from '../../shared/suite.ts';

export const KEY_FILE = 'oprf-keys.json';
const FILE_MODE = 0o600;
const KEY_FILE_VERSION = 1;

interface KeyFileJson {
  version: 1;
  keys: { epoch: number; secretKey: string }[];
}

export function keyFilePath(dataDir: string): string {
  return path.join(dataDir, KEY_FILE);
}

/** Parses and checks the key file's text; errors name the file and the entry, never key bytes. */
function parseKeyFile(file: string, text: string): Map<number, ScalarBytes> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${file}: not valid JSON`);
  }
  const obj = json as Partial<KeyFileJson> | null;
  if (typeof obj !== 'object' || obj === null || obj.version !== KEY_FILE_VERSION || !Array.isArray(obj.keys)) {
    throw new Error(`${file}: expected { "version": ${KEY_FILE_VERSION}, "keys": [...] }`);
  }
  const keys = new Map<number, ScalarBytes>();
  obj.keys.forEach((entry: unknown, i) => {
    const e = entry as { epoch?: unknown; secretKey?: unknown } | null;
    if (typeof e !== 'object' || e === null) throw new Error(`${file}: keys[${i}] is not an object`);
    const { epoch, secretKey } = e;
    if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 1) {
      throw new Error(`${file}: keys[${i}].epoch must be a positive integer`);
    }
    if (keys.has(epoch)) throw new Error(`${file}: epoch ${epoch} is listed twice`);
    if (typeof secretKey !== 'string' || !/^[0-9a-f]+$/i.test(secretKey) || secretKey.length !== 2 * SCALAR_BYTES) {
      throw new Error(`${file}: keys[${i}].secretKey (epoch ${epoch}) must be ${2 * SCALAR_BYTES} hex digits`);
    }
    const sk = hexToBytes(secretKey.toLowerCase());
    try {
      publicKeyOf(sk); // canonical, nonzero scalar
    } catch {
      throw new Error(`${file}: the secret key of epoch ${epoch} is not a valid ristretto255 scalar`);
    }
    keys.set(epoch, sk);
  });
  return keys;
}

function serialize(keys: ReadonlyMap<number, ScalarBytes>): string {
  const json: KeyFileJson = {
    version: KEY_FILE_VERSION,
    keys: [...keys.entries()].sort(([a], [b]) => a - b).map(([epoch, sk]) => ({ epoch, secretKey: bytesToHex(sk) })),
  };
  return JSON.stringify(json, null, 2) + '\n';
}

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
 * Writes `text` to `file` atomically with mode 0600: temp file, fsync, rename,
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
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
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
      writeFileAtomic(file, serialize(keys));
      return new KeyFile(file, keys, warnings);
    }
    const st = fs.statSync(file);
    if (!st.isFile()) throw new Error(`${file} is not a regular file`);
    if (process.platform !== 'win32' && (st.mode & 0o777) !== FILE_MODE) {
      fs.chmodSync(file, FILE_MODE);
      warnings.push(`${file} had mode ${(st.mode & 0o777).toString(8)}; set it to 600 (only the server user may read OPRF keys)`);
    }
    return new KeyFile(file, parseKeyFile(file, fs.readFileSync(file, 'utf8')), warnings);
  }

  /** Epochs that have a key, ascending. */
  epochs(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  has(epoch: number): boolean {
    return this.keys.has(epoch);
  }

  /** The secret key of `epoch` (a copy), or undefined. */
  get(epoch: number): ScalarBytes | undefined {
    const sk = this.keys.get(epoch);
    return sk && sk.slice();
  }

  /** Adds the key of a new epoch and writes the file before returning. */
  add(epoch: number, secretKey: ScalarBytes): void {
    if (this.keys.has(epoch)) throw new Error(`${this.file}: epoch ${epoch} has a key already`);
    publicKeyOf(secretKey); // throws on a bad scalar before anything is written
    const next = new Map(this.keys);
    next.set(epoch, secretKey.slice());
    writeFileAtomic(this.file, serialize(next));
    this.keys.set(epoch, secretKey.slice());
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
    let old: number | undefined;
    try {
      old = fs.openSync(this.file, 'r+');
    } catch {
      old = undefined; // no old file to scrub (deleted by hand); the rewrite below still happens
    }
    try {
      writeFileAtomic(this.file, serialize(next));
      if (old !== undefined) scrubFd(old);
    } finally {
      if (old !== undefined) fs.closeSync(old);
    }
    sk.fill(0);
    this.keys.delete(epoch);
    return true;
  }
}

/**
 * Read-only view for tools (the audit): every epoch's secret key in the key
 * file, or an empty map when there is none. Never writes, never fixes modes.
 */
export function readEpochKeys(dataDir: string): Map<number, Uint8Array> {
  const file = keyFilePath(dataDir);
  if (!fs.existsSync(file)) return new Map();
  return parseKeyFile(file, fs.readFileSync(file, 'utf8'));
}
