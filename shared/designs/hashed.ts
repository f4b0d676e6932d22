/**
 * The hashed design's protocol: its one rule, hash = SHA-256(utf8(E.164))
 * (docs/protocol.md), one endpoint, and a log like plain's with the hash in
 * place of the number. The rule hides nothing from the server: the space of
 * valid numbers is small enough to enumerate (shared/reversal.ts, `pcd audit
 * --design hashed`), which is why it is here, as the commonly proposed
 * half-measure to measure against.
 * Server side: server/designs/hashed.ts; client: client/designs/hashed.ts;
 * audit: audit/designs/hashed.ts (which reverses the hashes).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { capabilityName } from '../capabilities.ts';
import type { E164 } from '../e164.ts';
import { LIMITS } from '../limits.ts';
import { checkLogTable, TS_COLUMN, type LogTable } from '../logs.ts';
import { array, bytes, object, type Infer } from '../schema.ts';

export type HashBytes = Uint8Array; // 32 bytes
export const HASH_BYTES = 32;

/** The design's rule: SHA-256(utf8(number)), what the client sends and the log keeps. */
export function hashNumber(number: E164): HashBytes {
  return sha256(utf8ToBytes(number));
}

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
