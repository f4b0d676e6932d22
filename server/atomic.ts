/**
 * Files written whole and atomically, for everything the server keeps beside
 * its database (keys, snapshots, the lock's owner record, log spills): temp
 * file, fsync, rename, fsync of the folder, so a crash leaves the old or the
 * new file, never half of one; and a leftover temp file, which may hold key
 * bytes, overwritten with zeros before it is removed.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Mode of every file that may hold a secret: owner read and write only. */
export const FILE_MODE = 0o600;

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
export function scrubFd(fd: number): void {
  const size = fs.fstatSync(fd).size;
  if (size === 0) return;
  const zeros = Buffer.alloc(Math.min(size, 1 << 16));
  for (let off = 0; off < size; off += zeros.length) fs.writeSync(fd, zeros, 0, Math.min(zeros.length, size - off), off);
  fs.fsyncSync(fd);
}

/** Zeroes what a failed write left in its temp file; a scrub that fails too (the disk is full) leaves the removal to do. */
function scrubQuietly(fd: number): void {
  try {
    scrubFd(fd);
  } catch {
    // nothing more to do: the file is removed next
  }
}

/**
 * Writes `data` to `file` atomically with mode 0600: temp file, fsync, rename,
 * fsync of the folder. A temp file left by a crash may hold keys: it is
 * overwritten with zeros before it is removed. A write that fails (a full
 * disk: ENOSPC) scrubs and removes its own temp file before it throws, so
 * nothing is left beside `file`; the caller maps the error
 * (server/store.ts storeErrorToPcdError: 503 with Retry-After).
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
  let written = false;
  try {
    fs.fchmodSync(fd, mode); // the umask may have narrowed or the platform ignored the open mode
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let off = 0; off < bytes.length; ) off += fs.writeSync(fd, bytes, off, bytes.length - off);
    fs.fsyncSync(fd);
    written = true;
  } finally {
    if (!written) scrubQuietly(fd); // part of the data (key bytes) may have reached the disk
    fs.closeSync(fd);
    if (!written) fs.rmSync(tmp, { force: true });
  }
  try {
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true }); // complete, but never to be used: the next write makes its own
    throw e;
  }
  fsyncDir(path.dirname(file));
}
