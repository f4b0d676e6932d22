/**
 * The HTTP API of DESIGN.md §3: every endpoint's path, request and reply,
 * as types and as the strict schemas that check them. Server routes, the
 * client and the tests all take them from here.
 *
 * Byte fields are `bin` in MessagePack and base64 in JSON (codec.ts).
 */
import { LIMITS } from './limits.ts';
import { ELEMENT_BYTES, MODES, PROOF_BYTES, SUITE } from './oprf.ts';
import { HASH_BYTES } from './hashed.ts';
import { MAX_TAG_BYTES } from './buckets.ts';
import { array, boolean, bytes, integer, literal, object, optional, string, type Infer } from './schema.ts';

export const DESIGNS = ['plain', 'hashed', 'blinded'] as const;
export type DesignName = (typeof DESIGNS)[number];

export const PATHS = {
  health: '/v1/health',
  accounts: '/v1/accounts',
  account: (id: string | number) => `/v1/accounts/${encodeURIComponent(String(id))}`,
  plainLookup: '/v1/plain/lookup',
  hashedLookup: '/v1/hashed/lookup',
  blindedConfig: '/v1/blinded/config',
  blindedEvaluate: '/v1/blinded/evaluate',
  blindedBucket: (epoch: number, bucket: number) => `/v1/blinded/buckets/${epoch}/${bucket}`,
  adminRotate: '/v1/admin/rotate-key',
} as const;

const capabilityName = string({ max: 32, min: 1, pattern: /^[a-z][a-z0-9_-]*$/, what: 'a capability name' });
const epochId = integer({ min: 1, max: 2 ** 31 - 1 });

// GET /v1/health -> { ok, designs, degraded? }
// `degraded` (and ok false) while a query log cannot be written (full disk, I/O error): every log's state.
export const LogHealthInfo = object({
  table: string({ max: 64 }),
  /** Rows waiting in memory. */
  pending: integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  /** The last write failed; rows are kept and retried. */
  failing: boolean(),
  /** SQLite code of the last failed write, e.g. SQLITE_FULL. */
  lastError: optional(string({ max: 64 })),
  /** Rows (events, for an aggregated log) dropped since start for the in-memory bound. */
  dropped: integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
});
export type LogHealthInfo = Infer<typeof LogHealthInfo>;
export const HealthReply = object({
  ok: boolean(),
  designs: array(literal(...DESIGNS), { max: DESIGNS.length }),
  degraded: optional(object({ logs: array(LogHealthInfo, { max: 64 }) })),
});
export type HealthReply = Infer<typeof HealthReply>;

// POST /v1/accounts { email, numbers: [str], capabilities: [str] } -> { accountId, token }
export const CreateAccountRequest = object({
  // No whitespace, control, format (bidi) or lone surrogate characters: the email is shown in logs and audit reports.
  email: string({ max: LIMITS.maxEmailLength, min: 3, pattern: /^[^\s@\p{Cc}\p{Cf}\p{Cs}]+@[^\s@\p{Cc}\p{Cf}\p{Cs}]+$/u, what: 'an email address' }),
  numbers: array(string({ max: LIMITS.maxNumberLength, what: 'a phone number' }), { max: LIMITS.maxNumbersPerAccount, min: 1 }),
  capabilities: array(capabilityName, { max: LIMITS.maxCapabilities }),
  /** Optional: the region for numbers written without a country code. */
  region: optional(string({ max: 2, min: 2, pattern: /^[A-Za-z]{2}$/, what: 'an ISO 3166 region code' })),
});
export type CreateAccountRequest = Infer<typeof CreateAccountRequest>;
export const CreateAccountReply = object({ accountId: integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), token: string({ max: 128 }) });
export type CreateAccountReply = Infer<typeof CreateAccountReply>;

// DELETE /v1/accounts/{accountId} -> { ok }
export const OkReply = object({ ok: boolean() });
export type OkReply = Infer<typeof OkReply>;

// POST /v1/plain/lookup { numbers: [str] } -> { results: [{ number, capabilities }] }
export const PlainLookupRequest = object({
  numbers: array(string({ max: LIMITS.maxNumberLength, what: 'a phone number' }), { max: LIMITS.maxBatch, min: 1 }),
});
export type PlainLookupRequest = Infer<typeof PlainLookupRequest>;
export const PlainLookupReply = object({
  results: array(object({ number: string({ max: LIMITS.maxNumberLength }), capabilities: array(capabilityName, { max: LIMITS.maxCapabilities }) }), { max: LIMITS.maxBatch }),
});
export type PlainLookupReply = Infer<typeof PlainLookupReply>;

// POST /v1/hashed/lookup { hashes: [bin(32)] } -> { results: [{ capabilities }] }
export const HashedLookupRequest = object({ hashes: array(bytes({ length: HASH_BYTES }), { max: LIMITS.maxBatch, min: 1 }) });
export type HashedLookupRequest = Infer<typeof HashedLookupRequest>;
export const HashedLookupReply = object({
  results: array(object({ capabilities: array(capabilityName, { max: LIMITS.maxCapabilities }) }), { max: LIMITS.maxBatch }),
});
export type HashedLookupReply = Infer<typeof HashedLookupReply>;

// GET /v1/blinded/config -> { suite, mode, capabilities, tagBytes, bucketBits, current, epochs: [{ epoch, publicKey }] }
// Each epoch also names its own mode, bucketBits and tagBytes (epochs made
// before a parameter change keep theirs); the top-level ones are the current epoch's.
export const EpochInfo = object({
  epoch: epochId,
  publicKey: bytes({ length: ELEMENT_BYTES }),
  mode: optional(literal(...MODES)),
  bucketBits: optional(integer({ min: 0, max: LIMITS.maxBucketBits })),
  tagBytes: optional(integer({ min: 1, max: MAX_TAG_BYTES })),
  /** Unix ms after which this epoch is no longer served (set once a newer epoch exists). */
  retiresAt: optional(integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
});
export type EpochInfo = Infer<typeof EpochInfo>;
export const BlindedConfigReply = object({
  suite: literal(SUITE),
  mode: literal(...MODES),
  capabilities: array(capabilityName, { max: 8 }),
  tagBytes: integer({ min: 1, max: MAX_TAG_BYTES }),
  bucketBits: integer({ min: 0, max: LIMITS.maxBucketBits }),
  current: epochId,
  epochs: array(EpochInfo, { max: 64, min: 1 }),
});
export type BlindedConfigReply = Infer<typeof BlindedConfigReply>;

// POST /v1/blinded/evaluate { epoch, elements: [bin(32)] } -> { epoch, evaluated: [bin(32)], proof?: bin(64) }
export const EvaluateRequest = object({
  epoch: epochId,
  elements: array(bytes({ length: ELEMENT_BYTES }), { max: LIMITS.maxBatch, min: 1 }),
});
export type EvaluateRequest = Infer<typeof EvaluateRequest>;
export const EvaluateReply = object({
  epoch: epochId,
  evaluated: array(bytes({ length: ELEMENT_BYTES }), { max: LIMITS.maxBatch }),
  proof: optional(bytes({ length: PROOF_BYTES })),
});
export type EvaluateReply = Infer<typeof EvaluateReply>;

// GET /v1/blinded/buckets/{epoch}/{bucket} -> { epoch, bucket, tags: bin(n * tagBytes), capabilities: bin(n) }
export const BucketReply = object({
  epoch: epochId,
  bucket: integer({ min: 0, max: 2 ** LIMITS.maxBucketBits - 1 }),
  tags: bytes({ max: LIMITS.maxReplyBytes }),
  capabilities: bytes({ max: LIMITS.maxReplyBytes }),
});
export type BucketReply = Infer<typeof BucketReply>;

// POST /v1/admin/rotate-key { bucketBits?, mode? } -> { epoch, previous, retiresAt }
export const RotateKeyRequest = object({
  bucketBits: optional(integer({ min: 0, max: LIMITS.maxBucketBits })),
  mode: optional(literal(...MODES)),
});
export type RotateKeyRequest = Infer<typeof RotateKeyRequest>;
export const RotateKeyReply = object({
  epoch: epochId,
  previous: optional(epochId),
  retiresAt: optional(integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
});
export type RotateKeyReply = Infer<typeof RotateKeyReply>;

/** Parses a decimal path segment such as an epoch or bucket id; undefined when it is not one. */
export function parseIdSegment(segment: string, max: number): number | undefined {
  if (!/^(0|[1-9]\d{0,15})$/.test(segment)) return undefined;
  const n = Number(segment);
  return n <= max ? n : undefined;
}
