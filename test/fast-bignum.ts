/**
 * The client's blind RSA (client/tokens.ts through @cloudflare/privacypass-ts
 * and @cloudflare/blindrsa-ts) computes on sjcl's bignums, whose `mod` and
 * `inverseMod` go bit by bit: ~35 ms of CPU per token, most of the
 * workload simulations' time. The setup file (test/setup-crypto.ts) swaps
 * those two, `mulmod` and `powermod` for exact BigInt ones in this process, except
 * under PCD_TEST_FULL=1: the same numbers out (a wrong one is a token the
 * server refuses), the library's own code around them unchanged.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

interface Bn {
  limbs: number[];
  toString(): string;
  greaterEquals(that: Bn | number): number;
  trim(): Bn;
}
interface Sjcl {
  bn: { new (it: Bn | number | string): Bn; prototype: Record<string, unknown> };
  exception: { invalid: new (message: string) => Error };
}

const big = (x: Bn): bigint => BigInt(x.toString());

/** Swaps sjcl's mod, mulmod, powermod and inverseMod (the copy blindrsa-ts loads) for BigInt ones; idempotent. */
export async function useFastBignum(): Promise<void> {
  const require = createRequire(import.meta.url);
  const entry = require.resolve('@cloudflare/blindrsa-ts');
  const file = entry.replace(/index\.js$/, 'sjcl/index.js');
  const sjcl = ((await import(pathToFileURL(file).href)) as { default: Sjcl }).default;
  const proto = sjcl.bn.prototype;
  if (proto.__bigint) return;
  const bn = (x: bigint): Bn => new sjcl.bn('0x' + x.toString(16)).trim();
  const negative = (x: Bn) => !x.greaterEquals(0);
  const original = { mod: proto.mod as (this: Bn, that: Bn | number) => Bn, inverseMod: proto.inverseMod as (this: Bn, p: Bn) => Bn, powermod: proto.powermod };
  proto.mod = function (this: Bn, that: Bn | number): Bn {
    const n = typeof that === 'number' ? BigInt(that) : big(new sjcl.bn(that));
    if (negative(this) || n <= 0n) return original.mod.call(this, that);
    return bn(big(new sjcl.bn(this)) % n);
  };
  proto.mulmod = function (this: Bn, that: Bn, N: Bn): Bn {
    const n = big(new sjcl.bn(N));
    if (negative(this) || negative(that) || n <= 0n) return original.mod.call((proto.mul as (this: Bn, t: Bn) => Bn).call(original.mod.call(this, N), original.mod.call(that, N)), N);
    return bn(((big(new sjcl.bn(this)) % n) * (big(new sjcl.bn(that)) % n)) % n);
  };
  proto.powermod = function (this: Bn, x: Bn | number, N: Bn): Bn {
    const n = big(new sjcl.bn(N));
    let e = typeof x === 'number' ? BigInt(x) : big(new sjcl.bn(x));
    if (negative(this) || n <= 0n || e < 0n) return (original.powermod as (this: Bn, x: Bn | number, N: Bn) => Bn).call(this, x, N);
    let b = big(new sjcl.bn(this)) % n;
    let out = 1n % n;
    for (; e > 0n; e >>= 1n) {
      if (e & 1n) out = (out * b) % n;
      b = (b * b) % n;
    }
    return bn(out);
  };
  proto.inverseMod = function (this: Bn, p: Bn): Bn {
    const m = big(new sjcl.bn(p));
    const x = big(new sjcl.bn(this));
    if (m % 2n === 0n || negative(this)) return original.inverseMod.call(this, p); // its own errors
    // Extended Euclid: a * x = r (mod m) along the way.
    let [r0, r1] = [m, x % m];
    let [a0, a1] = [0n, 1n];
    while (r1 !== 0n) {
      const q = r0 / r1;
      [r0, r1] = [r1, r0 - q * r1];
      [a0, a1] = [a1, a0 - q * a1];
    }
    if (r0 !== 1n) throw new sjcl.exception.invalid('inverseMod: p and x must be relatively prime');
    return bn(((a0 % m) + m) % m);
  };
  proto.__bigint = true;
}
