/**
 * What a person typed, turned into E.164 numbers (shared/e164.ts, through
 * the client library), and the region list for numbers written without a
 * country code. Region names come from the browser (Intl.DisplayNames);
 * the list and calling codes from libphonenumber-js, the same `max`
 * metadata the normaliser uses, so the bundle holds it once.
 */
import { getCountries, getCountryCallingCode, parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js/max';
import { ErrorCode, PcdError, normalizeNumber, type E164 } from './imports.ts';

/** Numbers one press of the button looks up at most; an address book is `pcd sync`'s job. */
export const MAX_PAGE_NUMBERS = 200;

/** Splits the textarea: one number per line, or separated by commas or semicolons (spaces stay: "+44 20 7946 0000"). */
export function splitNumbers(text: string): string[] {
  return text
    .split(/[\n\r,;]+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export interface Parsed {
  numbers: E164[];
  /** One message per entry that is no phone number, naming it (the client's PcdError message). */
  problems: string[];
  /** Entries in the box, phone numbers or not. */
  entries: number;
  /** Nothing to look up: an empty box, or more than MAX_PAGE_NUMBERS entries (none is read then). */
  refused?: 'empty' | 'too-many';
}

export function parseNumbers(text: string, region: string): Parsed {
  const entries = splitNumbers(text);
  if (entries.length === 0) return { numbers: [], problems: [], entries: 0, refused: 'empty' };
  if (entries.length > MAX_PAGE_NUMBERS) return { numbers: [], problems: [], entries: entries.length, refused: 'too-many' };
  const numbers: E164[] = [];
  const problems: string[] = [];
  entries.forEach((entry, i) => {
    try {
      numbers.push(normalizeNumber(entry, region));
    } catch (e) {
      const msg = e instanceof PcdError ? e.message : String(e);
      problems.push(entries.length > 1 ? `number ${i + 1}: ${msg}` : msg);
    }
  });
  return { numbers, problems, entries: entries.length };
}

/** The hint under the box, as it is typed in: "3 numbers · up to 200". */
export function countHint(entries: number): string {
  if (entries === 0) return `up to ${MAX_PAGE_NUMBERS} numbers at a time`;
  return `${entries === 1 ? '1 number' : `${entries} numbers`} · up to ${MAX_PAGE_NUMBERS}`;
}

/** "+1 415 555 0123" for display; the E.164 form when libphonenumber has no format for it. */
export function displayNumber(n: E164): string {
  return parsePhoneNumberFromString(n)?.formatInternational() ?? n;
}

/** The plan a number belongs to, as the hashed design's operator would enumerate it. */
export interface PlanInfo {
  /** Country calling code, without '+'. */
  callingCode: string;
  /** Digits after the calling code: the plan spans 10^this numbers. */
  nationalDigits: number;
  /** The number's block: its last (at most) 6 digits as X, e.g. +14155XXXXXX (<= 10^6 numbers). */
  block: string;
}

export function planOf(n: E164): PlanInfo {
  const p = parsePhoneNumberFromString(n);
  const digits = n.slice(1);
  const callingCode = p?.countryCallingCode ?? digits.slice(0, 1);
  const nationalDigits = digits.length - callingCode.length;
  const xs = Math.min(6, nationalDigits);
  return { callingCode, nationalDigits, block: `+${digits.slice(0, digits.length - xs)}${'X'.repeat(xs)}` };
}

export interface Region {
  code: CountryCode;
  label: string;
}

/** Every region libphonenumber knows, by name in the browser's language: "United Kingdom (+44)". */
export function regionList(): Region[] {
  let names: Intl.DisplayNames | undefined;
  try {
    names = new Intl.DisplayNames([...navigator.languages, 'en'], { type: 'region' });
  } catch {
    names = undefined;
  }
  return getCountries()
    .map((code) => {
      let name: string = code;
      try {
        name = names?.of(code) ?? code;
      } catch {
        // a code the browser does not name: show the code
      }
      return { code, label: `${name} (+${getCountryCallingCode(code)})` };
    })
    .sort((a, b) => a.label.localeCompare(b.label));
}

/** The region of the browser's language (en-GB -> GB; plain "de" -> DE by likely subtags), if libphonenumber knows it; else US. */
export function defaultRegion(known: readonly Region[]): CountryCode {
  const has = (r: string | undefined): r is CountryCode => r !== undefined && known.some((k) => k.code === r);
  for (const tag of navigator.languages.length > 0 ? navigator.languages : [navigator.language]) {
    try {
      const loc = new Intl.Locale(tag);
      const r = loc.region ?? loc.maximize().region;
      if (has(r)) return r;
    } catch {
      // not a language tag: try the next
    }
  }
  return 'US';
}

/** A region code as the client wants it, or the client's own error for a bad one. */
export function checkRegion(code: string, known: readonly Region[]): string {
  if (!known.some((k) => k.code === code)) throw new PcdError(ErrorCode.InvalidField, `unknown region '${code}'`);
  return code;
}
