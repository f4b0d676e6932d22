/**
 * The operator's view: the contact graph rebuilt from nothing but the data
 * folder a server persisted (read after it stopped, through the readers of
 * `pcd audit`: audit/designs/ auditPlain, auditHashed with reverseHashes
 * and parsePlan, auditBlinded, and its byte-level snapshot for the two
 * tables the blinded audit does not list in bulk), plus what is public: the
 * numbering plan in use. Never the simulation's memory.
 *
 * An edge is (account id, number): "this account looked this number up".
 *
 * - plain: every plain_log row is an edge, as logged.
 * - hashed: every hashed_log row whose hash the enumeration of the plan
 *   reverses is an edge.
 * - blinded: no row holds a number. What the log holds, and what this
 *   attack does with it:
 *   1. Attribution. blinded_bucket_log rows are (minute, IP, epoch, bucket,
 *      count); blinded_eval_log rows are (time, account, IP, epoch, count).
 *      A fetch row is attributed to the accounts with an evaluation from the
 *      same IP within the audit's CORRELATION_WINDOW_MS of its minute
 *      (the client fetches its buckets right after its evaluation), or,
 *      when there is none, to every account ever seen on that IP. One
 *      account: a firm attribution; several (a shared IP): each is possible.
 *   2. Candidates. A fetch of bucket b says: the account looked up SOME
 *      number whose bucket id is b. The candidate set is every number of
 *      the numbering plan with bucket id b (all plan numbers, not only the
 *      registered ones, because clients look up unregistered contacts too,
 *      and the bucket fetch is the same either way), less the account's own
 *      numbers. The registered-only set (registered numbers with bucket id
 *      b) is reported beside it: smaller, but it never contains an
 *      unregistered contact.
 *   3. Mutuality. Contacts are often mutual and the operator knows every
 *      account's own number (the numbers table). A registered candidate y is
 *      "mutual" when y's account fetched the bucket of the requester's own
 *      number. The mutual set M(A, b) is those candidates.
 *   4. The scored attack (workload/attack.ts): every candidate of a fetch
 *      firmly attributed gets the probability, from a model fitted to the
 *      operator's data by EM, that it is the contact; the headline claims
 *      are those scored at least HEADLINE_LEVEL, the other levels
 *      (CONFIDENCE_LEVELS) and the sorted list (the precision-recall
 *      curve) are reported beside them.
 *   The rules of the first simulation, per (account A, bucket b) firmly
 *   attributed to A, kept for comparison (and for workload/model.ts, which
 *   predicts each):
 *   - `bucket`: the plan candidate set is one number: claimed (certain, up
 *     to the account looking itself up, which is excluded);
 *   - `mutual`: M(A, b) is one number: claimed (a guess: measured);
 *   - `registered`: the registered set is one number: claimed (a guess:
 *     the contact may be an unregistered number of the bucket);
 *   `conservative`: `bucket` or else `mutual`, the first headline.
 *   Per true edge (A, x) the candidate-set size is the plan set of x's
 *   bucket when A is attributed (firmly or possibly) a fetch of it, and the
 *   whole plan (less A's own numbers) when not: then the log shows only
 *   that A asked something, when, and how many elements.
 *   Timing beyond the day, element counts and the order of rows are not
 *   used for claims; the counts are reported as what remains (who asked,
 *   when, how many, and which syncs were whole address books).
 * - blinded with Privacy Pass tokens (the anonymous variants): the
 *   evaluation log holds no account. The requester attack
 *   (workload/requesters.ts) links each counted evaluate request to an
 *   account from the token logs (per-day issuance per account; per-minute
 *   requests per IP and size class); the requests it links by IP and those
 *   it names by issuance become the evaluation rows the attack above
 *   attributes bucket fetches with. A relay's address is every relayed
 *   client's, so its fetches attribute to nobody in particular.
 */
import type Database from 'better-sqlite3';
import { bucketOf } from '../shared/buckets.ts';
import type { E164 } from '../shared/e164.ts';
import type { DesignName } from '../shared/messages.ts';
import { CORRELATION_WINDOW_MS, auditBlinded } from '../audit/designs/blinded.ts';
import { auditHashed } from '../audit/designs/hashed.ts';
import { auditPlain } from '../audit/designs/plain.ts';
import { requireTable, withSnapshot } from '../audit/image.ts';
import { parsePlan, type PlanPattern } from '../shared/numbering.ts';
import { BLINDED_TOKEN_EVAL_LOG, BUCKET_LOG_WINDOW_MS, TOKEN_ISSUANCE_LOG } from '../shared/designs/blinded.ts';
import { scoreFetches, type AttributedFetch, type FittedWeight, type ScoredAttack, type ScoredClaim } from './attack.ts';
import { attackRequesters, type IssuanceRow, type RequesterAttack, type TokenEvalRow } from './requesters.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { DAY_MS } from './script.ts';
import { isAnonymous, variantSpec, type RunTarget } from './simulate.ts';

/** "account number". */
export type EdgeKey = string;
export const edgeKey = (accountId: number, number: string): EdgeKey => `${accountId} ${number}`;

export interface Candidates {
  /** Numbers of the plan the operator cannot tell the true contact from. */
  plan: number;
  /** The same among registered numbers (only for a registered contact; null otherwise). */
  registered: number | null;
}

export interface WhatRemains {
  /** The columns a row holds. */
  fields: string;
  rows: number;
  requesters: number;
  ips: number;
  /** Lookups the rows count (one per row for plain and hashed; blinded elements). */
  lookups: number;
  /** Requests that were whole-book syncs (more than one number or element). */
  syncRequests: number;
  from: number | null;
  until: number | null;
  /** Blinded: bucket-fetch rows and the fetches they count; how many rows attribution could not settle. */
  bucketRows?: number;
  bucketFetches?: number;
  ambiguousBucketRows?: number;
  unattributedBucketRows?: number;
  /** Hashed: the reversal. */
  reversal?: { candidates: number; seconds: number; distinctHashes: number; reversed: number };
  /** With tokens: issuance rows and the elements' worth they count. */
  issuanceRows?: number;
  issuedElements?: number;
}

export interface Reconstruction {
  design: DesignName;
  bucketBits: number | null;
  /** The headline attack's claimed edges. */
  claimed: Set<EdgeKey>;
  /** Each attack's claims (plain and hashed: one). */
  attacks: { name: string; claimed: Set<EdgeKey> }[];
  candidates(accountId: number, number: E164): Candidates;
  remains: WhatRemains;
  warnings: string[];
  /** With tokens: the requester attack (workload/requesters.ts), scored in workload/score.ts. */
  requesters?: RequesterAttack;
  /** Every edge the scored attack names, best first, with the model's probability (plain and hashed: every edge at 1): the precision-recall curve. */
  scored: { key: EdgeKey; score: number }[];
  /** Blinded: the weights the scored attack fitted to the operator's data (workload/attack.ts). */
  model?: FittedWeight[];
}

/** The scored attack's confidence levels: a claim is made at a level when the model gives it at least that probability. */
export const CONFIDENCE_LEVELS = [0.99, 0.9, 0.5] as const;
/** The level whose claims are the headline `claimed`. */
export const HEADLINE_LEVEL = 0.9;
export const levelName = (level: number): string => `score ≥ ${level}`;
/** The rule of the first simulation, kept as one line: a bucket with one plan number, or one mutual registered number. */
export const CONSERVATIVE = 'conservative';

/** An evaluation as the bucket attribution uses it: a blinded_eval_log row, or an anonymous request the requester attack named. */
export interface EvaluationRow {
  ts: number;
  accountId: number;
  ip: string;
  epoch: number;
  count: number;
}

/** Every number a plan spans, X digits counting up. */
export function* enumeratePlan(plan: readonly PlanPattern[]): Generator<E164> {
  for (const { pattern, size } of plan) {
    const digits = [...pattern];
    const xs = digits.flatMap((c, i) => (c === 'X' ? [i] : []));
    const cur = digits.map((c) => (c === 'X' ? '0' : c));
    for (let n = 0; n < size; n++) {
      yield cur.join('') as E164;
      for (let k = xs.length - 1; k >= 0; k--) {
        const p = xs[k]!;
        if (cur[p] === '9') cur[p] = '0';
        else {
          cur[p] = String(Number(cur[p]) + 1);
          break;
        }
      }
    }
  }
}

function span(ts: number[]): { from: number | null; until: number | null } {
  let from = Infinity;
  let until = -Infinity;
  for (const t of ts) {
    if (t < from) from = t;
    if (t > until) until = t;
  }
  return ts.length ? { from, until } : { from: null, until: null };
}

/** A design that logs the number (or its hash): each reversed row is an edge. */
function fromRows(design: 'plain' | 'hashed', rows: { ts: number; accountId: number; number: string; ip: string }[], planSize: number, fields: string): Reconstruction {
  const claimed = new Set(rows.map((r) => edgeKey(r.accountId, r.number)));
  const perRequest = new Map<string, number>(); // rows of one request share account and time
  for (const r of rows) perRequest.set(`${r.accountId} ${r.ts}`, (perRequest.get(`${r.accountId} ${r.ts}`) ?? 0) + 1);
  return {
    design,
    bucketBits: null,
    claimed,
    attacks: [{ name: design === 'plain' ? 'direct' : 'enumeration', claimed }],
    scored: [...claimed].map((key) => ({ key, score: 1 })),
    candidates: (a, n) => ({ plan: claimed.has(edgeKey(a, n)) ? 1 : planSize, registered: null }),
    remains: {
      fields,
      rows: rows.length,
      requesters: new Set(rows.map((r) => r.accountId)).size,
      ips: new Set(rows.map((r) => r.ip)).size,
      lookups: rows.length,
      syncRequests: [...perRequest.values()].filter((c) => c > 1).length,
      ...span(rows.map((r) => r.ts)),
    },
    warnings: [],
  };
}

/** A span of the log: what a retention of that length holds when an order is served at `until` (rows with from ≤ ts < until). */
export interface LogWindow {
  from: number;
  until: number;
}

const inWindow = (w: LogWindow | undefined) => (ts: number) => w === undefined || (ts >= w.from && ts < w.until);

export function reconstructPlain(dataDir: string, planSpec: string, window?: LogWindow): Reconstruction {
  const a = auditPlain(dataDir, { targets: [] });
  const keep = inWindow(window);
  const r = fromRows('plain', a.rows.filter((x) => keep(x.ts)), planSizeOf(planSpec), 'time, account, email, IP, number, answer');
  r.warnings.push(...a.warnings);
  return r;
}

export function reconstructHashed(dataDir: string, planSpec: string, window?: LogWindow): Reconstruction {
  const a = auditHashed(dataDir, { targets: [], plan: planSpec });
  const keep = inWindow(window);
  const r = fromRows('hashed', a.rows.filter((x) => keep(x.ts)), planSizeOf(planSpec), 'time, account, email, IP, SHA-256 of the number (reversed), answer');
  r.remains.reversal = { candidates: a.reversal.candidates, seconds: a.reversal.ms / 1000, distinctHashes: a.reversal.distinctHashes, reversed: a.reversal.reversed };
  r.warnings.push(...a.warnings);
  return r;
}

function planSizeOf(spec: string): number {
  return parsePlan(spec).reduce((s, p) => s + p.size, 0);
}

interface FetchRow {
  ts: number;
  ip: string;
  epoch: number;
  bucket: number;
  count: number;
}

/** The bucket log and the account of every registered number, from the same on-disk snapshot the audit reads. */
function readBlindedTables(dataDir: string): { fetches: FetchRow[]; owners: Map<string, number> } {
  return withSnapshot(dataDir, ({ db }: { db: Database.Database }) => {
    requireTable(db, 'blinded_bucket_log');
    requireTable(db, 'numbers');
    const aggregated = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('blinded_bucket_log')").all().some((c) => c.name === 'count');
    const fetches = db
      .prepare<[], FetchRow>(`SELECT ts, ip, epoch, bucket, ${aggregated ? 'count' : '1 AS count'} FROM blinded_bucket_log ORDER BY ts`)
      .all();
    const owners = new Map<string, number>();
    for (const r of db.prepare<[], { number: string; account_id: number }>('SELECT number, account_id FROM numbers').iterate()) owners.set(r.number, r.account_id);
    return { fetches, owners };
  });
}

/** The index of the first element of sorted `xs` that is >= x. */
function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Bucket ids are comparable within an epoch only: a fetch is of a slot, (epoch, bucket). */
const SLOT_EPOCH = 2 ** 25;
const slotOf = (epoch: number, bucket: number): number => epoch * SLOT_EPOCH + bucket;

/** bucket id -> the numbers in it. */
type BucketLists = Map<number, E164[]>;

function byBucket(numbers: Iterable<E164>, bits: number): BucketLists {
  const lists: BucketLists = new Map();
  for (const n of numbers) {
    const b = bucketOf(n, bits);
    const l = lists.get(b);
    if (l) l.push(n);
    else lists.set(b, [n]);
  }
  return lists;
}

/** What the operator knows before reading a fetch: the epochs in use, and the plan's and the registered numbers of every bucket. */
interface BlindedView {
  /** epoch -> its bucket bits (the epochs table). */
  bitsOf: Map<number, number>;
  /** Epochs the rows name that the epochs table lists, and their bucket bits. */
  epochsUsed: number[];
  bitsUsed: number[];
  planSize: number;
  /** bucket bits -> plan numbers per bucket. */
  planLists: Map<number, BucketLists>;
  /** bucket bits -> registered numbers per bucket. */
  regList: Map<number, BucketLists>;
  /** registered number -> its account (the numbers table). */
  owners: Map<string, number>;
  /** account -> its own numbers. */
  ownNumbers: Map<number, E164[]>;
}

function blindedView(plan: readonly PlanPattern[], owners: Map<string, number>, bitsOf: Map<number, number>, epochsUsed: number[]): BlindedView {
  const bitsUsed = [...new Set(epochsUsed.map((e) => bitsOf.get(e)!))];
  const planLists = new Map<number, BucketLists>();
  const regList = new Map<number, BucketLists>();
  for (const bits of bitsUsed) {
    planLists.set(bits, byBucket(enumeratePlan(plan), bits));
    regList.set(bits, byBucket(owners.keys() as Iterable<E164>, bits));
  }
  const ownNumbers = new Map<number, E164[]>();
  for (const [n, a] of owners) {
    const l = ownNumbers.get(a);
    if (l) l.push(n as E164);
    else ownNumbers.set(a, [n as E164]);
  }
  return { bitsOf, epochsUsed, bitsUsed, planSize: plan.reduce((s, p) => s + p.size, 0), planLists, regList, owners, ownNumbers };
}

/** How many of account a's own numbers fall in bucket b. */
const ownIn = (view: BlindedView, a: number, bits: number, b: number): number => (view.ownNumbers.get(a) ?? []).filter((n) => bucketOf(n, bits) === b).length;

/** Step 1's outcome: which accounts each fetch is attributed to. */
interface Attribution {
  /** account -> slots of the fetches attributed to it alone. */
  firm: Map<number, Set<number>>;
  /** account -> slots of the fetches it is one possible fetcher of. */
  possible: Map<number, Set<number>>;
  /** slot -> accounts (any attribution). */
  fetchedBy: Map<number, Set<number>>;
  /** epoch -> its attributed fetches, as the scored attack takes them. */
  attributed: Map<number, AttributedFetch[]>;
  ambiguous: number;
  unattributed: number;
}

function put(m: Map<number, Set<number>>, k: number, v: number): void {
  const s = m.get(k);
  if (s) s.add(v);
  else m.set(k, new Set([v]));
}

/** 1. Attribution: each fetch to the accounts that evaluated on its IP near its minute, else to every account of the IP. */
function attributeFetches(view: BlindedView, fetches: readonly FetchRow[], evals: readonly EvaluationRow[]): Attribution {
  const evalsByIp = new Map<string, { ts: number[]; accounts: number[] }>();
  for (const r of [...evals].sort((a, b) => a.ts - b.ts)) {
    const e = evalsByIp.get(r.ip) ?? { ts: [], accounts: [] };
    e.ts.push(r.ts);
    e.accounts.push(r.accountId);
    evalsByIp.set(r.ip, e);
  }
  const out: Attribution = { firm: new Map(), possible: new Map(), fetchedBy: new Map(), attributed: new Map(view.epochsUsed.map((e) => [e, []])), ambiguous: 0, unattributed: 0 };
  for (const f of fetches) {
    if (!view.bitsOf.has(f.epoch)) {
      out.unattributed++; // an epoch the epochs table does not list: its bucket ids cannot be matched to numbers
      continue;
    }
    const e = evalsByIp.get(f.ip);
    const near = new Set<number>();
    if (e) {
      const lo = lowerBound(e.ts, f.ts - CORRELATION_WINDOW_MS);
      const hi = lowerBound(e.ts, f.ts + BUCKET_LOG_WINDOW_MS + CORRELATION_WINDOW_MS);
      for (let i = lo; i < hi; i++) near.add(e.accounts[i]!);
      if (near.size === 0) for (const a of e.accounts) near.add(a);
    }
    if (near.size === 0) {
      out.unattributed++;
      continue;
    }
    if (near.size > 1) out.ambiguous++;
    out.attributed.get(f.epoch)!.push({ accounts: [...near], bucket: f.bucket, day: Math.floor(f.ts / DAY_MS) });
    const s = slotOf(f.epoch, f.bucket);
    for (const a of near) {
      put(out.possible, a, s);
      put(out.fetchedBy, s, a);
      if (near.size === 1) put(out.firm, a, s);
    }
  }
  return out;
}

/** 2. Candidates: the plan (and registered) numbers of x's bucket when a fetch of it is attributed to A, else the whole plan; less A's own. */
function candidatesOf(view: BlindedView, attribution: Attribution): (a: number, n: E164) => Candidates {
  const { bitsOf, epochsUsed, planLists, regList, owners } = view;
  return (a, n) => {
    const own = view.ownNumbers.get(a) ?? [];
    const registered = owners.has(n);
    for (const epoch of epochsUsed) {
      const bits = bitsOf.get(epoch)!;
      const b = bucketOf(n, bits);
      if (!attribution.possible.get(a)?.has(slotOf(epoch, b))) continue;
      const mineHere = ownIn(view, a, bits, b);
      return {
        plan: (planLists.get(bits)!.get(b)?.length ?? 0) - mineHere,
        registered: registered ? (regList.get(bits)!.get(b)?.length ?? 0) - mineHere : null,
      };
    }
    return { plan: view.planSize - own.length, registered: registered ? owners.size - own.length : null };
  };
}

/** 3. Mutuality: M(A, b), up to `limit` registered numbers of bucket (epoch, b) whose account fetched the bucket of one of A's own numbers. */
function mutualSets(view: BlindedView, attribution: Attribution): (a: number, epoch: number, b: number, limit?: number) => E164[] {
  const { bitsOf, regList, owners, ownNumbers } = view;
  const reciprocatingMemo = new Map<string, Set<number>>();
  const reciprocatingOf = (a: number, epoch: number): Set<number> => {
    const k = `${a} ${epoch}`;
    let r = reciprocatingMemo.get(k);
    if (!r) {
      const bits = bitsOf.get(epoch)!;
      r = new Set<number>();
      for (const n of ownNumbers.get(a) ?? []) for (const x of attribution.fetchedBy.get(slotOf(epoch, bucketOf(n, bits))) ?? []) if (x !== a) r.add(x);
      reciprocatingMemo.set(k, r);
    }
    return r;
  };
  return (a, epoch, b, limit = 2) => {
    const bits = bitsOf.get(epoch)!;
    const reciprocating = reciprocatingOf(a, epoch);
    const out: E164[] = [];
    const inBucket = regList.get(bits)!.get(b) ?? [];
    if (reciprocating.size < inBucket.length) {
      for (const x of reciprocating) for (const n of ownNumbers.get(x) ?? []) if (bucketOf(n, bits) === b && out.length < limit) out.push(n);
    } else {
      for (const n of inBucket) if (out.length < limit && reciprocating.has(owners.get(n)!)) out.push(n);
    }
    return out;
  };
}

/** The first simulation's rules, per (account, bucket) firmly attributed: `bucket`, `mutual` and `registered` (the header's list). */
function ruleClaims(view: BlindedView, attribution: Attribution): { bucket: Set<EdgeKey>; mutual: Set<EdgeKey>; registered: Set<EdgeKey> } {
  const { bitsOf, planLists, regList, ownNumbers } = view;
  const mutual = mutualSets(view, attribution);
  const claims = { bucket: new Set<EdgeKey>(), mutual: new Set<EdgeKey>(), registered: new Set<EdgeKey>() };
  for (const [a, slots] of attribution.firm) {
    const own = new Set<string>(ownNumbers.get(a) ?? []);
    for (const s of slots) {
      const epoch = Math.floor(s / SLOT_EPOCH);
      const b = s - epoch * SLOT_EPOCH;
      const bits = bitsOf.get(epoch)!;
      const inPlan = planLists.get(bits)!.get(b);
      const pOne = inPlan?.length === 1 ? inPlan[0]! : undefined;
      if (pOne !== undefined && !own.has(pOne)) claims.bucket.add(edgeKey(a, pOne));
      const regCount = (regList.get(bits)!.get(b)?.length ?? 0) - ownIn(view, a, bits, b);
      if (regCount === 1) {
        const n = (regList.get(bits)!.get(b) ?? []).find((x) => !own.has(x));
        if (n) claims.registered.add(edgeKey(a, n));
      }
      const m = mutual(a, epoch, b);
      if (m.length === 1) claims.mutual.add(edgeKey(a, m[0]!));
    }
  }
  return claims;
}

/** 4. The scored attack (workload/attack.ts), per epoch; an edge keeps its best score. Claims best first, and each epoch's fitted model. */
function scoreEpochs(view: BlindedView, attribution: Attribution): { claims: ScoredClaim[]; models: ScoredAttack[] } {
  const bestScore = new Map<EdgeKey, ScoredClaim>();
  const models: ScoredAttack[] = [];
  for (const epoch of view.epochsUsed) {
    const bits = view.bitsOf.get(epoch)!;
    const scored = scoreFetches({ bits, fetches: attribution.attributed.get(epoch)!, planByBucket: view.planLists.get(bits)!, owners: view.owners, bucketOfNumber: (n) => bucketOf(n, bits) });
    models.push(scored);
    for (const c of scored.claims) {
      const k = edgeKey(c.account, c.number);
      const b = bestScore.get(k);
      if (!b || c.score > b.score) bestScore.set(k, c);
    }
  }
  return { claims: [...bestScore.values()].sort((x, y) => y.score - x.score), models };
}

/** `evaluations`: the rows that attribute bucket fetches (default: blinded_eval_log's, as the audit reads them). */
export function reconstructBlinded(dataDir: string, planSpec: string, evaluations?: readonly EvaluationRow[], window?: LogWindow): Reconstruction {
  const audit = auditBlinded(dataDir, { targets: [] });
  const keep = inWindow(window);
  const evals: readonly EvaluationRow[] = (evaluations ?? audit.evaluations.rows).filter((r) => keep(r.ts));
  const tables = readBlindedTables(dataDir);
  const fetches = tables.fetches.filter((f) => keep(f.ts));
  const bitsOf = new Map(audit.epochs.map((e) => [e.epoch, e.bucketBits]));
  const epochsUsed = [...new Set([...evals.map((r) => r.epoch), ...fetches.map((f) => f.epoch)])].filter((e) => bitsOf.has(e));
  const view = blindedView(parsePlan(planSpec), tables.owners, bitsOf, epochsUsed);

  const attribution = attributeFetches(view, fetches, evals);
  const rules = ruleClaims(view, attribution);
  const scored = scoreEpochs(view, attribution);
  const atLevel = (level: number) => new Set(scored.claims.filter((c) => c.score >= level).map((c) => edgeKey(c.account, c.number)));

  const current = audit.currentEpoch === null ? undefined : audit.epochs.find((e) => e.epoch === audit.currentEpoch);
  return {
    design: 'blinded',
    bucketBits: current?.bucketBits ?? view.bitsUsed[0] ?? null,
    claimed: atLevel(HEADLINE_LEVEL),
    attacks: [
      ...CONFIDENCE_LEVELS.map((level) => ({ name: levelName(level), claimed: atLevel(level) })),
      { name: CONSERVATIVE, claimed: new Set<EdgeKey>([...rules.bucket, ...rules.mutual]) },
      { name: 'bucket', claimed: rules.bucket },
      { name: 'mutual', claimed: rules.mutual },
      { name: 'registered', claimed: rules.registered },
    ],
    scored: scored.claims.map((c) => ({ key: edgeKey(c.account, c.number), score: c.score })),
    model: scored.models.flatMap((m) => m.weights),
    candidates: candidatesOf(view, attribution),
    remains: {
      fields: 'evaluations: time, account, IP, epoch, element count; bucket fetches: minute, IP, epoch, bucket id, count',
      rows: evals.length + fetches.length,
      requesters: new Set(evals.map((r) => r.accountId)).size,
      ips: new Set([...evals.map((r) => r.ip), ...fetches.map((f) => f.ip)]).size,
      lookups: audit.evaluations.elements,
      syncRequests: evals.filter((r) => r.count > 1).length,
      ...span([...evals.map((r) => r.ts), ...fetches.map((f) => f.ts)]),
      bucketRows: fetches.length,
      bucketFetches: audit.bucketFetches,
      ambiguousBucketRows: attribution.ambiguous,
      unattributedBucketRows: attribution.unattributed,
    },
    warnings: audit.warnings,
  };
}

/** The token logs (shared/designs/blinded.ts), from the same on-disk snapshot the audit reads. */
export function readTokenTables(dataDir: string): { evalRows: TokenEvalRow[]; issuance: IssuanceRow[] } {
  return withSnapshot(dataDir, ({ db }: { db: Database.Database }) => {
    requireTable(db, BLINDED_TOKEN_EVAL_LOG.name);
    requireTable(db, TOKEN_ISSUANCE_LOG.name);
    const evalRows = db.prepare<[], TokenEvalRow>(`SELECT ts, ip, epoch, size_class AS sizeClass, count FROM ${BLINDED_TOKEN_EVAL_LOG.name} ORDER BY ts`).all();
    const issuance = db.prepare<[], IssuanceRow>(`SELECT ts, account_id AS accountId, count AS elements FROM ${TOKEN_ISSUANCE_LOG.name} ORDER BY ts`).all();
    return { evalRows, issuance };
  });
}

/**
 * Blinded with tokens: the requester attack on the token logs, then the
 * bucket attack with the requests it named as the evaluations. `relayIps`:
 * the server's configured relays, which its operator knows.
 */
export function reconstructAnonymous(dataDir: string, planSpec: string, relayIps: readonly string[]): Reconstruction {
  const { evalRows, issuance } = readTokenTables(dataDir);
  const attack = attackRequesters({ evalRows, issuance, relayIps: new Set(relayIps) });
  // The requests linked by IP (an IP's link is one account for all its requests, named or the best of a tie) and those named
  // by issuance carry their account; every other request is an evaluation by someone unknown (a negative id of its own),
  // so that a fetch near it is not pinned on a linked request of the same minute and IP (a relay's), and is claimed for nobody.
  const rows: EvaluationRow[] = attack.events.map((e, i) => {
    const g = attack.guesses[i]!;
    const known = g.accountId !== null && (g.via === 'ip' || g.named);
    return { ts: e.ts, accountId: known ? g.accountId! : -1 - i, ip: e.ip, epoch: e.epoch, count: e.sizeClass };
  });
  const full = reconstructBlinded(dataDir, planSpec, rows);
  const real = (claims: Set<EdgeKey>) => new Set([...claims].filter((k) => !k.startsWith('-')));
  const rec: Reconstruction = {
    ...full,
    claimed: real(full.claimed),
    attacks: full.attacks.map((a) => ({ name: a.name, claimed: real(a.claimed) })),
    scored: full.scored.filter((c) => !c.key.startsWith('-')),
  };
  const r = rec.remains;
  const events = attack.events;
  return {
    ...rec,
    requesters: attack,
    remains: {
      ...r,
      fields:
        'token evaluations: minute, IP, epoch, size class, count; bucket fetches: minute, IP, epoch, bucket id, count; token issuance: day, account, elements',
      rows: evalRows.length + (r.bucketRows ?? 0) + issuance.length,
      requesters: attack.accounts,
      ips: new Set([...events.map((e) => e.ip), ...readBucketIps(dataDir)]).size,
      lookups: events.reduce((n, e) => n + e.sizeClass, 0),
      syncRequests: events.filter((e) => e.sizeClass > 1).length,
      ...span([...events.map((e) => e.ts), ...(r.from === null ? [] : [r.from]), ...(r.until === null ? [] : [r.until])]),
      issuanceRows: issuance.length,
      issuedElements: issuance.reduce((n, x) => n + x.elements, 0),
    },
  };
}

function readBucketIps(dataDir: string): string[] {
  return withSnapshot(dataDir, ({ db }: { db: Database.Database }) => db.prepare<[], { ip: string }>('SELECT DISTINCT ip FROM blinded_bucket_log').all().map((r) => r.ip));
}

/** `window`: read only the rows of that span, as an order served under a retention would get them (not for the anonymous variants). */
export function reconstruct(target: RunTarget, dataDir: string, planSpec: string, relayIps: readonly string[] = [], window?: LogWindow): Reconstruction {
  if (isAnonymous(target.variant)) {
    if (window) throw new PcdError(ErrorCode.InvalidField, 'orders (a window of the log) are not read for the anonymous variants');
    return reconstructAnonymous(dataDir, planSpec, relayIps);
  }
  return RECONSTRUCTIONS[variantSpec(target.variant).design](dataDir, planSpec, window);
}

/** Each design's reading of its own persisted log: a table, so a new design is a missing key. */
const RECONSTRUCTIONS: { readonly [D in DesignName]: (dataDir: string, planSpec: string, window?: LogWindow) => Reconstruction } = {
  plain: reconstructPlain,
  hashed: reconstructHashed,
  blinded: (dataDir, planSpec, window) => reconstructBlinded(dataDir, planSpec, undefined, window),
};
