/**
 * Phone number normalisation: the project's only way from what a person
 * typed (or an address book holds) to the canonical E.164 form that every
 * design hashes, blinds and looks up.
 *
 * Built on libphonenumber-js with the `max` metadata, so "valid" means the
 * full per-type check of the country's numbering plan (fixed line, mobile,
 * toll free, ...), not merely a plausible length.
 *
 * Every rejection is a {@link PcdError} with code `invalid_number` and a
 * message that says what is wrong with the input; an unknown default region
 * is the caller's mistake and is `invalid_field`.
 */

import {
  ParseError,
  getCountries,
  isSupportedCountry,
  parsePhoneNumberFromString,
  parsePhoneNumberWithError,
  validatePhoneNumberLength,
  Metadata,
  type CountryCode,
  type PhoneNumber,
} from 'libphonenumber-js/max';
import { ErrorCode, PcdError } from './errors.ts';
import { MAX_E164_DIGITS, MIN_E164_DIGITS, isE164, quote, type E164 } from './e164-key.ts';

// The syntax of an E.164 number and its integer key, without libphonenumber (shared/e164-key.ts: what the server's
// worker threads load), re-exported: callers import them from here.
export { e164ToKey, isE164, keyToE164, type E164 } from './e164-key.ts';

/** Longest input {@link normalizeNumber} looks at; longer input is refused unread. */
export const MAX_NUMBER_INPUT_LENGTH = 64;

/**
 * Normalises a phone number to E.164.
 *
 * Accepts whatever libphonenumber-js parses as a whole (no surrounding text):
 * '+14155550123', '+44 20 7946 0018', '(415) 555-0123' with region 'US',
 * '0044 20 7946 0018' with a region whose international prefix is 00, and
 * '011 44 …' with 'US'. Without a default region a leading '00' is read as
 * the international prefix (the ITU-recommended one, used by most countries).
 * Full-width forms are folded (NFKC) and surrounding whitespace is ignored.
 *
 * @param defaultRegion ISO 3166-1 alpha-2 code ('US', 'gb' is accepted too)
 *   used for numbers written without a country calling code.
 * @throws PcdError `invalid_number` with a precise message, or
 *   `invalid_field` for an unknown `defaultRegion`.
 */
export function normalizeNumber(input: string, defaultRegion?: string): E164 {
  if (typeof input !== 'string') {
    throw invalid(`a phone number must be a string, not ${input === null ? 'null' : typeof input}`);
  }
  const region = defaultRegion === undefined ? undefined : normalizeRegion(defaultRegion, 'default region');
  if (input.length > MAX_NUMBER_INPUT_LENGTH) {
    throw invalid(
      `${quote(input.slice(0, 20) + '…')} is ${input.length} characters long; ` +
        `a phone number has at most ${MAX_NUMBER_INPUT_LENGTH}`,
    );
  }
  const q = quote(input);
  const text = input.normalize('NFKC').trim();
  const digits = countDigits(text);
  if (digits === 0) throw invalid(`${q} contains no digits`);
  if (digits < minNationalDigits()) throw invalid(`${q} is not a phone number: too short`);

  // Without a region, 00 is the only international prefix we can assume.
  const toParse = region === undefined && text.startsWith('00') ? '+' + text.slice(2) : text;
  const international = toParse.startsWith('+');

  let parsed: PhoneNumber;
  try {
    parsed = parsePhoneNumberWithError(toParse, { defaultCountry: region, extract: false });
  } catch (e) {
    if (!(e instanceof ParseError)) throw e;
    switch (e.message) {
      case 'INVALID_COUNTRY':
        if (!international && region === undefined) {
          throw invalid(`${q} has no country code and no default region was given`);
        }
        throw invalid(`${q} has an unknown country calling code`);
      case 'TOO_SHORT':
        throw invalid(`${q} is not a phone number: too short`);
      case 'TOO_LONG':
        throw invalid(`${q} is not a phone number: too long`);
      case 'NOT_A_NUMBER':
      default: {
        const bad = firstUnexpectedChar(text);
        throw invalid(
          bad === undefined
            ? `${q} is not a phone number: its '+' and punctuation are misplaced`
            : `${q} is not a phone number: unexpected character ${quote(bad)}`,
        );
      }
    }
  }

  if (parsed.ext !== undefined) {
    throw invalid(`${q} has an extension (${parsed.ext}); only the number without it can be looked up`);
  }
  const where = placeOf(parsed);
  switch (validatePhoneNumberLength(parsed.number)) {
    case undefined:
      break;
    case 'TOO_SHORT':
      throw invalid(`${q} is too short for ${where}`);
    case 'TOO_LONG':
      throw invalid(`${q} is too long for ${where}`);
    case 'INVALID_LENGTH':
      throw invalid(
        `${q} has a length no number in ${where} has ` +
          `(${parsed.nationalNumber.length} digits after +${parsed.countryCallingCode})`,
      );
    default:
      throw invalid(`${q} is not a valid number in ${where}`);
  }
  if (!parsed.isValid()) throw invalid(`${q} is not a valid number in ${where}`);

  const e164 = parsed.number;
  const total = e164.length - 1;
  if (total > MAX_E164_DIGITS) {
    throw invalid(`${q} has ${total} digits; E.164 allows at most ${MAX_E164_DIGITS}`);
  }
  if (total < MIN_E164_DIGITS) {
    throw invalid(`${q} has ${total} digits; pcd accepts numbers of at least ${MIN_E164_DIGITS}`);
  }
  if (!isE164(e164)) throw invalid(`${q} does not normalise to an E.164 number`);
  return e164;
}

/**
 * The region (ISO 3166-1 alpha-2) the number belongs to, as libphonenumber
 * decides it; undefined for non-geographic numbers (+800, +882, ...) and for
 * numbers no region's plan accepts.
 */
export function regionOf(n: E164): string | undefined {
  return parsePhoneNumberFromString(n)?.country;
}

/**
 * Checks an ISO 3166-1 alpha-2 region code against libphonenumber's list
 * (case-insensitive) and returns it upper-cased.
 * @param what names the field in the error message.
 * @throws PcdError `invalid_field`.
 */
export function normalizeRegion(region: string, what = 'region'): CountryCode {
  if (typeof region === 'string') {
    const upper = region.toUpperCase();
    if (isSupportedCountry(upper)) return upper;
  }
  throw new PcdError(
    ErrorCode.InvalidField,
    `unknown ${what} ${quote(String(region))}: expected an ISO 3166-1 alpha-2 code such as 'US'`,
  );
}

// ---------------------------------------------------------------------------

function invalid(message: string): PcdError {
  return new PcdError(ErrorCode.InvalidNumber, message);
}

function countDigits(s: string): number {
  let n = 0;
  for (const _ of s.matchAll(/\p{Nd}/gu)) n++;
  return n;
}

/** Characters a written phone number may hold besides digits; anything else is reported. */
const PHONE_CHAR = /[\p{Nd}\s+\-‐-―−ー－().\[\]/~⁓∼～（）［］]/u;

function firstUnexpectedChar(s: string): string | undefined {
  for (const c of s) if (!PHONE_CHAR.test(c)) return c;
  return undefined;
}

/** The region to name in a message: the number's own, else the main one of its calling code. */
function placeOf(p: PhoneNumber): string {
  if (p.country !== undefined) return p.country;
  // The metadata lists a calling code's regions main one first; the method is libphonenumber-js's, missing from its typings.
  const md = new Metadata() as unknown as { getCountryCodesForCallingCode(code: string): string[] | undefined };
  const main = md.getCountryCodesForCallingCode(p.countryCallingCode)?.[0];
  if (main !== undefined && isSupportedCountry(main)) return main;
  return `the +${p.countryCallingCode} plan`;
}

let minNational: number | undefined;

/** Fewest national digits any plan has (4, Austria): fewer digits are no phone number anywhere. */
function minNationalDigits(): number {
  if (minNational === undefined) {
    const m = new Metadata();
    let min = Infinity;
    for (const c of getCountries()) {
      m.selectNumberingPlan(c);
      for (const l of m.numberingPlan?.possibleLengths() ?? []) min = Math.min(min, l);
    }
    minNational = Number.isFinite(min) ? min : 2;
  }
  return minNational;
}
