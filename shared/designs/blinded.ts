/**
 * The blinded design's protocol: RFC 9497 OPRF/VOPRF over ristretto255
 * (shared/voprf.ts, shared/oprf.ts), bucket ids and truncated tags
 * (shared/buckets.ts), the endpoints (config, evaluate, buckets, key
 * rotation) and the logs: nothing derived from a number.
 * Server side: server/designs/blinded.ts; client: client/designs/blinded.ts;
 * audit: audit/designs/blinded.ts.
 */
import { MAX_TAG_BYTES } from '../buckets.ts';
import { capabilityName } from '../capabilities.ts';
import { ErrorCode } from '../errors.ts';
import { LIMITS } from '../limits.ts';
import { checkLogTable, TS_COLUMN, type LogTable } from '../logs.ts';
import { ELEMENT_BYTES, MODES, PROOF_BYTES, SUITE } from '../oprf.ts';
import { pathTemplate } from '../paths.ts';
import { array, bytes, integer, literal, object, optional, type Infer } from '../schema.ts';

export const BLINDED_PATHS = {
  blindedConfig: '/v1/blinded/config',
  blindedEvaluate: '/v1/blinded/evaluate',
  blindedBucket: pathTemplate('/v1/blinded/buckets/:epoch/:bucket', 'epoch', 'bucket'),
  adminRotate: '/v1/admin/rotate-key',
} as const;

const epochId = integer({ min: 1, max: 2 ** 31 - 1 });

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
  // A wrong-size element is invalid_element, as a bad encoding is (one code per failure, shared/voprf.ts elementProblem).
  elements: array(bytes({ length: ELEMENT_BYTES, requestCode: ErrorCode.InvalidElement }), { max: LIMITS.maxBatch, min: 1 }),
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

/** The bucket log's aggregation window: ts is the start of a minute. */
export const BUCKET_LOG_WINDOW_MS = 60_000;

export const BLINDED_EVAL_LOG = checkLogTable({
  name: 'blinded_eval_log',
  kind: 'rows',
  description: 'one evaluate request: when, who asked (account, IP), the epoch and how many blinded elements',
  columns: [
    TS_COLUMN,
    { name: 'account_id', type: 'INTEGER', holds: 'account' },
    { name: 'ip', type: 'TEXT', holds: 'ip' },
    { name: 'epoch', type: 'INTEGER', holds: 'epoch' },
    { name: 'count', type: 'INTEGER', holds: 'count' },
  ],
  indexes: [['ts']],
}) satisfies LogTable;

/** Revalidations answered 304 are not counted: they reveal nothing the first fetch did not. */
export const BLINDED_BUCKET_LOG = checkLogTable({
  name: 'blinded_bucket_log',
  kind: 'counts',
  description: 'bucket fetches per minute (ts is its start), IP, epoch and bucket id, with how many',
  columns: [
    TS_COLUMN,
    { name: 'ip', type: 'TEXT', holds: 'ip' },
    { name: 'epoch', type: 'INTEGER', holds: 'epoch' },
    { name: 'bucket', type: 'INTEGER', holds: 'bucket' },
    { name: 'count', type: 'INTEGER', holds: 'count' },
  ],
  key: ['ip', 'epoch', 'bucket'],
  windowMs: BUCKET_LOG_WINDOW_MS,
}) satisfies LogTable;

/** The design's protocol facts, listed in shared/designs/index.ts. */
export const BLINDED = { name: 'blinded', paths: BLINDED_PATHS, logs: [BLINDED_EVAL_LOG, BLINDED_BUCKET_LOG] } as const;
