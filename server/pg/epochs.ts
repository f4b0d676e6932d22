/**
 * The blinded design's epochs on a shared Postgres store: several nodes
 * serve the same epochs, one node (the leader, server/pg/leader.ts) builds
 * them, and the others load what it stored (server/pg/epochtables.ts).
 *
 * ## Who does what
 *
 * - **Any node** makes an epoch: the first one at open when the store has
 *   none live, a new one on `POST /v1/admin/rotate`. Under the epochs lock
 *   it writes the key, wrapped under the master key (server/pg/epochkeys.ts),
 *   and the row. One epoch at a time may wait for its build: a rotation
 *   while one waits is a 409.
 * - **The leader** builds every live epoch that has no stored table, from
 *   its in-memory directory (the journal keeps it current), applies the
 *   changes that arrived meanwhile, and stores the table. The first store
 *   of an epoch starts the grace period of the older ones, in the same
 *   transaction. It stores changed tables again every `epochStoreMs`
 *   (default 10 minutes) and holds the journal from the lowest stored
 *   version, so another node's load replays little.
 * - **Every node** checks the store every second ({@link REFRESH_MS}): it
 *   loads each stored epoch it does not serve yet (the table, then the
 *   journal rows since its version, one Evaluate per changed number), drops
 *   destroyed ones, and takes retirements. Directory changes reach its
 *   tables through the journal it follows, as on one node.
 *
 * ## Failover
 *
 * The leader holds a session lock; when it dies (kill -9 too) Postgres
 * frees it and another node leads within a second or two. The new leader
 * sees the live epoch with no stored table and builds it from its own
 * directory, resuming from the parts the old leader stored as it went
 * (server/pg/epochbuild.ts: 16 parts, so at most the part under way and
 * the numbers registered since are computed again).
 * No registration can be lost: each was committed to the store and its
 * journal before it was acknowledged, and the new leader's directory
 * follows that journal. A node waiting on a rotation answers once the
 * epoch is stored, whoever built it.
 *
 * ## What stays on the node
 *
 * The master key file (default `<dataDir>/master.key`, 0600): a database
 * dump alone holds only wrapped keys. Keys unwrapped are held in memory by
 * the epochs and the evaluator pool, zeroed when the epoch is destroyed.
 * No cache files: a restarting node loads from the store.
 */
import { bucketOf } from '../../shared/buckets.ts';
import { loadBackend } from '../../shared/backends.ts';
import { bytesEqual } from '../../shared/bytes.ts';
import type { DirectoryChange } from '../../shared/design.ts';
import { e164ToKey, type E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { DEFAULT_BACKEND, MODES, type KeyPair, type OprfMode, type OprfBackend, type ScalarBytes } from '../../shared/suite.ts';
import type { ServerContext } from '../context.ts';
import { buildEpoch, checkAbort, computeTags, snapshotDirectory, tagOf, threadsFor, type AbortFlag } from '../blinded/build.ts';
import { partedBuilder } from './epochbuild.ts';
import { pickCurrent, MAX_RETRY_AFTER_S, type LiveEpoch } from '../blinded/epoch.ts';
import { EpochSet, MAX_LIVE_EPOCHS, type Rotation } from '../blinded/epochs-serve.ts';
import type { BucketTable, EpochParams } from '../blinded/table.ts';
import type { PgStore } from './store.ts';
import { PgEpochKeys } from './epochkeys.ts';
import { createEpoch, destroyStoredEpoch, readEpochRows, readEpochTable, storeEpochTable, type SharedEpochRow } from './epochtables.ts';

/** How often a node reads the epochs' state from the store. */
export const REFRESH_MS = 1000;
/** How often the leader stores changed tables again (ServerOptions.epochStoreMs). */
export const DEFAULT_EPOCH_STORE_MS = 10 * 60_000;
/** How long a load waits for this node's directory to reach the stored table's version. */
const CATCH_UP_MS = 30_000;

export class SharedEpochs extends EpochSet {
  private readonly abort: AbortFlag = { aborted: false };
  private readonly queues = new Set<DirectoryChange[]>();
  private rows: SharedEpochRow[] = [];
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  /** The one load or build under way on this node. */
  private work: Promise<void> | undefined;
  private active: { epoch: number; done: number; total: number } | undefined;
  /** Epochs whose load failed here, with when to try again. */
  private readonly failed = new Map<number, { at: number; error: string }>();
  private lastStore = performance.now();
  private storing: Promise<void> | undefined;
  private readonly readyPromise: Promise<void>;
  private settleReady!: { resolve: () => void; reject: (e: unknown) => void };
  private isReady = false;

  private constructor(
    ctx: ServerContext,
    backend: OprfBackend,
    private readonly shared: PgStore,
    /** The store's epoch keys, opened with this node's master key. */
    private readonly keys: PgEpochKeys,
  ) {
    super(ctx, backend);
    this.readyPromise = new Promise((resolve, reject) => (this.settleReady = { resolve, reject }));
    this.readyPromise.catch(() => {});
  }

  static async open(ctx: ServerContext): Promise<SharedEpochs> {
    const shared = ctx.shared;
    if (!shared) throw new Error('SharedEpochs needs a shared store');
    const backend = await loadBackend(ctx.options.backend ?? DEFAULT_BACKEND);
    const master = ctx.masterKey;
    if (!master) throw new Error('SharedEpochs needs the node\'s master key (ServerContext.masterKey)');
    const epochs = new SharedEpochs(ctx, backend, shared, new PgEpochKeys(shared.pool, master));
    await epochs.ensureOne();
    await epochs.refresh();
    epochs.timer = setInterval(() => void epochs.tick(), REFRESH_MS);
    epochs.timer.unref();
    return epochs;
  }

  get ready(): Promise<void> {
    return this.readyPromise;
  }

  get building(): { epoch: number; done: number; total: number } | undefined {
    return this.active && { ...this.active };
  }

  private get leading(): boolean {
    return this.ctx.leadership?.isLeader === true;
  }

  /** The first epoch when the store has none live (any node may make it; the lock makes it once). */
  private async ensureOne(): Promise<void> {
    const key = this.backend.generateKeyPair();
    try {
      const made = await createEpoch(this.shared.pool, this.keys, key, this.paramsFor({}), this.ctx.now(), (rows) =>
        rows.some((r) => r.destroyed_at === null) ? 'exists' : undefined,
      );
      if (made !== undefined) this.ctx.logger.info({ epoch: made }, made === 1 ? 'created the first epoch in the shared store' : 'created a new epoch in the shared store: none was live');
    } finally {
      key.secretKey.fill(0);
    }
  }

  // ------------------------------------------------------------- the store's state

  private tick(): void {
    this.refresh().catch((e: unknown) => this.ctx.logger.warn({ err: (e as Error).message }, 'could not read the epochs from the shared store'));
  }

  /** Reads the epochs' state and acts on it (module header); one at a time. */
  private refresh(): Promise<void> {
    return (this.refreshing ??= this.refreshOnce().finally(() => (this.refreshing = undefined)));
  }

  private async refreshOnce(): Promise<void> {
    if (this.closed) return;
    const rows = await readEpochRows(this.shared.pool);
    this.rows = rows;
    const now = this.ctx.now();
    const stored = rows.filter((r) => r.destroyed_at === null && r.stored_version !== null);
    const globalCurrent = pickCurrent(stored, (r) => r.retires_at !== null);
    // Past its grace period (never the current one): gone here, then in the store (idempotent, whichever node sees it first).
    for (const r of rows) {
      const expired = r.destroyed_at === null && r.retires_at !== null && r.retires_at <= now && r.epoch !== globalCurrent?.epoch;
      if (r.destroyed_at !== null || expired) {
        if (this.live.has(r.epoch)) this.destroyLocal(r.epoch);
        else this.destroyed.add(r.epoch); // never served here: nothing to zero, no one to tell
        if (expired || r.has_key || r.stored_version !== null) await this.destroyInStore(r.epoch, now);
      }
    }
    const alive = rows.filter((r) => r.destroyed_at === null && !this.destroyed.has(r.epoch));
    for (const r of alive) {
      const e = this.live.get(r.epoch);
      if (e) e.retiresAt = r.retires_at ?? undefined;
    }
    this.pickCurrentEpoch();
    if (!this.work && !this.abort.aborted) {
      // Loads first (stored epochs not served here), current first; then the leader's build of an epoch no node stored.
      const toLoad = alive
        .filter((r) => r.stored_version !== null && !this.live.get(r.epoch)?.table && !this.retryLater(r.epoch))
        .sort((a, b) => (a.epoch === globalCurrent?.epoch ? -1 : b.epoch === globalCurrent?.epoch ? 1 : b.epoch - a.epoch));
      const toBuild = this.leading ? alive.find((r) => r.stored_version === null && !this.retryLater(r.epoch)) : undefined;
      const next = toLoad[0] ?? toBuild;
      if (next) {
        this.work = this.prepare(next).finally(() => {
          this.work = undefined;
          this.tick(); // the next one at once
        });
      }
    }
    if (this.leading) this.storeChanged();
  }

  /** This node's current epoch: the newest stored one that is not retiring among those it serves, else among all stored. */
  private pickCurrentEpoch(): void {
    const stored = this.rows.filter((r) => r.destroyed_at === null && r.stored_version !== null && !this.destroyed.has(r.epoch));
    const served = stored.filter((r) => this.live.get(r.epoch)?.table);
    const current = pickCurrent(served, (r) => r.retires_at !== null) ?? pickCurrent(stored, (r) => r.retires_at !== null);
    this.currentEpoch = current?.epoch ?? 0;
    if (!this.isReady && this.live.get(this.currentEpoch)?.table) {
      this.isReady = true;
      this.settleReady.resolve();
    }
  }

  private retryLater(epoch: number): boolean {
    const f = this.failed.get(epoch);
    return f !== undefined && performance.now() < f.at;
  }

  /** An epoch of the store not served here yet (0: the newest, before any is current here): why, as a 503. */
  protected override pendingError(epoch: number): PcdError | undefined {
    const alive = this.rows.filter((row) => row.destroyed_at === null);
    const r = epoch === 0 ? alive.at(-1) : alive.find((row) => row.epoch === epoch);
    if (!r) return undefined;
    const f = this.failed.get(r.epoch);
    if (f) return new PcdError(ErrorCode.Unavailable, `epoch ${r.epoch} could not be loaded on this node (${f.error}); it tries again`, { retryAfterSeconds: MAX_RETRY_AFTER_S });
    const what = r.stored_version === null ? 'is being built by the leading node of the shared store' : 'is being loaded on this node from the shared store';
    return new PcdError(ErrorCode.Unavailable, `epoch ${r.epoch} ${what}; the blinded design answers once it is ready`, { retryAfterSeconds: r.stored_version === null ? 5 : 1 });
  }

  // ------------------------------------------------------------- loading and building

  /** The key pair of `r` from its wrapped key in the store, checked against its public key. */
  private keyOf(r: SharedEpochRow, secretKey: ScalarBytes): KeyPair {
    const publicKey = this.backend.publicKeyOf(secretKey);
    if (!bytesEqual(publicKey, r.public_key)) {
      secretKey.fill(0);
      throw new PcdError(ErrorCode.Conflict, `epoch ${r.epoch}'s stored key does not give its public key: the store was changed by hand`);
    }
    return { secretKey, publicKey };
  }

  /** Loads a stored epoch (or builds one: the leader, or a node whose journal does not reach back to the stored table). */
  private async prepare(r: SharedEpochRow): Promise<void> {
    const queue: DirectoryChange[] = [];
    this.queues.add(queue); // before anything is read: every later change is caught
    let e: LiveEpoch | undefined;
    try {
      const secret = await this.keys.get(r.epoch);
      if (!secret) return; // destroyed meanwhile
      const params: EpochParams = { mode: r.mode as OprfMode, bucketBits: r.bucket_bits, tagBytes: r.tag_bytes };
      if (!MODES.includes(params.mode)) throw new Error(`unknown mode '${r.mode}'`);
      const key = this.keyOf(r, secret);
      e = this.live.get(r.epoch);
      if (e) e.key.secretKey.fill(0);
      e = { epoch: r.epoch, params, key, createdAt: r.created_at, retiresAt: r.retires_at ?? undefined, table: undefined, version: -1, cachedVersion: undefined, dirty: false, preparing: { phase: 'loading', done: 0, total: 0, since: performance.now() } };
      this.live.set(r.epoch, e);
      const live = e;
      // Stops with the server, or when the epoch is destroyed meanwhile.
      const stopped = (): boolean => this.abort.aborted || this.live.get(live.epoch) !== live;
      const abort: AbortFlag = {
        get aborted() {
          return stopped();
        },
      };

      const loaded = r.stored_version !== null ? await this.load(live, abort) : undefined;
      let table: BucketTable;
      let version: number;
      let storeIt = false;
      if (loaded && 'table' in loaded) {
        ({ table, version } = loaded);
        // The stored table reflects `version`: this node's directory must have come that far before the queue takes over.
        for (const t0 = Date.now(); this.ctx.directoryVersion() < version; ) {
          if (Date.now() - t0 > CATCH_UP_MS) throw new Error(`this node's directory is behind the stored table (version ${this.ctx.directoryVersion()} < ${version})`);
          checkAbort(abort);
          await new Promise((res) => setTimeout(res, 20));
        }
      } else {
        if (loaded) this.ctx.logger.warn({ epoch: r.epoch, reason: loaded.rebuild }, 'building the epoch on this node instead of loading it');
        ({ table, version } = await this.build(live, abort, r.stored_version === null));
        storeIt = this.leading && r.stored_version === null;
      }
      // Synchronously from here: the queue is applied and the table served in one step.
      checkAbort(abort);
      for (const c of queue) {
        table.set(bucketOf(c.number, params.bucketBits), tagOf(this.backend, params.mode, key.secretKey, c.number, params.tagBytes), c.mask);
        this.stats.evaluations++;
      }
      live.version = Math.max(version, this.ctx.directoryVersion());
      live.table = table;
      live.preparing = undefined;
      live.dirty = storeIt;
      this.failed.delete(r.epoch);
      this.pickCurrentEpoch();
      this.notifyServed(live.epoch);
      if (storeIt) await this.store(live, true);
      this.warmTree(live);
    } catch (err) {
      if (this.abort.aborted || (e && this.live.get(r.epoch) !== e)) return;
      const error = (err as Error).message;
      this.failed.set(r.epoch, { at: performance.now() + 5000, error });
      if (e && this.live.get(r.epoch) === e && !e.table) {
        this.live.delete(r.epoch);
        e.key.secretKey.fill(0);
      }
      this.ctx.logger.error({ epoch: r.epoch, err: error }, 'could not prepare the buckets of an epoch from the shared store');
    } finally {
      this.queues.delete(queue);
    }
  }

  /** The stored table plus the journal rows since its version (their tags computed here), or why it must be built. */
  private async load(e: LiveEpoch, abort: AbortFlag): Promise<{ table: BucketTable; version: number } | { rebuild: string }> {
    const t0 = performance.now();
    const got = await readEpochTable(this.shared.pool, { epoch: e.epoch, ...e.params, publicKey: e.key.publicKey });
    if (!got) return { rebuild: 'no table is stored' };
    if ('problem' in got) return { rebuild: `the stored table cannot be used: ${got.problem}` };
    const since = await this.shared.directoryChangesSince(got.directoryVersion);
    if (!since) return { rebuild: `the directory journal no longer reaches back to the stored table's version ${got.directoryVersion}` };
    const last = new Map<E164, number>();
    for (const c of since) last.set(c.number, c.mask);
    const numbers = [...last.keys()];
    if (numbers.length > 0) {
      e.preparing = { phase: 'replaying', done: 0, total: numbers.length, since: performance.now() };
      const { tags } = await computeTags(e.params, e.key, Float64Array.from(numbers, e164ToKey), { backend: this.backend, threads: threadsFor(numbers.length), abort });
      const { bucketBits, tagBytes } = e.params;
      numbers.forEach((n, i) => got.table.set(bucketOf(n, bucketBits), tags.subarray(i * tagBytes, (i + 1) * tagBytes), last.get(n)!));
      this.stats.evaluations += numbers.length;
    }
    const version = since.at(-1)?.version ?? got.directoryVersion;
    this.stats.cacheLoads++;
    this.stats.replayedChanges += since.length;
    this.stats.lastLoad = { epoch: e.epoch, seconds: (performance.now() - t0) / 1000, replayed: since.length };
    this.ctx.logger.info({ epoch: e.epoch, entries: got.table.size, replayed: since.length }, 'loaded epoch buckets from the shared store');
    return { table: got.table, version };
  }

  /** Builds `e`'s table from this node's directory; `forStore`: no node stored it yet, so the leader builds in stored parts. */
  private async build(e: LiveEpoch, abort: AbortFlag, forStore: boolean): Promise<{ table: BucketTable; version: number }> {
    const snapshot = snapshotDirectory(this.ctx.directory, () => this.ctx.directoryVersion());
    e.preparing = { phase: 'building', done: 0, total: snapshot.keys.length, since: performance.now() };
    const active = { epoch: e.epoch, done: 0, total: snapshot.keys.length };
    this.active = active;
    this.ctx.logger.info({ epoch: e.epoch, numbers: snapshot.keys.length, leader: this.leading }, 'building epoch buckets');
    try {
      return await buildEpoch(e.epoch, e.params, e.key, snapshot, {
        backend: this.backend,
        abort,
        logger: this.ctx.logger,
        progressBar: this.ctx.options.progress === true,
        stats: this.stats,
        onProgress: (done) => {
          active.done = done;
          if (e.preparing) e.preparing.done = done;
        },
        // The leader builds in parts it stores as it goes, so a leader after it resumes (server/pg/epochbuild.ts).
        ...(forStore && this.leading ? { builder: partedBuilder(this.shared.pool, () => this.leading) } : {}),
      });
    } finally {
      if (this.active === active) this.active = undefined;
    }
  }

  // ------------------------------------------------------------- storing (the leader)

  /** Stores `e`'s table as it is now (serialized in one synchronous step), then holds the journal from the lowest stored version. */
  private async store(e: LiveEpoch, first: boolean): Promise<void> {
    if (!e.table) return;
    const version = e.version;
    // The directory's digest when the table is at this node's version (it is, but for a moment after a load); else zeros (not checked on load).
    const digest = version === this.ctx.directoryVersion() ? this.ctx.directory.digest().bytes() : new Uint8Array(32);
    const bytes = e.table.serialize({ mode: e.params.mode, publicKey: e.key.publicKey, directoryVersion: version, directoryDigest: digest });
    e.dirty = false;
    const now = this.ctx.now();
    try {
      const kept = await storeEpochTable(this.shared.pool, e.epoch, bytes, version, this.shared.node, now, now + this.graceMs);
      this.ctx.logger.info({ epoch: e.epoch, version, bytes: bytes.length, first, kept }, 'stored epoch buckets in the shared store');
      this.lastStore = performance.now();
      await this.holdJournal();
    } catch (err) {
      e.dirty = true;
      throw err;
    }
    if (first) await this.refresh();
  }

  /** The leader: stores changed tables every epochStoreMs; a failure is logged and tried again at the next turn. */
  private storeChanged(force = false): void {
    if (this.storing) return;
    const every = this.ctx.options.epochStoreMs ?? DEFAULT_EPOCH_STORE_MS;
    if (!force && performance.now() - this.lastStore < every) return;
    const dirty = [...this.live.values()].filter((e) => e.dirty && e.table);
    if (dirty.length === 0) return;
    this.storing = (async () => {
      for (const e of dirty) await this.store(e, false);
    })()
      .catch((err: unknown) => this.ctx.logger.warn({ err: (err as Error).message }, 'could not store the changed epoch buckets'))
      .finally(() => (this.storing = undefined));
  }

  /** The journal rows above the lowest stored version stay for other nodes' loads (the store deletes what no holder needs). */
  private async holdJournal(): Promise<void> {
    const rows = await readEpochRows(this.shared.pool);
    const versions = rows.filter((r) => r.destroyed_at === null && r.stored_version !== null).map((r) => r.stored_version!);
    if (versions.length > 0) await this.shared.pruneDirectoryChanges(Math.min(...versions), 'epochs');
  }

  // ------------------------------------------------------------- rotation and retirement

  rotate(req: { bucketBits?: number; mode?: OprfMode } = {}): Promise<Rotation> {
    return this.rotateShared(req);
  }

  private async rotateShared(req: { bucketBits?: number; mode?: OprfMode }): Promise<Rotation> {
    if (this.closed || this.abort.aborted) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down');
    // The epoch it follows, and the parameters it keeps unless asked otherwise, are the store's current one, read under
    // the lock: not this node's, which may not have loaded it yet (a node just started, or one that lags a second behind).
    let previous: SharedEpochRow | undefined;
    let params: EpochParams | undefined;
    const paramsOf = (rows: SharedEpochRow[]): EpochParams => {
      previous = pickCurrent(
        rows.filter((r) => r.destroyed_at === null && r.stored_version !== null),
        (r) => r.retires_at !== null,
      );
      params = this.paramsFor(req, previous && { mode: previous.mode as OprfMode, bucketBits: previous.bucket_bits, tagBytes: previous.tag_bytes });
      return params;
    };
    const key = this.backend.generateKeyPair();
    let epoch: number | undefined;
    try {
      epoch = await createEpoch(this.shared.pool, this.keys, key, paramsOf, this.ctx.now(), (rows) => {
        const live = rows.filter((r) => r.destroyed_at === null);
        const waiting = live.find((r) => r.stored_version === null);
        if (waiting) return new PcdError(ErrorCode.Conflict, `epoch ${waiting.epoch} is being built; rotate again once it is done`);
        if (live.length >= MAX_LIVE_EPOCHS) {
          return new PcdError(ErrorCode.Conflict, `${live.length} epochs are still served (the config lists at most ${MAX_LIVE_EPOCHS}): wait for older ones to retire before rotating again`);
        }
        return undefined;
      });
    } finally {
      key.secretKey.fill(0);
    }
    const made = epoch!;
    const before = previous as SharedEpochRow | undefined; // set by paramsOf, under the lock
    this.ctx.logger.info({ epoch: made, ...params, previous: before?.epoch }, 'created epoch in the shared store; the leading node builds it');
    await this.ctx.leadership?.check();
    // Answered once the epoch is stored and served here, whoever built it (the leader may change meanwhile).
    for (;;) {
      await this.refresh();
      if (this.closed || this.abort.aborted) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down: the new epoch is built by the leading node');
      if (this.destroyed.has(made)) throw new PcdError(ErrorCode.EpochRetired, `epoch ${made} was destroyed before it was built`);
      const row = this.rows.find((r) => r.epoch === made);
      if (row?.stored_version !== null && row !== undefined && this.live.get(made)?.table) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    // The new epoch's first store set the previous one's retirement, in the same transaction (server/pg/epochtables.ts).
    const retiresAt = before ? (this.rows.find((r) => r.epoch === before.epoch)?.retires_at ?? undefined) : undefined;
    return { epoch: made, ...(before ? { previous: before.epoch, ...(retiresAt !== undefined ? { retiresAt } : {}) } : {}) };
  }

  expire(): void {
    if (this.closed) return;
    const now = this.ctx.now();
    for (const e of [...this.live.values()]) {
      if (e.epoch !== this.currentEpoch && e.retiresAt !== undefined && e.retiresAt <= now) {
        this.destroyLocal(e.epoch);
        this.tick(); // the store's half
      }
    }
  }

  /** Destroys an epoch on this node: out of the served set, its key zeroed, the listeners told. */
  private destroyLocal(epoch: number): void {
    const e = this.live.get(epoch);
    this.live.delete(epoch);
    this.destroyed.add(epoch);
    e?.key.secretKey.fill(0);
    this.ctx.logger.info({ epoch }, 'epoch retired: its key is destroyed on this node');
    this.notifyDestroyed(epoch);
  }

  private async destroyInStore(epoch: number, now: number): Promise<void> {
    if (await destroyStoredEpoch(this.shared.pool, epoch, now)) {
      this.ctx.logger.info({ epoch }, 'destroyed the wrapped key of a retired epoch in the shared store');
      await this.shared.pool.query('VACUUM epoch_keys').catch(() => {});
    }
  }

  // ------------------------------------------------------------- directory changes

  applyChanges(changes: readonly DirectoryChange[]): void {
    if (changes.length === 0 || this.closed) return;
    for (const q of this.queues) q.push(...changes);
    this.updateTables(changes);
  }

  /** The leader stores its changed tables now. */
  persist(): void {
    if (this.leading) this.storeChanged(true);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.abort.aborted = true;
    if (this.timer) clearInterval(this.timer);
    await this.work?.catch(() => {});
    await this.refreshing?.catch(() => {});
    await this.storing;
    if (this.leading) {
      this.storeChanged(true); // what changed since the last store, so the next load replays less
      await this.storing;
    }
    this.closed = true;
    if (!this.isReady) this.settleReady.reject(new PcdError(ErrorCode.Unavailable, 'the server closed before the blinded epochs were ready'));
    for (const e of this.live.values()) e.key.secretKey.fill(0);
  }
}
