/**
 * One batch of the evaluator pool (server/blinded/pool.ts), apart from who
 * evaluates it: its state while its chunks are out, a chunk packed for a
 * worker and evaluated inline in the worker's layout, the chunks' results
 * put back in order, the error a bad element gets (the shared list check,
 * shared/voprf.ts, naming the request field `elements[i]`), and the reply
 * with the batch's one proof (RFC 9497 §2.2.1: the worker's for a batch of
 * one chunk, else proveComposite from the chunks' composites).
 *
 * The layout of a chunk's result, from a worker or inline:
 * count x 32 evaluated elements [|| 32-byte composite (voprf)] or, for a
 * voprf batch of one chunk proven by its worker, [|| 64-byte proof].
 */
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { ELEMENT_BYTES, PROOF_BYTES, type OprfBackend, type PointBytes, type ProofBytes, type RandomSource } from '../../shared/suite.ts';
import { checkElements } from '../../shared/voprf.ts';
import type { Chunk, RequesterKey } from './fair.ts';
import type { HeldKey } from './pool-workers.ts';

/** The result of one batch: what the evaluate reply carries. */
export interface EvaluatedBatch {
  evaluated: PointBytes[];
  proof?: ProofBytes;
}

export interface Batch {
  readonly epoch: number;
  readonly requester: RequesterKey;
  readonly held: HeldKey;
  readonly elements: readonly Uint8Array[];
  /** Evaluated elements, n x 32, filled chunk by chunk. */
  readonly out: Uint8Array<ArrayBuffer>;
  /** voprf: each chunk's composite part, by its first index. */
  readonly composites: Map<number, PointBytes>;
  readonly rng: RandomSource | undefined;
  /** voprf, a batch of one chunk: the proof its worker computed. */
  proof?: ProofBytes;
  /** Elements not yet evaluated. */
  remaining: number;
  /** Chunks handed out and not yet back. */
  running: number;
  /** The lowest failing chunk's error, while its batch's running chunks finish. */
  failure?: { first: number; error: PcdError };
  settled: boolean;
  resolve(r: EvaluatedBatch): void;
  reject(e: unknown): void;
}

/** A new batch of `elements` under `held`, nothing evaluated yet. */
export function newBatch(
  epoch: number,
  held: HeldKey,
  elements: readonly Uint8Array[],
  options: { requester: RequesterKey; rng: RandomSource | undefined },
  resolve: (r: EvaluatedBatch) => void,
  reject: (e: unknown) => void,
): Batch {
  return {
    epoch,
    requester: options.requester,
    held,
    elements,
    out: new Uint8Array(elements.length * ELEMENT_BYTES),
    composites: new Map(),
    rng: options.rng,
    remaining: elements.length,
    running: 0,
    settled: false,
    resolve,
    reject,
  };
}

/**
 * True when the worker evaluating `chunk` should prove it too: a voprf
 * batch that is one chunk (no crypto on the main thread), unless a test rng
 * keeps the proof here, where the rng is.
 */
export function workerProves(chunk: Chunk<Batch>): boolean {
  const batch = chunk.item;
  return batch.held.mode === 'voprf' && batch.rng === undefined && chunk.count === batch.elements.length;
}

/** The chunk's elements in one new buffer, to transfer; undefined when one is not 32 bytes (see {@link elementError}). */
export function packChunk(chunk: Chunk<Batch>): Uint8Array<ArrayBuffer> | undefined {
  const { item: batch, first, count } = chunk;
  const packed = new Uint8Array(count * ELEMENT_BYTES);
  for (let i = 0; i < count; i++) {
    const el = batch.elements[first + i]!;
    if (el.length !== ELEMENT_BYTES) return undefined;
    packed.set(el, i * ELEMENT_BYTES);
  }
  return packed;
}

/** evaluateChunk on this thread, the result in a worker's layout; throws what the backend throws. */
export function evaluateInline(backend: OprfBackend, chunk: Chunk<Batch>): Uint8Array {
  const { item: batch, first, count } = chunk;
  const r = backend.evaluateChunk(batch.held.mode, batch.held.key, batch.elements.slice(first, first + count), first);
  const out = new Uint8Array(count * ELEMENT_BYTES + (r.composite ? ELEMENT_BYTES : 0));
  r.evaluated.forEach((d, i) => out.set(d, i * ELEMENT_BYTES));
  if (r.composite) out.set(r.composite, count * ELEMENT_BYTES);
  return out;
}

/**
 * Puts a chunk's result into its batch (evaluated elements in place, the
 * composite part or the worker's proof aside) and counts its elements done.
 * False, and nothing stored, when `out` is not the layout of the module header.
 */
export function storeChunk(chunk: Chunk<Batch>, out: Uint8Array): boolean {
  const batch = chunk.item;
  const bytes = chunk.count * ELEMENT_BYTES;
  const voprf = batch.held.mode === 'voprf';
  const proven = voprf && out.length === bytes + PROOF_BYTES && chunk.count === batch.elements.length;
  if (!proven && out.length !== bytes + (voprf ? ELEMENT_BYTES : 0)) return false;
  batch.out.set(out.subarray(0, bytes), chunk.first * ELEMENT_BYTES);
  if (proven) batch.proof = out.subarray(bytes);
  else if (voprf) batch.composites.set(chunk.first, out.subarray(bytes));
  batch.remaining -= chunk.count;
  return true;
}

/**
 * The failing chunk's first bad element as the client sent it
 * (`elements[i]`): found again here, on the failure path only, by the one
 * list check (shared/voprf.ts checkElements, with the backend's decoding),
 * so the message is the same whichever thread or backend found it.
 * Undefined when every element of the chunk is fine.
 */
export function elementError(backend: OprfBackend, chunk: Chunk<Batch>): PcdError | undefined {
  const { item: batch, first, count } = chunk;
  try {
    checkElements(backend.decodesElement, batch.elements.slice(first, first + count), ErrorCode.InvalidElement, (i) => `elements[${i}]`, first);
  } catch (e) {
    if (!(e instanceof PcdError)) throw e;
    return new PcdError(e.code, `${e.message}; nothing was evaluated (RFC 9497 §3.3)`);
  }
  return undefined;
}

/**
 * The reply of a batch whose chunks are all stored. voprf: the worker's
 * proof, else RFC 9497 §2.2.1 from the parts in order (M = their sum,
 * Z = k * M, one DLEQ proof for the whole batch); throws what
 * proveComposite throws.
 */
export function batchReply(backend: OprfBackend, batch: Batch): EvaluatedBatch {
  let proof: ProofBytes | undefined = batch.proof;
  if (batch.held.mode === 'voprf' && proof === undefined) {
    const parts = [...batch.composites.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c);
    proof = backend.proveComposite(batch.held.key, parts, batch.rng);
  }
  const n = batch.elements.length;
  const evaluated = Array.from({ length: n }, (_, i) => batch.out.subarray(i * ELEMENT_BYTES, (i + 1) * ELEMENT_BYTES));
  return proof ? { evaluated, proof } : { evaluated };
}
