/**
 * Epochs of the blinded design: an epoch is one OPRF key, the parameters
 * fixed with it (mode, bucketBits, tagBytes) and the buckets of tags built
 * from it. Everything derived from a key belongs to its epoch and dies with it.
 *
 * Where things live:
 * - metadata: the `epochs` table (epoch, public key, params, created_at,
 *   retires_at, destroyed_at);
 * - secret keys: `<dataDir>/oprf-keys.json` (server/blinded/keys.ts), never
 *   in the database, never logged, never sent;
 * - buckets: in memory ({@link BucketTable}, server/blinded/table.ts) and
 *   cached in `<dataDir>/epochs/<epoch>.bin` with the directory version they
 *   reflect; built by server/blinded/build.ts;
 * - the Merkle tree over each epoch's buckets (shared/merkle.ts): in memory
 *   only (server/blinded/tree.ts), computed again after a load; its root is
 *   published with the directory version it reflects ({@link Epochs.published},
 *   {@link Epochs.provenBucket}), so every client can be shown the same view.
 *
 * ## Directory changes and crashes
 *
 * A registration or deletion updates every served epoch's affected bucket
 * before the admin call returns (one Evaluate per changed number per epoch,
 * on the main thread with the loaded backend), and is durable before that:
 * the store journals it in the transaction of the change. Cache files follow,
 * debounced (1-10 s); after a crash an epoch comes back from its cache plus
 * the journal (server/blinded/recovery.ts), not from a rebuild. After every
 * cache write the journal is pruned down to the lowest cache version of the
 * live epochs, so deleted numbers are kept no longer than a cache needs them.
 *
 * ## Readiness
 *
 * {@link Epochs.open} returns once keys and metadata are checked (a live
 * epoch whose key is missing is an error then and there); loading caches,
 * replaying and building run in the background, current epoch first, and
 * {@link Epochs.ready} settles when all are done. Until an epoch's table is
 * there, requests for it answer 503 `unavailable` with Retry-After and what
 * is going on (building, with progress). Changes that arrive meanwhile are
 * queued for it and applied when its table is in place, in the same
 * synchronous step that makes it served, so none falls in between.
 *
 * ## Lifecycle
 *
 * The first start creates epoch 1 (key file, then its row) and builds it.
 * `rotate()` builds epoch N+1 with a fresh key while N keeps serving, then
 * makes it current and gives N `retires_at = now + graceMs`. Past that
 * instant (checked at start, on every request that names an epoch, and on a
 * timer, always with the injected clock) the epoch is destroyed:
 * `destroyed_at` is set first, then its key is removed from the key file
 * and its cache file deleted, then {@link Epochs.onDestroyed} listeners are
 * told (the evaluator pool drops its copies); requests for it get 410
 * epoch_retired. Every step is ordered so that a crash at any point is
 * finished at the next start (a destroyed epoch whose key is still in the
 * file loses it then; a key written by a rotation that never reached the
 * database is removed), and a live epoch whose key is missing or wrong, or
 * a key of an unknown epoch, stops the server with one line that says so
 * and how to recover: a new key is never made up silently. `pcd rotate-key
 * --repair` ({@link OpenEpochsOptions.repair}) is the explicit way out: it
 * retires such an epoch for good and starts a new one. One rotation runs at
 * a time ({@link Epochs.rotate}).
 *
 * ## Files
 *
 * This module is the lifecycle: opening (the checks of server/blinded/epoch.ts,
 * repair, the first epoch), rotation, retirement and destruction, and
 * directory changes; what is served (the config's list, proven buckets, the
 * 503s) is server/blinded/epochs-serve.ts, shared with the shared store's
 * epochs (server/pg/epochs.ts). Loading and building the tables, with the queues
 * of changes that arrive meanwhile and the start-up order, is
 * server/blinded/epochs-prepare.ts; when cache files are written and the
 * journal pruned is server/blinded/epochs-persist.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { loadBackend } from '../../shared/backends.ts';
import type { DirectoryChange } from '../../shared/design.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { DEFAULT_BACKEND, type OprfBackend, type OprfMode } from '../../shared/suite.ts';
import type { ServerContext } from '../context.ts';
import { storeErrorToPcdError } from '../store.ts';
import { snapshotDirectory, type AbortFlag } from './build.ts';
import { KeyFile } from './keys.ts';
import { checkEpochs, keyProblemsError, pickCurrent, type EpochRow, type KeyProblem, type LiveEpoch } from './epoch.ts';
import { EpochCaches } from './epochs-persist.ts';
import { EpochSet, MAX_LIVE_EPOCHS, type Rotation } from './epochs-serve.ts';
import { EpochPreparer } from './epochs-prepare.ts';
import { EPOCHS_DIR, readCacheVersion, removeCacheFile, type BucketTable, type EpochParams } from './table.ts';

export interface OpenEpochsOptions {
  /**
   * Load (or build) every live epoch's buckets in the background (default
   * true). `pcd rotate-key` offline opens without, since it only builds the
   * new epoch; an epoch created at open is built either way.
   */
  build?: boolean;
  /**
   * `pcd rotate-key --repair`: fix what the key file and the database
   * disagree on instead of refusing to start (see {@link KeyProblem}).
   */
  repair?: boolean;
}

export class Epochs extends EpochSet {
  private maxEpoch = 0;
  private readonly abort: AbortFlag = { aborted: false };
  private expiryTimer: NodeJS.Timeout | undefined;
  /** True when open() had to create an epoch (the first, or one replacing epochs retired by a repair). */
  createdAtOpen = false;
  /** What open() with `repair` fixed, one line each (never key bytes). */
  readonly repaired: string[] = [];
  private prepared: Promise<void> = Promise.resolve();
  /** The rotation under way: one at a time, the others are refused with 409 (see {@link rotate}). */
  private rotation: { epoch: number; done: Promise<unknown> } | undefined;

  private readonly stmts;
  /** When cache files are written (server/blinded/epochs-persist.ts). */
  private readonly caches: EpochCaches;
  /** Loads, builds and their queues of changes (server/blinded/epochs-prepare.ts). */
  private readonly preparer: EpochPreparer;

  private constructor(
    ctx: ServerContext,
    private readonly keyFile: KeyFile,
    backend: OprfBackend,
  ) {
    super(ctx, backend);
    const db = ctx.store.db;
    this.stmts = {
      all: db.prepare<[], EpochRow>('SELECT * FROM epochs ORDER BY epoch'),
      maxEpoch: db.prepare<[], { m: number }>('SELECT coalesce(max(epoch), 0) AS m FROM epochs'),
      insert: db.prepare<[number, Buffer, string, number, number, number]>(
        'INSERT INTO epochs (epoch, public_key, mode, bucket_bits, tag_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      retire: db.prepare<[number, number]>('UPDATE epochs SET retires_at = ? WHERE epoch = ?'),
      destroy: db.prepare<[number, number]>('UPDATE epochs SET destroyed_at = ? WHERE epoch = ? AND destroyed_at IS NULL'),
    };
    this.caches = new EpochCaches(ctx, this.live);
    this.preparer = new EpochPreparer({ ctx, backend, stats: this.stats, abort: this.abort, caches: this.caches, live: this.live });
  }

  /**
   * Settles when every epoch open() started preparing is served; rejects
   * when one could not be (it then answers 503 saying why) or the server closed first.
   */
  get ready(): Promise<void> {
    return this.prepared;
  }

  get dataDir(): string {
    return this.ctx.options.dataDir;
  }

  /**
   * Opens the epochs of a data folder: loads the backend, finishes
   * interrupted destructions, retires expired epochs, checks every live
   * epoch has its key and creates the first epoch when there is none, then
   * starts loading or building the buckets in the background ({@link ready}).
   */
  static async open(ctx: ServerContext, options: OpenEpochsOptions = {}): Promise<Epochs> {
    const backend = await loadBackend(ctx.options.backend ?? DEFAULT_BACKEND);
    const keyFile = KeyFile.open(ctx.options.dataDir);
    for (const w of keyFile.warnings) ctx.logger.warn(w);
    fs.mkdirSync(path.join(ctx.options.dataDir, EPOCHS_DIR), { recursive: true, mode: 0o700 });
    ctx.store.enableDirectoryJournal();
    const epochs = new Epochs(ctx, keyFile, backend);
    try {
      epochs.load(options.repair === true);
    } catch (e) {
      await epochs.close();
      throw e;
    }
    const todo = [...epochs.live.values()].filter((e) => options.build !== false || epochs.createdAtOpen);
    epochs.prepared = epochs.preparer.prepareAll(todo, epochs.currentEpoch);
    epochs.prepared.catch(() => {}); // observed through `ready`; failures are logged where they happen
    // The Merkle trees' first computation, in the background once the tables are there (see published()).
    void epochs.prepared.catch(() => {}).then(() => {
      for (const e of epochs.live.values()) epochs.warmTree(e);
    });
    epochs.startExpiryTimer();
    return epochs;
  }

  private load(repair: boolean): void {
    const now = this.ctx.now();
    const site = { dataDir: this.dataDir, db: this.ctx.store.file, keyFile: this.keyFile.file };
    const found = checkEpochs(this.stmts.all.all(), this.keyFile, this.backend, now, site);
    this.maxEpoch = found.maxEpoch;
    for (const epoch of found.interrupted) {
      this.keyFile.destroy(epoch);
      this.ctx.logger.warn({ epoch }, 'removed the key of an epoch an interrupted rotation never finished');
    }
    for (const epoch of found.destroyed) {
      this.destroyed.add(epoch);
      this.finishDestruction(epoch);
    }
    for (const epoch of found.expired) this.destroyEpoch(epoch, now);
    for (const e of found.live) this.addLive(e);
    if (found.problems.length > 0 && !repair) throw keyProblemsError(found.problems);
    for (const p of found.problems) this.repair(p, now);

    this.currentEpoch = pickCurrent([...this.live.values()], (e) => e.retiresAt !== undefined)?.epoch ?? 0;

    if (this.currentEpoch === 0) {
      this.createFirst(this.paramsFor({}, found.retiredParams));
      this.createdAtOpen = true;
    } else {
      const cur = this.live.get(this.currentEpoch)!;
      const wanted = this.paramsFor({}, cur.params);
      if (wanted.mode !== cur.params.mode || wanted.bucketBits !== cur.params.bucketBits || wanted.tagBytes !== cur.params.tagBytes) {
        this.ctx.logger.warn(
          { epoch: cur.epoch, epochParams: cur.params, configured: wanted },
          'the configured blinded parameters differ from the current epoch; they apply from the next key rotation',
        );
      }
    }
  }

  /** A live epoch without its table yet; the version of its cache file (if any) keeps the journal rows it needs. */
  private addLive(e: Pick<LiveEpoch, 'epoch' | 'params' | 'key' | 'createdAt' | 'retiresAt'>): LiveEpoch {
    const live: LiveEpoch = {
      ...e,
      table: undefined,
      version: -1,
      cachedVersion: readCacheVersion(this.dataDir, e.epoch),
      dirty: false,
      preparing: { phase: 'waiting', done: 0, total: 0, since: performance.now() },
    };
    this.live.set(e.epoch, live);
    return live;
  }

  /**
   * `--repair`: an unknown epoch's key is destroyed; a live epoch without
   * its right key is destroyed as a retired one is (destroyed_at, then the
   * key file's entry if any, then its cache), for good.
   */
  private repair(p: KeyProblem, now: number): void {
    if (p.kind === 'unknown') {
      this.keyFile.destroy(p.epoch);
    } else {
      this.stmts.destroy.run(now, p.epoch);
      this.destroyed.add(p.epoch);
      this.finishDestruction(p.epoch);
    }
    const what =
      p.kind === 'unknown'
        ? `destroyed the key of epoch ${p.epoch}, which the database does not know`
        : `retired epoch ${p.epoch} for good: its key was ${p.kind === 'missing' ? 'missing' : 'not the one its public key belongs to'}`;
    this.repaired.push(what);
    this.ctx.logger.warn({ epoch: p.epoch, problem: p.kind }, `repair: ${what}`);
  }

  /** The first epoch of a data folder (or of one whose live epochs a repair retired): key file, then its row; its buckets are built in the background like any epoch without a cache. */
  private createFirst(params: EpochParams): void {
    const epoch = this.maxEpoch + 1;
    const key = this.backend.generateKeyPair();
    const now = this.ctx.now();
    this.keyFile.add(epoch, key.secretKey);
    this.stmts.insert.run(epoch, Buffer.from(key.publicKey), params.mode, params.bucketBits, params.tagBytes, now);
    this.maxEpoch = epoch;
    this.currentEpoch = epoch;
    this.addLive({ epoch, params, key, createdAt: now, retiresAt: undefined });
    this.ctx.logger.info({ epoch, ...params }, epoch === 1 ? 'created the first epoch' : 'created a new epoch: none was live');
  }

  /** The build under way, if any, and how far it is (tests and the operator). */
  get building(): { epoch: number; done: number; total: number } | undefined {
    return this.preparer.building;
  }

  /**
   * Rotates the key: builds epoch N+1 (the server keeps serving N
   * meanwhile), then commits (key file first, then the database row and N's
   * retirement in one transaction, then the cache), makes it current and
   * retires N after the grace period.
   *
   * One rotation at a time, whatever the order of calls: the check and the
   * claim happen in the same synchronous step, before anything is awaited,
   * so a second call while one is under way (or while the epochs are still
   * being prepared at start) is refused with 409 and changes nothing.
   * Directory changes that arrive during the build are queued for the new
   * epoch and applied in the synchronous step that commits it. A commit that
   * fails (the database refuses the row) takes the new key out of the key
   * file again, so the key file never holds a key the database does not know.
   */
  rotate(req: { bucketBits?: number; mode?: OprfMode } = {}): Promise<Rotation> {
    try {
      if (this.closed || this.abort.aborted) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down');
      if (this.rotation) throw new PcdError(ErrorCode.Conflict, `epoch ${this.rotation.epoch} is being built by another rotation; rotate again once it is done`);
      const building = this.preparer.building;
      if (building) throw new PcdError(ErrorCode.Conflict, `epoch ${building.epoch} is being built; rotate again once it is done`);
      if (this.preparer.starting) throw new PcdError(ErrorCode.Conflict, 'the epochs are still being loaded or built at start; rotate once the blinded design is ready');
      this.expire();
      if (this.live.size >= MAX_LIVE_EPOCHS) {
        throw new PcdError(
          ErrorCode.Conflict,
          `${this.live.size} epochs are still served (the config lists at most ${MAX_LIVE_EPOCHS}): wait for older ones to retire before rotating again`,
        );
      }
      const previous = this.live.get(this.currentEpoch);
      const params = this.paramsFor(req, previous?.params);
      const epoch = this.maxEpoch + 1;
      const done = this.rotateTo(epoch, params, previous).finally(() => {
        if (this.rotation?.done === done) this.rotation = undefined;
      });
      this.rotation = { epoch, done }; // claimed in the same synchronous step as the checks above
      return done;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private async rotateTo(epoch: number, params: EpochParams, previous: LiveEpoch | undefined): Promise<Rotation> {
    const key = this.backend.generateKeyPair();
    let committed = false;
    const queue = this.preparer.openQueue();
    try {
      let table: BucketTable;
      let version: number;
      try {
        const snapshot = snapshotDirectory(this.ctx.directory, () => this.ctx.directoryVersion());
        const built = await this.preparer.runBuild(epoch, params, key, snapshot, this.abort, () => {});
        // Synchronously from here to the end: the queued changes, then the commit.
        if (this.stats.lastBuild) this.stats.lastBuild.pendingChanges = queue.length;
        table = built.table;
        this.preparer.applyQueued(table, params, key, queue);
        version = Math.max(built.version, this.ctx.directoryVersion());
      } finally {
        this.preparer.closeQueue(queue);
      }
      if (this.closed || this.abort.aborted) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down: the new epoch was abandoned');

      const now = this.ctx.now();
      const retiresAt = previous ? Math.min(previous.retiresAt ?? Infinity, now + this.graceMs) : undefined;
      try {
        this.keyFile.add(epoch, key.secretKey);
      } catch (e) {
        // A full disk (ENOSPC) is a 503 with Retry-After, not a 500; the key file is as it was and no temp file is left (server/blinded/keys.ts).
        const unavailable = storeErrorToPcdError(e);
        if (unavailable) this.ctx.logger.error({ epoch, err: (e as Error).message }, 'could not write the key file: the rotation is abandoned');
        throw unavailable ?? e;
      }
      try {
        this.ctx.store.db.transaction(() => {
          const inDb = this.stmts.maxEpoch.get()!.m;
          if (inDb >= epoch) {
            throw new PcdError(
              ErrorCode.Conflict,
              `${this.ctx.store.file} has epoch ${inDb} already, which this server did not make: another process changed the data folder; restart the server`,
            );
          }
          this.stmts.insert.run(epoch, Buffer.from(key.publicKey), params.mode, params.bucketBits, params.tagBytes, now);
          if (previous && retiresAt !== undefined) this.stmts.retire.run(retiresAt, previous.epoch);
        })();
      } catch (e) {
        this.keyFile.destroy(epoch); // the database does not know it: the key file must not either
        throw e;
      }
      committed = true;
      this.maxEpoch = epoch;
      const live: LiveEpoch = { epoch, params, key, createdAt: now, retiresAt: undefined, table, version, cachedVersion: undefined, dirty: true, preparing: undefined };
      this.live.set(epoch, live);
      if (previous && retiresAt !== undefined) previous.retiresAt = retiresAt;
      this.currentEpoch = epoch;
      this.caches.write(live);
      this.warmTree(live);
      this.ctx.logger.info({ epoch, ...params, previous: previous?.epoch, retiresAt }, 'created epoch');
      this.expire(); // graceMs = 0 retires the previous epoch at once
      return { epoch, ...(previous ? { previous: previous.epoch, retiresAt } : {}) };
    } finally {
      if (!committed) key.secretKey.fill(0);
    }
  }

  // ------------------------------------------------------------- retirement

  /** Destroys every epoch whose grace period has ended (injected clock). Never the current one. */
  expire(): void {
    if (this.closed) return;
    const now = this.ctx.now();
    for (const e of [...this.live.values()]) {
      if (e.epoch !== this.currentEpoch && e.retiresAt !== undefined && e.retiresAt <= now) this.destroyEpoch(e.epoch, now);
    }
  }

  /** destroyed_at first (the epoch is dead from then on), then the key, then the cache file, then the listeners. */
  private destroyEpoch(epoch: number, now: number): void {
    this.stmts.destroy.run(now, epoch);
    this.destroyed.add(epoch);
    const e = this.live.get(epoch);
    this.live.delete(epoch);
    this.finishDestruction(epoch);
    e?.key.secretKey.fill(0);
    this.ctx.logger.info({ epoch }, 'epoch retired: its key and cached buckets are destroyed');
    this.notifyDestroyed(epoch);
  }

  private finishDestruction(epoch: number): void {
    if (this.keyFile.destroy(epoch)) this.ctx.logger.info({ epoch }, 'destroyed the key of a retired epoch');
    removeCacheFile(this.dataDir, epoch);
  }

  private startExpiryTimer(): void {
    const every = Math.min(60_000, Math.max(1000, this.graceMs));
    this.expiryTimer = setInterval(() => {
      try {
        this.expire();
      } catch (e) {
        this.ctx.logger.error({ err: (e as Error).message }, 'epoch retirement failed');
      }
    }, every);
    this.expiryTimer.unref();
  }

  // ------------------------------------------------------------- directory changes

  /**
   * Updates every served epoch's buckets, and queues the changes for every
   * epoch being prepared or built. The store has journaled them already.
   */
  applyChanges(changes: readonly DirectoryChange[]): void {
    if (changes.length === 0 || this.closed) return; // closed: the journal has them for the next start
    this.preparer.queue(changes);
    this.updateTables(changes);
    this.caches.schedule();
  }

  /** Writes the cache file of every changed epoch. */
  persist(): void {
    this.caches.persist();
  }

  /** Stops timers and any build, load or rotation (waiting for it to stop), writes changed caches, zeroes the keys held. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.abort.aborted = true;
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    await this.ready.catch(() => {});
    await this.rotation?.done.catch(() => {});
    this.caches.close(); // writes every changed epoch, logs (does not throw) on failure
    this.closed = true;
    // Nothing evaluates any more: every key this object holds is zeroed (the key file keeps them).
    for (const e of this.live.values()) e.key.secretKey.fill(0);
    this.keyFile.close();
  }
}

