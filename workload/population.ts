/**
 * A synthetic population for the 30-day workload: people with phone
 * numbers, a registered share of them (the messenger's users, each a
 * requester in the simulation), and every user's address book.
 *
 * - Numbers come from a few numbering-plan blocks: a prefix and
 *   `blockDigits` free digits (`+1650505XXXX`), found with synth/'s
 *   generator (a valid mobile number of the region) and kept only when every
 *   number of the block is a valid mobile number (its compiled check). The
 *   blocks are the plan the operator enumerates (hashed reversal) and counts
 *   bucket candidates in (blinded): small enough to enumerate, by design.
 * - People are spread over communities (sizes log-normal around
 *   `communitySize`, laid out on a ring); a user's degree is log-normal
 *   (heavy-tailed, capped), `clustering` of the contacts come from the own
 *   community (then its ring neighbours), the rest uniformly from everyone.
 * - Mutual: a contact who is a user has the requester in their own book
 *   with probability `mutual` (added after the lists are drawn).
 * - Tie strength: one log-normal draw per unordered pair (symmetric, heavy
 *   tailed): who a user talks to most, and who talks back.
 *
 * Pure and deterministic in `seed` (workload/rng.ts). The types are named
 * apart from the server's `Directory` (server/directory.ts): this is the
 * world, not the server's index of it.
 */
import { getCountryCallingCode, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { normalizeRegion } from '../shared/e164.ts';
import { compileMobileCheck } from '../synth/plan.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { normalQuantile, pairUniform, seedWord, shuffle, stream, type WorkloadRng } from './rng.ts';

export interface PopulationOptions {
  seed: string;
  /** Regions the plan blocks are drawn in, round robin. */
  regions: string[];
  /** Numbering-plan blocks (ranges of 10^blockDigits numbers). */
  blocks: number;
  /** Free trailing digits per block (4: 10,000 numbers). */
  blockDigits: number;
  /** People (numbers in use) in the plan. */
  people: number;
  /** Share of the people registered: the users, each a simulated requester. */
  registeredShare: number;
  /** Address-book size: log-normal median and sigma, capped at maxDegree. */
  degreeMedian: number;
  degreeSigma: number;
  maxDegree: number;
  /** Median community size. */
  communitySize: number;
  /** Share of a book drawn from the own community and its ring neighbours. */
  clustering: number;
  /** Probability that a user contact reciprocates (has the requester in their book). */
  mutual: number;
  /** Sigma of the log-normal tie strength. */
  tieSigma: number;
}

export const DEFAULT_POPULATION: PopulationOptions = {
  seed: 'pcd-workload',
  regions: ['US', 'GB', 'DE'],
  blocks: 3,
  blockDigits: 4,
  people: 2400,
  registeredShare: 0.3,
  degreeMedian: 50,
  degreeSigma: 0.8,
  maxDegree: 1000,
  communitySize: 60,
  clustering: 0.8,
  mutual: 0.6,
  tieSigma: 1.5,
};

export interface PlanBlock {
  /** '+1650505XXXX'. */
  pattern: string;
  region: string;
  size: number;
}

export interface PopulationStats {
  planSize: number;
  people: number;
  users: number;
  addressBookEdges: number;
  /** Contacts per user: mean, median, max. */
  degree: { mean: number; median: number; max: number };
  /** Edges to a user contact that the contact reciprocates. */
  reciprocity: number;
  /** Contacts in the own community. */
  inCommunity: number;
  /** Contacts that are registered. */
  registeredContacts: number;
}

export interface WorkloadPopulation {
  readonly options: PopulationOptions;
  readonly plan: readonly PlanBlock[];
  /** The plan as `pcd audit --plan` takes it. */
  readonly planSpec: string;
  /** Person p's number. People 0 .. users-1 are the users (registered); the rest are not registered. */
  readonly numbers: readonly E164[];
  readonly users: number;
  readonly community: Int32Array;
  readonly communities: readonly (readonly number[])[];
  /** User u's address book at the start of the window (person indexes). */
  readonly contacts: readonly number[][];
  readonly stats: PopulationStats;
  /** Tie strength of the pair (symmetric). */
  tie(a: number, b: number): number;
}

function fail(message: string): never {
  throw new PcdError(ErrorCode.InvalidField, message);
}

function checkNumber(name: string, v: number, min: number, max: number, integer = false): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    fail(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${String(v)}`);
  }
}

export function checkPopulationOptions(o: PopulationOptions): void {
  if (!Array.isArray(o.regions) || o.regions.length === 0) fail('regions must name at least one region (e.g. US,GB,DE)');
  for (const r of o.regions) normalizeRegion(r, 'region');
  checkNumber('blocks', o.blocks, 1, 100, true);
  checkNumber('block digits', o.blockDigits, 2, 6, true);
  checkNumber('people', o.people, 3, 2_000_000, true);
  checkNumber('registered share', o.registeredShare, 0, 1);
  checkNumber('degree median', o.degreeMedian, 1, 5000);
  checkNumber('degree sigma', o.degreeSigma, 0, 3);
  checkNumber('max degree', o.maxDegree, 1, 50_000, true);
  checkNumber('community size', o.communitySize, 2, 1_000_000);
  checkNumber('clustering', o.clustering, 0, 1);
  checkNumber('mutual', o.mutual, 0, 1);
  checkNumber('tie sigma', o.tieSigma, 0, 5);
  const plan = o.blocks * 10 ** o.blockDigits;
  if (o.people > 0.9 * plan) fail(`${o.people} people do not fit in ${o.blocks} block(s) of 10^${o.blockDigits} numbers (at most 90 % of ${plan}): raise --blocks or --block-digits`);
  if (Math.round(o.registeredShare * o.people) < 2) fail('the population needs at least 2 registered users: raise --people or --registered-share');
}

/** Blocks whose every number is a valid mobile number of the region, distinct prefixes. */
function findBlocks(o: PopulationOptions): PlanBlock[] {
  const blocks: PlanBlock[] = [];
  const prefixes = new Set<string>();
  for (let k = 0; k < o.blocks; k++) {
    const region = normalizeRegion(o.regions[k % o.regions.length]!, 'region') as CountryCode;
    const cc = getCountryCallingCode(region);
    const mobile = compileMobileCheck(region);
    let found: PlanBlock | undefined;
    for (let attempt = 0; attempt < 200 && !found; attempt++) {
      const [n] = sampleNumbers({ count: 1, seed: `${o.seed}/block/${k}/${attempt}`, regions: [region] });
      if (!n || parsePhoneNumberFromString(n)?.country !== region) continue;
      const prefix = n.slice(0, n.length - o.blockDigits);
      if (prefixes.has(prefix) || prefix.length - 1 - cc.length < 1) continue;
      const size = 10 ** o.blockDigits;
      let all = true;
      for (let s = 0; s < size && all; s++) all = mobile(prefix.slice(1 + cc.length) + String(s).padStart(o.blockDigits, '0'));
      if (all) found = { pattern: prefix + 'X'.repeat(o.blockDigits), region, size };
    }
    if (!found) fail(`no block of 10^${o.blockDigits} valid mobile numbers found in ${region}: try fewer --block-digits or another region`);
    prefixes.add(found.pattern);
    blocks.push(found);
  }
  return blocks;
}

/** Every number of the plan, in block order. */
export function planNumbers(plan: readonly PlanBlock[]): E164[] {
  const out: E164[] = [];
  for (const b of plan) {
    const free = b.pattern.length - b.pattern.indexOf('X');
    const head = b.pattern.slice(0, b.pattern.length - free);
    for (let s = 0; s < b.size; s++) out.push((head + String(s).padStart(free, '0')) as E164);
  }
  return out;
}

function degreeOf(rng: WorkloadRng, o: PopulationOptions): number {
  const d = Math.round(rng.logNormal(o.degreeMedian, o.degreeSigma));
  return Math.max(1, Math.min(d, o.maxDegree, o.people - 1));
}

/**
 * A person for `user`'s book that is not in `has`: with probability
 * `clustering` from the own community or its ring neighbours, else anyone.
 * Used for the initial books and for contacts added during the window.
 */
export function pickContact(pop: Pick<WorkloadPopulation, 'community' | 'communities' | 'options' | 'numbers'>, user: number, rng: WorkloadRng, has: Set<number>): number | undefined {
  const n = pop.numbers.length;
  if (has.size >= n - 1) return undefined;
  if (rng.chance(pop.options.clustering)) {
    const c = pop.community[user]!;
    const ring = pop.communities.length;
    // Own community first, then neighbours at distance 1, 2, ... on the ring (a random side first).
    for (let dist = 0; dist <= ring / 2; dist++) {
      const sides = dist === 0 ? [c] : rng.chance(0.5) ? [c + dist, c - dist] : [c - dist, c + dist];
      for (const s of sides) {
        const members = pop.communities[((s % ring) + ring) % ring]!;
        const start = rng.int(members.length);
        for (let i = 0; i < members.length; i++) {
          const p = members[(start + i) % members.length]!;
          if (p !== user && !has.has(p)) return p;
        }
      }
    }
  }
  for (;;) {
    const p = rng.int(n);
    if (p !== user && !has.has(p)) return p;
  }
}

export function generatePopulation(options: PopulationOptions): WorkloadPopulation {
  const o = { ...options, regions: [...options.regions] };
  checkPopulationOptions(o);
  const plan = findBlocks(o);
  const all = planNumbers(plan);

  // People: distinct plan numbers in random order; the first `users` are registered.
  const pick = stream(o.seed, 'people');
  const chosen = new Set<number>();
  const order: number[] = [];
  while (order.length < o.people) {
    const i = pick.int(all.length);
    if (chosen.has(i)) continue;
    chosen.add(i);
    order.push(i);
  }
  const numbers = order.map((i) => all[i]!);
  const users = Math.round(o.registeredShare * o.people);

  // Communities: consecutive runs of a shuffled person list, log-normal sizes.
  const crng = stream(o.seed, 'communities');
  const shuffled = shuffle(Array.from({ length: o.people }, (_, p) => p), crng);
  const community = new Int32Array(o.people);
  const communities: number[][] = [];
  for (let i = 0; i < shuffled.length; ) {
    const size = Math.max(3, Math.round(crng.logNormal(o.communitySize, 0.5)));
    const members = shuffled.slice(i, i + size);
    for (const p of members) community[p] = communities.length;
    communities.push(members);
    i += size;
  }

  const base = { community, communities, options: o, numbers };
  const books: Set<number>[] = [];
  const contacts: number[][] = [];
  for (let u = 0; u < users; u++) {
    const rng = stream(o.seed, 'book', u);
    const degree = degreeOf(rng, o);
    const has = new Set<number>();
    const list: number[] = [];
    while (list.length < degree) {
      const p = pickContact(base, u, rng, has);
      if (p === undefined) break;
      has.add(p);
      list.push(p);
    }
    books.push(has);
    contacts.push(list);
  }
  // Mutual: a user contact puts the requester in their own book with probability `mutual`.
  const mrng = stream(o.seed, 'mutual');
  for (let u = 0; u < users; u++) {
    for (const v of [...contacts[u]!]) {
      if (v >= users || books[v]!.has(u)) continue;
      if (mrng.chance(o.mutual)) {
        books[v]!.add(u);
        contacts[v]!.push(u);
      }
    }
  }

  const word = seedWord(o.seed, 'tie');
  const tie = (a: number, b: number): number => Math.exp(o.tieSigma * normalQuantile(pairUniform(word, a, b)));

  let edges = 0;
  let toUsers = 0;
  let reciprocated = 0;
  let inCommunity = 0;
  const degrees: number[] = [];
  for (let u = 0; u < users; u++) {
    degrees.push(contacts[u]!.length);
    for (const v of contacts[u]!) {
      edges++;
      if (community[v] === community[u]) inCommunity++;
      if (v < users) {
        toUsers++;
        if (books[v]!.has(u)) reciprocated++;
      }
    }
  }
  degrees.sort((a, b) => a - b);
  const stats: PopulationStats = {
    planSize: all.length,
    people: o.people,
    users,
    addressBookEdges: edges,
    degree: { mean: edges / users, median: degrees[Math.floor(degrees.length / 2)] ?? 0, max: degrees.at(-1) ?? 0 },
    reciprocity: toUsers ? reciprocated / toUsers : 0,
    inCommunity: edges ? inCommunity / edges : 0,
    registeredContacts: edges ? toUsers / edges : 0,
  };
  return { options: o, plan, planSpec: plan.map((b) => b.pattern).join(','), numbers, users, community, communities, contacts, stats, tie };
}
