/**
 * The RFC 9497 suite `ristretto255-SHA512` as ONE interface, {@link OprfBackend},
 * with two implementations that must agree byte for byte:
 *
 * - `noble` (shared/noble.ts): @noble/curves' `ristretto255_oprf`, the
 *   reference. Pure JS, runs everywhere, browsers included.
 * - `sodium` (shared/sodium.ts): the same RFC steps composed
 *   (shared/voprf.ts) from libsodium's WASM ristretto255 primitives
 *   (`crypto_core_ristretto255_*`, `crypto_scalarmult_ristretto255*`), about
 *   10x noble per scalar multiplication.
 *
 * shared/backends.ts loads one by name. Everything that crosses the wire is
 * a named byte alias (below), so signatures say what travels.
 *
 * Besides the four RFC operations (Blind, BlindEvaluate, Finalize, Evaluate)
 * the interface splits BlindEvaluate of one VOPRF batch in two, so a server
 * can spread one batch over several threads under ONE proof (RFC 9497
 * §2.2.1 ComputeCompositesFast): each composite weight d_i depends only on
 * the seed (a hash of the public key), the index i and (C_i, D_i), so
 *
 *   {@link OprfBackend.evaluateChunk}   on each thread, for its slice starting at `first`:
 *                                       D_i = k * C_i and the slice's part of M = sum d_i * C_i
 *   {@link OprfBackend.proveComposite}  once: M = sum of the parts, Z = k * M, and the DLEQ
 *                                       proof (RFC 9497 §2.2.1 GenerateProof from M and Z)
 *
 * which gives exactly the reply of {@link OprfBackend.blindEvaluateBatch}
 * for the same proof randomness (tests check it byte for byte).
 *
 * @module
 */
/** A serialized ristretto255 element as it travels: 32 bytes (RFC 9497 §4.1, Ne = 32). */
export type PointBytes = Uint8Array;
/** A serialized scalar: 32 bytes, little-endian, below the group order (RFC 9497 §4.1, Ns = 32). */
export type ScalarBytes = Uint8Array;
/** A DLEQ proof: the two scalars c || s, 64 bytes (RFC 9497 §2.2.1). */
export type ProofBytes = Uint8Array;
/** The Finalize / Evaluate output: SHA-512, 64 bytes (RFC 9497 §4.1, Nh = 64). */
export type OutputBytes = Uint8Array;

export const SUITE = 'ristretto255-SHA512' as const;
export const ELEMENT_BYTES = 32;
export const SCALAR_BYTES = 32;
export const PROOF_BYTES = 2 * SCALAR_BYTES;
export const OUTPUT_BYTES = 64;
/** Longest PrivateInput: inputs are length-prefixed with two bytes (RFC 9497 §1.2, §5.1). */
export const MAX_INPUT_BYTES = 0xffff;
/**
 * Most elements in one batch: the composite index i is I2OSP(i, 2) (RFC 9497
 * §2.2.1), so a batch holds at most 2^16 elements.
 */
export const MAX_BATCH_ELEMENTS = 0x10000;
/**
 * Bytes a RandomScalar draws from an explicit {@link RandomSource}: L = ceil((3 *
 * ceil(log2(order)) / 2) / 8) = 48 for ristretto255, read little-endian as x
 * and mapped to (x mod (order - 1)) + 1 (RFC 9380 §5 / RFC 9497 §4.7.2, as
 * @noble/curves does), so both backends draw the same scalar from the same bytes.
 */
export const RANDOM_SCALAR_BYTES = 48;

export const MODES = ['oprf', 'voprf'] as const;
export type OprfMode = (typeof MODES)[number];

export const BACKENDS = ['noble', 'sodium'] as const;
export type BackendName = (typeof BACKENDS)[number];
/** What servers and the Node client use unless told otherwise: the fast one. */
export const DEFAULT_BACKEND: BackendName = 'sodium';

/** Source of random bytes, asked for `bytes` bytes at a time (tests pass one; default crypto.getRandomValues). */
export type RandomSource = (bytes: number) => Uint8Array;

export interface KeyPair {
  secretKey: ScalarBytes;
  publicKey: PointBytes;
}

/** One VOPRF batch's client-side state and the server's reply, for Finalize. */
export interface FinalizeItems {
  inputs: readonly Uint8Array[];
  blinds: readonly ScalarBytes[];
  blinded: readonly PointBytes[];
  evaluated: readonly PointBytes[];
}

/** What {@link OprfBackend.evaluateChunk} returns for its slice. */
export interface EvaluatedChunk {
  /** D_i = k * C_i, in order. */
  evaluated: PointBytes[];
  /** voprf: sum of d_i * C_i over the slice (RFC 9497 §2.2.1); absent in oprf mode. */
  composite?: PointBytes;
}

/**
 * The suite. Errors follow one rule in every backend, from the same checks
 * (shared/voprf.ts): bad data from the wire is a PcdError (`invalid_element`
 * for a client's blinded element; `malformed_reply` for a server's reply: a
 * wrong count of evaluated elements, an unexpected proof, a bad evaluated
 * element or epoch public key; `proof_invalid` for a voprf reply without a
 * proof or with one that does not verify); a caller's own mistake (wrong mode, bad key, mismatched
 * arrays) is a TypeError or RangeError.
 */
export interface OprfBackend {
  readonly name: BackendName;

  /** RFC 9497 §3.2: a fresh random key pair. */
  generateKeyPair(): KeyPair;
  /** pkS = skS * G (RFC 9497 §3.2). */
  publicKeyOf(secretKey: ScalarBytes): PointBytes;
  /**
   * RFC 9496 §4.3.1 Decode as a yes/no, for 32 bytes: true when they are the
   * canonical encoding of an element. The backend's one decode primitive,
   * what shared/voprf.ts `elementProblem` and `checkElements` are given.
   */
  decodesElement(bytes: Uint8Array): boolean;
  /**
   * What is wrong with `bytes` as an element from the wire, or undefined:
   * shared/voprf.ts `elementProblem` with {@link decodesElement}
   * (DeserializeElement, RFC 9496 §4.3.1 Decode, plus the identity check of
   * RFC 9497 §3.3), the same text from every backend.
   */
  elementProblem(bytes: unknown): string | undefined;

  /** Client: RFC 9497 §3.3.1 Blind per input. */
  blindBatch(mode: OprfMode, inputs: readonly Uint8Array[], rng?: RandomSource): { blinds: ScalarBytes[]; blinded: PointBytes[] };
  /** Server: RFC 9497 §3.3.1 / §3.3.2 BlindEvaluate over one batch; voprf adds ONE proof (§2.2.1). */
  blindEvaluateBatch(mode: OprfMode, key: KeyPair, blinded: readonly PointBytes[], rng?: RandomSource): { evaluated: PointBytes[]; proof?: ProofBytes };
  /** Client: RFC 9497 §3.3.1 / §3.3.2 Finalize over one reply; voprf checks the proof first (§2.2.2). */
  finalizeBatch(mode: OprfMode, items: FinalizeItems, publicKey?: PointBytes, proof?: ProofBytes): OutputBytes[];
  /** Server: RFC 9497 §3.3.1 Evaluate, the output computed directly with the key. */
  evaluate(mode: OprfMode, secretKey: ScalarBytes, input: Uint8Array): OutputBytes;

  /**
   * Server, one slice of a batch: elements `first .. first + blinded.length - 1`.
   * Checks every element (RFC 9497 §3.3); a bad one is `invalid_element`
   * naming its index in the whole batch.
   */
  evaluateChunk(mode: OprfMode, key: KeyPair, blinded: readonly PointBytes[], first: number): EvaluatedChunk;
  /** Server, once per batch (voprf): the batch proof from the slices' composites. */
  proveComposite(key: KeyPair, composites: readonly PointBytes[], rng?: RandomSource): ProofBytes;
}

/** Narrows an unknown value to a backend name, or says what is wrong. */
export function parseBackendName(value: unknown): BackendName {
  if ((BACKENDS as readonly unknown[]).includes(value)) return value as BackendName;
  throw new TypeError(`unknown crypto backend ${JSON.stringify(value)}: expected one of ${BACKENDS.join(', ')}`);
}

