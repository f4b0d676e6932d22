/**
 * The directory snapshot: the in-memory directory (server/directory.ts) as
 * one compact binary file in the data folder, so that a restart loads it and
 * replays the directory journal (server/store.ts `directory_changes`) instead
 * of scanning the numbers table (68 s at 10^7 numbers; docs/operations.md,
 * "Restart").
 *
 * It holds exactly what the numbers table holds for the directory: each
 * registered number (as its digits, e164ToKey) and its capability mask; no
 * account, no token, no deleted number. Layout (little-endian):
 *
 *   offset      size  field
 *   0           8     magic "PCDDIRSN"
 *   8           4     format version (SNAPSHOT_FORMAT)
 *   12          4     reserved, 0
 *   16          8     directory version it reflects (float64, an integer)
 *   24          8     entries n (float64, an integer)
 *   32          16    directory digest of the entries (DirectoryDigest bytes)
 *   48          8n    keys (float64: the number's digits)
 *   48+8n       n     masks (uint8, never 0)
 *   48+9n       32    SHA-256 of every byte before it
 *
 * It is written atomically (temp file 0600, fsync, rename:
 * server/blinded/keys.ts writeFileAtomic) at a clean shutdown and after a
 * start that had to scan. A start trusts it only when the checksum, the
 * format, the journal (every change above its version still kept) and the
 * digest after the replay (against `meta.directory_digest`, kept by the store
 * in the same transaction as every change) all agree; otherwise it warns and
 * scans: a wrong directory is never served.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DIRECTORY_SNAPSHOT_FILE } from '../disk/files.ts';
import { writeFileAtomic } from './blinded/keys.ts';
import { DIRECTORY_DIGEST_BYTES } from './directory.ts';

export const SNAPSHOT_MAGIC = 'PCDDIRSN';
export const SNAPSHOT_FORMAT = 1;
const HEADER_BYTES = 48;
const CHECKSUM_BYTES = 32;

/** A snapshot's content: parallel arrays of keys and masks, the version and digest they reflect. */
export interface SnapshotData {
  version: number;
  digest: Uint8Array;
  keys: Float64Array;
  masks: Uint8Array;
}

export function snapshotPath(dataDir: string): string {
  return path.join(dataDir, DIRECTORY_SNAPSHOT_FILE);
}

/** The file's bytes for `data`. */
export function encodeSnapshot(data: SnapshotData): Uint8Array {
  const n = data.keys.length;
  if (data.masks.length !== n || data.digest.length !== DIRECTORY_DIGEST_BYTES) throw new Error('snapshot: inconsistent arrays');
  const out = new Uint8Array(HEADER_BYTES + 9 * n + CHECKSUM_BYTES);
  const view = new DataView(out.buffer);
  out.set(Buffer.from(SNAPSHOT_MAGIC, 'latin1'), 0);
  view.setUint32(8, SNAPSHOT_FORMAT, true);
  view.setFloat64(16, data.version, true);
  view.setFloat64(24, n, true);
  out.set(data.digest, 32);
  // Float64Array is little-endian on every platform Node runs on (x86-64, arm64).
  new Float64Array(out.buffer, HEADER_BYTES, n).set(data.keys);
  out.set(data.masks, HEADER_BYTES + 8 * n);
  const body = out.subarray(0, HEADER_BYTES + 9 * n);
  out.set(crypto.createHash('sha256').update(body).digest(), body.length);
  return out;
}

/** Decodes a snapshot's bytes; throws with the reason when it is corrupt, truncated or of another format. */
export function decodeSnapshot(bytes: Uint8Array): SnapshotData {
  if (bytes.length < HEADER_BYTES + CHECKSUM_BYTES) throw new Error(`truncated (${bytes.length} bytes)`);
  if (Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== SNAPSHOT_MAGIC) throw new Error('not a directory snapshot (magic)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = view.getUint32(8, true);
  if (format !== SNAPSHOT_FORMAT) throw new Error(`format ${format}, this server reads ${SNAPSHOT_FORMAT}`);
  const version = view.getFloat64(16, true);
  const n = view.getFloat64(24, true);
  if (!Number.isSafeInteger(version) || version < 0 || !Number.isSafeInteger(n) || n < 0) throw new Error('bad header');
  if (bytes.length !== HEADER_BYTES + 9 * n + CHECKSUM_BYTES) throw new Error(`truncated or padded: ${bytes.length} bytes for ${n} entries`);
  const body = bytes.subarray(0, HEADER_BYTES + 9 * n);
  const sum = crypto.createHash('sha256').update(body).digest();
  if (!sum.equals(bytes.subarray(body.length))) throw new Error('checksum mismatch (corrupt)');
  // A view when the keys are 8-byte aligned (readSnapshot's buffer is), else a copy.
  const at = bytes.byteOffset + HEADER_BYTES;
  let keys: Float64Array;
  if (at % 8 === 0) keys = new Float64Array(bytes.buffer, at, n);
  else {
    keys = new Float64Array(n);
    new Uint8Array(keys.buffer).set(bytes.subarray(HEADER_BYTES, HEADER_BYTES + 8 * n));
  }
  return { version, digest: bytes.slice(32, 48), keys, masks: bytes.subarray(HEADER_BYTES + 8 * n, HEADER_BYTES + 9 * n) };
}

/** Writes the snapshot atomically (0600). */
export function writeSnapshot(dataDir: string, data: SnapshotData): void {
  writeFileAtomic(snapshotPath(dataDir), encodeSnapshot(data));
}

/** The snapshot's content, undefined when there is none; throws when it is unreadable or invalid. */
export function readSnapshot(dataDir: string): SnapshotData | undefined {
  let fd: number;
  try {
    fd = fs.openSync(snapshotPath(dataDir), 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    // Into an ArrayBuffer of its own (offset 0), so that the keys are decoded as a view, not copied.
    const bytes = new Uint8Array(fs.fstatSync(fd).size);
    for (let off = 0; off < bytes.length; ) {
      const got = fs.readSync(fd, bytes, off, bytes.length - off, off);
      if (got === 0) throw new Error('truncated while reading');
      off += got;
    }
    return decodeSnapshot(bytes);
  } finally {
    fs.closeSync(fd);
  }
}
