/**
 * The leader's epoch build on a shared store, in parts that survive it
 * (server/pg/epochs.ts): the numbers of the directory are split into
 * {@link BUILD_PARTS} parts by their last digits (key mod 16, even
 * whatever the numbering plan), and each part's tags are stored in
 * `epoch_build_parts` as soon as they are computed (keys sorted, tags in
 * the same order). A node that takes the lead after the builder died reads
 * the stored parts and computes only what they lack: a tag depends on the
 * number and the epoch key alone, never on the directory, so a stored tag
 * is right for the same number whatever changed since; numbers registered
 * meanwhile are computed, numbers gone are not used. The build resumes
 * where it stopped, less the part that was under way.
 *
 * The parts hold tags of registered numbers, as the stored table does; they
 * are deleted when the table is stored and when the epoch is destroyed
 * (server/pg/epochtables.ts).
 */
import type pg from 'pg';
import { assemble, checkAbort, computeTags, threadsFor, type TableBuilder } from '../blinded/build.ts';
import { pgGuarded } from './connect.ts';

/** Parts a build is stored in. */
export const BUILD_PARTS = 16;

interface StoredPart {
  /** Sorted ascending. */
  keys: Float64Array;
  tags: Uint8Array;
}

function partOf(key: number): number {
  return key % BUILD_PARTS;
}

/** The index of `key` in sorted `keys`, or -1. */
function find(keys: Float64Array, key: number): number {
  let lo = 0;
  let hi = keys.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const k = keys[mid]!;
    if (k === key) return mid;
    if (k < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

async function readParts(pool: pg.Pool, epoch: number, tagBytes: number): Promise<Map<number, StoredPart>> {
  const { rows } = await pgGuarded(() => pool.query<{ part: number; keys: Buffer; tags: Buffer }>('SELECT part, keys, tags FROM epoch_build_parts WHERE epoch = $1', [epoch]));
  const out = new Map<number, StoredPart>();
  for (const r of rows) {
    if (r.keys.length % 8 !== 0 || r.tags.length !== (r.keys.length / 8) * tagBytes) continue; // not of this epoch's shape: computed again
    const keys = new Float64Array(r.keys.length / 8);
    Buffer.from(keys.buffer).set(r.keys);
    out.set(r.part, { keys, tags: new Uint8Array(r.tags) });
  }
  return out;
}

async function storePart(pool: pg.Pool, epoch: number, part: number, keys: Float64Array, tags: Uint8Array): Promise<void> {
  await pgGuarded(() =>
    pool.query(
      `INSERT INTO epoch_build_parts (epoch, part, keys, tags) VALUES ($1, $2, $3, $4)
       ON CONFLICT (epoch, part) DO UPDATE SET keys = excluded.keys, tags = excluded.tags`,
      [epoch, part, Buffer.from(keys.buffer, keys.byteOffset, keys.byteLength), Buffer.from(tags.buffer, tags.byteOffset, tags.byteLength)],
    ),
  );
}

/**
 * A table builder (server/blinded/build.ts buildEpoch) that builds `epoch`
 * part by part: each part's tags from the stored parts where they have the
 * number, the rest computed, and the part stored again while `keepParts()`
 * holds (the node still leads).
 */
export function partedBuilder(pool: pg.Pool, keepParts: () => boolean): TableBuilder {
  return async (epoch, params, key, snapshot, o) => {
    const t0 = performance.now();
    const { tagBytes } = params;
    const n = snapshot.keys.length;
    const stored = await readParts(pool, epoch, tagBytes);
    // The snapshot's indices grouped by part (a counting sort).
    const starts = new Uint32Array(BUILD_PARTS + 1);
    for (let i = 0; i < n; i++) starts[partOf(snapshot.keys[i]!) + 1]!++;
    for (let p = 0; p < BUILD_PARTS; p++) starts[p + 1]! += starts[p]!;
    const order = new Uint32Array(n);
    const fill = starts.slice(0, BUILD_PARTS);
    for (let i = 0; i < n; i++) order[fill[partOf(snapshot.keys[i]!)]!++] = i;

    const tags = new Uint8Array(n * tagBytes);
    let done = 0;
    let reused = 0;
    let threads = 1;
    for (let p = 0; p < BUILD_PARTS; p++) {
      checkAbort(o.abort);
      const ids = order.subarray(starts[p]!, starts[p + 1]!);
      const have = stored.get(p);
      const missing: number[] = [];
      for (const i of ids) {
        const j = have ? find(have.keys, snapshot.keys[i]!) : -1;
        if (j < 0) missing.push(i);
        else {
          tags.set(have!.tags.subarray(j * tagBytes, (j + 1) * tagBytes), i * tagBytes);
          reused++;
        }
      }
      if (missing.length > 0) {
        const got = await computeTags(params, key, Float64Array.from(missing, (i) => snapshot.keys[i]!), {
          backend: o.backend,
          threads: threadsFor(missing.length),
          abort: o.abort,
          onProgress: (d) => o.onProgress(done + (ids.length - missing.length) + d),
        });
        threads = Math.max(threads, got.threads);
        missing.forEach((i, m) => tags.set(got.tags.subarray(m * tagBytes, (m + 1) * tagBytes), i * tagBytes));
      }
      done += ids.length;
      o.onProgress(done);
      if (missing.length > 0 && keepParts()) {
        // The part, keys sorted with their tags, for whoever builds next.
        const sorted = Array.from(ids).sort((a, b) => snapshot.keys[a]! - snapshot.keys[b]!);
        const keys = Float64Array.from(sorted, (i) => snapshot.keys[i]!);
        const partTags = new Uint8Array(sorted.length * tagBytes);
        sorted.forEach((i, k) => partTags.set(tags.subarray(i * tagBytes, (i + 1) * tagBytes), k * tagBytes));
        await storePart(pool, epoch, p, keys, partTags);
      }
    }
    const { table, collisions } = await assemble(epoch, params, snapshot, tags, o.abort);
    checkAbort(o.abort);
    return { table, version: snapshot.version, numbers: n, seconds: (performance.now() - t0) / 1000, threads, collisions, reused };
  };
}
