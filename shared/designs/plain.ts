/**
 * The plain design's protocol: the number in the clear, one endpoint, and
 * the log the report describes (every lookup with the number, the
 * requester's account, email and IP, and the answer).
 * Server side: server/designs/plain.ts; client: client/designs/plain.ts;
 * audit: audit/designs/plain.ts.
 */
import { capabilityName } from '../capabilities.ts';
import { LIMITS } from '../limits.ts';
import { checkLogTable, TS_COLUMN, type LogTable } from '../logs.ts';
import { array, object, string, type Infer } from '../schema.ts';

export const PLAIN_PATHS = {
  plainLookup: '/v1/plain/lookup',
} as const;

// POST /v1/plain/lookup { numbers: [str] } -> { results: [{ number, capabilities }] }
export const PlainLookupRequest = object({
  numbers: array(string({ max: LIMITS.maxNumberLength, what: 'a phone number' }), { max: LIMITS.maxBatch, min: 1 }),
});
export type PlainLookupRequest = Infer<typeof PlainLookupRequest>;
export const PlainLookupReply = object({
  results: array(object({ number: string({ max: LIMITS.maxNumberLength }), capabilities: array(capabilityName, { max: LIMITS.maxCapabilities }) }), { max: LIMITS.maxBatch }),
});
export type PlainLookupReply = Infer<typeof PlainLookupReply>;

export const PLAIN_LOG = checkLogTable({
  name: 'plain_log',
  kind: 'rows',
  description: 'one looked-up number: when, who asked (account, email, IP), the number and the answer',
  columns: [
    TS_COLUMN,
    { name: 'account_id', type: 'INTEGER', holds: 'account' },
    { name: 'email', type: 'TEXT', holds: 'email' },
    { name: 'ip', type: 'TEXT', holds: 'ip' },
    { name: 'number', type: 'TEXT', holds: 'number' },
    { name: 'answer', type: 'INTEGER', holds: 'answer' },
  ],
  indexes: [['number', 'ts'], ['ts']],
}) satisfies LogTable;

/** The design's protocol facts, listed in shared/designs/index.ts. */
export const PLAIN = { name: 'plain', paths: PLAIN_PATHS, logs: [PLAIN_LOG] } as const;
