/**
 * Loading and building the tables of epochs (server/blinded/epochs.ts):
 * recovery from the cache file plus the journal (server/blinded/recovery.ts)
 * or a build (server/blinded/build.ts), the one build under way (a rotation
 * waits for it; a 503 names it), the queues that catch the directory changes
 * arriving meanwhile, and the start-up order of the live epochs.
 *
 * A queue is registered before the journal is read or the directory copied,
 * and the changes it caught are applied in the same synchronous step that
 * puts the table in place (and unregisters the queue), so no change falls
 * in between.
 */
import type { DirectoryChange } from '../../shared/design.ts';
import { bucketOf } from '../../shared/buckets.ts';
import type { KeyPair, OprfBackend } from '../../shared/suite.ts';
import type { ServerContext } from '../context.ts';
import { buildEpoch, checkAbort, snapshotDirectory, tagOf, type AbortFlag, type BuildResult, type Snapshot } from './build.ts';
import type { EpochStats, LiveEpoch } from './epoch.ts';
import type { EpochCaches } from './epochs-persist.ts';
import { recoverFromCache } from './recovery.ts';
import type { BucketTable, EpochParams } from './table.ts';

export interface PrepareOptions {
  readonly ctx: ServerContext;
  readonly backend: OprfBackend;
  readonly stats: EpochStats;
  /** Set when the server closes: every load and build stops. */
  readonly abort: AbortFlag;
  readonly caches: EpochCaches;
  /** The live epochs, by number: the Epochs' own map (an epoch no longer in it was destroyed). */
  readonly live: ReadonlyMap<number, LiveEpoch>;
}

export class EpochPreparer {
  /** One queue per epoch being prepared or built: every directory change is pushed to each. */
  private readonly queues = new Set<DirectoryChange[]>();
  private active: { epoch: number; done: number; total: number } | undefined;
  private preparingAll = true;

  constructor(private readonly o: PrepareOptions) {}

  /** The build under way, if any, and how far it is. */
  get building(): { epoch: number; done: number; total: number } | undefined {
    return this.active && { ...this.active };
  }

  /** True until {@link prepareAll} is done. */
  get starting(): boolean {
    return this.preparingAll;
  }

  /** Pushes directory changes to every queue: to each epoch being prepared or built. */
  queue(changes: readonly DirectoryChange[]): void {
    for (const q of this.queues) q.push(...changes);
  }

  /** A new queue: every change from now on is pushed to it until {@link closeQueue}. */
  openQueue(): DirectoryChange[] {
    const queue: DirectoryChange[] = [];
    this.queues.add(queue);
    return queue;
  }

  closeQueue(queue: DirectoryChange[]): void {
    this.queues.delete(queue);
  }

  /**
   * Prepares epochs one at a time, `current` first, then newest first:
   * every epoch that comes back from its cache before any build starts (so
   * an old epoch with a cache is not kept waiting behind a long build), then
   * the builds. Rejects with the first failure once all were tried (the
   * failed epoch then answers 503 saying why).
   */
  async prepareAll(todo: LiveEpoch[], current: number): Promise<void> {
    const { ctx, abort, live } = this.o;
    const order = todo.sort((a, b) => (a.epoch === current ? -1 : b.epoch === current ? 1 : b.epoch - a.epoch));
    let failure: unknown;
    const attempt = async (e: LiveEpoch, mayBuild: boolean): Promise<boolean> => {
      checkAbort(abort);
      if (live.get(e.epoch) !== e) return true; // destroyed meanwhile
      try {
        return await this.prepare(e, mayBuild);
      } catch (err) {
        if (abort.aborted) throw err;
        if (live.get(e.epoch) !== e) return true; // retired while it was prepared: nothing failed
        failure ??= err;
        e.preparing = { phase: 'failed', done: 0, total: 0, since: performance.now(), error: (err as Error).message };
        ctx.logger.error({ epoch: e.epoch, err: (err as Error).message }, 'could not prepare the buckets of an epoch');
        return true;
      }
    };
    try {
      const toBuild: LiveEpoch[] = [];
      for (const e of order) if (!(await attempt(e, false))) toBuild.push(e);
      for (const e of toBuild) await attempt(e, true);
    } finally {
      this.preparingAll = false;
      for (const e of live.values()) if (e.preparing?.phase === 'waiting') e.preparing = undefined;
    }
    if (failure) throw failure;
  }

  /**
   * Loads an epoch's cache and replays the journal onto it; else builds it
   * when `mayBuild`, else leaves it waiting and returns false.
   */
  private async prepare(e: LiveEpoch, mayBuild: boolean): Promise<boolean> {
    const { ctx, backend, stats, live } = this.o;
    // Registered before the journal is read or the directory copied: every later change is queued too.
    const queue = this.openQueue();
    // Stops with the server, or when the epoch is destroyed meanwhile.
    const stopped = () => this.o.abort.aborted || live.get(e.epoch) !== e;
    const abort: AbortFlag = {
      get aborted() {
        return stopped();
      },
    };
    try {
      const t0 = performance.now();
      let table: BucketTable;
      let version: number;
      const got = await recoverFromCache(ctx, backend, e, abort);
      if ('table' in got) {
        ({ table, version } = got);
        stats.cacheLoads++;
        stats.replayedChanges += got.replayed;
        stats.evaluations += got.evaluations;
        stats.lastLoad = { epoch: e.epoch, seconds: (performance.now() - t0) / 1000, replayed: got.replayed };
        ctx.logger.info({ epoch: e.epoch, entries: table.size, replayed: got.replayed }, 'loaded epoch buckets from cache');
      } else if (!mayBuild) {
        e.preparing = { phase: 'waiting', done: 0, total: 0, since: performance.now() };
        return false;
      } else {
        e.cachedVersion = undefined; // its cache is of no use: the journal need not be kept for it
        ctx.logger.info({ epoch: e.epoch, reason: got.rebuild }, 'building epoch buckets');
        const snapshot = snapshotDirectory(ctx.directory, () => ctx.directoryVersion());
        e.preparing = { phase: 'building', done: 0, total: snapshot.keys.length, since: performance.now() };
        const built = await this.runBuild(e.epoch, e.params, e.key, snapshot, abort, (done) => {
          if (e.preparing) e.preparing.done = done;
        });
        ({ table, version } = built);
        if (stats.lastBuild) stats.lastBuild.pendingChanges = queue.length;
      }
      // Synchronously from here: the queue is applied and the table served in one step.
      checkAbort(abort);
      this.applyQueued(table, e.params, e.key, queue);
      e.version = Math.max(version, ctx.directoryVersion());
      e.table = table;
      e.preparing = undefined;
      e.dirty = e.cachedVersion !== e.version;
      if (e.cachedVersion === undefined) this.o.caches.write(e);
      else if (e.dirty) this.o.caches.schedule();
      return true;
    } finally {
      this.closeQueue(queue);
    }
  }

  /** A build, recorded as the one under way (rotations wait for it) while it runs. */
  async runBuild(
    epoch: number,
    params: EpochParams,
    key: KeyPair,
    snapshot: Snapshot,
    abort: AbortFlag,
    onProgress: (done: number) => void,
  ): Promise<BuildResult> {
    const { ctx, backend, stats } = this.o;
    const active = { epoch, done: 0, total: snapshot.keys.length };
    this.active = active;
    try {
      return await buildEpoch(epoch, params, key, snapshot, {
        backend,
        abort,
        logger: ctx.logger,
        progressBar: ctx.options.progress === true,
        stats,
        onProgress: (done) => {
          active.done = done;
          onProgress(done);
        },
      });
    } finally {
      if (this.active === active) this.active = undefined;
    }
  }

  /** Applies queued changes to a table just built or loaded (idempotent for changes it already has). */
  applyQueued(table: BucketTable, params: EpochParams, key: KeyPair, queue: readonly DirectoryChange[]): void {
    for (const c of queue) {
      table.set(bucketOf(c.number, params.bucketBits), tagOf(this.o.backend, params.mode, key.secretKey, c.number, params.tagBytes), c.mask);
      this.o.stats.evaluations++;
    }
  }
}
