/**
 * RFC 9497 (OPRFs using prime-order groups), suite `ristretto255-SHA512`:
 * the `noble` backend of shared/suite.ts, the reference the `sodium` backend
 * (shared/sodium.ts) must match byte for byte. Every RFC operation is
 * `ristretto255_oprf` from @noble/curves; this module fixes the suite,
 * checks what crosses the wire, and turns failures into {@link PcdError}s.
 * The split-batch steps noble does not expose (evaluateChunk,
 * proveComposite) are composed in shared/voprf.ts from noble's group.
 *
 * ## Flow (RFC 9497 §3.3.1)
 *
 *   client                                   server (holds skS, per epoch)
 *   (r, B) = Blind(x)       -- B ------>
 *                           <-- Z ------    Z = BlindEvaluate(skS, B) = skS * B
 *   tag = Finalize(x, r, Z) = SHA-512(len(x) || x || len(N) || N || "Finalize"),
 *         N = (1/r) * Z = skS * HashToGroup(x)
 *
 * `Evaluate(skS, x)` computes the same tag without blinding: the server uses
 * it to build the directory of tags for the registered numbers.
 *
 * ## Modes
 *
 * - `oprf` (mode 0x00, RFC 9497 §3.3.1): no proof; the client cannot tell
 *   which key the server used.
 * - `voprf` (mode 0x01, RFC 9497 §3.3.2): the server adds a DLEQ proof
 *   (RFC 9497 §2.2) that it used the secret key behind the epoch's published
 *   public key. ONE proof covers all elements of one request (RFC 9497
 *   §2.2.1 batching via ComputeComposites): 64 bytes whatever the batch
 *   size, verified once by the client (§2.2.2). This stops a server from
 *   silently answering one targeted requester under a different key.
 *
 * The mode is part of the context string (RFC 9497 §3.1), so the same key and
 * number give different tags in the two modes: client and server must agree.
 * POPRF (mode 0x02) is not used.
 *
 * ## What it hides, and what it does not
 *
 * - The server only ever sees blinded elements `r * HashToGroup(x)` with a
 *   fresh random `r`: uniformly random group elements, unlinkable to `x` even
 *   for an unbounded server (RFC 9497 Security Considerations, "unconditional
 *   input secrecy"). Neither the request nor the reply reveals the number.
 * - The inputs are phone numbers: low-entropy. Whoever holds the secret key
 *   can enumerate the whole numbering plan and compute every tag, so a tag is
 *   exactly as private as the key. That is why the server builds the
 *   directory itself and why retiring an epoch means destroying its key.
 * - A requester who can call BlindEvaluate can use the server as an oracle:
 *   blinding is free, so it can learn the tag of any number it chooses, one
 *   evaluated element per number. Only rate limiting of evaluate requests
 *   (per account and per IP) bounds that enumeration. It also bounds the
 *   static Diffie-Hellman attack that erodes the key by log2(Q)/2 bits
 *   after Q queries (RFC 9497 Security Considerations, "Static Diffie-Hellman
 *   Attack and Security Limits"). Key rotation per epoch limits both.
 *
 * ## Errors
 *
 * Bad data from the wire is a {@link PcdError}: a blinded element a client
 * sent is `invalid_element`; something wrong in a server's reply (a wrong
 * count of evaluated elements, an unexpected proof, a bad evaluated element
 * or epoch public key) is `malformed_reply`; a voprf reply without a proof,
 * or with one that does not verify, is `proof_invalid`. A caller's own mistake (wrong mode
 * string, bad secret key, arrays of different lengths on the client side,
 * oversized input) is a plain `TypeError` / `RangeError`: it is a bug, not a
 * protocol event. The checks themselves are shared with the sodium backend
 * (shared/voprf.ts: one element check, one list check, one Finalize check);
 * this module gives them noble's decoding.
 *
 * @module
 */
import { ristretto255, ristretto255_hasher, ristretto255_oprf } from '@noble/curves/ed25519.js';
import { getMinHashLength } from '@noble/curves/abstract/modular.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { ErrorCode, PcdError } from './errors.ts';
import {
  OUTPUT_BYTES,
  RANDOM_SCALAR_BYTES,
  SCALAR_BYTES,
  SUITE,
  type KeyPair,
  type OprfBackend,
  type OprfMode,
  type OutputBytes,
  type PointBytes,
  type ProofBytes,
  type RandomSource,
  type ScalarBytes,
} from './suite.ts';
import {
  asSha512,
  assertMode,
  checkArray,
  checkElements,
  checkFinalize,
  checkInput,
  checkScalar,
  composeSuite,
  drawFrom,
  elementProblem,
  scalarFromDraw,
  type GroupOps,
  type WireDecoding,
} from './voprf.ts';

const { Point } = ristretto255;
const { Fn } = Point;

if (ristretto255_oprf.name !== SUITE) {
  throw new Error(`@noble/curves ristretto255_oprf is suite ${ristretto255_oprf.name}, expected ${SUITE}`);
}

// noble's RandomScalar draws L = ceil((3 * ceil(log2(order)) / 2) / 8) bytes (RFC 9497 §4.7.2): 48, as shared/suite.ts states.
if (getMinHashLength(Fn.ORDER) !== RANDOM_SCALAR_BYTES) {
  throw new Error(`@noble/curves draws ${getMinHashLength(Fn.ORDER)} bytes per random scalar, shared/suite.ts says ${RANDOM_SCALAR_BYTES}`);
}

// ---------------------------------------------------------------------------
// noble's suite, with the one function its declarations leave out

/** The part of one noble mode object this module calls, `evaluate` included. */
interface NobleMode {
  generateKeyPair(): { secretKey: Uint8Array; publicKey: Uint8Array };
  deriveKeyPair(seed: Uint8Array, keyInfo: Uint8Array): { secretKey: Uint8Array; publicKey: Uint8Array };
  blind(input: Uint8Array, rng?: NobleRng): { blind: Uint8Array; blinded: Uint8Array };
  /** RFC 9497 §3.3.1 Evaluate: present at run time, absent from noble's .d.ts. */
  evaluate(secretKey: Uint8Array, input: Uint8Array): Uint8Array;
}
type NobleRng = NonNullable<Parameters<typeof ristretto255_oprf.oprf.blind>[1]>;

function withEvaluate(name: OprfMode, mode: object): (secretKey: Uint8Array, input: Uint8Array) => Uint8Array {
  const fn: unknown = Reflect.get(mode, 'evaluate');
  if (typeof fn !== 'function') {
    throw new Error(`@noble/curves ristretto255_oprf.${name}.evaluate is missing: this module needs RFC 9497 Evaluate`);
  }
  return (secretKey, input) => {
    const out: unknown = Reflect.apply(fn, mode, [secretKey, input]);
    if (!(out instanceof Uint8Array) || out.length !== OUTPUT_BYTES) {
      throw new Error(`@noble/curves ristretto255_oprf.${name}.evaluate returned no ${OUTPUT_BYTES}-byte output`);
    }
    return out;
  };
}

const NOBLE: Readonly<Record<OprfMode, NobleMode>> = {
  oprf: { ...bindCommon(ristretto255_oprf.oprf), evaluate: withEvaluate('oprf', ristretto255_oprf.oprf) },
  voprf: { ...bindCommon(ristretto255_oprf.voprf), evaluate: withEvaluate('voprf', ristretto255_oprf.voprf) },
};

function bindCommon(m: typeof ristretto255_oprf.oprf | typeof ristretto255_oprf.voprf): Omit<NobleMode, 'evaluate'> {
  return {
    generateKeyPair: () => m.generateKeyPair(),
    deriveKeyPair: (seed, keyInfo) => m.deriveKeyPair(seed, keyInfo),
    blind: (input, rng) => m.blind(input, rng),
  };
}

/** Adapts an {@link RandomSource} to noble's signature and checks what it returns. */
function toNobleRng(rng: RandomSource | undefined): NobleRng | undefined {
  if (rng === undefined) return undefined; // noble's default: crypto.getRandomValues
  if (typeof rng !== 'function') throw new TypeError('rng must be a function (bytes: number) => Uint8Array');
  return (bytesLength?: number) => {
    const n = bytesLength ?? RANDOM_SCALAR_BYTES;
    const out = rng(n);
    if (!(out instanceof Uint8Array) || out.length !== n) {
      throw new RangeError(`rng returned ${out instanceof Uint8Array ? out.length : typeof out} bytes, asked for ${n}`);
    }
    return Uint8Array.from(out);
  };
}

// ---------------------------------------------------------------------------
// Input validation: the shared wire checks (shared/voprf.ts) over noble's decoding

/** noble's decoding primitives: all this backend adds to the wire checks. */
const nobleDecoding: WireDecoding = {
  // RFC 9496 §4.3.1 Decode: RistrettoPoint.fromBytes throws on anything but a canonical encoding.
  decodesElement(bytes) {
    try {
      Point.fromBytes(bytes);
      return true;
    } catch {
      return false;
    }
  },
  isCanonicalScalar(bytes) {
    try {
      Fn.fromBytes(bytes);
      return true;
    } catch {
      return false;
    }
  },
};

/** A secret scalar of our own (key, blind): canonical, nonzero (RFC 9497 §4.1 DeserializeScalar). */
const checkSecret = (what: string, bytes: unknown): void => checkScalar(nobleDecoding.isCanonicalScalar, what, bytes);

/** {@link elementProblem} (shared/voprf.ts) with noble's decoding. */
const nobleElementProblem = (bytes: unknown): string | undefined => elementProblem(nobleDecoding.decodesElement, bytes);

// ---------------------------------------------------------------------------
// Keys (RFC 9497 §3.2)

/** A fresh random key pair; the same for both modes (RFC 9497 §3.2). */
export function generateKeyPair(mode: OprfMode): KeyPair {
  assertMode(mode);
  const { secretKey, publicKey } = NOBLE[mode].generateKeyPair();
  return { secretKey, publicKey };
}

/**
 * RFC 9497 §3.2.1 DeriveKeyPair: `seed` is 32 secret random bytes, `info` a
 * public label (e.g. the epoch). The mode is part of the derivation.
 */
export function deriveKeyPair(mode: OprfMode, seed: Uint8Array, info: Uint8Array): KeyPair {
  assertMode(mode);
  if (!(seed instanceof Uint8Array) || seed.length !== SCALAR_BYTES) {
    throw new RangeError(`seed: expected ${SCALAR_BYTES} bytes (RFC 9497 §3.2.1 seed[Ns])`);
  }
  checkInput('info', info);
  const { secretKey, publicKey } = NOBLE[mode].deriveKeyPair(seed, info);
  return { secretKey, publicKey };
}

/** pkS = skS * G (RFC 9497 §3.2): to publish a loaded key, or check a stored pair. */
export function publicKeyOf(secretKey: ScalarBytes): PointBytes {
  checkSecret('secret key', secretKey);
  return Point.BASE.multiply(Fn.fromBytes(secretKey)).toBytes();
}

// ---------------------------------------------------------------------------
// Online protocol (RFC 9497 §3.3)

/**
 * Client, step 1: RFC 9497 §3.3.1 Blind, once per input. Keep `blinds`
 * secret and local; send `blinded`. `rng` is for tests (see {@link rngForScalars}).
 */
export function blindBatch(
  mode: OprfMode,
  inputs: readonly Uint8Array[],
  rng?: RandomSource,
): { blinds: ScalarBytes[]; blinded: PointBytes[] } {
  assertMode(mode);
  checkArray('inputs', inputs);
  inputs.forEach((input, i) => checkInput(`input ${i}`, input));
  const nobleRng = toNobleRng(rng);
  const blinds: ScalarBytes[] = [];
  const blinded: PointBytes[] = [];
  for (const input of inputs) {
    const r = NOBLE[mode].blind(input, nobleRng);
    blinds.push(r.blind);
    blinded.push(r.blinded);
  }
  return { blinds, blinded };
}

/**
 * Server: RFC 9497 §3.3.1 / §3.3.2 BlindEvaluate over one request. Every
 * element is validated first (RFC 9497 §3.3), so a bad one is reported with
 * its index and nothing is evaluated. In `voprf` mode the reply carries ONE
 * proof for the whole batch (RFC 9497 §2.2.1); `rng` draws its nonce and is
 * unused in `oprf` mode.
 *
 * `key.publicKey` must belong to `key.secretKey` (check once at load time
 * with {@link publicKeyOf}); a mismatched pair yields proofs no client accepts.
 */
export function blindEvaluateBatch(
  mode: OprfMode,
  key: KeyPair,
  blinded: readonly PointBytes[],
  rng?: RandomSource,
): { evaluated: PointBytes[]; proof?: ProofBytes } {
  assertMode(mode);
  checkArray('blinded', blinded);
  if (blinded.length === 0) throw new PcdError(ErrorCode.BadRequest, 'the batch holds no blinded element');
  checkSecret('secret key', key.secretKey);
  // RFC 9497 §3.3: every element from the wire is checked before any is evaluated.
  checkElements(nobleDecoding.decodesElement, blinded, ErrorCode.InvalidElement, 'blinded element');

  if (mode === 'oprf') {
    const evaluated = blinded.map((b) => ristretto255_oprf.oprf.blindEvaluate(key.secretKey, b));
    return { evaluated };
  }
  const pkProblem = nobleElementProblem(key.publicKey);
  if (pkProblem !== undefined) throw new RangeError(`public key: ${pkProblem}`);
  const { evaluated, proof } = ristretto255_oprf.voprf.blindEvaluateBatch(
    key.secretKey,
    key.publicKey,
    [...blinded],
    toNobleRng(rng),
  );
  return { evaluated, proof };
}

/**
 * Client, step 3: RFC 9497 §3.3.1 / §3.3.2 Finalize over one reply. In
 * `voprf` mode the batch proof is checked first (RFC 9497 §2.2.2
 * VerifyProof) against `publicKey`, the epoch's published key; no output is
 * returned unless it verifies. `publicKey` is ignored in `oprf` mode.
 */
export function finalizeBatch(
  mode: OprfMode,
  items: {
    inputs: readonly Uint8Array[];
    blinds: readonly ScalarBytes[];
    blinded: readonly PointBytes[];
    evaluated: readonly PointBytes[];
  },
  publicKey?: PointBytes,
  proof?: ProofBytes,
): OutputBytes[] {
  const verify = checkFinalize(nobleDecoding, mode, items, publicKey, proof);
  const { inputs, blinds, blinded, evaluated } = items;
  if (inputs.length === 0) return [];
  if (!verify) {
    return inputs.map((input, i) =>
      ristretto255_oprf.oprf.finalize(input, blinds[i] as ScalarBytes, evaluated[i] as PointBytes),
    );
  }
  const batch = inputs.map((input, i) => ({
    input,
    blind: blinds[i] as ScalarBytes,
    blinded: blinded[i] as PointBytes,
    evaluated: evaluated[i] as PointBytes,
  }));
  try {
    return ristretto255_oprf.voprf.finalizeBatch(batch, verify.publicKey, verify.proof);
  } catch (cause) {
    // Everything but the proof was validated above, so what fails here is the proof:
    // a non-canonical c or s (RFC 9497 §4.1 DeserializeScalar) or VerifyProof (§2.2.2).
    throw new PcdError(
      ErrorCode.ProofInvalid,
      `the server's proof does not verify against the epoch public key (RFC 9497 §2.2.2): ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
  }
}

/**
 * Server: RFC 9497 §3.3.1 Evaluate, the tag of `input` computed directly with
 * the secret key. Equals what a client gets from Blind/BlindEvaluate/Finalize
 * in the same mode; used to build the directory of tags.
 */
export function evaluate(mode: OprfMode, secretKey: ScalarBytes, input: Uint8Array): OutputBytes {
  assertMode(mode);
  checkSecret('secret key', secretKey);
  checkInput('input', input);
  return NOBLE[mode].evaluate(secretKey, input);
}

/**
 * True when `bytes` is a ristretto255 element acceptable from the wire:
 * 32 bytes, a canonical encoding, not the identity (RFC 9497 §3.3, §4.1).
 */
export function isValidElement(bytes: Uint8Array): boolean {
  return nobleElementProblem(bytes) === undefined;
}

/**
 * A deterministic {@link RandomSource} for tests that makes noble's RandomScalar return
 * `scalars` in order (RFC 9497 Appendix A fixes Blind and ProofRandomScalar).
 * noble reads {@link RANDOM_SCALAR_BYTES} (48) bytes, reads them little-endian
 * as x and uses (x mod (n - 1)) + 1 (RFC 9497 §4.7.2, shifted off zero), so to
 * get scalar b each call returns the 48-byte little-endian encoding of b - 1.
 * Throws when exhausted or asked for any other length.
 */
export function rngForScalars(scalars: readonly Uint8Array[]): RandomSource {
  checkArray('scalars', scalars);
  const draws = scalars.map((s, i) => {
    checkSecret(`scalar ${i}`, s);
    return numberToBytesLE(Fn.fromBytes(s) - 1n, RANDOM_SCALAR_BYTES);
  });
  let next = 0;
  return (bytes: number) => {
    if (bytes !== RANDOM_SCALAR_BYTES) {
      throw new RangeError(`rngForScalars: asked for ${bytes} bytes, it only answers ${RANDOM_SCALAR_BYTES}`);
    }
    const draw = draws[next];
    if (draw === undefined) throw new RangeError(`rngForScalars: all ${draws.length} scalars used`);
    next += 1;
    return draw.slice();
  };
}

// ---------------------------------------------------------------------------
// The noble backend (shared/suite.ts)

/**
 * ristretto255 from @noble/curves as {@link GroupOps}, for the split-batch
 * steps (evaluateChunk, proveComposite) that noble's OPRF module does not
 * expose: shared/voprf.ts composes them from these primitives.
 */
const deriveToCurve = ristretto255_hasher.deriveToCurve;
if (typeof deriveToCurve !== 'function') throw new Error('@noble/curves ristretto255_hasher.deriveToCurve (RFC 9496 §4.3.4) is missing');

const nobleGroup: GroupOps = {
  sha512: asSha512((m) => sha512(m)),
  fromUniform: (bytes) => deriveToCurve(bytes).toBytes(),
  reduce64: (bytes) => Fn.toBytes(Fn.create(bytesToNumberLE(bytes))),
  mul: (scalar, point) => Point.fromBytes(point).multiply(Fn.fromBytes(scalar)).toBytes(),
  mulBase: (scalar) => Point.BASE.multiply(Fn.fromBytes(scalar)).toBytes(),
  add: (a, b) => Point.fromBytes(a).add(Point.fromBytes(b)).toBytes(),
  scalarMul: (a, b) => Fn.toBytes(Fn.mul(Fn.fromBytes(a), Fn.fromBytes(b))),
  scalarSub: (a, b) => Fn.toBytes(Fn.sub(Fn.fromBytes(a), Fn.fromBytes(b))),
  scalarInvert: (a) => Fn.toBytes(Fn.inv(Fn.fromBytes(a))),
  ...nobleDecoding,
  randomScalar: (rng) => scalarFromDraw(drawFrom(rng ?? ((n) => crypto.getRandomValues(new Uint8Array(n)))), Fn.ORDER),
};

const nobleComposed = composeSuite(nobleGroup);

/**
 * The reference backend: every RFC operation is @noble/curves'
 * `ristretto255_oprf` (the functions above); only the split-batch steps are
 * composed (shared/voprf.ts) from noble's group primitives.
 */
export const nobleBackend: OprfBackend = {
  name: 'noble',
  generateKeyPair: () => generateKeyPair('voprf'),
  publicKeyOf,
  decodesElement: nobleDecoding.decodesElement,
  elementProblem: nobleElementProblem,
  blindBatch,
  blindEvaluateBatch,
  finalizeBatch,
  evaluate,
  evaluateChunk: nobleComposed.evaluateChunk,
  proveComposite: nobleComposed.proveComposite,
};
