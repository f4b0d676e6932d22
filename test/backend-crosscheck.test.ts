/**
 * 10,000 randomized cross-checks between the noble (reference) and sodium
 * backends: the same key, blind and input must give the same bytes at every
 * step. Each check draws a fresh random input and blind; the key changes
 * every 100 checks. Every check compares Blind and Evaluate; every tenth
 * also runs the whole VOPRF round (BlindEvaluate with the same proof nonce,
 * and each side's Finalize of the other's reply), in batches of ten.
 */
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import type { OprfMode } from '../shared/suite.ts';
import { bothBackends } from './backends.ts';

const CHECKS = 10_000;
const PER_KEY = 100;
const ROUND_EVERY = 10;

/** A random E.164-looking or arbitrary input (numbers are what pcd feeds it; arbitrary bytes keep the check honest). */
function randomInput(i: number): Uint8Array {
  if (i % 4 === 3) return crypto.getRandomValues(new Uint8Array(1 + (i % 40)));
  const digits = 7 + (i % 9);
  let s = '+';
  for (let d = 0; d < digits; d++) s += String(crypto.getRandomValues(new Uint8Array(1))[0]! % 10);
  return utf8ToBytes(s);
}

const randomScalarBytes = (n = 48) => crypto.getRandomValues(new Uint8Array(n));

describe('noble and sodium agree byte for byte', () => {
  for (const mode of ['oprf', 'voprf'] as const satisfies readonly OprfMode[]) {
    it(`${CHECKS / 2} random (key, blind, input) triples in ${mode} mode`, async () => {
      const { noble, sodium } = await bothBackends();
      let rounds = 0;
      let key = noble.generateKeyPair();
      let pending: { input: Uint8Array; draw: Uint8Array }[] = [];
      for (let i = 0; i < CHECKS / 2; i++) {
        if (i % PER_KEY === 0) key = (i / PER_KEY) % 2 === 0 ? noble.generateKeyPair() : sodium.generateKeyPair();
        const input = randomInput(i);
        const draw = randomScalarBytes();
        const a = noble.blindBatch(mode, [input], () => draw.slice());
        const b = sodium.blindBatch(mode, [input], () => draw.slice());
        expect(bytesToHex(b.blinds[0]!)).toBe(bytesToHex(a.blinds[0]!));
        expect(bytesToHex(b.blinded[0]!)).toBe(bytesToHex(a.blinded[0]!));
        expect(bytesToHex(sodium.evaluate(mode, key.secretKey, input))).toBe(bytesToHex(noble.evaluate(mode, key.secretKey, input)));

        if (i % ROUND_EVERY === 0) pending.push({ input, draw });
        if (pending.length === 10 || (i + 1) % PER_KEY === 0) {
          if (pending.length > 0) {
            roundTrip(mode, key, pending);
            rounds += pending.length;
          }
          pending = [];
        }
      }
      expect(rounds).toBe(CHECKS / 2 / ROUND_EVERY);

      function roundTrip(m: OprfMode, k: typeof key, items: { input: Uint8Array; draw: Uint8Array }[]): void {
        const inputs = items.map((x) => x.input);
        const draws = items.map((x) => x.draw);
        let next = 0;
        const blindRng = () => draws[next++]!.slice();
        const { blinds, blinded } = sodium.blindBatch(m, inputs, blindRng);
        const nonceDraw = randomScalarBytes();
        const ra = noble.blindEvaluateBatch(m, k, blinded, () => nonceDraw.slice());
        const rb = sodium.blindEvaluateBatch(m, k, blinded, () => nonceDraw.slice());
        expect(rb.evaluated.map(bytesToHex)).toEqual(ra.evaluated.map(bytesToHex));
        expect(rb.proof && bytesToHex(rb.proof)).toBe(ra.proof && bytesToHex(ra.proof));
        const oa = noble.finalizeBatch(m, { inputs, blinds, blinded, evaluated: rb.evaluated }, k.publicKey, rb.proof);
        const ob = sodium.finalizeBatch(m, { inputs, blinds, blinded, evaluated: ra.evaluated }, k.publicKey, ra.proof);
        expect(ob.map(bytesToHex)).toEqual(oa.map(bytesToHex));
        expect(oa.map(bytesToHex)).toEqual(inputs.map((x) => bytesToHex(noble.evaluate(m, k.secretKey, x))));
      }
    }, 300_000);
  }
});
