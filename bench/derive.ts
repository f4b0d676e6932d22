/**
 * Ratios between designs, formed only from marks of one run (the machines
 * are shared and noisy: a ratio of two numbers measured minutes apart on
 * the same machine says more than either number alone).
 */
import type { BandwidthMark, BuildMark, CryptoMark, HttpMark, Mark, Ratio } from './results.ts';

function by<T extends Mark>(marks: readonly Mark[], section: T['section']): T[] {
  return marks.filter((m): m is T => m.section === section);
}

export function deriveRatios(marks: readonly Mark[]): Ratio[] {
  const out: Ratio[] = [];
  const push = (section: Ratio['section'], name: string, num: number | undefined, den: number | undefined, formula: string) => {
    if (num === undefined || den === undefined || !Number.isFinite(num) || !Number.isFinite(den) || den === 0) return;
    out.push({ section, name, value: num / den, formula });
  };

  // HTTP: throughput and server CPU per lookup, per request shape.
  const http = by<HttpMark>(marks, 'http').filter((m) => m.phase === 'throughput');
  for (const shape of [...new Set(http.map((m) => m.shape))]) {
    if (shape === 'bucket') continue;
    const get = (d: string) => http.find((m) => m.shape === shape && m.design === d);
    const plain = get('plain');
    const hashed = get('hashed');
    const blinded = get('blinded');
    // Server CPU per lookup first: it counts the server's work whatever else ran on the
    // machine meanwhile; lookups/s also depends on how much CPU the server was given.
    push('http', `HTTP ${shape}: blinded / plain server CPU per lookup`, blinded?.serverCpuUsPerLookup, plain?.serverCpuUsPerLookup, `server CPU µs/lookup, ${blinded?.name} ÷ ${plain?.name}`);
    push('http', `HTTP ${shape}: blinded / hashed server CPU per lookup`, blinded?.serverCpuUsPerLookup, hashed?.serverCpuUsPerLookup, `server CPU µs/lookup, ${blinded?.name} ÷ ${hashed?.name}`);
    push('http', `HTTP ${shape}: plain / blinded lookups per second`, plain?.lookupsPerSec, blinded?.lookupsPerSec, `${plain?.name} ÷ ${blinded?.name}`);
    push('http', `HTTP ${shape}: hashed / blinded lookups per second`, hashed?.lookupsPerSec, blinded?.lookupsPerSec, `${hashed?.name} ÷ ${blinded?.name}`);
  }

  // Crypto: the proof's cost, and a tag against a hash.
  const crypto = by<CryptoMark>(marks, 'crypto');
  const find = (name: string) => crypto.find((m) => m.name === name);
  for (const n of [...new Set(crypto.filter((m) => m.name.startsWith('server BlindEvaluate')).map((m) => m.batch))]) {
    const v = find(`server BlindEvaluate (voprf, batch ${n})`);
    const o = find(`server BlindEvaluate (oprf, batch ${n})`);
    push('crypto', `BlindEvaluate batch ${n}: voprf / oprf time per element (the proof)`, v?.usPerItem, o?.usPerItem, `${v?.name} ÷ ${o?.name}`);
  }
  for (const n of [...new Set(crypto.filter((m) => m.name.startsWith('client finalize')).map((m) => m.batch))]) {
    const v = find(`client finalize (voprf, batch ${n}, proof verified)`);
    const o = find(`client finalize (oprf, batch ${n})`);
    push('crypto', `finalize batch ${n}: voprf / oprf time per number (proof verification)`, v?.usPerItem, o?.usPerItem, `${v?.name} ÷ ${o?.name}`);
  }
  const evaluate = find('server Evaluate: directory build (voprf)');
  const sha = find('hashed: SHA-256 of a number');
  push('crypto', 'cost of one OPRF tag / one SHA-256 per number (what a guess costs, key in hand)', evaluate?.usPerItem, sha?.usPerItem, `${evaluate?.name} ÷ ${sha?.name}`);

  // Bandwidth: blinded per b against plain, same lookups.
  const bw = by<BandwidthMark>(marks, 'bandwidth');
  for (const m of bw.filter((x) => x.design === 'blinded')) {
    const plain = bw.find((x) => x.design === 'plain' && x.lookups === m.lookups);
    push('bandwidth', `wire bytes per lookup, ${m.lookups === 1 ? 'single lookup' : `sync of ${m.lookups}`}: blinded b=${m.bucketBits} / plain`, m.wireBytesPerLookup, plain?.wireBytesPerLookup, `${m.name} ÷ ${plain?.name}`);
  }

  // Build: blinded epoch build against opening plain, same directory.
  const build = by<BuildMark>(marks, 'build');
  for (const m of build.filter((x) => x.design === 'blinded' && !x.name.endsWith('(1 thread)'))) {
    const plain = build.find((x) => x.design === 'plain' && x.numbers === m.numbers);
    push('build', `open time at ${m.numbers.toLocaleString('en-US')} numbers: blinded / plain`, m.seconds, plain?.seconds, `${m.name} ÷ ${plain?.name}`);
  }
  return out;
}
