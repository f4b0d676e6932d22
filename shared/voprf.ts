/**
 * RFC 9497 ristretto255-SHA512, OPRF and VOPRF modes, composed step by step
 * from a small set of group primitives ({@link GroupOps}): the sodium
 * backend (shared/sodium.ts) is this composition over libsodium, and the
 * noble backend (shared/noble.ts) uses it, over @noble/curves, for the split
 * batch steps its library does not expose. Every step names its section; no
 * curve arithmetic is written here, only the protocol around it.
 *
 * The hashes: HashToGroup is RFC 9380 `hash_to_ristretto255` (Appendix B):
 * expand_message_xmd with SHA-512 to 64 bytes (noble's RFC 9380 §5.3.1
 * implementation, fed the backend's SHA-512), then the RFC 9496 §4.3.4
 * one-way map; HashToScalar (RFC 9497 §4.1) reduces 64 expand_message_xmd
 * bytes, read little-endian, modulo the group order.
 *
 * The wire checks live here too, once for both backends: THE element check
 * ({@link elementProblem}), THE list check that turns its reason into a
 * PcdError naming the index ({@link checkElements}), the secret-scalar check
 * and every check Finalize makes ({@link checkFinalize}). A backend adds
 * only its decoding primitives ({@link WireDecoding}).
 *
 * @module
 */
import { expand_message_xmd } from '@noble/curves/abstract/hash-to-curve.js';
import type { CHash } from '@noble/curves/utils.js';
import { ErrorCode, PcdError } from './errors.ts';
import {
  ELEMENT_BYTES,
  MAX_BATCH_ELEMENTS,
  MAX_INPUT_BYTES,
  MODES,
  PROOF_BYTES,
  RANDOM_SCALAR_BYTES,
  SCALAR_BYTES,
  type EvaluatedChunk,
  type FinalizeItems,
  type KeyPair,
  type OprfMode,
  type OutputBytes,
  type PointBytes,
  type ProofBytes,
  type RandomSource,
  type ScalarBytes,
} from './suite.ts';

/** SHA-512 as RFC 9380 §5.3.1 expand_message_xmd needs it: a one-shot function with its sizes. */
export type Sha512 = CHash;

/** A one-shot SHA-512 function as {@link Sha512} (expand_message_xmd never streams). */
export function asSha512(fn: (msg: Uint8Array) => Uint8Array): Sha512 {
  return Object.assign((msg: Uint8Array) => fn(msg) as Uint8Array<ArrayBuffer>, {
    outputLen: 64,
    blockLen: 128,
    canXOF: false,
    create(): never {
      throw new Error('this SHA-512 is one-shot');
    },
  });
}

/**
 * ristretto255 (RFC 9496) on encodings. Inputs are trusted to be valid where
 * the name says so; `mul` and `add` throw on anything they cannot decode.
 */
export interface GroupOps {
  sha512: Sha512;
  /** RFC 9496 §4.3.4 element derivation from 64 uniform bytes. */
  fromUniform(bytes: Uint8Array): PointBytes;
  /** 64 bytes read little-endian, reduced modulo the group order. */
  reduce64(bytes: Uint8Array): ScalarBytes;
  mul(scalar: ScalarBytes, point: PointBytes): PointBytes;
  mulBase(scalar: ScalarBytes): PointBytes;
  add(a: PointBytes, b: PointBytes): PointBytes;
  scalarMul(a: ScalarBytes, b: ScalarBytes): ScalarBytes;
  scalarSub(a: ScalarBytes, b: ScalarBytes): ScalarBytes;
  scalarInvert(a: ScalarBytes): ScalarBytes;
  /** RFC 9496 §4.3.1 Decode as a yes/no ({@link DecodesElement}): all a backend adds to {@link elementProblem}. */
  decodesElement: DecodesElement;
  /** True when 32 bytes encode an integer below the group order (RFC 9497 §4.1 DeserializeScalar). */
  isCanonicalScalar(bytes: Uint8Array): boolean;
  /** RFC 9497 §2.1 RandomScalar: nonzero; from `rng` exactly as noble maps it when given. */
  randomScalar(rng?: RandomSource): ScalarBytes;
}

const te = new TextEncoder();
const ascii = (s: string): Uint8Array => te.encode(s);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function i2osp2(n: number): Uint8Array {
  return Uint8Array.of((n >>> 8) & 0xff, n & 0xff);
}

/** I2OSP(len(x), 2) || x (RFC 9497 §1.2 notation). */
function lp(x: Uint8Array): Uint8Array[] {
  return [i2osp2(x.length), x];
}

/** contextString = "OPRFV1-" || I2OSP(mode, 1) || "-" || identifier (RFC 9497 §3.1). */
export function contextString(mode: OprfMode): Uint8Array {
  return concat([ascii('OPRFV1-'), Uint8Array.of(MODES.indexOf(mode)), ascii('-ristretto255-SHA512')]);
}

const CONTEXTS: Readonly<Record<OprfMode, Uint8Array>> = { oprf: contextString('oprf'), voprf: contextString('voprf') };
const DST = (prefix: string, mode: OprfMode) => concat([ascii(prefix), CONTEXTS[mode]]);
const H2G_DST = { oprf: DST('HashToGroup-', 'oprf'), voprf: DST('HashToGroup-', 'voprf') };
const H2S_DST = { oprf: DST('HashToScalar-', 'oprf'), voprf: DST('HashToScalar-', 'voprf') };
const SEED_DST = { oprf: DST('Seed-', 'oprf'), voprf: DST('Seed-', 'voprf') };
const FINALIZE = ascii('Finalize');
const COMPOSITE = ascii('Composite');
const CHALLENGE = ascii('Challenge');

export function assertMode(mode: unknown): asserts mode is OprfMode {
  if (!MODES.includes(mode as OprfMode)) {
    throw new TypeError(`unknown OPRF mode ${JSON.stringify(mode)}: expected one of ${MODES.join(', ')}`);
  }
}

export function checkInput(what: string, input: unknown): asserts input is Uint8Array {
  if (!(input instanceof Uint8Array)) throw new TypeError(`${what}: expected a byte string, got ${typeof input}`);
  if (input.length > MAX_INPUT_BYTES) {
    throw new RangeError(`${what}: ${input.length} bytes, RFC 9497 allows at most ${MAX_INPUT_BYTES}`);
  }
}

export function checkArray(what: string, list: unknown): asserts list is readonly unknown[] {
  if (!Array.isArray(list)) throw new TypeError(`${what}: expected an array`);
}

// ---------------------------------------------------------------------------
// Wire checks: the same rules in every backend, which adds only its decoding

/**
 * RFC 9496 §4.3.1 Decode as a yes/no: true when 32 bytes are the canonical
 * encoding of a ristretto255 element. The one backend-specific part of the
 * element check: @noble/curves' `RistrettoPoint.fromBytes` not throwing
 * (shared/noble.ts), libsodium's `crypto_core_ristretto255_is_valid_point`
 * (shared/sodium.ts). Never called with anything but 32 bytes.
 */
export type DecodesElement = (bytes: Uint8Array) => boolean;

/** A backend's decoding primitives, all the wire checks below need of it. */
export type WireDecoding = Pick<GroupOps, 'decodesElement' | 'isCanonicalScalar'>;

/**
 * The code of a bad element, by where it came from: `invalid_element` for a
 * blinded element (a client's), `malformed_reply` for an evaluated element
 * (a server's reply).
 */
export type ElementErrorCode = typeof ErrorCode.InvalidElement | typeof ErrorCode.MalformedReply;

/**
 * THE element check: what is wrong with `bytes` as a ristretto255 element
 * received over the wire, or undefined if nothing. RFC 9497 §4.1
 * DeserializeElement is RFC 9496 §4.3.1 Decode, which rejects non-canonical
 * encodings (`decodes`, the backend's); RFC 9497 §3.3 adds that
 * applications MUST reject the identity element received over the wire.
 * Decode accepts exactly one encoding per element and the identity's is 32
 * zero bytes (RFC 9496 §4.3.2 Encode), so the identity is recognised by its
 * bytes, before any decoding.
 */
export function elementProblem(decodes: DecodesElement, bytes: unknown): string | undefined {
  if (!(bytes instanceof Uint8Array)) return `expected a byte string, got ${typeof bytes}`;
  if (bytes.length !== ELEMENT_BYTES) return `expected ${ELEMENT_BYTES} bytes, got ${bytes.length}`;
  if (isZeroBytes(bytes)) return 'is the identity element';
  if (!decodes(bytes)) return 'not a canonical ristretto255 encoding';
  return undefined;
}

/**
 * THE list check: {@link elementProblem} on every element of `list`, in
 * order, before anything is computed from any (RFC 9497 §3.3). The first bad
 * one throws a PcdError with `code` naming its index: `list[i]` is element
 * `first + i` of its batch, named `${name} ${index}` (`blinded element 3`)
 * or `name(index)` (`elements[3]`, as the request field).
 */
export function checkElements(
  decodes: DecodesElement,
  list: readonly unknown[],
  code: ElementErrorCode,
  name: string | ((index: number) => string),
  first = 0,
): void {
  for (let i = 0; i < list.length; i++) {
    const problem = elementProblem(decodes, list[i]);
    if (problem === undefined) continue;
    const index = first + i;
    throw new PcdError(code, `${typeof name === 'string' ? `${name} ${index}` : name(index)}: ${problem}`);
  }
}

/**
 * A secret scalar of our own (a key, a blind): 32 bytes, canonical, nonzero
 * (RFC 9497 §4.1 DeserializeScalar). Anything else is the caller's mistake:
 * a TypeError or RangeError, never a PcdError.
 */
export function checkScalar(isCanonicalScalar: (bytes: Uint8Array) => boolean, what: string, bytes: unknown): void {
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`${what}: expected a byte string, got ${typeof bytes}`);
  if (bytes.length !== SCALAR_BYTES) throw new RangeError(`${what}: expected ${SCALAR_BYTES} bytes, got ${bytes.length}`);
  if (!isCanonicalScalar(bytes)) throw new RangeError(`${what}: not a canonical scalar (must be below the group order)`);
  if (isZeroBytes(bytes)) throw new RangeError(`${what}: is zero`);
}

/**
 * Every check Finalize makes before any arithmetic, the same in every
 * backend, so each failure has one code: a caller's mismatched arrays or
 * missing public key are TypeErrors / RangeErrors; a reply the client cannot
 * use (a wrong count of evaluated elements, a proof present in oprf, a
 * proof of the wrong size, a bad evaluated element, a bad epoch public key)
 * is `malformed_reply`; a bad blinded element is `invalid_element`, as on
 * the server. A voprf reply without a proof, and a proof that does not
 * verify (found after this), are `proof_invalid`: nothing shows the server
 * used the published key. Returns the proof, narrowed, in voprf
 * mode (a batch of no input needs none and returns undefined).
 */
export function checkFinalize(
  decoding: WireDecoding,
  mode: OprfMode,
  items: FinalizeItems,
  publicKey: PointBytes | undefined,
  proof: ProofBytes | undefined,
): { publicKey: PointBytes; proof: ProofBytes } | undefined {
  assertMode(mode);
  const { inputs, blinds, blinded, evaluated } = items;
  checkArray('inputs', inputs);
  checkArray('blinds', blinds);
  checkArray('blinded', blinded);
  if (blinds.length !== inputs.length || blinded.length !== inputs.length) {
    throw new RangeError(`finalizeBatch: ${inputs.length} inputs, ${blinds.length} blinds and ${blinded.length} blinded elements must match`);
  }
  if (!Array.isArray(evaluated) || evaluated.length !== blinded.length) {
    const got = Array.isArray(evaluated) ? `${evaluated.length} evaluated elements` : 'no array of evaluated elements';
    throw new PcdError(ErrorCode.MalformedReply, `the server returned ${got} for ${blinded.length} blinded elements`);
  }
  if (mode === 'voprf') {
    if (publicKey === undefined) throw new TypeError('voprf mode: finalizeBatch needs the epoch public key');
    if (proof === undefined) throw new PcdError(ErrorCode.ProofInvalid, 'voprf mode: the server sent no proof, so nothing shows it used the published key');
  } else if (proof !== undefined) {
    // A proof means the server runs voprf: its tags would never match ours.
    throw new PcdError(ErrorCode.MalformedReply, 'oprf mode: the server sent a proof, so it is not in oprf mode');
  }
  inputs.forEach((input, i) => checkInput(`input ${i}`, input));
  blinds.forEach((blind, i) => checkScalar(decoding.isCanonicalScalar, `blind ${i}`, blind));
  checkElements(decoding.decodesElement, blinded, ErrorCode.InvalidElement, 'blinded element');
  // RFC 9497 §3.3: evaluated elements come over the wire and must decode and not be the identity.
  checkElements(decoding.decodesElement, evaluated, ErrorCode.MalformedReply, 'evaluated element');
  if (mode === 'oprf' || inputs.length === 0) return undefined;
  const pkProblem = elementProblem(decoding.decodesElement, publicKey);
  if (pkProblem !== undefined) throw new PcdError(ErrorCode.MalformedReply, `epoch public key: ${pkProblem}`);
  if (!(proof instanceof Uint8Array) || proof.length !== PROOF_BYTES) {
    const got = proof instanceof Uint8Array ? `${proof.length} bytes` : typeof proof;
    throw new PcdError(ErrorCode.MalformedReply, `proof: expected ${PROOF_BYTES} bytes, got ${got}`);
  }
  return { publicKey: publicKey!, proof };
}

// ---------------------------------------------------------------------------
// The suite's hashes, and the proof of RFC 9497 §2.2 (a discrete-log equivalence) in its prover and verifier halves

/** RFC 9497 §4.1 HashToGroup: RFC 9380 hash_to_ristretto255. */
function hashToGroup(g: GroupOps, input: Uint8Array, mode: OprfMode): PointBytes {
  return g.fromUniform(expand_message_xmd(input, H2G_DST[mode], 64, g.sha512));
}

/** RFC 9497 §4.1 HashToScalar. */
function hashToScalar(g: GroupOps, msg: Uint8Array, mode: OprfMode): ScalarBytes {
  return g.reduce64(expand_message_xmd(msg, H2S_DST[mode], 64, g.sha512));
}

/** Finalize's hash: Hash(I2OSP(len(input), 2) || input || I2OSP(len(N), 2) || N || "Finalize") (RFC 9497 §3.3.1). */
function finalHash(g: GroupOps, input: Uint8Array, unblinded: PointBytes): OutputBytes {
  return g.sha512(concat([...lp(input), ...lp(unblinded), FINALIZE]));
}

/** seed = Hash(I2OSP(len(Bm), 2) || Bm || I2OSP(len(seedDST), 2) || seedDST) (RFC 9497 §2.2.1). */
function compositeSeed(g: GroupOps, publicKey: PointBytes): Uint8Array {
  return g.sha512(concat([...lp(publicKey), ...lp(SEED_DST.voprf)]));
}

/** d_i = HashToScalar(I2OSP(len(seed), 2) || seed || I2OSP(i, 2) || ... || "Composite") (RFC 9497 §2.2.1). */
function weight(g: GroupOps, seed: Uint8Array, i: number, c: PointBytes, d: PointBytes): ScalarBytes {
  return hashToScalar(g, concat([...lp(seed), i2osp2(i), ...lp(c), ...lp(d), COMPOSITE]), 'voprf');
}

/** c = HashToScalar(Bm, M, Z, t2, t3 each length-prefixed || "Challenge") (RFC 9497 §2.2.1). */
function challenge(g: GroupOps, pk: PointBytes, m: PointBytes, z: PointBytes, t2: PointBytes, t3: PointBytes): ScalarBytes {
  return hashToScalar(g, concat([...lp(pk), ...lp(m), ...lp(z), ...lp(t2), ...lp(t3), CHALLENGE]), 'voprf');
}

/** The prover: RFC 9497 §2.2.1 GenerateProof, given the composite M (ComputeCompositesFast: Z = k * M) and a key already checked. */
function generateProof(g: GroupOps, key: KeyPair, m: PointBytes, rng?: RandomSource): ProofBytes {
  const z = g.mul(key.secretKey, m);
  const r = g.randomScalar(rng);
  const t2 = g.mulBase(r);
  const t3 = g.mul(r, m);
  const c = challenge(g, key.publicKey, m, z, t2, t3);
  const s = g.scalarSub(r, g.scalarMul(c, key.secretKey)); // s = r - c * k
  r.fill(0);
  return concat([c, s]);
}

/** The verifier: RFC 9497 §2.2.2 VerifyProof with §2.2.1 ComputeComposites (M and Z both summed). */
function verifyProof(g: GroupOps, pk: PointBytes, c: readonly PointBytes[], d: readonly PointBytes[], proof: ProofBytes): void {
  const fail = (why: string): never => {
    throw new PcdError(ErrorCode.ProofInvalid, `the server's proof does not verify against the epoch public key (RFC 9497 §2.2.2): ${why}`);
  };
  const pc = proof.subarray(0, SCALAR_BYTES);
  const ps = proof.subarray(SCALAR_BYTES);
  // RFC 9497 §4.1 DeserializeScalar: c and s must be canonical.
  if (!g.isCanonicalScalar(pc)) fail('c is not a canonical scalar');
  if (!g.isCanonicalScalar(ps)) fail('s is not a canonical scalar');
  const seed = compositeSeed(g, pk);
  let m: PointBytes | undefined;
  let z: PointBytes | undefined;
  try {
    for (let i = 0; i < c.length; i++) {
      const di = weight(g, seed, i, c[i]!, d[i]!);
      const mi = g.mul(di, c[i]!);
      const zi = g.mul(di, d[i]!);
      m = m === undefined ? mi : g.add(m, mi);
      z = z === undefined ? zi : g.add(z, zi);
    }
    const t2 = g.add(g.mulBase(ps), g.mul(pc, pk)); // s * G + c * pkS
    const t3 = g.add(g.mul(ps, m!), g.mul(pc, z!)); // s * M + c * Z
    const expected = challenge(g, pk, m!, z!, t2, t3);
    let diff = 0;
    for (let i = 0; i < SCALAR_BYTES; i++) diff |= expected[i]! ^ pc[i]!;
    if (diff !== 0) fail('proof verification failed');
  } catch (e) {
    if (e instanceof PcdError) throw e;
    // A point sum or product that is the identity: the proof cannot be right.
    fail(e instanceof Error ? e.message : String(e));
  }
}

/** The composition over one group: the functions an {@link OprfBackend} needs. */
export function composeSuite(g: GroupOps) {
  const secret = (what: string, s: unknown): void => checkScalar(g.isCanonicalScalar, what, s);
  /**
   * Public keys already found valid, by object: a server evaluates every
   * batch of an epoch with the same key object, and decoding it costs as
   * much as a tenth of a one-element batch. Public keys are never mutated.
   */
  const goodPublicKeys = new WeakSet<Uint8Array>();
  const checkKey = (key: KeyPair): void => {
    secret('secret key', key.secretKey);
    if (goodPublicKeys.has(key.publicKey)) return;
    const problem = elementProblem(g.decodesElement, key.publicKey);
    if (problem !== undefined) throw new RangeError(`public key: ${problem}`);
    goodPublicKeys.add(key.publicKey);
  };

  const sum = (points: readonly PointBytes[]): PointBytes => {
    let acc = points[0]!;
    for (let i = 1; i < points.length; i++) acc = g.add(acc, points[i]!);
    return acc;
  };

  /** RFC 9497 §2.2.1 GenerateProof over the chunks' composites, summed into M. */
  const proveComposite = (key: KeyPair, composites: readonly PointBytes[], rng?: RandomSource): ProofBytes => {
    checkArray('composites', composites);
    if (composites.length === 0) throw new RangeError('proveComposite: no composite');
    checkKey(key);
    return generateProof(g, key, sum(composites), rng);
  };

  /** D_i = k * C_i for a slice, and in voprf its part of M = sum d_i * C_i (RFC 9497 §2.2.1). */
  const evaluateChunk = (mode: OprfMode, key: KeyPair, blinded: readonly PointBytes[], first: number): EvaluatedChunk => {
    assertMode(mode);
    checkArray('blinded', blinded);
    if (!Number.isInteger(first) || first < 0 || first + blinded.length > MAX_BATCH_ELEMENTS) {
      throw new RangeError(`evaluateChunk: elements ${first}..${first + blinded.length - 1} do not fit one batch of at most ${MAX_BATCH_ELEMENTS}`);
    }
    if (blinded.length === 0) throw new PcdError(ErrorCode.BadRequest, 'the batch holds no blinded element');
    if (mode === 'oprf') secret('secret key', key.secretKey);
    else checkKey(key);
    // RFC 9497 §3.3: every element from the wire is checked before any is evaluated.
    checkElements(g.decodesElement, blinded, ErrorCode.InvalidElement, 'blinded element', first);
    const evaluated = blinded.map((b) => g.mul(key.secretKey, b));
    if (mode === 'oprf') return { evaluated };
    const seed = compositeSeed(g, key.publicKey);
    let composite: PointBytes | undefined;
    for (let i = 0; i < blinded.length; i++) {
      const term = g.mul(weight(g, seed, first + i, blinded[i]!, evaluated[i]!), blinded[i]!);
      composite = composite === undefined ? term : g.add(composite, term);
    }
    return { evaluated, composite: composite! };
  };

  return {
    generateKeyPair(): KeyPair {
      const secretKey = g.randomScalar();
      return { secretKey, publicKey: g.mulBase(secretKey) };
    },

    publicKeyOf(secretKey: ScalarBytes): PointBytes {
      secret('secret key', secretKey);
      return g.mulBase(secretKey);
    },

    decodesElement: g.decodesElement,
    elementProblem: (bytes: unknown) => elementProblem(g.decodesElement, bytes),

    /** RFC 9497 §3.3.1 Blind: r = RandomScalar(), B = r * HashToGroup(x). */
    blindBatch(mode: OprfMode, inputs: readonly Uint8Array[], rng?: RandomSource): { blinds: ScalarBytes[]; blinded: PointBytes[] } {
      assertMode(mode);
      checkArray('inputs', inputs);
      inputs.forEach((input, i) => checkInput(`input ${i}`, input));
      const blinds: ScalarBytes[] = [];
      const blinded: PointBytes[] = [];
      for (const input of inputs) {
        const r = g.randomScalar(rng);
        const p = hashToGroup(g, input, mode);
        // RFC 9497 §3.3.1: Blind fails with InvalidInputError when HashToGroup gives the identity.
        if (isZeroBytes(p)) throw new RangeError('input hashes to the identity element (RFC 9497 §3.3.1 InvalidInputError)');
        blinds.push(r);
        blinded.push(g.mul(r, p));
      }
      return { blinds, blinded };
    },

    blindEvaluateBatch(mode: OprfMode, key: KeyPair, blinded: readonly PointBytes[], rng?: RandomSource): { evaluated: PointBytes[]; proof?: ProofBytes } {
      const { evaluated, composite } = evaluateChunk(mode, key, blinded, 0);
      if (mode === 'oprf') return { evaluated };
      return { evaluated, proof: proveComposite(key, [composite!], rng) };
    },

    evaluateChunk,
    proveComposite,

    /** RFC 9497 §3.3.1 / §3.3.2 Finalize; voprf runs §2.2.2 VerifyProof first. */
    finalizeBatch(mode: OprfMode, items: FinalizeItems, publicKey?: PointBytes, proof?: ProofBytes): OutputBytes[] {
      const verify = checkFinalize(g, mode, items, publicKey, proof);
      const { inputs, blinds, blinded, evaluated } = items;
      if (verify) verifyProof(g, verify.publicKey, blinded, evaluated, verify.proof);
      return inputs.map((input, i) => finalHash(g, input, g.mul(g.scalarInvert(blinds[i]!), evaluated[i]!)));
    },

    /** RFC 9497 §3.3.1 Evaluate: Finalize's hash of skS * HashToGroup(x). */
    evaluate(mode: OprfMode, secretKey: ScalarBytes, input: Uint8Array): OutputBytes {
      assertMode(mode);
      secret('secret key', secretKey);
      checkInput('input', input);
      const p = hashToGroup(g, input, mode);
      if (isZeroBytes(p)) throw new RangeError('input hashes to the identity element (RFC 9497 §3.3.1 InvalidInputError)');
      return finalHash(g, input, g.mul(secretKey, p));
    },
  };
}

export type ComposedSuite = ReturnType<typeof composeSuite>;

/**
 * RFC 9497 §4.7.2 RandomScalar from an explicit draw, as @noble/curves maps
 * it: the bytes read little-endian as x, then (x mod (order - 1)) + 1, so the
 * result is never zero and both backends turn one rng into the same scalars.
 */
export function scalarFromDraw(bytes: Uint8Array, order: bigint): ScalarBytes {
  let x = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(bytes[i]!);
  let s = (x % (order - 1n)) + 1n;
  const out = new Uint8Array(SCALAR_BYTES);
  for (let i = 0; i < SCALAR_BYTES; i++, s >>= 8n) out[i] = Number(s & 0xffn);
  return out;
}

/** Draws RANDOM_SCALAR_BYTES from `rng`, checking what it returns. */
export function drawFrom(rng: RandomSource): Uint8Array {
  if (typeof rng !== 'function') throw new TypeError('rng must be a function (bytes: number) => Uint8Array');
  const got = rng(RANDOM_SCALAR_BYTES);
  if (!(got instanceof Uint8Array) || got.length !== RANDOM_SCALAR_BYTES) {
    throw new RangeError(`rng returned ${got instanceof Uint8Array ? got.length : typeof got} bytes, asked for ${RANDOM_SCALAR_BYTES}`);
  }
  return got;
}

/** The element of an all-zero encoding: the identity of ristretto255 (RFC 9496 §4.3.2). */
export function isZeroBytes(bytes: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i]!;
  return acc === 0;
}
