/**
 * One epoch of the blinded design as the rest of the server sees it: its
 * database row, its state while served ({@link LiveEpoch}), what the config
 * lists about it, the counters of how its buckets came to be, the rule that
 * picks the current one (the audit applies it too), and the 503 an epoch
 * answers while its buckets are being prepared. The lifecycle is in
 * server/blinded/epochs.ts.
 */
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { MODES, type KeyPair, type OprfBackend, type OprfMode, type ScalarBytes } from '../../shared/suite.ts';
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

/**
 * What the config publishes of a served epoch's buckets besides {@link PublicEpoch}:
 * the Merkle root over them (shared/merkle.ts) and the directory version the
 * table reflected when it was read. One version has one root: the table and
 * the version change together, in the synchronous step of a directory change.
 */
export interface EpochView {
  root: Uint8Array;
  version: number;
}

/** A bucket as the bucket route serves it: content, ETag, audit path, and the directory version all three reflect. */
export interface ProvenBucket {
  tags: Uint8Array;
  capabilities: Uint8Array;
  etag: string;
  /** Leaf to root, bucketBits digests (shared/merkle.ts). */
  path: Uint8Array[];
  version: number;
  /** The root at `version`, which `path` leads to. */
  root: Uint8Array;
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
    /** On a shared store: tags taken from the parts an earlier builder stored (server/pg/epochbuild.ts). */
    reused?: number;
  };
  /** The last cache load: seconds from reading the file to serving, changes replayed. */
  lastLoad?: { epoch: number; seconds: number; replayed: number };
}

import type { EpochRow } from '../../disk/epochs.ts';
export { pickCurrent, type EpochRow } from '../../disk/epochs.ts';

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

// ------------------------------------------------------------- the key file against the database

/** Where a key problem was found, for its message. */
export interface KeyFileSite {
  dataDir: string;
  /** The database file and the key file. */
  db: string;
  keyFile: string;
}

/**
 * A disagreement between the key file and the database found at start:
 * a key for an epoch the database does not know, a live epoch without its
 * key, or a live epoch whose key does not give its public key. `pcd
 * rotate-key --repair` fixes each the one honest way: an unknown key is
 * destroyed, a live epoch without its right key is retired for good (its
 * key cannot be made up again: clients hold its public key) and a new
 * epoch replaces it.
 */
export interface KeyProblem {
  readonly kind: 'unknown' | 'missing' | 'mismatch';
  readonly epoch: number;
  /** One line, with the recovery step; never key bytes. */
  readonly message: string;
}

const repairCommand = (site: KeyFileSite) => `\`pcd rotate-key --data ${site.dataDir} --repair\``;

export function keyProblem(kind: KeyProblem['kind'], epoch: number, site: KeyFileSite): KeyProblem {
  const retire = `run ${repairCommand(site)} to retire epoch ${epoch} and start a new epoch`;
  const message = {
    unknown:
      `${site.keyFile} holds a key for epoch ${epoch}, which the database ${site.db} does not know: the key file and the database do not belong together. ` +
      `Put back the key file that belongs to this database, or run ${repairCommand(site)} to destroy the keys of unknown epochs`,
    missing:
      `epoch ${epoch} is live in ${site.db} but its secret key is missing from ${site.keyFile}: restore the key file from a backup, ` +
      `or ${retire} (a lost key is never made up again: clients hold its public key)`,
    mismatch:
      `epoch ${epoch} in ${site.db} has another public key than the key ${site.keyFile} holds for it: the key file was replaced or edited. ` +
      `Restore it from a backup, or ${retire}`,
  }[kind];
  return { kind, epoch, message };
}

/** The error that stops a start on key problems: the first one, and how many more there are. */
export function keyProblemsError(problems: readonly KeyProblem[]): PcdError {
  const more = problems.length - 1;
  return new PcdError(ErrorCode.Conflict, problems[0]!.message + (more > 0 ? ` (and ${more} more epoch${more > 1 ? 's' : ''} like it)` : ''));
}

/** What {@link checkEpochs} found: what to finish, destroy, serve, and what disagrees. */
export interface EpochCheck {
  maxEpoch: number;
  /** Keys of the next epoch number without a row: a rotation interrupted between key file and database. Removed. */
  interrupted: number[];
  /** Rows destroyed already: whatever is left of them (key, cache) goes. */
  destroyed: number[];
  /** Rows past their retirement: destroyed now. */
  expired: number[];
  /** Live rows with the key that gives their public key. */
  live: Pick<LiveEpoch, 'epoch' | 'params' | 'key' | 'createdAt' | 'retiresAt'>[];
  problems: KeyProblem[];
  /** The parameters of the newest epoch with a problem: a repair's new epoch keeps them. */
  retiredParams?: EpochParams;
}

/**
 * Sorts a data folder's epoch rows against its key file (at start). Pure
 * but for the key copies it hands out in `live` (the caller owns them);
 * the copies it reads to compare are zeroed.
 */
export function checkEpochs(
  rows: readonly EpochRow[],
  keys: { epochs(): number[]; get(epoch: number): ScalarBytes | undefined },
  backend: Pick<OprfBackend, 'publicKeyOf'>,
  now: number,
  site: KeyFileSite,
): EpochCheck {
  const known = new Set(rows.map((r) => r.epoch));
  const maxEpoch = rows.reduce((m, r) => Math.max(m, r.epoch), 0);
  const found: EpochCheck = { maxEpoch, interrupted: [], destroyed: [], expired: [], live: [], problems: [] };
  // A key the database does not know: a rotation (or first start) that wrote
  // the key and stopped before its database row. Only the next epoch number
  // can be that; anything else means the database and key file do not belong together.
  for (const epoch of keys.epochs()) {
    if (known.has(epoch)) continue;
    if (epoch === maxEpoch + 1) found.interrupted.push(epoch);
    else found.problems.push(keyProblem('unknown', epoch, site));
  }
  for (const row of rows) {
    if (row.destroyed_at !== null) {
      found.destroyed.push(row.epoch);
      continue;
    }
    const mode = row.mode as OprfMode;
    if (!MODES.includes(mode)) {
      throw new PcdError(
        ErrorCode.Conflict,
        `epoch ${row.epoch} in ${site.db} has unknown mode '${row.mode}' (written by another pcd version?): serve this data folder with the pcd that made it`,
      );
    }
    if (row.retires_at !== null && row.retires_at <= now) {
      found.expired.push(row.epoch);
      continue;
    }
    const params: EpochParams = { mode, bucketBits: row.bucket_bits, tagBytes: row.tag_bytes };
    const sk = keys.get(row.epoch);
    const publicKey = sk && backend.publicKeyOf(sk);
    if (!sk || !publicKey || !Buffer.from(publicKey).equals(row.public_key)) {
      sk?.fill(0);
      found.problems.push(keyProblem(sk ? 'mismatch' : 'missing', row.epoch, site));
      found.retiredParams = params;
      continue;
    }
    found.live.push({ epoch: row.epoch, params, key: { secretKey: sk, publicKey }, createdAt: row.created_at, retiresAt: row.retires_at ?? undefined });
  }
  return found;
}
