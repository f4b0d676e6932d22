/**
 * 10,000 randomized cross-checks between the noble (reference) and sodium
 * backends: for a random key (a new one every 100 checks), blind and input,
 * sodium's whole round (Blind with that blind, BlindEvaluate, Finalize) and
 * its Evaluate must give noble's Evaluate output byte for byte, in batches of
 * ten. Every tenth batch also runs noble's whole round on the same values
 * and compares every message: blinded elements, evaluated elements,
 * the batch proof (same nonce), and each side's Finalize of the other's reply.
 */
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';
import { expect, it } from 'vitest';
import type { OprfMode } from '../shared/suite.ts';
import { bothBackends } from './backends.ts';

const CHECKS = 10_000;
const PER_KEY = 100;
/** Checks per batch (one proof each in voprf). */
const GROUP = 10;
/** Every this-many batches, noble runs the whole round too. */
const FULL_EVERY = 10;

/** A random E.164-looking or arbitrary input (numbers are what pcd feeds it; arbitrary bytes keep the check honest). */
function randomInput(i: number): Uint8Array {
  if (i % 4 === 3) return crypto.getRandomValues(new Uint8Array(1 + (i % 40)));
  const digits = 7 + (i % 9);
  let s = '+';
  for (let d = 0; d < digits; d++) s += String(crypto.getRandomValues(new Uint8Array(1))[0]! % 10);
  return utf8ToBytes(s);
}

const randomScalarBytes = (n = 48) => crypto.getRandomValues(new Uint8Array(n));

/** Registers the cross-check of one mode (one file per mode, so vitest runs them on both cores). */
export function crossCheck(mode: OprfMode): void {
  it(`noble and sodium agree byte for byte: ${CHECKS / 2} random (key, blind, input) triples in ${mode} mode`, async () => {
      const { noble, sodium } = await bothBackends();
      let checks = 0;
      let fullRounds = 0;
      let key = noble.generateKeyPair();
      for (let group = 0; group < CHECKS / 2 / GROUP; group++) {
        if ((group * GROUP) % PER_KEY === 0) key = group % 2 === 0 ? noble.generateKeyPair() : sodium.generateKeyPair();
        const inputs = Array.from({ length: GROUP }, (_, j) => randomInput(group * GROUP + j));
        const draws = inputs.map(() => randomScalarBytes());
        let next = 0;
        const blindRng = () => draws[next++]!.slice();

        // sodium's whole round on these (key, blind, input) triples, one batch
        const { blinds, blinded } = sodium.blindBatch(mode, inputs, blindRng);
        const nonceDraw = randomScalarBytes();
        const rb = sodium.blindEvaluateBatch(mode, key, blinded, () => nonceDraw.slice());
        const ob = sodium.finalizeBatch(mode, { inputs, blinds, blinded, evaluated: rb.evaluated }, key.publicKey, rb.proof);
        // ... must give noble's Evaluate output, as must sodium's Evaluate
        const reference = inputs.map((x) => bytesToHex(noble.evaluate(mode, key.secretKey, x)));
        expect(ob.map(bytesToHex)).toEqual(reference);
        expect(inputs.map((x) => bytesToHex(sodium.evaluate(mode, key.secretKey, x)))).toEqual(reference);
        checks += GROUP;

        if (group % FULL_EVERY !== 0) continue;
        // noble's whole round on the same values: every message equal, and each Finalize accepts the other's reply
        next = 0;
        const nb = noble.blindBatch(mode, inputs, blindRng);
        expect(nb.blinds.map(bytesToHex)).toEqual(blinds.map(bytesToHex));
        expect(nb.blinded.map(bytesToHex)).toEqual(blinded.map(bytesToHex));
        const ra = noble.blindEvaluateBatch(mode, key, blinded, () => nonceDraw.slice());
        expect(rb.evaluated.map(bytesToHex)).toEqual(ra.evaluated.map(bytesToHex));
        expect(rb.proof && bytesToHex(rb.proof)).toBe(ra.proof && bytesToHex(ra.proof));
        const oa = noble.finalizeBatch(mode, { inputs, blinds, blinded, evaluated: rb.evaluated }, key.publicKey, rb.proof);
        expect(oa.map(bytesToHex)).toEqual(reference);
        expect(sodium.finalizeBatch(mode, { inputs, blinds, blinded, evaluated: ra.evaluated }, key.publicKey, ra.proof).map(bytesToHex)).toEqual(reference);
        fullRounds += GROUP;
      }
      expect(checks).toBe(CHECKS / 2);
      expect(fullRounds).toBe(CHECKS / 2 / FULL_EVERY);
    }, 300_000);
}
