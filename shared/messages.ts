/**
 * The HTTP API (docs/protocol.md): every endpoint's path, request and reply,
 * as types and as the strict schemas that check them. Server routes, the
 * client and the tests all take them from here. The common endpoints
 * (health, accounts) are defined here; each design's in
 * shared/designs/<name>.ts, re-exported from here.
 *
 * Byte fields are `bin` in MessagePack and base64 in JSON (codec.ts).
 */
import { capabilityName } from './capabilities.ts';
import { DESIGN_PATHS, DESIGNS } from './designs/index.ts';
import { LIMITS } from './limits.ts';
import { PAGE_PATHS } from './page.ts';
import { pathTemplate } from './paths.ts';
import { array, boolean, integer, literal, object, optional, string, type Infer } from './schema.ts';

export { DEFAULT_DESIGN, DESIGNS, type DesignName } from './designs/index.ts';
// Each design's messages, for importers that want the whole API from one module.
export * from './designs/plain.ts';
export * from './designs/hashed.ts';
export * from './designs/blinded.ts';
// The web page's messages (served with the page only).
export * from './page.ts';

/** Every path of the API: the common ones here, each design's from shared/designs/<name>.ts. */
export const PATHS = {
  health: '/v1/health',
  accounts: '/v1/accounts',
  account: pathTemplate('/v1/accounts/:accountId', 'accountId'),
  ...PAGE_PATHS,
  ...DESIGN_PATHS,
} as const;

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

/** Parses a decimal path segment such as an epoch or bucket id; undefined when it is not one. */
export function parseIdSegment(segment: string, max: number): number | undefined {
  if (!/^(0|[1-9]\d{0,15})$/.test(segment)) return undefined;
  const n = Number(segment);
  return n <= max ? n : undefined;
}
