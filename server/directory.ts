/**
 * The in-memory directory index: every registered number's capability mask,
 * keyed by the number's digits (e164ToKey) in a compact KeyTable. Loaded
 * from the store at start; every registration or deletion updates it before
 * the admin call returns, so the very next lookup sees it.
 *
 * It also keeps a digest of its content ({@link Directory.digest}), which the
 * blinded design's epoch caches record and check when loaded
 * (server/blinded/recovery.ts, docs/operations.md): a cache built from one
 * directory is never served for another, even when the database changed
 * under it without a version bump (a damaged or edited `pcd.sqlite` whose
 * SQLite integrity check still passes).
 */
import type { CapabilityMask } from '../shared/capabilities.ts';
import type { DirectoryChange } from '../shared/design.ts';
import { e164ToKey, keyToE164, type E164 } from '../shared/e164.ts';
import { DirectoryDigest } from './directory-digest.ts';
import { KeyTable } from './keytable.ts';
import { Store } from './store.ts';
import { SqliteDirectoryStore, type DirectoryStore } from './directory-store.ts';
import { readSnapshot, writeSnapshot, type SnapshotData } from './directory-snapshot.ts';

/** The store behind the async interface (server/directory-store.ts): SQLite's Store is wrapped. */
function asDirectoryStore(from: Store | DirectoryStore): DirectoryStore {
  return from instanceof Store ? new SqliteDirectoryStore(from) : from;
}

/** Where {@link Directory.open} took the directory from, for the log and the tests. */
export type DirectorySource = 'snapshot' | 'scan';

/**
 * A start from the snapshot: the version, digest and size of the directory
 * snapshot loaded, and the journal replayed on it, so that a design keeping
 * a snapshot of its own index at the same version (server/designs/hashed.ts)
 * can load it and replay the same changes.
 */
export interface DirectoryRestart {
  version: number;
  digest: Uint8Array;
  size: number;
  changes: readonly DirectoryChange[];
}

interface WarnLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export class Directory {
  private readonly table: KeyTable;
  private readonly sum = new DirectoryDigest();

  private constructor(expected: number) {
    this.table = new KeyTable(Uint8Array, false, expected);
  }

  /** The directory from a full scan of the store, and the directory version it reflects (one moment, even while other nodes write). */
  static async load(from: Store | DirectoryStore): Promise<{ directory: Directory; version: number }> {
    const store = asDirectoryStore(from);
    const d = new Directory(await store.directorySize());
    const version = await store.scanDirectory(({ number, mask }) => {
      const key = e164ToKey(number);
      d.sum.update(key, d.table.get(key), -1); // a number listed twice counts once, as in the table
      d.table.set(key, mask);
      d.sum.update(key, mask, 1);
    });
    return { directory: d, version };
  }

  /**
   * The directory of `store` at its current version: from the snapshot in
   * `dataDir` and the journal above it when both are sound
   * (server/directory-snapshot.ts), else from a full scan of the numbers
   * table, with a warning saying why the snapshot was not used. After a
   * scan the store's digest (`meta.directory_digest`) is set from it, and
   * a fresh snapshot is written so that the next start, even after a crash,
   * need not scan. `version` is the directory version the result reflects.
   *
   * A Postgres store may change under the start (other nodes): the scan
   * reads one moment, and the replay stops at the version it read; a change
   * between reading the digest and the journal shows as a digest mismatch,
   * and the start then scans (slower, never wrong).
   */
  static async open(
    from: Store | DirectoryStore,
    dataDir: string,
    logger?: WarnLogger,
  ): Promise<{ directory: Directory; source: DirectorySource; version: number; snapshotVersion: number | undefined; restart?: DirectoryRestart }> {
    const store = asDirectoryStore(from);
    const version = await store.directoryVersion();
    const expected = await store.directoryDigest();
    let reason: string;
    try {
      const snap = readSnapshot(dataDir);
      if (!snap) reason = 'no snapshot';
      else if (!expected) reason = 'the store keeps no directory digest yet';
      else if (!(await store.directoryWritesAcknowledged())) reason = 'the numbers table was written outside the server (edited?)';
      else if (snap.version > version) reason = `snapshot of version ${snap.version} is ahead of the store (${version})`;
      else {
        const changes = (await store.directoryChangesSince(snap.version))?.filter((c) => c.version <= version);
        if (!changes) reason = `the journal no longer holds every change since the snapshot's version ${snap.version} (pruned, or a bulk insert)`;
        else {
          const d = Directory.fromSnapshot(snap, changes.length);
          d.apply(changes);
          if (d.sum.equals(expected)) {
            logger?.info({ version, snapshotVersion: snap.version, replayed: changes.length, size: d.size }, 'directory loaded from its snapshot');
            const restart = { version: snap.version, digest: snap.digest, size: snap.keys.length, changes };
            return { directory: d, source: 'snapshot', version, snapshotVersion: snap.version, restart };
          }
          reason = 'digest mismatch after the journal replay (a snapshot of another folder or directory)';
        }
      }
    } catch (e) {
      reason = `unreadable snapshot: ${(e as Error).message}`;
    }
    if (reason !== 'no snapshot') logger?.warn({ reason }, 'directory snapshot ignored: scanning the numbers table');
    const { directory: d, version: scanned } = await Directory.load(store);
    await store.recordDirectoryScan(d.sum, scanned);
    let snapshotVersion: number | undefined;
    try {
      d.writeSnapshot(dataDir, scanned);
      snapshotVersion = scanned;
    } catch (e) {
      logger?.warn({ err: (e as Error).message }, 'could not write the directory snapshot');
    }
    return { directory: d, source: 'scan', version: scanned, snapshotVersion };
  }

  private static fromSnapshot(snap: SnapshotData, extra: number): Directory {
    const d = new Directory(snap.keys.length + extra);
    const { keys, masks } = snap;
    for (let i = 0; i < keys.length; i++) {
      if (masks[i] === 0) throw new Error('snapshot entry with mask 0');
      d.table.set(keys[i]!, masks[i]!);
    }
    if (d.table.size !== keys.length) throw new Error('snapshot lists a number twice');
    d.sum.lanes.set(DirectoryDigest.fromBytes(snap.digest).lanes);
    return d;
  }

  /** Writes the snapshot of the entries now, stamped with `version` (the directory version they reflect). */
  writeSnapshot(dataDir: string, version: number): void {
    const n = this.table.size;
    const keys = new Float64Array(n);
    const masks = new Uint8Array(n);
    let i = 0;
    for (const [k, m] of this.table.entries()) {
      keys[i] = k;
      masks[i++] = m;
    }
    writeSnapshot(dataDir, { version, digest: this.sum.bytes(), keys, masks });
  }

  get size(): number {
    return this.table.size;
  }

  get byteLength(): number {
    return this.table.byteLength;
  }

  /** Capability mask of a number; 0 when it is not registered. */
  mask(number: E164): CapabilityMask {
    return this.table.get(e164ToKey(number));
  }

  apply(changes: readonly DirectoryChange[]): void {
    for (const { number, mask } of changes) {
      const key = e164ToKey(number);
      this.sum.update(key, this.table.get(key), -1);
      this.sum.update(key, mask, 1);
      if (mask === 0) this.table.delete(key);
      else this.table.set(key, mask);
    }
  }

  /** The digest of the entries now (a copy: see {@link DirectoryDigest}). */
  digest(): DirectoryDigest {
    return this.sum.copy();
  }

  *entries(): Generator<DirectoryChange> {
    for (const [key, mask] of this.table.entries()) yield { number: keyToE164(key), mask };
  }
}

/** The changes that turn `from` into `to` (a rescan after a gap in the journal): numbers added, changed or gone (mask 0). */
export function directoryDifference(from: Directory, to: Directory): DirectoryChange[] {
  const out: DirectoryChange[] = [];
  for (const c of to.entries()) if (from.mask(c.number) !== c.mask) out.push(c);
  for (const c of from.entries()) if (to.mask(c.number) === 0) out.push({ number: c.number, mask: 0 });
  return out;
}
