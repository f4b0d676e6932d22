/**
 * A model of what each signal of the blinded logs recovers, as a function of
 * the sizes that decide it, validated on the simulated runs (the density
 * study) and then used where no simulation reaches: directories of 10^7 to
 * 10^9 registered numbers.
 *
 * Sizes: P plan numbers, R registered numbers, β = 2^b buckets; p = P/β and
 * r = R/β per bucket. Per user and window (from the population's behaviour,
 * not from the scale): c_r registered and c_u unregistered contacts looked
 * up; m, the share of looked-up registered contacts who looked the user up
 * too; |B| = β·(1 − e^{−c/β}) buckets fetched (c = c_r + c_u); π = |B|/β,
 * the chance that an account fetched a given bucket.
 *
 * The signals are the three rules of workload/operator.ts, each on its own
 * (the scored attack combines them, and more: workload/attack.ts):
 * - bucket: the contact's bucket holds no other plan number. Recall over
 *   all edges e^{−p}; certain.
 * - registered: the bucket holds one registered number, claimed. Recall
 *   over edges to registered contacts e^{−r}; precision
 *   (c_r/R) / (1 − (1 − c_r/R)·e^{−c_u/β}) ≈ 1 / (1 + (c_u/c_r)·r): the
 *   fetch may have been for an unregistered contact of the bucket.
 * - mutual: one registered number of the bucket whose account fetched the
 *   requester's own bucket. A true one (share m of registered contacts) is
 *   claimed unless another registered number of the bucket looks mutual by
 *   chance: T = c_r·m·e^{−rπ} per user. A false one: a fetched bucket with
 *   no true mutual contact and exactly one chance match: F = (|B| − c_r·m)·
 *   rπ·e^{−rπ} ≈ |B|²·R/β² per user. Recall over edges to registered
 *   contacts m·e^{−rπ}; precision T / (T + F).
 *
 * So the bucket and registered signals fade as p and r grow, but the mutual
 * signal's false matches grow like |B|²·R/4^b, not like R/2^b: a deployment
 * choosing b for bandwidth (a bucket is about 9·R/2^b bytes) keeps R/4^b
 * small, and the mutual claims stay about as precise as in a small
 * simulation. Every figure assumes fetches attributed to accounts (the
 * account path, one user per IP); anonymous requesters remove that.
 */
import { bucketOf } from '../shared/buckets.ts';
import type { WorkloadPopulation } from './population.ts';
import type { Script } from './script.ts';

/** Bytes a bucket reply carries per registered number: an 8-byte tag and a capability byte (shared/designs/blinded.ts). */
export const BUCKET_BYTES_PER_NUMBER = 9;

/** A user's behaviour over the window: what the model takes from a population, whatever its scale. */
export interface Behaviour {
  /** Registered and unregistered contacts a user looked up in the window (means over users). */
  registeredContacts: number;
  unregisteredContacts: number;
  /** Of the registered contacts looked up, the share who looked the user up too. */
  reciprocated: number;
}

export interface SignalInputs extends Behaviour {
  planSize: number;
  registered: number;
  bits: number;
}

export interface SignalPrediction {
  signal: 'bucket' | 'registered' | 'mutual';
  /** Over all edges (bucket) or over edges to registered contacts (registered, mutual). */
  recall: number;
  over: 'all' | 'registered';
  precision: number;
}

/** Buckets a user fetches in the window: its c contacts' distinct buckets. */
export function bucketsPerUser(contacts: number, bits: number): number {
  const beta = 2 ** bits;
  return beta * -Math.expm1(-contacts / beta);
}

export function predictSignals(x: SignalInputs): SignalPrediction[] {
  const beta = 2 ** x.bits;
  const r = x.registered / beta;
  const cr = x.registeredContacts;
  const cu = x.unregisteredContacts;
  const B = bucketsPerUser(cr + cu, x.bits);
  const pi = B / beta;
  const q = cr / x.registered;
  const t = cr * x.reciprocated * Math.exp(-r * pi);
  const f = Math.max(0, B - cr * x.reciprocated) * r * pi * Math.exp(-r * pi);
  return [
    { signal: 'bucket', recall: Math.exp(-(x.planSize - 1) / beta), over: 'all', precision: 1 },
    { signal: 'registered', recall: Math.exp(-r), over: 'registered', precision: q / (1 - (1 - q) * Math.exp(-cu / beta)) },
    { signal: 'mutual', recall: x.reciprocated * Math.exp(-r * pi), over: 'registered', precision: t + f > 0 ? t / (t + f) : 0 },
  ].map((s) => ({ ...s, recall: Math.min(1, s.recall), precision: Math.min(1, s.precision) })) as SignalPrediction[];
}

/** The behaviour a simulated population showed: contacts looked up per user, and how many were looked up both ways. */
export function measureBehaviour(pop: WorkloadPopulation, script: Script): Behaviour {
  const n = pop.numbers.length;
  let registered = 0;
  let reciprocated = 0;
  let unregistered = 0;
  for (const k of script.truth.lookedUp) {
    const u = Math.floor(k / n);
    const p = k - u * n;
    if (p < pop.users) {
      registered++;
      if (script.truth.lookedUp.has(p * n + u)) reciprocated++;
    } else unregistered++;
  }
  const users = pop.users;
  return { registeredContacts: registered / users, unregisteredContacts: unregistered / users, reciprocated: registered ? reciprocated / registered : 0 };
}

/** Buckets each user fetched, measured (for the model's |B| beside its prediction). */
export function measuredBucketsPerUser(pop: WorkloadPopulation, script: Script, bits: number): number {
  const n = pop.numbers.length;
  const per = new Map<number, Set<number>>();
  for (const k of script.truth.lookedUp) {
    const u = Math.floor(k / n);
    let s = per.get(u);
    if (!s) per.set(u, (s = new Set()));
    s.add(bucketOf(pop.numbers[k - u * n]!, bits));
  }
  let sum = 0;
  for (const s of per.values()) sum += s.size;
  return pop.users ? sum / pop.users : 0;
}

/** The bucket bits whose buckets come closest to `bytes` for R registered numbers. */
export function bitsForBucketBytes(registered: number, bytes: number): number {
  return Math.max(0, Math.round(Math.log2((BUCKET_BYTES_PER_NUMBER * registered) / bytes)));
}

export interface ScaleRow {
  registered: number;
  planSize: number;
  targetBytes: number;
  bits: number;
  bucketBytes: number;
  planPerBucket: number;
  registeredPerBucket: number;
  /** |B|²·R/4^b: the mutual signal's false matches per user, before the e^{−rπ} factor. */
  falseMutualPerUser: number;
  signals: SignalPrediction[];
}

/**
 * Real sizes: for each directory of R registered numbers, the b a
 * deployment would choose for buckets of about `bucketBytes` each, and what
 * each signal gives there. `planPerRegistered`: plan numbers per registered
 * one (a numbering plan holds every valid number, in use or not).
 */
export function realScale(behaviour: Behaviour, registered: readonly number[], bucketBytes: readonly number[], planPerRegistered: number): ScaleRow[] {
  return registered.flatMap((R) =>
    bucketBytes.map((bytes): ScaleRow => {
      const bits = bitsForBucketBytes(R, bytes);
      const beta = 2 ** bits;
      const P = R * planPerRegistered;
      const B = bucketsPerUser(behaviour.registeredContacts + behaviour.unregisteredContacts, bits);
      return {
        registered: R,
        planSize: P,
        targetBytes: bytes,
        bits,
        bucketBytes: (BUCKET_BYTES_PER_NUMBER * R) / beta,
        planPerBucket: P / beta,
        registeredPerBucket: R / beta,
        falseMutualPerUser: (B * B * R) / (beta * beta),
        signals: predictSignals({ ...behaviour, planSize: P, registered: R, bits }),
      };
    }),
  );
}
