/**
 * Crypto per operation for each suite backend (shared/suite.ts: `noble`, the
 * pure-JS reference, and `sodium`, libsodium's WASM ristretto255), side by
 * side: the client's blind and finalize (batch proof verify included, up to
 * a sync of 1,000 numbers in one batch), the server's BlindEvaluate per
 * element at several batch sizes in both modes (the one DLEQ proof per batch
 * amortised over its elements), the split-batch pair (evaluateChunk on
 * slices + proveComposite: what the evaluator pool runs across threads) and
 * Evaluate (the directory build's cost per registered number). The backends
 * of one operation are timed in alternation, so their ratio shares the
 * machine's noise. Every mark goes through the backend interface the server
 * and the client call.
 *
 * Beside them, a peer measured in the same run: OpenMined psi.js server
 * `processRequest` and client `createRequest` per item for a request of 100
 * (bench/psi.ts), timed in alternation with BlindEvaluate of 100. And the
 * backend-independent work: SHA-256 per number (the hashed design), the
 * bucket id, the local bucket search, number normalisation.
 */
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { Bucket, bucketOf, DEFAULT_TAG_BYTES, truncateTag } from '../shared/buckets.ts';
import { loadBackend } from '../shared/backends.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/hashed.ts';
import { MODES, type BackendName, type OprfBackend, type OprfMode, type PointBytes } from '../shared/suite.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { loadPsi, preparePsi, PSI_EXTERNAL } from './psi.ts';
import type { CryptoImpl, CryptoMark, ExternalReference } from './results.ts';
import { timeInterleaved, type TimingBudget } from './stats.ts';

export interface CryptoConfig {
  /** Time budget per mark and minimum samples. */
  budget: TimingBudget;
  /** Budget for marks whose one call takes long (big batches). */
  bigBudget: TimingBudget;
  /** Batch sizes for BlindEvaluate. */
  batches: number[];
  /** Batch sizes for Finalize (a contact sync of 1,000 is one batch of 1,000). */
  finalizeBatches: number[];
  /** The split-batch pair: a batch of `elements` cut into `chunks` slices. */
  split: { elements: number; chunks: number };
  /** Items in the psi.js request (the comparison is at the same size as one BlindEvaluate batch). */
  psiItems: number;
  /** Entries of the bucket the local search runs on. */
  bucketEntries: number;
  /** Backends measured side by side (default both). */
  backends?: readonly BackendName[];
}

export interface CryptoContext {
  log: (line: string) => void;
}

export interface CryptoOutcome {
  marks: CryptoMark[];
  references: ExternalReference[];
  notes: string[];
  /** What each implementation is (name and version), for the report. */
  implementations: Record<string, string>;
}

interface Prepared {
  numbers: E164[];
  inputs: Uint8Array[];
  national: { text: string; region: string }[];
}

function prepare(count: number): Prepared {
  const numbers = sampleNumbers({ count, seed: 'pcd-bench-crypto' });
  const national = numbers.flatMap((n) => {
    const p = parsePhoneNumberFromString(n);
    return p?.country ? [{ text: p.formatNational(), region: p.country }] : [];
  });
  return { numbers, inputs: numbers.map((n) => utf8ToBytes(n)), national };
}

/** Cycles through a list: a fresh input per call, so no cache along the way sees repeats often. */
function cycler<T>(list: readonly T[]): () => T {
  if (list.length === 0) throw new Error('cycler over an empty list');
  let i = 0;
  return () => {
    const v = list[i]!;
    i = i + 1 === list.length ? 0 : i + 1;
    return v;
  };
}

/** The mark's name: the operation, then who computed it (none for backend-independent work). */
export function cryptoMarkName(operation: string, impl: CryptoImpl): string {
  return impl === 'any' || operation.startsWith(`${impl} `) ? operation : `${operation} [${impl}]`;
}

export async function runCrypto(config: CryptoConfig, ctx: CryptoContext): Promise<CryptoOutcome> {
  const maxBatch = Math.max(...config.batches, ...config.finalizeBatches, config.split.elements);
  const prepared = prepare(Math.max(200, maxBatch, config.psiItems));
  const { numbers, inputs } = prepared;
  const marks: CryptoMark[] = [];
  const notes: string[] = [];
  const references: ExternalReference[] = [];
  const implementations: Record<string, string> = {};

  const backends: OprfBackend[] = [];
  for (const name of config.backends ?? (['noble', 'sodium'] as const)) {
    const t0 = performance.now();
    backends.push(await loadBackend(name));
    ctx.log(`  backend ${name} loaded in ${(performance.now() - t0).toFixed(0)} ms`);
  }

  interface Spec {
    operation: string;
    impl: CryptoImpl;
    op: string;
    batch?: number;
    mode?: OprfMode;
    big?: boolean;
  }
  /** Times marks in alternation (see timeInterleaved): the pairs a ratio is formed from share the machine's noise. */
  const add = async (...entries: [Spec, () => unknown][]): Promise<void> => {
    const budget = entries.some(([spec]) => spec.big) ? config.bigBudget : config.budget;
    const timed = await timeInterleaved(
      entries.map(([, fn]) => fn),
      budget,
    );
    entries.forEach(([spec], i) => {
      const t = timed[i]!;
      const batch = spec.batch ?? 1;
      const mark: CryptoMark = {
        section: 'crypto',
        name: cryptoMarkName(spec.operation, spec.impl),
        operation: spec.operation,
        op: spec.op,
        backend: spec.impl,
        ...(spec.mode ? { mode: spec.mode } : {}),
        batch,
        ...t,
        itemsPerSec: t.opsPerSec * batch,
        usPerItem: t.meanUs / batch,
      };
      marks.push(mark);
      ctx.log(
        `  ${mark.name.padEnd(62)} x ${formatRate(mark.itemsPerSec)} ${mark.op}s/sec @ ${mark.usPerItem.toFixed(1)} µs/${mark.op}` +
          ` (${mark.ops} ops, p99 ${(mark.p99Us / 1000).toFixed(2)} ms/op)`,
      );
    });
  };
  /** One operation, every backend, in alternation. */
  const perBackend = (spec: Omit<Spec, 'impl'>, make: (b: OprfBackend) => () => unknown): [Spec, () => unknown][] =>
    backends.map((b) => [{ ...spec, impl: b.name }, make(b)]);

  // ------------------------------------------------------------ normalisation and hashing (no backend)
  const nextE164 = cycler(numbers as readonly string[]);
  await add([{ operation: 'normalizeNumber (E.164 input)', impl: 'any', op: 'number' }, () => normalizeNumber(nextE164())]);
  if (prepared.national.length > 0) {
    const nextNational = cycler(prepared.national);
    await add([
      { operation: 'normalizeNumber (national input + region)', impl: 'any', op: 'number' },
      () => {
        const n = nextNational();
        return normalizeNumber(n.text, n.region);
      },
    ]);
  }
  const nextNumber = cycler(numbers);
  await add([{ operation: 'blinded: bucket id (b = 8)', impl: 'any', op: 'number' }, () => bucketOf(nextNumber(), 8)]);
  await add([{ operation: 'hashed: SHA-256 of a number', impl: 'any', op: 'number' }, () => hashNumber(nextNumber())]);

  // ------------------------------------------------------------ OPRF, client and server, per backend
  const keys = new Map(backends.map((b) => [b.name, b.generateKeyPair()]));
  const keyOf = (b: OprfBackend) => keys.get(b.name)!;
  const nextInput = cycler(inputs);
  for (const mode of MODES) {
    await add(...perBackend({ operation: `client blind (${mode})`, op: 'number', mode }, (b) => () => b.blindBatch(mode, [nextInput()]).blinded[0]));
  }
  await add(...perBackend({ operation: 'server Evaluate: directory build (voprf)', op: 'number', mode: 'voprf' }, (b) => () => b.evaluate('voprf', keyOf(b).secretKey, nextInput())));

  // Batches: the same blinded elements for every call of one batch size (the
  // server cannot tell; the proof nonce is fresh per call anyway). Elements
  // are backend-independent bytes: one blinding serves both backends.
  const ref = backends[0]!;
  const blindedBy = new Map<OprfMode, { blinds: Uint8Array[]; blinded: PointBytes[] }>();
  for (const mode of MODES) blindedBy.set(mode, ref.blindBatch(mode, inputs.slice(0, maxBatch)));

  // psi.js, loaded now so that its request of psiItems is timed beside BlindEvaluate of the same size.
  const psi = await loadPsi();
  const psiInputs = numbers.slice(0, config.psiItems) as string[];
  let psiRun: ReturnType<typeof preparePsi> | undefined;
  if (psi.ok) {
    try {
      psiRun = preparePsi(psi.psi, psiInputs);
      implementations['psi.js'] = `@openmined/psi.js ${psi.version} (ECDH PSI over P-256, WASM), from ${psi.from}, loaded in ${psi.loadMs.toFixed(0)} ms`;
      ctx.log(`  psi.js ${psi.version} loaded from ${psi.from} (${psi.loadMs.toFixed(0)} ms), self-check passed`);
    } catch (e) {
      const why = `psi.js loaded but its self-check failed: ${e instanceof Error ? e.message : String(e)}`;
      references.push({ ...PSI_EXTERNAL, why });
      ctx.log(`  ${why}`);
    }
  } else {
    references.push({ ...PSI_EXTERNAL, why: psi.why });
    ctx.log(`  psi.js not measured: ${psi.why}`);
  }

  // voprf and oprf at each batch size, every backend in alternation: across modes the ratio is the
  // proof's cost, across backends the speed-up. psi.js joins the batch of its size.
  for (const n of config.batches) {
    for (const mode of ['voprf', 'oprf'] as const) {
      const blinded = blindedBy.get(mode)!.blinded.slice(0, n);
      const entries = perBackend(
        { operation: `server BlindEvaluate (${mode}, batch ${n})`, op: 'element', batch: n, mode, big: n >= 100 },
        (b) => () => b.blindEvaluateBatch(mode, keyOf(b), blinded).evaluated,
      );
      if (psiRun && mode === 'voprf' && n === config.psiItems) {
        const { server, client, request } = psiRun;
        entries.push(
          [{ operation: `psi.js server processRequest (batch ${n})`, impl: 'psi.js', op: 'item', batch: n, big: true }, () => server.processRequest(request).serializeBinary()],
          [{ operation: `psi.js client createRequest (batch ${n})`, impl: 'psi.js', op: 'item', batch: n, big: true }, () => client.createRequest(psiInputs).serializeBinary()],
        );
      }
      await add(...entries);
    }
  }
  if (psiRun && !config.batches.includes(config.psiItems)) {
    const { server, client, request } = psiRun;
    const n = config.psiItems;
    const blinded = blindedBy.get('voprf')!.blinded.slice(0, n);
    await add(
      ...perBackend({ operation: `server BlindEvaluate (voprf, batch ${n})`, op: 'element', batch: n, mode: 'voprf', big: true }, (b) => () => b.blindEvaluateBatch('voprf', keyOf(b), blinded).evaluated),
      [{ operation: `psi.js server processRequest (batch ${n})`, impl: 'psi.js', op: 'item', batch: n, big: true }, () => server.processRequest(request).serializeBinary()],
      [{ operation: `psi.js client createRequest (batch ${n})`, impl: 'psi.js', op: 'item', batch: n, big: true }, () => client.createRequest(psiInputs).serializeBinary()],
    );
  }
  psiRun?.close();

  // The split-batch pair, as the evaluator pool runs it (here on one thread): its overhead over one call.
  {
    const { elements: n, chunks } = config.split;
    const blinded = blindedBy.get('voprf')!.blinded.slice(0, n);
    const size = Math.ceil(n / chunks);
    await add(
      ...perBackend({ operation: `server evaluateChunk x${chunks} + proveComposite (voprf, batch ${n})`, op: 'element', batch: n, mode: 'voprf', big: n >= 100 }, (b) => () => {
        const key = keyOf(b);
        const parts = [];
        for (let first = 0; first < n; first += size) parts.push(b.evaluateChunk('voprf', key, blinded.slice(first, first + size), first));
        return b.proveComposite(
          key,
          parts.map((p) => p.composite!),
        );
      }),
    );
  }

  for (const n of config.finalizeBatches) {
    for (const mode of ['voprf', 'oprf'] as const) {
      const pool = blindedBy.get(mode)!;
      const blinded = pool.blinded.slice(0, n);
      await add(
        ...perBackend(
          { operation: `client finalize (${mode}, batch ${n}${mode === 'voprf' ? ', proof verified' : ''})`, op: 'number', batch: n, mode, big: n >= 100 },
          (b) => {
            const reply = b.blindEvaluateBatch(mode, keyOf(b), blinded);
            const items = { inputs: inputs.slice(0, n), blinds: pool.blinds.slice(0, n), blinded, evaluated: reply.evaluated };
            return () => b.finalizeBatch(mode, items, keyOf(b).publicKey, reply.proof);
          },
        ),
      );
    }
  }

  // ------------------------------------------------------------ the client's local search
  const entries = Array.from({ length: config.bucketEntries }, (_, i) => {
    const tag = new Uint8Array(DEFAULT_TAG_BYTES);
    new DataView(tag.buffer).setUint32(0, Math.imul(i + 1, 2654435761) >>> 0);
    new DataView(tag.buffer).setUint32(4, i);
    return { tag, mask: 1 };
  });
  const bucket = Bucket.build(entries, DEFAULT_TAG_BYTES);
  const probes = inputs.slice(0, 200).map((x) => truncateTag(ref.evaluate('voprf', keyOf(ref).secretKey, x), DEFAULT_TAG_BYTES));
  const nextProbe = cycler(probes);
  await add([{ operation: `client bucket search (${config.bucketEntries} tags)`, impl: 'any', op: 'number' }, () => bucket.lookup(nextProbe())]);

  notes.push(
    `Crypto: backends ${backends.map((b) => b.name).join(' and ')} through the one suite interface (shared/suite.ts); the backends of one operation were timed in alternation (one sample each in turn), so "sodium / noble" ratios share the machine's noise. Times are per number or element on one core; "calls timed" is the sample count.`,
  );
  if (psiRun) {
    notes.push(
      `Crypto: psi.js is OpenMined's ECDH PSI (one P-256 scalar multiplication per item on each side, no proof): its processRequest of ${config.psiItems} items was timed in alternation with BlindEvaluate of ${config.psiItems} elements, on a prepared request object (no protobuf decode timed, as BlindEvaluate is timed without msgpack).`,
    );
  }
  return { marks, references, notes, implementations };
}

function formatRate(perSec: number): string {
  return perSec >= 100 ? Math.round(perSec).toLocaleString('en-US') : perSec.toFixed(1);
}
