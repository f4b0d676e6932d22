/**
 * The scored attack (workload/attack.ts) on a constructed log: a world
 * whose edges are known, with decoys in the same buckets. The attack must
 * name the contacts the signals point to, with the confidence it reports,
 * and must not claim the decoys. Nothing here runs a server: the input is
 * what workload/operator.ts hands the attack after attribution.
 */
import { describe, expect, it } from 'vitest';
import type { E164 } from '../shared/e164.ts';
import { scoreFetches, type AttributedFetch, type AttackInput } from '../workload/attack.ts';
import { stream } from '../workload/rng.ts';

const BUCKETS = 1024;
const PLAN = 6400;
const COMMUNITIES = 10;
const PER_COMMUNITY = 30;
const ACCOUNTS = COMMUNITIES * PER_COMMUNITY;

const num = (i: number) => `+1650555${String(i).padStart(4, '0')}` as E164;
const indexOf = (n: string) => Number(n.slice(-4));
/** A bucket function of the test's own: number index mod 1024 (the attack takes any). */
const bucketOfNumber = (n: E164) => indexOf(n) % BUCKETS;

interface World {
  input: AttackInput;
  /** "account number" of every true edge, and of those to registered numbers. */
  edges: Set<string>;
  registeredEdges: Set<string>;
  /** Registered numbers sharing a bucket with a true contact of the account, not its contacts: decoys. */
  decoys: Set<string>;
  /** Accounts whose only fetch is of a bucket holding one plan number. */
  soleEdge: string;
}

/**
 * 300 accounts in 10 communities of 30. Account a (1..300) owns number
 * index a * 21 (registered: 300 of 6,400 plan numbers, 4-5 per bucket).
 * Each account knows 12 accounts of its own community, both ways (mutual),
 * and 8 unregistered numbers, and fetches each contact's bucket on 1-4
 * days. One more plan number sits alone in a bucket of its own (bucket 1024).
 */
function world(): World {
  const rng = stream('attack-test', 'world', 0);
  const ownerOf = new Map<string, number>();
  for (let a = 1; a <= ACCOUNTS; a++) ownerOf.set(num(a * 21), a);
  const community = (a: number) => Math.floor((a - 1) / PER_COMMUNITY);
  const contacts = new Map<number, Set<number>>(); // account -> plan indexes
  const link = (a: number, i: number) => {
    const s = contacts.get(a) ?? new Set<number>();
    s.add(i);
    contacts.set(a, s);
  };
  for (let a = 1; a <= ACCOUNTS; a++) {
    const c = community(a);
    while ((contacts.get(a)?.size ?? 0) < 12) {
      const b = c * PER_COMMUNITY + 1 + rng.int(PER_COMMUNITY);
      if (b === a) continue;
      link(a, b * 21);
      link(b, a * 21);
    }
    for (let k = 0; k < 8; k++) {
      let i = rng.int(PLAN);
      while (ownerOf.has(num(i))) i = rng.int(PLAN);
      link(a, i);
    }
  }
  const fetches: AttributedFetch[] = [];
  const edges = new Set<string>();
  const registeredEdges = new Set<string>();
  for (const [a, is] of contacts) {
    for (const i of is) {
      edges.add(`${a} ${num(i)}`);
      if (ownerOf.has(num(i))) registeredEdges.add(`${a} ${num(i)}`);
      const days = 1 + rng.int(4);
      for (let d = 0; d < days; d++) fetches.push({ accounts: [a], bucket: bucketOfNumber(num(i)), day: rng.int(30) });
    }
  }
  const decoys = new Set<string>();
  for (const [a, is] of contacts) {
    const fetched = new Set([...is].map((i) => bucketOfNumber(num(i))));
    for (const [n, b] of ownerOf) if (b !== a && fetched.has(bucketOfNumber(n as E164)) && !is.has(indexOf(n))) decoys.add(`${a} ${n}`);
  }
  // A bucket with one plan number (index 9999 in a bucket of its own), fetched by account 1.
  const lone = num(9999);
  const planByBucket = new Map<number, E164[]>();
  for (let i = 0; i < PLAN; i++) {
    const b = bucketOfNumber(num(i));
    planByBucket.set(b, [...(planByBucket.get(b) ?? []), num(i)]);
  }
  planByBucket.set(BUCKETS, [lone]);
  fetches.push({ accounts: [1], bucket: BUCKETS, day: 3 });
  edges.add(`1 ${lone}`);
  return {
    input: { bits: 10, fetches, planByBucket, owners: ownerOf, bucketOfNumber: (n) => (n === lone ? BUCKETS : bucketOfNumber(n)) },
    edges,
    registeredEdges,
    decoys,
    soleEdge: `1 ${lone}`,
  };
}

describe('the scored attack on a constructed log', () => {
  const w = world();
  const result = scoreFetches(w.input);
  const key = (c: { account: number; number: string }) => `${c.account} ${c.number}`;
  const at = (level: number) => result.claims.filter((c) => c.score >= level);

  it('names the mutual community contacts at the confidence it reports', () => {
    const confident = at(0.9);
    const right = confident.filter((c) => w.edges.has(key(c))).length;
    expect(confident.length).toBeGreaterThan(0);
    expect(right / confident.length).toBeGreaterThanOrEqual(0.9);
    const registeredRecall = confident.filter((c) => w.registeredEdges.has(key(c))).length / w.registeredEdges.size;
    expect(registeredRecall).toBeGreaterThan(0.8);
  });

  it('does not claim the decoys: registered numbers of other communities in the same buckets', () => {
    expect(w.decoys.size).toBeGreaterThan(300);
    const claimedDecoys = at(0.5).filter((c) => w.decoys.has(key(c)));
    expect(claimedDecoys.length / w.decoys.size).toBeLessThan(0.01);
    // Every decoy the attack scores at all scores below the contacts it names.
    const decoyScores = result.claims.filter((c) => w.decoys.has(key(c))).map((c) => c.score);
    const contactScores = result.claims.filter((c) => w.registeredEdges.has(key(c))).map((c) => c.score);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    expect(median(decoyScores)).toBeLessThan(0.1);
    expect(median(contactScores)).toBeGreaterThan(0.9);
  });

  it('names the only plan number of a bucket with certainty', () => {
    const c = result.claims.find((x) => key(x) === w.soleEdge);
    expect(c?.score).toBe(1);
  });

  it('fits its weights from the log: a pair that looks each other up and shares a circle weighs far more than an unregistered number', () => {
    const weight = (feature: string) => result.weights.find((x) => x.feature === feature);
    expect(weight('unregistered')!.theta).toBe(1);
    // The factor of "B very likely looked A up, and they share several likely contacts", against neither.
    const strong = weight('× p(B looked A up) & shared likely contacts ≥0.8 & 3-6')!;
    const none = weight('× p(B looked A up) & shared likely contacts <0.05 & <0.3')!;
    expect(strong.expected).toBeGreaterThan(100);
    expect(strong.theta).toBeGreaterThan(100);
    expect(strong.theta).toBeGreaterThan(100 * none.theta);
    expect(result.iterations).toBeGreaterThan(3);
  });

  it('claims nothing from fetches it cannot attribute to one account', () => {
    const shared = scoreFetches({ ...w.input, fetches: w.input.fetches.map((f) => ({ ...f, accounts: [f.accounts[0]!, 0] })) });
    expect(shared.claims).toEqual([]);
  });

  it('claims nothing when every bucket holds the whole plan (b = 0)', () => {
    const all = [...w.input.planByBucket.values()].flat();
    const one = scoreFetches({ ...w.input, bits: 0, planByBucket: new Map([[0, all]]), bucketOfNumber: () => 0, fetches: w.input.fetches.map((f) => ({ ...f, bucket: 0 })) });
    expect(one.claims.filter((c) => c.score >= 0.5)).toEqual([]);
  });
});
