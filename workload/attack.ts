/**
 * The scored attack on the blinded logs: for every bucket fetch the
 * operator attributed to one account, a probability for each number of the
 * bucket that it is the contact looked up, from weights fitted to the
 * operator's own data (never to the truth). workload/operator.ts reads the
 * logs and attributes the fetches; this file is pure, so that it can be
 * tested on a constructed log (test/workload-attack.test.ts).
 *
 * The model: a Poisson model with a latent contact per fetch, fitted by EM.
 * - Account A fetches bucket s (at least once in the window) at rate
 *   λ_A · Σ_{x ∈ s} w_A(x), x running over the plan numbers of s other than
 *   A's own. λ_A is A's activity.
 * - An unregistered number weighs ρ_A · η_s. ρ_A is A's own share of
 *   unregistered contacts; η_s says how much the bucket's unregistered
 *   numbers are in use (a bucket holding people many know is fetched more).
 *   Both are shrunk to 1 by pseudo-fetches.
 * - A registered number x, whose account is B, weighs θ(f(A, B)): a weight
 *   per value of the pair's features. The features come from three rounds:
 *   1. co-fetch: how many more buckets A and B both fetched than chance
 *      (|S_A ∩ S_B| against |S_A|·|S_B| / 2^b, as a z-score);
 *   2. the circle: the likely contacts A and B share (Σ_C p(A→C)·p(B→C)
 *      over registered numbers C, from round 1's scores), with co-fetch;
 *   3. mutuality: how likely B looked A up (round 2's score of B's fetch of
 *      A's bucket, which weighs everything else that fetch could mean; no
 *      mutual signal enters round 2, so A's own fetch cannot vouch for
 *      itself), jointly with the circle; on how many days B fetched A's
 *      bucket; and co-fetch. Round 3 fits one factor per signal bin (θ as a
 *      product, by iterative proportional fitting), rounds 1-2 a weight per
 *      combination.
 * - EM: the E step shares each fetch among its candidates in proportion to
 *   their weights. The M step sets each weight to the fetches given to its
 *   numbers over the numbers the accounts could have fetched, weighted by
 *   λ_A. The fetched buckets and the never-fetched ones both inform the
 *   weights, which is what makes them identifiable without any labelled
 *   edge.
 *
 * A candidate x of a fetched (A, s) gets the score P(A looked x up | A
 * fetched s) = (1 − e^{−λ_A w_x}) / (1 − e^{−λ_A Σ w}). A bucket with one
 * plan number scores 1 (certain). Otherwise the score is the model's own
 * estimate of how likely the claim is, and the claims sorted by score give
 * the precision-recall curve (workload/score.ts). A bucket's unregistered
 * numbers look alike to the operator: one of them is named only when it is
 * the bucket's only unregistered plan number.
 *
 * What the figures are: a lower bound on what the logs give away, from the
 * strongest attack written so far. A better model (time of day, the order
 * of fetches, the numbering plan's allocation) can only add to it.
 */
import type { E164 } from '../shared/e164.ts';

/** One bucket-fetch row as attribution left it: the accounts it may belong to (one: firm), the bucket, and the day. */
export interface AttributedFetch {
  accounts: readonly number[];
  bucket: number;
  /** Day index of the fetch (its time / 86,400,000, floored). */
  day: number;
}

export interface AttackInput {
  bits: number;
  fetches: readonly AttributedFetch[];
  /** The plan numbers of every bucket that holds one (the public numbering plan, bucketed). */
  planByBucket: ReadonlyMap<number, readonly E164[]>;
  /** Registered numbers and their accounts (the numbers table). */
  owners: ReadonlyMap<string, number>;
  /** Every account's bucket of its own number(s). */
  bucketOfNumber(n: E164): number;
  /** EM iterations at most (default 300). */
  maxIterations?: number;
}

export interface ScoredClaim {
  account: number;
  number: E164;
  /** The model's probability that the account looked the number up (1: the bucket holds no other plan number). */
  score: number;
  registered: boolean;
}

/** One feature value's fitted weight: what the operator's data says, reported beside the results. */
export interface FittedWeight {
  feature: string;
  theta: number;
  /** Fetches the E step gave to numbers of this value, and those numbers over every account (λ-weighted). */
  expected: number;
  exposure: number;
}

export interface ScoredAttack {
  claims: ScoredClaim[];
  weights: FittedWeight[];
  iterations: number;
  /** Fetches (account, bucket) the model explains: firm attributions only. */
  observations: number;
}

/** Additive smoothing of θ: a feature value seen on no fetch keeps a little weight. */
const PSEUDO = 0.5;
const CONVERGED = 1e-7;
/** Pseudo-fetches that shrink an account's own weight of unregistered numbers toward the common one. */
const ACCOUNT_PSEUDO = 5;
/** The same for a bucket's own weight of unregistered numbers. */
const BUCKET_PSEUDO = 5;
/** Below this probability a first-round score is left out of the second round's sums. */
const NEGLIGIBLE = 0.01;

/** How a pair (requester A, account B) is described to the model: a feature value per pair. */
interface Features {
  /** Values 1 .. count - 1 (0 is an unregistered number). */
  count: number;
  /** Per signal: its name and bin names (the factors of a product model). */
  factorNames: string[][];
  /** Per signal: its bins; and a value's bin of each signal (product models fit one factor per bin). */
  sizes: number[];
  bins(v: number): number[];
  name(v: number): string;
  of(a: number, b: number): number;
}

function binOf(x: number, edges: readonly number[]): number {
  let i = 0;
  while (i < edges.length && x >= edges[i]!) i++;
  return i;
}

function binNames(edges: readonly number[]): string[] {
  return edges.length === 0 ? ['all'] : [`<${edges[0]}`, ...edges.slice(1).map((e, i) => `${edges[i]}-${e}`), `≥${edges[edges.length - 1]}`];
}

/** A signal of a pair (requester A, account B), cut into bins at `edges`. */
interface Signal {
  name: string;
  edges: readonly number[];
  /** Bin names, when not made from the edges. */
  labels?: readonly string[];
  of(a: number, b: number): number;
}

/** Two signals as one, a bin per pair of bins: the model then weighs them jointly, not as independent factors. */
function joint(x: Signal, y: Signal): Signal {
  const nx = binNames(x.edges);
  const ny = binNames(y.edges);
  return {
    name: `${x.name} & ${y.name}`,
    edges: Array.from({ length: nx.length * ny.length - 1 }, (_, i) => i + 1),
    labels: nx.flatMap((a) => ny.map((b) => `${a} & ${b}`)),
    of: (a, b) => binOf(x.of(a, b), x.edges) * ny.length + binOf(y.of(a, b), y.edges),
  };
}

/** Registered-number features from several binned signals: one value per combination. */
function combine(signals: readonly Signal[]): Features {
  const sizes = signals.map((x) => x.edges.length + 1);
  const names = signals.map((x) => x.labels ?? binNames(x.edges));
  const count = 1 + sizes.reduce((p, n) => p * n, 1);
  return {
    count,
    factorNames: signals.map((x, i) => names[i]!.map((b) => `${x.name} ${b}`)),
    sizes,
    bins(v) {
      let r = v - 1;
      const out: number[] = [];
      for (let i = signals.length - 1; i >= 0; i--) {
        out.unshift(r % sizes[i]!);
        r = Math.floor(r / sizes[i]!);
      }
      return out;
    },
    name(v) {
      if (v === 0) return 'unregistered';
      let r = v - 1;
      const parts: string[] = [];
      for (let i = signals.length - 1; i >= 0; i--) {
        parts.unshift(`${signals[i]!.name} ${names[i]![r % sizes[i]!]}`);
        r = Math.floor(r / sizes[i]!);
      }
      return `registered, ${parts.join(', ')}`;
    },
    of(a, b) {
      let v = 0;
      for (let i = 0; i < signals.length; i++) v = v * sizes[i]! + binOf(signals[i]!.of(a, b), signals[i]!.edges);
      return 1 + v;
    },
  };
}

function sizeOfIntersection(a: ReadonlySet<number>, b: ReadonlySet<number>): number {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let n = 0;
  for (const x of small) if (large.has(x)) n++;
  return n;
}

/** A firm (account, bucket) fetch and its candidates: registered ones one by one, the unregistered as a count. */
interface Observation {
  account: number;
  bucket: number;
  reg: { n: E164; owner: number }[];
  unreg: number;
  /** The bucket's only unregistered plan number, when there is one. */
  sole: E164 | undefined;
}

interface Prepared {
  requesters: number[];
  accounts: number[];
  ownNumbers: Map<number, E164[]>;
  unregisteredInPlan: number;
  /** Unregistered plan numbers per bucket. */
  unregisteredIn: Map<number, number>;
  observations: Observation[];
  /** Account -> bucket -> days it fetched it (any attribution). */
  daysOf: Map<number, Map<number, Set<number>>>;
  ownBuckets: Map<number, Set<number>>;
  fetchedBuckets: Map<number, Set<number>>;
}

function prepare(input: AttackInput): Prepared {
  const { owners, planByBucket } = input;
  const daysOf = new Map<number, Map<number, Set<number>>>();
  const firm = new Map<number, Set<number>>();
  for (const f of input.fetches) {
    for (const a of f.accounts) {
      let m = daysOf.get(a);
      if (!m) daysOf.set(a, (m = new Map()));
      let d = m.get(f.bucket);
      if (!d) m.set(f.bucket, (d = new Set()));
      d.add(f.day);
    }
    if (f.accounts.length === 1) {
      const a = f.accounts[0]!;
      let s = firm.get(a);
      if (!s) firm.set(a, (s = new Set()));
      s.add(f.bucket);
    }
  }
  const fetchedBuckets = new Map<number, Set<number>>();
  for (const [a, m] of daysOf) fetchedBuckets.set(a, new Set(m.keys()));
  const ownNumbers = new Map<number, E164[]>();
  for (const [n, a] of owners) {
    const l = ownNumbers.get(a);
    if (l) l.push(n as E164);
    else ownNumbers.set(a, [n as E164]);
  }
  const ownBuckets = new Map<number, Set<number>>();
  for (const [a, ns] of ownNumbers) ownBuckets.set(a, new Set(ns.map((n) => input.bucketOfNumber(n))));
  let unregisteredInPlan = 0;
  const unregisteredIn = new Map<number, number>();
  for (const [b, l] of planByBucket) {
    let u = 0;
    for (const n of l) if (!owners.has(n)) u++;
    unregisteredIn.set(b, u);
    unregisteredInPlan += u;
  }
  const requesters = [...firm.keys()].sort((x, y) => x - y);
  const observations: Observation[] = [];
  for (const a of requesters) {
    for (const s of firm.get(a)!) {
      const reg: { n: E164; owner: number }[] = [];
      let unreg = 0;
      let sole: E164 | undefined;
      for (const n of planByBucket.get(s) ?? []) {
        const owner = owners.get(n);
        if (owner === a) continue;
        if (owner === undefined) {
          unreg++;
          sole = n;
        } else reg.push({ n, owner });
      }
      if (reg.length + unreg === 0) continue; // only the account's own numbers: nothing to learn
      observations.push({ account: a, bucket: s, reg, unreg, sole: unreg === 1 ? sole : undefined });
    }
  }
  return { requesters, accounts: [...ownNumbers.keys()].sort((x, y) => x - y), ownNumbers, unregisteredInPlan, unregisteredIn, observations, daysOf, ownBuckets, fetchedBuckets };
}

interface Fitted {
  claims: ScoredClaim[];
  weights: FittedWeight[];
  iterations: number;
}

const prob = (rate: number) => -Math.expm1(-rate);

/** The Poisson model of the module header for one set of features: its state, the EM steps, and the scores. */
class PoissonModel {
  readonly V: number;
  readonly theta: Float64Array;
  /** Product models: one factor per signal and bin, θ(v) = Π φ_i[bin_i(v)]. */
  private readonly phi: Float64Array[];
  private readonly binsOf: number[][];
  /** A -> the numbers of each value A could have fetched; each observation's registered candidates' values. */
  private readonly exposure = new Map<number, Float64Array>();
  private readonly obsValues: number[][];
  private readonly fetchesOf = new Map<number, number>();
  private readonly lambda = new Map<number, number>();
  /** ρ_A: the account's own weight of unregistered numbers (some books hold more unregistered contacts than others), shrunk to 1. */
  private readonly rho = new Map<number, number>();
  /** η_s: the bucket's own weight of unregistered numbers (a bucket holding people many know is fetched more), shrunk to 1. */
  private readonly eta = new Map<number, number>();
  /** The last E step: fetches given to each value, and to unregistered numbers per account and per bucket; and the last exposure. */
  private readonly expected: Float64Array;
  private readonly exposed: Float64Array;
  private readonly unregisteredOf = new Map<number, number>();
  private readonly unregisteredFetches = new Map<number, number>();

  constructor(
    private readonly p: Prepared,
    private readonly features: Features,
    private readonly product: boolean,
  ) {
    const V = (this.V = features.count);
    this.theta = new Float64Array(V).fill(1);
    this.expected = new Float64Array(V);
    this.exposed = new Float64Array(V);
    this.binsOf = Array.from({ length: V }, (_, v) => (v === 0 ? [] : features.bins(v)));
    this.phi = features.sizes.map((n) => new Float64Array(n).fill(1));
    const valueOf = new Map<number, Map<number, number>>();
    for (const a of p.requesters) {
      const counts = new Float64Array(V);
      counts[0] = p.unregisteredInPlan;
      const values = new Map<number, number>();
      for (const b of p.accounts) {
        if (b === a) continue;
        const v = features.of(a, b);
        values.set(b, v);
        counts[v]! += p.ownNumbers.get(b)!.length;
      }
      this.exposure.set(a, counts);
      valueOf.set(a, values);
      this.rho.set(a, 1);
    }
    for (const o of p.observations) this.fetchesOf.set(o.account, (this.fetchesOf.get(o.account) ?? 0) + 1);
    this.obsValues = p.observations.map((o) => o.reg.map((r) => valueOf.get(o.account)!.get(r.owner)!));
    this.setLambda();
  }

  /** Runs EM until the weights stop moving; returns the iterations. */
  fit(maxIterations: number): number {
    let iterations = 0;
    while (iterations < maxIterations) {
      iterations++;
      this.eStep();
      const change = this.product ? this.mStepFactors() : this.mStepWeights();
      this.mStepUnregistered();
      this.setLambda();
      if (change < CONVERGED) break;
    }
    return iterations;
  }

  private unregisteredWeight(account: number, bucket: number): number {
    return this.theta[0]! * this.rho.get(account)! * (this.eta.get(bucket) ?? 1);
  }

  private setLambda(): void {
    for (const a of this.p.requesters) {
      const c = this.exposure.get(a)!;
      let total = this.theta[0]! * this.rho.get(a)! * c[0]!;
      for (let v = 1; v < this.V; v++) total += this.theta[v]! * c[v]!;
      this.lambda.set(a, total > 0 ? (this.fetchesOf.get(a) ?? 0) / total : 0);
    }
  }

  /** Shares each fetch among its candidates in proportion to their weights; then the exposure of each value. */
  private eStep(): void {
    const { expected, exposed, theta } = this;
    expected.fill(0);
    this.unregisteredOf.clear();
    this.unregisteredFetches.clear();
    this.p.observations.forEach((o, i) => {
      const vs = this.obsValues[i]!;
      const u = this.unregisteredWeight(o.account, o.bucket) * o.unreg;
      let z = u;
      for (const v of vs) z += theta[v]!;
      if (z <= 0) return;
      expected[0]! += u / z;
      this.unregisteredOf.set(o.account, (this.unregisteredOf.get(o.account) ?? 0) + u / z);
      this.unregisteredFetches.set(o.bucket, (this.unregisteredFetches.get(o.bucket) ?? 0) + u / z);
      for (const v of vs) expected[v]! += theta[v]! / z;
    });
    exposed.fill(0);
    for (const a of this.p.requesters) {
      const l = this.lambda.get(a)!;
      const c = this.exposure.get(a)!;
      exposed[0]! += l * this.rho.get(a)! * c[0]!;
      for (let v = 1; v < this.V; v++) exposed[v]! += l * c[v]!;
    }
  }

  /** θ(v) to the fetches given to v over v's exposure, scaled so that θ(unregistered) = 1; returns the largest change (log). */
  private mStepWeights(): number {
    const next = new Float64Array(this.V);
    for (let v = 0; v < this.V; v++) next[v] = (this.expected[v]! + PSEUDO * this.theta[v]!) / (this.exposed[v]! + PSEUDO);
    return this.setTheta(next);
  }

  /** One factor per signal and bin (iterative proportional fitting): θ(v) = Π φ_i[bin_i(v)]. */
  private mStepFactors(): number {
    const { V, phi, binsOf, expected, exposed } = this;
    const next = new Float64Array(V);
    next[0] = (expected[0]! + PSEUDO * this.theta[0]!) / (exposed[0]! + PSEUDO);
    for (let i = 0; i < phi.length; i++) {
      const e = new Float64Array(phi[i]!.length);
      const x = new Float64Array(phi[i]!.length);
      for (let v = 1; v < V; v++) {
        let others = 1;
        for (let j = 0; j < phi.length; j++) if (j !== i) others *= phi[j]![binsOf[v]![j]!]!;
        e[binsOf[v]![i]!]! += expected[v]!;
        x[binsOf[v]![i]!]! += exposed[v]! * others;
      }
      for (let k = 0; k < phi[i]!.length; k++) phi[i]![k] = (e[k]! + PSEUDO * phi[i]![k]!) / (x[k]! + PSEUDO);
    }
    for (let v = 1; v < V; v++) next[v] = binsOf[v]!.reduce((t, k, j) => t * phi[j]![k]!, 1);
    const scale = next[0]! > 0 ? next[0]! : 1;
    phi[0]!.forEach((f, k) => (phi[0]![k] = f / scale));
    return this.setTheta(next);
  }

  private setTheta(next: Float64Array): number {
    const scale = next[0]! > 0 ? next[0]! : 1;
    let change = 0;
    for (let v = 0; v < this.V; v++) {
      const t = next[v]! / scale;
      change = Math.max(change, Math.abs(Math.log((t + 1e-12) / (this.theta[v]! + 1e-12))));
      this.theta[v] = t;
    }
    return change;
  }

  /** η per bucket (normalized to a mean of 1 over the plan's unregistered numbers) and ρ per account, each shrunk by pseudo-fetches. */
  private mStepUnregistered(): void {
    const { p, theta } = this;
    let reach = 0; // Σ_A λ_A ρ_A θ0: the rate one unregistered number of weight 1 is fetched at
    for (const a of p.requesters) reach += this.lambda.get(a)! * this.rho.get(a)! * theta[0]!;
    let weighted = 0;
    for (const [b, u] of p.unregisteredIn) {
      if (u === 0) continue;
      const e = ((this.unregisteredFetches.get(b) ?? 0) + BUCKET_PSEUDO) / (reach * u + BUCKET_PSEUDO);
      this.eta.set(b, e);
      weighted += e * u;
    }
    if (weighted > 0) for (const [b, e] of this.eta) this.eta.set(b, (e * p.unregisteredInPlan) / weighted);
    for (const a of p.requesters) {
      const base = this.lambda.get(a)! * theta[0]! * this.exposure.get(a)![0]!;
      this.rho.set(a, base > 0 ? ((this.unregisteredOf.get(a) ?? 0) + ACCOUNT_PSEUDO) / (base + ACCOUNT_PSEUDO) : 1);
    }
  }

  /** Every candidate's score (module header). */
  scores(): ScoredClaim[] {
    const claims: ScoredClaim[] = [];
    this.p.observations.forEach((o, i) => {
      const vs = this.obsValues[i]!;
      const l = this.lambda.get(o.account)!;
      const t0 = this.unregisteredWeight(o.account, o.bucket);
      let z = t0 * o.unreg;
      for (const v of vs) z += this.theta[v]!;
      const all = prob(l * z);
      if (all <= 0) return;
      o.reg.forEach((r, j) => claims.push({ account: o.account, number: r.n, score: Math.min(1, prob(l * this.theta[vs[j]!]!) / all), registered: true }));
      if (o.sole !== undefined) claims.push({ account: o.account, number: o.sole, score: Math.min(1, prob(l * t0) / all), registered: false });
    });
    return claims;
  }

  /** The fitted weights as reported: per value, or per factor with the fetches and exposure of its bin. */
  weights(): FittedWeight[] {
    const { V, expected, exposed, features } = this;
    const out: FittedWeight[] = [{ feature: features.name(0), theta: this.theta[0]!, expected: expected[0]!, exposure: exposed[0]! }];
    if (!this.product) {
      for (let v = 1; v < V; v++) if (exposed[v]! > 0) out.push({ feature: features.name(v), theta: this.theta[v]!, expected: expected[v]!, exposure: exposed[v]! });
      return out;
    }
    this.phi.forEach((factors, i) =>
      factors.forEach((f, k) => {
        let e = 0;
        let x = 0;
        for (let v = 1; v < V; v++) {
          if (this.binsOf[v]![i] !== k) continue;
          e += expected[v]!;
          x += exposed[v]!;
        }
        if (x > 0) out.push({ feature: `× ${features.factorNames[i]![k]!}`, theta: f, expected: e, exposure: x });
      }),
    );
    return out;
  }
}

/** EM for the weights and activities (module header), then every candidate's score. */
function fit(p: Prepared, features: Features, maxIterations: number, product = false): Fitted {
  const model = new PoissonModel(p, features, product);
  const iterations = model.fit(maxIterations);
  return { claims: model.scores(), weights: model.weights(), iterations };
}

/** Round 1: the raw signals of the logs: mutual fetch days and co-fetch beyond chance. */
function rawFeatures(input: AttackInput, p: Prepared): { mutual: (a: number, b: number) => number; community: (a: number, b: number) => number } {
  const buckets = 2 ** input.bits;
  const empty = new Set<number>();
  return {
    mutual(a, b) {
      const byBucket = p.daysOf.get(b);
      if (!byBucket) return 0;
      const days = new Set<number>();
      for (const s of p.ownBuckets.get(a) ?? empty) for (const d of byBucket.get(s) ?? empty) days.add(d);
      return days.size;
    },
    community(a, b) {
      const sa = p.fetchedBuckets.get(a) ?? empty;
      const sb = p.fetchedBuckets.get(b) ?? empty;
      const expected = (sa.size * sb.size) / buckets;
      return (sizeOfIntersection(sa, sb) - expected) / Math.sqrt(expected + 1);
    },
  };
}

/**
 * Round 2: the same pairs seen through the first round's scores: how likely
 * B looked A up (the mutual signal, now weighed by everything else B's
 * fetch of A's bucket could mean), and the contacts A and B likely share
 * (Σ_C p(A→C)·p(B→C) over registered numbers C): a circle, sharper than
 * co-fetched buckets.
 */
function sharedContacts(claims: readonly ScoredClaim[]): (a: number, b: number) => number {
  const byNumber = new Map<string, { a: number; s: number }[]>();
  for (const c of claims) {
    if (!c.registered || c.score < NEGLIGIBLE) continue;
    const l = byNumber.get(c.number);
    if (l) l.push({ a: c.account, s: c.score });
    else byNumber.set(c.number, [{ a: c.account, s: c.score }]);
  }
  const shared = new Map<number, Map<number, number>>();
  for (const l of byNumber.values()) {
    for (const x of l) {
      let m = shared.get(x.a);
      if (!m) shared.set(x.a, (m = new Map()));
      for (const y of l) if (y.a !== x.a) m.set(y.a, (m.get(y.a) ?? 0) + x.s * y.s);
    }
  }
  return (a, b) => shared.get(a)?.get(b) ?? 0;
}

function lookedUp(p: Prepared, claims: readonly ScoredClaim[]): (a: number, b: number) => number {
  const score = new Map<string, number>();
  for (const c of claims) if (c.registered && c.score >= NEGLIGIBLE) score.set(`${c.account} ${c.number}`, c.score);
  return (a, b) => Math.max(0, ...(p.ownNumbers.get(a) ?? []).map((n) => score.get(`${b} ${n}`) ?? 0));
}

export function scoreFetches(input: AttackInput): ScoredAttack {
  const p = prepare(input);
  const maxIterations = input.maxIterations ?? 300;
  const raw = rawFeatures(input, p);
  const cofetch: Signal = { name: 'co-fetch z', edges: [1, 2, 3, 4.5, 6, 9], of: raw.community };
  // Round 1: co-fetch alone, for the likely contacts A and B share.
  const first = fit(p, combine([cofetch]), maxIterations);
  const shared: Signal = { name: 'shared likely contacts', edges: [0.3, 1, 3, 6], of: sharedContacts(first.claims) };
  // Round 2: the circle, for how likely B looked A up (no mutual signal yet, so that A's own fetch cannot vouch for itself).
  const circle = fit(p, combine([shared, { ...cofetch, edges: [1, 3, 6] }]), maxIterations);
  const looked: Signal = { name: 'p(B looked A up)', edges: [0.05, 0.2, 0.5, 0.8], of: lookedUp(p, circle.claims) };
  // Round 3: everything, as factors (the mutual signal jointly with the circle).
  const last = fit(p, combine([joint(looked, shared), { name: 'mutual days', edges: [1, 2, 3], of: raw.mutual }, cofetch]), maxIterations, true);
  // One claim per (account, number): its best score (a number is in one bucket per epoch, so this only merges epochs).
  const best = new Map<string, ScoredClaim>();
  for (const c of last.claims) {
    const k = `${c.account} ${c.number}`;
    const b = best.get(k);
    if (!b || c.score > b.score) best.set(k, c);
  }
  return {
    claims: [...best.values()].sort((x, y) => y.score - x.score || x.account - y.account || (x.number < y.number ? -1 : 1)),
    weights: last.weights,
    iterations: first.iterations + circle.iterations + last.iterations,
    observations: p.observations.length,
  };
}
