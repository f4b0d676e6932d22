/**
 * The hashed design's index snapshot: the pairs of its index (a 48-bit
 * prefix of SHA-256(utf8(number)) → the number's digits) as one binary file
 * beside the directory snapshot (server/directory-snapshot.ts), so that a
 * restart loads them instead of hashing every registered number (about 10 s
 * of SHA-256 per 10^7 numbers; docs/operations.md, "Restart").
 *
 * It is written at the same moments as the directory snapshot, stamped with
 * the same directory version and digest, and trusted only for a directory
 * loaded from that very snapshot (same version, same digest), after which the
 * journal above it is replayed into the index by the path registrations
 * take. A prefix per number is as sensitive as the number: hashes of phone
 * numbers are reversed by enumeration (docs/threat-model.md). Layout
 * (little-endian):
 *
 *   offset      size  field
 *   0           8     magic "PCDHSHSN"
 *   8           4     format version (HASHED_SNAPSHOT_FORMAT)
 *   12          4     reserved, 0
 *   16          8     directory version it reflects (float64, an integer)
 *   24          8     entries n (float64, an integer)
 *   32          16    directory digest at that version (DirectoryDigest bytes)
 *   48          8n    prefixes (float64: the first 6 bytes of the hash, big-endian, as an integer)
 *   48+8n       8n    keys (float64: the number's digits, as in the directory snapshot)
 *   48+16n      32    SHA-256 of every byte before it
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HASHED_SNAPSHOT_FILE } from '../../disk/files.ts';
import { writeFileAtomic } from '../blinded/keys.ts';
import { DIRECTORY_DIGEST_BYTES } from '../directory.ts';

export const HASHED_SNAPSHOT_MAGIC = 'PCDHSHSN';
export const HASHED_SNAPSHOT_FORMAT = 1;
const HEADER_BYTES = 48;
const CHECKSUM_BYTES = 32;

/** The index's pairs (parallel arrays) and the directory version and digest they reflect. */
export interface HashedSnapshotData {
  version: number;
  digest: Uint8Array;
  prefixes: Float64Array;
  keys: Float64Array;
}

export function hashedSnapshotPath(dataDir: string): string {
  return path.join(dataDir, HASHED_SNAPSHOT_FILE);
}

export function encodeHashedSnapshot(data: HashedSnapshotData): Uint8Array {
  const n = data.keys.length;
  if (data.prefixes.length !== n || data.digest.length !== DIRECTORY_DIGEST_BYTES) throw new Error('hashed snapshot: inconsistent arrays');
  const out = new Uint8Array(HEADER_BYTES + 16 * n + CHECKSUM_BYTES);
  const view = new DataView(out.buffer);
  out.set(Buffer.from(HASHED_SNAPSHOT_MAGIC, 'latin1'), 0);
  view.setUint32(8, HASHED_SNAPSHOT_FORMAT, true);
  view.setFloat64(16, data.version, true);
  view.setFloat64(24, n, true);
  out.set(data.digest, 32);
  // Float64Array is little-endian on every platform Node runs on (x86-64, arm64).
  new Float64Array(out.buffer, HEADER_BYTES, n).set(data.prefixes);
  new Float64Array(out.buffer, HEADER_BYTES + 8 * n, n).set(data.keys);
  const body = out.subarray(0, HEADER_BYTES + 16 * n);
  out.set(crypto.createHash('sha256').update(body).digest(), body.length);
  return out;
}

/** Decodes the file's bytes (an ArrayBuffer of their own, offset 0); throws with the reason when corrupt, truncated or of another format. */
export function decodeHashedSnapshot(bytes: Uint8Array): HashedSnapshotData {
  if (bytes.length < HEADER_BYTES + CHECKSUM_BYTES) throw new Error(`truncated (${bytes.length} bytes)`);
  if (Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== HASHED_SNAPSHOT_MAGIC) throw new Error('not a hashed index snapshot (magic)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = view.getUint32(8, true);
  if (format !== HASHED_SNAPSHOT_FORMAT) throw new Error(`format ${format}, this server reads ${HASHED_SNAPSHOT_FORMAT}`);
  const version = view.getFloat64(16, true);
  const n = view.getFloat64(24, true);
  if (!Number.isSafeInteger(version) || version < 0 || !Number.isSafeInteger(n) || n < 0) throw new Error('bad header');
  if (bytes.length !== HEADER_BYTES + 16 * n + CHECKSUM_BYTES) throw new Error(`truncated or padded: ${bytes.length} bytes for ${n} entries`);
  const body = bytes.subarray(0, HEADER_BYTES + 16 * n);
  const sum = crypto.createHash('sha256').update(body).digest();
  if (!sum.equals(bytes.subarray(body.length))) throw new Error('checksum mismatch (corrupt)');
  const array = (at: number): Float64Array => {
    if ((bytes.byteOffset + at) % 8 === 0) return new Float64Array(bytes.buffer, bytes.byteOffset + at, n);
    const copy = new Float64Array(n);
    new Uint8Array(copy.buffer).set(bytes.subarray(at, at + 8 * n));
    return copy;
  };
  return { version, digest: bytes.slice(32, 48), prefixes: array(HEADER_BYTES), keys: array(HEADER_BYTES + 8 * n) };
}

/** Writes the file atomically (0600). */
export function writeHashedSnapshot(dataDir: string, data: HashedSnapshotData): void {
  writeFileAtomic(hashedSnapshotPath(dataDir), encodeHashedSnapshot(data));
}

/** The file's content, undefined when there is none; throws when it is unreadable or invalid. */
export function readHashedSnapshot(dataDir: string): HashedSnapshotData | undefined {
  let fd: number;
  try {
    fd = fs.openSync(hashedSnapshotPath(dataDir), 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const bytes = new Uint8Array(fs.fstatSync(fd).size);
    for (let off = 0; off < bytes.length; ) {
      const got = fs.readSync(fd, bytes, off, bytes.length - off, off);
      if (got === 0) throw new Error('truncated while reading');
      off += got;
    }
    return decodeHashedSnapshot(bytes);
  } finally {
    fs.closeSync(fd);
  }
}
