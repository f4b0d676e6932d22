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
 * - recall over edges to registered contacts beside recall over all edges:
 *   a messenger conversation is with a registered number, and those are the
 *   edges a pen-register order on the messenger is about;
 * - the scored attack's precision-recall curve (claims sorted by the
 *   model's score, workload/attack.ts), its recall at fixed precisions, and
 *   the reverse direction (per target number, who looked it up);
 * - conversation and address-book recall: the same claims against the
 *   pairs that talked, and against every book entry at the window's end;
 *   and the claims' conversation precision: how often a claimed edge is a
 *   pair that talked (a lookup does not always mean a conversation);
 * - with tokens, requester recovery (workload/requesters.ts): each
 *   counted evaluate request's guessed account against the account that
 *   sent it (share linked, precision, a guess for every request, and
 *   chance: 1 / accounts active that day);
 * - blinded, padding: elements sent / elements asked (the numbers that
 *   were not in a tag cache), overall, for single lookups and for syncs.
 */
import type { DesignName } from '../shared/messages.ts';
import type { E164 } from '../shared/e164.ts';
import { CONFIDENCE_LEVELS, edgeKey, levelName, type EdgeKey, type Reconstruction, type WhatRemains } from './operator.ts';
import { measureBehaviour, predictSignals, type Behaviour, type SignalPrediction } from './model.ts';
import type { WorkloadPopulation } from './population.ts';
import { scoreRequesters, type RequesterScore } from './requesters.ts';
import type { Script } from './script.ts';
import { runLabel, variantSpec, type RunRecord, type PoolRunStats, type SentEvaluation, type WorkloadVariant } from './simulate.ts';

export interface AttackScore {
  name: string;
  claimed: number;
  recovered: number;
  recall: number;
  /** Over edges to registered contacts. */
  recallRegistered: number;
  precision: number | null;
  /** The scored levels: the mean score of the claims, the operator's own estimate of their precision (null for a rule). */
  estimatedPrecision: number | null;
}

/** One point of the precision-recall curve: the claims scored at least `score`. */
export interface CurvePoint {
  score: number;
  claimed: number;
  recall: number;
  recallRegistered: number;
  precision: number;
}

/** The most the curve recovers at a precision at least `precision`, and the score that cuts it there. */
export interface RecallAtPrecision {
  precision: number;
  recall: number;
  recallRegistered: number;
  claimed: number;
  /** Lowest score claimed (null: no cut reaches the precision). */
  score: number | null;
}

/** A pen-register order on a target number asks who looked it up: the headline claims grouped by number. */
export interface ReverseScore {
  /** Numbers looked up by at least one requester, and those registered. */
  targets: number;
  registeredTargets: number;
  /** Per target, the share of its true lookers named, averaged over targets (all, registered). */
  meanRecall: number;
  meanRecallRegistered: number;
  /** Targets with at least one looker named rightly, and with every looker named. */
  anyNamed: number;
  allNamed: number;
  /** Of the lookers named, how many looked the number up. */
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
  /** Edges whose contact is registered. */
  registeredEdges: number;
  claimed: number;
  recovered: number;
  recall: number;
  recallRegistered: number;
  precision: number | null;
  /** The headline claims that are pairs who talked in the window (null: nothing claimed). */
  conversationPrecision: number | null;
  /** The scored attack's curve (plain and hashed: one point) and its recall at fixed precisions. */
  curve: CurvePoint[];
  atPrecision: RecallAtPrecision[];
  reverse: ReverseScore;
  /** With `orderDays`: what each order and the chain of orders give (workload/run.ts). */
  orders?: OrderScore[];
  /** The population's behaviour in the window (workload/model.ts), and, blinded, the model's prediction of each rule at this run's sizes. */
  behaviour: Behaviour;
  model: SignalPrediction[] | null;
  /** Users behind one IP address in this run (1: each its own). */
  usersPerIp: number;
  /** The study this run belongs to (bench config `studies`; default: 'default'). */
  study?: string;
  /** The run's lookups: how many were followed by a conversation (workload/run.ts). */
  conversationShare?: ConversationShare;
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

const registeredMemo = new WeakMap<WorkloadPopulation, Set<string>>();
/** The users' numbers: people 0 .. users - 1 are the registered ones (workload/population.ts). */
export function registeredNumbers(pop: WorkloadPopulation): Set<string> {
  let s = registeredMemo.get(pop);
  if (!s) registeredMemo.set(pop, (s = new Set(pop.numbers.slice(0, pop.users))));
  return s;
}

/** The edges of `list` whose contact is registered. */
export function toRegistered(list: readonly [number, E164][], pop: WorkloadPopulation): Set<EdgeKey> {
  const registered = registeredNumbers(pop);
  return new Set(list.filter(([, n]) => registered.has(n)).map(([a, n]) => edgeKey(a, n)));
}

/** Script truth keys (user * people + person) as operator edge keys (account id, number). */
export function asEdges(keys: Set<number>, pop: WorkloadPopulation, accountIds: readonly number[]): { set: Set<EdgeKey>; list: [number, E164][] } {
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

const LEVEL_NAMES = new Set<string>(CONFIDENCE_LEVELS.map(levelName));

/** Precisions the recall is read at: round marks, and the points the outside attack was reported at (README: the workload simulation). */
export const PRECISION_MARKS = [0.47, 0.5, 0.762, 0.9, 0.95, 0.975, 0.99, 0.994] as const;
/** Points kept of a curve: enough for a chart, few enough for results.json. */
const CURVE_POINTS = 60;

/** The curve of claims sorted by score, against the truth (all edges, and those to registered contacts). */
export function scoreCurve(scored: readonly { key: EdgeKey; score: number }[], truth: Set<EdgeKey>, registered: Set<EdgeKey>): { curve: CurvePoint[]; atPrecision: RecallAtPrecision[] } {
  const full: CurvePoint[] = [];
  let hit = 0;
  let hitReg = 0;
  scored.forEach((c, i) => {
    if (truth.has(c.key)) hit++;
    if (registered.has(c.key)) hitReg++;
    // A point at the end of every run of equal scores: a cut between equal scores is not one the operator can make.
    if (i + 1 === scored.length || scored[i + 1]!.score !== c.score) {
      full.push({ score: c.score, claimed: i + 1, recall: truth.size ? hit / truth.size : 0, recallRegistered: registered.size ? hitReg / registered.size : 0, precision: hit / (i + 1) });
    }
  });
  const atPrecision = PRECISION_MARKS.map((precision): RecallAtPrecision => {
    let best: CurvePoint | undefined;
    for (const q of full) if (q.precision >= precision && (!best || q.recall > best.recall)) best = q;
    return best
      ? { precision, recall: best.recall, recallRegistered: best.recallRegistered, claimed: best.claimed, score: best.score }
      : { precision, recall: 0, recallRegistered: 0, claimed: 0, score: null };
  });
  const step = Math.max(1, Math.ceil(full.length / CURVE_POINTS));
  const curve = full.filter((_, i) => i % step === 0 || i === full.length - 1);
  return { curve, atPrecision };
}

/** Per target number, who looked it up: the claims regrouped (module header). */
export function scoreReverse(claimed: Set<EdgeKey>, truth: readonly [number, E164][], isRegistered: (n: E164) => boolean): ReverseScore {
  const lookers = new Map<string, Set<number>>();
  for (const [a, n] of truth) {
    const s = lookers.get(n);
    if (s) s.add(a);
    else lookers.set(n, new Set([a]));
  }
  const named = new Map<string, Set<number>>();
  for (const k of claimed) {
    const i = k.indexOf(' ');
    const n = k.slice(i + 1);
    const s = named.get(n);
    if (s) s.add(Number(k.slice(0, i)));
    else named.set(n, new Set([Number(k.slice(0, i))]));
  }
  let sum = 0;
  let sumReg = 0;
  let reg = 0;
  let any = 0;
  let all = 0;
  let right = 0;
  let claims = 0;
  for (const [n, ls] of lookers) {
    const got = named.get(n) ?? new Set<number>();
    let r = 0;
    for (const a of got) if (ls.has(a)) r++;
    sum += r / ls.size;
    if (isRegistered(n as E164)) {
      reg++;
      sumReg += r / ls.size;
    }
    if (r > 0) any++;
    if (r === ls.size) all++;
  }
  for (const [n, got] of named) {
    const ls = lookers.get(n);
    claims += got.size;
    if (ls) for (const a of got) if (ls.has(a)) right++;
  }
  return {
    targets: lookers.size,
    registeredTargets: reg,
    meanRecall: lookers.size ? sum / lookers.size : 0,
    meanRecallRegistered: reg ? sumReg / reg : 0,
    anyNamed: any,
    allNamed: all,
    precision: claims ? right / claims : null,
  };
}

/**
 * "The logs don't prove a conversation took place": how often a lookup was
 * followed by one (measured by workload/run.ts conversationShare). Rows:
 * every number looked up (what plain and hashed log, one row each),
 * followed when the user started a conversation with that person at the
 * lookup or within FOLLOWED_WITHIN_MS after; by why it was looked up.
 * Edges: looked-up pairs that talked at some point in the window.
 */
export interface ConversationShare {
  rows: number;
  followed: number;
  /** Rows of conversations (the lookup a conversation made), of new contacts, and of syncs. */
  byKind: { conversation: [number, number]; newContact: [number, number]; sync: [number, number] };
  edges: number;
  talkedEdges: number;
}

/** One order (a window of the log a retention keeps) or the chain of them, scored. */
export interface OrderScore {
  name: string;
  from: string;
  until: string;
  /** Edges looked up in the order's window, and over the whole simulated period. */
  windowEdges: number;
  claimed: number;
  /** Against the window's edges, and against every edge of the period. */
  recallWindow: number;
  recallAll: number;
  recallRegisteredAll: number;
  precision: number | null;
}

export function scoreRun(pop: WorkloadPopulation, script: Script, run: RunRecord, rec: Reconstruction, seconds: number): WorkloadResult {
  const looked = asEdges(script.truth.lookedUp, pop, run.accountIds);
  const talked = asEdges(script.truth.conversations, pop, run.accountIds).set;
  const book = asEdges(script.truth.addressBook, pop, run.accountIds).set;
  const recovered = hits(rec.claimed, looked.set);
  const registeredSet = toRegistered(looked.list, pop);
  const { curve, atPrecision } = scoreCurve(rec.scored, looked.set, registeredSet);
  const behaviour = measureBehaviour(pop, script);
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
    registeredEdges: registeredSet.size,
    claimed: rec.claimed.size,
    recovered,
    recall: ratio(recovered, looked.set.size),
    recallRegistered: ratio(hits(rec.claimed, registeredSet), registeredSet.size),
    precision: rec.claimed.size ? recovered / rec.claimed.size : null,
    conversationPrecision: rec.claimed.size ? hits(rec.claimed, talked) / rec.claimed.size : null,
    curve,
    atPrecision,
    reverse: scoreReverse(rec.claimed, looked.list, (n) => registeredNumbers(pop).has(n)),
    medianCandidates: median(plan),
    medianCandidatesRegistered: registered.length ? median(registered) : null,
    candidatesAtMost10: ratio(plan.filter((c) => c <= 10).length, plan.length),
    conversationEdges: talked.size,
    conversationRecall: ratio(hits(rec.claimed, talked), talked.size),
    addressBookEdges: book.size,
    addressBookRecall: ratio(hits(rec.claimed, book), book.size),
    attacks: rec.attacks.map((x) => {
      const r = hits(x.claimed, looked.set);
      let sum = 0;
      let scored = 0;
      for (const c of rec.scored) {
        if (!x.claimed.has(c.key)) continue;
        sum += c.score;
        scored++;
      }
      return {
        name: x.name,
        claimed: x.claimed.size,
        recovered: r,
        recall: ratio(r, looked.set.size),
        recallRegistered: ratio(hits(x.claimed, registeredSet), registeredSet.size),
        precision: x.claimed.size ? r / x.claimed.size : null,
        estimatedPrecision: LEVEL_NAMES.has(x.name) && scored > 0 ? sum / scored : null,
      };
    }),
    lookups: run.lookups,
    requests: run.requests,
    bytesPerLookup: ratio(run.bytesSent + run.bytesReceived, run.lookups),
    directorySize: run.directorySize,
    planSize: pop.stats.planSize,
    planPerBucket: bits === null ? null : pop.stats.planSize / 2 ** bits,
    registeredPerBucket: bits === null ? null : run.directorySize / 2 ** bits,
    remains: rec.remains,
    behaviour,
    model: bits === null ? null : predictSignals({ ...behaviour, planSize: pop.stats.planSize, registered: run.directorySize, bits }),
    usersPerIp: run.usersPerIp,
    requesters,
    padding: design === 'blinded' ? scorePadding(run.evaluations) : null,
    pools: run.pools,
    errors: run.errors,
    seconds,
  };
}
