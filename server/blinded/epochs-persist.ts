/**
 * When the live epochs' cache files are written (server/blinded/epochs.ts;
 * the file format is server/blinded/table.ts), and the journal pruning that
 * follows each write. After directory changes the writes are debounced
 * (1 s after the last change, at most 10 s after the first), one per
 * changed epoch; an epoch just built or recovered without a usable cache is
 * written at once. After every write the directory journal is pruned down
 * to the lowest cache version of the live epochs, so deleted numbers are
 * kept no longer than a cache needs them to be replayed.
 */
import type { ServerContext } from '../context.ts';
import type { LiveEpoch } from './epoch.ts';
import { directoryDigestAt } from './recovery.ts';
import { writeCacheFile } from './table.ts';

const PERSIST_DEBOUNCE_MS = 1000;
const PERSIST_MAX_WAIT_MS = 10_000;

export class EpochCaches {
  private timer: NodeJS.Timeout | undefined;
  private deadline = 0;
  private closed = false;

  constructor(
    private readonly ctx: ServerContext,
    /** The live epochs, by number: the Epochs' own map. */
    private readonly live: ReadonlyMap<number, LiveEpoch>,
  ) {}

  /** Writes every changed epoch soon: debounced, bounded by the longest wait. */
  schedule(): void {
    if (this.closed) return;
    const now = Date.now();
    if (!this.timer) this.deadline = now + PERSIST_MAX_WAIT_MS;
    else clearTimeout(this.timer);
    this.timer = setTimeout(() => this.persist(), Math.max(0, Math.min(PERSIST_DEBOUNCE_MS, this.deadline - now)));
    this.timer.unref();
  }

  /** Writes the cache file of every changed epoch now. */
  persist(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const e of this.live.values()) if (e.dirty) this.write(e);
  }

  /**
   * Writes one epoch's cache file, then prunes the journal. A failure is
   * logged, not thrown: the buckets in memory are right, the epoch stays
   * dirty, the journal keeps what it needs, and the next persist (or the
   * next start, which replays) makes up for it.
   */
  write(e: LiveEpoch): void {
    if (!e.table) return;
    try {
      // The digest of the directory the table reflects, which a start checks the directory against (server/blinded/recovery.ts).
      const directoryDigest = directoryDigestAt(this.ctx, e.version);
      if (!directoryDigest) throw new Error(`the digest of directory version ${e.version} cannot be computed`);
      writeCacheFile(this.ctx.options.dataDir, e.table, { mode: e.params.mode, publicKey: e.key.publicKey, directoryVersion: e.version, directoryDigest });
      e.dirty = false;
      e.cachedVersion = e.version;
    } catch (err) {
      this.ctx.logger.error({ epoch: e.epoch, err: (err as Error).message }, 'could not write the epoch cache');
      return;
    }
    this.pruneJournal();
  }

  /** Writes what changed, then schedules nothing more. */
  close(): void {
    this.persist(); // writes every changed epoch, logs (does not throw) on failure
    this.closed = true;
  }

  /** Deletes the journal rows every live epoch's cache reflects already (an epoch without a cache is built, not replayed). */
  private pruneJournal(): void {
    let upTo = Infinity;
    for (const e of this.live.values()) if (e.cachedVersion !== undefined) upTo = Math.min(upTo, e.cachedVersion);
    if (upTo === Infinity) return;
    try {
      this.ctx.store.pruneDirectoryChanges(upTo);
    } catch (err) {
      this.ctx.logger.error({ err: (err as Error).message }, 'could not prune the directory journal');
    }
  }
}
