/**
 * Reversing a hashed log: the hashed design's log holds SHA-256(E.164) per
 * lookup, and the numbering plan is small enough to enumerate. This section
 * takes a log of hashes (some of numbers inside a range, some outside),
 * enumerates the range, hashes every number and recovers the logged ones.
 * It is what `pcd audit --design hashed` does, measured: hashes per second on
 * one core, time per numbering-plan range, and projections (labelled) to
 * larger ranges at the measured rate.
 */
import crypto from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
import { hashNumber } from '../shared/designs/hashed.ts';
import type { E164 } from '../shared/e164.ts';
import type { Projection, ReverseMark } from './results.ts';
import { sink } from './stats.ts';

export interface ReverseRange {
  /** Fixed leading part, e.g. '+1415555'. */
  prefix: string;
  /** Digits enumerated after the prefix. */
  freeDigits: number;
  /** Enumerate at most this many numbers (the first ones of the range); the rest is projected. */
  limit?: number;
  /** Also time the project's own SHA-256 (@noble/hashes) on this range. */
  alsoNoble?: boolean;
}

export interface ReverseConfig {
  ranges: ReverseRange[];
  /** Hashes in the log: this many from inside each range, as many from elsewhere. */
  targetsPerRange: number;
  /** Ranges only projected, at the fastest measured rate. */
  projected: { label: string; size: number }[];
}

type Hasher = { name: string; digest: (data: Buffer) => Uint8Array };

const oneShot = (crypto as unknown as { hash?: (alg: string, data: Buffer, enc: 'buffer') => Buffer }).hash;

export const HASHERS: Record<'node' | 'noble', Hasher> = {
  node: {
    name: 'node:crypto SHA-256 (OpenSSL), 1 core',
    digest: oneShot ? (d) => oneShot('sha256', d, 'buffer') : (d) => crypto.createHash('sha256').update(d).digest(),
  },
  noble: { name: '@noble/hashes SHA-256 (the design\u2019s own), 1 core', digest: (d) => sha256(d) },
};

/** First 6 bytes as an integer: the probe key, confirmed on the full hash. */
function prefix48(h: Uint8Array): number {
  return h[0]! * 2 ** 40 + h[1]! * 2 ** 32 + ((h[2]! << 24) >>> 0) + (h[3]! << 16) + (h[4]! << 8) + h[5]!;
}

function pattern(r: ReverseRange): string {
  return r.prefix + 'X'.repeat(r.freeDigits);
}

/** A deterministic pseudo-random stream (xorshift) for picking targets. */
function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** The log to reverse: hashes of numbers inside the enumerated part of the range, and outside it. */
function makeLog(r: ReverseRange, enumerate: number, count: number): { hashes: Uint8Array[]; inRange: number } {
  const rand = xorshift(0x5eed + r.freeDigits);
  const hashes: Uint8Array[] = [];
  const seen = new Set<string>();
  while (seen.size < Math.min(count, enumerate)) {
    const k = Math.floor(rand() * enumerate);
    const n = (r.prefix + String(k).padStart(r.freeDigits, '0')) as E164;
    if (seen.has(n)) continue;
    seen.add(n);
    hashes.push(hashNumber(n));
  }
  const inRange = hashes.length;
  // Lookups of numbers in another area code: in the log, not in this range.
  for (let i = 0; i < count; i++) {
    const other = ('+1212' + String(Math.floor(rand() * 1e7)).padStart(7, '0')) as E164;
    hashes.push(hashNumber(other));
  }
  return { hashes, inRange };
}

/** Enumerates the first `count` numbers of the range with an in-place decimal odometer; returns what it recovered. */
function enumerate(r: ReverseRange, count: number, log: readonly Uint8Array[], hasher: Hasher): { recovered: number; seconds: number } {
  const index = new Map<number, Uint8Array[]>();
  for (const h of log) {
    const k = prefix48(h);
    const list = index.get(k);
    if (list) list.push(h);
    else index.set(k, [h]);
  }
  const buf = Buffer.from(r.prefix + '0'.repeat(r.freeDigits), 'latin1');
  const last = buf.length - 1;
  const first = r.prefix.length;
  const found = new Set<string>();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const h = hasher.digest(buf);
    const candidates = index.get(prefix48(h));
    if (candidates) {
      for (const c of candidates) if (Buffer.compare(Buffer.from(c), Buffer.from(h)) === 0) found.add(buf.toString('latin1'));
    }
    // odometer: +1 on the free digits
    let at = last;
    while (at >= first) {
      if (buf[at] === 0x39) {
        buf[at] = 0x30;
        at--;
      } else {
        buf[at]!++;
        break;
      }
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  sink(found.size);
  return { recovered: found.size, seconds };
}

export function runReverse(config: ReverseConfig, log: (line: string) => void): { marks: ReverseMark[]; projections: Projection[] } {
  const marks: ReverseMark[] = [];
  for (const r of config.ranges) {
    const size = 10 ** r.freeDigits;
    const count = Math.min(size, r.limit ?? size);
    const { hashes, inRange } = makeLog(r, count, config.targetsPerRange);
    const hashers = r.alsoNoble ? [HASHERS.node, HASHERS.noble] : [HASHERS.node];
    for (const hasher of hashers) {
      const { recovered, seconds } = enumerate(r, count, hashes, hasher);
      if (recovered !== inRange) throw new Error(`reverse ${pattern(r)}: recovered ${recovered} of the ${inRange} logged numbers in range`);
      const mark: ReverseMark = {
        section: 'reverse',
        name: `reverse ${pattern(r)}${count < size ? ` (first ${count.toLocaleString('en-US')})` : ''} [${hasher === HASHERS.node ? 'node:crypto' : '@noble/hashes'}]`,
        range: pattern(r),
        rangeSize: size,
        enumerated: count,
        seconds,
        hashesPerSec: count / seconds,
        hasher: hasher.name,
        targets: hashes.length,
        targetsInRange: inRange,
        recovered,
      };
      marks.push(mark);
      log(
        `  ${mark.name.padEnd(60)} ${count.toLocaleString('en-US')} hashes in ${seconds.toFixed(2)} s = ${Math.round(mark.hashesPerSec).toLocaleString('en-US')} hashes/s; recovered ${recovered}/${inRange}`,
      );
    }
  }

  // Projections at the fastest rate measured on the largest enumeration.
  const nodeMarks = marks.filter((m) => m.hasher === HASHERS.node.name);
  const basis = nodeMarks.reduce<ReverseMark | undefined>((best, m) => (!best || m.enumerated > best.enumerated ? m : best), undefined);
  const projections: Projection[] = [];
  if (basis) {
    const rows = [
      ...config.ranges
        .filter((r) => (r.limit ?? Infinity) < 10 ** r.freeDigits)
        .map((r) => ({ label: `${pattern(r)} (whole range)`, size: 10 ** r.freeDigits })),
      ...config.projected,
    ];
    projections.push({
      projection: true,
      section: 'reverse',
      name: 'time to reverse a hashed log, by range (projection)',
      basis: `${basis.name}: ${Math.round(basis.hashesPerSec).toLocaleString('en-US')} hashes/s on one core`,
      assumption:
        'time = range size / measured single-core rate; it divides by the cores (or GPUs) an attacker uses, so these are upper bounds for anyone with more than one core',
      rows: rows.map((r) => ({ label: r.label, x: r.size, value: r.size / basis.hashesPerSec, unit: 's' as const })),
    });
  }
  return { marks, projections };
}
