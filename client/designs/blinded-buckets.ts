/**
 * Buckets for the blinded client (client/designs/blinded.ts): fetched once
 * per lookup that needs them, each proven before it is used.
 *
 *   API     GET /v1/blinded/buckets/{e}/{b}  revalidated by ETag (a 304 keeps the
 *                                            bucket proven when it was fetched)
 *   static  GET {bucketBaseUrl}/{e}/{b}.msgpack  when the config names a host
 *                                            (pcd publish-buckets)
 *
 * Proven (shared/merkle.ts): a bucket's path must lead to the root of its
 * epoch and directory version, else bucket_unproven; that root must be the
 * one this client was shown for the pair before, in a config or with
 * another bucket (KeyPins.keepRoot), else view_changed.
 */
import { Bucket, bucketOf } from '../../shared/buckets.ts';
import { maskToCapabilities } from '../../shared/capabilities.ts';
import type { LookupResult, PinScope, Transport } from '../../shared/design.ts';
import type { E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { BucketReply, PATHS, staticBucketUrl } from '../../shared/messages.ts';
import { decodeBody } from '../../shared/codec.ts';
import { LIMITS } from '../../shared/limits.ts';
import { parseReply } from '../../shared/schema.ts';
import { verifyBucketPath } from '../../shared/merkle.ts';

/** What fetching a bucket needs to know of its epoch, as the config states it. */
export interface BucketEpoch {
  epoch: number;
  bucketBits: number;
  tagBytes: number;
  /** The config's static bucket host, if it names one. */
  bucketBaseUrl: string | undefined;
}

interface CachedBucket {
  etag: string | undefined;
  bucket: Bucket;
}

/** The counts a bucket fetch moves: the blinded client's stats (BlindedClientStats, client/designs/blinded.ts) hold them. */
export type BucketStats = Record<'bucketFetches' | 'bucketNotModified' | 'bucketsProven' | 'staticBucketFetches' | 'staticBucketsStale' | 'bytesSent' | 'bytesReceived', number>;

/** The buckets a client fetched, cached per epoch and id with their ETag. */
export class BucketFetcher {
  private readonly cache = new Map<string, CachedBucket>();

  constructor(
    private readonly transport: Transport,
    private readonly pins: PinScope,
    private readonly stats: BucketStats,
    /** Bucket requests in flight at once. */
    private readonly concurrency: number,
  ) {}

  /**
   * The answers: each number's tag searched in its bucket, each bucket
   * needed fetched once, `concurrency` at a time.
   */
  async answer(p: BucketEpoch, numbers: readonly E164[], tags: ReadonlyMap<E164, Uint8Array>, capabilities: readonly string[], signal: AbortSignal | undefined): Promise<LookupResult[]> {
    const bucketIds = new Map<E164, number>();
    for (const n of new Set(numbers)) bucketIds.set(n, bucketOf(n, p.bucketBits));
    const wanted = [...new Set(bucketIds.values())];
    const buckets = new Map<number, Bucket>();
    for (let i = 0; i < wanted.length; i += this.concurrency) {
      const part = wanted.slice(i, i + this.concurrency);
      const fetched = await Promise.all(part.map((id) => this.fetch(p, id, signal)));
      part.forEach((id, j) => buckets.set(id, fetched[j]!));
    }

    return numbers.map((number) => {
      const mask = buckets.get(bucketIds.get(number)!)!.lookup(tags.get(number)!);
      return { number, capabilities: maskToCapabilities(mask, capabilities) };
    });
  }

  /** Drops the buckets of epochs the config no longer lists. */
  prune(listed: ReadonlySet<number>): void {
    for (const key of this.cache.keys()) if (!listed.has(Number(key.split('/', 1)[0]))) this.cache.delete(key);
  }

  clear(): void {
    this.cache.clear();
  }

  /**
   * One bucket, proven: its path must lead to the root of its epoch and
   * version (shared/merkle.ts), else bucket_unproven; that root must be the
   * one this client was shown for the pair before, in a config or with
   * another bucket, else view_changed. From the cache when the server says
   * it has not changed (it was proven when fetched).
   */
  private async fetch(p: BucketEpoch, id: number, signal: AbortSignal | undefined): Promise<Bucket> {
    const { stats } = this;
    if (p.bucketBaseUrl !== undefined) {
      const fromHost = await this.fetchStatic(p, p.bucketBaseUrl, id, signal);
      if (fromHost) return fromHost;
      stats.staticBucketsStale++; // its version's root was never shown to this client: the API's bucket, proven as usual
    }
    const key = `${p.epoch}/${id}`;
    const cached = this.cache.get(key);
    for (let attempt = 0; ; attempt++) {
      const revalidate = attempt === 0 ? cached : undefined;
      const r = await this.transport.request({
        method: 'GET',
        path: PATHS.blindedBucket(p.epoch, id),
        reply: BucketReply,
        auth: false,
        ifNoneMatch: revalidate?.etag,
        signal,
      });
      stats.bytesSent += r.bytesSent;
      stats.bytesReceived += r.bytesReceived;
      stats.bucketFetches++;
      if (r.status === 304) {
        if (!revalidate) throw new PcdError(ErrorCode.MalformedReply, `bucket ${id} of epoch ${p.epoch}: 304 Not Modified to a request without If-None-Match`);
        stats.bucketNotModified++;
        return revalidate.bucket;
      }
      const body = r.body;
      if (!body) throw new PcdError(ErrorCode.MalformedReply, `bucket ${id} of epoch ${p.epoch}: the reply has no body`);
      if (body.epoch !== p.epoch || body.bucket !== id) {
        throw new PcdError(ErrorCode.MalformedReply, `asked bucket ${id} of epoch ${p.epoch}, got bucket ${body.bucket} of epoch ${body.epoch}`);
      }
      let bucket: Bucket;
      try {
        bucket = Bucket.received(body.tags, body.capabilities, p.tagBytes);
      } catch (e) {
        if (e instanceof PcdError) throw new PcdError(e.code, `bucket ${id} of epoch ${p.epoch}: ${e.message}`);
        throw e;
      }
      const root = body.root;
      if (!verifyBucketPath({ epoch: p.epoch, bucket: id, tags: body.tags, capabilities: body.capabilities }, body.path, root, p.bucketBits)) {
        throw new PcdError(
          ErrorCode.BucketUnproven,
          `bucket ${id} of epoch ${p.epoch} does not lead to the root the server published for directory version ${body.version} ` +
            `(a tag dropped, added or changed, or a path of ${body.path.length} entries for ${p.bucketBits} bucket bits): no answer was produced`,
        );
      }
      // The root of the bucket's version: the one this client was shown before for the pair (in a config or with another
      // bucket), else kept now; another root for a pair seen before is view_changed (KeyPins.keepRoot).
      this.pins.keepRoot(p.epoch, body.version, root);
      stats.bucketsProven++;
      this.cache.set(key, { etag: r.etag, bucket });
      return bucket;
    }
  }

  /**
   * One bucket from the config's static host (docs/protocol.md, "Buckets
   * from a static host"): no credentials, no cookies, no referrer. The file
   * is trusted for nothing: its path must lead to the root the server showed
   * this client for the file's (epoch, version), in a config or with an API
   * bucket, never to the root written in the file; else bucket_unproven. A
   * file of a version whose root this client was never shown (published
   * before the directory moved on) is undefined: the caller asks the API,
   * whose bucket is proven as usual. A host that fails (network, 404) is an
   * error, not a silent switch to the API: the operator chose to keep bucket
   * ids away from the API, and a missing file means publishing is broken.
   */
  private async fetchStatic(p: BucketEpoch, base: string, id: number, signal: AbortSignal | undefined): Promise<Bucket | undefined> {
    const { stats } = this;
    const url = staticBucketUrl(base, p.epoch, id);
    const what = `bucket ${id} of epoch ${p.epoch} from the static bucket host (${url})`;
    let bytes: Uint8Array;
    try {
      const res = await fetch(url, { credentials: 'omit', referrerPolicy: 'no-referrer', signal });
      if (!res.ok) {
        await res.body?.cancel();
        throw new PcdError(ErrorCode.Network, `${what}: HTTP ${res.status}; the API was not asked instead (publish the epoch there with pcd publish-buckets)`);
      }
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      if (e instanceof PcdError || signal?.aborted) throw e;
      throw new PcdError(ErrorCode.Network, `${what}: ${(e as Error).message}; the API was not asked instead`, { cause: e });
    }
    stats.staticBucketFetches++;
    stats.bucketFetches++;
    stats.bytesReceived += bytes.length;
    if (bytes.length > LIMITS.maxReplyBytes) throw new PcdError(ErrorCode.MalformedReply, `${what}: ${bytes.length} bytes, more than a reply may hold`);
    let body: BucketReply;
    try {
      body = parseReply(BucketReply, decodeBody(bytes, 'msgpack'), 'msgpack');
    } catch (e) {
      throw new PcdError(ErrorCode.MalformedReply, `${what}: ${(e as Error).message}`, { cause: e });
    }
    if (body.epoch !== p.epoch || body.bucket !== id) throw new PcdError(ErrorCode.MalformedReply, `${what}: the file holds bucket ${body.bucket} of epoch ${body.epoch}`);
    const root = this.pins.root(p.epoch, body.version);
    if (root === undefined) return undefined;
    let bucket: Bucket;
    try {
      bucket = Bucket.received(body.tags, body.capabilities, p.tagBytes);
    } catch (e) {
      if (e instanceof PcdError) throw new PcdError(e.code, `${what}: ${e.message}`);
      throw e;
    }
    if (!verifyBucketPath({ epoch: p.epoch, bucket: id, tags: body.tags, capabilities: body.capabilities }, body.path, root, p.bucketBits)) {
      throw new PcdError(
        ErrorCode.BucketUnproven,
        `${what} does not lead to the root the server published for directory version ${body.version} ` +
          `(a tag dropped, added or changed, or a path of ${body.path.length} entries for ${p.bucketBits} bucket bits): no answer was produced`,
      );
    }
    stats.bucketsProven++;
    return bucket;
  }
}
