/**
 * Numbering plans for the directory generator, compiled once per region from
 * libphonenumber's max metadata: the mobile check applied on the hot path
 * (same rules as libphonenumber's getNumberType() and country detection),
 * libphonenumber's own verdict for the numbers that are double-checked, and
 * drawing distinct valid mobile numbers of a set of plans.
 */

import {
  Metadata,
  getCountryCallingCode,
  parsePhoneNumberFromString,
  type CountryCode,
  type PhoneNumberType,
} from 'libphonenumber-js/max';
import metadata from 'libphonenumber-js/metadata.max.json';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { normalizeRegion, type E164 } from '../shared/e164.ts';
import type { SynthRng } from './rng.ts';

/**
 * The compiled check the generator applies to a national (significant)
 * number of `region`: true iff libphonenumber-js/max would parse
 * '+<cc><nationalNumber>' as a valid number of `region` whose type is MOBILE
 * or FIXED_LINE_OR_MOBILE. Exposed so tests can hold it against
 * libphonenumber itself.
 */
export function compileMobileCheck(region: string): (nationalNumber: string) => boolean {
  const plan = compilePlan(normalizeRegion(region));
  return (nn) => acceptable(plan, nn);
}

// ---------------------------------------------------------------------------
// Numbering plans, compiled once from libphonenumber's max metadata.

/** What libphonenumber's Metadata exposes at run time beyond its typings. */
interface PlanInternals {
  nationalNumberPattern(): string;
  possibleLengths(): number[];
  leadingDigits(): string | undefined;
  hasTypes(): boolean;
  type(name: PhoneNumberType): { pattern(): string; possibleLengths(): number[] | undefined } | undefined;
}

interface TypeDef {
  /** '' when libphonenumber dropped it as a duplicate of the fixed-line pattern. */
  pattern: string;
  re: RegExp | undefined;
  lengths: readonly number[] | undefined;
}

export interface Plan {
  region: CountryCode;
  cc: string;
  general: RegExp;
  leading: RegExp | undefined;
  hasTypes: boolean;
  fixed: TypeDef | undefined;
  mobile: TypeDef | undefined;
  /** The non-fixed-line types present, in libphonenumber's order of checking. */
  others: readonly { name: PhoneNumberType; def: TypeDef }[];
  /** Other regions sharing the calling code, in libphonenumber's order (this one included); undefined if none. */
  siblings: readonly Plan[] | undefined;
  /** National lengths a mobile number can have (and 7..15 digits with the calling code). */
  lengths: readonly number[];
}

const NON_FIXED_LINE_TYPES: readonly PhoneNumberType[] = [
  'MOBILE',
  'PREMIUM_RATE',
  'TOLL_FREE',
  'SHARED_COST',
  'VOIP',
  'PERSONAL_NUMBER',
  'PAGER',
  'UAN',
  'VOICEMAIL',
];

const plans = new Map<string, Plan>();

export function compilePlan(region: CountryCode): Plan {
  const cached = plans.get(region);
  if (cached) return cached;
  const m = new Metadata();
  m.selectNumberingPlan(region);
  const np = m.numberingPlan as unknown as PlanInternals;
  const typeDef = (name: PhoneNumberType): TypeDef | undefined => {
    const t = np.type(name);
    if (!t) return undefined;
    const pattern = t.pattern();
    return { pattern, re: pattern ? new RegExp(`^(?:${pattern})$`) : undefined, lengths: t.possibleLengths() };
  };
  const leading = np.leadingDigits();
  const cc = getCountryCallingCode(region);
  const plan: Plan = {
    region,
    cc,
    general: new RegExp(`^(?:${np.nationalNumberPattern()})$`),
    // libphonenumber tests `nationalNumber.search(leadingDigits) === 0`: a match at the start.
    leading: leading ? new RegExp(`^(?:${leading})`) : undefined,
    hasTypes: np.hasTypes(),
    fixed: typeDef('FIXED_LINE'),
    mobile: typeDef('MOBILE'),
    others: NON_FIXED_LINE_TYPES.flatMap((name) => {
      const def = typeDef(name);
      return def === undefined ? [] : [{ name, def }];
    }),
    siblings: undefined,
    lengths: [],
  };
  plans.set(region, plan);
  const source = plan.mobile?.pattern ? plan.mobile : plan.fixed?.pattern ? plan.fixed : undefined;
  plan.lengths = (source?.lengths ?? np.possibleLengths()).filter((l) => l >= 2 && l + cc.length >= 7 && l + cc.length <= 15);
  const sharing = metadata.country_calling_codes[cc] ?? [region];
  if (sharing.length > 1) plan.siblings = sharing.map((c) => (c === region ? plan : compilePlan(c)));
  return plan;
}

/** Same outcome as libphonenumber's isNumberTypeEqualTo(). */
function isType(t: TypeDef | undefined, nn: string): boolean {
  if (t === undefined || t.re === undefined) return false;
  if (t.lengths !== undefined && t.lengths.indexOf(nn.length) < 0) return false;
  return t.re.test(nn);
}

/** Same outcome as libphonenumber's getNumberType() for a number of this plan's country. */
function numberType(p: Plan, nn: string): PhoneNumberType | undefined {
  if (!p.general.test(nn)) return undefined;
  if (isType(p.fixed, nn)) {
    if (p.mobile === undefined || p.mobile.pattern === '' || isType(p.mobile, nn)) return 'FIXED_LINE_OR_MOBILE';
    return 'FIXED_LINE';
  }
  for (const t of p.others) if (isType(t.def, nn)) return t.name;
  return undefined;
}

/**
 * True iff '+<cc><nn>' parses (libphonenumber) to this plan's region, is
 * valid, and is MOBILE or FIXED_LINE_OR_MOBILE. Mirrors
 * getCountryByNationalNumber(): the first sharing region whose leading digits
 * match, else whose types accept the number, owns it.
 */
export function acceptable(p: Plan, nn: string): boolean {
  if (p.siblings !== undefined) {
    let owner: Plan | undefined;
    for (const s of p.siblings) {
      if (s.leading !== undefined) {
        if (s.leading.test(nn)) {
          owner = s;
          break;
        }
      } else if (s === p) {
        // p owns the number iff its types accept it, and then that type decides.
        return isMobile(numberType(p, nn));
      } else if (numberType(s, nn) !== undefined) {
        owner = s;
        break;
      }
    }
    if (owner !== p) return false;
  }
  if (!p.hasTypes) return p.general.test(nn);
  return isMobile(numberType(p, nn));
}

function isMobile(t: PhoneNumberType | undefined): boolean {
  return t === 'MOBILE' || t === 'FIXED_LINE_OR_MOBILE';
}

/** libphonenumber's own verdict, for the numbers the generator double-checks. */
export function verify(p: Plan, e164: string): void {
  const parsed = parsePhoneNumberFromString(e164);
  const type = parsed?.getType();
  if (
    parsed === undefined ||
    parsed.number !== e164 ||
    parsed.country !== p.region ||
    !parsed.isValid() ||
    (p.hasTypes && type !== 'MOBILE' && type !== 'FIXED_LINE_OR_MOBILE')
  ) {
    throw new PcdError(
      ErrorCode.Internal,
      `seed: ${e164} passed the compiled ${p.region} check but libphonenumber disagrees ` +
        `(parsed ${parsed?.number ?? 'nothing'}, region ${parsed?.country ?? 'none'}, valid ${String(parsed?.isValid())}, type ${String(type)})`,
    );
  }
}

// ---------------------------------------------------------------------------
// Random numbers

export function randomDigits(rng: SynthRng, length: number): string {
  let s = '';
  while (s.length < length) {
    const chunk = rng.int(1_000_000_000).toString().padStart(9, '0');
    s += chunk;
  }
  return s.slice(0, length);
}

export function pickLength(rng: SynthRng, p: Plan): number {
  return p.lengths[rng.int(p.lengths.length)]!;
}

/** Consecutive rejected candidates after which a region (or a sample) is considered exhausted. */
export const MAX_MISSES = 200_000;

/** `count` distinct acceptable numbers, each region equally likely, all verified by libphonenumber. */
export function sample(
  rng: SynthRng,
  regions: readonly Plan[],
  count: number,
  exclude: ((p: Plan, nn: string, e164: E164) => boolean) | undefined,
): E164[] {
  const out: E164[] = [];
  const seen = new Set<string>();
  let misses = 0;
  while (out.length < count) {
    if (misses > MAX_MISSES) {
      throw new PcdError(
        ErrorCode.InvalidField,
        `could not find ${count} distinct valid numbers in ${regions.map((p) => p.region).join(', ')} (found ${out.length})`,
      );
    }
    const p = regions[rng.int(regions.length)]!;
    const nn = randomDigits(rng, pickLength(rng, p));
    if (!acceptable(p, nn)) {
      misses++;
      continue;
    }
    const e = `+${p.cc}${nn}` as E164;
    if (seen.has(e) || (exclude !== undefined && exclude(p, nn, e))) {
      misses++;
      continue;
    }
    verify(p, e);
    seen.add(e);
    out.push(e);
    misses = 0;
  }
  return out;
}
