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
 *
 * Privacy Pass (shared/tokens.ts, server/tokens/): what the server spends
 * per token redeemed (TokenService.check: parse the header, find the key,
 * compare the challenge digest, verify the RSA-PSS signature; then the
 * spend's SQLite insert, on a real store), what it spends per token issued
 * (BlindSign through node:crypto, beside blindrsa-ts's own BlindSign in
 * JavaScript big numbers, a few calls only: ~0.5 s each), and what the
 * client spends per token (privacypass-ts: the token request, the
 * finalisation). And the benchmark's own minting (bench/tokens.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { publicVerif } from '@cloudflare/privacypass-ts';
import { Store } from '../server/store.ts';
import { TokenKeys } from '../server/tokens/keys.ts';
import { TokenService, blindSign } from '../server/tokens/service.ts';
import { SqliteSpentTokens } from '../server/tokens/spent.ts';
import { DEFAULT_ISSUER_NAME, challengeDigest, tokenChallenge } from '../shared/tokens.ts';
import { TOKEN_OPS, authorizationOf, mintToken, randomTokenRequest } from './tokens.ts';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { Bucket, bucketOf, DEFAULT_TAG_BYTES, truncateTag } from '../shared/buckets.ts';
import { loadBackend } from '../shared/backends.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/designs/hashed.ts';
import { MODES, type BackendName, type KeyPair, type OprfBackend, type OprfMode, type PointBytes } from '../shared/suite.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { loadPsi, preparePsi, PSI_EXTERNAL } from './psi.ts';
import type { CryptoImpl, CryptoMark, ExternalReference } from './results.ts';
import { formatPerItem, timeInterleaved, type TimingBudget } from './stats.ts';

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
  /** Privacy Pass marks; `slowSamples`: calls of blindrsa-ts's BlindSign (~0.5 s each). Absent: not measured. */
  tokens?: { slowSamples: number };
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

/** What one mark measures: its operation, who computes it, per what, and its batch, mode and budget. */
interface Spec {
  operation: string;
  impl: CryptoImpl;
  op: string;
  batch?: number;
  mode?: OprfMode;
  big?: boolean;
  /** Privacy Pass marks: their group, who computes them, and a budget of their own (slow calls). */
  group?: 'tokens';
  by?: string;
  budget?: TimingBudget;
}

/** The marks of a run, timed group by group over the backends measured. */
class CryptoTimer {
  readonly marks: CryptoMark[] = [];

  constructor(
    private readonly config: CryptoConfig,
    readonly backends: readonly OprfBackend[],
    private readonly log: (line: string) => void,
  ) {}

  /** Times marks in alternation (see timeInterleaved): the pairs a ratio is formed from share the machine's noise. */
  readonly add = async (...entries: [Spec, () => unknown][]): Promise<void> => {
    const { config } = this;
    const budget = entries.find(([spec]) => spec.budget)?.[0].budget ?? (entries.some(([spec]) => spec.big) ? config.bigBudget : config.budget);
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
        ...(spec.group ? { group: spec.group } : {}),
        ...(spec.by ? { impl: spec.by } : {}),
        batch,
        ...t,
        itemsPerSec: t.opsPerSec * batch,
        usPerItem: t.meanUs / batch,
      };
      this.marks.push(mark);
      this.log(
        `  ${mark.name.padEnd(62)} x ${formatRate(mark.itemsPerSec)} ${mark.op}s/sec @ ${formatPerItem(mark.usPerItem)}/${mark.op}` +
          ` (${mark.ops} ops, p99 ${(mark.p99Us / 1000).toFixed(2)} ms/op)`,
      );
    });
  };

  /** One operation, every backend, in alternation. */
  perBackend(spec: Omit<Spec, 'impl'>, make: (b: OprfBackend) => () => unknown): [Spec, () => unknown][] {
    return this.backends.map((b) => [{ ...spec, impl: b.name }, make(b)]);
  }
}

/** What the OPRF marks share: the timer, each backend's key, the inputs, and per mode the blinded elements every batch takes its own from. */
interface OprfBench {
  t: CryptoTimer;
  keyOf: (b: OprfBackend) => KeyPair;
  inputs: readonly Uint8Array[];
  blindedBy: ReadonlyMap<OprfMode, { blinds: Uint8Array[]; blinded: PointBytes[] }>;
}

export async function runCrypto(config: CryptoConfig, ctx: CryptoContext): Promise<CryptoOutcome> {
  const maxBatch = Math.max(...config.batches, ...config.finalizeBatches, config.split.elements);
  const prepared = prepare(Math.max(200, maxBatch, config.psiItems));
  const { numbers, inputs } = prepared;
  const notes: string[] = [];
  const references: ExternalReference[] = [];
  const implementations: Record<string, string> = {};

  const backends: OprfBackend[] = [];
  for (const name of config.backends ?? (['noble', 'sodium'] as const)) {
    const t0 = performance.now();
    backends.push(await loadBackend(name));
    ctx.log(`  backend ${name} loaded in ${(performance.now() - t0).toFixed(0)} ms`);
  }
  const t = new CryptoTimer(config, backends, ctx.log);
  await numberMarks(t, prepared);

  // ------------------------------------------------------------ OPRF, client and server, per backend
  const keys = new Map(backends.map((b) => [b.name, b.generateKeyPair()]));
  const keyOf = (b: OprfBackend) => keys.get(b.name)!;
  const nextInput = cycler(inputs);
  for (const mode of MODES) {
    await t.add(...t.perBackend({ operation: `client blind (${mode})`, op: 'number', mode }, (b) => () => b.blindBatch(mode, [nextInput()]).blinded[0]));
  }
  await t.add(...t.perBackend({ operation: 'server Evaluate: directory build (voprf)', op: 'number', mode: 'voprf' }, (b) => () => b.evaluate('voprf', keyOf(b).secretKey, nextInput())));

  // Batches: the same blinded elements for every call of one batch size (the
  // server cannot tell; the proof nonce is fresh per call anyway). Elements
  // are backend-independent bytes: one blinding serves both backends.
  const ref = backends[0]!;
  const blindedBy = new Map<OprfMode, { blinds: Uint8Array[]; blinded: PointBytes[] }>();
  for (const mode of MODES) blindedBy.set(mode, ref.blindBatch(mode, inputs.slice(0, maxBatch)));
  const o: OprfBench = { t, keyOf, inputs, blindedBy };

  // psi.js, loaded now so that its request of psiItems is timed beside BlindEvaluate of the same size.
  const psiInputs = numbers.slice(0, config.psiItems) as string[];
  const psiRun = await psiPeer(psiInputs, { implementations, references }, ctx.log);
  await batchMarks(o, config, psiRun && { run: psiRun, inputs: psiInputs });
  psiRun?.close();
  await splitMarks(o, config.split);
  await finalizeMarks(o, config.finalizeBatches);
  await searchMark(o, ref, config.bucketEntries);

  if (config.tokens) await tokenMarks(config, t.add, notes);

  notes.push(
    `Crypto: backends ${backends.map((b) => b.name).join(' and ')} through the one suite interface (shared/suite.ts); the backends of one operation were timed in alternation (one sample each in turn), so "sodium / noble" ratios share the machine's noise. Times are per number or element on one core; "calls timed" is the sample count.`,
  );
  if (psiRun) {
    notes.push(
      `Crypto: psi.js is OpenMined's ECDH PSI (one P-256 scalar multiplication per item on each side, no proof): its processRequest of ${config.psiItems} items was timed in alternation with BlindEvaluate of ${config.psiItems} elements, on a prepared request object (no protobuf decode timed, as BlindEvaluate is timed without msgpack).`,
    );
  }
  return { marks: t.marks, references, notes, implementations };
}

/** Normalisation and hashing: backend-independent work per number. */
async function numberMarks(t: CryptoTimer, prepared: Prepared): Promise<void> {
  const { numbers } = prepared;
  const nextE164 = cycler(numbers as readonly string[]);
  await t.add([{ operation: 'normalizeNumber (E.164 input)', impl: 'any', op: 'number' }, () => normalizeNumber(nextE164())]);
  if (prepared.national.length > 0) {
    const nextNational = cycler(prepared.national);
    await t.add([
      { operation: 'normalizeNumber (national input + region)', impl: 'any', op: 'number' },
      () => {
        const n = nextNational();
        return normalizeNumber(n.text, n.region);
      },
    ]);
  }
  const nextNumber = cycler(numbers);
  await t.add([{ operation: 'blinded: bucket id (b = 8)', impl: 'any', op: 'number' }, () => bucketOf(nextNumber(), 8)]);
  await t.add([{ operation: 'hashed: SHA-256 of a number', impl: 'any', op: 'number' }, () => hashNumber(nextNumber())]);
}

/** psi.js (OpenMined), the peer, prepared with its request when it loads and passes its self-check; else the external reference, with why. */
async function psiPeer(
  inputs: readonly string[],
  out: Pick<CryptoOutcome, 'implementations' | 'references'>,
  log: (line: string) => void,
): Promise<ReturnType<typeof preparePsi> | undefined> {
  const psi = await loadPsi();
  if (!psi.ok) {
    out.references.push({ ...PSI_EXTERNAL, why: psi.why });
    log(`  psi.js not measured: ${psi.why}`);
    return undefined;
  }
  try {
    const run = preparePsi(psi.psi, inputs);
    out.implementations['psi.js'] = `@openmined/psi.js ${psi.version} (ECDH PSI over P-256, WASM), from ${psi.from}, loaded in ${psi.loadMs.toFixed(0)} ms`;
    log(`  psi.js ${psi.version} loaded from ${psi.from} (${psi.loadMs.toFixed(0)} ms), self-check passed`);
    return run;
  } catch (e) {
    const why = `psi.js loaded but its self-check failed: ${e instanceof Error ? e.message : String(e)}`;
    out.references.push({ ...PSI_EXTERNAL, why });
    log(`  ${why}`);
    return undefined;
  }
}

/**
 * BlindEvaluate: voprf and oprf at each batch size, every backend in alternation: across modes the ratio is the
 * proof's cost, across backends the speed-up. psi.js joins the batch of its size (timed on its own beside voprf when
 * no batch is of its size).
 */
async function batchMarks(o: OprfBench, config: CryptoConfig, psi: { run: ReturnType<typeof preparePsi>; inputs: string[] } | undefined): Promise<void> {
  const { t, keyOf, blindedBy } = o;
  const psiEntries = (n: number): [Spec, () => unknown][] => {
    const { server, client, request } = psi!.run;
    return [
      [{ operation: `psi.js server processRequest (batch ${n})`, impl: 'psi.js', op: 'item', batch: n, big: true }, () => server.processRequest(request).serializeBinary()],
      [{ operation: `psi.js client createRequest (batch ${n})`, impl: 'psi.js', op: 'item', batch: n, big: true }, () => client.createRequest(psi!.inputs).serializeBinary()],
    ];
  };
  for (const n of config.batches) {
    for (const mode of ['voprf', 'oprf'] as const) {
      const blinded = blindedBy.get(mode)!.blinded.slice(0, n);
      const entries = t.perBackend(
        { operation: `server BlindEvaluate (${mode}, batch ${n})`, op: 'element', batch: n, mode, big: n >= 100 },
        (b) => () => b.blindEvaluateBatch(mode, keyOf(b), blinded).evaluated,
      );
      if (psi && mode === 'voprf' && n === config.psiItems) entries.push(...psiEntries(n));
      await t.add(...entries);
    }
  }
  if (psi && !config.batches.includes(config.psiItems)) {
    const n = config.psiItems;
    const blinded = blindedBy.get('voprf')!.blinded.slice(0, n);
    await t.add(
      ...t.perBackend({ operation: `server BlindEvaluate (voprf, batch ${n})`, op: 'element', batch: n, mode: 'voprf', big: true }, (b) => () => b.blindEvaluateBatch('voprf', keyOf(b), blinded).evaluated),
      ...psiEntries(n),
    );
  }
}

/** The split-batch pair, as the evaluator pool runs it (here on one thread): its overhead over one call. */
async function splitMarks({ t, keyOf, blindedBy }: OprfBench, split: CryptoConfig['split']): Promise<void> {
  const { elements: n, chunks } = split;
  const blinded = blindedBy.get('voprf')!.blinded.slice(0, n);
  const size = Math.ceil(n / chunks);
  await t.add(
    ...t.perBackend({ operation: `server evaluateChunk x${chunks} + proveComposite (voprf, batch ${n})`, op: 'element', batch: n, mode: 'voprf', big: n >= 100 }, (b) => () => {
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

/** The client's Finalize of a reply to each batch size, the proof verified in voprf. */
async function finalizeMarks({ t, keyOf, inputs, blindedBy }: OprfBench, batches: readonly number[]): Promise<void> {
  for (const n of batches) {
    for (const mode of ['voprf', 'oprf'] as const) {
      const pool = blindedBy.get(mode)!;
      const blinded = pool.blinded.slice(0, n);
      await t.add(
        ...t.perBackend(
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
}

/** The client's local search: a tag looked up in a bucket of `entries` tags. */
async function searchMark({ t, keyOf, inputs }: OprfBench, ref: OprfBackend, entries: number): Promise<void> {
  const tags = Array.from({ length: entries }, (_, i) => {
    const tag = new Uint8Array(DEFAULT_TAG_BYTES);
    new DataView(tag.buffer).setUint32(0, Math.imul(i + 1, 2654435761) >>> 0);
    new DataView(tag.buffer).setUint32(4, i);
    return { tag, mask: 1 };
  });
  const bucket = Bucket.build(tags, DEFAULT_TAG_BYTES);
  const probes = inputs.slice(0, 200).map((x) => truncateTag(ref.evaluate('voprf', keyOf(ref).secretKey, x), DEFAULT_TAG_BYTES));
  const nextProbe = cycler(probes);
  await t.add([{ operation: `client bucket search (${entries} tags)`, impl: 'any', op: 'number' }, () => bucket.lookup(nextProbe())]);
}

type AddMarks = (...entries: [{ operation: string; impl: CryptoImpl; op: string; group?: 'tokens'; by?: string; budget?: TimingBudget }, () => unknown][]) => Promise<void>;

/** The Privacy Pass marks (module header), on a store and a token key of their own in a temporary folder. */
async function tokenMarks(config: CryptoConfig, add: AddMarks, notes: string[]): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-bench-tokens-'));
  const store = Store.open(dir);
  try {
    const keys = await TokenKeys.open(dir, [1]);
    await keys.ensure(1);
    const key = keys.get(1, 1)!;
    const spent = new SqliteSpentTokens(store.db);
    const service = new TokenService(keys, spent, DEFAULT_ISSUER_NAME);
    const digest = challengeDigest(service.challenge);
    const spec = (operation: string, by: string, budget?: TimingBudget) => ({ operation, impl: 'any' as const, op: 'token', group: 'tokens' as const, by, ...(budget ? { budget } : {}) });

    // Redemption: the check on a cycle of distinct tokens (checking spends nothing), then the spend of fresh nonces.
    const headers = Array.from({ length: 64 }, () => authorizationOf(mintToken(key, digest)));
    const nextHeader = cycler(headers);
    const check = await service.check(headers[0], 1);
    await add([spec(TOKEN_OPS.check, 'privacypass-ts parse, node:crypto RSA-PSS verify'), () => service.check(nextHeader(), 1)]);
    let n = 0;
    const nonceHash = new Uint8Array(32);
    crypto.getRandomValues(nonceHash);
    await add([
      spec(TOKEN_OPS.spend, 'SQLite (better-sqlite3, WAL)'),
      () => {
        new DataView(nonceHash.buffer).setUint32(0, n++);
        return spent.spendNow({ key: check.key, nonceHash }); // the insert itself, not a promise's turn
      },
    ]);

    // Issuance: BlindSign of random blinded messages below the modulus (bench/tokens.ts).
    const blinded = Array.from({ length: 64 }, () => randomTokenRequest(key).subarray(3));
    const nextBlinded = cycler(blinded);
    await add([spec(TOKEN_OPS.blindSign, 'node:crypto (OpenSSL)'), () => blindSign(key, nextBlinded())], [spec(TOKEN_OPS.mint, 'node:crypto (OpenSSL)'), () => mintToken(key, digest)]);
    if (config.tokens!.slowSamples > 0) {
      const signKey = await crypto.subtle.importKey('pkcs8', key.privateKey.export({ type: 'pkcs8', format: 'der' }), { name: 'RSA-PSS', hash: 'SHA-384' }, true, ['sign']);
      const issuer = new publicVerif.Issuer(publicVerif.BlindRSAMode.PSS, DEFAULT_ISSUER_NAME, signKey, key.verifyKey);
      const requests = blinded.slice(0, 8).map((b) => new publicVerif.TokenRequest(key.keyId[key.keyId.length - 1]!, Uint8Array.from(b), publicVerif.BLIND_RSA));
      const nextRequest = cycler(requests);
      const slow = config.tokens!.slowSamples;
      await add([spec(TOKEN_OPS.blindSignJs, 'blindrsa-ts (JavaScript big numbers)', { ms: 0, minSamples: slow, maxSamples: slow, warmupMs: -1 }), () => issuer.issue(nextRequest())]);
    }

    // The client: each finalisation needs a request of its own (the client keeps its blinding once), so the
    // requests timed first are signed and then finalised, as many as were made.
    const challenge = tokenChallenge(DEFAULT_ISSUER_NAME);
    const made: { client: publicVerif.Client; request: publicVerif.TokenRequest }[] = [];
    await add([
      spec(TOKEN_OPS.request, 'privacypass-ts, blindrsa-ts'),
      async () => {
        const client = new publicVerif.Client(publicVerif.BlindRSAMode.PSS);
        const request = await client.createTokenRequest(challenge, key.tokenKey);
        made.push({ client, request });
        return request.blindedMsg;
      },
    ]);
    const signed = made.map((m) => ({ client: m.client, response: new publicVerif.TokenResponse(blindSign(key, m.request.blindedMsg)) }));
    let next = 0;
    await add([
      spec(TOKEN_OPS.finalize, 'privacypass-ts, blindrsa-ts', { ms: config.bigBudget.ms, minSamples: Math.min(signed.length, config.bigBudget.minSamples), maxSamples: signed.length, warmupMs: -1 }),
      () => {
        const s = signed[next++]!;
        return s.client.finalize(s.response).then((t) => t.authenticator);
      },
    ]);
    notes.push(
      'Crypto, Privacy Pass: one token per item. The redemption check is TokenService.check (server/tokens/service.ts) on distinct minted tokens; the spend is its SQLite insert on a real store (WAL, synchronous NORMAL); BlindSign is the server\'s (node:crypto raw RSA with the RFC 9474 §4.3 check) beside blindrsa-ts\'s own (' +
        `${config.tokens!.slowSamples} call${config.tokens!.slowSamples === 1 ? '' : 's'}); the client's token request and finalisation are privacypass-ts (blindrsa-ts in JavaScript). "bench: mint" is how the benchmark makes the tokens its HTTP load spends (bench/tokens.ts).`,
    );
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function formatRate(perSec: number): string {
  return perSec >= 100 ? Math.round(perSec).toLocaleString('en-US') : perSec.toFixed(1);
}
