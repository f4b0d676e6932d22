/**
 * The directory snapshot: the in-memory directory (server/directory.ts) as
 * one compact binary file in the data folder, so that a restart loads it and
 * replays the directory journal (server/store.ts `directory_changes`) instead
 * of scanning the numbers table (68 s at 10^7 numbers; docs/operations.md,
 * "Restart").
 *
 * It holds exactly what the numbers table holds for the directory: each
 * registered number (as its digits, e164ToKey) and its capability mask; no
 * account, no token, no deleted number. The frame (magic "PCDDIRSN", the
 * version and digest, the checksum) is disk/snapshotfile.ts's; the n entries
 * are the keys (float64: the number's digits, 8n bytes) then the masks
 * (uint8, never 0, n bytes).
 *
 * It is written atomically (temp file 0600, fsync, rename:
 * server/atomic.ts writeFileAtomic) at a clean shutdown and after a
 * start that had to scan. A start trusts it only when the checksum, the
 * format, the journal (every change above its version still kept) and the
 * digest after the replay (against `meta.directory_digest`, kept by the store
 * in the same transaction as every change) all agree; otherwise it warns and
 * scans: a wrong directory is never served.
 */
import path from 'node:path';
import { DIRECTORY_SNAPSHOT_FILE } from '../disk/files.ts';
import { SNAPSHOT_HEADER_BYTES as H, decodeSnapshotFile, encodeSnapshotFile, float64sAt, readSnapshotFile, type SnapshotKind } from '../disk/snapshotfile.ts';
import { writeFileAtomic } from './atomic.ts';
import { DIRECTORY_DIGEST_BYTES } from './directory-digest.ts';

export const SNAPSHOT_MAGIC = 'PCDDIRSN';
export const SNAPSHOT_FORMAT = 1;
const KIND: SnapshotKind = { magic: SNAPSHOT_MAGIC, format: SNAPSHOT_FORMAT, name: 'directory snapshot', bytesPerEntry: 9 };

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
  return encodeSnapshotFile(KIND, { version: data.version, count: n, digest: data.digest }, (out) => {
    // Float64Array is little-endian on every platform Node runs on (x86-64, arm64).
    new Float64Array(out.buffer, H, n).set(data.keys);
    out.set(data.masks, H + 8 * n);
  });
}

/** Decodes a snapshot's bytes; throws with the reason when it is corrupt, truncated or of another format. */
export function decodeSnapshot(bytes: Uint8Array): SnapshotData {
  const { version, count: n, digest } = decodeSnapshotFile(KIND, bytes);
  return { version, digest, keys: float64sAt(bytes, H, n), masks: bytes.subarray(H + 8 * n, H + 9 * n) };
}

/** Writes the snapshot atomically (0600). */
export function writeSnapshot(dataDir: string, data: SnapshotData): void {
  writeFileAtomic(snapshotPath(dataDir), encodeSnapshot(data));
}

/** The snapshot's content, undefined when there is none; throws when it is unreadable or invalid. */
export function readSnapshot(dataDir: string): SnapshotData | undefined {
  const bytes = readSnapshotFile(snapshotPath(dataDir));
  return bytes && decodeSnapshot(bytes);
}
