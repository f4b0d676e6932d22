/**
 * RFC 9497 Appendix A.1 (ristretto255-SHA512) vectors, byte for byte through
 * shared/noble.ts, plus the failure paths and one property test.
 *
 * Randomness is a parameter: `rngForScalars` feeds the vector's Blind and
 * ProofRandomScalar to noble's RandomScalar, so the real code path runs.
 * POPRF vectors are in the file but not run: pcd does not use POPRF.
 */
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../shared/errors.ts';
import {
  blindBatch,
  blindEvaluateBatch,
  deriveKeyPair,
  evaluate,
  finalizeBatch,
  generateKeyPair,
  isValidElement,
  publicKeyOf,
  rngForScalars,
} from '../shared/noble.ts';
import { ELEMENT_BYTES, OUTPUT_BYTES, PROOF_BYTES, RANDOM_SCALAR_BYTES, SUITE, type KeyPair, type OprfMode } from '../shared/suite.ts';
import { pcdError } from './backends.ts';
import { vectors } from './vectors.ts';


const hex = (list: readonly string[]) => list.map((h) => hexToBytes(h));
const hexList = (list: readonly Uint8Array[]) => list.map((b) => bytesToHex(b));

const RUNS: ReadonlyArray<{ section: 'OPRF' | 'VOPRF'; mode: OprfMode; count: number }> = [
  { section: 'OPRF', mode: 'oprf', count: 2 },
  { section: 'VOPRF', mode: 'voprf', count: 3 },
];


function flipBit(bytes: Uint8Array, byte: number, bit: number): Uint8Array {
  const out = bytes.slice();
  out[byte] = (out[byte] ?? 0) ^ (1 << bit);
  return out;
}

describe('the vector file', () => {
  it('names its source and suite, and holds every OPRF and VOPRF vector', () => {
    expect(vectors.source).toMatch(/RFC 9497.*Appendix A\.1/);
    expect(vectors.suite).toBe(SUITE);
    for (const { section, count } of RUNS) expect(vectors.modes[section].tests).toHaveLength(count);
    // Batch vectors: several inputs under one proof (RFC 9497 §2.2.1).
    const batch = vectors.modes.VOPRF.tests.filter((t) => t.Input.length > 1);
    expect(batch).toHaveLength(1);
    expect(batch[0]?.Proof).toHaveLength(2 * PROOF_BYTES);
  });
});

for (const { section, mode } of RUNS) {
  const v = vectors.modes[section];

  describe(`RFC 9497 A.1 ${section} (${SUITE}, mode ${mode})`, () => {
    const key = deriveKeyPair(mode, hexToBytes(v.Seed), hexToBytes(v.KeyInfo));

    it('DeriveKeyPair(Seed, KeyInfo) gives skSm and pkSm (RFC 9497 §3.2.1)', () => {
      expect(bytesToHex(key.secretKey)).toBe(v.skSm);
      expect(bytesToHex(publicKeyOf(key.secretKey))).toBe(bytesToHex(key.publicKey));
      if (v.pkSm !== undefined) expect(bytesToHex(key.publicKey)).toBe(v.pkSm);
    });

    for (const t of v.tests) {
      it(`${t.name}: Blind, BlindEvaluate, Finalize and Evaluate byte for byte`, () => {
        const inputs = hex(t.Input);

        const { blinds, blinded } = blindBatch(mode, inputs, rngForScalars(hex(t.Blind)));
        expect(hexList(blinds)).toEqual(t.Blind);
        expect(hexList(blinded)).toEqual(t.BlindedElement);

        const proofRng = t.ProofRandomScalar === undefined ? undefined : rngForScalars(hex([t.ProofRandomScalar]));
        const reply = blindEvaluateBatch(mode, key, blinded, proofRng);
        expect(hexList(reply.evaluated)).toEqual(t.EvaluationElement);
        if (mode === 'voprf') {
          expect(reply.proof).toBeDefined();
          expect(bytesToHex(reply.proof ?? new Uint8Array())).toBe(t.Proof);
        } else {
          expect(reply.proof).toBeUndefined();
        }

        const outputs = finalizeBatch(
          mode,
          { inputs, blinds, blinded, evaluated: reply.evaluated },
          mode === 'voprf' ? key.publicKey : undefined,
          reply.proof,
        );
        expect(hexList(outputs)).toEqual(t.Output);

        // The server's direct Evaluate gives the same tags (RFC 9497 §3.3.1).
        expect(inputs.map((x) => bytesToHex(evaluate(mode, key.secretKey, x)))).toEqual(t.Output);
      });

      if (mode === 'voprf') {
        it(`${t.name}: the vector's own Proof verifies in finalizeBatch`, () => {
          const outputs = finalizeBatch(
            mode,
            { inputs: hex(t.Input), blinds: hex(t.Blind), blinded: hex(t.BlindedElement), evaluated: hex(t.EvaluationElement) },
            key.publicKey,
            hexToBytes(t.Proof ?? ''),
          );
          expect(hexList(outputs)).toEqual(t.Output);
        });
      }
    }
  });
}

// ---------------------------------------------------------------------------
// VOPRF proof failures

describe('VOPRF proof checks (RFC 9497 §2.2.2)', () => {
  const v = vectors.modes.VOPRF;
  const key = deriveKeyPair('voprf', hexToBytes(v.Seed), hexToBytes(v.KeyInfo));
  const t = v.tests.find((x) => x.Input.length > 1);
  if (t === undefined) throw new Error('no batch vector');
  const items = {
    inputs: hex(t.Input),
    blinds: hex(t.Blind),
    blinded: hex(t.BlindedElement),
    evaluated: hex(t.EvaluationElement),
  };
  const proof = hexToBytes(t.Proof ?? '');

  it('a tampered proof (one bit flipped, in c or in s) is proof_invalid', () => {
    for (const [byte, bit] of [
      [0, 0],
      [17, 5],
      [32, 0],
      [63, 3],
    ] as const) {
      const err = pcdError(() => finalizeBatch('voprf', items, key.publicKey, flipBit(proof, byte, bit)), ErrorCode.ProofInvalid);
      expect(err.message).toMatch(/^the server's proof does not verify against the epoch public key/);
    }
  });

  it('a proof checked against another key is proof_invalid', () => {
    const other = generateKeyPair('voprf');
    pcdError(() => finalizeBatch('voprf', items, other.publicKey, proof), ErrorCode.ProofInvalid);
  });

  it('a proof does not cover the same elements in another order', () => {
    const swapped = {
      inputs: [...items.inputs].reverse(),
      blinds: [...items.blinds].reverse(),
      blinded: [...items.blinded].reverse(),
      evaluated: [...items.evaluated].reverse(),
    };
    pcdError(() => finalizeBatch('voprf', swapped, key.publicKey, proof), ErrorCode.ProofInvalid);
  });

  it('a server that evaluated under another key is caught', () => {
    const other = generateKeyPair('voprf');
    const liar: KeyPair = { secretKey: other.secretKey, publicKey: other.publicKey };
    const reply = blindEvaluateBatch('voprf', liar, items.blinded);
    pcdError(
      () => finalizeBatch('voprf', { ...items, evaluated: reply.evaluated }, key.publicKey, reply.proof),
      ErrorCode.ProofInvalid,
    );
  });

  it('a missing proof is proof_invalid, a short one malformed_reply; a missing public key is a caller error', () => {
    pcdError(() => finalizeBatch('voprf', items, key.publicKey, undefined), ErrorCode.ProofInvalid);
    pcdError(() => finalizeBatch('voprf', items, key.publicKey, proof.subarray(0, 63)), ErrorCode.MalformedReply);
    expect(() => finalizeBatch('voprf', items, undefined, proof)).toThrow(TypeError);
  });

  it('a proof sent in oprf mode is malformed_reply (the server runs another mode)', () => {
    pcdError(() => finalizeBatch('oprf', items, undefined, proof), ErrorCode.MalformedReply);
  });
});

// ---------------------------------------------------------------------------
// Input validation (RFC 9497 §3.3, §4.1)

describe('element validation', () => {
  const identity = new Uint8Array(ELEMENT_BYTES);
  const short = new Uint8Array(ELEMENT_BYTES - 1).fill(1);
  const allOnes = new Uint8Array(ELEMENT_BYTES).fill(0xff);
  // p = 2^255 - 19 little-endian: the non-canonical encoding of zero.
  const fieldPrime = hexToBytes('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f');
  // s = 1 is odd, i.e. "negative": ristretto255 Decode rejects it (RFC 9496 §4.3.1).
  const negative = hexToBytes('01'.padEnd(64, '0'));
  const good = blindBatch('oprf', [utf8ToBytes('+14155550123')]).blinded[0] as Uint8Array;

  it('isValidElement accepts a real element and rejects identity, 31 bytes and non-canonical bytes', () => {
    expect(isValidElement(good)).toBe(true);
    for (const bad of [identity, short, allOnes, fieldPrime, negative]) expect(isValidElement(bad)).toBe(false);
  });

  it('random 32-byte strings with the top bit set are never accepted', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (raw) => {
        const bytes = raw.slice();
        bytes[31] = (bytes[31] ?? 0) | 0x80; // s >= 2^255 > p: not canonical
        return !isValidElement(bytes);
      }),
      { numRuns: 200 },
    );
  });

  it('blindEvaluateBatch rejects each bad element with invalid_element, naming the problem and index', () => {
    const key = generateKeyPair('voprf');
    for (const mode of ['oprf', 'voprf'] as const) {
      const cases: Array<[Uint8Array, RegExp]> = [
        [identity, /blinded element 1: is the identity element/],
        [short, /blinded element 1: expected 32 bytes, got 31/],
        [allOnes, /blinded element 1: not a canonical ristretto255 encoding/],
        [fieldPrime, /blinded element 1: not a canonical ristretto255 encoding/],
        [negative, /blinded element 1: not a canonical ristretto255 encoding/],
      ];
      for (const [bad, message] of cases) {
        const err = pcdError(() => blindEvaluateBatch(mode, key, [good, bad, good]), ErrorCode.InvalidElement);
        expect(err.message).toMatch(message);
        expect(err.status).toBe(400);
      }
    }
  });

  it('an empty batch is bad_request', () => {
    pcdError(() => blindEvaluateBatch('oprf', generateKeyPair('oprf'), []), ErrorCode.BadRequest);
  });

  it('finalizeBatch: a bad evaluated element is malformed_reply with its index; a wrong count too', () => {
    const key = generateKeyPair('oprf');
    const inputs = [utf8ToBytes('+14155550123'), utf8ToBytes('+14155550124')];
    const { blinds, blinded } = blindBatch('oprf', inputs);
    const { evaluated } = blindEvaluateBatch('oprf', key, blinded);
    for (const bad of [identity, short, allOnes]) {
      const err = pcdError(
        () => finalizeBatch('oprf', { inputs, blinds, blinded, evaluated: [evaluated[0] as Uint8Array, bad] }),
        ErrorCode.MalformedReply,
      );
      expect(err.message).toMatch(/^evaluated element 1: /);
    }
    pcdError(() => finalizeBatch('oprf', { inputs, blinds, blinded, evaluated: evaluated.slice(0, 1) }), ErrorCode.MalformedReply);
    expect(() => finalizeBatch('oprf', { inputs, blinds: blinds.slice(0, 1), blinded, evaluated })).toThrow(RangeError);
  });

  it('caller errors are plain errors: unknown mode, bad seed, bad secret key', () => {
    expect(() => generateKeyPair('poprf' as OprfMode)).toThrow(TypeError);
    expect(() => deriveKeyPair('oprf', new Uint8Array(31), new Uint8Array())).toThrow(RangeError);
    expect(() => evaluate('oprf', new Uint8Array(32), utf8ToBytes('+1'))).toThrow(/secret key: is zero/);
    expect(() => publicKeyOf(new Uint8Array(32).fill(0xff))).toThrow(/not a canonical scalar/);
  });
});

// ---------------------------------------------------------------------------
// rngForScalars

describe('rngForScalars', () => {
  const b = hexToBytes(vectors.modes.OPRF.tests[0]?.Blind[0] ?? '');

  it('makes noble draw exactly the given scalars, in order', () => {
    const one = hexToBytes('01'.padEnd(64, '0'));
    const { blinds } = blindBatch('oprf', [utf8ToBytes('a'), utf8ToBytes('b')], rngForScalars([b, one]));
    expect(hexList(blinds)).toEqual([bytesToHex(b), bytesToHex(one)]);
  });

  it('throws when exhausted or asked for another length', () => {
    const rng = rngForScalars([b]);
    expect(() => rng(32)).toThrow(RangeError);
    expect(rng(RANDOM_SCALAR_BYTES)).toHaveLength(RANDOM_SCALAR_BYTES);
    expect(() => rng(RANDOM_SCALAR_BYTES)).toThrow(/all 1 scalars used/);
  });

  it('refuses scalars noble could never draw (zero, not below the order)', () => {
    expect(() => rngForScalars([new Uint8Array(32)])).toThrow(RangeError);
    expect(() => rngForScalars([new Uint8Array(32).fill(0xff)])).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
// Round trips with random keys

describe('round trip with random keys', () => {
  for (const mode of ['oprf', 'voprf'] as const) {
    it(`${mode}: finalize(blindEvaluate(blind(x))) == evaluate(x) for phone numbers, sizes and lengths right`, () => {
      const key = generateKeyPair(mode);
      expect(publicKeyOf(key.secretKey)).toEqual(key.publicKey);
      const inputs = ['+14155550123', '+442071838750', '+4915112345678'].map((n) => utf8ToBytes(n));
      const { blinds, blinded } = blindBatch(mode, inputs);
      const reply = blindEvaluateBatch(mode, key, blinded);
      expect(reply.evaluated.every((e) => e.length === ELEMENT_BYTES)).toBe(true);
      if (mode === 'voprf') expect(reply.proof).toHaveLength(PROOF_BYTES);
      const outputs = finalizeBatch(mode, { inputs, blinds, blinded, evaluated: reply.evaluated }, key.publicKey, reply.proof);
      expect(outputs.every((o) => o.length === OUTPUT_BYTES)).toBe(true);
      expect(hexList(outputs)).toEqual(inputs.map((x) => bytesToHex(evaluate(mode, key.secretKey, x))));
      // The mode is in the context string (RFC 9497 §3.1): other mode, other tag.
      const other: OprfMode = mode === 'oprf' ? 'voprf' : 'oprf';
      expect(bytesToHex(evaluate(other, key.secretKey, inputs[0] as Uint8Array))).not.toBe(bytesToHex(outputs[0] as Uint8Array));
    });
  }

  it('property: for random inputs and keys, finalize(blind(x)) == evaluate(x) in both modes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 1, maxLength: 3 }),
        fc.constantFrom<OprfMode>('oprf', 'voprf'),
        (seed, inputs, mode) => {
          const key = deriveKeyPair(mode, seed, utf8ToBytes('pcd test'));
          const { blinds, blinded } = blindBatch(mode, inputs);
          const reply = blindEvaluateBatch(mode, key, blinded);
          const outputs = finalizeBatch(mode, { inputs, blinds, blinded, evaluated: reply.evaluated }, key.publicKey, reply.proof);
          return outputs.every((o, i) => bytesToHex(o) === bytesToHex(evaluate(mode, key.secretKey, inputs[i] as Uint8Array)));
        },
      ),
      { numRuns: 20 },
    );
  });
});
