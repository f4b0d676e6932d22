/**
 * The frame both restart snapshots share (server/directory-snapshot.ts,
 * server/designs/hashed-snapshot.ts; docs/operations.md, "Restart"): a
 * header stamped with the directory version and digest the entries reflect,
 * the entries (a fixed number of bytes each, laid out by the caller), and a
 * SHA-256 of everything before it. Little-endian:
 *
 *   offset      size  field
 *   0           8     magic (the kind's)
 *   8           4     format version (the kind's)
 *   12          4     reserved, 0
 *   16          8     directory version (float64, an integer)
 *   24          8     entries n (float64, an integer)
 *   32          16    directory digest at that version
 *   48          b·n   the entries (b bytes each)
 *   48+b·n      32    SHA-256 of every byte before it
 *
 * Written atomically by the callers (server/atomic.ts writeFileAtomic);
 * read whole into an ArrayBuffer of its own, so that 8-byte columns decode as
 * views, not copies.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';

export const SNAPSHOT_HEADER_BYTES = 48;
const CHECKSUM_BYTES = 32;
const DIGEST_BYTES = 16;

/** What a kind of snapshot file is: its magic (8 latin-1 characters), format, name in errors and entry size. */
export interface SnapshotKind {
  magic: string;
  format: number;
  name: string;
  bytesPerEntry: number;
}

export interface SnapshotStamp {
  version: number;
  count: number;
  digest: Uint8Array;
}

/** The file's bytes: the header of `stamp`, the entries `fill` writes at offset SNAPSHOT_HEADER_BYTES, the checksum. */
export function encodeSnapshotFile(kind: SnapshotKind, stamp: SnapshotStamp, fill: (out: Uint8Array) => void): Uint8Array {
  if (stamp.digest.length !== DIGEST_BYTES) throw new Error(`${kind.name}: a digest of ${stamp.digest.length} bytes`);
  const end = SNAPSHOT_HEADER_BYTES + kind.bytesPerEntry * stamp.count;
  const out = new Uint8Array(end + CHECKSUM_BYTES);
  const view = new DataView(out.buffer);
  out.set(Buffer.from(kind.magic, 'latin1'), 0);
  view.setUint32(8, kind.format, true);
  view.setFloat64(16, stamp.version, true);
  view.setFloat64(24, stamp.count, true);
  out.set(stamp.digest, 32);
  fill(out);
  out.set(crypto.createHash('sha256').update(out.subarray(0, end)).digest(), end);
  return out;
}

/** The stamp of a file's bytes; throws with the reason when they are truncated, of another kind or format, or corrupt. */
export function decodeSnapshotFile(kind: SnapshotKind, bytes: Uint8Array): SnapshotStamp {
  if (bytes.length < SNAPSHOT_HEADER_BYTES + CHECKSUM_BYTES) throw new Error(`truncated (${bytes.length} bytes)`);
  if (Buffer.from(bytes.subarray(0, 8)).toString('latin1') !== kind.magic) throw new Error(`not a ${kind.name} (magic)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = view.getUint32(8, true);
  if (format !== kind.format) throw new Error(`format ${format}, this server reads ${kind.format}`);
  const version = view.getFloat64(16, true);
  const count = view.getFloat64(24, true);
  if (!Number.isSafeInteger(version) || version < 0 || !Number.isSafeInteger(count) || count < 0) throw new Error('bad header');
  const end = SNAPSHOT_HEADER_BYTES + kind.bytesPerEntry * count;
  if (bytes.length !== end + CHECKSUM_BYTES) throw new Error(`truncated or padded: ${bytes.length} bytes for ${count} entries`);
  const sum = crypto.createHash('sha256').update(bytes.subarray(0, end)).digest();
  if (!sum.equals(bytes.subarray(end))) throw new Error('checksum mismatch (corrupt)');
  return { version, count, digest: bytes.slice(32, 32 + DIGEST_BYTES) };
}

/** `n` float64s at byte `at` of `bytes`: a view when aligned (readSnapshotFile's buffer is), else a copy. */
export function float64sAt(bytes: Uint8Array, at: number, n: number): Float64Array {
  if ((bytes.byteOffset + at) % 8 === 0) return new Float64Array(bytes.buffer, bytes.byteOffset + at, n);
  const copy = new Float64Array(n);
  new Uint8Array(copy.buffer).set(bytes.subarray(at, at + 8 * n));
  return copy;
}

/** The whole file, in an ArrayBuffer of its own (offset 0); undefined when there is none. */
export function readSnapshotFile(file: string): Uint8Array | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
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
    return bytes;
  } finally {
    fs.closeSync(fd);
  }
}
