/**
 * Privacy Pass for the blinded design (shared/tokens.ts, server/tokens/,
 * client/tokens.ts): the RFC 9578 token type 0x0002 vectors through our
 * issuer's signing and the library's verification, byte for byte, then the
 * real server and client: issuance against the quota, redemption without an
 * account, and every refusal (no token, replay, forgery, another key,
 * another class, a retired key), none of which is evaluated.
 */
import crypto from 'node:crypto';
import fs, { readFileSync } from 'node:fs';
import path from 'node:path';
import { AuthorizationHeader, TOKEN_TYPES, Token, TokenChallenge, WWWAuthenticateHeader, publicVerif } from '@cloudflare/privacypass-ts';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { encodeBody } from '../shared/codec.ts';
import { loadBackend } from '../shared/backends.ts';
import { DEFAULT_BACKEND } from '../shared/suite.ts';
import { PATHS } from '../shared/messages.ts';
import { TOKEN_BYTES, TOKEN_ORIGIN_INFO, sizeClassFor, sizeClassProblem, tokenChallenge, tokenKeyId, DEFAULT_SIZE_CLASSES } from '../shared/tokens.ts';
import { MAX_CHALLENGE_HEADER, TokenService, blindSign, tokenOfHeader, verifyToken } from '../server/tokens/service.ts';
import type { SpentTokenStore } from '../server/tokens/spent.ts';
import type { TokenKey, TokenKeys } from '../server/tokens/keys.ts';
import { designOf } from '../server/designs/index.ts';
import { createBlindedClientWith } from '../client/designs/blinded.ts';
import { createTransport } from '../client/transport.ts';
import { isPcdError } from '../shared/errors.ts';
import { normalizeNumber } from '../shared/e164.ts';
import { runPcd, startTestServer, testClock, type TestServer } from './helpers.ts';

interface PubVector {
  skS: string;
  pkS: string;
  token_challenge: string;
  nonce: string;
  blind: string;
  salt: string;
  token_request: string;
  token_response: string;
  token: string;
}
const hex = (h: string) => new Uint8Array(Buffer.from(h, 'hex'));
const load = (f: string) => JSON.parse(readFileSync(new URL(`./vectors/privacypass/${f}`, import.meta.url), 'utf8')) as PubVector[];
const VECTORS: [string, PubVector][] = [
  ...load('pub_verif_rfc9578.go.json').map((v, i) => [`go ${i}`, v] as [string, PubVector]),
  ...load('pub_verif_rfc9578.rust.json').map((v, i) => [`rust ${i}`, v] as [string, PubVector]),
];

/** A TokenKey of the vector's key pair, as server/tokens/keys.ts loads one. */
async function vectorKey(v: PubVector): Promise<TokenKey> {
  const privateKey = crypto.createPrivateKey(Buffer.from(v.skS, 'hex').toString('utf8'));
  const publicKey = crypto.createPublicKey(privateKey);
  const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  const tokenKey = publicVerif.convertEncToRSASSAPSS(spki);
  const verifyKey = await crypto.subtle.importKey('spki', spki, { name: 'RSA-PSS', hash: 'SHA-384' }, true, ['verify']);
  return { epoch: 1, sizeClass: 1, privateKey, publicKey, tokenKey, keyId: tokenKeyId(tokenKey), verifyKey: verifyKey as TokenKey['verifyKey'] };
}

describe('RFC 9578 §6 (token type 0x0002, Blind RSA) vectors', () => {
  it.each(VECTORS)('%s: the published key is the vector pkS, and BlindSign through node:crypto gives the vector token response byte for byte', async (_name, v) => {
    const key = await vectorKey(v);
    // RFC 9578 §6.5: the token key is the RSASSA-PSS SPKI; our conversion of the private key's public half gives the same bytes.
    expect(Buffer.from(key.tokenKey).toString('hex')).toBe(v.pkS);
    const request = hex(v.token_request);
    // TokenRequest: type 0x0002, truncated key id = last byte of SHA-256(pkS), then the blinded message (§6.1).
    expect((request[0]! << 8) | request[1]!).toBe(0x0002);
    expect(request[2]).toBe(key.keyId[31]);
    expect(Buffer.from(blindSign(key, request.subarray(3))).toString('hex')).toBe(v.token_response);
  });

  it.each(VECTORS)('%s: the vector token verifies with the library under the key, and a flipped bit does not', async (_name, v) => {
    const key = await vectorKey(v);
    const token = Token.deserialize(TOKEN_TYPES.BLIND_RSA, hex(v.token));
    expect(token.serialize().length).toBe(TOKEN_BYTES);
    expect(Buffer.from(token.authInput.tokenKeyId).toString('hex')).toBe(Buffer.from(key.keyId).toString('hex'));
    expect(Buffer.from(token.authInput.nonce).toString('hex')).toBe(v.nonce);
    expect(Buffer.from(token.authInput.challengeDigest).toString('hex')).toBe(crypto.createHash('sha256').update(hex(v.token_challenge)).digest('hex'));
    const origin = new publicVerif.Origin(publicVerif.BlindRSAMode.PSS);
    expect(await origin.verify(token, key.verifyKey)).toBe(true);
    const bad = hex(v.token);
    bad[bad.length - 1]! ^= 1;
    expect(await origin.verify(Token.deserialize(TOKEN_TYPES.BLIND_RSA, bad), key.verifyKey)).toBe(false);
  });

  it('a token request from the library, signed by our issuer, finalises into a token the library verifies (the round trip the client and server make)', async () => {
    const v = VECTORS[0]![1];
    const key = await vectorKey(v);
    const challenge = tokenChallenge('pcd.test');
    const client = new publicVerif.Client(publicVerif.BlindRSAMode.PSS);
    const req = await client.createTokenRequest(challenge, key.tokenKey);
    const token = await client.finalize(new publicVerif.TokenResponse(blindSign(key, req.blindedMsg)));
    expect(await new publicVerif.Origin(publicVerif.BlindRSAMode.PSS, [TOKEN_ORIGIN_INFO]).verify(token, key.verifyKey)).toBe(true);
  });

  it('the server\'s RSA-PSS check (node:crypto) agrees with the library\'s (WebCrypto) on the vectors, on our tokens and on forgeries', async () => {
    const origin = new publicVerif.Origin(publicVerif.BlindRSAMode.PSS);
    const cases: [TokenKey, Token][] = [];
    for (const [, v] of VECTORS) {
      const key = await vectorKey(v);
      const token = Token.deserialize(TOKEN_TYPES.BLIND_RSA, hex(v.token));
      cases.push([key, token]);
      for (const at of [2, 40, 80, 120, 353]) { // nonce, challenge digest, key id, signature (a flipped type byte does not parse)
        const bad = hex(v.token);
        bad[at]! ^= 0x10;
        cases.push([key, Token.deserialize(TOKEN_TYPES.BLIND_RSA, bad)]);
      }
      // Another key's token under this key.
      const other = await vectorKey(VECTORS[(VECTORS.findIndex(([, w]) => w === v) + 1) % VECTORS.length]![1]);
      if (other.tokenKey.toString() !== key.tokenKey.toString()) cases.push([other, token]);
    }
    for (const [key, token] of cases) expect(verifyToken(key, token)).toBe(await origin.verify(token, key.verifyKey));
    expect(cases.filter(([key, token]) => verifyToken(key, token)).length).toBe(VECTORS.length);
  });

  it('the Authorization header: the direct read of the common form gives the library parser\'s token, byte for byte; other forms go to the library', () => {
    for (const [, v] of VECTORS) {
      const token = Token.deserialize(TOKEN_TYPES.BLIND_RSA, hex(v.token));
      const b64 = Buffer.from(v.token, 'hex').toString('base64url');
      expect(b64.length).toBe(472);
      const library = new AuthorizationHeader(token).toString();
      for (const header of [library, `PrivateToken token="${b64}"`, `PrivateToken token=${b64}`, `privatetoken  token = "${b64}" `]) {
        const read = tokenOfHeader(header);
        expect(Buffer.from(read.serialize()).toString('hex')).toBe(v.token);
        expect(Buffer.from(read.authenticator).toString('hex')).toBe(Buffer.from(token.authenticator).toString('hex'));
      }
      // Forms the direct read does not take: the library's parser decides (here, one token with another parameter).
      expect(Buffer.from(tokenOfHeader(`PrivateToken token="${b64}", extensions=""`).serialize()).toString('hex')).toBe(v.token);
      // Neither reads a token that is one character short, a quote left open, or two tokens.
      for (const bad of [`PrivateToken token=${b64.slice(1)}`, `PrivateToken token="${b64}`, `PrivateToken token=${b64}, PrivateToken token=${b64}`, `PrivateToken token=${b64.slice(0, -1)}*`]) {
        expect(() => tokenOfHeader(bad), bad.slice(0, 40)).toThrow();
      }
    }
  });

  it('BlindSign refuses a blinded message at or above the modulus (RFC 8017 §5.2.1 RSASP1)', async () => {
    const key = await vectorKey(VECTORS[0]![1]);
    expect(() => blindSign(key, new Uint8Array(256).fill(0xff))).toThrow(/modulus/);
  });

  it('RFC 9577 headers: our challenge round-trips through WWW-Authenticate, and the vector header parses', () => {
    const headers = JSON.parse(readFileSync(new URL('./vectors/privacypass/auth_scheme_header_v14.json', import.meta.url), 'utf8')) as Record<string, string | number>[];
    for (const h of headers) {
      const parsed = WWWAuthenticateHeader.parse(String(h['WWW-Authenticate']));
      expect(parsed.length).toBeGreaterThan(0);
      expect(Buffer.from(parsed[0]!.challenge.serialize()).toString('hex')).toBe(h['token-challenge-0']);
      expect(Buffer.from(parsed[0]!.tokenKey).toString('hex')).toBe(h['token-key-0']);
    }
    const ours = tokenChallenge('pcd.example');
    const back = TokenChallenge.deserialize(ours.serialize());
    expect(back.issuerName).toBe('pcd.example');
    expect(back.redemptionContext.length).toBe(0);
    expect(back.originInfo).toEqual([TOKEN_ORIGIN_INFO]);
  });

  it('size classes: the smallest class that holds the count; the defaults double up to 64, then take steps of at most 2^(1/4)', () => {
    expect(DEFAULT_SIZE_CLASSES.slice(0, 8)).toEqual([1, 2, 4, 8, 16, 32, 64, 76]);
    expect(DEFAULT_SIZE_CLASSES.at(-1)).toBe(4096);
    expect(DEFAULT_SIZE_CLASSES.length).toBeLessThanOrEqual(32);
    expect(sizeClassProblem(DEFAULT_SIZE_CLASSES)).toBeUndefined();
    for (let i = 7; i < DEFAULT_SIZE_CLASSES.length; i++) expect(DEFAULT_SIZE_CLASSES[i]! / DEFAULT_SIZE_CLASSES[i - 1]!).toBeLessThanOrEqual(1.2);
    expect(sizeClassFor(100, DEFAULT_SIZE_CLASSES)).toBe(108);
    expect(sizeClassFor(1, DEFAULT_SIZE_CLASSES)).toBe(1);
    expect(sizeClassFor(3, DEFAULT_SIZE_CLASSES)).toBe(4);
    expect(sizeClassFor(1000, DEFAULT_SIZE_CLASSES)).toBe(1024);
    expect(sizeClassFor(100, [1, 16, 256, 4096])).toBe(256);
    expect(sizeClassFor(4097, DEFAULT_SIZE_CLASSES)).toBeUndefined();
  });
});

describe('the 401 challenge with the default 31 classes', () => {
  // RSA-2048 token keys are 342-byte SPKIs: 31 of them as challenges would pass node's 16 KB header limit.
  const keys = DEFAULT_SIZE_CLASSES.map((sizeClass) => ({ sizeClass, tokenKey: new Uint8Array(crypto.randomBytes(342)) }));
  const service = new TokenService({ of: () => keys } as unknown as TokenKeys, {} as SpentTokenStore, 'pcd.issuer');
  const classesOf = (header: string) =>
    WWWAuthenticateHeader.parse(header).map((c) => keys.find((k) => Buffer.from(k.tokenKey).equals(Buffer.from(c.tokenKey)))!.sizeClass);

  it('names the classes a body length allows, and without one the smallest classes within its budget', () => {
    expect(classesOf(service.wwwAuthenticate(1, { min: 100, max: 100 }))).toEqual([108]);
    expect(classesOf(service.wwwAuthenticate(1, { min: 70, max: 100 }))).toEqual([76, 91, 108]);
    const all = service.wwwAuthenticate(1);
    expect(all.length).toBeLessThanOrEqual(MAX_CHALLENGE_HEADER);
    const listed = classesOf(all);
    expect(listed.length).toBeGreaterThan(10);
    expect(listed).toEqual(DEFAULT_SIZE_CLASSES.slice(0, listed.length));
  });
});

describe('tokens on a real server (auth token, the default)', () => {
  let s: TestServer;
  let account: string;
  const registered = '+14155550101';
  const clock = testClock(Date.now());

  beforeAll(async () => {
    s = await startTestServer({ now: clock.now, graceMs: 60_000 });
    const a = await s.admin.createAccount({ email: 'a@pcd.test', numbers: [registered], capabilities: ['messages'] });
    const b = await s.admin.createAccount({ email: 'b@pcd.test', numbers: ['+14155550102'], capabilities: ['messages'] });
    account = b.token;
    void a;
  });
  afterAll(() => s.close());

  const blinded = () => designOf(s.server.designs, 'blinded')!;
  const evaluations = () => blinded().evaluator.stats.elements;

  /** One fresh token of `sizeClass`, through the real pool, and `n` blinded elements to spend it on. */
  async function tokenAndElements(n: number): Promise<{ authorization: string; body: Uint8Array; epoch: number }> {
    const c = createBlindedClientWith(createTransport({ baseUrl: s.server.url, token: account }), { tokens: { ahead: {}, periodMs: Infinity } });
    const t = await c.tokens.take(n);
    const backend = await loadBackend(DEFAULT_BACKEND); // the fast backend: the body is the test's, not what it tests
    // A body of the token's class, as the client pads it.
    const { blinded } = backend.blindBatch('voprf', Array.from({ length: t.sizeClass }, (_, i) => new TextEncoder().encode(`x${i}`)));
    c.tokens.close();
    return { authorization: t.authorization, body: encodeBody({ epoch: t.epoch, elements: blinded }, 'msgpack'), epoch: t.epoch };
  }

  const evaluate = (authorization: string | undefined, body: Uint8Array) =>
    fetch(s.server.url + PATHS.blindedEvaluate, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack', accept: 'application/json', ...(authorization ? { authorization } : {}) },
      body,
    });

  it('the real client looks up with tokens and no account on evaluate; the log holds a size class, not the account or the count', async () => {
    const client = s.client(account, 'blinded', { tokens: { periodMs: Infinity } });
    const [r1, r2] = await client.lookupMany([registered, '+14155550199']);
    expect(r1!.capabilities).toEqual(['messages']);
    expect(r2!.capabilities).toEqual([]);
    await new Promise((r) => setTimeout(r, 50));
    clock.advance(61_000); // close the minute of the token evaluation log
    await s.server.close();
    s = await s.restart({ now: clock.now, graceMs: 60_000 });
    const rows = s.server.store.db.prepare('SELECT * FROM blinded_token_eval_log').all() as Record<string, unknown>[];
    expect(rows.length).toBeGreaterThan(0);
    expect(Object.keys(rows[0]!)).toEqual(['ts', 'ip', 'epoch', 'size_class', 'count']);
    expect(rows.map((r) => r.size_class)).toContain(16); // two numbers padded to the test server's class 16
    expect(s.server.store.db.prepare('SELECT count(*) AS n FROM blinded_eval_log').get()).toEqual({ n: 0 });
    const issued = s.server.store.db.prepare('SELECT * FROM token_issuance_log').all() as { account_id: number; count: number }[];
    expect(issued.length).toBeGreaterThan(0);
    expect(Object.keys(issued[0]!)).toEqual(['ts', 'account_id', 'count']);
  });

  it('no token: 401 token_required with WWW-Authenticate challenges, that the library parses, for the classes the body length allows', async () => {
    const { body, epoch } = await tokenAndElements(1);
    const keys = blinded().tokens!.keys.of(epoch);
    const b64 = (k: { tokenKey: Uint8Array }) => Buffer.from(k.tokenKey).toString('base64url');
    const classesOf = (header: string | null) => {
      const parsed = WWWAuthenticateHeader.parse(header ?? '');
      expect(parsed.map((c) => c.challenge.issuerName).every((n) => n === 'pcd.issuer')).toBe(true);
      return parsed.map((c) => keys.find((k) => b64(k) === Buffer.from(c.tokenKey).toString('base64url'))?.sizeClass);
    };
    const res = await evaluate(undefined, body);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('token_required');
    // One element in MessagePack: class 1 only, of the test server's 1, 16, 256, 4096.
    expect(classesOf(res.headers.get('www-authenticate'))).toEqual([1]);
    // 200 elements padded to 256: only class 256's key.
    const big = await tokenAndElements(200);
    expect(classesOf((await evaluate(undefined, big.body)).headers.get('www-authenticate'))).toEqual([256]);
    // No Content-Length (a chunked body): every class, as many as fit in the header's budget.
    const chunked = await fetch(s.server.url + PATHS.blindedEvaluate, {
      method: 'POST',
      headers: { 'content-type': 'application/msgpack' },
      body: new ReadableStream({ start: (c) => (c.enqueue(body), c.close()) }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(401);
    expect(classesOf(chunked.headers.get('www-authenticate'))).toEqual([1, 16, 256, 4096]);
    // A bearer account token is no token either.
    const bearer = await evaluate(`Bearer ${account}`, body);
    expect(bearer.status).toBe(401);
  });

  it('a token is spent once: the replay is 401 token_replayed and is not evaluated', async () => {
    const { authorization, body } = await tokenAndElements(1);
    expect((await evaluate(authorization, body)).status).toBe(200);
    const before = evaluations();
    const again = await evaluate(authorization, body);
    expect(again.status).toBe(401);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe('token_replayed');
    expect(evaluations()).toBe(before);
  });

  it('a forged token (signature bits flipped, or a made-up authenticator) is 401 token_invalid and not evaluated', async () => {
    const { authorization, body } = await tokenAndElements(1);
    const token = AuthorizationHeader.parse(TOKEN_TYPES.BLIND_RSA, authorization)[0]!.token;
    const forged = token.serialize();
    forged[forged.length - 5]! ^= 0x40;
    const before = evaluations();
    for (const bytes of [forged, new Uint8Array([...token.serialize().subarray(0, 98), ...crypto.randomBytes(256)])]) {
      const res = await evaluate(new AuthorizationHeader(Token.deserialize(TOKEN_TYPES.BLIND_RSA, bytes)).toString(), body);
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('token_invalid');
    }
    for (const garbage of ['PrivateToken token=', 'PrivateToken token=abc', `PrivateToken token=${'A'.repeat(2000)}`, 'PrivateToken']) {
      const res = await evaluate(garbage, body);
      expect(res.status).toBe(401);
      expect(['token_invalid', 'token_required']).toContain(((await res.json()) as { error: { code: string } }).error.code);
    }
    expect(evaluations()).toBe(before);
    // The real token still works afterwards: the forgeries spent nothing.
    expect((await evaluate(authorization, body)).status).toBe(200);
  });

  it('a token of another key (a key pair of our own making, as a second issuer would have) is 401 token_key_unknown', async () => {
    const { body } = await tokenAndElements(1);
    // A fresh RSA-2048 key pair (outside PCD_TEST_FULL=1 from the run's pool of them, test/rsa-pool.mjs: no other process has it).
    const { publicKey, privateKey } = await new Promise<{ publicKey: crypto.KeyObject; privateKey: crypto.KeyObject }>((resolve, reject) =>
      crypto.generateKeyPair('rsa', { modulusLength: 2048 }, (err, pub, priv) => (err ? reject(err) : resolve({ publicKey: pub, privateKey: priv }))),
    );
    const tokenKey = publicVerif.convertEncToRSASSAPSS(new Uint8Array(publicKey.export({ type: 'spki', format: 'der' })));
    const client = new publicVerif.Client(publicVerif.BlindRSAMode.PSS);
    const req = await client.createTokenRequest(tokenChallenge('pcd.issuer'), tokenKey);
    const other = { privateKey, publicKey } as TokenKey;
    const token = await client.finalize(new publicVerif.TokenResponse(blindSign(other, req.blindedMsg)));
    const before = evaluations();
    const res = await evaluate(new AuthorizationHeader(token).toString(), body);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('token_key_unknown');
    expect(evaluations()).toBe(before);
  });

  it('a token of class 1 on a request of 16 elements is 401 token_wrong_class, and stays unspent', async () => {
    const one = await tokenAndElements(1);
    const many = await tokenAndElements(16);
    const before = evaluations();
    const res = await evaluate(one.authorization, many.body);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('token_wrong_class');
    expect(evaluations()).toBe(before);
    expect((await evaluate(one.authorization, one.body)).status).toBe(200);
  });

  it('a request refused after the spend (an element that is not a group element) gives its token back', async () => {
    const { authorization, epoch } = await tokenAndElements(1);
    const bad = encodeBody({ epoch, elements: [new Uint8Array(32).fill(0xff)] }, 'msgpack');
    expect((await evaluate(authorization, bad)).status).toBe(400);
    const { body } = await tokenAndElements(1);
    expect((await evaluate(authorization, body)).status).toBe(200);
  });

  it('the issuer refuses a request for a class it has not, a malformed token request, and an unknown epoch', async () => {
    const post = (body: unknown) =>
      fetch(s.server.url + PATHS.tokens, { method: 'POST', headers: { authorization: `Bearer ${account}`, 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify(body) });
    const req = Buffer.alloc(259).toString('base64');
    const cases: [unknown, number, string][] = [
      [{ epoch: 1, sizeClass: 3, requests: [req] }, 400, 'invalid_field'],
      [{ epoch: 1, sizeClass: 1, requests: [req] }, 400, 'invalid_field'],
      [{ epoch: 99, sizeClass: 1, requests: [req] }, 404, 'unknown_epoch'],
      [{ epoch: 1, sizeClass: 1, requests: [] }, 400, 'invalid_field'],
      [{ epoch: 1, sizeClass: 1, requests: Array(65).fill(req) }, 400, 'too_many_items'],
    ];
    for (const [body, status, code] of cases) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(status);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
    }
    const anon = await fetch(s.server.url + PATHS.tokens, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(anon.status).toBe(401);
  });

  it('a rotation makes new token keys; once the old epoch retires its keys are unknown, its spent tokens are purged, and the client moves on', async () => {
    const old = await tokenAndElements(1);
    const spentBefore = await blinded().tokens!.spent.size();
    expect(spentBefore).toBeGreaterThan(0);
    const { epoch } = await s.admin.rotateKey();
    expect(blinded().tokens!.keys.of(epoch).length).toBe(4);
    clock.advance(61_000); // past the grace period: the old epoch and its token keys retire
    blinded().epochs.expire();
    const res = await evaluate(old.authorization, old.body);
    expect(res.status).toBe(401);
    expect(['token_key_unknown', 'epoch_retired', 'unknown_epoch']).toContain(((await res.json()) as { error: { code: string } }).error.code);
    expect(await blinded().tokens!.spent.size()).toBeLessThan(spentBefore);
    const client = s.client(account, 'blinded', { tokens: { periodMs: Infinity } });
    expect((await client.lookup(registered)).capabilities).toEqual(['messages']);
  });
});

describe('auth account (--blinded-auth account)', () => {
  it('evaluate takes the bearer token and logs the account, as before; /v1/tokens is not served', async () => {
    const s = await startTestServer({ blindedAuth: 'account' });
    try {
      const a = await s.admin.createAccount({ email: 'c@pcd.test', numbers: ['+14155550103'], capabilities: ['messages'] });
      const client = s.client(a.token, 'blinded');
      expect((await client.lookup('+14155550103')).capabilities).toEqual(['messages']);
      const res = await fetch(s.server.url + PATHS.tokens, { method: 'POST', headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/json' }, body: '{}' });
      expect(res.status).toBe(404);
      await new Promise((r) => setTimeout(r, 100));
      expect((s.server.store.db.prepare('SELECT account_id FROM blinded_eval_log').all() as { account_id: number }[]).map((r) => r.account_id)).toEqual([a.accountId]);
    } finally {
      await s.close();
    }
  });

  it("the issuer's quota is the account's allowance, in elements: a token of class 16 costs 16, and past the allowance it is 429 with Retry-After", async () => {
    const s = await startTestServer({ rateLimits: { requesterBurst: 100, requesterPerHour: 5, ipPerMinute: 6000 } });
    try {
      const a = await s.admin.createAccount({ email: 'q@pcd.test', numbers: ['+14155550105'], capabilities: ['messages'] });
      const client = createBlindedClientWith(createTransport({ baseUrl: s.server.url, token: a.token }), { tokens: { ahead: {}, periodMs: Infinity } });
      for (let i = 0; i < 6; i++) await client.tokens.take(10); // class 16: 6 x 16 = 96 of 100
      expect(s.server.rateLimiter!.available(a.accountId)).toBeCloseTo(4, 0);
      const e = await client.tokens.take(10).catch((x: unknown) => x);
      expect(isPcdError(e, 'rate_limited')).toBe(true);
      expect((e as { retryAfterSeconds?: number }).retryAfterSeconds).toBeGreaterThan(3600); // 12 more at 5 an hour
      expect((await client.lookupBatch([normalizeNumber('+14155550105')])).map((r) => r.capabilities)).toEqual([['messages']]); // class 1 still fits
      client.tokens.close();
    } finally {
      await s.close();
    }
  });

  it('pcd lookup --tokens FILE keeps a pool across runs: the second run spends a token fetched by the first, and tops the pool up after', async () => {
    const s = await startTestServer();
    try {
      const a = await s.admin.createAccount({ email: 'e@pcd.test', numbers: ['+14155550106'], capabilities: ['messages'] });
      const file = path.join(s.dataDir, '..', 'tokens.json');
      const env = { PCD_TOKEN: a.token, PCD_SERVER: s.server.url };
      const first = await runPcd(['lookup', '+14155550106', '--tokens', file], env);
      expect(first.stdout, first.stderr).toMatch(/\+14155550106\s+messenger/);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      const held = (): string[] => (JSON.parse(fs.readFileSync(file, 'utf8')) as { servers: Record<string, { authorization: string }[]> }).servers[s.server.url]!.map((t) => t.authorization);
      const before = held();
      expect(before.length).toBe(8); // class 1's target, fetched after the lookup
      const second = await runPcd(['lookup', '+14155550199', '--tokens', file], env);
      expect(second.stdout, second.stderr).toMatch(/SMS only/);
      const after = held();
      expect(after.length).toBe(8);
      // Exactly one of the tokens the first run left was spent by the second; one new token replaced it.
      expect(before.filter((t) => !after.includes(t)).length).toBe(1);
      // Without a file a run fetches just what it spends: one token of class 1.
      const issued = () => designOf(s.server.designs, 'blinded')!.tokens!.spent.size();
      const spentBefore = await issued();
      expect((await runPcd(['lookup', '+14155550198'], env)).code).toBe(0);
      expect(await issued()).toBe(spentBefore + 1);
    } finally {
      await s.close();
    }
  });

  it('the pool\'s issuance does not follow its use: a quantum per period whatever was spent, at most maxHeld kept, on-demand only when a class is empty', async () => {
    const s = await startTestServer();
    try {
      const a = await s.admin.createAccount({ email: 'p@pcd.test', numbers: ['+14155550107'], capabilities: ['messages'] });
      const client = createBlindedClientWith(createTransport({ baseUrl: s.server.url, token: a.token }), { tokens: { periodMs: Infinity, quantum: { 1: 8 }, maxHeld: 12 } });
      const pool = client.tokens;
      await pool.fetchQuantum();
      expect(pool.count(1)).toBe(8);
      // Spending does not fetch: three lookups later the pool holds five and the issuer signed nothing more.
      for (const n of ['+14155550107', '+14155550198', '+14155550197']) await client.lookupBatch([normalizeNumber(n)]);
      expect(pool.count(1)).toBe(5);
      expect(pool.stats).toMatchObject({ tokensFetched: 8, tokensSpent: 3, fetchesOnDemand: 0 });
      // The next period's fetch is the same quantum whatever was spent; beyond maxHeld the oldest go.
      await pool.fetchQuantum();
      expect(pool.count(1)).toBe(12);
      expect(pool.stats).toMatchObject({ tokensFetched: 16, tokensDropped: 1 });
      await pool.fetchQuantum();
      expect(pool.count(1)).toBe(12);
      expect(pool.stats).toMatchObject({ tokensFetched: 24, tokensDropped: 9 });
      // A class with no token (a sync of 10, class 16) is fetched on demand: one token, counted.
      await client.lookupBatch(Array.from({ length: 10 }, (_, i) => normalizeNumber(`+1415555012${i}`)));
      expect(pool.stats).toMatchObject({ fetchesOnDemand: 1, tokensFetched: 25 });
      pool.close();

      // Its own timer: a short period (100 ms), the moment drawn at mid-period; two fetches come without any lookup.
      const period = 100;
      const timed = createBlindedClientWith(createTransport({ baseUrl: s.server.url, token: a.token }), { tokens: { periodMs: period, quantum: { 1: 2 }, random: () => 0.5 } });
      // The period's fetches the timer starts (it calls the pool's fetchQuantum), counted, and those still running.
      const quantum = timed.tokens.fetchQuantum.bind(timed.tokens);
      let started = 0;
      let running = 0;
      timed.tokens.fetchQuantum = async () => {
        started++;
        running++;
        try {
          return await quantum();
        } finally {
          running--;
        }
      };
      await vi.waitFor(() => expect(timed.tokens.stats.issuanceRequests).toBeGreaterThanOrEqual(2), { timeout: 20_000, interval: 10 });
      expect(timed.tokens.stats.tokensSpent).toBe(0);
      timed.tokens.close();
      await vi.waitFor(() => expect(running).toBe(0), { timeout: 20_000, interval: 10 }); // a fetch in flight at close may still land
      const fetched = timed.tokens.stats.tokensFetched;
      const fetches = started;
      await new Promise((r) => setTimeout(r, 4 * period)); // past three periods: a live schedule would have fetched again
      expect(started).toBe(fetches);
      expect(timed.tokens.stats.tokensFetched).toBe(fetched);
    } finally {
      await s.close();
    }
  });

  it('a client whose pool must not fetch on demand says tokens_exhausted', async () => {
    const s = await startTestServer();
    try {
      const a = await s.admin.createAccount({ email: 'd@pcd.test', numbers: ['+14155550104'], capabilities: ['messages'] });
      const client = s.client(a.token, 'blinded', { tokens: { whenEmpty: 'fail', periodMs: Infinity } });
      const e = await client.lookup('+14155550104').catch((x: unknown) => x);
      expect(isPcdError(e, 'tokens_exhausted')).toBe(true);
    } finally {
      await s.close();
    }
  });
});
