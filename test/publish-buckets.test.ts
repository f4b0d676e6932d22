/**
 * Buckets from any static host: `pcd publish-buckets` writes an epoch's
 * buckets as files, a plain node:http static server serves them, the pcd
 * server's config names it (`bucketBaseUrl`), and the real client fetches
 * buckets there, checked against the root the config showed.
 *
 * - Lookups (registered and not) give the same answers as through the API;
 *   every bucket request reaches the static host, none the API's bucket route.
 * - A doctored file (one tag changed) is bucket_unproven, not an answer.
 * - A static host that answers 404 is a network error naming it; the API is
 *   not asked instead.
 * - A file of a directory version whose root the client was never shown
 *   (published before a registration) is not used; the API's bucket is.
 * - Bad input is one line and a non-zero exit: an unknown epoch, a missing
 *   --out, a folder that is not a pcd data folder, a folder a server holds.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../client/client.ts';
import { createBlindedClientWith, type BlindedClient } from '../client/designs/blinded.ts';
import { createTransport } from '../client/transport.ts';
import { bucketOf } from '../shared/buckets.ts';
import { decodeBody, encodeBody } from '../shared/codec.ts';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode } from '../shared/errors.ts';
import { BlindedConfigReply, BucketReply, PATHS, staticBucketFile } from '../shared/messages.ts';
import { parseReply } from '../shared/schema.ts';
import { MANIFEST_FILE, type BucketManifest } from '../server/blinded/publish.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { raw, rejection, runPcd, startTestServer, tempDir, type TestServer } from './helpers.ts';

const BITS = 2;
const pool = sampleNumbers({ count: 40, seed: 'publish-buckets', regions: ['US', 'GB', 'DE'] });
const registered = pool.slice(0, 12);
const unregistered = pool.slice(12, 20);
const asked: E164[] = [...registered.slice(0, 6), ...unregistered.slice(0, 6)];

/** A static file server over `root`, at `http://127.0.0.1:PORT/` + the path below it, counting the requests it gets (path → count). */
async function staticHost(root: string, below: string): Promise<{ url: string; hits: Map<string, number>; close: () => Promise<void> }> {
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    hits.set(p, (hits.get(p) ?? 0) + 1);
    const file = path.join(root, path.normalize(p));
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/msgpack', 'access-control-allow-origin': '*' }).end(fs.readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/${below}`, hits, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

let s: TestServer;
let token: string;
let out: string;
let host: Awaited<ReturnType<typeof staticHost>>;
let viaApi: Map<E164, readonly string[]>;
let published: { code: number; stdout: string; stderr: string };
/** Bucket requests the API answered, counted at the API (the server's own bucket log would only show them a minute late). */
let apiBucketRequests = 0;

const answers = async (c: ReturnType<typeof createClient>) => new Map((await c.lookupMany(asked)).map((r) => [r.number, [...r.capabilities]] as const));
const statsOf = (c: ReturnType<typeof createClient>) => (c.design as BlindedClient).stats;

beforeAll(async () => {
  s = await startTestServer({ designs: ['blinded'], bucketBits: BITS });
  for (let i = 0; i < registered.length; i += 3) {
    const r = await s.admin.createAccount({ email: `u${i}@example.org`, numbers: registered.slice(i, i + 3), capabilities: i % 2 ? ['messages'] : ['messages', 'facetime'] });
    token = r.token;
  }
  viaApi = await answers(s.client(token, 'blinded'));
  await s.close();

  out = tempDir('pcd-publish-');
  published = await runPcd(['publish-buckets', '--data', s.dataDir, '--epoch', '1', '--out', out]);
  // Served from the parent folder, so the base URL has a path of its own (as a CDN's often does).
  host = await staticHost(path.resolve(out, '..'), path.basename(out));

  s = await s.restart({ bucketBaseUrl: host.url });
  // Requests to the API's bucket route, counted where the client sends them (its transport calls the global fetch).
  const realFetch = globalThis.fetch;
  globalThis.fetch = (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const u = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (u.startsWith(s.server.url + '/v1/blinded/buckets/')) apiBucketRequests++;
    return realFetch(input, init);
  }) as typeof fetch;
  restoreFetch = () => void (globalThis.fetch = realFetch);
});
let restoreFetch = () => {};
afterAll(async () => {
  restoreFetch();
  await s?.close();
  await host?.close();
});

describe('pcd publish-buckets', () => {
  it('writes one file per bucket, each the API reply, and a manifest naming the epoch, version, root and bucketBits', async () => {
    expect(published.stderr).toBe('');
    expect(published.code).toBe(0);
    expect(published.stdout).toMatch(/^published epoch 1: 4 buckets \(bucketBits 2, [\d,]+ bytes\) at directory version \d+, root [A-Za-z0-9+/=]{44}, into /);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, '1', MANIFEST_FILE), 'utf8')) as BucketManifest;
    const c = parseReply(BlindedConfigReply, (await raw(s.server.url + PATHS.blindedConfig, { method: 'GET' })).json, 'json');
    const e = c.epochs.find((x) => x.epoch === 1)!;
    expect(manifest).toMatchObject({ epoch: 1, bucketBits: BITS, buckets: 4, version: e.version, root: Buffer.from(e.root).toString('base64'), format: 'msgpack' });
    expect(c.bucketBaseUrl).toBe(host.url);
    expect(fs.readdirSync(path.join(out, '1')).sort()).toEqual([MANIFEST_FILE, ...[0, 1, 2, 3].map(staticBucketFile)].sort());
    // Byte for byte the API's MessagePack reply: the same encoding, content, path and root.
    for (let b = 0; b < 4; b++) {
      const file = fs.readFileSync(path.join(out, '1', staticBucketFile(b)));
      const api = await fetch(s.server.url + PATHS.blindedBucket(1, b), { headers: { accept: 'application/msgpack' } });
      expect(api.headers.get('content-type')).toMatch(/msgpack/);
      expect(Buffer.from(await api.arrayBuffer()).equals(file)).toBe(true);
      expect(parseReply(BucketReply, decodeBody(file, 'msgpack'), 'msgpack')).toMatchObject({ epoch: 1, bucket: b, version: e.version });
    }
  });
});

describe('lookups through the static host', () => {
  it('answer as through the API, with every bucket from the static host and none from the API', async () => {
    expect([...viaApi.values()].filter((c) => c.length > 0)).toHaveLength(6); // the registered half reads "messenger"
    host.hits.clear();
    apiBucketRequests = 0;
    const c = s.client(token, 'blinded');
    expect(await answers(c)).toEqual(viaApi);
    const wanted = new Set(asked.map((n) => bucketOf(n, BITS)));
    expect([...host.hits.keys()].sort()).toEqual([...wanted].map((b) => `/${path.basename(out)}/1/${staticBucketFile(b)}`).sort());
    expect(apiBucketRequests).toBe(0);
    expect(statsOf(c)).toMatchObject({ staticBucketFetches: wanted.size, bucketsProven: wanted.size, staticBucketsStale: 0 });
  });

  it('are not used through an OHTTP relay (staticBuckets false): the buckets come from the API, as the relay would carry them', async () => {
    host.hits.clear();
    apiBucketRequests = 0;
    const design = createBlindedClientWith(createTransport({ baseUrl: s.server.url, token }), { staticBuckets: false, issuer: createTransport({ baseUrl: s.server.url, token }) });
    const got = new Map((await design.lookupBatch(asked)).map((r) => [r.number, [...r.capabilities]] as const));
    expect(got).toEqual(viaApi);
    expect(host.hits.size).toBe(0);
    expect(apiBucketRequests).toBeGreaterThan(0);
    expect(design.stats.staticBucketFetches).toBe(0);
  });

  it('refuse a doctored file (one tag changed) with bucket_unproven', async () => {
    const b = bucketOf(registered[0]!, BITS);
    const file = path.join(out, '1', staticBucketFile(b));
    const good = fs.readFileSync(file);
    const reply = decodeBody(good, 'msgpack') as BucketReply;
    const tags = Uint8Array.from(reply.tags);
    // The last tag's last byte up (or the first tag's down): the tags stay sorted, so only the Merkle check can tell.
    const last = tags.length - 1;
    if (tags[last]! < 0xff) tags[last] = tags[last]! + 1;
    else tags[0] = tags[0]! - 1;
    fs.writeFileSync(file, encodeBody({ ...reply, tags }, 'msgpack'));
    try {
      apiBucketRequests = 0;
      const e = await rejection(s.client(token, 'blinded').lookup(registered[0]!));
      expect(e.code).toBe(ErrorCode.BucketUnproven);
      expect(e.message).toContain('static bucket host');
      expect(apiBucketRequests).toBe(0);
    } finally {
      fs.writeFileSync(file, good);
    }
  });

  it('say so when the static host has no file (404), without asking the API', async () => {
    const b = bucketOf(unregistered[0]!, BITS);
    const file = path.join(out, '1', staticBucketFile(b));
    const moved = file + '.away';
    fs.renameSync(file, moved);
    try {
      apiBucketRequests = 0;
      const e = await rejection(s.client(token, 'blinded').lookup(unregistered[0]!));
      expect(e.code).toBe(ErrorCode.Network);
      expect(e.message).toMatch(/static bucket host .*HTTP 404; the API was not asked instead/);
      expect(apiBucketRequests).toBe(0);
    } finally {
      fs.renameSync(moved, file);
    }
  });
});

describe('after the directory moved on', () => {
  it('a file of a version whose root the client was never shown is not used: the API serves that bucket, proven as usual', async () => {
    const late = unregistered[7]!;
    await s.admin.createAccount({ email: 'late@example.org', numbers: [late], capabilities: ['messages'] });
    host.hits.clear();
    apiBucketRequests = 0;
    const c = s.client(token, 'blinded');
    const r = await c.lookup(late);
    expect(r.capabilities).toEqual(['messages']); // the static file predates the registration: it would have said SMS only
    expect(host.hits.size).toBe(1);
    expect(apiBucketRequests).toBe(1);
    expect(statsOf(c)).toMatchObject({ staticBucketFetches: 1, staticBucketsStale: 1, bucketsProven: 1 });
  });
});

describe('pcd publish-buckets refuses, in one line and a non-zero exit,', () => {
  const oneLine = (r: { code: number; stdout: string; stderr: string }) => {
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    return r.stderr.trim();
  };

  it('an epoch the folder does not have (with the server stopped)', async () => {
    await s.close();
    try {
      expect(oneLine(await runPcd(['publish-buckets', '--data', s.dataDir, '--epoch', '7', '--out', tempDir()]))).toMatch(/has no epoch 7 \(its newest is 1\).*unknown_epoch/);
    } finally {
      s = await s.restart({ bucketBaseUrl: host.url });
    }
  });

  it('a missing --out', async () => {
    expect(oneLine(await runPcd(['publish-buckets', '--data', s.dataDir, '--epoch', '1']))).toBe('pcd: --out DIR is required: the folder to write <epoch>/ into, which a static host serves (invalid_field)');
  });

  it('a folder that is not a pcd data folder, and creates nothing in it', async () => {
    const empty = tempDir();
    expect(oneLine(await runPcd(['publish-buckets', '--data', empty, '--epoch', '1', '--out', tempDir()]))).toMatch(/is not a pcd data folder: it has no pcd\.sqlite/);
    expect(fs.readdirSync(empty)).toEqual([]);
    expect(oneLine(await runPcd(['publish-buckets', '--data', path.join(empty, 'nope'), '--epoch', '1', '--out', tempDir()]))).toMatch(/not a pcd data folder: no such directory/);
  });

  it('a folder a running server holds, naming it', async () => {
    expect(oneLine(await runPcd(['publish-buckets', '--data', s.dataDir, '--epoch', '1', '--out', tempDir()]))).toMatch(/is in use by pcd serve \(pid \d+.*stop it first/);
  });
});
