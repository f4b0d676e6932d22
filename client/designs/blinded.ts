/**
 * Blinded design, client side (DESIGN.md §3, "The blinded protocol"):
 *
 *   config  GET  /v1/blinded/config           epochs, public keys, parameters (cached)
 *   blind   (r, B) = Blind(x) for each number not in the tag cache
 *   eval    POST /v1/blinded/evaluate         ONE request per batch: { epoch, elements: [B] }
 *   final   tag = Finalize(x, r, Z), the batch DLEQ proof checked first (voprf)
 *   bucket  GET  /v1/blinded/buckets/{e}/{b}  each needed bucket once, revalidated by ETag
 *   answer  search the tag in its bucket, locally
 *
 * The server sees blinded elements and bucket ids, never a number or an
 * answer. Tags are cached per epoch (a repeated lookup costs no evaluation)
 * and buckets per epoch and id with their ETag (a repeated fetch is a 304).
 *
 * Nothing the client cannot verify becomes an answer: a failed or missing
 * proof, an evaluated list of the wrong length or epoch, a bucket that is
 * not what was asked or not sorted: each is a thrown PcdError, never "SMS
 * only". An unknown or retired epoch makes the client fetch the config again
 * and retry once.
 */
import { Bucket, bucketOf, truncateTag } from '../../shared/buckets.ts';
import { maskToCapabilities } from '../../shared/capabilities.ts';
import type { ClientDesign, ClientDesignFactory, LookupResult, Transport } from '../../shared/design.ts';
import { loadBackend } from '../../shared/backends.ts';
import type { E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError, isPcdError } from '../../shared/errors.ts';
import { BlindedConfigReply, BucketReply, EvaluateReply, PATHS } from '../../shared/messages.ts';
import { DEFAULT_BACKEND, type BackendName, type OprfBackend, type OprfMode, type Rng } from '../../shared/suite.ts';
import { utf8ToBytes } from '@noble/hashes/utils.js';

export interface BlindedClientOptions {
  /** Crypto backend, or its name (default sodium: ~10x noble per scalar multiplication; noble runs anywhere). */
  backend?: BackendName | OprfBackend;
  /** Randomness for blinding (tests); default crypto.getRandomValues. */
  rng?: Rng;
  /** Refetch the config when it is older than this (default 5 minutes); an unknown or retired epoch refetches at once. */
  configMaxAgeMs?: number;
  /** Tags kept per epoch (default 2^17); the oldest go first. */
  maxCachedTags?: number;
  /** Bucket requests in flight at once (default 8). */
  bucketConcurrency?: number;
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
  bytesSent: number;
  bytesReceived: number;
}

export interface BlindedClient extends ClientDesign {
  readonly stats: BlindedClientStats;
  /** Forgets the config, tags and buckets. */
  clear(): void;
}

interface EpochParams {
  epoch: number;
  publicKey: Uint8Array;
  mode: OprfMode;
  bucketBits: number;
  tagBytes: number;
}

interface CachedBucket {
  etag: string | undefined;
  bucket: Bucket;
}

export function createBlindedClientWith(transport: Transport, options: BlindedClientOptions = {}): BlindedClient {
  const now = options.now ?? Date.now;
  const configMaxAge = options.configMaxAgeMs ?? 5 * 60_000;
  const maxTags = options.maxCachedTags ?? 1 << 17;
  const concurrency = Math.max(1, options.bucketConcurrency ?? 8);
  const chosen = options.backend ?? DEFAULT_BACKEND;
  let backend: Promise<OprfBackend> | undefined;
  /** Loaded on first use (libsodium's WASM module starts in ~20-40 ms), once. */
  const suite = (): Promise<OprfBackend> => (backend ??= typeof chosen === 'string' ? loadBackend(chosen) : Promise.resolve(chosen));
  const stats: BlindedClientStats = {
    configFetches: 0,
    evaluateRequests: 0,
    elementsEvaluated: 0,
    tagCacheHits: 0,
    bucketFetches: 0,
    bucketNotModified: 0,
    bytesSent: 0,
    bytesReceived: 0,
  };

  let config: { reply: BlindedConfigReply; at: number } | undefined;
  let configInFlight: Promise<BlindedConfigReply> | undefined;
  const tagCache = new Map<number, Map<E164, Uint8Array>>();
  const bucketCache = new Map<string, CachedBucket>();

  const count = (r: { bytesSent: number; bytesReceived: number }) => {
    stats.bytesSent += r.bytesSent;
    stats.bytesReceived += r.bytesReceived;
  };

  /** Drops caches of epochs the config no longer lists. */
  const prune = (reply: BlindedConfigReply) => {
    const listed = new Set(reply.epochs.map((e) => e.epoch));
    for (const epoch of tagCache.keys()) if (!listed.has(epoch)) tagCache.delete(epoch);
    for (const key of bucketCache.keys()) if (!listed.has(Number(key.split('/', 1)[0]))) bucketCache.delete(key);
  };

  const getConfig = async (signal: AbortSignal | undefined, fresh: boolean): Promise<BlindedConfigReply> => {
    if (!fresh && config && now() - config.at < configMaxAge) return config.reply;
    configInFlight ??= (async () => {
      try {
        const r = await transport.request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false, signal });
        count(r);
        stats.configFetches++;
        if (!r.body) throw new PcdError(ErrorCode.MalformedReply, 'the blinded config reply has no body');
        config = { reply: r.body, at: now() };
        prune(r.body);
        return r.body;
      } finally {
        configInFlight = undefined;
      }
    })();
    return configInFlight;
  };

  /** The current epoch and its parameters, as the config states them. */
  const currentEpoch = (reply: BlindedConfigReply): EpochParams => {
    const e = reply.epochs.find((x) => x.epoch === reply.current);
    if (!e) throw new PcdError(ErrorCode.MalformedReply, `the config names epoch ${reply.current} current but does not list it`);
    return {
      epoch: e.epoch,
      publicKey: e.publicKey,
      mode: e.mode ?? reply.mode,
      bucketBits: e.bucketBits ?? reply.bucketBits,
      tagBytes: e.tagBytes ?? reply.tagBytes,
    };
  };

  const tagsOf = (epoch: number): Map<E164, Uint8Array> => {
    let m = tagCache.get(epoch);
    if (!m) tagCache.set(epoch, (m = new Map()));
    return m;
  };

  /** Blind, one evaluate request, verify, finalize, truncate: the tags of `numbers` (distinct, none cached). */
  const evaluateTags = async (p: EpochParams, numbers: readonly E164[], signal: AbortSignal | undefined): Promise<Uint8Array[]> => {
    const inputs = numbers.map((n) => utf8ToBytes(n));
    const b = await suite();
    const { blinds, blinded } = b.blindBatch(p.mode, inputs, options.rng);
    const r = await transport.request({
      method: 'POST',
      path: PATHS.blindedEvaluate,
      body: { epoch: p.epoch, elements: blinded },
      reply: EvaluateReply,
      signal,
    });
    count(r);
    stats.evaluateRequests++;
    stats.elementsEvaluated += blinded.length;
    const reply = r.body;
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
    return outputs.map((o) => truncateTag(o, p.tagBytes));
  };

  /** One bucket, from the cache when the server says it has not changed. */
  const fetchBucket = async (p: EpochParams, id: number, signal: AbortSignal | undefined): Promise<Bucket> => {
    const key = `${p.epoch}/${id}`;
    const cached = bucketCache.get(key);
    const r = await transport.request({
      method: 'GET',
      path: PATHS.blindedBucket(p.epoch, id),
      reply: BucketReply,
      auth: false,
      ifNoneMatch: cached?.etag,
      signal,
    });
    count(r);
    stats.bucketFetches++;
    if (r.status === 304) {
      if (!cached) throw new PcdError(ErrorCode.MalformedReply, `bucket ${id} of epoch ${p.epoch}: 304 Not Modified to a request without If-None-Match`);
      stats.bucketNotModified++;
      return cached.bucket;
    }
    const body = r.body;
    if (!body) throw new PcdError(ErrorCode.MalformedReply, `bucket ${id} of epoch ${p.epoch}: the reply has no body`);
    if (body.epoch !== p.epoch || body.bucket !== id) {
      throw new PcdError(ErrorCode.MalformedReply, `asked bucket ${id} of epoch ${p.epoch}, got bucket ${body.bucket} of epoch ${body.epoch}`);
    }
    let bucket: Bucket;
    try {
      bucket = Bucket.fromWire(body.tags, body.capabilities, p.tagBytes);
    } catch (e) {
      if (e instanceof PcdError) throw new PcdError(e.code, `bucket ${id} of epoch ${p.epoch}: ${e.message}`);
      throw e;
    }
    bucketCache.set(key, { etag: r.etag, bucket });
    return bucket;
  };

  const attempt = async (numbers: readonly E164[], signal: AbortSignal | undefined, fresh: boolean): Promise<LookupResult[]> => {
    const reply = await getConfig(signal, fresh);
    const p = currentEpoch(reply);
    const tags = tagsOf(p.epoch);

    const distinct = [...new Set(numbers)];
    const missing = distinct.filter((n) => !tags.has(n));
    stats.tagCacheHits += distinct.length - missing.length;
    const got = new Map<E164, Uint8Array>();
    for (const n of distinct) {
      const t = tags.get(n);
      if (t) got.set(n, t);
    }
    if (missing.length > 0) {
      const evaluated = await evaluateTags(p, missing, signal);
      missing.forEach((n, i) => {
        const t = evaluated[i]!;
        got.set(n, t);
        tags.set(n, t);
      });
      // Oldest entries out first (Map keeps insertion order).
      for (const k of tags.keys()) {
        if (tags.size <= maxTags) break;
        tags.delete(k);
      }
    }

    const bucketIds = new Map<E164, number>();
    for (const n of distinct) bucketIds.set(n, bucketOf(n, p.bucketBits));
    const wanted = [...new Set(bucketIds.values())];
    const buckets = new Map<number, Bucket>();
    for (let i = 0; i < wanted.length; i += concurrency) {
      const part = wanted.slice(i, i + concurrency);
      const fetched = await Promise.all(part.map((id) => fetchBucket(p, id, signal)));
      part.forEach((id, j) => buckets.set(id, fetched[j]!));
    }

    return numbers.map((number) => {
      const mask = buckets.get(bucketIds.get(number)!)!.lookup(got.get(number)!);
      return { number, capabilities: maskToCapabilities(mask, reply.capabilities) };
    });
  };

  return {
    name: 'blinded',
    stats,
    clear() {
      config = undefined;
      tagCache.clear();
      bucketCache.clear();
    },
    async lookupBatch(numbers, opts) {
      if (numbers.length === 0) return [];
      try {
        return await attempt(numbers, opts?.signal, false);
      } catch (e) {
        // The epoch moved on (rotation, retirement): fetch the config again and retry once.
        if (isPcdError(e, ErrorCode.UnknownEpoch) || isPcdError(e, ErrorCode.EpochRetired)) {
          config = undefined;
          return attempt(numbers, opts?.signal, true);
        }
        throw e;
      }
    },
  };
}

export const createBlindedClient: ClientDesignFactory = (transport, options) => createBlindedClientWith(transport, { backend: options?.backend });
