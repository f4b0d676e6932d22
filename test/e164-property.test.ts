/**
 * Properties of normalizeNumber (shared/e164.ts), on generated input:
 * - it agrees with libphonenumber-js/max: a valid number of any region
 *   (libphonenumber's example mobile number of each of its regions, and the
 *   synthetic directory's numbers, synth/), written in E.164, international,
 *   national (with its region), RFC 3966 form, with an international
 *   prefix, with other punctuation or with full-width digits, normalises to
 *   the E.164 number libphonenumber reads from the same text;
 * - it is idempotent: normalizeNumber(normalizeNumber(x)) ===
 *   normalizeNumber(x), with or without a default region, for valid numbers
 *   in every form and for arbitrary text; whatever it refuses, it refuses
 *   with an invalid_number PcdError.
 * Run counts from runs() (test/helpers.ts): full under PCD_TEST_FULL=1.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePhoneNumberFromString, type CountryCode, type PhoneNumber } from 'libphonenumber-js/max';
import examples from 'libphonenumber-js/examples.mobile.json';
import { ErrorCode, isPcdError } from '../shared/errors.ts';
import { isE164, normalizeNumber, type E164 } from '../shared/e164.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { FULL, runs } from './helpers.ts';

const EXAMPLES = examples as Record<string, string>;
const REGIONS = Object.keys(EXAMPLES).sort() as CountryCode[];

/** A valid number and the region it belongs to. */
interface Valid {
  region: CountryCode;
  parsed: PhoneNumber;
}

function valid(text: string, region?: CountryCode): Valid | undefined {
  const parsed = parsePhoneNumberFromString(text, region);
  if (!parsed?.isValid() || parsed.country === undefined) return undefined;
  // pcd accepts 7 to 15 digits (shared/e164.ts isE164); libphonenumber a few shorter numbers as well.
  if (!isE164(parsed.number)) return undefined;
  return { region: parsed.country, parsed };
}

/** libphonenumber's example mobile number of every region it has one for. */
const EXAMPLE_NUMBERS: Valid[] = REGIONS.map((r) => valid(EXAMPLES[r]!, r)).filter((v): v is Valid => v !== undefined);
/** Regions the synthetic generator draws from: all under PCD_TEST_FULL=1, every fourth otherwise (drawing costs ~8 ms a region). */
const SYNTH_REGIONS = REGIONS.filter((_, i) => FULL || i % 4 === 0);
/** Numbers of the synthetic directory generator, a few per region it has a mobile plan for. */
const SYNTH_NUMBERS: Valid[] = SYNTH_REGIONS.flatMap((r) => {
  try {
    return sampleNumbers({ count: 3, seed: `e164-property-${r}`, regions: [r] });
  } catch {
    return []; // a region without a plan the generator can draw from
  }
})
  .map((n) => valid(n))
  .filter((v): v is Valid => v !== undefined);

const FULLWIDTH = (s: string) => s.replace(/[0-9]/g, (d) => String.fromCharCode(0xff10 + Number(d)));
/** Punctuation people put between digits. */
const SEPARATOR = fc.constantFrom('', '', ' ', '-', '.', '/', ' - ', '  ', '\u00a0', '\u2011');

/** `digits` with a separator drawn before each digit but the first (the text starts with its first character). */
function punctuated(prefix: string, digits: string): fc.Arbitrary<string> {
  return fc.array(SEPARATOR, { minLength: digits.length, maxLength: digits.length }).map((seps) => prefix + [...digits].map((d, i) => (i === 0 ? d : seps[i] + d)).join(''));
}

type Form = 'e164' | 'international' | 'national' | 'rfc3966' | 'idd' | 'punctuated' | 'punctuated-national' | 'fullwidth';
const FORMS: readonly Form[] = ['e164', 'international', 'national', 'rfc3966', 'idd', 'punctuated', 'punctuated-national', 'fullwidth'];

/** One way to write the number, and the region to read it with (the one libphonenumber is given too). */
function written(v: Valid, form: Form): fc.Arbitrary<{ text: string; region?: CountryCode }> {
  const p = v.parsed;
  switch (form) {
    case 'e164':
      return fc.constant({ text: p.number });
    case 'international':
      return fc.constant({ text: p.formatInternational() });
    case 'national':
      return fc.constant({ text: p.formatNational(), region: v.region });
    case 'rfc3966':
      return fc.constant({ text: p.getURI().replace(/^tel:/, '') });
    case 'idd':
      // Dialled from Germany (international prefix 00), as a German address book holds it.
      return fc.constant({ text: `00 ${p.formatInternational().slice(1)}`, region: 'DE' as CountryCode });
    case 'punctuated':
      return punctuated('+', p.number.slice(1)).map((text) => ({ text }));
    case 'punctuated-national':
      return punctuated('', p.formatNational().replace(/\D/g, '')).map((text) => ({ text, region: v.region }));
    case 'fullwidth':
      return fc.constant({ text: FULLWIDTH(p.formatInternational()) });
  }
}

const VALID = fc.oneof(fc.constantFrom(...EXAMPLE_NUMBERS), fc.constantFrom(...SYNTH_NUMBERS));
const WRITTEN = fc
  .tuple(VALID, fc.constantFrom(...FORMS))
  .chain(([v, form]) => written(v, form).map((w) => ({ ...w, form, number: v.parsed.number as E164 })));

/** normalizeNumber, or the invalid_number PcdError it threw (anything else it throws fails the test). */
function attempt(text: string, region?: string): E164 | undefined {
  try {
    return normalizeNumber(text, region);
  } catch (e) {
    if (!isPcdError(e, ErrorCode.InvalidNumber)) throw e;
    return undefined;
  }
}

describe('the generated numbers', () => {
  it('cover most regions, from both sources', () => {
    expect(EXAMPLE_NUMBERS.length).toBeGreaterThan(200);
    expect(new Set(SYNTH_NUMBERS.map((v) => v.region)).size).toBeGreaterThan(0.9 * SYNTH_REGIONS.length);
  });
});

describe('normalizeNumber agrees with libphonenumber-js/max', () => {
  it('on every region\'s example mobile number, in E.164, international, national and RFC 3966 form', () => {
    for (const v of EXAMPLE_NUMBERS) {
      for (const form of ['e164', 'international', 'national', 'rfc3966'] as const) {
        const { text, region } = fc.sample(written(v, form), 1)[0]!;
        expect(normalizeNumber(text, region), `${v.region} ${form} '${text}'`).toBe(v.parsed.number);
      }
    }
  });

  it('on generated valid numbers, written in any form: the E.164 libphonenumber reads from the same text', () => {
    let same = 0;
    let total = 0;
    fc.assert(
      fc.property(WRITTEN, ({ text, region, number }) => {
        total++;
        const lib = parsePhoneNumberFromString(text, { defaultCountry: region, extract: false });
        if (lib?.isValid() && isE164(lib.number)) {
          expect(normalizeNumber(text, region)).toBe(lib.number);
          if (lib.number === number) same++;
        } else {
          expect(attempt(text, region), 'libphonenumber refuses it').toBeUndefined();
        }
      }),
      { numRuns: runs(5000) },
    );
    // Almost every generated text reads back as the number it was made from. Not all: libphonenumber's own
    // national format of a few numbers reads as another one (Gabon's '07 60 39 42' for +241 7603942 is +241 07603942).
    expect(same).toBeGreaterThan(0.95 * total);
  });
});

describe('normalizeNumber is idempotent', () => {
  const region = fc.option(fc.constantFrom(...REGIONS), { nil: undefined });

  it('on valid numbers in any form: its E.164 result normalises to itself, with or without a region', () => {
    fc.assert(
      fc.property(WRITTEN, region, ({ text, region: r }, other) => {
        const n = normalizeNumber(text, r);
        expect(normalizeNumber(n)).toBe(n);
        expect(normalizeNumber(n, r)).toBe(n);
        expect(normalizeNumber(n, other)).toBe(n); // E.164 carries its country code: any default region
      }),
      { numRuns: runs(3000) },
    );
  });

  it('on arbitrary text: what it accepts normalises to itself, what it refuses is invalid_number', () => {
    const phoneish = fc.stringMatching(/^\+?[0-9 ()\-./]{0,22}$/);
    const digits = fc.tuple(fc.constantFrom('', '+', '00', '0', '+1', '+44 ', '(0'), fc.bigInt({ min: 0n, max: 10n ** 15n })).map(([p, d]) => `${p}${d}`);
    // A valid number in some form with a digit changed, dropped or doubled: near the edge of what is a number.
    const edited = fc.tuple(WRITTEN, fc.nat(), fc.integer({ min: 0, max: 9 }), fc.constantFrom('change', 'drop', 'double', 'none')).map(([w, i, d, how]) => {
      const at = [...w.text.matchAll(/\d/g)].map((m) => m.index!);
      const k = at[i % at.length]!;
      const t = w.text;
      return how === 'change' ? t.slice(0, k) + d + t.slice(k + 1) : how === 'drop' ? t.slice(0, k) + t.slice(k + 1) : how === 'double' ? t.slice(0, k) + t[k] + t.slice(k) : t;
    });
    const text = fc.oneof(edited, phoneish, digits, fc.string({ maxLength: 30 }), fc.string({ unit: 'grapheme', maxLength: 20 }));
    let accepted = 0;
    fc.assert(
      fc.property(text, region, (x, r) => {
        const n = attempt(x, r);
        if (n === undefined) return;
        accepted++;
        expect(isE164(n)).toBe(true);
        expect(normalizeNumber(n)).toBe(n);
        expect(normalizeNumber(n, r)).toBe(n);
        expect(attempt(x, r)).toBe(n); // the same answer twice
      }),
      { numRuns: runs(5000, 1000) },
    );
    // Many of the inputs are numbers: the property was exercised. The draw is unseeded, so the bound leaves room
    // (a run of 1000 once accepted exactly 50, which a bound of 1 in 20 failed).
    expect(accepted).toBeGreaterThan(runs(5000, 1000) / 50);
  });
});
