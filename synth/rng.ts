/**
 * The directory generator's randomness: xoshiro128** streams seeded from
 * SHA-256(seed, stream label, index), and the shuffle it draws with. No
 * Math.random: the same seed gives the same streams on every machine.
 * workload/rng.ts extends {@link SynthRng} with its own distributions.
 */

import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';

/** xoshiro128** seeded from 16 bytes; exported for the workload generator (workload/rng.ts), which adds its distributions. */
export class SynthRng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(state: Uint8Array) {
    const word = (i: number) =>
      (state[i]! | (state[i + 1]! << 8) | (state[i + 2]! << 16) | (state[i + 3]! << 24)) >>> 0;
    this.a = word(0);
    this.b = word(4);
    this.c = word(8);
    this.d = word(12);
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1; // the one state xoshiro must avoid
  }

  /** Uniform 32-bit unsigned integer. */
  u32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform integer in [0, n), unbiased (rejection) for n <= 2^32; above, from 53 random bits. */
  int(n: number): number {
    if (n <= 1) return 0;
    if (n > 0x1_0000_0000) return Math.floor(this.float() * n);
    const limit = 0x1_0000_0000 - (0x1_0000_0000 % n);
    for (;;) {
      const x = this.u32();
      if (x < limit) return x % n;
    }
  }

  /** Uniform in [0, 1) with 53 random bits. */
  float(): number {
    return ((this.u32() >>> 5) * 0x400_0000 + (this.u32() >>> 6)) / 0x20_0000_0000_0000;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** An independent stream for (seed, label, index). */
export function synthStream(seed: string, label: string, index: number): SynthRng {
  return new SynthRng(sha256(utf8ToBytes(`pcd/seed/v1\u0000${seed}\u0000${label}\u0000${index}`)));
}

/** Fisher-Yates, in place. */
export function synthShuffle<T>(list: T[], rng: SynthRng): void {
  for (let i = list.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = list[i]!;
    list[i] = list[j]!;
    list[j] = t;
  }
}
