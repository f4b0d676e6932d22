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
 * The journal holds deleted numbers too, so server/blinded/epochs.ts prunes
 * it after every cache write, down to the lowest cache version of the live
 * epochs: nothing is kept that no cache needs.
 */
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
