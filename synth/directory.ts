/**
 * Deterministic synthetic directory: registered accounts with their phone
 * numbers and capabilities, plus contact lists for a few requesters.
 *
 * Pure: no disk, no sockets, no clock, no Math.random. The same options give
 * the same output, byte for byte, on every machine: all randomness comes from
 * xoshiro128** streams whose state is SHA-256(seed, stream label, index).
 *
 * How numbers are made. Every number is a *mobile* number (type MOBILE or
 * FIXED_LINE_OR_MOBILE; a messenger registers phones) that libphonenumber-js
 * (`max` metadata) parses back to itself, finds valid and assigns to the
 * region it was generated for. The directory is a list of *blocks*: a block
 * is a national-number prefix (all digits but the last 4; 3 for 7-8 digit
 * numbers) found by drawing random numbers of the region's mobile lengths
 * until one validates. A block holds a few dozen to a few thousand directory
 * numbers, drawn without repetition from its suffixes and each validated.
 * Because blocks are distinct prefixes and suffixes within a block are drawn
 * from a bitmap, numbers are unique without a set of all numbers: memory is
 * O(blocks), about 13 000 blocks for 10^7 numbers. The block list is also
 * what makes contact lists cheap: "registered" contacts are drawn by index
 * from the blocks, "unregistered" ones are valid numbers outside every block.
 *
 * Validation on the hot path uses libphonenumber's own numbering-plan
 * patterns, compiled once per region and applied with the same rules as its
 * `getNumberType()` / country detection (see compileMobileCheck in
 * synth/plan.ts). The first number of every block, and every number
 * {@link sampleNumbers} returns, is also checked by libphonenumber itself
 * (`parsePhoneNumberFromString(n).isValid()`); `verifyAll` checks all.
 *
 * This file: the public API (accounts, contact lists, samples), option
 * checking and the blocks. synth/plan.ts compiles the numbering plans and
 * draws valid numbers from them; synth/rng.ts holds the random streams.
 */

import { ErrorCode, PcdError } from '../shared/errors.ts';
import { normalizeRegion, type E164 } from '../shared/e164.ts';
import { synthShuffle, synthStream, type SynthRng } from './rng.ts';
import { MAX_MISSES, acceptable, compilePlan, pickLength, randomDigits, sample, verify, type Plan } from './plan.ts';

// ---------------------------------------------------------------------------
// Public API

export type SeedCapability = 'messages' | 'facetime';

export interface SeedOptions {
  /** Registered numbers in the directory (exactly), 1..10^7. */
  size: number;
  /** Default 'pcd'. A number and its decimal string are the same seed. */
  seed?: number | string;
  /** ISO 3166-1 alpha-2 codes; blocks are spread evenly over them. Default {@link DEFAULT_SEED_REGIONS}. */
  regions?: readonly string[];
  /** Accounts (the first ones generated) that get a contact list. Default 3. */
  requesters?: number;
  /** Numbers in each contact list. Default 200. */
  contactsPerRequester?: number;
  /** Share of a contact list that is registered, 0..1. Default 0.5. */
  registeredShare?: number;
  /**
   * Relative weights of accounts with 1, 2, … numbers. Default [0.9, 0.1]:
   * 90 % of accounts have one number, 10 % two.
   */
  numbersPerAccount?: readonly number[];
  /** Also check every number with libphonenumber itself (≈10x slower). Default false. */
  verifyAll?: boolean;
}

export interface SeedAccount {
  email: string;
  numbers: E164[];
  capabilities: SeedCapability[];
}

export interface SeedContactList {
  /** The requester account's email. */
  email: string;
  numbers: E164[];
}

export const DEFAULT_SEED_REGIONS: readonly string[] = ['US', 'GB', 'DE', 'FR', 'IN', 'BR', 'JP', 'NG'];
export const MAX_SEED_SIZE = 10_000_000;

/** Shares of the capability sets, fixed: drawn per account with these probabilities. */
export const CAPABILITY_SHARES = {
  both: 0.85,
  messagesOnly: 0.1,
  facetimeOnly: 0.05,
} as const;

/** Email of the i-th generated account (0-based). */
export function seedEmail(index: number): string {
  return `user${index}@pcd.example`;
}

/**
 * Streams the accounts. Total numbers == `size` exactly, unique across the
 * directory; accounts interleave numbers from many blocks, so neighbouring
 * accounts are not neighbouring numbers. Options are checked at call time.
 */
export function generateAccounts(opts: SeedOptions): Generator<SeedAccount> {
  const o = resolveOptions(opts);
  return accountStream(o, () => buildDirectory(o));
}

/**
 * Contact lists of the first `requesters` accounts of {@link generateAccounts}.
 * Each has `contactsPerRequester` distinct numbers, `round(registeredShare * n)`
 * of them directory numbers (never the requester's own), the rest valid mobile
 * numbers of the same regions that are not in the directory; shuffled.
 */
export function generateContactLists(opts: SeedOptions): SeedContactList[] {
  const o = resolveOptions(opts);
  if (o.requesters === 0) return [];
  const dir = buildDirectory(o);
  const accounts = accountStream(o, () => dir);
  const requesters: SeedAccount[] = [];
  for (let r = 0; r < o.requesters; r++) {
    const next = accounts.next();
    if (next.done) {
      throw new PcdError(
        ErrorCode.InvalidField,
        `requesters is ${o.requesters} but a directory of ${o.size} numbers has only ${r} accounts`,
      );
    }
    requesters.push(next.value);
  }
  accounts.return(undefined);

  const blockCache = new Map<number, E164[]>();
  const numberAt = (index: number): E164 => {
    const b = dir.blockOf(index);
    let numbers = blockCache.get(b);
    if (numbers === undefined) {
      const cursor = new BlockCursor(o, dir.blocks[b]!, b);
      numbers = [];
      while (!cursor.exhausted) numbers.push(cursor.next());
      blockCache.set(b, numbers);
    }
    return numbers[index - dir.blocks[b]!.start]!;
  };

  return requesters.map((account, r) => {
    const n = o.contactsPerRequester;
    const registered = Math.round(o.registeredShare * n);
    const own = new Set<string>(account.numbers);
    if (registered > o.size - own.size) {
      throw new PcdError(
        ErrorCode.InvalidField,
        `a contact list needs ${registered} registered numbers but the directory has only ${o.size - own.size} besides the requester's`,
      );
    }
    const rng = synthStream(o.seed, 'contacts', r);
    const chosen = new Set<string>();
    const list: E164[] = [];
    while (list.length < registered) {
      const e = numberAt(rng.int(o.size));
      if (own.has(e) || chosen.has(e)) continue;
      chosen.add(e);
      list.push(e);
    }
    const unregistered = sample(synthStream(o.seed, 'unregistered', r), o.plans, n - registered, (plan, nn, e) =>
      dir.hasBlockFor(plan, nn) || chosen.has(e),
    );
    for (const e of unregistered) list.push(e);
    synthShuffle(list, rng);
    return { email: account.email, numbers: list };
  });
}

/**
 * `count` distinct valid mobile numbers of `regions` (default
 * {@link DEFAULT_SEED_REGIONS}, each region equally likely), none for which
 * `exclude` is true; deterministic in `seed`. Every one is checked by
 * libphonenumber itself.
 */
export function sampleNumbers(opts: {
  count: number;
  seed: number | string;
  regions?: readonly string[];
  exclude?: (n: E164) => boolean;
}): E164[] {
  const count = checkInt(opts.count, 'count', 0, MAX_SEED_SIZE);
  const seed = checkSeed(opts.seed);
  const plans = resolveRegions(opts.regions);
  const exclude = opts.exclude;
  return sample(synthStream(seed, 'sample', 0), plans, count, exclude ? (_p, _nn, e) => exclude(e) : undefined);
}

// ---------------------------------------------------------------------------
// Options

interface Resolved {
  size: number;
  seed: string;
  plans: readonly Plan[];
  requesters: number;
  contactsPerRequester: number;
  registeredShare: number;
  /** Cumulative weights of 1, 2, … numbers per account, last = 1. */
  perAccountCdf: readonly number[];
  verifyAll: boolean;
}

function resolveOptions(opts: SeedOptions): Resolved {
  if (typeof opts !== 'object' || opts === null) {
    throw new PcdError(ErrorCode.InvalidField, 'seed options must be an object');
  }
  const size = checkInt(opts.size, 'size', 1, MAX_SEED_SIZE);
  const share = opts.registeredShare ?? 0.5;
  if (typeof share !== 'number' || !(share >= 0 && share <= 1)) {
    throw new PcdError(ErrorCode.InvalidField, `registeredShare must be a number from 0 to 1, got ${String(share)}`);
  }
  const weights = opts.numbersPerAccount ?? [0.9, 0.1];
  if (
    !Array.isArray(weights) ||
    weights.length === 0 ||
    weights.length > 16 ||
    !weights.every((w) => typeof w === 'number' && Number.isFinite(w) && w >= 0) ||
    !(weights.reduce((a, b) => a + b, 0) > 0)
  ) {
    throw new PcdError(
      ErrorCode.InvalidField,
      'numbersPerAccount must be 1 to 16 non-negative weights (for 1, 2, … numbers) with a positive sum',
    );
  }
  const total = weights.reduce((a, b) => a + b, 0);
  let acc = 0;
  const perAccountCdf = weights.map((w) => (acc += w) / total);
  perAccountCdf[perAccountCdf.length - 1] = 1;
  if (opts.verifyAll !== undefined && typeof opts.verifyAll !== 'boolean') {
    throw new PcdError(ErrorCode.InvalidField, 'verifyAll must be a boolean');
  }
  return {
    size,
    seed: checkSeed(opts.seed ?? 'pcd'),
    plans: resolveRegions(opts.regions),
    requesters: checkInt(opts.requesters ?? 3, 'requesters', 0, MAX_SEED_SIZE),
    contactsPerRequester: checkInt(opts.contactsPerRequester ?? 200, 'contactsPerRequester', 0, 1_000_000),
    registeredShare: share,
    perAccountCdf,
    verifyAll: opts.verifyAll ?? false,
  };
}

function checkInt(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new PcdError(ErrorCode.InvalidField, `${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

function checkSeed(seed: unknown): string {
  if (typeof seed === 'string') return seed;
  if (typeof seed === 'number' && Number.isFinite(seed)) return String(seed);
  throw new PcdError(ErrorCode.InvalidField, `seed must be a string or a finite number, got ${String(seed)}`);
}

function resolveRegions(regions: readonly string[] | undefined): Plan[] {
  const list = regions ?? DEFAULT_SEED_REGIONS;
  if (!Array.isArray(list) || list.length === 0) {
    throw new PcdError(ErrorCode.InvalidField, 'regions must be a non-empty list of ISO 3166-1 alpha-2 codes');
  }
  const seen = new Set<string>();
  const plans: Plan[] = [];
  for (const r of list) {
    const region = normalizeRegion(r, 'region in regions');
    if (seen.has(region)) continue;
    seen.add(region);
    const plan = compilePlan(region);
    if (plan.lengths.length === 0) {
      throw new PcdError(ErrorCode.InvalidField, `region ${region} has no mobile numbers pcd can generate`);
    }
    plans.push(plan);
  }
  return plans;
}

// ---------------------------------------------------------------------------
// The directory: blocks of numbers sharing a prefix.

interface Block {
  plan: Plan;
  /** National prefix: all digits but the last `suffixDigits`. */
  prefix: string;
  suffixDigits: number;
  /** Directory numbers in the block. */
  count: number;
  /** Index of the block's first number in directory order. */
  start: number;
}

interface SynthDirectory {
  blocks: readonly Block[];
  /** Block holding directory index i. */
  blockOf(index: number): number;
  /** Whether the number falls in a directory block (then it may be registered). */
  hasBlockFor(p: Plan, nn: string): boolean;
}

function suffixDigitsFor(length: number): number {
  return length >= 9 ? 4 : length >= 7 ? 3 : length >= 5 ? 2 : 1;
}

function blockKey(p: Plan, prefix: string, length: number): string {
  return `${p.cc}${prefix}/${length}`;
}

/** Suffixes tried at random before a new block is accepted: all must be acceptable, so blocks are dense. */
const PROBES = 8;
/** A block holds at most this share of its suffixes. */
const MAX_OCCUPANCY = 0.25;

function buildDirectory(o: Resolved): SynthDirectory {
  const rng = synthStream(o.seed, 'blocks', 0);
  const blocks: Block[] = [];
  const keys = new Map<string, number>();
  const active = o.plans.slice();
  // Numbers per block grow with the directory: ~8 at 10^3, ~80 at 10^5, ~800 at 10^7.
  const mean = Math.max(2, Math.round(isqrt(o.size) / 4));
  let total = 0;
  while (total < o.size) {
    if (active.length === 0) {
      throw new PcdError(
        ErrorCode.InvalidField,
        `regions ${o.plans.map((p) => p.region).join(', ')} cannot supply ${o.size} distinct mobile numbers (found ${total})`,
      );
    }
    const i = rng.int(active.length);
    const p = active[i]!;
    const found = findBlock(rng, p, keys);
    if (found === undefined) {
      active.splice(i, 1); // this region's plan is exhausted at this block density
      continue;
    }
    const cap = Math.max(1, Math.floor(10 ** found.suffixDigits * MAX_OCCUPANCY));
    const avg = Math.min(cap, mean);
    const lo = Math.max(1, Math.ceil(avg / 2));
    const hi = Math.max(lo, Math.min(cap, Math.floor((avg * 3) / 2)));
    const count = Math.min(o.size - total, lo + rng.int(hi - lo + 1));
    keys.set(found.key, blocks.length);
    blocks.push({ plan: p, prefix: found.prefix, suffixDigits: found.suffixDigits, count, start: total });
    total += count;
  }
  const starts = Float64Array.from(blocks, (b) => b.start);
  return {
    blocks,
    blockOf(index) {
      let lo = 0;
      let hi = starts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >>> 1;
        if (starts[mid]! <= index) lo = mid;
        else hi = mid - 1;
      }
      return lo;
    },
    hasBlockFor(p, nn) {
      const s = suffixDigitsFor(nn.length);
      return keys.has(blockKey(p, nn.slice(0, nn.length - s), nn.length));
    },
  };
}

/** floor(sqrt(n)), exact (no reliance on how Math.sqrt rounds). */
function isqrt(n: number): number {
  let r = Math.floor(Math.sqrt(n));
  while (r * r > n) r--;
  while ((r + 1) * (r + 1) <= n) r++;
  return r;
}

function findBlock(
  rng: SynthRng,
  p: Plan,
  keys: ReadonlyMap<string, number>,
): { prefix: string; suffixDigits: number; key: string } | undefined {
  for (let tries = 0; tries < MAX_MISSES; tries++) {
    const length = pickLength(rng, p);
    const nn = randomDigits(rng, length);
    if (!acceptable(p, nn)) continue;
    const suffixDigits = suffixDigitsFor(length);
    const prefix = nn.slice(0, length - suffixDigits);
    const key = blockKey(p, prefix, length);
    if (keys.has(key)) continue;
    let dense = true;
    for (let k = 0; k < PROBES && dense; k++) {
      dense = acceptable(p, prefix + rng.int(10 ** suffixDigits).toString().padStart(suffixDigits, '0'));
    }
    if (dense) return { prefix, suffixDigits, key };
  }
  return undefined;
}

/** Draws a block's numbers: its own stream, suffixes without repetition, each validated. */
class BlockCursor {
  private readonly rng: SynthRng;
  private readonly seen: Uint8Array;
  private readonly space: number;
  private readonly head: string;
  private produced = 0;
  private draws = 0;
  private scan = 0;

  constructor(
    private readonly o: Resolved,
    private readonly block: Block,
    index: number,
  ) {
    this.rng = synthStream(o.seed, 'block', index);
    this.space = 10 ** block.suffixDigits;
    this.seen = new Uint8Array(this.space);
    this.head = `+${block.plan.cc}${block.prefix}`;
  }

  get exhausted(): boolean {
    return this.produced >= this.block.count;
  }

  next(): E164 {
    const { plan, prefix, suffixDigits } = this.block;
    for (;;) {
      let x: number;
      if (this.draws < this.space * 4) {
        this.draws++;
        x = this.rng.int(this.space);
      } else {
        // Only if the block is much sparser than its probes said: walk it in order.
        while (this.scan < this.space && this.seen[this.scan]) this.scan++;
        if (this.scan >= this.space) {
          throw new PcdError(
            ErrorCode.Internal,
            `seed: block ${this.head}… holds fewer than ${this.block.count} valid numbers`,
          );
        }
        x = this.scan;
      }
      if (this.seen[x]) continue;
      this.seen[x] = 1;
      const suffix = x.toString().padStart(suffixDigits, '0');
      if (!acceptable(plan, prefix + suffix)) continue;
      const e = (this.head + suffix) as E164;
      if (this.produced === 0 || this.o.verifyAll) verify(plan, e);
      this.produced++;
      return e;
    }
  }
}

/** Open blocks numbers are drawn from at a time. */
const WINDOW = 64;

function* accountStream(o: Resolved, directory: () => SynthDirectory): Generator<SeedAccount> {
  const dir = directory();
  const rng = synthStream(o.seed, 'accounts', 0);
  const open: BlockCursor[] = [];
  let nextBlock = 0;
  while (open.length < WINDOW && nextBlock < dir.blocks.length) {
    open.push(new BlockCursor(o, dir.blocks[nextBlock]!, nextBlock));
    nextBlock++;
  }
  const take = (): E164 => {
    const j = rng.int(open.length);
    const cursor = open[j]!;
    const e = cursor.next();
    if (cursor.exhausted) {
      if (nextBlock < dir.blocks.length) {
        open[j] = new BlockCursor(o, dir.blocks[nextBlock]!, nextBlock);
        nextBlock++;
      } else {
        open[j] = open[open.length - 1]!;
        open.pop();
      }
    }
    return e;
  };

  let remaining = o.size;
  for (let i = 0; remaining > 0; i++) {
    const u = rng.float();
    let k = 1;
    while (k < o.perAccountCdf.length && u >= o.perAccountCdf[k - 1]!) k++;
    k = Math.min(k, remaining);
    const numbers: E164[] = [];
    for (let n = 0; n < k; n++) numbers.push(take());
    remaining -= k;
    const c = rng.float();
    const capabilities: SeedCapability[] =
      c < CAPABILITY_SHARES.both
        ? ['messages', 'facetime']
        : c < CAPABILITY_SHARES.both + CAPABILITY_SHARES.messagesOnly
          ? ['messages']
          : ['facetime'];
    yield { email: seedEmail(i), numbers, capabilities };
  }
}
