/**
 * The forms of a number the scan (audit/scan/scan.ts) searches for, and the
 * blinded audit's linked rows (audit/designs/blinded.ts) look for in its
 * logs. Per number (E.164 `x`):
 *
 * - text: `x` in UTF-8 and UTF-16LE, its digits without '+', and (optional,
 *   default on, when 7 digits or more) its national significant number;
 *   a national-form hit right after a digit is the tail of another,
 *   longer number and does not count;
 * - SHA-256, SHA-1 and MD5 of utf8(x), each as raw bytes, lower- and
 *   upper-case hex, base64 and base64url (JSON bodies and log lines carry
 *   bytes as base64);
 * - for every epoch whose secret key is still on disk: its tag (the first
 *   tagBytes bytes of the RFC 9497 output) raw and hex, and the full 64-byte
 *   output raw, hex (both cases) and base64. Epochs whose key is destroyed
 *   cannot be searched, by anyone: that is what destroying it is for.
 */
import crypto from 'node:crypto';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import type { E164 } from '../../shared/e164.ts';
import { evaluate } from '../../shared/noble.ts';
import { MODES, type OprfMode } from '../../shared/suite.ts';
import type { Boundary } from './search.ts';

export interface NumberForm {
  form: string;
  bytes: Uint8Array;
  boundary: Boundary;
}

export interface TagEpoch {
  epoch: number;
  mode: OprfMode;
  tagBytes: number;
  secretKey: Uint8Array;
}

function encodings(prefix: string, raw: Uint8Array): NumberForm[] {
  const b = Buffer.from(raw);
  const hex = b.toString('hex');
  return [
    { form: `${prefix}-raw`, bytes: b, boundary: 'none' },
    { form: `${prefix}-hex`, bytes: Buffer.from(hex, 'latin1'), boundary: 'none' },
    { form: `${prefix}-HEX`, bytes: Buffer.from(hex.toUpperCase(), 'latin1'), boundary: 'none' },
    // Without padding: the same bytes whether a writer padded or not.
    { form: `${prefix}-base64`, bytes: Buffer.from(b.toString('base64').replace(/=+$/, ''), 'latin1'), boundary: 'none' },
    { form: `${prefix}-base64url`, bytes: Buffer.from(b.toString('base64url'), 'latin1'), boundary: 'none' },
  ];
}

/** Every form of `number` the scan searches; identical byte strings are kept once (first form named). */
function f64le(x: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(x);
  return b;
}

export function numberForms(number: E164, options: { national?: boolean; epochs?: readonly TagEpoch[] } = {}): NumberForm[] {
  const utf8 = Buffer.from(number, 'utf8');
  const forms: NumberForm[] = [
    { form: 'e164', bytes: utf8, boundary: 'none' },
    { form: 'e164-utf16le', bytes: Buffer.from(number, 'utf16le'), boundary: 'none' },
    { form: 'digits', bytes: Buffer.from(number.slice(1), 'latin1'), boundary: 'none' },
    // The digits as a little-endian float64: the directory snapshot's keys (server/directory-snapshot.ts).
    { form: 'digits-f64le', bytes: f64le(Number(number.slice(1))), boundary: 'none' },
  ];
  if (options.national !== false) {
    const national = parsePhoneNumberFromString(number)?.nationalNumber;
    if (national && national.length >= 7) forms.push({ form: 'national', bytes: Buffer.from(national, 'latin1'), boundary: 'digit-before' });
  }
  for (const alg of ['sha256', 'sha1', 'md5'] as const) forms.push(...encodings(alg, crypto.createHash(alg).update(utf8).digest()));
  for (const e of options.epochs ?? []) {
    const output = evaluate(e.mode, e.secretKey, utf8ToBytes(number));
    const tag = output.subarray(0, e.tagBytes);
    forms.push({ form: `tag-e${e.epoch}-raw`, bytes: Buffer.from(tag), boundary: 'none' });
    forms.push({ form: `tag-e${e.epoch}-hex`, bytes: Buffer.from(Buffer.from(tag).toString('hex'), 'latin1'), boundary: 'none' });
    forms.push(...encodings(`output-e${e.epoch}`, output).filter((f) => !f.form.endsWith('base64url')));
  }
  const seen = new Set<string>();
  return forms.filter((f) => {
    const k = Buffer.from(f.bytes).toString('hex');
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The order forms are listed in (tag and output forms as `-eN-`). */
const FORM_ORDER = [
  'e164',
  'e164-utf16le',
  'digits',
  'digits-f64le',
  'national',
  ...['sha256', 'sha1', 'md5'].flatMap((a) => ['raw', 'hex', 'HEX', 'base64', 'base64url'].map((e) => `${a}-${e}`)),
  'tag-eN-raw',
  'tag-eN-hex',
  ...['raw', 'hex', 'HEX', 'base64'].map((e) => `output-eN-${e}`),
];

/** A form's place in {@link FORM_ORDER}; unknown forms last. */
export function formRank(form: string): number {
  const i = FORM_ORDER.indexOf(form);
  return i < 0 ? FORM_ORDER.length : i;
}

/**
 * The epochs whose tags can be derived: those with a key in `keys` and a
 * mode this build knows (an unknown mode is warned about and skipped). The
 * secret keys are the caller's, not copied.
 */
export function tagEpochsOf(
  epochs: readonly { epoch: number; mode: string; tagBytes: number }[],
  keys: ReadonlyMap<number, Uint8Array>,
  warnings: string[],
): TagEpoch[] {
  const out: TagEpoch[] = [];
  for (const e of epochs) {
    const sk = keys.get(e.epoch);
    if (!sk) continue;
    if (!(MODES as readonly string[]).includes(e.mode)) {
      warnings.push(`epoch ${e.epoch} has unknown mode '${e.mode}': its tags were not searched`);
      continue;
    }
    out.push({ epoch: e.epoch, mode: e.mode as OprfMode, tagBytes: e.tagBytes, secretKey: sk });
  }
  return out;
}
