/**
 * The hashed design's protocol: SHA-256 of the number (shared/hashed.ts),
 * one endpoint, and a log like plain's with the hash in place of the number.
 * Server side: server/designs/hashed.ts; client: client/designs/hashed.ts;
 * audit: audit/designs/hashed.ts (which reverses the hashes).
 */
import { capabilityName } from '../capabilities.ts';
import { HASH_BYTES } from '../hashed.ts';
import { LIMITS } from '../limits.ts';
import { checkLogTable, TS_COLUMN, type LogTable } from '../logs.ts';
import { array, bytes, object, type Infer } from '../schema.ts';

export const HASHED_PATHS = {
  hashedLookup: '/v1/hashed/lookup',
} as const;

// POST /v1/hashed/lookup { hashes: [bin(32)] } -> { results: [{ capabilities }] }
export const HashedLookupRequest = object({ hashes: array(bytes({ length: HASH_BYTES }), { max: LIMITS.maxBatch, min: 1 }) });
export type HashedLookupRequest = Infer<typeof HashedLookupRequest>;
export const HashedLookupReply = object({
  results: array(object({ capabilities: array(capabilityName, { max: LIMITS.maxCapabilities }) }), { max: LIMITS.maxBatch }),
});
export type HashedLookupReply = Infer<typeof HashedLookupReply>;

export const HASHED_LOG = checkLogTable({
  name: 'hashed_log',
  kind: 'rows',
  description: 'one looked-up hash: when, who asked (account, email, IP), SHA-256 of the number and the answer',
  columns: [
    TS_COLUMN,
    { name: 'account_id', type: 'INTEGER', holds: 'account' },
    { name: 'email', type: 'TEXT', holds: 'email' },
    { name: 'ip', type: 'TEXT', holds: 'ip' },
    { name: 'hash', type: 'BLOB', holds: 'number-hash' },
    { name: 'answer', type: 'INTEGER', holds: 'answer' },
  ],
  indexes: [['hash', 'ts'], ['ts']],
}) satisfies LogTable;

/** The design's protocol facts, listed in shared/designs/index.ts. */
export const HASHED = { name: 'hashed', paths: HASHED_PATHS, logs: [HASHED_LOG] } as const;
