/**
 * The OPRF key file: `<dataDir>/oprf-keys.json`, one secret key per live
 * epoch, kept apart from the SQLite database so the database can be copied,
 * audited or handed over without the keys (docs/operations.md, "The data folder").
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
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { publicKeyOf } from '../../shared/noble.ts';
import type { ScalarBytes } from '../../shared/suite.ts';
import { badKeyFile as bad, keyFilePath, readKeyFile, serializeKeyFile } from '../../disk/keyfile.ts';
import { FILE_MODE, scrubFd, writeFileAtomic } from '../atomic.ts';

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
