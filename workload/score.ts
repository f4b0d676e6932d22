/**
 * Scores the operator's reconstruction (workload/operator.ts) against the
 * script's ground truth (workload/script.ts): one {@link WorkloadResult}
 * per design and bucketBits, the rows of results.json's `workload` list.
 *
 * - edges: distinct (requester, number) pairs the simulated clients sent
 *   to the server in the window: all a complete log could reveal;
 * - recovered: claimed edges that are true; recall = recovered / edges,
 *   precision = recovered / claimed (null when nothing is claimed);
 * - medianCandidates: per true edge, the numbers the operator cannot tell
 *   the true contact from (1: named; the whole plan: nothing learned);
 * - conversation and address-book recall: the same claims against the
 *   pairs that talked, and against every book entry at the window's end;
 * - with tokens, requester recovery (workload/requesters.ts): each
 *   counted evaluate request's guessed account against the account that
 *   sent it (share linked, precision, a guess for every request, and
 *   chance: 1 / accounts active that day);
 * - blinded, padding: elements sent / elements asked (the numbers that
 *   were not in a tag cache), overall, for single lookups and for syncs.
 */
import type { DesignName } from '../shared/messages.ts';
import type { E164 } from '../shared/e164.ts';
import { edgeKey, type EdgeKey, type Reconstruction, type WhatRemains } from './operator.ts';
import type { WorkloadPopulation } from './population.ts';
import { scoreRequesters, type RequesterScore } from './requesters.ts';
import type { Script } from './script.ts';
import { runLabel, variantSpec, type RunRecord, type PoolRunStats, type SentEvaluation, type WorkloadVariant } from './simulate.ts';

export interface AttackScore {
  name: string;
  claimed: number;
  recovered: number;
  recall: number;
  precision: number | null;
}

/** Elements sent / elements asked: what padding to the token's size class costs. */
export interface PaddingScore {
  requests: number;
  asked: number;
  sent: number;
  /** sent / asked (1: no padding). */
  ratio: number;
  /** Requests of one number (a lookup), and of more (a sync): their own ratios (null without such requests). */
  single: number | null;
  batch: number | null;
}

export interface WorkloadResult {
  /** As `--designs` names it: plain, hashed, blinded, blinded-anonymous, blinded-anonymous+relay. */
  variant: WorkloadVariant;
  design: DesignName;
  /** Blinded: the epoch's bucket bits; null for plain and hashed. */
  bucketBits: number | null;
  label: string;
  edges: number;
  claimed: number;
  recovered: number;
  recall: number;
  precision: number | null;
  medianCandidates: number;
  /** Over true edges whose contact is registered: candidates among registered numbers. */
  medianCandidatesRegistered: number | null;
  /** Share of true edges whose candidate set is at most 10 numbers. */
  candidatesAtMost10: number;
  conversationEdges: number;
  conversationRecall: number;
  addressBookEdges: number;
  addressBookRecall: number;
  attacks: AttackScore[];
  /** Numbers handed to the client library, its HTTP requests, and body bytes (both ways) per number. */
  lookups: number;
  requests: number;
  bytesPerLookup: number;
  directorySize: number;
  planSize: number;
  /** Blinded: plan numbers and registered numbers per bucket (planSize / 2^b, directorySize / 2^b): what the figures scale with, rather than b itself. */
  planPerBucket: number | null;
  registeredPerBucket: number | null;
  remains: WhatRemains;
  /** With tokens: requester recovery, scored against the truth. */
  requesters: RequesterScore | null;
  /** Blinded: the padding's cost. */
  padding: PaddingScore | null;
  /** With tokens: the token pools' issuance and spending, and the refills played. */
  pools: PoolRunStats | null;
  /** Client calls that failed (expected 0). */
  errors: number;
  /** Wall time of the run: seeding, server start, the simulated days, and the reconstruction. */
  seconds: number;
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function hits(claimed: Set<EdgeKey>, truth: Set<EdgeKey>): number {
  let n = 0;
  for (const k of claimed) if (truth.has(k)) n++;
  return n;
}

/** Script truth keys (user * people + person) as operator edge keys (account id, number). */
function asEdges(keys: Set<number>, pop: WorkloadPopulation, accountIds: readonly number[]): { set: Set<EdgeKey>; list: [number, E164][] } {
  const n = pop.numbers.length;
  const set = new Set<EdgeKey>();
  const list: [number, E164][] = [];
  for (const k of keys) {
    const u = Math.floor(k / n);
    const p = k - u * n;
    const a = accountIds[u]!;
    const num = pop.numbers[p]!;
    set.add(edgeKey(a, num));
    list.push([a, num]);
  }
  return { set, list };
}

export function scorePadding(sent: readonly SentEvaluation[]): PaddingScore {
  const sum = (xs: readonly SentEvaluation[]) => xs.reduce((a, e) => ({ asked: a.asked + e.asked, sent: a.sent + e.elements }), { asked: 0, sent: 0 });
  const all = sum(sent);
  const single = sum(sent.filter((e) => e.asked === 1));
  const batch = sum(sent.filter((e) => e.asked > 1));
  return {
    requests: sent.length,
    asked: all.asked,
    sent: all.sent,
    ratio: all.asked ? all.sent / all.asked : 1,
    single: single.asked ? single.sent / single.asked : null,
    batch: batch.asked ? batch.sent / batch.asked : null,
  };
}

export function scoreRun(pop: WorkloadPopulation, script: Script, run: RunRecord, rec: Reconstruction, seconds: number): WorkloadResult {
  const looked = asEdges(script.truth.lookedUp, pop, run.accountIds);
  const talked = asEdges(script.truth.conversations, pop, run.accountIds).set;
  const book = asEdges(script.truth.addressBook, pop, run.accountIds).set;
  const recovered = hits(rec.claimed, looked.set);
  const plan: number[] = [];
  const registered: number[] = [];
  for (const [a, n] of looked.list) {
    const c = rec.candidates(a, n);
    plan.push(c.plan);
    if (c.registered !== null) registered.push(c.registered);
  }
  const ratio = (x: number, y: number) => (y > 0 ? x / y : 0);
  const design = variantSpec(run.target.variant).design;
  const bits = design === 'blinded' ? (rec.bucketBits ?? run.target.bucketBits ?? 0) : null;
  let requesters: RequesterScore | null = null;
  if (rec.requesters) {
    const sent = run.evaluations.map((e) => ({ t: e.t, ip: e.ip, sizeClass: e.elements, accountId: run.accountIds[e.user]! }));
    const ipAccounts = new Map<string, Set<number>>();
    for (const e of sent) {
      const s = ipAccounts.get(e.ip) ?? new Set<number>();
      s.add(e.accountId);
      ipAccounts.set(e.ip, s);
    }
    requesters = scoreRequesters(rec.requesters, sent, ipAccounts);
  }
  return {
    variant: run.target.variant,
    design,
    bucketBits: bits,
    label: runLabel(run.target),
    edges: looked.set.size,
    claimed: rec.claimed.size,
    recovered,
    recall: ratio(recovered, looked.set.size),
    precision: rec.claimed.size ? recovered / rec.claimed.size : null,
    medianCandidates: median(plan),
    medianCandidatesRegistered: registered.length ? median(registered) : null,
    candidatesAtMost10: ratio(plan.filter((c) => c <= 10).length, plan.length),
    conversationEdges: talked.size,
    conversationRecall: ratio(hits(rec.claimed, talked), talked.size),
    addressBookEdges: book.size,
    addressBookRecall: ratio(hits(rec.claimed, book), book.size),
    attacks: rec.attacks.map((x) => {
      const r = hits(x.claimed, looked.set);
      return { name: x.name, claimed: x.claimed.size, recovered: r, recall: ratio(r, looked.set.size), precision: x.claimed.size ? r / x.claimed.size : null };
    }),
    lookups: run.lookups,
    requests: run.requests,
    bytesPerLookup: ratio(run.bytesSent + run.bytesReceived, run.lookups),
    directorySize: run.directorySize,
    planSize: pop.stats.planSize,
    planPerBucket: bits === null ? null : pop.stats.planSize / 2 ** bits,
    registeredPerBucket: bits === null ? null : run.directorySize / 2 ** bits,
    remains: rec.remains,
    requesters,
    padding: design === 'blinded' ? scorePadding(run.evaluations) : null,
    pools: run.pools,
    errors: run.errors,
    seconds,
  };
}
