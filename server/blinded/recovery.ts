/**
 * An epoch's buckets at start, without a rebuild when it can be helped:
 * its cache file (server/blinded/table.ts), which reflects directory
 * version v, plus the journaled directory changes above v replayed onto it.
 *
 * The journal is `directory_changes` (server/store.ts): one row per changed
 * number, written in the same SQLite transaction as the account change and
 * the directory version bump, so it holds every change a cache may be
 * missing after a crash (a cache is rewritten 1-10 s after a change). A
 * replay costs one Evaluate per distinct changed number (the last change of
 * a number wins), on worker threads when there are many. It is refused, and
 * the caller rebuilds, when there is no cache, when the cache is corrupt or
 * belongs to other parameters or another key, when the journal no longer
 * reaches back to v (a bulk insert by `pcd seed` is not journaled; rows may
 * have been pruned), or when the replay would cost more than a rebuild.
 *
 * A cache also records the digest of the directory it reflects
 * (server/directory.ts); at load the directory's digest now is rewound to
 * the cache's version with the journal ({@link directoryDigestAt}) and
 * compared. A mismatch means the database changed under the cache without a
 * version bump (a damaged or hand-edited `pcd.sqlite`): serving the cache
 * would make the blinded design answer from another directory than plain
 * and hashed, so it is logged and the epoch rebuilt from the directory.
 *
 * The journal holds deleted numbers too, so server/blinded/epochs.ts prunes
 * it after every cache write, down to the lowest cache version of the live
 * epochs: nothing is kept that no cache needs.
 */
import { bytesEqual } from '../../shared/bytes.ts';
import { e164ToKey, type E164 } from '../../shared/e164.ts';
import { bucketOf } from '../../shared/buckets.ts';
import type { OprfBackend } from '../../shared/suite.ts';
import type { ServerContext } from '../context.ts';
import type { JournaledChange } from '../store.ts';
import { computeTags, threadsFor, type AbortFlag } from './build.ts';
import type { LiveEpoch } from './epoch.ts';
import { readCacheFile, type BucketTable } from './table.ts';

export type Recovery =
  | {
      table: BucketTable;
      /** Directory version the table reflects now. */
      version: number;
      /** Journaled changes replayed, and the Evaluates they cost. */
      replayed: number;
      evaluations: number;
    }
  | { rebuild: string };

/**
 * The digest of the in-memory directory as it was at `version`: its digest
 * now, with the journaled changes made since undone (each row holds the
 * number's mask before it). Undefined when that cannot be known: the journal
 * does not reach back to `version`, or a row predates the `previous` column.
 * Rows the in-memory directory has not applied yet (its version lags the
 * store's by the changes being applied) are skipped.
 */
export function directoryDigestAt(ctx: ServerContext, version: number): Uint8Array | undefined {
  const now = ctx.directoryVersion();
  const digest = ctx.directory.digest(); // read in the same synchronous step as `now`
  if (version === now) return digest.bytes();
  if (version > now) return undefined;
  const since = ctx.store.directoryChangesSince(version);
  if (!since) return undefined;
  for (let i = since.length - 1; i >= 0; i--) {
    const c = since[i]!;
    if (c.version > now) continue;
    if (c.previous === undefined) return undefined;
    const key = e164ToKey(c.number);
    digest.update(key, c.mask, -1);
    digest.update(key, c.previous, 1);
  }
  return digest.bytes();
}

/**
 * Loads `e`'s cache file and replays the journal onto it, reporting the
 * phase in `e.preparing`; or says why the epoch must be rebuilt.
 */
export async function recoverFromCache(ctx: ServerContext, backend: OprfBackend, e: LiveEpoch, abort: AbortFlag): Promise<Recovery> {
  e.preparing = { phase: 'loading', done: 0, total: 0, since: performance.now() };
  const cached = readCacheFile(ctx.options.dataDir, { epoch: e.epoch, ...e.params, publicKey: e.key.publicKey });
  if (cached === undefined) return { rebuild: 'no cache file' };
  if ('problem' in cached) return { rebuild: cached.problem };
  const since = ctx.store.directoryChangesSince(cached.directoryVersion);
  if (!since) return { rebuild: `the directory journal no longer reaches back to version ${cached.directoryVersion} (now ${ctx.store.directoryVersion()})` };
  const expected = directoryDigestAt(ctx, cached.directoryVersion);
  if (!expected) return { rebuild: `the directory at version ${cached.directoryVersion} cannot be checked against the cache (journal rows of an earlier version)` };
  if (!bytesEqual(expected, cached.directoryDigest)) {
    ctx.logger.warn(
      { epoch: e.epoch, directoryVersion: cached.directoryVersion },
      `the directory in ${ctx.store.file} differs from the one epoch ${e.epoch}'s cache was built from, at the same version: the database changed without a directory change (damaged or edited?); rebuilding the epoch from the directory as it is`,
    );
    return { rebuild: 'the directory digest differs from the cache' };
  }
  const evaluations = await replay(backend, e, cached.table, since, abort);
  if (evaluations === undefined) return { rebuild: `${since.length} changes to replay, more than a rebuild costs` };
  return { table: cached.table, version: since.at(-1)?.version ?? cached.directoryVersion, replayed: since.length, evaluations };

  async function replay(backend: OprfBackend, e: LiveEpoch, table: BucketTable, changes: readonly JournaledChange[], abort: AbortFlag): Promise<number | undefined> {
    if (changes.length === 0) return 0;
    const last = new Map<E164, number>();
    for (const c of changes) last.set(c.number, c.mask);
    const latest = [...last];
    const numbers = latest.map(([n]) => n);
    if (numbers.length > ctx.directory.size) return undefined;
    e.preparing = { phase: 'replaying', done: 0, total: numbers.length, since: performance.now() };
    const { tags } = await computeTags(e.params, e.key, Float64Array.from(numbers, e164ToKey), {
      backend,
      threads: threadsFor(numbers.length),
      onProgress: (done) => {
        if (e.preparing) e.preparing.done = done;
      },
      abort,
    });
    const { bucketBits, tagBytes } = e.params;
    latest.forEach(([n, mask], i) => table.set(bucketOf(n, bucketBits), tags.subarray(i * tagBytes, (i + 1) * tagBytes), mask));
    return numbers.length;
  }
}
