/**
 * Every crypto backend (shared/suite.ts) against RFC 9497 Appendix A.1
 * byte for byte through the backend interface, the split batch
 * (evaluateChunk + proveComposite) against the whole batch, and the same
 * rejections of malformed, non-canonical (RFC 9496 Appendix A.2) and
 * identity encodings. The 10,000 randomized cross-checks between the two
 * backends are in test/backend-crosscheck.ts.
 */
import { bytesToHex, hexToBytes, utf8ToBytes } from '@noble/hashes/utils.js';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../shared/errors.ts';
import { deriveKeyPair, rngForScalars } from '../shared/noble.ts';
import { ELEMENT_BYTES, type OprfBackend, type OprfMode } from '../shared/suite.ts';
import { bothBackends, describeBackends, pcdError } from './backends.ts';
import { vectors } from './vectors.ts';

const hex = (list: readonly string[]) => list.map((h) => hexToBytes(h));
const hexList = (list: readonly Uint8Array[]) => list.map((b) => bytesToHex(b));

/** RFC 9496 Appendix A.2: encodings every decoder MUST reject, plus s = -1 (t = 0). */
const RFC9496_INVALID = [
  // non-canonical field encodings
  '00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  // negative field elements
  '0100000000000000000000000000000000000000000000000000000000000000',
  '01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20',
  'c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562',
  'c940e5a4404157cfb1628b108db051a8d439e1a421394ec4ebccb9ec92a8ac78',
  '47cfc5497c53dc8e61c91d17fd626ffb1c49e2bca94eed052281b510b1117a24',
  'f1c6165d33367351b0da8f6e4511010c68174a03b6581212c71c0e1d026c3c72',
  '87260f7a2f12495118360f02c26a470f450dadf34a413d21042b43b9d93e1309',
  // non-square x^2
  '26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371',
  '4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f',
  'de6a7b00deadc788eb6b6c8d20c0ae96c2f2019078fa604fee5b87d6e989ad7b',
  'bcab477be20861e01e4a0e295284146a510150d9817763caf1a6f4b422d67042',
  '2a292df7e32cababbd9de088d1d1abec9fc0440f637ed2fba145094dc14bea08',
  'f4a9e534fc0d216c44b218fa0c42d99635a0127ee2e53c712f70609649fdff22',
  '8268436f8c4126196cf64b3c7ddbda90746a378625f9813dd9b8457077256731',
  '2810e5cbc2cc4d4eece54f61c6f69758e289aa7ab440b3cbeaa21995c2f4232b',
  // negative xy value
  '3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e',
  'a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220',
  'd483fe813c6ba647ebbfd3ec41adca1c6130c2beeee9d9bf065c8d151c5f396e',
  '8a2e1d30050198c65a54483123960ccc38aef6848e1ec8f5f780e8523769ba32',
  '32888462f8b486c68ad7dd9610be5192bbeaf3b443951ac1a8118419d9fa097b',
  '227142501b9d4355ccba290404bde41575b037693cef1f438c47f8fbf35d1165',
  // s = -1, which would give t = 0
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
];
const IDENTITY = new Uint8Array(ELEMENT_BYTES);


const RUNS = [
  { section: 'OPRF', mode: 'oprf' },
  { section: 'VOPRF', mode: 'voprf' },
] as const satisfies readonly { section: 'OPRF' | 'VOPRF'; mode: OprfMode }[];

describeBackends('RFC 9497 A.1 through the backend interface', (backend) => {
  for (const { section, mode } of RUNS) {
    const v = vectors.modes[section];
    const key = deriveKeyPair(mode, hexToBytes(v.Seed), hexToBytes(v.KeyInfo));
    for (const t of v.tests) {
      it(`${section} ${t.name}: Blind, BlindEvaluate, the split batch, Finalize and Evaluate`, () => {
        const b: OprfBackend = backend();
        const inputs = hex(t.Input);
        expect(bytesToHex(b.publicKeyOf(key.secretKey))).toBe(bytesToHex(key.publicKey));
        const { blinds, blinded } = b.blindBatch(mode, inputs, rngForScalars(hex(t.Blind)));
        expect(hexList(blinds)).toEqual(t.Blind);
        expect(hexList(blinded)).toEqual(t.BlindedElement);

        const proofRng = () => (t.ProofRandomScalar === undefined ? undefined : rngForScalars(hex([t.ProofRandomScalar])));
        const reply = b.blindEvaluateBatch(mode, key, blinded, proofRng());
        expect(hexList(reply.evaluated)).toEqual(t.EvaluationElement);
        expect(reply.proof === undefined ? undefined : bytesToHex(reply.proof)).toBe(t.Proof);

        // The same batch cut into one-element slices (the worker pool's way) gives the same bytes.
        const parts = blinded.map((el, i) => b.evaluateChunk(mode, key, [el], i));
        expect(hexList(parts.flatMap((p) => p.evaluated))).toEqual(t.EvaluationElement);
        if (mode === 'voprf') {
          const proof = b.proveComposite(key, parts.map((p) => p.composite!), proofRng());
          expect(bytesToHex(proof)).toBe(t.Proof);
        } else {
          expect(parts.every((p) => p.composite === undefined)).toBe(true);
        }

        const outputs = b.finalizeBatch(mode, { inputs, blinds, blinded, evaluated: reply.evaluated }, key.publicKey, reply.proof);
        expect(hexList(outputs)).toEqual(t.Output);
        expect(inputs.map((x) => bytesToHex(b.evaluate(mode, key.secretKey, x)))).toEqual(t.Output);
      });
    }
  }
});

describeBackends('wire checks', (backend) => {
  const key = deriveKeyPair('voprf', new Uint8Array(32).fill(7), utf8ToBytes('pcd test'));

  it('rejects every RFC 9496 A.2 invalid encoding, the identity and wrong lengths', () => {
    const b = backend();
    for (const h of RFC9496_INVALID) expect(b.elementProblem(hexToBytes(h)), h).toMatch(/canonical/);
    expect(b.elementProblem(IDENTITY)).toMatch(/identity/);
    expect(b.elementProblem(new Uint8Array(31))).toMatch(/32 bytes/);
    expect(b.elementProblem('ab')).toMatch(/byte string/);
    expect(b.elementProblem(key.publicKey)).toBeUndefined();
  });

  it('BlindEvaluate refuses a bad element with invalid_element naming its index in the whole batch', () => {
    const b = backend();
    const { blinded } = b.blindBatch('voprf', [utf8ToBytes('+14155550100'), utf8ToBytes('+14155550101')]);
    for (const bad of [IDENTITY, hexToBytes(RFC9496_INVALID[0]!)]) {
      expect(pcdError(() => b.blindEvaluateBatch('voprf', key, [blinded[0]!, bad]), ErrorCode.InvalidElement).message).toMatch(/element 1\b/);
      expect(pcdError(() => b.evaluateChunk('voprf', key, [blinded[1]!, bad], 40), ErrorCode.InvalidElement).message).toMatch(/element 41\b/);
    }
  });

  it('Finalize refuses a tampered proof and a missing proof (proof_invalid) and an identity evaluation (malformed_reply)', () => {
    const b = backend();
    const inputs = [utf8ToBytes('+14155550100'), utf8ToBytes('+14155550101')];
    const { blinds, blinded } = b.blindBatch('voprf', inputs);
    const reply = b.blindEvaluateBatch('voprf', key, blinded);
    const items = { inputs, blinds, blinded, evaluated: reply.evaluated };
    const tampered = reply.proof!.slice();
    tampered[5]! ^= 1;
    pcdError(() => b.finalizeBatch('voprf', items, key.publicKey, tampered), ErrorCode.ProofInvalid);
    // s = the group order: not a canonical scalar (RFC 9497 §4.1).
    const order = hexToBytes('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010');
    pcdError(() => b.finalizeBatch('voprf', items, key.publicKey, Uint8Array.from([...reply.proof!.subarray(0, 32), ...order])), ErrorCode.ProofInvalid);
    // The proof checks the key: another epoch's public key does not verify.
    const other = b.generateKeyPair();
    pcdError(() => b.finalizeBatch('voprf', items, other.publicKey, reply.proof), ErrorCode.ProofInvalid);
    pcdError(() => b.finalizeBatch('voprf', { ...items, evaluated: [reply.evaluated[0]!, IDENTITY] }, key.publicKey, reply.proof), ErrorCode.MalformedReply);
    pcdError(() => b.finalizeBatch('voprf', items, key.publicKey, undefined), ErrorCode.ProofInvalid);
    pcdError(() => b.finalizeBatch('oprf', items, undefined, reply.proof), ErrorCode.MalformedReply);
    expect(b.finalizeBatch('voprf', items, key.publicKey, reply.proof)).toHaveLength(2);
  });

  it('refuses a non-canonical or zero secret key as a caller mistake (RangeError)', () => {
    const b = backend();
    expect(() => b.publicKeyOf(new Uint8Array(32))).toThrow(RangeError);
    expect(() => b.publicKeyOf(new Uint8Array(32).fill(0xff))).toThrow(RangeError);
    expect(() => b.evaluate('voprf', new Uint8Array(32), utf8ToBytes('+1'))).toThrow(RangeError);
  });
});

describe('the two backends reject the same encodings', () => {
  it('agree on 4,000 random strings, bit flips of valid elements and every A.2 vector', async () => {
    const { noble, sodium } = await bothBackends();
    const samples: Uint8Array[] = RFC9496_INVALID.map((h) => hexToBytes(h));
    samples.push(IDENTITY);
    for (let i = 0; i < 2000; i++) samples.push(crypto.getRandomValues(new Uint8Array(32)));
    const valid = sodium.blindBatch('oprf', Array.from({ length: 64 }, (_, i) => utf8ToBytes(`+1415555${1000 + i}`))).blinded;
    for (let i = 0; i < 2000; i++) {
      const v = valid[i % valid.length]!.slice();
      v[(i * 7) % 32]! ^= 1 << (i % 8);
      samples.push(v);
    }
    let rejected = 0;
    for (const s of samples) {
      // The decode primitives are the only backend-specific part of the element check (shared/voprf.ts).
      expect(sodium.decodesElement(s), bytesToHex(s)).toBe(noble.decodesElement(s));
      const a = noble.elementProblem(s);
      expect(sodium.elementProblem(s), bytesToHex(s)).toBe(a);
      if (a !== undefined) rejected++;
    }
    // Most random strings are not elements: the comparison covered both answers.
    expect(rejected).toBeGreaterThan(2000);
    expect(rejected).toBeLessThan(samples.length);
  });
});
