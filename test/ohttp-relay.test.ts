/**
 * Oblivious HTTP end to end: a real server with its gateway (server/ohttp.ts)
 * on an ephemeral port, a real relay (relay/relay.ts) on another, the real
 * client with `relay` set (client/ohttp.ts).
 *
 * The relay forwards from 127.0.0.2 (a loopback address of its own), so the
 * server can tell the relay from the client (127.0.0.1): the logs' IP is the
 * relay's, the per-IP exemption applies to the relay and not to the client.
 * The relay's forwarding fetch records every byte it sent and received, so
 * the test can show the relay saw only ciphertext.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeResponse, encodeRequest } from '../shared/bhttp.ts';
import { decodeBody } from '../shared/codec.ts';
import { BLINDED } from '../shared/designs/blinded.ts';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError, isPcdError } from '../shared/errors.ts';
import { PATHS } from '../shared/messages.ts';
import {
  OHTTP_GATEWAY_PATH,
  OHTTP_MEDIA,
  decapsulateResponse,
  decodeKeyConfigList,
  encapsulateRequest,
  encodeKeyConfigList,
  generatePrivateKey,
  importGatewayKey,
} from '../shared/ohttp.ts';
import { createClient } from '../client/client.ts';
import { OhttpKeyPins, createOhttpFetch, createRelayedFetch } from '../client/ohttp.ts';
import { createTransport } from '../client/transport.ts';
import { flushLogs } from '../server/loghealth.ts';
import { relayAddresses } from '../server/ohttp.ts';
import { startRelay, type RunningRelay } from '../relay/relay.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { ADMIN_TOKEN, PCD_BIN, runPcd, startTestServer, stopChild, tempDir, type TestServer } from './helpers.ts';
import { spawn } from 'node:child_process';
import type { ServerOptions } from '../server/context.ts';

const RELAY_ADDRESS = '127.0.0.2';
const NULL_BODY = new Set([204, 205, 304]);

/** What a relay's forwarding fetch sent to the gateway and got back. */
interface Wire {
  sent: Buffer[];
  received: Buffer[];
  posts: number;
}

/** A fetch over node:http from `localAddress`, recording every body both ways: the relay's view of the wire. */
function fetchFrom(localAddress: string, wire: Wire): typeof fetch {
  return (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const body = init?.body instanceof Uint8Array ? Buffer.from(init.body) : undefined;
    const method = init?.method ?? 'GET';
    if (method === 'POST') wire.posts++;
    if (body) wire.sent.push(body);
    return new Promise<Response>((resolve, reject) => {
      const req = http.request(
        { host: url.hostname, port: url.port, path: url.pathname, method, headers: init?.headers as Record<string, string>, localAddress },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => {
            const buf = Buffer.concat(parts);
            wire.received.push(buf);
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
            const status = res.statusCode ?? 500;
            resolve(new Response(NULL_BODY.has(status) ? null : buf, { status, headers }));
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      init?.signal?.addEventListener('abort', () => req.destroy(new Error('aborted')));
      req.end(body);
    });
  };
}

const newWire = (): Wire => ({ sent: [], received: [], posts: 0 });

const pool = sampleNumbers({ count: 12, seed: 'ohttp-relay', regions: ['US', 'GB', 'DE'] });
const registered = pool.slice(0, 6);
const unregistered = pool.slice(6);

async function seeded(options: Partial<ServerOptions>): Promise<{ s: TestServer; token: string }> {
  const s = await startTestServer({ designs: ['plain', 'blinded'], ...options });
  await s.admin.createAccount({ email: 'alice@example.org', numbers: registered.slice(0, 3), capabilities: ['messages', 'facetime'] });
  await s.admin.createAccount({ email: 'bob@example.org', numbers: registered.slice(3), capabilities: ['messages'] });
  const { token } = await s.admin.createAccount({ email: 'requester@example.org', numbers: [unregistered[5]!], capabilities: [] });
  return { s, token };
}

/** Raw bytes to a URL; the reply's status, content type and JSON body if any. */
async function post(url: string, body: Uint8Array, contentType: string = OHTTP_MEDIA.request) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body: body as Uint8Array<ArrayBuffer> });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, type: res.headers.get('content-type'), retryAfter: res.headers.get('retry-after'), json };
}

/** Rows of the blinded design's logs that hold an IP, read from the server's store once flushed: the distinct IPs. */
function loggedIps(s: TestServer): string[] {
  const tables = BLINDED.logs.filter((l) => l.columns.some((c) => c.holds === 'ip')).map((l) => l.name);
  const db = s.server.store.db;
  expect(flushLogs(s.server.store)).toBe(true); // counted logs (per minute) are written when asked, not only when the minute ends
  const ips = new Set<string>();
  for (const t of tables) {
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t)) continue;
    for (const row of db.prepare<[], { ip: string }>(`SELECT DISTINCT ip FROM ${t}`).all()) ips.add(row.ip);
  }
  return [...ips].sort();
}

describe('a blinded lookup through a relay', () => {
  let s: TestServer;
  let token: string;
  let relay: RunningRelay;
  const wire = newWire();

  beforeAll(async () => {
    ({ s, token } = await seeded({ ohttpRelays: [RELAY_ADDRESS] }));
    relay = await startRelay({ gateway: s.server.url, port: 0, fetch: fetchFrom(RELAY_ADDRESS, wire) });
  });
  afterAll(async () => {
    await relay?.close();
    await s?.close();
  });

  it('answers as the directory says, through the gateway; the logs hold the relay’s address', async () => {
    const client = createClient({ baseUrl: s.server.url, token, design: 'blinded', relay: relay.url });
    const before = s.server.gateway?.stats.requests ?? 0;
    const asked: E164[] = [registered[0]!, unregistered[0]!, registered[4]!, unregistered[1]!];
    const results = await client.lookupMany(asked);
    expect(results.map((r) => [r.number, r.capabilities])).toEqual([
      [registered[0], ['messages', 'facetime']],
      [unregistered[0], []],
      [registered[4], ['messages']],
      [unregistered[1], []],
    ]);
    // Config, evaluate and at least one bucket went through the gateway, each one encapsulated request.
    const through = (s.server.gateway?.stats.requests ?? 0) - before;
    expect(through).toBeGreaterThanOrEqual(3);
    expect(wire.posts).toBe(through);
    // Every row that holds an IP holds the relay's, none the client's.
    expect(loggedIps(s)).toEqual([RELAY_ADDRESS]);
  });

  it('the relay saw only ciphertext: no number, token, path or media type in any byte it forwarded', async () => {
    const client = createClient({ baseUrl: s.server.url, token, design: 'blinded', relay: relay.url });
    const asked = [registered[1]!, unregistered[2]!];
    await client.lookupMany(asked);
    const needles = [
      ...asked.flatMap((n) => [n, n.slice(1), n.slice(-7)]),
      token,
      '/v1/blinded',
      'application/msgpack',
      'Bearer',
      'PrivateToken',
    ].map((x) => Buffer.from(x, 'latin1'));
    expect(wire.sent.length).toBeGreaterThan(0);
    for (const bytes of [...wire.sent, ...wire.received]) {
      for (const needle of needles) expect(bytes.includes(needle), `'${needle.toString()}' on the relay's wire`).toBe(false);
    }
  });

  it('pcd lookup --relay (and PCD_RELAY) goes through the relay', async () => {
    const before = s.server.gateway?.stats.requests ?? 0;
    const viaFlag = await runPcd(['lookup', registered[2]!, unregistered[4]!, '--server', s.server.url, '--relay', relay.url], { PCD_TOKEN: token });
    expect(viaFlag.stderr).toBe('');
    expect(viaFlag.stdout).toMatch(new RegExp(`^\\${registered[2]} +messenger \\(messages, facetime\\)\n\\${unregistered[4]} +SMS only\n$`));
    const viaEnv = await runPcd(['lookup', registered[5]!, '--server', s.server.url], { PCD_TOKEN: token, PCD_RELAY: relay.url });
    expect(viaEnv.stdout).toMatch(/messenger \(messages\)/);
    expect((s.server.gateway?.stats.requests ?? 0) - before).toBeGreaterThanOrEqual(6);
    const bad = await runPcd(['lookup', registered[2]!, '--server', s.server.url, '--relay', 'ftp://relay.example'], { PCD_TOKEN: token });
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/^pcd: the relay URL .+ \(invalid_field\)\n$/)]);
  });

  it('other designs and calls go direct even with a relay set', async () => {
    const before = s.server.gateway?.stats.requests ?? 0;
    const plain = createClient({ baseUrl: s.server.url, token, design: 'plain', relay: relay.url });
    expect((await plain.lookup(registered[0]!)).capabilities).toEqual(['messages', 'facetime']);
    expect(s.server.gateway?.stats.requests ?? 0).toBe(before);
  });

  it('refuses inner requests that are not the blinded design’s: 403 inside the encapsulation, nothing done', async () => {
    const viaRelay = createOhttpFetch({ relayUrl: relay.url });
    const size = s.server.directory.size;
    const account = await viaRelay(s.server.url + PATHS.accounts, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify({ email: 'mallory@example.org', numbers: [unregistered[3]], capabilities: ['messages'] }),
    });
    expect(account.status).toBe(403);
    expect(((await account.json()) as { error: { code: string } }).error.code).toBe(ErrorCode.Forbidden);
    expect(s.server.directory.size).toBe(size);
    const plain = await viaRelay(s.server.url + PATHS.plainLookup, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/msgpack' },
      body: JSON.stringify({ numbers: [registered[0]] }),
    });
    expect(plain.status).toBe(403);
    expect(plain.headers.get('content-type')).toMatch(/msgpack/);
    expect(decodeBody(new Uint8Array(await plain.arrayBuffer()), 'msgpack')).toMatchObject({ error: { code: ErrorCode.Forbidden } });
    for (const path of [`${PATHS.blindedConfig}?x=1`, '/v1/admin/rotate-key', '/']) {
      expect((await viaRelay(s.server.url + path)).status, path).toBe(403);
    }
    // What is allowed keeps its status and the headers that matter: a bucket's ETag and Cache-Control, then a 304 for it.
    const health = await viaRelay(s.server.url + PATHS.health, { headers: { accept: 'application/json' } });
    expect([health.status, await health.json()]).toMatchObject([200, { ok: true }]);
    const bucket = await viaRelay(s.server.url + PATHS.blindedBucket(1, 0), { headers: { accept: 'application/json' } });
    expect(bucket.status).toBe(200);
    const etag = bucket.headers.get('etag');
    expect(etag).toBeTruthy();
    expect(bucket.headers.get('cache-control')).toBeTruthy();
    const again = await viaRelay(s.server.url + PATHS.blindedBucket(1, 0), { headers: { accept: 'application/json', 'if-none-match': etag ?? '' } });
    expect(again.status).toBe(304);
  });

  it('a key configuration other than the pinned one is view_changed, never used', async () => {
    const pins = new OhttpKeyPins();
    await createOhttpFetch({ relayUrl: relay.url, pins })(s.server.url + PATHS.health); // pins the real one
    const other = await importGatewayKey(1, generatePrivateKey());
    const impostor = createRelayedFetch(createOhttpFetch({ relayUrl: relay.url, pins, gatewayKeys: encodeKeyConfigList([other.config]) }));
    const client = createClient({ baseUrl: s.server.url, design: 'blinded', transport: createTransport({ baseUrl: s.server.url, fetch: impostor }) });
    const e = await client.health().catch((err: unknown) => err);
    expect(isPcdError(e, ErrorCode.ViewChanged), String(e)).toBe(true);
  });
});

describe('bad input at the gateway and the relay', () => {
  let s: TestServer;
  let relay: RunningRelay;
  const gateway = () => s.server.url + OHTTP_GATEWAY_PATH;

  beforeAll(async () => {
    ({ s } = await seeded({}));
    relay = await startRelay({ gateway: s.server.url, port: 0, ipLimitPerMinute: 1000 });
  });
  afterAll(async () => {
    await relay?.close();
    await s?.close();
  });

  it('publishes its key configuration (RFC 9540 §3), cacheable, also through the relay', async () => {
    for (const url of [gateway(), relay.url, relay.url + OHTTP_GATEWAY_PATH]) {
      const res = await fetch(url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe(OHTTP_MEDIA.keys);
      expect(res.headers.get('cache-control')).toMatch(/public, max-age=\d+/);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      const [config] = decodeKeyConfigList(new Uint8Array(await res.arrayBuffer()), ErrorCode.MalformedReply);
      expect(config?.keyId).toBe(1);
    }
  });

  it('the relay\'s own refusals carry nosniff too', async () => {
    const res = await fetch(relay.url + '/nothing-here');
    expect(res.status).toBe(404);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('garbage, tampered, truncated, oversized, mistyped: a coded 4xx, at the gateway and through the relay; the server stays up', async () => {
    const keys = decodeKeyConfigList(new Uint8Array(await (await fetch(gateway())).arrayBuffer()), ErrorCode.MalformedReply);
    const inner = encodeRequest({ method: 'GET', scheme: 'http', authority: 'x', path: PATHS.health, headers: [], content: new Uint8Array(0) });
    const { encapsulated } = await encapsulateRequest(keys[0]!, inner);
    const tampered = Uint8Array.from(encapsulated);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 1;
    const otherKey = Uint8Array.from(encapsulated);
    otherKey[0] = 9;
    for (const url of [gateway(), relay.url]) {
      for (const [body, status, code] of [
        [new Uint8Array(0), 400, ErrorCode.BadRequest],
        [new Uint8Array(100).fill(7), 400, ErrorCode.BadRequest],
        [tampered, 400, ErrorCode.BadRequest],
        [otherKey, 400, ErrorCode.BadRequest],
        [encapsulated.subarray(0, 40), 400, ErrorCode.BadRequest],
        [new Uint8Array(700 * 1024), 413, ErrorCode.BodyTooLarge],
      ] as const) {
        const r = await post(url, body);
        expect([url, r.status, r.json?.error?.code]).toEqual([url, status, code]);
      }
      const typed = await post(url, encapsulated, 'application/octet-stream');
      expect([typed.status, typed.json?.error?.code]).toEqual([415, ErrorCode.UnsupportedMediaType]);
    }
    expect((await fetch(gateway(), { method: 'PUT' })).status).toBe(405);
    expect((await fetch(relay.url + '/elsewhere')).status).toBe(404);
    // The untouched request still works, once: the server is up.
    const ok = await post(gateway(), encapsulated);
    expect(ok.status).toBe(200);
    expect((await s.client('x', 'blinded').health()).ok).toBe(true);
  });

  it('a valid encapsulation around a malformed binary request: 400 inside the encapsulation', async () => {
    const keys = decodeKeyConfigList(new Uint8Array(await (await fetch(gateway())).arrayBuffer()), ErrorCode.MalformedReply);
    const { encapsulated, context } = await encapsulateRequest(keys[0]!, new Uint8Array([0, 3, 0x47, 0x45]));
    const res = await fetch(relay.url, { method: 'POST', headers: { 'content-type': OHTTP_MEDIA.request }, body: encapsulated as Uint8Array<ArrayBuffer> });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(OHTTP_MEDIA.response);
    const inner = decodeResponse(await decapsulateResponse(context, new Uint8Array(await res.arrayBuffer())), { code: ErrorCode.MalformedReply });
    expect(inner.status).toBe(400);
    expect(decodeBody(inner.content, 'msgpack')).toMatchObject({ error: { code: ErrorCode.BadRequest } });
  });

  it('the relay’s own per-IP limit answers 429 with Retry-After and a coded body', async () => {
    const strict = await startRelay({ gateway: s.server.url, port: 0, ipLimitPerMinute: 2 });
    try {
      expect((await fetch(strict.url)).status).toBe(200);
      expect((await fetch(strict.url)).status).toBe(200);
      const r = await post(strict.url, new Uint8Array(10));
      expect(r.status).toBe(429);
      expect(Number(r.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(r.json?.error?.code).toBe(ErrorCode.RateLimited);
    } finally {
      await strict.close();
    }
  });

  it('a relay whose gateway is down answers 502 with a coded body', async () => {
    const dead = await startRelay({ gateway: 'http://127.0.0.1:9', port: 0 });
    try {
      const r = await post(dead.url, new Uint8Array(64));
      expect([r.status, r.json?.error?.code]).toEqual([502, ErrorCode.Unavailable]);
    } finally {
      await dead.close();
    }
  });
});

describe('the per-IP limit and relays', () => {
  const IP_LIMIT = 4;
  const open: { close(): Promise<void> }[] = [];
  afterAll(async () => {
    for (const o of open.reverse()) await o.close();
  });

  async function setup(ohttpRelays: string[]) {
    const { s } = await seeded({ rateLimits: { ipPerMinute: IP_LIMIT }, ohttpRelays });
    open.push(s);
    const relay = await startRelay({ gateway: s.server.url, port: 0, fetch: fetchFrom(RELAY_ADDRESS, newWire()) });
    open.push(relay);
    return { s, viaRelay: createOhttpFetch({ relayUrl: relay.url }) };
  }

  it('a configured relay’s address is exempt (outer and inner requests); the client’s own address is not', async () => {
    const { s, viaRelay } = await setup([RELAY_ADDRESS]);
    for (let i = 0; i < 3 * IP_LIMIT; i++) expect((await viaRelay(s.server.url + PATHS.health)).status).toBe(200);
    const direct: number[] = [];
    for (let i = 0; i < 2 * IP_LIMIT; i++) direct.push((await fetch(s.server.url + PATHS.health)).status);
    expect(direct).toContain(429); // 127.0.0.1 is limited: the seeding spent some of its allowance already
  });

  it('a relay that is not configured is limited like any address: its clients get the 429', async () => {
    const { s, viaRelay } = await setup([]);
    // The key list (one request), then each lookup's outer and inner request take one each from the relay's address.
    const statuses: number[] = [];
    for (let i = 0; i < IP_LIMIT; i++) statuses.push((await viaRelay(s.server.url + PATHS.health)).status);
    expect(statuses.slice(0, 1)).toEqual([200]);
    expect(statuses).toContain(429);
    const last = await viaRelay(s.server.url + PATHS.health);
    expect(last.status).toBe(429);
    expect(((await last.json()) as { error: { code: string } }).error.code).toBe(ErrorCode.RateLimited);
  });

  it('relay addresses are IP addresses, IPv4-mapped ones read as IPv4', () => {
    expect([...relayAddresses(['127.0.0.2', '::ffff:10.0.0.1', ' ::1 '])]).toEqual(['127.0.0.2', '10.0.0.1', '::1']);
    for (const bad of ['relay.example', '10.0.0.1/8', '']) {
      let e: unknown;
      try {
        relayAddresses([bad]);
      } catch (err) {
        e = err;
      }
      expect(isPcdError(e, ErrorCode.InvalidField), bad).toBe(true);
    }
  });
});

describe('the command line', () => {
  it('pcd relay prints where it listens and relays; a bad gateway or size is one line and exit 2', async () => {
    const { s } = await seeded({});
    try {
      const child = spawn(process.execPath, [PCD_BIN, 'relay', '--gateway', s.server.url, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const line = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('\n')) resolve(out.trim());
        });
        child.on('exit', (code) => reject(new Error(`pcd relay exited with ${code}`)));
      });
      const m = /^pcd relay on (http:\/\/127\.0\.0\.1:\d+) → (.+)$/.exec(line);
      expect(m?.[2]).toBe(s.server.url + OHTTP_GATEWAY_PATH);
      expect((await fetch(m?.[1] ?? '')).headers.get('content-type')).toBe(OHTTP_MEDIA.keys);
      expect(await stopChild(child)).toBe(0);
    } finally {
      await s.close();
    }
    for (const args of [
      ['relay', '--gateway', 'ftp://example.org'],
      ['relay', '--gateway', 'http://127.0.0.1:1', '--max-body', 'lots'],
      ['serve', '--data', tempDir(), '--ohttp-relay', 'relay.example'],
    ]) {
      const r = await runPcd(args);
      expect([r.code, r.stderr.trim().split('\n').length], args.join(' ')).toEqual([2, 1]);
      expect(r.stderr).toMatch(/^pcd: .+ \(invalid_field\)$/m);
    }
  });
});

// A PcdError thrown by a fetch of pcd's own keeps its code through the transport (client/transport.ts).
it('a client-side PcdError from the fetch reaches the caller as itself', async () => {
  const t = createTransport({
    baseUrl: 'http://127.0.0.1:9',
    fetch: () => Promise.reject(new PcdError(ErrorCode.ViewChanged, 'test')),
  });
  const e = await t.request({ method: 'GET', path: PATHS.health, reply: undefined as never, auth: false }).catch((err: unknown) => err);
  expect(isPcdError(e, ErrorCode.ViewChanged)).toBe(true);
});
