/**
 * Randomized cross-checks between the noble (reference) and sodium
 * backends, in batches of ten, for a key (RFC 9497 DeriveKeyPair, a new one
 * every 100 cases), blinds and inputs all drawn from one seed
 * (PCD_CROSSCHECK_SEED, or a fresh one, printed in every failure); and
 * each backend's GenerateKeyPair checked by the other:
 * - every batch: sodium's whole round (Blind with the drawn blinds,
 *   BlindEvaluate, Finalize) and sodium's Evaluate must give noble's
 *   Evaluate output byte for byte;
 * - every batch under PCD_TEST_FULL=1 (CI, `npm run test:full`: 10,000
 *   cases over both modes), one batch in ten otherwise (`npm test`: 1,000
 *   cases): noble's whole round on the same values, and every message
 *   compared (blinds, blinded elements, evaluated elements, the batch proof
 *   with the same nonce); each backend's Finalize of the other's reply, so
 *   each verifies the other's proof; and noble's split batch (evaluateChunk
 *   over a random cut, then proveComposite: the project's own composition,
 *   shared/voprf.ts) against @noble/curves' own blindEvaluateBatch.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, concatBytes, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { expect, it } from 'vitest';
import { deriveKeyPair } from '../shared/noble.ts';
import type { OprfBackend, OprfMode } from '../shared/suite.ts';
import { bothBackends } from './backends.ts';
import { FULL } from './helpers.ts';

/** Cases per mode: 5,000 under PCD_TEST_FULL=1 (10,000 over both modes), a tenth otherwise. */
const CASES = FULL ? 5_000 : 500;
const PER_KEY = 100;
/** Cases per batch (one proof each in voprf). */
const GROUP = 10;
/** Every this-many batches, noble runs the whole round too and every message is compared. */
const FULL_EVERY = FULL ? 1 : 10;

/** A stream of bytes from a seed: SHA-256 of (seed, label, counter), so a failure can be run again with its seed. */
function seededStream(seed: Uint8Array, label: string): (n: number) => Uint8Array {
  let counter = 0;
  return (n) => {
    const out = new Uint8Array(n);
    for (let off = 0; off < n; off += 32) {
      const block = sha256(concatBytes(seed, utf8ToBytes(label), new Uint8Array(new Uint32Array([counter++]).buffer)));
      out.set(block.subarray(0, Math.min(32, n - off)), off);
    }
    return out;
  };
}

/** A random E.164-looking or arbitrary input (numbers are what pcd feeds it; arbitrary bytes keep the check honest). */
function randomInput(i: number, bytes: (n: number) => Uint8Array): Uint8Array {
  if (i % 4 === 3) return bytes(1 + (i % 40));
  const digits = 7 + (i % 9);
  let s = '+';
  for (const b of bytes(digits)) s += String(b % 10);
  return utf8ToBytes(s);
}

/** noble's split batch (the worker pool's way) on a random cut of `blinded`: the evaluated elements and, voprf, the proof. */
function splitBatch(noble: OprfBackend, mode: OprfMode, key: ReturnType<OprfBackend['generateKeyPair']>, blinded: Uint8Array[], cut: number, nonce: Uint8Array) {
  const parts = [noble.evaluateChunk(mode, key, blinded.slice(0, cut), 0), noble.evaluateChunk(mode, key, blinded.slice(cut), cut)];
  const evaluated = parts.flatMap((p) => p.evaluated);
  const proof = mode === 'voprf' ? noble.proveComposite(key, parts.map((p) => p.composite!), () => nonce.slice()) : undefined;
  return { evaluated, proof };
}

/** Registers the cross-check of one mode (one file per mode, so vitest runs them on both cores). */
export function crossCheck(mode: OprfMode): void {
  it(`each backend's generated keys work with the other: 20 keys in ${mode} mode`, async () => {
    const { noble, sodium } = await bothBackends();
    for (let i = 0; i < 20; i++) {
      const [made, other] = i % 2 ? [noble, sodium] : [sodium, noble];
      const key = made.generateKeyPair();
      expect(bytesToHex(other.publicKeyOf(key.secretKey))).toBe(bytesToHex(key.publicKey));
      const x = utf8ToBytes(`+1650555${String(i).padStart(4, '0')}`);
      expect(bytesToHex(other.evaluate(mode, key.secretKey, x))).toBe(bytesToHex(made.evaluate(mode, key.secretKey, x)));
    }
  });

  const seedHex = process.env.PCD_CROSSCHECK_SEED ?? bytesToHex(crypto.getRandomValues(new Uint8Array(16)));
  it(`noble and sodium agree byte for byte: ${CASES} random (key, blind, input) triples in ${mode} mode, every message compared in ${FULL_EVERY === 1 ? 'every batch' : `one batch in ${FULL_EVERY}`}`, async () => {
    const { noble, sodium } = await bothBackends();
    const seed = hexToBytes(seedHex);
    const bytes = seededStream(seed, mode);
    const at = (group: number) => `seed ${seedHex} (PCD_CROSSCHECK_SEED), ${mode}, batch ${group}`;
    let key = deriveKeyPair(mode, bytes(32), utf8ToBytes('pcd cross-check'));
    for (let group = 0; group < CASES / GROUP; group++) {
      if ((group * GROUP) % PER_KEY === 0) key = deriveKeyPair(mode, bytes(32), utf8ToBytes('pcd cross-check'));
      const inputs = Array.from({ length: GROUP }, (_, j) => randomInput(group * GROUP + j, bytes));
      const draws = inputs.map(() => bytes(48));
      let next = 0;
      const blindRng = () => draws[next++]!.slice();

      // sodium's whole round on these (key, blind, input) triples, one batch
      const { blinds, blinded } = sodium.blindBatch(mode, inputs, blindRng);
      const nonceDraw = bytes(48);
      const rb = sodium.blindEvaluateBatch(mode, key, blinded, () => nonceDraw.slice());
      const ob = sodium.finalizeBatch(mode, { inputs, blinds, blinded, evaluated: rb.evaluated }, key.publicKey, rb.proof);
      // ... must give noble's Evaluate output, as must sodium's Evaluate
      const reference = inputs.map((x) => bytesToHex(noble.evaluate(mode, key.secretKey, x)));
      expect(ob.map(bytesToHex), at(group)).toEqual(reference);
      expect(
        inputs.map((x) => bytesToHex(sodium.evaluate(mode, key.secretKey, x))),
        at(group),
      ).toEqual(reference);

      if (group % FULL_EVERY !== 0) continue;
      // noble's whole round on the same values: every message equal, and each Finalize accepts the other's reply (and proof)
      next = 0;
      const nb = noble.blindBatch(mode, inputs, blindRng);
      expect(nb.blinds.map(bytesToHex), at(group)).toEqual(blinds.map(bytesToHex));
      expect(nb.blinded.map(bytesToHex), at(group)).toEqual(blinded.map(bytesToHex));
      const ra = noble.blindEvaluateBatch(mode, key, blinded, () => nonceDraw.slice());
      expect(rb.evaluated.map(bytesToHex), at(group)).toEqual(ra.evaluated.map(bytesToHex));
      expect(rb.proof && bytesToHex(rb.proof), at(group)).toBe(ra.proof && bytesToHex(ra.proof));
      const oa = noble.finalizeBatch(mode, { inputs, blinds, blinded, evaluated: rb.evaluated }, key.publicKey, rb.proof);
      expect(oa.map(bytesToHex), at(group)).toEqual(reference);
      expect(sodium.finalizeBatch(mode, { inputs, blinds, blinded, evaluated: ra.evaluated }, key.publicKey, ra.proof).map(bytesToHex), at(group)).toEqual(reference);
      // the project's composition of noble's group (evaluateChunk + proveComposite) against @noble/curves' own batch
      const split = splitBatch(noble, mode, key, blinded, 1 + (bytes(1)[0]! % (GROUP - 1)), nonceDraw);
      expect(split.evaluated.map(bytesToHex), at(group)).toEqual(ra.evaluated.map(bytesToHex));
      expect(split.proof && bytesToHex(split.proof), at(group)).toBe(ra.proof && bytesToHex(ra.proof));
    }
  }, 600_000);
}
