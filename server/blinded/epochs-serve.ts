/**
 * What every set of blinded epochs serves, wherever its epochs are kept:
 * the current epoch, the config's list with Merkle roots, proven buckets,
 * the 503s while an epoch or its tree is not ready, directory changes
 * applied to the served tables, and the listeners told of destructions.
 *
 * Two lifecycles extend it: server/blinded/epochs.ts (the data folder: the
 * SQLite `epochs` table, the key file, cache files) and server/pg/epochs.ts
 * (a shared Postgres store: wrapped keys, tables stored once by the leader).
 */
import type { DirectoryChange } from '../../shared/design.ts';
import { bucketOf, checkBucketBits, checkTagBytes, DEFAULT_TAG_BYTES } from '../../shared/buckets.ts';
import { ErrorCode, PcdError, quoteInput } from '../../shared/errors.ts';
import { MODES, type OprfBackend, type OprfMode } from '../../shared/suite.ts';
import type { ServerContext } from '../context.ts';
import { tagOf } from './build.ts';
import {
  DEFAULT_BUCKET_BITS,
  DEFAULT_GRACE_MS,
  DEFAULT_MODE,
  MAX_RETRY_AFTER_S,
  notReady,
  type EpochStats,
  type EpochView,
  type LiveEpoch,
  type ProvenBucket,
  type PublicEpoch,
  type ServedEpoch,
} from './epoch.ts';
import type { BucketTable, EpochParams } from './table.ts';

/** Epochs served at once: the config reply lists at most 64 (shared/messages.ts). */
export const MAX_LIVE_EPOCHS = 64;
/** A request waits for a Merkle tree this long at most; a longer computation (the first of 2^20 buckets or more) is a 503 with Retry-After. */
const MAX_TREE_WAIT_S = 2;

/** The 503 of an epoch whose Merkle tree is still being computed, with progress and a Retry-After. */
function treeNotReady(epoch: number, table: BucketTable): PcdError {
  const eta = table.merkle.etaSeconds();
  const c = table.merkle.computing;
  const progress = c ? `: ${Math.floor((100 * c.done) / Math.max(1, c.total))}% of ${c.total.toLocaleString('en-US')} hashes` : '';
  return new PcdError(
    ErrorCode.Unavailable,
    `epoch ${epoch}'s Merkle root over its ${table.bucketCount.toLocaleString('en-US')} buckets is being ${c?.first === false ? 'updated' : 'computed'}${progress}, about ${Math.ceil(eta)} s left`,
    { retryAfterSeconds: Math.min(MAX_RETRY_AFTER_S, Math.max(1, eta)) },
  );
}

/** What a rotation answers: the new epoch, and the one it retires with when. */
export interface Rotation {
  epoch: number;
  previous?: number;
  retiresAt?: number;
}

export abstract class EpochSet {
  protected readonly live = new Map<number, LiveEpoch>();
  protected readonly destroyed = new Set<number>();
  protected currentEpoch = 0;
  protected closed = false;
  private readonly destroyedListeners = new Set<(epoch: number) => void>();
  private readonly servedListeners = new Set<(epoch: number) => void>();
  readonly stats: EpochStats = { builds: 0, cacheLoads: 0, replayedChanges: 0, evaluations: 0 };

  protected constructor(
    protected readonly ctx: ServerContext,
    /** The crypto backend, loaded on this thread. */
    readonly backend: OprfBackend,
  ) {}

  /** Settles when the epochs opened with are served; rejects when one could not be or the set closed first. */
  abstract get ready(): Promise<void>;
  /** The build under way on this node, if any, and how far it is (tests and the operator). */
  abstract get building(): { epoch: number; done: number; total: number } | undefined;
  /** Makes a new epoch with a fresh key and serves it once built; the previous one retires after the grace period. */
  abstract rotate(req?: { bucketBits?: number; mode?: OprfMode }): Promise<Rotation>;
  /** Destroys every epoch whose grace period has ended (injected clock). Never the current one. */
  abstract expire(): void;
  /** Applies directory changes (already stored) to every served epoch, and to those being prepared. */
  abstract applyChanges(changes: readonly DirectoryChange[]): void;
  /** Writes what changed where this set keeps its tables. */
  abstract persist(): void;
  /** Stops timers and builds, keeps what changed, zeroes the keys held. Idempotent. */
  abstract close(): Promise<void>;

  get graceMs(): number {
    return this.ctx.options.graceMs ?? DEFAULT_GRACE_MS;
  }

  /** Calls `listener` with the epoch number after each destruction (key and cache gone); returns the unsubscribe. */
  onDestroyed(listener: (epoch: number) => void): () => void {
    this.destroyedListeners.add(listener);
    return () => this.destroyedListeners.delete(listener);
  }

  /** Calls `listener` with the epoch number each time an epoch comes to be served here after open (the shared store's loads); returns the unsubscribe. */
  onServed(listener: (epoch: number) => void): () => void {
    this.servedListeners.add(listener);
    return () => this.servedListeners.delete(listener);
  }

  /** Tells every listener of epochs served here. */
  protected notifyServed(epoch: number): void {
    this.tell(this.servedListeners, epoch, 'an epoch listener failed');
  }

  /** Tells every destruction listener (the evaluator pool, the token keys). */
  protected notifyDestroyed(epoch: number): void {
    this.tell(this.destroyedListeners, epoch, 'an epoch destruction listener failed');
  }

  /** Calls each listener with `epoch`; one that throws is logged and the others still called. */
  private tell(listeners: ReadonlySet<(epoch: number) => void>, epoch: number, failed: string): void {
    for (const listener of listeners) {
      try {
        listener(epoch);
      } catch (err) {
        this.ctx.logger.error({ epoch, err: (err as Error).message }, failed);
      }
    }
  }

  /** Parameters of a new epoch: the request's, else the configured ones, else the base epoch's, else the defaults. */
  protected paramsFor(req: { bucketBits?: number; mode?: OprfMode }, base?: EpochParams): EpochParams {
    const o = this.ctx.options;
    const mode = req.mode ?? o.mode ?? base?.mode ?? DEFAULT_MODE;
    if (!MODES.includes(mode)) throw new PcdError(ErrorCode.InvalidField, `mode must be one of ${MODES.join(', ')}, got ${quoteInput(mode)}`);
    return {
      mode,
      bucketBits: checkBucketBits(req.bucketBits ?? o.bucketBits ?? base?.bucketBits ?? DEFAULT_BUCKET_BITS),
      tagBytes: checkTagBytes(o.tagBytes ?? base?.tagBytes ?? DEFAULT_TAG_BYTES),
    };
  }

  /** The 503 of an epoch this set knows of but does not serve yet (another node builds it), or undefined. */
  protected pendingError(_epoch: number): PcdError | undefined {
    return undefined;
  }

  /** The 503 of an epoch whose table is not there yet. */
  protected notReady(e: LiveEpoch): PcdError {
    return notReady(e, this.building?.epoch);
  }

  /** Sets each change's tag in every served epoch's bucket (one Evaluate per change per epoch, on this thread). */
  protected updateTables(changes: readonly DirectoryChange[]): void {
    const version = this.ctx.directoryVersion();
    for (const e of this.live.values()) {
      if (!e.table) continue;
      const { mode, bucketBits, tagBytes } = e.params;
      for (const { number, mask } of changes) {
        e.table.set(bucketOf(number, bucketBits), tagOf(this.backend, mode, e.key.secretKey, number, tagBytes), mask);
        this.stats.evaluations++;
      }
      e.version = Math.max(e.version, version);
      e.dirty = true;
    }
  }

  // ------------------------------------------------------------- serving

  /** Number of the current epoch (served or still being prepared). */
  get currentNumber(): number {
    this.expire();
    return this.currentEpoch;
  }

  /** The current epoch, or 503 while it is being prepared. */
  get current(): ServedEpoch {
    this.expire();
    const e = this.live.get(this.currentEpoch);
    if (!e) throw this.pendingError(this.currentEpoch) ?? new PcdError(ErrorCode.Unavailable, 'no epoch is being served', { retryAfterSeconds: MAX_RETRY_AFTER_S });
    return this.served(e);
  }

  /** Every live epoch, oldest first. */
  list(): PublicEpoch[] {
    this.expire();
    return [...this.live.values()]
      .sort((a, b) => a.epoch - b.epoch)
      .map((e) => ({
        epoch: e.epoch,
        publicKey: e.key.publicKey,
        ...e.params,
        createdAt: e.createdAt,
        ...(e.retiresAt !== undefined ? { retiresAt: e.retiresAt } : {}),
      }));
  }

  /**
   * What the config publishes: the current epoch, and every served epoch
   * with its Merkle root and the directory version it reflects (shared/merkle.ts),
   * oldest first. Waits (yielding) while a tree is first computed or has a
   * large refresh to do; then reads every root and version in one
   * synchronous step. An epoch whose buckets are still being loaded or
   * built has no root yet and is left out until it is served.
   */
  async published(): Promise<{ current: ServedEpoch; epochs: (PublicEpoch & EpochView)[] }> {
    for (;;) {
      const current = this.current; // 503 while the current epoch is being prepared
      const served = [...this.live.values()].flatMap((e) => (e.table ? [{ e, table: e.table }] : []));
      const waiting = served.filter(({ table }) => !table.merkle.isReady);
      // A long first computation (2^20 buckets and more): the current epoch answers 503, an older one is left out meanwhile.
      const long = waiting.filter(({ table }) => table.merkle.etaSeconds() > MAX_TREE_WAIT_S);
      for (const { e } of long) this.warmTree(e); // under way from now on, if it was not
      const currentLong = long.find(({ e }) => e.epoch === current.epoch);
      if (currentLong) throw treeNotReady(currentLong.e.epoch, currentLong.table);
      const short = waiting.filter((w) => !long.includes(w));
      if (short.length > 0) {
        await Promise.all(short.map(({ table }) => table.merkle.ready()));
        continue;
      }
      const epochs = served
        .filter(({ table }) => table.merkle.isReady)
        .sort((a, b) => a.e.epoch - b.e.epoch)
        .map(({ e, table }) => ({
          epoch: e.epoch,
          publicKey: e.key.publicKey,
          ...e.params,
          createdAt: e.createdAt,
          ...(e.retiresAt !== undefined ? { retiresAt: e.retiresAt } : {}),
          root: table.merkle.root(),
          version: e.version,
        }));
      return { current, epochs };
    }
  }

  /**
   * Bucket `bucket` of a served epoch (in range: the caller checks) with its
   * ETag, its audit path and the directory version, read in one synchronous
   * step once the epoch's tree can answer (see {@link published}).
   */
  async provenBucket(epoch: number, bucket: number): Promise<ProvenBucket> {
    for (;;) {
      const { table, version } = this.get(epoch); // 410 if destroyed while waiting
      const tree = table.merkle;
      if (!tree.isReady) {
        if (tree.etaSeconds() > MAX_TREE_WAIT_S) {
          this.warmTree(this.live.get(epoch));
          throw treeNotReady(epoch, table);
        }
        await tree.ready();
        continue;
      }
      return { ...table.view(bucket), etag: table.etag(bucket), path: tree.path(bucket), root: tree.root(), version };
    }
  }

  /** Starts computing an epoch's tree in the background (once: a run under way is joined), so requests need not wait for it. */
  protected warmTree(e: LiveEpoch | undefined): void {
    e?.table?.merkle.ready().catch((err: unknown) => {
      this.ctx.logger.error({ epoch: e.epoch, err: (err as Error).message }, 'could not compute the Merkle tree of an epoch');
    });
  }

  /** A served epoch, or 404 unknown_epoch / 410 epoch_retired / 503 unavailable while it is being prepared. */
  get(epoch: number): ServedEpoch {
    this.expire();
    const e = this.live.get(epoch);
    if (e) return this.served(e);
    if (this.destroyed.has(epoch)) {
      throw new PcdError(ErrorCode.EpochRetired, `epoch ${epoch} is retired and its key destroyed: fetch /v1/blinded/config and use epoch ${this.currentEpoch}`);
    }
    const pending = this.pendingError(epoch);
    if (pending) throw pending;
    throw new PcdError(ErrorCode.UnknownEpoch, `no epoch ${epoch}: the current epoch is ${this.currentEpoch} (see /v1/blinded/config)`);
  }

  protected served(e: LiveEpoch): ServedEpoch {
    if (this.closed) throw new PcdError(ErrorCode.Unavailable, 'the server is shutting down');
    if (e.table) return e as ServedEpoch;
    throw this.notReady(e);
  }
}
