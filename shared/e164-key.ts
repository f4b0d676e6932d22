/**
 * The syntax of a canonical E.164 number and its integer key, apart from
 * shared/e164.ts (which normalises what a person typed, on libphonenumber-js
 * and its metadata): this is all the server's worker threads need
 * (server/blinded/worker.ts), and each of them starts without loading
 * libphonenumber. shared/e164.ts re-exports it; import from there.
 */
import { ErrorCode, PcdError } from './errors.ts';

/** A canonical E.164 number: '+', then 7 to 15 digits, the first not 0. */
export type E164 = string & { readonly __e164: unique symbol };

/** E.164 allows at most 15 digits (country calling code included). */
export const MAX_E164_DIGITS = 15;
/** {@link isE164} wants at least 7 digits; a handful of valid 6-digit numbers (AT, DE pagers) are refused. */
export const MIN_E164_DIGITS = 7;

const E164_RE = /^\+[1-9]\d{6,14}$/;

/** Cheap syntactic check ('+', 7..15 digits, no leading 0); says nothing about validity. */
export function isE164(s: string): s is E164 {
  return typeof s === 'string' && E164_RE.test(s);
}

/** The number's digits as an integer: exact, since 15 digits < 2^53. Injective on E.164. */
export function e164ToKey(n: E164): number {
  if (!isE164(n)) throw new PcdError(ErrorCode.InvalidNumber, `${quote(String(n))} is not an E.164 number`);
  return Number(n.slice(1));
}

/** Inverse of {@link e164ToKey}. */
export function keyToE164(key: number): E164 {
  if (!Number.isSafeInteger(key) || key < 10 ** (MIN_E164_DIGITS - 1) || key >= 10 ** MAX_E164_DIGITS) {
    throw new PcdError(ErrorCode.InvalidNumber, `${String(key)} is not an E.164 key: expected an integer of ${MIN_E164_DIGITS} to ${MAX_E164_DIGITS} digits`);
  }
  return ('+' + key.toString()) as E164;
}

/** Single-quoted, control characters made visible. */
export function quote(s: string): string {
  return `'${s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}'`;
}
