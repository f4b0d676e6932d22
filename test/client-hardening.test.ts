/**
 * The client refuses what it cannot verify, through the real server and the
 * real client: an OPRF epoch without `allowOprf` (and a config rewritten to
 * say OPRF), an epoch key that changed since it was pinned (in memory and in
 * a pin file that outlives the client), a bucket holding a tag with an empty
 * capability mask. And the CLI's input checks, in-process: --batch, --help
 * without secrets, a server given without a scheme, a 429 with Retry-After.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Command } from 'commander';
import { createClient, checkBatchSize, type ClientOptions } from '../client/client.ts';
import { oneLine, parseBatchOption, registerClientCommands, resolveCommon } from '../bin/commands/client.ts';
import { KeyPins, type BlindedClient } from '../client/designs/blinded.ts';
import { createTransport, normalizeServerUrl, parseRetryAfter } from '../client/transport.ts';
import { Bucket } from '../shared/buckets.ts';
import type { Transport } from '../shared/design.ts';
import { ErrorCode, PcdError, isPcdError } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { BlindedConfigReply, PATHS, type BucketReply } from '../shared/messages.ts';
import { generateKeyPair } from '../shared/noble.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { rejection, startTestServer, tempDir, type TestServer } from './helpers.ts';

const [alice, bob, carol, nobody] = sampleNumbers({ count: 4, seed: 'client-hardening', regions: ['US'] });

interface Tamper {
  /** Publish this key for every epoch in the config. */
  publicKey?: Uint8Array;
  /** Say every epoch is in OPRF mode. */
  oprf?: boolean;
  /** Give the first tag of every bucket mask 0. */
  zeroMask?: boolean;
  /** Replace every evaluated element by the first blinded one (a wrong answer). */
  echo?: boolean;
}

/** A man in the middle (or a server singling a requester out) rewriting replies as `t` says; `t` can change between calls. */
function tampering(inner: Transport, t: Tamper): Transport {
  return {
    async request(opts) {
      const r = await inner.request(opts);
      const body = r.body as unknown;
      if (opts.path === PATHS.blindedConfig && body) {
        const c = body as BlindedConfigReply;
        if (t.oprf) c.mode = 'oprf';
        for (const e of c.epochs) {
          if (t.publicKey) e.publicKey = t.publicKey;
          if (t.oprf) e.mode = 'oprf';
        }
      }
      if (opts.path.startsWith('/v1/blinded/buckets/') && body && t.zeroMask) {
        const b = body as BucketReply;
        b.capabilities = Uint8Array.from(b.capabilities, (m, i) => (i === 0 ? 0 : m));
      }
      if (opts.path === PATHS.blindedEvaluate && body) {
        const ev = body as { evaluated: Uint8Array[]; proof?: Uint8Array };
        if (t.oprf) delete ev.proof; // an OPRF reply carries none
        const sent = (opts.body as { elements: Uint8Array[] }).elements;
        if (t.echo) ev.evaluated = ev.evaluated.map(() => sent[0]!);
      }
      return r;
    },
  };
}

describe('OPRF epochs', () => {
  let s: TestServer;
  let token: string;
  beforeAll(async () => {
    s = await startTestServer({ designs: ['blinded'], mode: 'oprf', bucketBits: 2 });
    token = (await s.admin.createAccount({ email: 'a@example.org', numbers: [alice!], capabilities: ['messages'] })).token;
  });
  afterAll(() => s.close());

  it('are refused with proof_invalid before anything is blinded or sent, unless allowOprf', async () => {
    const strict = s.client(token, 'blinded');
    const e = await rejection(strict.lookupMany([alice!, nobody!]));
    expect(e.code).toBe(ErrorCode.ProofInvalid);
    expect(e.message).toMatch(/epoch 1 is in oprf mode.*allow-oprf/);
    const stats = (strict.design as BlindedClient).stats;
    expect(stats.evaluateRequests).toBe(0);
    expect(stats.bucketFetches).toBe(0);

    const lax = s.client(token, 'blinded', { allowOprf: true });
    expect(await lax.lookupMany([alice!, nobody!])).toEqual([
      { number: alice, capabilities: ['messages'] },
      { number: nobody, capabilities: [] },
    ]);
  });
});

describe('the client of a VOPRF server', () => {
  let s: TestServer;
  let token: string;
  beforeAll(async () => {
    s = await startTestServer({ designs: ['blinded'], bucketBits: 0 });
    token = (await s.admin.createAccount({ email: 'a@example.org', numbers: [alice!, bob!], capabilities: ['messages', 'facetime'] })).token;
  });
  afterAll(() => s.close());

  const via = (t: Tamper, extra: Partial<ClientOptions> = {}) =>
    createClient({ baseUrl: s.server.url, design: 'blinded', transport: tampering(createTransport({ baseUrl: s.server.url, token }), t), ...extra });

  it('whose config is rewritten to OPRF mode: the tampered evaluation is refused, never "SMS only"', async () => {
    const e = await rejection(via({ oprf: true, echo: true }).lookupMany([alice!]));
    expect(e.code).toBe(ErrorCode.ProofInvalid);
    // With OPRF allowed there is nothing left to catch the wrong evaluation: that is what allowOprf accepts.
    expect(await via({ oprf: true, echo: true }, { allowOprf: true }).lookupMany([alice!])).toEqual([{ number: alice, capabilities: [] }]);
  });

  it('pins each epoch key in memory: a key that changes for a known epoch is key_changed', async () => {
    const t: Tamper = {};
    const client = via(t);
    expect((await client.lookup(alice!)).capabilities).toEqual(['messages', 'facetime']);
    t.publicKey = generateKeyPair('voprf').publicKey;
    (client.design as BlindedClient).clear(); // forgets config, tags and buckets, not the pins
    const e = await rejection(client.lookup(alice!));
    expect(e.code).toBe(ErrorCode.KeyChanged);
    expect(e.status).toBe(502);
    expect(e.message).toContain(`${s.server.url} now publishes a different public key for epoch 1`);
    expect(e.message).toMatch(/no answer was produced/);
    // A fresh client has no pins: the substituted key is then caught by the proof, as before.
    expect((await rejection(via(t).lookup(alice!))).code).toBe(ErrorCode.ProofInvalid);
  });

  it('keeps pins per server URL', async () => {
    const pins = new KeyPins();
    const other = generateKeyPair('voprf').publicKey;
    expect((await via({}, { pins }).lookup(alice!)).capabilities).toEqual(['messages', 'facetime']);
    // The same epoch number under another base URL is another server: its key is pinned on its own.
    const elsewhere = 'http://pcd.example.org:8787';
    const root = new Uint8Array(32);
    pins.scope(elsewhere).check([{ epoch: 1, publicKey: other, root, version: 0 }]);
    expect(pins.pinned(elsewhere, 1)).toBe(Buffer.from(other).toString('base64'));
    expect((await via({}, { pins }).lookup(bob!)).capabilities).toEqual(['messages', 'facetime']);
    expect(() => pins.scope(elsewhere).check([{ epoch: 1, publicKey: new Uint8Array(32).fill(7), root, version: 0 }])).toThrow(/pcd\.example\.org:8787 now publishes/);
  });

  it('persists pins in a pin file, reloads them in a later client, and pins a rotated epoch', async () => {
    const dir = tempDir('pcd-pins-');
    const file = path.join(dir, 'nested', 'pins.json');
    expect((await via({}, { pinFile: file }).lookup(alice!)).capabilities).toEqual(['messages', 'facetime']);
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { version: number; servers: Record<string, Record<string, string>> };
    const config = (await createTransport({ baseUrl: s.server.url }).request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply })).body!;
    expect(saved).toEqual({ version: 1, servers: { [s.server.url]: { '1': Buffer.from(config.epochs[0]!.publicKey).toString('base64') } } });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);

    // A later client (a later run) with the same file and a substituted key.
    const e = await rejection(via({ publicKey: generateKeyPair('voprf').publicKey }, { pinFile: file }).lookup(alice!));
    expect(e.code).toBe(ErrorCode.KeyChanged);
    expect(e.message).toContain(file);
    // The schemeless and slash-ended spellings of the URL are the same server.
    const again = via({ publicKey: generateKeyPair('voprf').publicKey }, { pinFile: file, baseUrl: `${s.server.url.replace('http://', '')}/` });
    expect((await rejection(again.lookup(alice!))).code).toBe(ErrorCode.KeyChanged);

    // Rotation makes a new epoch: it is pinned beside the old one, no error.
    await s.admin.rotateKey({});
    expect((await via({}, { pinFile: file }).lookup(bob!)).capabilities).toEqual(['messages', 'facetime']);
    expect(Object.keys((JSON.parse(fs.readFileSync(file, 'utf8')) as typeof saved).servers[s.server.url]!)).toEqual(['1', '2']);
  });

  it('refuses a pin file it cannot read as one, rather than starting over', async () => {
    const file = path.join(tempDir('pcd-pins-'), 'pins.json');
    for (const text of ['not json', '{"version":2,"servers":{}}', '{"version":1,"servers":{"http://x":{"1":"short"}}}', '{"version":1,"servers":{"http://x":{"-1":"' + 'A'.repeat(43) + '="}}}']) {
      fs.writeFileSync(file, text);
      const e = await rejection(via({}, { pinFile: file }).lookup(alice!));
      expect(e.code, text).toBe(ErrorCode.InvalidField);
      expect(e.message).toMatch(/is not a pcd pin file.*fix or remove it/);
    }
  });

  it('rejects a bucket holding a tag with an empty capability mask (malformed_reply)', async () => {
    const e = await rejection(via({ zeroMask: true }).lookupMany([alice!, nobody!]));
    expect(e.code).toBe(ErrorCode.MalformedReply);
    expect(e.message).toMatch(/bucket 0 of epoch \d+: bucket tag 0 has an empty capability mask/);
  });
});

describe('Bucket.received', () => {
  it('checks what fromWire checks, and the masks', () => {
    const tags = Uint8Array.from([1, 1, 1, 1, 2, 2, 2, 2]);
    expect(Bucket.received(tags, Uint8Array.from([1, 3]), 4).lookup(Uint8Array.from([2, 2, 2, 2]))).toBe(3);
    expect(() => Bucket.received(tags, Uint8Array.from([1, 0]), 4)).toThrow(/bucket tag 1 has an empty capability mask/);
    expect(() => Bucket.received(tags, Uint8Array.from([1]), 4)).toThrow(/tag bytes/);
    expect(() => Bucket.received(tags.slice().reverse(), Uint8Array.from([1, 1]), 4)).toThrow(/ascending/);
    // The server re-reads its own tables with fromWire, which leaves the masks alone.
    expect(Bucket.fromWire(tags, Uint8Array.from([1, 0]), 4).count).toBe(2);
  });
});

describe('server URLs', () => {
  it('get http:// when they have no scheme, lose trailing slashes, and are refused with one clear error otherwise', () => {
    expect(normalizeServerUrl('127.0.0.1:8787')).toBe('http://127.0.0.1:8787');
    expect(normalizeServerUrl(' localhost:8787/ ')).toBe('http://localhost:8787');
    expect(normalizeServerUrl('https://pcd.example.org/api//')).toBe('https://pcd.example.org/api');
    expect(normalizeServerUrl('[::1]:8787')).toBe('http://[::1]:8787');
    expect(normalizeServerUrl('HTTP://Example.ORG:80')).toBe('http://example.org');
    for (const [input, why] of [
      ['ftp://example.org', /scheme is ftp/],
      ['', /empty/],
      ['not a url at all', /not a URL/],
      ['http://', /not a URL/],
      ['http://example.org/?q=1', /query/],
      ['http://alice:secret@example.org', /credentials/],
    ] as const) {
      const e = (() => {
        try {
          normalizeServerUrl(input);
        } catch (err) {
          return err;
        }
      })();
      expect(isPcdError(e, ErrorCode.InvalidField), input).toBe(true);
      expect((e as Error).message).toMatch(why);
      expect((e as Error).message).not.toContain('secret');
    }
  });
});

describe('the CLI, in-process', () => {
  let s: TestServer;
  let token: string;
  beforeAll(async () => {
    s = await startTestServer({ designs: ['plain', 'blinded'] });
    token = (await s.admin.createAccount({ email: 'c@example.org', numbers: [carol!], capabilities: ['facetime'] })).token;
  });
  afterAll(() => s.close());

  /** Runs `pcd ARGS` on a fresh program; resolves with what it printed, rejects with what it threw. */
  async function run(args: string[]): Promise<string> {
    const program = new Command('pcd').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
    registerClientCommands(program);
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      await program.parseAsync(args, { from: 'user' });
    } finally {
      log.mockRestore();
    }
    return lines.join('\n');
  }

  it('validates --batch as a whole number from 1 to maxBatch, one invalid_field line otherwise', async () => {
    expect(parseBatchOption('1')).toBe(1);
    expect(parseBatchOption(String(LIMITS.maxBatch))).toBe(LIMITS.maxBatch);
    const file = path.join(tempDir('pcd-sync-'), 'contacts.txt');
    fs.writeFileSync(file, `${carol}\n${nobody}\n`);
    for (const bad of ['abc', '0', '-5', '1.5', '4097', '1e3', '0x10', '', '99999999999']) {
      expect(() => parseBatchOption(bad), bad).toThrow(/--batch must be a whole number from 1 to 4096/);
      const e = await rejection(run(['sync', file, '--batch', bad, '--server', s.server.url, '--token', token]));
      expect(e.code).toBe(ErrorCode.InvalidField);
      expect(e.message).not.toContain('\n');
    }
    expect(() => checkBatchSize(1.5)).toThrow(PcdError);
    expect(() => createClient({ baseUrl: s.server.url, batchSize: 0 })).toThrow(/batch size/);
    const out = await run(['sync', file, '--batch', '1', '--server', s.server.url, '--token', token, '--json']);
    expect((JSON.parse(out) as { summary: { requests: number; messenger: number } }).summary).toMatchObject({ messenger: 1 });
  });

  it('never shows the token from PCD_TOKEN in --help, and reads it when the command runs', async () => {
    const secret = 'token-from-the-environment-0123456789';
    vi.stubEnv('PCD_TOKEN', secret);
    vi.stubEnv('PCD_SERVER', s.server.url.replace('http://', ''));
    try {
      const program = new Command('pcd');
      registerClientCommands(program);
      for (const name of ['lookup', 'sync']) {
        const help = program.commands.find((c) => c.name() === name)!.helpInformation();
        expect(help).toContain('PCD_TOKEN');
        expect(help).not.toContain(secret);
      }
      expect(resolveCommon({ design: 'plain', format: 'msgpack', backend: 'noble' })).toEqual({ server: s.server.url.replace('http://', ''), token: secret, pinFile: undefined });
      // PCD_TOKEN is not a valid token here: the command read it (unauthenticated), it was not in the help.
      expect((await rejection(run(['lookup', carol!, '--design', 'plain']))).code).toBe(ErrorCode.Unauthenticated);
      expect(await run(['lookup', carol!, '--design', 'plain', '--token', token])).toMatch(/messenger \(facetime\)/);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('takes --server without a scheme, and a bad one is one invalid_field line', async () => {
    const bare = s.server.url.replace('http://', '');
    expect(await run(['lookup', carol!, nobody!, '--server', bare, '--token', token, '--design', 'plain'])).toMatch(/messenger \(facetime\)\n.*SMS only/);
    expect(await run(['lookup', carol!, '--server', bare, '--token', token])).toMatch(/messenger \(facetime\)/);
    const e = await rejection(run(['lookup', carol!, '--server', 'ftp://example.org', '--token', token]));
    expect(e.code).toBe(ErrorCode.InvalidField);
    expect(e.message).toMatch(/^server URL 'ftp:\/\/example.org' is not valid/);
  });

  it('refuses an OPRF epoch unless --allow-oprf, and keeps pins in --pins', async () => {
    const o = await startTestServer({ designs: ['blinded'], mode: 'oprf' });
    try {
      const t = (await o.admin.createAccount({ email: 'o@example.org', numbers: [carol!], capabilities: ['messages'] })).token;
      expect((await rejection(run(['lookup', carol!, '--server', o.server.url, '--token', t]))).code).toBe(ErrorCode.ProofInvalid);
      const pins = path.join(tempDir('pcd-pins-'), 'pins.json');
      expect(await run(['lookup', carol!, '--server', o.server.url, '--token', t, '--allow-oprf', '--pins', pins])).toMatch(/messenger \(messages\)/);
      expect(Object.keys((JSON.parse(fs.readFileSync(pins, 'utf8')) as { servers: object }).servers)).toEqual([o.server.url]);
    } finally {
      await o.close();
    }
  });
});

describe('a refusal for load', () => {
  let fake: http.Server;
  let url: string;
  beforeAll(async () => {
    fake = http.createServer((req, res) => {
      const status = req.url!.includes('/plain/') ? 429 : 503;
      res.writeHead(status, { 'content-type': 'application/json', 'retry-after': status === 429 ? '7' : 'Thu, 01 Jan 2099 00:00:00 GMT' });
      res.end(JSON.stringify({ error: { code: status === 429 ? 'rate_limited' : 'unavailable', message: 'slow down\nplease\u001b[2J' } }));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => fake.close(() => resolve())));

  it("keeps the server's Retry-After, and the CLI says it in one line, escapes made visible", async () => {
    const e = await rejection(createClient({ baseUrl: url, token: 't', design: 'plain' }).lookup(carol!));
    expect(e).toMatchObject({ code: ErrorCode.RateLimited, status: 429, retryAfterSeconds: 7 });
    const wrapped = await rejection(oneLine(() => Promise.reject(e))());
    // One line, and no terminal escape from the server reaches the terminal.
    expect(wrapped.message).toBe('slow down please\\u001b[2J; retry after 7 s');
    expect(wrapped.code).toBe(ErrorCode.RateLimited);
    const busy = await rejection(createClient({ baseUrl: url, token: 't', design: 'hashed' }).lookup(carol!));
    expect(busy.code).toBe(ErrorCode.Unavailable);
    expect(busy.retryAfterSeconds).toBeGreaterThan(1000);
    expect(parseRetryAfter('12')).toBe(12);
    expect(parseRetryAfter('Thu, 01 Jan 1970 00:00:00 GMT')).toBe(0);
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});
