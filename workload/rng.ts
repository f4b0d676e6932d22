/**
 * Deterministic randomness for the workload: xoshiro128** streams whose
 * state is SHA-256(seed, label, index): synth/'s generator and
 * construction, under the workload's own domain label. No Math.random anywhere in
 * workload/: the same flags give the same population and the same 30 days,
 * byte for byte.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { SynthRng as SeedRng } from '../synth/rng.ts';

/** The directory generator's xoshiro128** (synth/), with the distributions the workload draws from. */
export class WorkloadRng extends SeedRng {
  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.float();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.float());
  }

  /** Log-normal with the given median and sigma of the underlying normal. */
  logNormal(median: number, sigma: number): number {
    return median * Math.exp(sigma * this.normal());
  }

  /** Exponential with mean `mean`. */
  exponential(mean: number): number {
    return -Math.log(1 - this.float()) * mean;
  }

  chance(p: number): boolean {
    return this.float() < p;
  }
}

/** An independent stream for (seed, label, index). */
export function stream(seed: string, label: string, index = 0): WorkloadRng {
  return new WorkloadRng(sha256(utf8ToBytes(`pcd/workload/v1\u0000${seed}\u0000${label}\u0000${index}`)));
}

export function shuffle<T>(list: T[], rng: WorkloadRng): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = list[i]!;
    list[i] = list[j]!;
    list[j] = t;
  }
  return list;
}

/** A uniform value in [0, 1) from two integers and a seed word, symmetric in (a, b): a tie's strength is one draw for both ends. */
export function pairUniform(seedWord: number, a: number, b: number): number {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  let h = (seedWord ^ Math.imul(lo + 1, 0x9e3779b1) ^ Math.imul(hi + 1, 0x85ebca77)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return (h + 0.5) / 0x1_0000_0000;
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9): for pair-level log-normals. */
export function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0]! * q + c[1]!) * q + c[2]!) * q + c[3]!) * q + c[4]!) * q + c[5]!) / ((((d[0]! * q + d[1]!) * q + d[2]!) * q + d[3]!) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0]! * r + a[1]!) * r + a[2]!) * r + a[3]!) * r + a[4]!) * r + a[5]!) * q) / (((((b[0]! * r + b[1]!) * r + b[2]!) * r + b[3]!) * r + b[4]!) * r + 1);
}

/** The first 32 bits of SHA-256(seed): a seed word for {@link pairUniform}. */
export function seedWord(seed: string, label: string): number {
  const h = sha256(utf8ToBytes(`pcd/workload/v1\u0000${seed}\u0000${label}`));
  return ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
}
