/**
 * One epoch of the blinded design as the rest of the server sees it: its
 * database row, its state while served ({@link LiveEpoch}), what the config
 * lists about it, the counters of how its buckets came to be, the rule that
 * picks the current one (the audit applies it too), and the 503 an epoch
 * answers while its buckets are being prepared. The lifecycle is in
 * server/blinded/epochs.ts.
 */
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import type { KeyPair, OprfMode } from '../../shared/suite.ts';
import type { BucketTable, EpochParams } from './table.ts';

export const DEFAULT_GRACE_MS = 24 * 60 * 60 * 1000;
/**
 * Default bucket bits of a new epoch when none is configured: 0, full
 * directory sync. It is the most private setting (the server learns no bit
 * about any looked-up number) and right for small and test directories; a
 * large directory should be given --bucket-bits explicitly, since a bucket
 * holds directory/2^b tags. Picking b from the directory size by default
 * would trade privacy away silently.
 */
export const DEFAULT_BUCKET_BITS = 0;
export const DEFAULT_MODE: OprfMode = 'voprf';


/** What `GET /v1/blinded/config` lists about an epoch. */
export interface PublicEpoch extends EpochParams {
  epoch: number;
  publicKey: Uint8Array;
  createdAt: number;
  retiresAt?: number;
}

/** Counters for tests, benchmarks and the operator: how the buckets came to be. */
export interface EpochStats {
  /** Epochs built from the directory (Evaluate for every number). */
  builds: number;
  /** Epochs loaded from their cache file (journal replay included). */
  cacheLoads: number;
  /** Journaled directory changes replayed onto loaded caches. */
  replayedChanges: number;
  /** Server-side Evaluate calls (builds, replays and directory changes). */
  evaluations: number;
  /** The last build: numbers, seconds, numbers per second, threads used, merged tag collisions. */
  lastBuild?: {
    epoch: number;
    numbers: number;
    seconds: number;
    rate: number;
    threads: number;
    collisions: number;
    /** Directory changes that arrived during the build and were applied after it. */
    pendingChanges: number;
  };
  /** The last cache load: seconds from reading the file to serving, changes replayed. */
  lastLoad?: { epoch: number; seconds: number; replayed: number };
}

/** The current epoch among live ones, oldest first: the newest that is not retiring, else the newest. The audit applies the same rule. */
export function pickCurrent<T>(live: readonly T[], retiring: (e: T) => boolean): T | undefined {
  return live.filter((e) => !retiring(e)).at(-1) ?? live.at(-1);
}

/** A row of the `epochs` table. */
export interface EpochRow {
  epoch: number;
  public_key: Buffer;
  mode: string;
  bucket_bits: number;
  tag_bytes: number;
  created_at: number;
  retires_at: number | null;
  destroyed_at: number | null;
}

/** What is happening to an epoch whose table is not there yet. */
export interface Preparation {
  phase: 'waiting' | 'loading' | 'replaying' | 'building' | 'failed';
  done: number;
  total: number;
  /** performance.now() when the phase began. */
  since: number;
  error?: string;
}

/** A served epoch: key, parameters, buckets. */
export interface LiveEpoch {
  readonly epoch: number;
  readonly params: EpochParams;
  readonly key: KeyPair;
  readonly createdAt: number;
  retiresAt: number | undefined;
  /** Undefined until loaded or built. */
  table: BucketTable | undefined;
  /** Directory version the table reflects. */
  version: number;
  /** Directory version of its cache file on disk; undefined without a usable one. Journal rows above it are kept. */
  cachedVersion: number | undefined;
  /** Changed since the cache file was written. */
  dirty: boolean;
  /** Set while the table is not there. */
  preparing: Preparation | undefined;
}

export type ServedEpoch = LiveEpoch & { table: BucketTable };

/** Longest Retry-After while an epoch is prepared, in seconds. */
export const MAX_RETRY_AFTER_S = 30;

/**
 * The 503 of an epoch whose table is not there yet, saying what is going on
 * (with progress and a Retry-After from the rate so far when it is building).
 * `building`: the epoch whose build is under way, when another one is.
 */
export function notReady(e: LiveEpoch, building: number | undefined): PcdError {
  const p = e.preparing;
  const secs = p ? (performance.now() - p.since) / 1000 : 0;
  const rate = p && secs > 0 ? p.done / secs : 0;
  const eta = p && rate > 0 ? (p.total - p.done) / rate : undefined;
  let retryAfterSeconds = Math.min(MAX_RETRY_AFTER_S, Math.max(1, eta ?? 5));
  let what: string;
  switch (p?.phase) {
    case 'building':
      what =
        `is building: ${p.done.toLocaleString('en-US')} of ${p.total.toLocaleString('en-US')} numbers evaluated ` +
        `(${p.total ? Math.floor((100 * p.done) / p.total) : 100}%)${eta !== undefined ? `, about ${Math.ceil(eta)} s left` : ''}`;
      break;
    case 'replaying':
      what = `is loading from its cache: replaying ${p.total} directory change(s)`;
      break;
    case 'loading':
      what = 'is loading from its cache';
      break;
    case 'failed':
      return new PcdError(ErrorCode.Unavailable, `epoch ${e.epoch} could not be built (${p.error ?? 'see the server log'}); restart the server to try again`, {
        retryAfterSeconds: MAX_RETRY_AFTER_S,
      });
    default:
      what = building !== undefined ? `is waiting for epoch ${building} to finish building` : 'is waiting to be loaded or built';
      retryAfterSeconds = 5;
  }
  return new PcdError(ErrorCode.Unavailable, `epoch ${e.epoch} ${what}; the blinded design answers once it is ready`, { retryAfterSeconds });
}
