/**
 * One view for everyone: the Merkle root over each epoch's buckets
 * (shared/merkle.ts), end to end, with a real server on an ephemeral port
 * and the real client over HTTP.
 *
 * - The config's root is the root of the buckets the server serves, every
 *   bucket's path leads to it, and lookups check every bucket they fetch.
 * - A bucket with one tag dropped (the contact would read "SMS only") is
 *   bucket_unproven, never an answer; so is a path cut short, and a bucket
 *   of a version whose root the client was never shown.
 * - A config that shows another root for an (epoch, version) the client has
 *   seen is view_changed; another key for a known epoch is key_changed.
 * - A registration changes the root and the version; the client follows it
 *   (one fresh config) without error, and a bucket that did not change is
 *   still a 304 after the version moved.
 * - What one client cannot see: a fork shown consistently to a fresh client
 *   passes its checks; its root for the same (epoch, version) differs from
 *   everyone else's, which is what comparing roots between clients shows.
 *
 * The tampering is a transport wrapper: a man in the middle, or a server
 * singling this client out, rewriting decoded replies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type ClientOptions } from '../client/client.ts';
import { KeyPins, type BlindedClient } from '../client/designs/blinded.ts';
import { createTransport } from '../client/transport.ts';
import { Bucket, bucketOf } from '../shared/buckets.ts';
import type { RequestOptions, Transport, TransportReply } from '../shared/design.ts';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode } from '../shared/errors.ts';
import { auditPath, bucketLeafHash, merkleRoot, verifyBucketPath } from '../shared/merkle.ts';
import { BlindedConfigReply, BucketReply, PATHS } from '../shared/messages.ts';
import { generateKeyPair } from '../shared/noble.ts';
import { parseReply } from '../shared/schema.ts';
import { tagOf } from '../server/blinded/build.ts';
import { designOf } from '../server/designs/index.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { rejection, raw, startTestServer, type TestServer } from './helpers.ts';

const BITS = 2;
const pool = sampleNumbers({ count: 64, seed: 'one-view', regions: ['US', 'GB', 'DE'] });
/** Two registered numbers per bucket, and one left out for a later registration, in buckets 0..3. */
const inBucket = (b: number) => pool.filter((n) => bucketOf(n, BITS) === b);
const registered = [0, 1, 2, 3].flatMap((b) => inBucket(b).slice(0, 2));
const [alice, bob] = inBucket(0) as [E164, E164];
const late = inBucket(0)[2]!;
const [carol] = inBucket(3) as [E164];
const nobody = inBucket(1)[3]!;

interface Tamper {
  /** Drop this tag from every bucket reply that holds it (the path stays the server's). */
  dropTag?: Uint8Array;
  /** Cut the last entry off every bucket path. */
  shortPath?: boolean;
  /** Show this root for every epoch in the config. */
  root?: Uint8Array;
  /** Show this key for every epoch in the config. */
  publicKey?: Uint8Array;
  /** Answer bucket requests with these replies (by bucket id) instead of the server's: a recorded copy, or a fork. */
  buckets?: Map<number, BucketReply>;
  /** How many bucket requests `buckets` answers before the server's replies come through again (default all). */
  bucketsFor?: number;
}

/** Rewrites decoded replies as `t` says; `t` can change between calls. */
function tampering(inner: Transport, t: Tamper): Transport {
  return {
    async request<T>(opts: RequestOptions<T>): Promise<TransportReply<T>> {
      const isBucket = opts.path.startsWith('/v1/blinded/buckets/');
      const id = isBucket ? Number(opts.path.split('/').at(-1)) : -1;
      const canned = isBucket ? t.buckets?.get(id) : undefined;
      if (canned && (t.bucketsFor === undefined || t.bucketsFor-- > 0)) {
        return { status: 200, body: structuredClone(canned) as T, etag: undefined, bytesSent: 0, bytesReceived: 0 };
      }
      const r = await inner.request(opts);
      const body = r.body as unknown;
      if (opts.path === PATHS.blindedConfig && body) {
        for (const e of (body as BlindedConfigReply).epochs) {
          if (t.root) e.root = t.root;
          if (t.publicKey) e.publicKey = t.publicKey;
        }
      }
      if (isBucket && body) {
        const b = body as BucketReply;
        if (t.dropTag) {
          const next = Bucket.fromWire(b.tags, b.capabilities, t.dropTag.length).with(t.dropTag, 0);
          b.tags = next.tags;
          b.capabilities = next.capabilities;
        }
        if (t.shortPath) b.path = b.path.slice(0, -1);
      }
      return r;
    },
  };
}

let s: TestServer;
let token: string;

const blindedOf = () => designOf(s.server.designs, 'blinded')!;
/** The server's tag of `n` in epoch 1, as the build computes it: what a doctored bucket leaves out. */
const serverTag = (n: E164) => {
  const epochs = blindedOf().epochs;
  const e = epochs.get(1);
  return tagOf(epochs.backend, e.params.mode, e.key.secretKey, n, e.params.tagBytes);
};

async function config(): Promise<BlindedConfigReply> {
  const r = await raw(s.server.url + PATHS.blindedConfig, { method: 'GET' });
  expect(r.status).toBe(200);
  return parseReply(BlindedConfigReply, r.json, 'json');
}

async function bucket(epoch: number, id: number): Promise<BucketReply> {
  const r = await raw(s.server.url + PATHS.blindedBucket(epoch, id), { method: 'GET' });
  expect(r.status).toBe(200);
  return parseReply(BucketReply, r.json, 'json');
}

const via = (t: Tamper, extra: Partial<ClientOptions> = {}) =>
  createClient({ baseUrl: s.server.url, token, design: 'blinded', transport: tampering(createTransport({ baseUrl: s.server.url, token }), t), ...extra });
const statsOf = (c: ReturnType<typeof createClient>) => (c.design as BlindedClient).stats;

beforeAll(async () => {
  s = await startTestServer({ designs: ['blinded'], bucketBits: BITS });
  for (let i = 0; i < registered.length; i += 2) {
    const r = await s.admin.createAccount({ email: `u${i}@example.org`, numbers: registered.slice(i, i + 2), capabilities: ['messages'] });
    token = r.token;
  }
});
afterAll(() => s.close());

describe('the published root', () => {
  it('is the root of the buckets served, each of whose paths leads to it at the version it names', async () => {
    const c = await config();
    const e = c.epochs.find((x) => x.epoch === c.current)!;
    expect(e.root).toHaveLength(32);
    expect(e.version).toBe(s.server.store.directoryVersion());
    const replies = await Promise.all([0, 1, 2, 3].map((b) => bucket(e.epoch, b)));
    const leaves = replies.map((r) => bucketLeafHash({ epoch: r.epoch, bucket: r.bucket, tags: r.tags, capabilities: r.capabilities }));
    expect(Buffer.from(merkleRoot(leaves)).toString('hex')).toBe(Buffer.from(e.root).toString('hex'));
    for (const r of replies) {
      expect(r.version).toBe(e.version);
      expect(r.path).toHaveLength(BITS);
      expect(r.path.map((p) => Buffer.from(p).toString('hex'))).toEqual(auditPath(leaves, r.bucket).map((p) => Buffer.from(p).toString('hex')));
      expect(verifyBucketPath({ epoch: r.epoch, bucket: r.bucket, tags: r.tags, capabilities: r.capabilities }, r.path, e.root, BITS)).toBe(true);
    }
  });

  it('is checked by every lookup: the answers are the directory’s, every fetched bucket proven', async () => {
    const client = via({});
    expect(await client.lookupMany([alice, carol, nobody])).toEqual([
      { number: alice, capabilities: ['messages'] },
      { number: carol, capabilities: ['messages'] },
      { number: nobody, capabilities: [] },
    ]);
    const stats = statsOf(client);
    expect(stats.bucketsProven).toBe(3);
    expect(stats.bucketsProven).toBe(stats.bucketFetches);
  });
});

describe('a doctored bucket', () => {
  it('with one tag dropped is bucket_unproven, never "SMS only"', async () => {
    const dropTag = serverTag(alice);
    // Without the path check the doctored bucket would answer "SMS only" for alice: the attack is real.
    const served = await bucket(1, 0);
    const doctored = Bucket.received(served.tags, served.capabilities, dropTag.length).with(dropTag, 0);
    expect(Bucket.received(served.tags, served.capabilities, dropTag.length).lookup(dropTag)).toBe(1);
    expect(doctored.lookup(dropTag)).toBe(0);

    const client = via({ dropTag });
    const e = await rejection(client.lookupMany([alice, carol]));
    expect(e.code).toBe(ErrorCode.BucketUnproven);
    expect(e.status).toBe(502);
    expect(e.message).toMatch(/bucket 0 of epoch 1 does not lead to the root the server published for directory version \d+/);
    expect(e.message).toMatch(/no answer was produced/);
    // bob shares alice's bucket: his lookup is refused as well, though his own tag is there.
    expect((await rejection(client.lookup(bob))).code).toBe(ErrorCode.BucketUnproven);
  });

  it('with a path cut short is bucket_unproven', async () => {
    const e = await rejection(via({ shortPath: true }).lookup(carol));
    expect(e.code).toBe(ErrorCode.BucketUnproven);
    expect(e.message).toMatch(/a path of 1 entries for 2 bucket bits/);
  });

  it('of a version whose root the client never saw is proven against the root it carries, which is then kept: another root for that version later is view_changed', async () => {
    // A bucket of a version this client's config does not show (the directory moved on since): no config refetch.
    const copy = await bucket(1, 0);
    const other = { ...copy, version: copy.version + 1000 };
    const pins = new KeyPins();
    const client = via({ buckets: new Map([[0, other]]), bucketsFor: 1 }, { pins });
    expect(await client.lookup(alice)).toEqual({ number: alice, capabilities: ['messages'] });
    expect(statsOf(client).bucketFetches).toBe(1);
    expect(statsOf(client).configFetches).toBe(1);
    expect(Buffer.from(pins.root(s.server.url, 1, other.version)!).equals(Buffer.from(copy.root))).toBe(true);
    // The same version with another root (and a bucket and path to match it) is refused.
    const dropTag = serverTag(alice);
    const b = Bucket.received(copy.tags, copy.capabilities, dropTag.length).with(dropTag, 0);
    const forkedRoot = bucketLeafHash({ epoch: 1, bucket: 0, tags: b.tags, capabilities: b.capabilities });
    const honest = await Promise.all([0, 1, 2, 3].map((id) => bucket(1, id)));
    const leaves = honest.map((r) => (r.bucket === 0 ? forkedRoot : bucketLeafHash({ epoch: 1, bucket: r.bucket, tags: r.tags, capabilities: r.capabilities })));
    const forked = { ...other, tags: b.tags, capabilities: b.capabilities, path: auditPath(leaves, 0), root: merkleRoot(leaves) };
    (client.design as BlindedClient).clear();
    const again = via({ buckets: new Map([[0, forked]]) }, { pins });
    expect((await rejection(again.lookup(alice))).code).toBe(ErrorCode.ViewChanged);
  });
});

describe('a config that changes', () => {
  it('showing another root for an (epoch, version) seen before is view_changed', async () => {
    const t: Tamper = {};
    const client = via(t);
    expect((await client.lookup(carol)).capabilities).toEqual(['messages']);
    t.root = new Uint8Array(32).fill(9);
    (client.design as BlindedClient).clear(); // forgets config, tags and buckets, not the pins and roots
    const e = await rejection(client.lookup(carol));
    expect(e.code).toBe(ErrorCode.ViewChanged);
    expect(e.status).toBe(502);
    expect(e.message).toContain(`${s.server.url} now shows a different bucket root for epoch 1 at directory version ${s.server.store.directoryVersion()}`);
  });

  it('showing another key for a known epoch is key_changed', async () => {
    const t: Tamper = {};
    const client = via(t);
    expect((await client.lookup(carol)).capabilities).toEqual(['messages']);
    t.publicKey = generateKeyPair('voprf').publicKey;
    (client.design as BlindedClient).clear();
    expect((await rejection(client.lookup(carol))).code).toBe(ErrorCode.KeyChanged);
  });

  it('a fork shown consistently to a fresh client passes its checks; comparing roots between clients shows it', async () => {
    // The server shows one client a directory without alice, at the same version, with a root and paths to match.
    const c = await config();
    const honest = await Promise.all([0, 1, 2, 3].map((b) => bucket(1, b)));
    const dropTag = serverTag(alice);
    const forked = honest.map((r) => {
      if (r.bucket !== 0) return r;
      const b = Bucket.received(r.tags, r.capabilities, dropTag.length).with(dropTag, 0);
      return { ...r, tags: b.tags, capabilities: b.capabilities };
    });
    const leaves = forked.map((r) => bucketLeafHash({ epoch: 1, bucket: r.bucket, tags: r.tags, capabilities: r.capabilities }));
    const forkRoot = merkleRoot(leaves);
    const fork: Tamper = { root: forkRoot, buckets: new Map(forked.map((r) => [r.bucket, { ...r, path: auditPath(leaves, r.bucket), root: forkRoot }])) };

    const alone = new KeyPins();
    expect(await via(fork, { pins: alone }).lookup(alice)).toEqual({ number: alice, capabilities: [] });
    // Its root for (epoch 1, this version) is not the one every other client is shown.
    const version = c.epochs[0]!.version;
    expect(Buffer.from(alone.root(s.server.url, 1, version)!).equals(Buffer.from(c.epochs[0]!.root))).toBe(false);

    // A client that saw the honest root for that version refuses the fork.
    const seen = new KeyPins();
    expect((await via({}, { pins: seen }).lookup(alice)).capabilities).toEqual(['messages']);
    expect((await rejection(via(fork, { pins: seen }).lookup(alice))).code).toBe(ErrorCode.ViewChanged);
  });
});

describe('a registration', () => {
  it('changes the root and the version; the client follows it without error, and an unchanged bucket stays a 304', async () => {
    const before = await config();
    const pins = new KeyPins();
    const client = via({}, { pins });
    expect(await client.lookupMany([late, carol])).toEqual([
      { number: late, capabilities: [] },
      { number: carol, capabilities: ['messages'] },
    ]);
    const stats = statsOf(client);
    const fetches = stats.configFetches;

    await s.admin.createAccount({ email: 'late@example.org', numbers: [late], capabilities: ['messages', 'facetime'] });
    const after = await config();
    expect(after.epochs[0]!.version).toBeGreaterThan(before.epochs[0]!.version);
    expect(Buffer.from(after.epochs[0]!.root).equals(Buffer.from(before.epochs[0]!.root))).toBe(false);

    // late's bucket is at the new version: proven against the root it carries, which the client keeps (no config refetch).
    expect(await client.lookupMany([late, carol])).toEqual([
      { number: late, capabilities: ['messages', 'facetime'] },
      { number: carol, capabilities: ['messages'] },
    ]);
    expect(stats.configFetches).toBe(fetches);
    // carol's bucket did not change: 304, the bucket proven at the earlier version kept.
    expect(stats.bucketNotModified).toBe(1);
    expect(stats.bucketsProven).toBe(3);
    expect(pins.root(s.server.url, 1, after.epochs[0]!.version)).toEqual(new Uint8Array(after.epochs[0]!.root));
  });
});
