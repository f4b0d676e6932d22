/**
 * Crypto per operation, reference backend (shared/oprf.ts over @noble/curves):
 * the client's blind and finalize (batch proof verify included), the
 * server's BlindEvaluate per element at several batch sizes in both modes
 * (the one DLEQ proof per batch amortised over its elements), Evaluate (the
 * directory build's cost per registered number), SHA-256 per number (the
 * hashed design), the bucket id, the local bucket search, and number
 * normalisation. Every mark goes through the same functions the designs call.
 */
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { Bucket, bucketOf, DEFAULT_TAG_BYTES, truncateTag } from '../shared/buckets.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/hashed.ts';
import {
  blindBatch,
  blindEvaluateBatch,
  evaluate,
  finalizeBatch,
  generateKeyPair,
  MODES,
  type OprfMode,
} from '../shared/oprf.ts';
import { sampleNumbers } from '../server/seed.ts';
import type { CryptoMark } from './results.ts';
import { timeInterleaved, type TimingBudget } from './stats.ts';

export interface CryptoConfig {
  /** Time budget per mark and minimum samples. */
  budget: TimingBudget;
  /** Budget for marks whose one call takes long (big batches). */
  bigBudget: TimingBudget;
  /** Batch sizes for BlindEvaluate and Finalize. */
  batches: number[];
  /** Entries of the bucket the local search runs on. */
  bucketEntries: number;
}

export interface CryptoContext {
  backend: string;
  log: (line: string) => void;
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

export async function runCrypto(config: CryptoConfig, ctx: CryptoContext): Promise<CryptoMark[]> {
  const maxBatch = Math.max(...config.batches);
  const prepared = prepare(Math.max(200, maxBatch));
  const { numbers, inputs } = prepared;
  const marks: CryptoMark[] = [];

  interface Spec {
    name: string;
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
        name: spec.name,
        op: spec.op,
        backend: ctx.backend,
        ...(spec.mode ? { mode: spec.mode } : {}),
        batch,
        ...t,
        itemsPerSec: t.opsPerSec * batch,
        usPerItem: t.meanUs / batch,
      };
      marks.push(mark);
      ctx.log(
        `  ${mark.name.padEnd(50)} x ${formatRate(mark.itemsPerSec)} ${mark.op}s/sec @ ${mark.usPerItem.toFixed(1)} µs/${mark.op}` +
          ` (${mark.ops} ops, p99 ${(mark.p99Us / 1000).toFixed(2)} ms/op)`,
      );
    });
  };

  // ------------------------------------------------------------ normalisation and hashing
  const nextE164 = cycler(numbers as readonly string[]);
  await add([{ name: 'normalizeNumber (E.164 input)', op: 'number' }, () => normalizeNumber(nextE164())]);
  if (prepared.national.length > 0) {
    const nextNational = cycler(prepared.national);
    await add([
      { name: 'normalizeNumber (national input + region)', op: 'number' },
      () => {
        const n = nextNational();
        return normalizeNumber(n.text, n.region);
      },
    ]);
  }
  const nextNumber = cycler(numbers);
  await add([{ name: 'blinded: bucket id (b = 8)', op: 'number' }, () => bucketOf(nextNumber(), 8)]);

  // ------------------------------------------------------------ OPRF, client and server
  const keys = { oprf: generateKeyPair('oprf'), voprf: generateKeyPair('voprf') };
  const nextInput = cycler(inputs);
  await add(
    ...MODES.map((mode): [Spec, () => unknown] => [{ name: `client blind (${mode})`, op: 'number', mode }, () => blindBatch(mode, [nextInput()]).blinded[0]]),
  );
  // A tag and a hash, side by side: what one guess costs whoever enumerates numbers.
  await add(
    [{ name: 'hashed: SHA-256 of a number', op: 'number' }, () => hashNumber(nextNumber())],
    [{ name: 'server Evaluate: directory build (voprf)', op: 'number', mode: 'voprf' }, () => evaluate('voprf', keys.voprf.secretKey, nextInput())],
  );

  // Batches: the same blinded elements for every call of one batch size (the
  // server cannot tell; the proof nonce is fresh per call anyway).
  const blindedBy = new Map<OprfMode, { blinds: Uint8Array[]; blinded: Uint8Array[] }>();
  for (const mode of MODES) blindedBy.set(mode, blindBatch(mode, inputs.slice(0, maxBatch)));

  // voprf and oprf in alternation at each batch size: their ratio is the proof's cost.
  for (const n of config.batches) {
    await add(
      ...(['voprf', 'oprf'] as const).map((mode): [Spec, () => unknown] => {
        const blinded = blindedBy.get(mode)!.blinded.slice(0, n);
        return [
          { name: `server BlindEvaluate (${mode}, batch ${n})`, op: 'element', batch: n, mode, big: n >= 100 },
          () => blindEvaluateBatch(mode, keys[mode], blinded).evaluated,
        ];
      }),
    );
  }
  for (const n of config.batches) {
    await add(
      ...(['voprf', 'oprf'] as const).map((mode): [Spec, () => unknown] => {
        const pool = blindedBy.get(mode)!;
        const blinded = pool.blinded.slice(0, n);
        const reply = blindEvaluateBatch(mode, keys[mode], blinded);
        const items = { inputs: inputs.slice(0, n), blinds: pool.blinds.slice(0, n), blinded, evaluated: reply.evaluated };
        return [
          { name: `client finalize (${mode}, batch ${n}${mode === 'voprf' ? ', proof verified' : ''})`, op: 'number', batch: n, mode, big: n >= 100 },
          () => finalizeBatch(mode, items, keys[mode].publicKey, reply.proof),
        ];
      }),
    );
  }

  // ------------------------------------------------------------ the client's local search
  const entries = Array.from({ length: config.bucketEntries }, (_, i) => {
    const tag = new Uint8Array(DEFAULT_TAG_BYTES);
    new DataView(tag.buffer).setUint32(0, Math.imul(i + 1, 2654435761) >>> 0);
    new DataView(tag.buffer).setUint32(4, i);
    return { tag, mask: 1 };
  });
  const bucket = Bucket.build(entries, DEFAULT_TAG_BYTES);
  const probes = inputs.slice(0, 200).map((x) => truncateTag(evaluate('voprf', keys.voprf.secretKey, x), DEFAULT_TAG_BYTES));
  const nextProbe = cycler(probes);
  await add([{ name: `client bucket search (${config.bucketEntries} tags)`, op: 'number' }, () => bucket.lookup(nextProbe())]);

  return marks;
}

function formatRate(perSec: number): string {
  return perSec >= 100 ? Math.round(perSec).toLocaleString('en-US') : perSec.toFixed(1);
}
