/**
 * Blinded design, client side (docs/protocol.md, "The blinded design"):
 *
 *   config  GET  /v1/blinded/config           epochs, public keys, parameters (cached)
 *   blind   (r, B) = Blind(x) for each number not in the tag cache
 *   eval    POST /v1/blinded/evaluate         ONE request per batch: { epoch, elements: [B] }
 *   final   tag = Finalize(x, r, Z), the batch DLEQ proof checked first (voprf)
 *   bucket  GET  /v1/blinded/buckets/{e}/{b}  each needed bucket once, revalidated by ETag;
 *                                             its Merkle path checked against the epoch's published root
 *           or GET {bucketBaseUrl}/{e}/{b}.msgpack when the config names a static host
 *                                             (pcd publish-buckets), checked against the root the config showed
 *   answer  search the tag in its bucket, locally
 *
 * The server sees blinded elements and bucket ids, never a number or an
 * answer. Tags are cached per epoch (a repeated lookup costs no evaluation)
 * and buckets per epoch and id with their ETag (a repeated fetch is a 304).
 *
 * Nothing the client cannot verify becomes an answer: a failed or missing
 * proof, an evaluated list of the wrong length or epoch, a bucket that is
 * not what was asked, not sorted or holding a tag with an empty capability
 * mask: each is a thrown PcdError, never "SMS only". An unknown or retired
 * epoch makes the client fetch the config again and retry once.
 *
 * VOPRF only, unless told otherwise: an epoch the config says is in `oprf`
 * mode comes with no proof, so a server (or whoever rewrote the config)
 * could answer with any key. Such an epoch is refused with `proof_invalid`
 * before anything is blinded or sent, unless the caller passes `allowOprf`
 * (CLI: `--allow-oprf`).
 *
 * Key pinning (trust on first use): the public key of every epoch the client
 * has seen is pinned per server base URL and epoch number, in memory always
 * ({@link KeyPins}), and in a JSON file when one is given (`pinFile`; CLI
 * `--pins FILE` or PCD_PINS). A config that lists a known epoch with another
 * key is `key_changed`, never an answer: that is what a server singling one
 * requester out with its own key looks like. A new epoch (rotation) is
 * simply pinned. The CLI persists no pins unless asked: a default file in
 * the user's home would collect pins of every throwaway test server, and a
 * local server whose data folder was reset (epoch 1 again, a new key) would
 * then be refused until its entry is removed.
 *
 * One view for everyone (shared/merkle.ts): the proof says nothing about the
 * buckets, so the config publishes, per epoch, the Merkle root over all its
 * buckets at a directory version, and each bucket reply carries its version
 * and its path to the root. The client checks every bucket it receives
 * against the root it was shown for that (epoch, version): a bucket with a
 * tag dropped (a messenger contact turned "SMS only") or changed is
 * `bucket_unproven`, never an answer. A bucket newer than the config held
 * makes the client fetch the config again, fresh, once; a bucket of a
 * version whose root it never saw is fetched once more, then refused. The
 * roots seen are kept per (epoch, version) beside the key pins, in memory
 * ({@link KeyPins}), and a config that shows another root for a pair seen
 * before is `view_changed`. A 304 keeps the bucket checked when it was
 * fetched. What this does not show: that other clients see the same root;
 * comparing roots between clients (gossip, a log) is not part of pcd.
 *
 * Here the config, the tag cache, blinding and finalising; the pins are in
 * client/designs/blinded-pins.ts, fetching and proving buckets in
 * client/designs/blinded-buckets.ts.
 */
import { truncateTag } from '../../shared/buckets.ts';
import type { ClientDesign, ClientDesignOptions, LookupResult, PinScope, PreparedLookup, RequestOptions, Transport } from '../../shared/design.ts';
import { loadBackend } from '../../shared/backends.ts';
import type { E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError, isPcdError } from '../../shared/errors.ts';
import { BlindedConfigReply, EvaluateReply, PATHS } from '../../shared/messages.ts';
import { DEFAULT_BACKEND, type BackendName, type OprfBackend, type OprfMode, type RandomSource } from '../../shared/suite.ts';
import type { BlindedAuth } from '../../shared/tokens.ts';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { bytesToBase64 } from '../../shared/bytes.ts';
import { TokenPool, type SpendableToken, type TokenPoolOptions, type TokenView } from '../tokens.ts';
import { KeyPins, MAX_PINNED_EPOCHS, MAX_ROOTS_PER_EPOCH } from './blinded-pins.ts';
import { BucketFetcher, type BucketEpoch } from './blinded-buckets.ts';

export { KeyPins, MAX_PINNED_EPOCHS, MAX_ROOTS_PER_EPOCH };

export interface BlindedClientOptions {
  /** Crypto backend, or its name (default sodium, ~10x noble per scalar multiplication, falling back to noble where WASM cannot load). */
  backend?: BackendName | OprfBackend;
  /** Randomness for blinding (tests); default crypto.getRandomValues. */
  rng?: RandomSource;
  /** Refetch the config when it is older than this (default 5 minutes); an unknown or retired epoch refetches at once. */
  configMaxAgeMs?: number;
  /** Tags kept per epoch (default 2^17); the oldest go first. */
  maxCachedTags?: number;
  /** Bucket requests in flight at once (default 8). */
  bucketConcurrency?: number;
  /** Accept epochs in OPRF mode (no proof that the server used the published key); default false: refused with proof_invalid. */
  allowOprf?: boolean;
  /** Fetch buckets from the static host the config names, if any (default true; client/client.ts sets false with an OHTTP relay). */
  staticBuckets?: boolean;
  /** Where this client's epoch keys are pinned; default a fresh in-memory pin set. */
  pins?: PinScope;
  /**
   * Privacy Pass (a server whose config says auth 'token'): the transport to
   * the issuer, direct and with the account's bearer token (default: this
   * client's transport), and the pool's options (client/tokens.ts).
   */
  issuer?: Transport;
  tokens?: TokenPoolOptions;
  now?: () => number;
}

/** What the client spent, for benchmarks and tests. */
export interface BlindedClientStats {
  configFetches: number;
  evaluateRequests: number;
  /** Blinded elements sent to the server. */
  elementsEvaluated: number;
  /** Tags answered from the tag cache. */
  tagCacheHits: number;
  bucketFetches: number;
  /** Bucket fetches answered 304 Not Modified. */
  bucketNotModified: number;
  /** Buckets whose Merkle path was checked against the root published for their version. */
  bucketsProven: number;
  /** Buckets fetched from the config's static host (bucketBaseUrl), included in bucketFetches. */
  staticBucketFetches: number;
  /** Static buckets of a version whose root this client was never shown (published before the directory moved on): fetched from the API instead. */
  staticBucketsStale: number;
  bytesSent: number;
  bytesReceived: number;
  /** Dummy blinded elements sent to pad requests to their token's size class. */
  paddingElements: number;
}

export interface BlindedClient extends ClientDesign {
  readonly stats: BlindedClientStats;
  /** The Privacy Pass token pool, once the server asked for tokens (config auth 'token'). */
  readonly tokens: TokenPool;
  /** Forgets the config, tags and buckets; the pinned keys stay. */
  clear(): void;
}

/** The current epoch's parameters, as the config states them, and how evaluate is paid. */
interface EpochParams extends BucketEpoch {
  /** How evaluate is paid: a Privacy Pass token, or the account (config auth). */
  auth: BlindedAuth;
  publicKey: Uint8Array;
  mode: OprfMode;
}

const emptyStats = (): BlindedClientStats => ({
  configFetches: 0,
  evaluateRequests: 0,
  elementsEvaluated: 0,
  tagCacheHits: 0,
  bucketFetches: 0,
  bucketNotModified: 0,
  bucketsProven: 0,
  staticBucketFetches: 0,
  staticBucketsStale: 0,
  bytesSent: 0,
  bytesReceived: 0,
  paddingElements: 0,
});

function count(stats: BlindedClientStats, r: { bytesSent: number; bytesReceived: number }): void {
  stats.bytesSent += r.bytesSent;
  stats.bytesReceived += r.bytesReceived;
}

export function createBlindedClientWith(transport: Transport, options: BlindedClientOptions = {}): BlindedClient {
  const chosen = options.backend ?? DEFAULT_BACKEND;
  const pins = options.pins ?? new KeyPins().scope('the server');
  let backend: Promise<OprfBackend> | undefined;
  /**
   * Loaded on first use (libsodium's WASM module starts in ~20-40 ms), once. With no backend asked for, the
   * fast one where it loads (WASM), else the noble reference, which runs anywhere: both give the same bytes.
   */
  const suite = (): Promise<OprfBackend> =>
    (backend ??=
      typeof chosen !== 'string' ? Promise.resolve(chosen) : options.backend === undefined ? loadBackend(chosen).catch(() => loadBackend('noble')) : loadBackend(chosen));
  const stats = emptyStats();
  const tagCache = new TagCache(options.maxCachedTags ?? 1 << 17);
  const buckets = new BucketFetcher(transport, pins, stats, Math.max(1, options.bucketConcurrency ?? 8));
  /** Drops caches of epochs the config no longer lists. */
  const prune = (reply: BlindedConfigReply) => {
    const listed = new Set(reply.epochs.map((e) => e.epoch));
    tagCache.prune(listed);
    buckets.prune(listed);
  };
  const configs = new ConfigCache(transport, pins, stats, { maxAgeMs: options.configMaxAgeMs ?? 5 * 60_000, now: options.now ?? Date.now }, prune);
  const tokens = new TokenPool(options.issuer ?? transport, (fresh) => configs.tokenView(fresh), options.tokens);

  /** Blinds `numbers` (distinct, none cached) for one evaluate request, with a token of the request's size class when the server takes tokens. */
  const blindFor = async (p: EpochParams, numbers: readonly E164[]): Promise<Evaluation> => {
    const b = await suite();
    const token = p.auth === 'token' ? await tokens.take(numbers.length) : undefined;
    const evaluation = evaluationOf(b, p, numbers, token, options.rng);
    stats.paddingElements += evaluation.padding;
    return evaluation;
  };

  /** Config, tag cache, blinding: the evaluate request for the numbers whose tags are not cached, and what finishes the lookup. */
  const prepareWith = async (numbers: readonly E164[], signal: AbortSignal | undefined, fresh: boolean): Promise<PreparedLookup> => {
    const reply = await configs.get(signal, fresh);
    const p = currentEpoch(reply, options);
    const tags = tagCache.of(p.epoch);

    const distinct = [...new Set(numbers)];
    const missing = distinct.filter((n) => !tags.has(n));
    stats.tagCacheHits += distinct.length - missing.length;
    const got = new Map<E164, Uint8Array>();
    for (const n of distinct) {
      const t = tags.get(n);
      if (t) got.set(n, t);
    }
    const evaluation = missing.length > 0 ? await blindFor(p, missing) : undefined;

    return {
      request: evaluation?.request,
      async finish(r, opts) {
        if (evaluation) {
          if (!r) throw new PcdError(ErrorCode.MalformedReply, 'the evaluate request got no reply');
          count(stats, r);
          stats.evaluateRequests++;
          stats.elementsEvaluated += missing.length;
          const evaluated = evaluation.tagsFrom(r.body as EvaluateReply | undefined);
          missing.forEach((n, i) => {
            const t = evaluated[i]!;
            got.set(n, t);
            tags.set(n, t);
          });
          tagCache.trim(tags);
        }
        return buckets.answer(p, numbers, got, reply.capabilities, opts?.signal);
      },
    };
  };

  const attempt = async (numbers: readonly E164[], signal: AbortSignal | undefined, fresh: boolean): Promise<LookupResult[]> => {
    const prepared = await prepareWith(numbers, signal, fresh);
    const r = prepared.request ? await transport.request({ ...prepared.request, signal }) : undefined;
    return prepared.finish(r, { signal });
  };

  return {
    name: 'blinded',
    stats,
    tokens,
    clear() {
      configs.forget();
      tagCache.clear();
      buckets.clear();
    },
    prepare(numbers, opts) {
      return prepareWith(numbers, opts?.signal, false);
    },
    async lookupBatch(numbers, opts) {
      if (numbers.length === 0) return [];
      try {
        return await attempt(numbers, opts?.signal, false);
      } catch (e) {
        // The epoch moved on (rotation, retirement): fetch the config again and retry once.
        // A token of a key that retired meanwhile: drop the pool's tokens of keys no longer listed, and retry with another.
        if (isPcdError(e, ErrorCode.UnknownEpoch) || isPcdError(e, ErrorCode.EpochRetired) || isPcdError(e, ErrorCode.TokenKeyUnknown)) {
          configs.forget();
          if (isPcdError(e, ErrorCode.TokenKeyUnknown)) await tokens.refresh();
          return attempt(numbers, opts?.signal, true);
        }
        throw e;
      }
    },
  };
}

/**
 * The blinded config, fetched once and kept for `maxAgeMs`, one fetch in
 * flight at a time. Before anything of a config is used, its epoch keys are
 * checked against the pins (key_changed) and its token keys against those
 * it showed before (view_changed).
 */
class ConfigCache {
  private config: { reply: BlindedConfigReply; at: number } | undefined;
  private inFlight: Promise<BlindedConfigReply> | undefined;
  /**
   * Token keys are pinned with their epoch, in memory: a config that shows
   * a known epoch with another token key for a class is view_changed, since
   * a server giving one client keys of its own could tell its tokens apart.
   */
  private readonly tokenPins = new Map<number, Map<number, string>>();

  constructor(
    private readonly transport: Transport,
    private readonly pins: PinScope,
    private readonly stats: BlindedClientStats,
    private readonly age: { maxAgeMs: number; now: () => number },
    /** Each config fetched, once checked. */
    private readonly fetched: (reply: BlindedConfigReply) => void,
  ) {}

  get(signal: AbortSignal | undefined, fresh: boolean): Promise<BlindedConfigReply> {
    const { config, age } = this;
    if (!fresh && config && age.now() - config.at < age.maxAgeMs) return Promise.resolve(config.reply);
    this.inFlight ??= (async () => {
      try {
        const r = await this.transport.request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false, signal });
        count(this.stats, r);
        this.stats.configFetches++;
        if (!r.body) throw new PcdError(ErrorCode.MalformedReply, 'the blinded config reply has no body');
        // Before anything of this config is used: a changed key for a known epoch is key_changed.
        this.pins.check(r.body.epochs);
        this.checkTokenKeys(r.body);
        this.config = { reply: r.body, at: age.now() };
        this.fetched(r.body);
        return r.body;
      } finally {
        this.inFlight = undefined;
      }
    })();
    return this.inFlight;
  }

  /** The next lookup fetches the config again. */
  forget(): void {
    this.config = undefined;
  }

  /** What the token pool needs of the config: the issuer, the current epoch and the token keys. */
  async tokenView(fresh: boolean): Promise<TokenView> {
    const reply = await this.get(undefined, fresh);
    if (reply.auth !== 'token' || reply.issuer === undefined) throw new PcdError(ErrorCode.MalformedReply, 'the server takes no Privacy Pass tokens (its config says auth account)');
    return {
      issuer: reply.issuer,
      current: reply.current,
      keys: reply.epochs.flatMap((e) => (e.tokenKeys ?? []).map((k) => ({ epoch: e.epoch, sizeClass: k.sizeClass, tokenKey: k.tokenKey }))),
    };
  }

  private checkTokenKeys(reply: BlindedConfigReply): void {
    const { tokenPins } = this;
    for (const e of reply.epochs) {
      const pinned = tokenPins.get(e.epoch) ?? new Map<number, string>();
      for (const k of e.tokenKeys ?? []) {
        const key = bytesToBase64(k.tokenKey);
        const pin = pinned.get(k.sizeClass);
        if (pin !== undefined && pin !== key) {
          throw new PcdError(
            ErrorCode.ViewChanged,
            `the server now publishes another token key for epoch ${e.epoch}, size class ${k.sizeClass}, than it did before: a server singling this client out looks like this; no request was sent`,
          );
        }
        pinned.set(k.sizeClass, key);
      }
      tokenPins.set(e.epoch, pinned);
    }
    if (tokenPins.size > MAX_PINNED_EPOCHS) for (const epoch of [...tokenPins.keys()].sort((a, b) => a - b).slice(0, tokenPins.size - MAX_PINNED_EPOCHS)) tokenPins.delete(epoch);
  }
}

/** Tags per epoch, at most `max` per epoch; the oldest go first. */
class TagCache {
  private readonly epochs = new Map<number, Map<E164, Uint8Array>>();

  constructor(private readonly max: number) {}

  of(epoch: number): Map<E164, Uint8Array> {
    let m = this.epochs.get(epoch);
    if (!m) this.epochs.set(epoch, (m = new Map()));
    return m;
  }

  /** Oldest entries out first (Map keeps insertion order). */
  trim(tags: Map<E164, Uint8Array>): void {
    for (const k of tags.keys()) {
      if (tags.size <= this.max) break;
      tags.delete(k);
    }
  }

  /** Drops the tags of epochs the config no longer lists. */
  prune(listed: ReadonlySet<number>): void {
    for (const epoch of this.epochs.keys()) if (!listed.has(epoch)) this.epochs.delete(epoch);
  }

  clear(): void {
    this.epochs.clear();
  }
}

/** The current epoch and its parameters, as the config states them; an epoch in oprf mode refused unless allowed. */
function currentEpoch(reply: BlindedConfigReply, options: Pick<BlindedClientOptions, 'staticBuckets' | 'allowOprf'>): EpochParams {
  const e = reply.epochs.find((x) => x.epoch === reply.current);
  if (!e) throw new PcdError(ErrorCode.MalformedReply, `the config names epoch ${reply.current} current but does not list it`);
  const p: EpochParams = {
    auth: reply.auth ?? 'account',
    epoch: e.epoch,
    publicKey: e.publicKey,
    mode: e.mode ?? reply.mode,
    bucketBits: e.bucketBits ?? reply.bucketBits,
    tagBytes: e.tagBytes ?? reply.tagBytes,
    bucketBaseUrl: options.staticBuckets === false ? undefined : reply.bucketBaseUrl,
  };
  if (p.mode !== 'voprf' && !options.allowOprf) {
    throw new PcdError(
      ErrorCode.ProofInvalid,
      `epoch ${p.epoch} is in ${p.mode} mode: the server would send no proof that it uses the epoch's published key, ` +
        `so its answers cannot be checked; refused before anything was sent (allow it with --allow-oprf, or allowOprf in the client options)`,
    );
  }
  return p;
}

/** One evaluate request and what turns its reply into tags. */
interface Evaluation {
  request: RequestOptions<EvaluateReply>;
  /** Dummy elements sent beside the numbers' to fill the token's size class. */
  padding: number;
  tagsFrom(reply: EvaluateReply | undefined): Uint8Array[];
}

/**
 * The evaluate request for `numbers` (distinct, none cached), blinded; `tagsFrom`
 * checks its reply, verifies the proof, finalises and truncates: their tags.
 */
function evaluationOf(b: OprfBackend, p: EpochParams, numbers: readonly E164[], token: SpendableToken | undefined, rng: RandomSource | undefined): Evaluation {
  const inputs = numbers.map((n) => utf8ToBytes(n));
  // With tokens: one token of the request's size class, and dummy elements up to the class (shared/tokens.ts):
  // blinded random inputs, uniformly random group elements as real blinded elements are.
  const padding = token ? token.sizeClass - numbers.length : 0;
  for (let i = 0; i < padding; i++) inputs.push(randomBytes(32));
  const { blinds, blinded } = b.blindBatch(p.mode, inputs, rng);
  const request: RequestOptions<EvaluateReply> = {
    method: 'POST',
    path: PATHS.blindedEvaluate,
    body: { epoch: p.epoch, elements: blinded },
    reply: EvaluateReply,
    ...(token ? { authorization: token.authorization } : {}),
  };
  const tagsFrom = (reply: EvaluateReply | undefined): Uint8Array[] => {
    if (!reply) throw new PcdError(ErrorCode.MalformedReply, 'the evaluate reply has no body');
    if (reply.epoch !== p.epoch) {
      throw new PcdError(ErrorCode.MalformedReply, `asked epoch ${p.epoch} to evaluate, the server answered for epoch ${reply.epoch}`);
    }
    if (reply.evaluated.length !== blinded.length) {
      throw new PcdError(ErrorCode.MalformedReply, `sent ${blinded.length} blinded elements, the server returned ${reply.evaluated.length} evaluated ones`);
    }
    if (p.mode === 'voprf' && reply.proof === undefined) {
      throw new PcdError(
        ErrorCode.ProofInvalid,
        `epoch ${p.epoch} is in voprf mode but the server sent no proof, so nothing shows it used the epoch's published key: no answer was produced`,
      );
    }
    let outputs: Uint8Array[];
    try {
      outputs = b.finalizeBatch(p.mode, { inputs, blinds, blinded, evaluated: reply.evaluated }, p.publicKey, reply.proof);
    } catch (e) {
      if (isPcdError(e, ErrorCode.ProofInvalid)) {
        throw new PcdError(
          ErrorCode.ProofInvalid,
          `the server did not evaluate with epoch ${p.epoch}'s published key (its batch proof does not verify against it): ` +
            `no answer was produced. ${e.message}`,
          { cause: e },
        );
      }
      throw e;
    }
    // The padding's outputs are dropped: its elements were covered by the proof, nothing else.
    return outputs.slice(0, numbers.length).map((o) => truncateTag(o, p.tagBytes));
  };
  return { request, padding, tagsFrom };
}

export const createBlindedClient = (transport: Transport, options?: ClientDesignOptions): BlindedClient =>
  createBlindedClientWith(transport, {
    backend: options?.backend,
    allowOprf: options?.allowOprf,
    pins: options?.pins,
    issuer: options?.issuer,
    tokens: options?.tokens,
    staticBuckets: options?.staticBuckets,
  });

/** Random bytes from the platform (Web Crypto: Node and browsers), for the padding's dummy inputs. */
function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}
