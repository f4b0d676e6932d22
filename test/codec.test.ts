/**
 * Every message schema of the API (shared/messages.ts: the common endpoints
 * and each design's, requests and replies) survives the one codec
 * (shared/codec.ts) in both content types, as the server and the client use
 * it: encodeBody, then decodeBody, then the schema (parseRequest for a
 * request, as the server reads it; parseReply for a reply, as the client
 * does). The values are realistic: real E.164 numbers and their hashes, real
 * ristretto255 elements, keys and proofs, bucket tags and masks. What comes
 * out equals what went in, byte fields as bytes. The error body goes through
 * errorFromBody, as the client reads it. A malformed body, in either content
 * type, is refused with a coded error.
 */
import { describe, expect, it } from 'vitest';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { DEFAULT_TAG_BYTES, truncateTag, compareTags } from '../shared/buckets.ts';
import { CAPABILITIES, capabilitiesToMask } from '../shared/capabilities.ts';
import { CONTENT_TYPE, decodeBody, encodeBody, formatOfContentType, type Format } from '../shared/codec.ts';
import { ErrorCode, PcdError, errorFromBody, isPcdError } from '../shared/errors.ts';
import type { E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/designs/hashed.ts';
import { auditPath, bucketLeafHash, merkleRoot } from '../shared/merkle.ts';
import * as messages from '../shared/messages.ts';
import { DESIGNS } from '../shared/messages.ts';
import { blindBatch, blindEvaluateBatch, evaluate, generateKeyPair } from '../shared/noble.ts';
import { SUITE } from '../shared/suite.ts';
import { parseReply, parseRequest, type Schema } from '../shared/schema.ts';
import { sampleNumbers } from '../synth/directory.ts';

const FORMATS: readonly Format[] = ['msgpack', 'json'];
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);
const numbers = sampleNumbers({ count: 6, seed: 'codec', regions: ['US', 'GB', 'DE', 'IN'] });
const [n1, n2, n3, n4, n5, n6] = numbers as [E164, E164, E164, E164, E164, E164];

const key1 = generateKeyPair('voprf');
const key2 = generateKeyPair('voprf');
const inputs = [n1, n2, n3].map((n) => utf8ToBytes(n));
const { blinded } = blindBatch('voprf', inputs);
const voprfReply = blindEvaluateBatch('voprf', key2, blinded);
const oprfKey = generateKeyPair('oprf');
const oprfReply = blindEvaluateBatch('oprf', oprfKey, blindBatch('oprf', inputs).blinded);

/** A bucket as the server publishes it: sorted truncated tags of the numbers in it, and one capability mask each. */
function bucketOf(list: readonly string[]): { tags: Uint8Array; capabilities: Uint8Array } {
  const tags = list.map((n) => truncateTag(evaluate('voprf', key2.secretKey, utf8ToBytes(n)), DEFAULT_TAG_BYTES));
  tags.sort((a, b) => compareTags(a, 0, b, 0, DEFAULT_TAG_BYTES));
  const out = new Uint8Array(tags.length * DEFAULT_TAG_BYTES);
  tags.forEach((t, i) => out.set(t, i * DEFAULT_TAG_BYTES));
  return { tags: out, capabilities: Uint8Array.from(tags, (_, i) => capabilitiesToMask(i % 2 ? ['messages'] : ['messages', 'facetime'])) };
}

/** Epoch 2's 16 buckets (bucketBits 4): bucket 11 holds four numbers, the others none; its root and bucket 11's path (shared/merkle.ts). */
const EPOCH2_BUCKETS = Array.from({ length: 16 }, (_, b) => (b === 11 ? bucketOf([n1, n2, n3, n6]) : bucketOf([])));
const EPOCH2_LEAVES = EPOCH2_BUCKETS.map((content, bucket) => bucketLeafHash({ epoch: 2, bucket, ...content }));
const EPOCH2_ROOT = merkleRoot(EPOCH2_LEAVES);
/** Epoch 1 (bucketBits 0): one bucket, its leaf is the root. */
const EPOCH1_ROOT = bucketLeafHash({ epoch: 1, bucket: 0, ...bucketOf([n4, n5]) });

type Direction = 'request' | 'reply';
interface Sample {
  direction: Direction;
  values: readonly unknown[];
}

/** Realistic values of every schema shared/messages.ts exports, by export name. */
const SAMPLES: Record<string, Sample> = {
  LogHealthInfo: {
    direction: 'reply',
    values: [
      { table: 'plain_log', pending: 1200, failing: true, lastError: 'SQLITE_FULL', dropped: 0 },
      { table: 'blinded_bucket_log', pending: 0, failing: false, dropped: 37 },
    ],
  },
  HealthReply: {
    direction: 'reply',
    values: [
      { ok: true, designs: [...DESIGNS] },
      { ok: true, designs: ['plain'] },
      {
        ok: false,
        designs: [...DESIGNS],
        degraded: {
          logs: [
            { table: 'hashed_log', pending: 0, failing: false, dropped: 0 },
            { table: 'plain_log', pending: 40, failing: true, lastError: 'SQLITE_IOERR_WRITE', dropped: 3 },
          ],
        },
      },
    ],
  },
  CreateAccountRequest: {
    direction: 'request',
    values: [
      { email: 'alice@example.org', numbers: [n1, n2], capabilities: ['messages', 'facetime'] },
      { email: 'bob.smith+pcd@mail.example.co.uk', numbers: ['(415) 555-0123'], capabilities: [], region: 'US' },
    ],
  },
  CreateAccountReply: { direction: 'reply', values: [{ accountId: 42, token: Buffer.from(key1.secretKey).toString('base64url') }] },
  OkReply: { direction: 'reply', values: [{ ok: true }, { ok: false }] },
  PageLoginRequest: { direction: 'request', values: [{ code: 'E3Am4diQMyZUe-TD7SPEQACeAoyRNvzt' }] },
  PageLoginReply: {
    direction: 'reply',
    values: [{ viewToken: 'kSYk9lABqFQayfn7UsRmv1gRhxIr2q0U', requester: { email: 'web-page@pcd.local', accountId: 2, token: 'N3PAySBpORmHlZvEXy-Ao_DKteHodZDLkYbK3bNQ844' } }],
  },
  PageClockReply: { direction: 'reply', values: [{ now: T0 }] },
  TraceTable: {
    direction: 'reply',
    values: [
      { name: 'plain_log', kind: 'rows', scope: 'account', description: 'one looked-up number', columns: [{ name: 'ts', holds: 'time' }, { name: 'number', holds: 'number' }], rows: [[T0, n1], [T0 + 1, null]] },
      { name: 'blinded_bucket_log', kind: 'counts', windowMs: 60_000, scope: 'ip', description: 'bucket fetches per minute', columns: [{ name: 'bucket', holds: 'bucket' }], rows: [] },
    ],
  },
  TraceReversal: {
    direction: 'reply',
    values: [{ plan: '+14155XXXXXX', candidates: 1_000_000, ms: 951.7, ratePerSecond: 1_050_702, numbers: { [hex(hashNumber(n1))]: n1 } }],
  },
  TraceReply: {
    direction: 'reply',
    values: [
      {
        design: 'hashed',
        since: T0,
        now: T0 + 5,
        requester: { accountId: 2, ip: '127.0.0.1' },
        tables: [{ name: 'hashed_log', kind: 'rows', scope: 'account', description: 'one looked-up hash', columns: [{ name: 'hash', holds: 'number-hash' }], rows: [[hex(hashNumber(n2))]] }],
        reversal: { plan: '+14155XXXXXX', candidates: 1_000_000, ms: 12.5, ratePerSecond: 80_000_000, numbers: {} },
      },
      { design: 'blinded', since: T0, now: T0, requester: { accountId: 9, ip: '::1' }, tables: [] },
    ],
  },
  PageLinkReply: { direction: 'reply', values: [{ path: '/#login=' + 'A'.repeat(32) }, { path: '/#login=abc_DEF-0123456789' }] },
  PlainLookupRequest: { direction: 'request', values: [{ numbers: [n1, '+44 20 7946 0018', '0176 12345678', n4] }] },
  PlainLookupReply: {
    direction: 'reply',
    values: [
      {
        results: [
          { number: n1, capabilities: ['messages', 'facetime'] },
          { number: n4, capabilities: [] },
          { number: n1, capabilities: ['messages', 'facetime'] },
        ],
      },
      { results: [] },
    ],
  },
  HashedLookupRequest: { direction: 'request', values: [{ hashes: [n1, n2, n5].map((n) => hashNumber(n)) }] },
  HashedLookupReply: { direction: 'reply', values: [{ results: [{ capabilities: ['messages'] }, { capabilities: [] }, { capabilities: ['facetime'] }] }] },
  EpochInfo: {
    direction: 'reply',
    values: [
      { epoch: 1, publicKey: key1.publicKey, root: EPOCH1_ROOT, version: 41, mode: 'voprf', bucketBits: 0, tagBytes: 8, retiresAt: T0 + 86_400_000 },
      { epoch: 2, publicKey: key2.publicKey, root: EPOCH2_ROOT, version: 0 },
    ],
  },
  BlindedConfigReply: {
    direction: 'reply',
    values: [
      {
        suite: SUITE,
        mode: 'voprf',
        capabilities: [...CAPABILITIES],
        tagBytes: DEFAULT_TAG_BYTES,
        bucketBits: 4,
        current: 2,
        epochs: [
          { epoch: 1, publicKey: key1.publicKey, root: EPOCH1_ROOT, version: 41, mode: 'voprf', bucketBits: 0, tagBytes: 8, retiresAt: T0 + 86_400_000 },
          { epoch: 2, publicKey: key2.publicKey, root: EPOCH2_ROOT, version: 41, mode: 'voprf', bucketBits: 4, tagBytes: 8 },
        ],
      },
    ],
  },
  EvaluateRequest: { direction: 'request', values: [{ epoch: 2, elements: blinded }] },
  EvaluateReply: {
    direction: 'reply',
    values: [
      { epoch: 2, evaluated: voprfReply.evaluated, proof: voprfReply.proof },
      { epoch: 7, evaluated: oprfReply.evaluated }, // OPRF mode: no proof
    ],
  },
  BucketReply: {
    direction: 'reply',
    values: [
      { epoch: 2, bucket: 11, ...EPOCH2_BUCKETS[11]!, version: 41, path: auditPath(EPOCH2_LEAVES, 11), root: EPOCH2_ROOT },
      { epoch: 2, bucket: 0, tags: new Uint8Array(0), capabilities: new Uint8Array(0), version: 41, path: auditPath(EPOCH2_LEAVES, 0), root: EPOCH2_ROOT }, // an empty bucket
      { epoch: 1, bucket: 0, ...bucketOf([n4, n5]), version: 41, path: [], root: bucketLeafHash({ epoch: 1, bucket: 0, ...bucketOf([n4, n5]) }) }, // bucketBits 0: the leaf is the root
    ],
  },
  RotateKeyRequest: { direction: 'request', values: [{}, { bucketBits: 6, mode: 'oprf' }, { bucketBits: 0 }] },
  RotateKeyReply: { direction: 'reply', values: [{ epoch: 3, previous: 2, retiresAt: T0 + 86_400_000 }, { epoch: 1 }] },
};

/** Every export of shared/messages.ts that is a schema, by name. */
const SCHEMAS = (Object.entries(messages) as [string, unknown][]).filter(
  (e): e is [string, Schema<unknown>] => typeof e[1] === 'object' && e[1] !== null && typeof (e[1] as { check?: unknown }).check === 'function',
);

/** Byte fields as plain Uint8Array (msgpackr decodes to Buffer): what the equality below compares. */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return Uint8Array.from(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** Every byte field of a value, by path. */
function byteFields(v: unknown, at = ''): string[] {
  if (v instanceof Uint8Array) return [at];
  if (Array.isArray(v)) return v.flatMap((x, i) => byteFields(x, `${at}[${i}]`));
  if (v !== null && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => byteFields(x, at ? `${at}.${k}` : k));
  return [];
}

function at(v: unknown, path: string): unknown {
  return path.match(/[^.[\]]+/g)!.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], v);
}

describe('the message schemas', () => {
  it('each has realistic samples here, requests named *Request', () => {
    expect(SCHEMAS.length).toBeGreaterThan(10);
    expect(SCHEMAS.map(([name]) => name).sort()).toEqual(Object.keys(SAMPLES).sort());
    for (const [name, sample] of Object.entries(SAMPLES)) expect(sample.direction, name).toBe(name.endsWith('Request') ? 'request' : 'reply');
  });
});

describe.each(FORMATS)('%s bodies', (format) => {
  describe.each(Object.keys(SAMPLES))('%s', (name) => {
    const schema = (messages as unknown as Record<string, Schema<unknown>>)[name]!;
    const { direction, values } = SAMPLES[name]!;
    const parse = direction === 'request' ? parseRequest : parseReply;

    it.each(values.map((v, i) => [i, v] as const))('sample %i round-trips: decoded, it passes the schema and equals the original', (_i, value) => {
      const wire = encodeBody(value, format);
      expect(formatOfContentType(`${CONTENT_TYPE[format]}; charset=utf-8`)).toBe(format);
      const decoded = decodeBody(wire, format);
      // Byte fields travel as bin in MessagePack and as base64 text in JSON.
      for (const p of byteFields(value)) {
        const raw = at(decoded, p);
        if (format === 'json') expect(raw, p).toBe(Buffer.from(at(value, p) as Uint8Array).toString('base64'));
        else expect(raw, p).toBeInstanceOf(Uint8Array);
      }
      const checked = parse(schema, decoded, format);
      expect(plain(checked)).toStrictEqual(plain(value));
      for (const p of byteFields(value)) expect(at(checked, p), p).toBeInstanceOf(Uint8Array);
      // And again from what came out: nothing was lost or added on the way.
      expect(plain(parse(schema, decodeBody(encodeBody(checked, format), format), format))).toStrictEqual(plain(value));
    });
  });

  it('error bodies: every code and message comes back as the same PcdError', () => {
    for (const code of Object.values(ErrorCode)) {
      const sent = new PcdError(code, `what went wrong with ${code}: 'numbers[3]' (été, 電話)`);
      const back = errorFromBody(sent.status, decodeBody(encodeBody(sent.toBody(), format), format));
      expect(back).toBeInstanceOf(PcdError);
      expect({ code: back.code, message: back.message, status: back.status }).toEqual({ code, message: sent.message, status: sent.status });
    }
    // A body that is no error body is a malformed reply, not a guess.
    expect(errorFromBody(500, decodeBody(encodeBody({ error: { code: 'no_such_code', message: 'x' } }, format), format)).code).toBe(ErrorCode.MalformedReply);
  });

  it('a malformed body is refused with malformed_body; a well-formed one that fails its schema with a field-naming code', () => {
    const malformed = format === 'json' ? utf8ToBytes('{"numbers": [') : Uint8Array.from([0xc1, 0xff, 0x00]);
    for (const body of [malformed, new Uint8Array(0)]) {
      let err: unknown;
      try {
        decodeBody(body, format);
      } catch (e) {
        err = e;
      }
      expect(isPcdError(err, ErrorCode.MalformedBody), String(err)).toBe(true);
      expect((err as PcdError).status).toBe(400);
    }
    const wrong = decodeBody(encodeBody({ numbers: n1 }, format), format);
    expect(() => parseRequest(messages.PlainLookupRequest, wrong, format)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidField, message: expect.stringMatching(/^numbers: expected an array/) }));
    expect(() => parseReply(messages.PlainLookupReply, wrong, format)).toThrow(expect.objectContaining({ code: ErrorCode.MalformedReply }));
  });
});
