/**
 * The whole measurement: one population, one script of the window, then per
 * variant (and per bucketBits for blinded) a fresh data folder, a real
 * server child, the script played through the real client, the server
 * stopped, and the operator's reconstruction from what it persisted, scored
 * against the script's truth. Used by `pcd simulate` (bin/commands/simulate.ts) and
 * the bench section `workload` (bench/workload.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkBucketBits } from '../shared/buckets.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { reconstruct, type Reconstruction } from './operator.ts';
import { DEFAULT_POPULATION, generatePopulation, type PopulationOptions, type PopulationStats } from './population.ts';
import { asEdges, registeredNumbers, scoreRun, toRegistered, type ConversationShare, type OrderScore, type WorkloadResult } from './score.ts';
import { DAY_MS, DEFAULT_SCRIPT, generateScript, type Script, type ScriptOptions } from './script.ts';
import { LIBRARY_TOKEN_QUANTUM, VARIANT_NAMES, isAnonymous, runLabel, runScript, variantSpec, type RunRecord, type RunTarget, type WorkloadVariant } from './simulate.ts';
import type { WorkloadPopulation } from './population.ts';

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
  poolQuantum?: number;
  /**
   * Daisy-chained orders: a log kept `orderDays` days (a retention) and an
   * order served every `orderDays` days. Each order reads only its window;
   * the chain reads them all together, as the operator holding every
   * order's answer could. Not for the anonymous variants.
   */
  orderDays?: number;
  evalThreads?: number;
  /** Runs (server children) at once (default 1); each has its own clock, so the rows are the same, only faster on two cores. */
  parallel?: number;
  /** Keep the data folders (under `root`) for inspection with `pcd audit`; default: removed after scoring. */
  keepData?: boolean;
  /** Where the data folders go (default: a fresh folder in the OS temp dir). */
  root?: string;
  /** Write the true edges here (truthCsv), for reviewers; the attack never reads it. */
  truthFile?: string;
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
    poolQuantum: number;
  };
  population: PopulationStats & { plan: string };
  script: Script['counts'] & { actions: number; lookedUpEdges: number; conversationEdges: number; addressBookEdges: number; conversationShare: ConversationShare };
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

/** Within this long after a lookup, a conversation it preceded counts as following it (the app's answer cache's default life). */
export const FOLLOWED_WITHIN_MS = DAY_MS;

export function conversationShare(pop: WorkloadPopulation, script: Script): ConversationShare {
  const n = pop.numbers.length;
  const byKind = { conversation: [0, 0] as [number, number], newContact: [0, 0] as [number, number], sync: [0, 0] as [number, number] };
  for (const a of script.actions) {
    for (const p of a.people) {
      const times = script.truth.conversationTimes.get(a.user * n + p) ?? [];
      const followed = times.some((t) => t >= a.t && t <= a.t + FOLLOWED_WITHIN_MS);
      const kind = a.reason === 'reinstall' ? byKind.sync : a.reason === 'conversation' ? byKind.conversation : byKind.newContact;
      kind[0]++;
      if (followed) kind[1]++;
    }
  }
  let talked = 0;
  for (const k of script.truth.lookedUp) if (script.truth.conversations.has(k)) talked++;
  const rows = byKind.conversation[0] + byKind.newContact[0] + byKind.sync[0];
  const followed = byKind.conversation[1] + byKind.newContact[1] + byKind.sync[1];
  return { rows, followed, byKind, edges: script.truth.lookedUp.size, talkedEdges: talked };
}

/**
 * The truth, for reviewers who score an attack of their own (`pcd simulate
 * --keep-data` writes it beside the data folders): one line per pair looked
 * up, with the requester's number, the contact's, whether the contact is
 * registered, the first lookup (ISO 8601), how many times it was looked up,
 * and whether the pair talked in the window. The operator's attack never
 * reads it.
 */
export function truthCsv(pop: WorkloadPopulation, script: Script): string {
  const n = pop.numbers.length;
  const registered = registeredNumbers(pop);
  const lines = ['requester,contact,registered,first_lookup,lookups,talked'];
  const keys = [...script.truth.lookupTimes.keys()].sort((a, b) => script.truth.lookupTimes.get(a)![0]! - script.truth.lookupTimes.get(b)![0]! || a - b);
  for (const k of keys) {
    const times = script.truth.lookupTimes.get(k)!;
    const contact = pop.numbers[k % n]!;
    lines.push(
      [pop.numbers[Math.floor(k / n)]!, contact, registered.has(contact) ? 1 : 0, new Date(times[0]!).toISOString(), times.length, script.truth.conversations.has(k) ? 1 : 0].join(','),
    );
  }
  return lines.join('\n') + '\n';
}

/** The orders of `orderDays` over the run's period, each read alone, and their chain read together (WorkloadOptions.orderDays). */
function scoreOrders(pop: WorkloadPopulation, script: Script, run: RunRecord, full: Reconstruction, orderDays: number): OrderScore[] {
  const start = script.options.start;
  const k = Math.floor(script.options.days / orderDays);
  if (k < 1) return [];
  const all = asEdges(script.truth.lookedUp, pop, run.accountIds);
  const allRegistered = toRegistered(all.list, pop);
  const iso = (t: number) => new Date(t).toISOString().slice(0, 10);
  const score = (name: string, from: number, until: number, rec: Reconstruction): OrderScore => {
    const keys = new Set<number>();
    for (const [key, times] of script.truth.lookupTimes) if (times.some((t) => t >= from && t < until)) keys.add(key);
    const windowEdges = asEdges(keys, pop, run.accountIds).set;
    let inWindow = 0;
    let right = 0;
    let rightRegistered = 0;
    for (const c of rec.claimed) {
      if (windowEdges.has(c)) inWindow++;
      if (all.set.has(c)) right++;
      if (allRegistered.has(c)) rightRegistered++;
    }
    return {
      name,
      from: iso(from),
      until: iso(until),
      windowEdges: windowEdges.size,
      claimed: rec.claimed.size,
      recallWindow: windowEdges.size ? inWindow / windowEdges.size : 0,
      recallAll: all.set.size ? right / all.set.size : 0,
      recallRegisteredAll: allRegistered.size ? rightRegistered / allRegistered.size : 0,
      precision: rec.claimed.size ? right / rec.claimed.size : null,
    };
  };
  const out: OrderScore[] = [];
  for (let i = 1; i <= k; i++) {
    const from = start + (i - 1) * orderDays * DAY_MS;
    const until = start + i * orderDays * DAY_MS;
    out.push(score(`order ${i} (served day ${i * orderDays})`, from, until, reconstruct(run.target, run.dataDir, pop.planSpec, run.relayIps, { from, until })));
  }
  const chainUntil = start + k * orderDays * DAY_MS;
  const chain = k * orderDays === script.options.days ? full : reconstruct(run.target, run.dataDir, pop.planSpec, run.relayIps, { from: start, until: chainUntil });
  out.push(score(`chain of ${k} orders, read together`, start, chainUntil, chain));
  return out;
}

export async function runWorkload(o: WorkloadOptions): Promise<WorkloadRun> {
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const targets = targetsOf(o);
  if (!Number.isInteger(o.usersPerIp) || o.usersPerIp < 1) throw new PcdError(ErrorCode.InvalidField, `users per IP must be a whole number >= 1, got ${o.usersPerIp}`);
  if (o.poolQuantum !== undefined && !(Number.isInteger(o.poolQuantum) && o.poolQuantum >= 0 && o.poolQuantum <= 1000)) {
    throw new PcdError(ErrorCode.InvalidField, `the pool's quantum must be a whole number of tokens a day from 0 to 1000, got ${o.poolQuantum}`);
  }
  if (o.orderDays !== undefined && !(o.orderDays > 0 && o.orderDays <= o.script.days)) {
    throw new PcdError(ErrorCode.InvalidField, `an order's window must be more than 0 days and at most the simulated days (${o.script.days}), got ${o.orderDays}`);
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
      `${script.counts.lookups} lookups at a conversation, ${script.counts.newContactLookups} of new contacts, ${script.counts.syncs} full syncs (${script.counts.syncedNumbers} numbers), ${script.truth.lookedUp.size} distinct edges looked up`,
  );
  const share = conversationShare(pop, script);
  const root = o.root ?? fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-workload-'));
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  if (o.truthFile) fs.writeFileSync(o.truthFile, truthCsv(pop, script));
  const results: (WorkloadResult | undefined)[] = targets.map(() => undefined);
  const dataDirs: string[] = [];
  const parallel = Math.max(1, Math.min(o.parallel ?? 1, targets.length));
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < targets.length; i = next++) {
      const target = targets[i]!;
      const r0 = performance.now();
      const run = await runScript(pop, script, target, { root, usersPerIp: o.usersPerIp, evalThreads: o.evalThreads, poolQuantum: o.poolQuantum, log });
      const rec = reconstruct(target, run.dataDir, pop.planSpec, run.relayIps);
      const row = scoreRun(pop, script, run, rec, (performance.now() - r0) / 1000);
      if (o.orderDays !== undefined && !isAnonymous(target.variant)) row.orders = scoreOrders(pop, script, run, rec, o.orderDays);
      row.conversationShare = share;
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
      poolQuantum: o.poolQuantum ?? LIBRARY_TOKEN_QUANTUM,
    },
    population: { ...pop.stats, plan: pop.planSpec },
    script: {
      ...script.counts,
      actions: script.actions.length,
      lookedUpEdges: script.truth.lookedUp.size,
      conversationEdges: script.truth.conversations.size,
      addressBookEdges: script.truth.addressBook.size,
      conversationShare: share,
    },
    results: results.filter((r): r is WorkloadResult => r !== undefined),
    dataDirs,
    seconds: (performance.now() - t0) / 1000,
  };
}
