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
 * numbers are reversed by enumeration (docs/threat-model.md). The frame
 * (magic "PCDHSHSN", the version and digest, the checksum) is
 * disk/snapshotfile.ts's; the n entries are the prefixes (float64: the first
 * 6 bytes of the hash, big-endian, as an integer; 8n bytes) then the keys
 * (float64: the number's digits, as in the directory snapshot; 8n bytes).
 */
import path from 'node:path';
import { HASHED_SNAPSHOT_FILE } from '../../disk/files.ts';
import { SNAPSHOT_HEADER_BYTES as H, decodeSnapshotFile, encodeSnapshotFile, float64sAt, readSnapshotFile, type SnapshotKind } from '../../disk/snapshotfile.ts';
import { writeFileAtomic } from '../atomic.ts';
import { DIRECTORY_DIGEST_BYTES } from '../directory-digest.ts';

export const HASHED_SNAPSHOT_MAGIC = 'PCDHSHSN';
export const HASHED_SNAPSHOT_FORMAT = 1;
const KIND: SnapshotKind = { magic: HASHED_SNAPSHOT_MAGIC, format: HASHED_SNAPSHOT_FORMAT, name: 'hashed index snapshot', bytesPerEntry: 16 };

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
  return encodeSnapshotFile(KIND, { version: data.version, count: n, digest: data.digest }, (out) => {
    // Float64Array is little-endian on every platform Node runs on (x86-64, arm64).
    new Float64Array(out.buffer, H, n).set(data.prefixes);
    new Float64Array(out.buffer, H + 8 * n, n).set(data.keys);
  });
}

/** Decodes the file's bytes (an ArrayBuffer of their own, offset 0); throws with the reason when corrupt, truncated or of another format. */
export function decodeHashedSnapshot(bytes: Uint8Array): HashedSnapshotData {
  const { version, count: n, digest } = decodeSnapshotFile(KIND, bytes);
  return { version, digest, prefixes: float64sAt(bytes, H, n), keys: float64sAt(bytes, H + 8 * n, n) };
}

/** Writes the file atomically (0600). */
export function writeHashedSnapshot(dataDir: string, data: HashedSnapshotData): void {
  writeFileAtomic(hashedSnapshotPath(dataDir), encodeHashedSnapshot(data));
}

/** The file's content, undefined when there is none; throws when it is unreadable or invalid. */
export function readHashedSnapshot(dataDir: string): HashedSnapshotData | undefined {
  const bytes = readSnapshotFile(hashedSnapshotPath(dataDir));
  return bytes && decodeHashedSnapshot(bytes);
}
