/**
 * The whole measurement: one population, one script of the window, then per
 * variant (and per bucketBits for blinded) a fresh data folder, a real
 * server child, the script played through the real client, the server
 * stopped, and the operator's reconstruction from what it persisted, scored
 * against the script's truth. Used by `pcd simulate` (workload/cli.ts) and
 * the bench section `workload` (bench/workload.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkBucketBits } from '../shared/buckets.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { reconstruct } from './operator.ts';
import { DEFAULT_POPULATION, generatePopulation, type PopulationOptions, type PopulationStats } from './population.ts';
import { scoreRun, type WorkloadResult } from './score.ts';
import { DEFAULT_SCRIPT, generateScript, type Script, type ScriptOptions } from './script.ts';
import { LIBRARY_TOKEN_QUANTUM, VARIANT_NAMES, isAnonymous, runLabel, runScript, variantSpec, type RunTarget, type WorkloadVariant } from './simulate.ts';

export interface WorkloadOptions {
  population: PopulationOptions;
  script: ScriptOptions;
  /** Variants (simulate.ts WORKLOAD_VARIANTS): plain, hashed, blinded, blinded-anonymous, blinded-anonymous+relay. */
  designs: WorkloadVariant[];
  /** Blinded (every variant): one run per value. */
  bucketBits: number[];
  /**
   * The anonymous variants' bucket bits, when not all of `bucketBits`: each
   * of their runs costs 10-15x a blinded one (the client's blind RSA, ~40 ms
   * a token), and their requester recovery does not depend on b.
   */
  anonymousBucketBits?: number[];
  usersPerIp: number;
  /** With tokens: class-1 tokens each pool fetches per simulated day (default the library's, 8). */
  tokenQuantum?: number;
  evalThreads?: number;
  /** Runs (server children) at once (default 1); each has its own clock, so the rows are the same, only faster on two cores. */
  parallel?: number;
  /** Keep the data folders (under `root`) for inspection with `pcd audit`; default: removed after scoring. */
  keepData?: boolean;
  /** Where the data folders go (default: a fresh folder in the OS temp dir). */
  root?: string;
  log?: (line: string) => void;
}

export const DEFAULT_BUCKET_BITS = [0, 4, 8, 12];
/** `pcd simulate`'s bucket bits for the anonymous variants (WorkloadOptions.anonymousBucketBits). */
export const DEFAULT_ANONYMOUS_BUCKET_BITS = [0, 8];

export function defaultWorkloadOptions(): WorkloadOptions {
  return {
    population: { ...DEFAULT_POPULATION, regions: [...DEFAULT_POPULATION.regions] },
    script: { ...DEFAULT_SCRIPT },
    designs: [...VARIANT_NAMES],
    bucketBits: [...DEFAULT_BUCKET_BITS],
    usersPerIp: 1,
  };
}

export interface WorkloadRun {
  parameters: {
    population: PopulationOptions;
    script: Omit<ScriptOptions, 'start'> & { start: string };
    designs: WorkloadVariant[];
    bucketBits: number[];
    usersPerIp: number;
    tokenQuantum: number;
  };
  population: PopulationStats & { plan: string };
  script: Script['counts'] & { actions: number; lookedUpEdges: number; conversationEdges: number; addressBookEdges: number };
  results: WorkloadResult[];
  /** Data folders kept (keepData). */
  dataDirs: string[];
  seconds: number;
}

export function targetsOf(o: Pick<WorkloadOptions, 'designs' | 'bucketBits' | 'anonymousBucketBits'>): RunTarget[] {
  if (o.designs.length === 0) throw new PcdError(ErrorCode.InvalidField, `no design to simulate: --designs ${VARIANT_NAMES.join(',')}`);
  for (const d of o.designs) {
    if (!(VARIANT_NAMES as readonly string[]).includes(d)) throw new PcdError(ErrorCode.InvalidField, `unknown design '${d}': known are ${VARIANT_NAMES.join(', ')}`);
  }
  for (const b of o.bucketBits) checkBucketBits(b);
  const blinded = (v: WorkloadVariant) => variantSpec(v).design === 'blinded';
  if (o.designs.some(blinded) && o.bucketBits.length === 0) throw new PcdError(ErrorCode.InvalidField, 'blinded needs at least one --bucket-bits value');
  for (const b of o.anonymousBucketBits ?? []) checkBucketBits(b);
  const bitsOf = (v: WorkloadVariant) => (isAnonymous(v) && o.anonymousBucketBits !== undefined ? o.anonymousBucketBits : o.bucketBits);
  return [...new Set(o.designs)].flatMap((variant): RunTarget[] => (blinded(variant) ? [...new Set(bitsOf(variant))].map((bucketBits) => ({ variant, bucketBits })) : [{ variant }]));
}

export async function runWorkload(o: WorkloadOptions): Promise<WorkloadRun> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const targets = targetsOf(o);
  if (!Number.isInteger(o.usersPerIp) || o.usersPerIp < 1) throw new PcdError(ErrorCode.InvalidField, `users per IP must be a whole number >= 1, got ${o.usersPerIp}`);
  if (o.tokenQuantum !== undefined && !(Number.isInteger(o.tokenQuantum) && o.tokenQuantum >= 0 && o.tokenQuantum <= 1000)) {
    throw new PcdError(ErrorCode.InvalidField, `the token quantum must be a whole number of tokens a day from 0 to 1000, got ${o.tokenQuantum}`);
  }
  const pop = generatePopulation(o.population);
  const script = generateScript(pop, o.script);
  const s = pop.stats;
  log(
    `  population: ${s.users} users (registered) of ${s.people} people in a plan of ${s.planSize} numbers (${pop.planSpec}); ` +
      `${s.addressBookEdges} book entries, degree median ${s.degree.median} mean ${s.degree.mean.toFixed(1)} max ${s.degree.max}, ` +
      `${(s.reciprocity * 100).toFixed(0)} % reciprocated, ${(s.inCommunity * 100).toFixed(0)} % in the own community`,
  );
  log(
    `  script: ${o.script.days} days, ${script.counts.conversations} conversations, ${script.counts.cacheHits} answered from the app cache, ` +
      `${script.counts.lookups} lookups, ${script.counts.syncs} full syncs (${script.counts.syncedNumbers} numbers), ${script.truth.lookedUp.size} distinct edges looked up`,
  );
  const root = o.root ?? fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-workload-'));
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  const results: (WorkloadResult | undefined)[] = targets.map(() => undefined);
  const dataDirs: string[] = [];
  const parallel = Math.max(1, Math.min(o.parallel ?? 1, targets.length));
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < targets.length; i = next++) {
      const target = targets[i]!;
      const r0 = performance.now();
      const run = await runScript(pop, script, target, { root, usersPerIp: o.usersPerIp, evalThreads: o.evalThreads, tokenQuantum: o.tokenQuantum, log });
      const rec = reconstruct(target, run.dataDir, pop.planSpec, run.relayIps);
      const row = scoreRun(pop, script, run, rec, (performance.now() - r0) / 1000);
      results[i] = row;
      const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(1)} %`);
      const q = row.requesters;
      log(
        `  ${runLabel(target)}: ${row.lookups} lookups in ${run.seconds.toFixed(1)} s (server start ${run.startSeconds.toFixed(1)} s, ` +
          `client calls ${run.clientSeconds.toFixed(1)} s, clock ${run.clockSeconds.toFixed(1)} s); recall ${pct(row.recall)}, ` +
          `precision ${pct(row.precision)}, median candidates ${row.medianCandidates}, ` +
          `${Math.round(row.bytesPerLookup)} B/lookup` +
          (q ? `; requesters: ${pct(q.linkedShare)} linked at ${pct(q.precision)}, top guess ${pct(q.top1)} (chance ${pct(q.chance)})` : '') +
          (row.padding && isAnonymous(target.variant) ? `; padding ${row.padding.ratio.toFixed(2)}x` : '') +
          (run.errors ? `; ${run.errors} failed lookups (${run.firstError})` : ''),
      );
      for (const w of rec.warnings) log(`    warning: ${w}`);
      if (o.keepData) dataDirs.push(run.dataDir);
      else fs.rmSync(run.dataDir, { recursive: true, force: true });
    }
  };
  try {
    await Promise.all(Array.from({ length: parallel }, worker));
  } finally {
    if (!o.keepData && o.root === undefined) fs.rmSync(root, { recursive: true, force: true });
  }
  const { start, ...scriptRest } = o.script;
  return {
    parameters: {
      population: o.population,
      script: { ...scriptRest, start: new Date(start).toISOString() },
      designs: o.designs,
      bucketBits: o.bucketBits,
      usersPerIp: o.usersPerIp,
      tokenQuantum: o.tokenQuantum ?? LIBRARY_TOKEN_QUANTUM,
    },
    population: { ...pop.stats, plan: pop.planSpec },
    script: {
      ...script.counts,
      actions: script.actions.length,
      lookedUpEdges: script.truth.lookedUp.size,
      conversationEdges: script.truth.conversations.size,
      addressBookEdges: script.truth.addressBook.size,
    },
    results: results.filter((r): r is WorkloadResult => r !== undefined),
    dataDirs,
    seconds: (performance.now() - t0) / 1000,
  };
}
