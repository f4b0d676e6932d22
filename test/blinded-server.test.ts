/**
 * The blinded design end to end: a real server on an ephemeral port over a
 * temporary data folder, the real blinded client over the real HTTP
 * transport, the reference crypto (no mocks). Covers the config, answers
 * against the directory for bucketBits 0 and 4 in both modes, registration
 * and deletion, the epoch cache across restarts, bad elements, unknown and
 * retired epochs, ETags and 304s, a server evaluating with another key, key
 * rotation through its grace period with an injected clock, the key file,
 * and that nothing derived from a looked-up number is persisted.
 *
 * Directories stay small (tens of numbers): the reference crypto costs
 * ~3 ms per evaluation. The servers take token size classes 1, 16, 64 and
 * 4096: the lookups here of 17 to 48 numbers are padded to 64 elements,
 * not to the test server's 256 (a padding element costs the client and the
 * server what a number does).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { createTransport } from '../client/transport.ts';
import { createBlindedClientWith, type BlindedClient } from '../client/designs/blinded.ts';
import { bucketOf, truncateTag, DEFAULT_TAG_BYTES } from '../shared/buckets.ts';
import { CAPABILITIES } from '../shared/capabilities.ts';
import type { Transport } from '../shared/design.ts';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError, isPcdError } from '../shared/errors.ts';
import { BlindedConfigReply, PATHS } from '../shared/messages.ts';
import { blindBatch, blindEvaluateBatch, evaluate, generateKeyPair, publicKeyOf } from '../shared/noble.ts';
import { parseReply } from '../shared/schema.ts';
import { LIMITS } from '../shared/limits.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { Store } from '../server/store.ts';
import { KEY_FILE, readEpochKeys } from '../disk/keyfile.ts';
import { BucketTable, EPOCHS_DIR } from '../server/blinded/table.ts';
import { computeTags } from '../server/blinded/build.ts';
import { loadBackend } from '../shared/backends.ts';
import { DEFAULT_BACKEND, ELEMENT_BYTES, SUITE, type OprfMode } from '../shared/suite.ts';
import { e164ToKey } from '../shared/e164.ts';
import { rotateKeyOffline, type BlindedServerDesign } from '../server/designs/blinded.ts';
import { designOf } from '../server/designs/index.ts';
import { SHORT_LIST_SIZE_CLASSES, raw, startTestServer, tempDir, testClock, type TestServer } from './helpers.ts';

const HOUR = 3_600_000;

// 48 valid mobile numbers: 40 to register (20 accounts of 2), 8 never registered.
const pool = sampleNumbers({ count: 48, seed: 'blinded-server-test', regions: ['US', 'GB', 'DE', 'IN'] });
const registered = pool.slice(0, 40);
const unregistered = pool.slice(40);
const CAPS: readonly (readonly string[])[] = [['messages', 'facetime'], ['messages'], ['facetime']];
const capsOf = (i: number) => CAPS[Math.floor(i / 2) % CAPS.length]!;

let open: TestServer[] = [];
afterEach(async () => {
  for (const s of open) await s.close().catch(() => {});
  open = [];
});

async function start(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer({ designs: ['blinded'], sizeClasses: SHORT_LIST_SIZE_CLASSES, ...options });
  open.push(s);
  return s;
}

async function restart(s: TestServer, overrides: Parameters<TestServer['restart']>[0] = {}): Promise<TestServer> {
  open = open.filter((x) => x !== s);
  const next = await s.restart(overrides);
  open.push(next);
  return next;
}

/** Registers numbers two per account; returns the last account's token and the account ids. */
async function register(s: TestServer, numbers: readonly E164[] = registered): Promise<{ token: string; ids: number[] }> {
  const ids: number[] = [];
  let token = '';
  for (let i = 0; i < numbers.length; i += 2) {
    const r = await s.admin.createAccount({
      email: `user${i / 2}-${Math.random().toString(36).slice(2, 8)}@example.org`,
      numbers: numbers.slice(i, i + 2) as string[],
      capabilities: [...capsOf(i)],
    });
    ids.push(r.accountId);
    token = r.token; // the last account: tests delete the first ones
  }
  return { token, ids };
}

function blindedClient(s: TestServer, token: string, extra: { format?: 'json' | 'msgpack'; transport?: Transport } = {}): BlindedClient {
  const transport = extra.transport ?? createTransport({ baseUrl: s.server.url, token, format: extra.format });
  return createBlindedClientWith(transport, { allowOprf: true }); // some tests here run OPRF-mode epochs on purpose
}

function blindedOf(s: TestServer): BlindedServerDesign {
  return designOf(s.server.designs, 'blinded')!;
}

async function config(s: TestServer): Promise<BlindedConfigReply> {
  const r = await raw(s.server.url + PATHS.blindedConfig, { method: 'GET' });
  expect(r.status).toBe(200);
  return parseReply(BlindedConfigReply, r.json, 'json');
}

const expected = (numbers: readonly E164[]) =>
  numbers.map((n) => {
    const i = registered.indexOf(n);
    return { number: n, capabilities: i < 0 ? [] : [...capsOf(i)] };
  });

function evaluateBody(epoch: number, elements: Uint8Array[]): string {
  return JSON.stringify({ epoch, elements: elements.map((e) => Buffer.from(e).toString('base64')) });
}

const jsonAuth = (token: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' });

/** Every byte of every file under `dir`. */
function allBytes(dir: string): Buffer {
  const parts: Buffer[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const abs = path.join(d, e.name);
      if (e.isDirectory()) walk(abs);
      else parts.push(fs.readFileSync(abs));
    }
  };
  walk(dir);
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------

describe('GET /v1/blinded/config', () => {
  it('names the suite, mode, capabilities, parameters and the epochs with their public keys', async () => {
    const s = await start();
    const c = await config(s);
    expect(c).toMatchObject({ suite: SUITE, mode: 'voprf', capabilities: [...CAPABILITIES], tagBytes: DEFAULT_TAG_BYTES, bucketBits: 0, current: 1 });
    expect(c.epochs).toHaveLength(1);
    expect(c.epochs[0]).toMatchObject({ epoch: 1, mode: 'voprf', bucketBits: 0, tagBytes: DEFAULT_TAG_BYTES });
    expect(c.epochs[0]!.publicKey).toHaveLength(ELEMENT_BYTES);
    expect(c.epochs[0]!.retiresAt).toBeUndefined();
    // The published key is the key file's key.
    const keys = readEpochKeys(s.dataDir);
    expect([...keys.keys()]).toEqual([1]);
    expect(Buffer.from(publicKeyOf(keys.get(1)!)).toString('hex')).toBe(Buffer.from(c.epochs[0]!.publicKey).toString('hex'));
  });

  it('takes bucketBits, mode and tagBytes of a new data folder from the options', async () => {
    const s = await start({ bucketBits: 5, mode: 'oprf', tagBytes: 12 });
    expect(await config(s)).toMatchObject({ mode: 'oprf', bucketBits: 5, tagBytes: 12, current: 1 });
  });
});

describe.each([
  { mode: 'voprf' as OprfMode, bucketBits: 0 },
  { mode: 'voprf' as OprfMode, bucketBits: 4 },
  { mode: 'oprf' as OprfMode, bucketBits: 0 },
  { mode: 'oprf' as OprfMode, bucketBits: 4 },
])('lookups in $mode mode with bucketBits $bucketBits', ({ mode, bucketBits }) => {
  it('answer every number as the directory does, in order, duplicates kept; repeats cost no evaluation', async () => {
    const s = await start({ mode, bucketBits });
    const { token } = await register(s);
    const client = blindedClient(s, token);
    const asked = [...registered.slice(0, 12), ...unregistered, registered[3]!, unregistered[0]!, registered[39]!];
    expect(await client.lookupBatch(asked)).toEqual(expected(asked));
    // Deduplicated before blinding, ONE evaluate request for the batch.
    expect(client.stats.evaluateRequests).toBe(1);
    expect(client.stats.elementsEvaluated).toBe(new Set(asked).size);
    const bucketsNeeded = new Set(asked.map((n) => bucketOf(n, bucketBits))).size;
    expect(client.stats.bucketFetches).toBe(bucketsNeeded);

    // Again: tags from the tag cache, buckets revalidated (304).
    expect(await client.lookupBatch(asked)).toEqual(expected(asked));
    expect(client.stats.evaluateRequests).toBe(1);
    expect(client.stats.bucketNotModified).toBe(bucketsNeeded);

    // Every registered number, over JSON as well.
    const jsonClient = blindedClient(s, token, { format: 'json' });
    expect(await jsonClient.lookupBatch(registered)).toEqual(expected(registered));
  });
});

describe('directory changes', () => {
  it('a registration and a deletion are visible to the next blinded lookup', async () => {
    const s = await start({ bucketBits: 2 });
    const { token, ids } = await register(s, registered.slice(0, 10));
    const client = blindedClient(s, token);
    const [c1, c2] = [unregistered[0]!, unregistered[1]!];
    expect(await client.lookupBatch([c1, registered[0]!])).toEqual([
      { number: c1, capabilities: [] },
      { number: registered[0], capabilities: ['messages', 'facetime'] },
    ]);
    const carol = await s.admin.createAccount({ email: 'carol@example.org', numbers: [c1, c2], capabilities: ['facetime'] });
    expect((await client.lookupBatch([c1, c2])).map((r) => r.capabilities)).toEqual([['facetime'], ['facetime']]);
    await s.admin.deleteAccount(carol.accountId);
    expect((await client.lookupBatch([c1, c2])).map((r) => r.capabilities)).toEqual([[], []]);
    await s.admin.deleteAccount(ids[0]!);
    expect((await client.lookupBatch([registered[0]!, registered[1]!, registered[2]!])).map((r) => r.capabilities)).toEqual([
      [],
      [],
      ['messages'],
    ]);
    // The tags came from the client's cache each time: one evaluation per distinct number.
    expect(client.stats.elementsEvaluated).toBe(5);
  });
});

describe('the epoch cache file', () => {
  it('is reused after a restart (no Evaluate), and rebuilt when the directory changed while the server was down', async () => {
    let s = await start({ bucketBits: 3 });
    const { token } = await register(s);
    expect(blindedOf(s).epochs.stats).toMatchObject({ builds: 1, cacheLoads: 0 });
    const file = path.join(s.dataDir, EPOCHS_DIR, '1.bin');

    s = await restart(s);
    expect(blindedOf(s).epochs.stats).toMatchObject({ builds: 0, cacheLoads: 1, evaluations: 0 });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(await blindedClient(s, token).lookupBatch(pool)).toEqual(expected(pool));
    expect(blindedOf(s).epochs.stats.evaluations).toBe(0); // lookups never Evaluate on the server

    // A change made to the database directly (as `pcd seed` does) makes the cache stale.
    const dataDir = s.dataDir;
    await s.close();
    open = [];
    const store = Store.open(dataDir);
    store.bulkInsert([{ email: 'late@example.org', numbers: [unregistered[7]!], mask: 1 }], Date.now());
    store.close();
    s = await start({ dataDir, bucketBits: 3 });
    expect(blindedOf(s).epochs.stats).toMatchObject({ builds: 1, cacheLoads: 0, evaluations: registered.length + 1 });
    const [late] = await blindedClient(s, token).lookupBatch([unregistered[7]!]);
    expect(late!.capabilities).toEqual(['messages']);
  });

  it('holds a header with the epoch, parameters, directory version and public key, and a checksum', async () => {
    const s = await start({ bucketBits: 2 });
    await register(s, registered.slice(0, 6));
    await s.close();
    open = [];
    const buf = fs.readFileSync(path.join(s.dataDir, EPOCHS_DIR, '1.bin'));
    const pk = (await (async () => {
      const store = Store.open(s.dataDir);
      try {
        return store.db.prepare<[], { public_key: Buffer; v: string }>("SELECT public_key, (SELECT value FROM meta WHERE key = 'directory_version') AS v FROM epochs").get()!;
      } finally {
        store.close();
      }
    })())!;
    const expect1 = { epoch: 1, mode: 'voprf' as const, bucketBits: 2, tagBytes: 8, publicKey: new Uint8Array(pk.public_key) };
    const got = BucketTable.deserialize(buf, expect1);
    expect('table' in got && got.directoryVersion).toBe(Number(pk.v));
    expect('table' in got && got.table.size).toBe(6);
    const corrupt = Buffer.from(buf);
    corrupt[70] = corrupt[70]! ^ 1;
    expect(BucketTable.deserialize(corrupt, expect1)).toEqual({ problem: expect.stringMatching(/checksum/) });
    expect(BucketTable.deserialize(buf, { ...expect1, bucketBits: 3 })).toEqual({ problem: expect.stringMatching(/parameters/) });
  });
});

describe('bad requests', () => {
  it('rejects bad elements before evaluating any, naming the index; too many and wrong lengths too', async () => {
    const s = await start({ blindedAuth: 'account' }); // requests by hand, with the account's bearer token
    const { token } = await register(s, registered.slice(0, 2));
    const url = s.server.url + PATHS.blindedEvaluate;
    const { blinded } = blindBatch('voprf', [utf8ToBytes(unregistered[0]!), utf8ToBytes(unregistered[1]!)]);

    const identity = await raw(url, { headers: jsonAuth(token), body: evaluateBody(1, [blinded[0]!, new Uint8Array(32), blinded[1]!]) });
    expect(identity.status).toBe(400);
    expect(identity.json.error.code).toBe(ErrorCode.InvalidElement);
    expect(identity.json.error.message).toMatch(/elements\[1\].*identity/);

    const nonCanonical = await raw(url, { headers: jsonAuth(token), body: evaluateBody(1, [new Uint8Array(32).fill(0xff)]) });
    expect(nonCanonical.status).toBe(400);
    expect(nonCanonical.json.error).toMatchObject({ code: ErrorCode.InvalidElement, message: expect.stringMatching(/elements\[0\].*canonical/) });

    const short = await raw(url, { headers: jsonAuth(token), body: evaluateBody(1, [blinded[0]!, blinded[1]!.subarray(0, 31)]) });
    expect(short.status).toBe(400);
    expect(short.json.error).toMatchObject({ code: ErrorCode.InvalidElement, message: expect.stringMatching(/elements\[1\].*32 bytes/) });

    const many = await raw(url, { headers: jsonAuth(token), body: evaluateBody(1, Array.from({ length: LIMITS.maxBatch + 1 }, () => blinded[0]!)) });
    expect(many.status).toBe(400);
    expect(many.json.error.code).toBe(ErrorCode.TooManyItems);

    const none = await raw(url, { headers: jsonAuth(token), body: evaluateBody(1, []) });
    expect(none.status).toBe(400);

    const anonymous = await raw(url, { headers: { 'content-type': 'application/json' }, body: evaluateBody(1, [blinded[0]!]) });
    expect(anonymous.status).toBe(401);

    // Nothing was evaluated: the evaluation log is empty once flushed; a good request still works.
    const good = await raw(url, { headers: jsonAuth(token), body: evaluateBody(1, [blinded[0]!]) });
    expect(good.status).toBe(200);
    expect(good.json).toMatchObject({ epoch: 1 });
    expect(Buffer.from(good.json.proof, 'base64')).toHaveLength(64);
    await s.close();
    open = [];
    const store = Store.open(s.dataDir);
    try {
      expect(store.db.prepare('SELECT epoch, count FROM blinded_eval_log').all()).toEqual([{ epoch: 1, count: 1 }]);
    } finally {
      store.close();
    }
  });

  it('answers unknown epochs 404, bad path segments 400, buckets out of range 404', async () => {
    const s = await start({ bucketBits: 2, blindedAuth: 'account' }); // requests by hand, with the account's bearer token
    const { token } = await register(s, registered.slice(0, 2));
    const { blinded } = blindBatch('voprf', [utf8ToBytes(unregistered[0]!)]);
    const ev = await raw(s.server.url + PATHS.blindedEvaluate, { headers: jsonAuth(token), body: evaluateBody(7, blinded) });
    expect(ev.status).toBe(404);
    expect(ev.json.error.code).toBe(ErrorCode.UnknownEpoch);

    const get = (p: string) => raw(s.server.url + p, { method: 'GET' });
    expect((await get('/v1/blinded/buckets/7/0')).json.error.code).toBe(ErrorCode.UnknownEpoch);
    expect((await get('/v1/blinded/buckets/0/0')).status).toBe(404);
    for (const bad of ['/v1/blinded/buckets/abc/0', '/v1/blinded/buckets/1/-1', '/v1/blinded/buckets/1/01', '/v1/blinded/buckets/1/1.5']) {
      const r = await get(bad);
      expect(r.status, bad).toBe(400);
      expect(r.json.error.code, bad).toBe(ErrorCode.InvalidField);
    }
    const out = await get('/v1/blinded/buckets/1/4');
    expect(out.status).toBe(404);
    expect(out.json.error).toMatchObject({ code: ErrorCode.NotFound, message: expect.stringMatching(/4 buckets/) });
    expect((await get('/v1/blinded/buckets/1/3')).status).toBe(200);
  });
});

describe('bucket ETags', () => {
  it('serves buckets with an ETag and cache headers, 304 on a match, a new ETag after a change', async () => {
    const s = await start();
    await register(s, registered.slice(0, 4));
    const url = s.server.url + PATHS.blindedBucket(1, 0);
    const first = await fetch(url, { headers: { accept: 'application/json' } });
    const etag = first.headers.get('etag')!;
    expect(first.status).toBe(200);
    expect(etag).toMatch(/^"e1-b0-[0-9a-f]+"$/);
    expect(first.headers.get('cache-control')).toMatch(/max-age=\d+/);
    const body = (await first.json()) as { epoch: number; bucket: number; tags: string; capabilities: string };
    expect(body).toMatchObject({ epoch: 1, bucket: 0 });
    expect(Buffer.from(body.tags, 'base64')).toHaveLength(4 * DEFAULT_TAG_BYTES);
    expect(Buffer.from(body.capabilities, 'base64')).toHaveLength(4);

    const again = await fetch(url, { headers: { accept: 'application/json', 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(again.headers.get('etag')).toBe(etag);
    expect((await again.arrayBuffer()).byteLength).toBe(0);

    await s.admin.createAccount({ email: 'new@example.org', numbers: [unregistered[0]!], capabilities: ['messages'] });
    const changed = await fetch(url, { headers: { accept: 'application/json', 'if-none-match': etag } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(etag);
    await changed.arrayBuffer();

    // Stable across a restart: same content, same ETag.
    const now = changed.headers.get('etag');
    const s2 = await restart(s);
    const afterRestart = await fetch(s2.server.url + PATHS.blindedBucket(1, 0), { headers: { 'if-none-match': now! } });
    expect(afterRestart.status).toBe(304);
  });
});

describe('a server that evaluates with another key', () => {
  /** A man in the middle (or a server singling a requester out) answering evaluate with its own key. */
  function otherKeyTransport(inner: Transport, mode: OprfMode, tamper: (r: { evaluated: Uint8Array[]; proof?: Uint8Array }) => void = () => {}): Transport {
    const key = generateKeyPair(mode);
    return {
      async request(opts) {
        if (opts.path !== PATHS.blindedEvaluate) return inner.request(opts);
        const { epoch, elements } = opts.body as { epoch: number; elements: Uint8Array[] };
        const r = blindEvaluateBatch(mode, key, elements); // a valid proof, for ITS key
        tamper(r);
        return { status: 200, body: parseReply(opts.reply, { epoch, ...r }, 'msgpack'), etag: undefined, bytesSent: 0, bytesReceived: 0 };
      },
    };
  }

  // One server for both tests: neither changes its directory or keys (the forged answers are made client-side).
  let shared: TestServer;
  let token: string;
  beforeAll(async () => {
    shared = await startTestServer({ designs: ['blinded'], sizeClasses: SHORT_LIST_SIZE_CLASSES });
    ({ token } = await register(shared, registered.slice(0, 4)));
  });
  afterAll(() => shared?.close());

  it('makes the client throw proof_invalid, never an "SMS only" answer', async () => {
    const real = createTransport({ baseUrl: shared.server.url, token });
    const client = createBlindedClientWith(otherKeyTransport(real, 'voprf'));
    const err = await client.lookupBatch([registered[0]!, unregistered[0]!]).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isPcdError(err, ErrorCode.ProofInvalid)).toBe(true);
    expect((err as PcdError).message).toMatch(/did not evaluate with epoch 1's published key/);
    expect((err as PcdError).message).toMatch(/no answer was produced/);
    expect(client.stats.bucketFetches).toBe(0);
  });

  it('a missing proof in voprf mode is proof_invalid; a wrong count or epoch is malformed_reply', async () => {
    const real = createTransport({ baseUrl: shared.server.url, token });
    const noProof = createBlindedClientWith(otherKeyTransport(real, 'voprf', (r) => delete r.proof));
    await expect(noProof.lookupBatch([registered[0]!])).rejects.toMatchObject({ code: ErrorCode.ProofInvalid, message: expect.stringMatching(/no proof/) });
    const short = createBlindedClientWith(otherKeyTransport(real, 'voprf', (r) => r.evaluated.pop()));
    await expect(short.lookupBatch([registered[0]!, registered[1]!])).rejects.toMatchObject({ code: ErrorCode.MalformedReply });
    const wrongEpoch: Transport = {
      async request(opts) {
        const r = await real.request(opts);
        if (opts.path === PATHS.blindedEvaluate) (r.body as { epoch: number }).epoch = 2;
        return r;
      },
    };
    await expect(createBlindedClientWith(wrongEpoch).lookupBatch([registered[0]!])).rejects.toMatchObject({ code: ErrorCode.MalformedReply });
  });
});

describe('key rotation', () => {
  it('serves the old epoch through its grace period, then destroys its key and cache and answers 410', async () => {
    const clock = testClock();
    let s = await start({ now: clock.now, graceMs: HOUR, bucketBits: 2 });
    const { token } = await register(s, registered.slice(0, 20));
    const oldClient = blindedClient(s, token);
    const asked = [...registered.slice(0, 6), ...unregistered.slice(0, 3)];
    expect(await oldClient.lookupBatch(asked)).toEqual(expected(asked));
    // A client that looks nothing up during the grace period: its config still names epoch 1 at the end.
    const idleClient = blindedClient(s, token);
    expect(await idleClient.lookupBatch(asked)).toEqual(expected(asked));
    const key1 = Buffer.from(readEpochKeys(s.dataDir).get(1)!).toString('hex');

    const rot = await s.admin.rotateKey({});
    expect(rot).toEqual({ epoch: 2, previous: 1, retiresAt: clock.now() + HOUR });
    const c = await config(s);
    expect(c.current).toBe(2);
    expect(c.epochs.map((e) => [e.epoch, e.retiresAt])).toEqual([
      [1, clock.now() + HOUR],
      [2, undefined],
    ]);
    expect(Buffer.from(c.epochs[0]!.publicKey).equals(Buffer.from(c.epochs[1]!.publicKey))).toBe(false);
    expect([...readEpochKeys(s.dataDir).keys()]).toEqual([1, 2]);

    // During the grace period: the old client still uses epoch 1 (its cached config), a new one epoch 2.
    clock.advance(HOUR - 1000);
    const carol = unregistered[4]!;
    await s.admin.createAccount({ email: 'carol@example.org', numbers: [carol], capabilities: ['messages'] });
    const newClient = blindedClient(s, token);
    const both = [...asked, carol];
    const want = both.map((n) => ({ number: n, capabilities: n === carol ? ['messages'] : expected([n])[0]!.capabilities }));
    // Carol's bucket is of a newer directory version than the old client's config: it is proven against the root
    // it carries (shared/merkle.ts), with no config refetch, and answered from epoch 1, which it had evaluated in.
    const oldFetches = oldClient.stats.configFetches;
    expect(await oldClient.lookupBatch(both)).toEqual(want);
    expect(oldClient.stats.configFetches).toBe(oldFetches);
    expect(await newClient.lookupBatch(both)).toEqual(want);
    expect((await raw(s.server.url + PATHS.blindedBucket(1, 0), { method: 'GET' })).status).toBe(200);
    expect(fs.existsSync(path.join(s.dataDir, EPOCHS_DIR, '1.bin'))).toBe(true);

    // Past the grace period: epoch 1 is gone, on request (injected clock, no timer needed).
    clock.advance(2000);
    const gone = await raw(s.server.url + PATHS.blindedBucket(1, 0), { method: 'GET' });
    expect(gone.status).toBe(410);
    expect(gone.json.error.code).toBe(ErrorCode.EpochRetired);
    const { blinded } = blindBatch('voprf', [utf8ToBytes(carol)]);
    // With a token of a live key (epoch 2's), an evaluation on epoch 1 is refused as retired.
    const paid = await blindedClient(s, token).tokens.take(1);
    const ev = await raw(s.server.url + PATHS.blindedEvaluate, { headers: { ...jsonAuth(token), authorization: paid.authorization }, body: evaluateBody(1, blinded) });
    expect(ev.status).toBe(410);
    expect([...readEpochKeys(s.dataDir).keys()]).toEqual([2]);
    expect(fs.readFileSync(path.join(s.dataDir, KEY_FILE), 'utf8')).not.toContain(key1);
    expect(fs.existsSync(path.join(s.dataDir, EPOCHS_DIR, '1.bin'))).toBe(false);
    const cc = await config(s);
    expect(cc.epochs.map((e) => e.epoch)).toEqual([2]);
    const rows = s.server.store.db.prepare<[], { epoch: number; destroyed_at: number | null }>('SELECT epoch, destroyed_at FROM epochs ORDER BY epoch').all();
    expect(rows).toEqual([
      { epoch: 1, destroyed_at: clock.now() },
      { epoch: 2, destroyed_at: null },
    ]);

    // The idle client meets 410, fetches the config again and answers from epoch 2.
    const fetchesBefore = idleClient.stats.configFetches;
    expect(await idleClient.lookupBatch(both)).toEqual(want);
    expect(idleClient.stats.configFetches).toBe(fetchesBefore + 1);
    // The old client's config (fetched for the root) names epoch 2 current already.
    expect(await oldClient.lookupBatch(both)).toEqual(want);

    // After a restart: still retired (410), never resurrected.
    s = await restart(s);
    expect((await raw(s.server.url + PATHS.blindedBucket(1, 0), { method: 'GET' })).status).toBe(410);
    expect((await raw(s.server.url + PATHS.blindedBucket(3, 0), { method: 'GET' })).status).toBe(404);
  });

  it('can change bucketBits and mode; the grace period can end while the server is down', async () => {
    const clock = testClock();
    let s = await start({ now: clock.now, graceMs: HOUR });
    const { token } = await register(s, registered.slice(0, 10));
    const rot = await s.admin.rotateKey({ bucketBits: 3, mode: 'oprf' });
    expect(rot.epoch).toBe(2);
    expect(await config(s)).toMatchObject({ current: 2, mode: 'oprf', bucketBits: 3 });
    const client = blindedClient(s, token);
    const asked = [...registered.slice(0, 10), ...unregistered.slice(0, 2)];
    expect(await client.lookupBatch(asked)).toEqual(expected(asked));

    await s.close();
    open = [];
    clock.advance(2 * HOUR);
    s = await start({ dataDir: s.dataDir, now: clock.now, graceMs: HOUR });
    expect((await config(s)).epochs.map((e) => e.epoch)).toEqual([2]);
    expect([...readEpochKeys(s.dataDir).keys()]).toEqual([2]);
    expect(fs.readdirSync(path.join(s.dataDir, EPOCHS_DIR))).toEqual(['2.bin']);
  });

  it('keeps serving while the new epoch builds, and a registration made meanwhile reaches the new epoch', async () => {
    // 150 numbers seeded straight into the store: ~0.5 s of Evaluate per build.
    const dataDir = tempDir();
    const seeded = sampleNumbers({ count: 150, seed: 'blinded-rotation-load', exclude: (n) => pool.includes(n) });
    const store = Store.open(dataDir);
    store.bulkInsert(seeded.map((n, i) => ({ email: `seed${i}@example.org`, numbers: [n], mask: 1 })), Date.now());
    store.close();
    const s = await start({ dataDir, graceMs: HOUR });
    const { token } = await register(s, registered.slice(0, 2));
    const epochs = blindedOf(s).epochs;
    // The rotation takes its copy of the directory synchronously and always yields before it evaluates:
    // a registration delivered in the same turn arrives while it builds, whatever the machine's speed.
    const rotation = epochs.rotate();
    expect(epochs.building).toMatchObject({ epoch: 2, total: 152 });
    const carol = unregistered[5]!;
    const made = s.server.store.createAccount({ email: 'carol@example.org', numbers: [carol], mask: 2 }, Date.now());
    const delivered = s.server.applyChanges(made.changes, made.version);
    await delivered;
    // Served meanwhile (or right after: the answer is the same), from epoch 1, with the new registration.
    const during = await blindedClient(s, token).lookupBatch([carol, registered[0]!, seeded[0]!]);
    expect(during.map((r) => r.capabilities)).toEqual([['facetime'], ['messages', 'facetime'], ['messages']]);
    expect(await rotation).toMatchObject({ epoch: 2 });
    expect(epochs.stats.lastBuild).toMatchObject({ epoch: 2, numbers: 152, pendingChanges: 1 });
    const after = blindedClient(s, token);
    expect((await after.lookupBatch([carol, registered[0]!, seeded[149]!])).map((r) => r.capabilities)).toEqual([
      ['facetime'],
      ['messages', 'facetime'],
      ['messages'],
    ]);
    expect((await config(s)).current).toBe(2);
  });

  it('rejects a second rotation while one is building, and rotates offline with the server stopped', async () => {
    const s = await start({ graceMs: HOUR });
    await register(s, registered.slice(0, 4));
    const epochs = blindedOf(s).epochs;
    const first = epochs.rotate();
    await expect(epochs.rotate()).rejects.toMatchObject({ code: ErrorCode.Conflict });
    expect(await first).toMatchObject({ epoch: 2, previous: 1 });
    await s.close();
    open = [];

    const r = await rotateKeyOffline({ dataDir: s.dataDir, graceMs: HOUR });
    expect(r).toMatchObject({ epoch: 3, previous: 2 });
    const s2 = await start({ dataDir: s.dataDir, graceMs: HOUR });
    const c = await config(s2);
    expect(c.current).toBe(3);
    expect(c.epochs.map((e) => e.epoch)).toEqual([1, 2, 3]);
    // Epoch 3's buckets came from the cache the offline rotation wrote.
    expect(blindedOf(s2).epochs.stats.cacheLoads).toBeGreaterThanOrEqual(1);
  });
});

describe('the key file', () => {
  it('is 0600, tightened when loosened, and its keys appear in no reply and no other file', async () => {
    let s = await start();
    const { token } = await register(s, registered.slice(0, 4));
    const file = path.join(s.dataDir, KEY_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const sk = readEpochKeys(s.dataDir).get(1)!;
    const hex = Buffer.from(sk).toString('hex');
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ version: 1, keys: [{ epoch: 1, secretKey: hex }] });
    const reply = await raw(s.server.url + PATHS.blindedConfig, { method: 'GET' });
    expect(reply.text).not.toContain(hex);
    expect(reply.text).not.toContain(Buffer.from(sk).toString('base64'));

    fs.chmodSync(file, 0o644);
    s = await restart(s);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    await blindedClient(s, token).lookupBatch([registered[0]!]);
    await s.close();
    open = [];
    const others = fs.readdirSync(s.dataDir).filter((f) => f !== KEY_FILE);
    for (const f of others) {
      const p = path.join(s.dataDir, f);
      if (fs.statSync(p).isFile()) expect(fs.readFileSync(p).includes(Buffer.from(sk)), f).toBe(false);
    }
  });

  it('a live epoch whose key is missing stops the server with an error that says so', async () => {
    const s = await start();
    await s.close();
    open = [];
    fs.writeFileSync(path.join(s.dataDir, KEY_FILE), JSON.stringify({ version: 1, keys: [] }), { mode: 0o600 });
    await expect(startTestServer({ dataDir: s.dataDir, designs: ['blinded'], sizeClasses: SHORT_LIST_SIZE_CLASSES })).rejects.toMatchObject({
      code: ErrorCode.Conflict, // a PcdError: one line from the CLI, with the way out
      message: expect.stringMatching(/^epoch 1 is live .* secret key is missing .*`pcd rotate-key --data \S+ --repair` to retire epoch 1/),
    });
    expect(JSON.parse(fs.readFileSync(path.join(s.dataDir, KEY_FILE), 'utf8')).keys).toEqual([]);
  });
});

describe('what the blinded design persists', () => {
  it('no looked-up number, hash or tag anywhere in the data folder; logs hold counts and bucket ids', async () => {
    const clock = testClock();
    const s = await start({ now: clock.now, bucketBits: 4 });
    const { token } = await register(s, registered.slice(0, 10));
    const secret = unregistered.slice(0, 5); // only ever looked up
    const answers = await blindedClient(s, token).lookupBatch([...secret, registered[0]!]);
    expect(answers.map((a) => a.capabilities.length > 0)).toEqual([false, false, false, false, false, true]);
    const sk = readEpochKeys(s.dataDir).get(1)!;
    await s.close();
    open = [];

    const bytes = allBytes(s.dataDir);
    for (const n of secret) {
      expect(bytes.includes(Buffer.from(n)), n).toBe(false);
      expect(bytes.includes(Buffer.from(n.slice(1))), n).toBe(false);
      const tag = truncateTag(evaluate('voprf', sk, utf8ToBytes(n)), DEFAULT_TAG_BYTES);
      expect(bytes.includes(Buffer.from(tag)), `tag of ${n}`).toBe(false);
    }
    const store = Store.open(s.dataDir);
    try {
      // Paid with a token (the default): per minute, IP, epoch and size class (6 elements padded to the test server's class 16), no account.
      expect(store.db.prepare('SELECT count(*) AS n FROM blinded_eval_log').get()).toEqual({ n: 0 });
      const evals = store.db.prepare('SELECT ts, ip, epoch, size_class, count FROM blinded_token_eval_log').all();
      expect(evals).toEqual([{ ts: Math.floor(clock.now() / 60_000) * 60_000, ip: expect.any(String), epoch: 1, size_class: 16, count: 1 }]);
      const buckets = store.db.prepare<[], { epoch: number; bucket: number }>('SELECT epoch, bucket FROM blinded_bucket_log').all();
      expect(new Set(buckets.map((b) => b.bucket))).toEqual(new Set([...secret, registered[0]!].map((n) => bucketOf(n, 4))));
    } finally {
      store.close();
    }
  });
});

describe('Epochs without HTTP', () => {
  it('computes the same tags on worker threads as inline, equal to Evaluate', async () => {
    const key = generateKeyPair('voprf');
    const { secretKey } = key;
    const backend = await loadBackend(DEFAULT_BACKEND);
    const params = { mode: 'voprf' as const, bucketBits: 0, tagBytes: 8 };
    const keys = Float64Array.from(pool.slice(0, 24), (n) => e164ToKey(n));
    const inline = await computeTags(params, key, keys, { backend, threads: 1 });
    expect(inline.threads).toBe(1);
    // Small chunks are not split over workers below WORKER_CHUNK numbers each, so give it enough.
    const many = Float64Array.from({ length: 1100 }, (_, i) => keys[i % keys.length]!);
    const onWorkers = await computeTags(params, key, many, { backend, threads: 2 });
    expect(onWorkers.fallback).toBeUndefined();
    expect(onWorkers.threads).toBe(2);
    for (let i = 0; i < many.length; i += 97) {
      const j = i % keys.length;
      expect(Buffer.from(onWorkers.tags.subarray(i * 8, i * 8 + 8))).toEqual(Buffer.from(inline.tags.subarray(j * 8, j * 8 + 8)));
    }
    pool.slice(0, 24).forEach((n, i) => {
      expect(Buffer.from(inline.tags.subarray(i * 8, i * 8 + 8))).toEqual(Buffer.from(truncateTag(evaluate('voprf', secretKey, utf8ToBytes(n)), 8)));
    });
  });

  it('opens an empty data folder with the documented defaults', async () => {
    const dataDir = tempDir();
    const r = await rotateKeyOffline({ dataDir });
    expect(r).toEqual({ epoch: 1 });
    const store = Store.open(dataDir);
    try {
      expect(store.db.prepare('SELECT epoch, mode, bucket_bits, tag_bytes FROM epochs').all()).toEqual([
        { epoch: 1, mode: 'voprf', bucket_bits: 0, tag_bytes: DEFAULT_TAG_BYTES },
      ]);
    } finally {
      store.close();
    }
    expect(fs.existsSync(path.join(dataDir, EPOCHS_DIR, '1.bin'))).toBe(true);
  });
});
