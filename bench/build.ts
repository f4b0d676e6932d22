/**
 * Directory build time and server memory as the directory grows.
 *
 * For each size a data folder is seeded once; then each of {bare directory
 * index, plain, hashed, blinded} is opened by `openServer` in a fresh child
 * process on its own copy of the database (no epoch cache, so blinded
 * evaluates every registered number), with the process's memory read before
 * and after (after a full GC). Deltas are the design's cost on top of an
 * idle process that has loaded the server's code; the blinded figure
 * includes the shared directory index too, since every server has one.
 *
 * The blinded build evaluates RFC 9497 Evaluate once per number (~300/s per
 * core with the reference crypto), on worker threads from 2,000 numbers.
 * The per-core rate is measured (a one-thread build) and the build time at
 * 10^7 and 10^9 numbers is projected from it: explicitly a projection.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DESIGNS, type DesignName } from '../shared/designs/index.ts';
import { DEFAULT_TAG_BYTES } from '../shared/buckets.ts';
import { forkServer, openTimeoutMs } from '../harness/fork.ts';
import type { BuildMark, Projection } from './results.ts';
import { BENCH_ADMIN_TOKEN, copyFolder, seedFolder, tempRoot } from './seeding.ts';
import { formatBytes } from './stats.ts';

export interface BuildConfig {
  /** Directory sizes for the bare index, plain and hashed. */
  sizes: number[];
  /** Sizes at which blinded is built too (each costs size / (~300/s x threads)). */
  blindedSizes: number[];
  /** Also build blinded on ONE thread at this size: the per-core rate the projection uses. */
  perCoreSize?: number;
  bucketBits: number;
  projectTo: number[];
  /** Core counts the build-time projection is drawn for. */
  projectCores: number[];
}

export interface BuildOutcome {
  marks: BuildMark[];
  projections: Projection[];
  seeding: { numbers: number; seconds: number }[];
  notes: string[];
}

type Target = DesignName | 'directory';

/** Which of the config's size lists each design is built at: the blinded build evaluates every number, so it has its own. */
const BUILD_SIZES: { readonly [N in DesignName]: 'sizes' | 'blindedSizes' } = { plain: 'sizes', hashed: 'sizes', blinded: 'blindedSizes' };

interface Opened {
  fields: Omit<BuildMark, 'name' | 'buildSeconds' | 'numbersPerSec'>;
  /** The blinded epoch build's own time, as the server reports it. */
  epochBuildSeconds?: number;
}

async function openInChild(dataDir: string, numbers: number, target: Target, bucketBits: number, env: Record<string, string> = {}): Promise<Opened> {
  // No evaluator threads (blinded, evalThreads 0): they are a fixed cost per worker whatever the
  // directory, and would blur the memory figure this section is after.
  const child = forkServer(env);
  try {
    const r = await child.open(
      { dataDir, designs: target === 'directory' ? [] : [target], bucketBits, adminToken: BENCH_ADMIN_TOKEN, progress: false, evalThreads: 0 },
      openTimeoutMs(numbers),
    );
    const last = r.epochStats?.lastBuild;
    return {
      fields: {
        section: 'build',
        design: target,
        numbers: r.directorySize,
        ...(last ? { threads: last.threads, collisions: last.collisions } : {}),
        seconds: r.seconds,
        rssBytes: r.after.memory.rss,
        rssDeltaBytes: r.after.memory.rss - r.before.memory.rss,
        heapUsedDeltaBytes: r.after.memory.heapUsed - r.before.memory.heapUsed,
        arrayBuffersDeltaBytes: r.after.memory.arrayBuffers - r.before.memory.arrayBuffers,
        peakRssBytes: r.after.maxRssBytes,
        directoryIndexBytes: r.directoryIndexBytes,
        ...(r.epochCacheBytes !== undefined && target === 'blinded' ? { epochCacheBytes: r.epochCacheBytes } : {}),
      },
      ...(last ? { epochBuildSeconds: last.seconds } : {}),
    };
  } finally {
    await child.close();
  }
}

export async function runBuild(config: BuildConfig, log: (line: string) => void): Promise<BuildOutcome> {
  const root = tempRoot('pcd-bench-build-');
  const marks: BuildMark[] = [];
  const seeding: BuildOutcome['seeding'] = [];
  try {
    const sizes = [...new Set([...config.sizes, ...config.blindedSizes, ...(config.perCoreSize ? [config.perCoreSize] : [])])].sort((a, b) => a - b);
    for (const n of sizes) {
      const template = path.join(root, `n${n}`);
      const seeded = seedFolder(template, n);
      seeding.push({ numbers: seeded.numbers, seconds: seeded.seedSeconds });
      log(`  n = ${n.toLocaleString('en-US')}: seeded the store in ${seeded.seedSeconds.toFixed(1)} s`);
      const targets: { target: Target; env?: Record<string, string>; label?: string }[] = [];
      if (config.sizes.includes(n)) targets.push({ target: 'directory' });
      for (const design of DESIGNS) if (config[BUILD_SIZES[design]].includes(n)) targets.push({ target: design });
      if (config.perCoreSize === n) targets.push({ target: 'blinded', env: { PCD_BUILD_THREADS: '1' }, label: ' (1 thread)' });
      let directorySeconds: number | undefined;
      for (const t of targets) {
        const dataDir = copyFolder(template, path.join(root, `n${n}-${t.target}${t.label ? '-1t' : ''}`));
        const { fields, epochBuildSeconds } = await openInChild(dataDir, n, t.target, config.bucketBits, t.env);
        if (t.target === 'directory') directorySeconds = fields.seconds;
        const buildSeconds =
          epochBuildSeconds ?? (t.target === 'directory' ? fields.seconds : Math.max(0, fields.seconds - (directorySeconds ?? 0)));
        const mark: BuildMark = {
          ...fields,
          name: `build ${t.target === 'directory' ? 'directory index' : t.target} n=${n.toLocaleString('en-US')}${t.label ?? ''}`,
          buildSeconds,
          // Blinded: the epoch build alone; the others: the whole open (their build is a pass over the index).
          numbersPerSec: t.target === 'blinded' ? n / buildSeconds : n / fields.seconds,
        };
        marks.push(mark);
        fs.rmSync(dataDir, { recursive: true, force: true });
        log(
          `  ${mark.name.padEnd(36)} open ${mark.seconds.toFixed(2)} s` +
            (t.target === 'blinded' ? ` (build ${buildSeconds.toFixed(2)} s, ${Math.round(mark.numbersPerSec)} numbers/s, ${mark.threads ?? 1} thread${(mark.threads ?? 1) > 1 ? 's' : ''})` : '') +
            `; RSS ${formatBytes(mark.rssBytes)} (+${formatBytes(mark.rssDeltaBytes)}), typed arrays +${formatBytes(mark.arrayBuffersDeltaBytes)}, index ${formatBytes(mark.directoryIndexBytes)}` +
            (mark.epochCacheBytes !== undefined ? `, epoch cache ${formatBytes(mark.epochCacheBytes)}` : ''),
        );
      }
      fs.rmSync(template, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  return { marks, projections: project(marks, config), seeding, notes: notes(config) };
}

function notes(config: BuildConfig): string[] {
  return [
    `Build: each row opens a server over a fresh copy of a seeded store in a fresh child process (blinded epochs with bucketBits ${config.bucketBits}, no epoch cache, no evaluator threads: PCD_EVAL_THREADS=0). "RSS growth" and "typed arrays growth" are after minus before the open, after a full GC; the blinded row includes the shared directory index, as every server has one. Peak RSS includes the build's worker threads. The one-thread row (PCD_BUILD_THREADS=1) gives the per-core rate the projections use.`,
  ];
}

function project(marks: BuildMark[], config: BuildConfig): Projection[] {
  const out: Projection[] = [];
  const blinded = marks.filter((m) => m.design === 'blinded');
  // Per-core rate: a one-thread build when there is one (the largest), else the largest build divided by its threads.
  const oneThread = blinded.filter((m) => (m.threads ?? 1) === 1).sort((a, b) => b.numbers - a.numbers)[0];
  const largest = [...blinded].sort((a, b) => b.numbers - a.numbers)[0];
  const basis = oneThread ?? largest;
  if (basis) {
    const perCore = basis === oneThread ? basis.numbersPerSec : basis.numbersPerSec / (basis.threads ?? 1);
    for (const n of config.projectTo) {
      out.push({
        projection: true,
        section: 'build',
        name: `blinded directory build time at ${n.toLocaleString('en-US')} numbers (projection)`,
        basis: `${basis.name}: ${Math.round(perCore)} numbers/s per core`,
        assumption: 'time = N / (per-core rate x cores): Evaluate is independent per number, so it parallelises across cores and hosts; sorting into buckets is negligible next to it',
        rows: config.projectCores.map((c) => ({ label: `${c} core${c > 1 ? 's' : ''}`, x: c, value: n / (perCore * c), unit: 's' as const })),
      });
    }
  }
  // Memory: what grows with N is typed arrays (the hash tables, the buckets); the
  // designs keep no per-number JS objects. Bytes per number of those arrays at the
  // largest directory measured, scaled linearly. (RSS at the sizes measured is in the table.)
  const rows: Projection['rows'] = [];
  const bases: string[] = [];
  for (const design of ['directory', ...DESIGNS] as const) {
    const m = marks.filter((x) => x.design === design).sort((a, b) => b.numbers - a.numbers)[0];
    if (!m || m.numbers === 0) continue;
    const perNumber = m.arrayBuffersDeltaBytes / m.numbers;
    bases.push(`${design === 'directory' ? 'directory index' : design} ${perNumber.toFixed(1)} B/number at ${m.numbers.toLocaleString('en-US')}`);
    for (const n of config.projectTo) {
      rows.push({ label: `${design === 'directory' ? 'directory index' : design}, ${n.toLocaleString('en-US')} numbers`, x: n, value: perNumber * n, unit: 'bytes' });
    }
  }
  if (rows.length > 0) {
    out.push({
      projection: true,
      section: 'build',
      name: 'server memory for the directory at 10^7 and 10^9 numbers (projection)',
      basis: `typed-array growth per number: ${bases.join('; ')}`,
      assumption: `linear in N; the hash tables double in size at 70 % load, so the real figure steps by up to 2x; blinded buckets need ${DEFAULT_TAG_BYTES + 1} B per number plus the shared index. Beyond a few 10^8 numbers one process cannot hold this: shard by number range (several nodes over one store: not built yet)`,
      rows,
    });
  }
  return out;
}
