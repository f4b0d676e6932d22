/**
 * The blinded design's protocol: RFC 9497 OPRF/VOPRF over ristretto255
 * (shared/voprf.ts, shared/noble.ts), bucket ids and truncated tags
 * (shared/buckets.ts), the Merkle root over each epoch's buckets and a
 * bucket's path to it (shared/merkle.ts), the endpoints (config, evaluate,
 * buckets, key rotation) and the logs: nothing derived from a number.
 * Server side: server/designs/blinded.ts; client: client/designs/blinded.ts;
 * audit: audit/designs/blinded.ts.
 */
import { MAX_TAG_BYTES } from '../buckets.ts';
import { capabilityName } from '../capabilities.ts';
import { ErrorCode } from '../errors.ts';
import { LIMITS } from '../limits.ts';
import { checkLogTable, TS_COLUMN, type LogTable } from '../logs.ts';
import { DIGEST_BYTES } from '../merkle.ts';
import { ELEMENT_BYTES, MODES, PROOF_BYTES, SUITE } from '../suite.ts';
import { pathTemplate } from '../paths.ts';
import { BLINDED_AUTHS, IssuerName, TOKEN_PATHS, TokenKeyList } from '../tokens.ts';
import { array, bytes, integer, literal, object, optional, string, type Infer } from '../schema.ts';

export const BLINDED_PATHS = {
  blindedConfig: '/v1/blinded/config',
  blindedEvaluate: '/v1/blinded/evaluate',
  blindedBucket: pathTemplate('/v1/blinded/buckets/:epoch/:bucket', 'epoch', 'bucket'),
  adminRotate: '/v1/admin/rotate-key',
  ...TOKEN_PATHS,
} as const;

/** A static bucket host's base URL: http or https, no query, no fragment, no trailing slash. */
export const BUCKET_BASE_URL = /^https?:\/\/[^\s?#]*[^\s?#/]$/;

/** A bucket's file below `{bucketBaseUrl}/{epoch}/` (server/blinded/publish.ts writes it, the client fetches it). */
export function staticBucketFile(bucket: number): string {
  return `${bucket}.msgpack`;
}

/** The URL of bucket `bucket` of `epoch` on the static host at `base`. */
export function staticBucketUrl(base: string, epoch: number, bucket: number): string {
  return `${base}/${epoch}/${staticBucketFile(bucket)}`;
}

const epochId = integer({ min: 1, max: 2 ** 31 - 1 });

/** A directory version (server/store.ts): it increases with every registered or removed number. */
const directoryVersion = integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

// GET /v1/blinded/config -> { suite, mode, capabilities, tagBytes, bucketBits, current, epochs: [{ epoch, publicKey, root: bin(32), version }] }
// Each epoch also names its own mode, bucketBits and tagBytes (epochs made
// before a parameter change keep theirs); the top-level ones are the current epoch's.
// `root` is the Merkle root over the epoch's buckets at directory version `version` (shared/merkle.ts).
export const EpochInfo = object({
  epoch: epochId,
  publicKey: bytes({ length: ELEMENT_BYTES }),
  root: bytes({ length: DIGEST_BYTES }),
  version: directoryVersion,
  mode: optional(literal(...MODES)),
  bucketBits: optional(integer({ min: 0, max: LIMITS.maxBucketBits })),
  tagBytes: optional(integer({ min: 1, max: MAX_TAG_BYTES })),
  /** Unix ms after which this epoch is no longer served (set once a newer epoch exists). */
  retiresAt: optional(integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
  /** Privacy Pass token keys of this epoch, one per size class (shared/tokens.ts); absent when evaluate takes accounts. */
  tokenKeys: optional(TokenKeyList),
});
export type EpochInfo = Infer<typeof EpochInfo>;
export const BlindedConfigReply = object({
  suite: literal(SUITE),
  mode: literal(...MODES),
  capabilities: array(capabilityName, { max: LIMITS.maxCapabilities }),
  tagBytes: integer({ min: 1, max: MAX_TAG_BYTES }),
  bucketBits: integer({ min: 0, max: LIMITS.maxBucketBits }),
  current: epochId,
  epochs: array(EpochInfo, { max: 64, min: 1 }),
  /** Who may call evaluate: 'token' (a Privacy Pass token, RFC 9577) or 'account' (the requester's bearer token); absent: account. */
  auth: optional(literal(...BLINDED_AUTHS)),
  /** The issuer name of the token challenge (shared/tokens.ts tokenChallenge), with auth 'token'. */
  issuer: optional(IssuerName),
  /**
   * Where the buckets are also published as static files (`pcd publish-buckets`,
   * `pcd serve --bucket-base-url`): the client fetches `{bucketBaseUrl}/{epoch}/{bucket}.msgpack`
   * there, without credentials, and checks each against the root this config shows.
   */
  bucketBaseUrl: optional(string({ max: 2048, pattern: BUCKET_BASE_URL, what: 'an http(s) URL without a trailing slash' })),
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

// GET /v1/blinded/buckets/{epoch}/{bucket} -> { epoch, bucket, tags: bin(n * tagBytes), capabilities: bin(n), version, path: [bin(32)] }
// `path` is the bucket's audit path at directory `version`, bucketBits digests, leaf to root (shared/merkle.ts).
export const BucketReply = object({
  epoch: epochId,
  bucket: integer({ min: 0, max: 2 ** LIMITS.maxBucketBits - 1 }),
  tags: bytes({ max: LIMITS.maxReplyBytes }),
  capabilities: bytes({ max: LIMITS.maxReplyBytes }),
  version: directoryVersion,
  path: array(bytes({ length: DIGEST_BYTES }), { max: LIMITS.maxBucketBits }),
  /**
   * The epoch's root at `version`, read with the path in one step: a client
   * that has not seen this version's root (the directory moved on since its
   * config) pins it from here, as it would from the config, so a registration
   * between its config and its bucket fetch costs no second round trip.
   */
  root: bytes({ length: DIGEST_BYTES }),
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

/** The anonymous evaluation log's window: ts is the start of a minute, as for bucket fetches. */
export const TOKEN_EVAL_LOG_WINDOW_MS = 60_000;

/**
 * Evaluate requests that spent a Privacy Pass token (auth 'token'): no
 * account, a size class instead of a count, counted per minute. Through an
 * OHTTP relay the IP is the relay's (server/ohttp.ts).
 */
export const BLINDED_TOKEN_EVAL_LOG = checkLogTable({
  name: 'blinded_token_eval_log',
  kind: 'counts',
  description: 'evaluate requests paid with a token, per minute (ts is its start), IP (the relay\'s through one), epoch and size class, with how many: no account, no element count',
  columns: [
    TS_COLUMN,
    { name: 'ip', type: 'TEXT', holds: 'ip' },
    { name: 'epoch', type: 'INTEGER', holds: 'epoch' },
    { name: 'size_class', type: 'INTEGER', holds: 'size-class' },
    { name: 'count', type: 'INTEGER', holds: 'count' },
  ],
  key: ['ip', 'epoch', 'size_class'],
  windowMs: TOKEN_EVAL_LOG_WINDOW_MS,
}) satisfies LogTable;

/** The issuance log's window: a day. */
export const TOKEN_ISSUANCE_WINDOW_MS = 86_400_000;

/** What the issuer keeps (docs/protocol.md, "Anonymous requesters"): per account and day, the elements' worth of tokens issued; no class, no time of day. */
export const TOKEN_ISSUANCE_LOG = checkLogTable({
  name: 'token_issuance_log',
  kind: 'counts',
  description: 'Privacy Pass tokens issued per day (ts is its start) and account, counted in elements (the sum of their size classes)',
  columns: [TS_COLUMN, { name: 'account_id', type: 'INTEGER', holds: 'account' }, { name: 'count', type: 'INTEGER', holds: 'count' }],
  key: ['account_id'],
  windowMs: TOKEN_ISSUANCE_WINDOW_MS,
}) satisfies LogTable;

/**
 * Spent tokens (RFC 9577 §2.3 double-spend prevention): a hash of each
 * spent token's nonce and its token key id, no time. Not a log: rows go
 * when their token key retires with its epoch (server/tokens/spent.ts).
 */
export const SPENT_TOKENS_TABLE = 'spent_tokens';

/** The design's protocol facts, listed in shared/designs/index.ts. */
export const BLINDED = {
  name: 'blinded',
  paths: BLINDED_PATHS,
  logs: [BLINDED_EVAL_LOG, BLINDED_BUCKET_LOG, BLINDED_TOKEN_EVAL_LOG, TOKEN_ISSUANCE_LOG],
} as const;
