/**
 * Every bad input gets its 4xx and a coded `{ error: { code, message } }`
 * body, nothing reaches the crypto or the store, and the server stays up and
 * loses nothing: each case is followed by a good lookup, and the query log
 * still holds every good lookup at the end.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import path from 'node:path';
import { encodeBody } from '../shared/codec.ts';
import { LIMITS } from '../shared/limits.ts';
import { isPcdError } from '../shared/errors.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { DB_FILE } from '../disk/files.ts';
import { createClient } from '../client/client.ts';
import { ADMIN_TOKEN, raw, startTestServer, type TestServer } from './helpers.ts';

const [reg, unreg] = sampleNumbers({ count: 2, seed: 'bad-input', regions: ['US'] });
let s: TestServer;
let token: string;
let goodLookups = 0;

beforeAll(async () => {
  s = await startTestServer({ designs: ['plain', 'hashed'] });
  token = (await s.admin.createAccount({ email: 'req@example.org', numbers: [reg!], capabilities: ['messages'] })).token;
});
afterAll(async () => {
  await s.close();
});

const url = (p: string) => s.server.url + p;
const json = (body: unknown) => JSON.stringify(body);
// Cases are listed before beforeAll has a token: they name it, the test fills it in.
const TOKEN = '__TOKEN__';
const auth = () => ({ authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' });

async function stillServes() {
  const r = await s.client(token, 'plain').lookup(reg!);
  goodLookups++;
  expect(r.capabilities).toEqual(['messages']);
}

type Case = [name: string, path: string, init: Parameters<typeof raw>[1], status: number, code: string, message?: RegExp];

const cases = (): Case[] => [
  ['not a number', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: ['hello'] }) }, 400, 'invalid_number', /numbers\[0\]/],
  ['a number too short', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: [reg!, '+1415'] }) }, 400, 'invalid_number', /numbers\[1\]/],
  ['numbers is not an array', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: reg }) }, 400, 'invalid_field', /numbers: expected an array/],
  ['a number of the wrong type', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: [14155550123] }) }, 400, 'invalid_field', /numbers\[0\]/],
  ['an empty list', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: [] }) }, 400, 'invalid_field'],
  ['an unknown field', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: [reg], extra: 1 }) }, 400, 'invalid_field', /unknown field 'extra'/],
  ['a body that is not an object', '/v1/plain/lookup', { headers: auth(), body: json([reg]) }, 400, 'invalid_field'],
  ['malformed JSON', '/v1/plain/lookup', { headers: auth(), body: '{"numbers": [' }, 400, 'malformed_body'],
  ['malformed MessagePack', '/v1/plain/lookup', { headers: { ...auth(), 'content-type': 'application/msgpack' }, body: new Uint8Array([0xc1, 0xff, 0x00]) }, 400, 'malformed_body'],
  ['an empty body', '/v1/plain/lookup', { headers: auth(), body: '' }, 400, 'malformed_body'],
  ['too many numbers', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: Array(LIMITS.maxBatch + 1).fill(reg) }) }, 400, 'too_many_items', /at most 4096/],
  ['a body too large', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: ['x'.repeat(LIMITS.maxBodyBytes)] }) }, 413, 'body_too_large'],
  ['a string too long', '/v1/plain/lookup', { headers: auth(), body: json({ numbers: ['1'.repeat(65)] }) }, 400, 'invalid_field', /at most 64 characters/],
  ['an unsupported content type', '/v1/plain/lookup', { headers: { ...auth(), 'content-type': 'text/plain' }, body: 'x' }, 415, 'unsupported_media_type'],
  ['a missing token', '/v1/plain/lookup', { headers: { 'content-type': 'application/json' }, body: json({ numbers: [reg] }) }, 401, 'unauthenticated'],
  ['a wrong token', '/v1/plain/lookup', { headers: { ...auth(), authorization: 'Bearer not-a-token' }, body: json({ numbers: [reg] }) }, 401, 'unauthenticated'],
  ['a malformed authorization header', '/v1/plain/lookup', { headers: { ...auth(), authorization: 'Basic abc' }, body: json({ numbers: [reg] }) }, 401, 'unauthenticated'],
  ['a hash of the wrong length', '/v1/hashed/lookup', { headers: auth(), body: json({ hashes: [Buffer.alloc(31).toString('base64')] }) }, 400, 'invalid_field', /expected 32 bytes/],
  ['a hash that is not base64', '/v1/hashed/lookup', { headers: auth(), body: json({ hashes: ['!!!!'] }) }, 400, 'invalid_field'],
  ['a requester token on the admin API', '/v1/accounts', { headers: auth(), body: json({ email: 'e@x.org', numbers: [unreg], capabilities: [] }) }, 403, 'forbidden'],
  ['a wrong admin token', '/v1/accounts', { headers: { authorization: 'Bearer wrong', 'content-type': 'application/json' }, body: json({ email: 'e@x.org', numbers: [unreg], capabilities: [] }) }, 403, 'forbidden'],
  ['an unknown capability', '/v1/accounts', { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: json({ email: 'e@x.org', numbers: [unreg], capabilities: ['telepathy'] }) }, 400, 'invalid_field', /telepathy/],
  ['an email with a control character', '/v1/accounts', { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: json({ email: 'e\u0007@x.org', numbers: [unreg], capabilities: [] }) }, 400, 'invalid_field', /email/],
  ['an email with a bidi override', '/v1/accounts', { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: json({ email: 'gro.x@\u202ee', numbers: [unreg], capabilities: [] }) }, 400, 'invalid_field', /email/],
  ['a bad email', '/v1/accounts', { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: json({ email: 'nobody', numbers: [unreg], capabilities: [] }) }, 400, 'invalid_field', /email/],
  ['a number registered twice', '/v1/accounts', { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: json({ email: 'e@x.org', numbers: [reg], capabilities: [] }) }, 409, 'conflict'],
  ['deleting an unknown account', '/v1/accounts/999999', { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, 404, 'not_found'],
  ['deleting a malformed account id', '/v1/accounts/abc', { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }, 400, 'invalid_field'],
  ['an unknown endpoint', '/v1/nothing', { method: 'GET' }, 404, 'not_found'],
  ['the wrong method', '/v1/plain/lookup', { method: 'GET', headers: auth() }, 405, 'method_not_allowed'],
  ['a design the server does not serve', '/v1/blinded/config', { method: 'GET' }, 404, 'design_disabled'],
  ['an Accept it cannot meet', '/v1/health', { method: 'GET', headers: { accept: 'text/html' } }, 406, 'not_acceptable'],
  ['an Accept that refuses both formats (q=0)', '/v1/health', { method: 'GET', headers: { accept: 'application/msgpack;q=0, application/json;q=0, text/html' } }, 406, 'not_acceptable'],
];

describe('bad input', () => {
  it.each(cases().map((c) => [c[0], c] as const))('rejects %s with a coded 4xx and stays up', async (_name, c) => {
    const [, p, init, status, code, message] = c;
    const headers = Object.fromEntries(Object.entries(init?.headers ?? {}).map(([k, v]) => [k, v.replace(TOKEN, token)]));
    const r = await raw(url(p), { ...init, headers });
    expect(r.status).toBe(status);
    expect(r.json?.error?.code, r.text).toBe(code);
    expect(typeof r.json?.error?.message).toBe('string');
    if (message) expect(r.json.error.message).toMatch(message);
    await stillServes();
  });

  it('answers in MessagePack when asked in MessagePack', async () => {
    const r = await fetch(url('/v1/plain/lookup'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/msgpack' },
      body: encodeBody({ numbers: ['nope'] }, 'msgpack'),
    });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/application\/msgpack/);
  });

  it('answers in the format the Accept header weighs highest, never in one it refuses', async () => {
    const typeFor = async (accept: string) => (await fetch(url('/v1/health'), { headers: { accept } })).headers.get('content-type');
    expect(await typeFor('application/json;q=0.5, application/msgpack')).toMatch(/msgpack/);
    expect(await typeFor('application/json, application/msgpack')).toMatch(/json/);
    expect(await typeFor('application/msgpack;q=0, */*')).toMatch(/json/);
    expect(await typeFor('*/*')).toMatch(/msgpack/);
  });

  it('gives the client a typed error it can branch on', async () => {
    const bad = createClient({ baseUrl: s.server.url, token: 'wrong', design: 'plain' });
    const err = await bad.lookup(reg!).catch((e: unknown) => e);
    expect(isPcdError(err, 'unauthenticated')).toBe(true);
    const client = s.client(token, 'plain');
    const err2 = await client.lookup('12').catch((e: unknown) => e);
    expect(isPcdError(err2, 'invalid_number')).toBe(true);
  });

  it('lost nothing: every good lookup is in the query log', async () => {
    await s.close();
    const db = new Database(path.join(s.dataDir, DB_FILE), { readonly: true });
    const { n } = db.prepare('SELECT count(*) AS n FROM plain_log').get() as { n: number };
    db.close();
    expect(n).toBe(goodLookups);
  });
});
