import { describe, expect, it } from 'vitest';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { ErrorCode, PcdError, isPcdError } from '../shared/errors.ts';
import {
  MAX_NUMBER_INPUT_LENGTH,
  e164ToKey,
  isE164,
  keyToE164,
  normalizeNumber,
  normalizeRegion,
  regionOf,
  type E164,
} from '../shared/e164.ts';

/** Runs fn, expects a PcdError, returns it. */
function pcdError(fn: () => unknown): PcdError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PcdError);
    return e as PcdError;
  }
  throw new Error('expected a PcdError, nothing was thrown');
}

describe('normalizeNumber: accepted forms', () => {
  const cases: [input: string, region: string | undefined, expected: string][] = [
    // US
    ['+14155550123', undefined, '+14155550123'],
    ['+1 415-555-0123', undefined, '+14155550123'],
    ['(415) 555-0123', 'US', '+14155550123'],
    ['415.555.0123', 'US', '+14155550123'],
    ['1 (415) 555-0123', 'US', '+14155550123'],
    ['011 44 20 7946 0018', 'US', '+442079460018'],
    ['+1 (415) 555-0123', 'GB', '+14155550123'], // '+' wins over the default region
    // GB
    ['+44 20 7946 0018', undefined, '+442079460018'],
    ['+44 (0)20 7946 0018', undefined, '+442079460018'],
    ['020 7946 0018', 'GB', '+442079460018'],
    ['07911 123456', 'GB', '+447911123456'],
    ['0044 20 7946 0018', 'GB', '+442079460018'],
    ['0044 20 7946 0018', undefined, '+442079460018'], // 00 read as the international prefix
    // DE
    ['+49 30 1234567', undefined, '+49301234567'],
    ['030 1234567', 'DE', '+49301234567'],
    ['01512 3456789', 'DE', '+4915123456789'],
    ['00 49 30 1234567', 'FR', '+49301234567'],
    // FR
    ['+33 1 23 45 67 89', undefined, '+33123456789'],
    ['01 23 45 67 89', 'FR', '+33123456789'],
    ['06 12 34 56 78', 'FR', '+33612345678'],
    // IN
    ['+91 98765 43210', undefined, '+919876543210'],
    ['098765 43210', 'IN', '+919876543210'],
    ['98765-43210', 'IN', '+919876543210'],
    // BR
    ['+55 11 91234-5678', undefined, '+5511912345678'],
    ['(11) 91234-5678', 'BR', '+5511912345678'],
    // JP
    ['+81 3-1234-5678', undefined, '+81312345678'],
    ['03-1234-5678', 'JP', '+81312345678'],
    ['090-1234-5678', 'JP', '+819012345678'],
    // NG, full-width, whitespace, lower-case region
    ['0803 123 4567', 'NG', '+2348031234567'],
    ['＋１ ４１５ ５５５ ０１２３', undefined, '+14155550123'],
    ['  +1 415 555 0123\n', undefined, '+14155550123'],
    ['(415) 555-0123', 'us', '+14155550123'],
  ];

  it.each(cases)('%j (region %s) -> %s', (input, region, expected) => {
    const n = normalizeNumber(input, region);
    expect(n).toBe(expected);
    expect(isE164(n)).toBe(true);
    expect(parsePhoneNumberFromString(n)?.isValid()).toBe(true);
    // canonical: normalising the output changes nothing
    expect(normalizeNumber(n)).toBe(n);
  });

  it('accepts input of exactly MAX_NUMBER_INPUT_LENGTH characters', () => {
    const input = '+1 415 555 0123'.padEnd(MAX_NUMBER_INPUT_LENGTH, ' ');
    expect(input).toHaveLength(64);
    expect(normalizeNumber(input)).toBe('+14155550123');
  });
});

describe('normalizeNumber: rejections say what is wrong', () => {
  const cases: [input: string, region: string | undefined, message: string][] = [
    ['12', undefined, "'12' is not a phone number: too short"],
    ['12', 'US', "'12' is not a phone number: too short"],
    ['+1', undefined, "'+1' is not a phone number: too short"],
    ['+999123', undefined, "'+999123' has an unknown country calling code"],
    ['+0 415 555 0123', undefined, "'+0 415 555 0123' has an unknown country calling code"],
    ['+1 415 555', undefined, "'+1 415 555' is too short for US"],
    ['555 0123', 'US', "'555 0123' is too short for US"],
    ['+33 1 23 45 67 8', undefined, "'+33 1 23 45 67 8' is too short for FR"],
    ['+1 415 555 01234', undefined, "'+1 415 555 01234' is too long for US"],
    ['+49 1512 345678901234', undefined, "'+49 1512 345678901234' is too long for DE"],
    ['+44 1234 5678', undefined, "'+44 1234 5678' has a length no number in GB has (8 digits after +44)"],
    [
      '(415) 555-0123',
      undefined,
      "'(415) 555-0123' has no country code and no default region was given",
    ],
    ['abc', undefined, "'abc' contains no digits"],
    ['', undefined, "'' contains no digits"],
    ['+1 200 555 0123', undefined, "'+1 200 555 0123' is not a valid number in US"],
    ['+44 20 7946 001', undefined, "'+44 20 7946 001' is not a valid number in GB"],
    ['+81 00 1234 5678', undefined, "'+81 00 1234 5678' is not a valid number in JP"],
    ['+882 123', undefined, "'+882 123' is too short for the +882 plan"],
    ['+1 800 FLOWERS', undefined, "'+1 800 FLOWERS' is not a phone number: unexpected character 'F'"],
    ['(415) 555-0123 call me', 'US', "'(415) 555-0123 call me' is not a phone number: unexpected character 'c'"],
    ['+1\u0000415 555 0123', undefined, "'+1\\u0000415 555 0123' is not a phone number: unexpected character '\\u0000'"],
    ['++14155550123', undefined, "'++14155550123' is not a phone number: its '+' and punctuation are misplaced"],
    [
      '+1 415 555 0123 ext 5',
      undefined,
      "'+1 415 555 0123 ext 5' has an extension (5); only the number without it can be looked up",
    ],
    ['+49 30 1234 56789012', undefined, "'+49 30 1234 56789012' has 16 digits; E.164 allows at most 15"],
    ['+43 1110', undefined, "'+43 1110' has 6 digits; pcd accepts numbers of at least 7"],
  ];

  it.each(cases)('%j (region %s)', (input, region, message) => {
    const e = pcdError(() => normalizeNumber(input, region));
    expect(e.code).toBe(ErrorCode.InvalidNumber);
    expect(e.status).toBe(400);
    expect(e.message).toBe(message);
    expect(isPcdError(e, ErrorCode.InvalidNumber)).toBe(true);
  });

  it('refuses input longer than 64 characters without reading it', () => {
    const input = '+1 415 555 0123' + ' '.repeat(50);
    expect(input.length).toBe(65);
    const e = pcdError(() => normalizeNumber(input));
    expect(e.code).toBe(ErrorCode.InvalidNumber);
    expect(e.message).toBe("'+1 415 555 0123     …' is 65 characters long; a phone number has at most 64");
  });

  it('refuses non-strings (JSON bodies are untyped)', () => {
    const e = pcdError(() => normalizeNumber(14155550123 as unknown as string));
    expect(e.code).toBe(ErrorCode.InvalidNumber);
    expect(e.message).toBe('a phone number must be a string, not number');
  });

  it('an unknown default region is invalid_field, whatever the number', () => {
    for (const region of ['XX', 'USA', '', '001']) {
      const e = pcdError(() => normalizeNumber('+14155550123', region));
      expect(e.code).toBe(ErrorCode.InvalidField);
      expect(e.message).toBe(
        `unknown default region '${region}': expected an ISO 3166-1 alpha-2 code such as 'US'`,
      );
    }
  });

  it('normalizeRegion upper-cases known codes and rejects others', () => {
    expect(normalizeRegion('gb')).toBe('GB');
    expect(pcdError(() => normalizeRegion('EU')).code).toBe(ErrorCode.InvalidField);
  });
});

describe('isE164', () => {
  it('is a cheap syntactic check', () => {
    for (const s of ['+14155550123', '+1234567', '+123456789012345']) expect(isE164(s)).toBe(true);
    for (const s of ['14155550123', '+0123456789', '+123456', '+1234567890123456', '+1 415', ' +14155550123', '+1415555012a', ''])
      expect(isE164(s)).toBe(false);
    // syntax only: +1 200 … is not a valid number but is E.164-shaped
    expect(isE164('+12005550123')).toBe(true);
  });
});

describe('e164ToKey / keyToE164', () => {
  const numbers = [
    '+14155550123',
    '+442079460018',
    '+4915123456789',
    '+33612345678',
    '+919876543210',
    '+5511912345678',
    '+819012345678',
    '+2348031234567',
    '+1234567', // shortest
    '+999999999999999', // longest, 15 digits, still < 2^53
  ] as E164[];

  it('round-trips exactly', () => {
    for (const n of numbers) {
      const key = e164ToKey(n);
      expect(Number.isSafeInteger(key)).toBe(true);
      expect(String(key)).toBe(n.slice(1));
      expect(keyToE164(key)).toBe(n);
    }
  });

  it('round-trips every normalised number', () => {
    for (const input of ['(415) 555-0123', '07911 123456', '090-1234-5678']) {
      const region = { '(415) 555-0123': 'US', '07911 123456': 'GB', '090-1234-5678': 'JP' }[input];
      const n = normalizeNumber(input, region);
      expect(keyToE164(e164ToKey(n))).toBe(n);
    }
  });

  it('is injective: distinct numbers, distinct keys', () => {
    const keys = new Set(numbers.map(e164ToKey));
    expect(keys.size).toBe(numbers.length);
  });

  it('rejects what is not an E.164 key', () => {
    for (const key of [0, 123456, 1e15, 12345678.5, -14155550123, Number.NaN, Number.MAX_SAFE_INTEGER]) {
      expect(pcdError(() => keyToE164(key)).code).toBe(ErrorCode.InvalidNumber);
    }
    expect(pcdError(() => e164ToKey('4155550123' as E164)).code).toBe(ErrorCode.InvalidNumber);
  });
});

describe('regionOf', () => {
  it('names the region libphonenumber assigns', () => {
    expect(regionOf(normalizeNumber('+14155550123'))).toBe('US');
    expect(regionOf(normalizeNumber('+1 416 555 0123'))).toBe('CA');
    expect(regionOf(normalizeNumber('+442079460018'))).toBe('GB');
    expect(regionOf(normalizeNumber('+7 701 123 4567'))).toBe('KZ');
    expect(regionOf(normalizeNumber('+7 999 123 45 67'))).toBe('RU');
    expect(regionOf(normalizeNumber('+819012345678'))).toBe('JP');
  });

  it('is undefined for non-geographic and invalid numbers', () => {
    expect(regionOf(normalizeNumber('+800 1234 5678'))).toBeUndefined();
    expect(regionOf('+12005550123' as E164)).toBeUndefined();
  });
});
