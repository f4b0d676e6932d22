/**
 * The web page's own messages (web/server.ts serves them, web/page/ calls
 * them): the one-time login, the server's clock, and the trace of what a
 * lookup left in a design's query logs. Not part of the lookup protocol:
 * served only with the page (not with `--no-ui`), JSON or MessagePack like
 * every other endpoint. docs/protocol.md, "The web page and its log view".
 */
import { DESIGNS } from './designs/index.ts';
import { LIMITS } from './limits.ts';
import { BLINDED_AUTHS } from './tokens.ts';
import { array, cell, integer, literal, number, object, optional, record, string, type Infer } from './schema.ts';

export const PAGE_PATHS = {
  /** POST { code } -> { viewToken, requester } (anyone holding a one-time code). */
  pageLogin: '/v1/ui/login',
  /** GET -> { now } (view token). */
  pageClock: '/v1/ui/clock',
  /** GET ?design&since[&plan] -> TraceReply (view token). */
  pageTrace: '/v1/ui/trace',
  /** POST -> 201 { path: '/#login=CODE' } (admin): a new one-time link, `pcd page-link`. */
  adminPageLink: '/v1/admin/page-link',
} as const;

const TOKEN = /^[A-Za-z0-9_-]{16,64}$/;
const MAX_MS = Number.MAX_SAFE_INTEGER;

// POST /v1/ui/login { code } -> { viewToken, requester: { email, accountId, token } }
export const PageLoginRequest = object({ code: string({ max: 64, min: 16, pattern: TOKEN, what: "the login code from the link's #login= fragment" }) });
export type PageLoginRequest = Infer<typeof PageLoginRequest>;
export const PageLoginReply = object({
  viewToken: string({ max: 64, min: 16, pattern: TOKEN, what: 'a view token' }),
  /** The account the page looks up as, with its token. */
  requester: object({ email: string({ max: LIMITS.maxEmailLength }), accountId: integer({ min: 1, max: MAX_MS }), token: string({ max: 128 }) }),
});
export type PageLoginReply = Infer<typeof PageLoginReply>;

// GET /v1/ui/clock -> { now }
export const PageClockReply = object({ now: integer({ min: 0, max: MAX_MS }) });
export type PageClockReply = Infer<typeof PageClockReply>;

/** Rows per table in one trace reply. */
export const MAX_TRACE_ROWS = 100;
/** Largest numbering-plan range a trace enumerates to reverse hashes: 10^6 numbers (at most 6 X). */
export const MAX_TRACE_PLAN = 1e6;

/**
 * How the trace picked a table's rows: by the page's account (the table has
 * an account column), by the IP the trace request came from (it has none,
 * only an IP: nothing in its rows names an account), or not at all.
 */
export const TRACE_SCOPES = ['account', 'ip', 'none'] as const;
export type TraceScope = (typeof TRACE_SCOPES)[number];

// GET /v1/ui/trace?design&since[&plan] -> { design, since, now, requester, auth?, tables, reversal? }
export const TraceTable = object({
  name: string({ max: 64 }),
  kind: literal('rows', 'counts'),
  /** A counts table's window (ts is its start): a minute, a day. */
  windowMs: optional(integer({ min: 1, max: MAX_MS })),
  scope: literal(...TRACE_SCOPES),
  description: string({ max: 512 }),
  columns: array(object({ name: string({ max: 64 }), holds: string({ max: 32 }) }), { max: 32 }),
  /** Newest first; BLOBs as lowercase hex, `ts` in Unix ms. */
  rows: array(array(cell({ max: 512 }), { max: 32 }), { max: MAX_TRACE_ROWS }),
});
export type TraceTable = Infer<typeof TraceTable>;
export const TraceReversal = object({
  plan: string({ max: 64 }),
  candidates: integer({ min: 0, max: MAX_TRACE_PLAN }),
  /** Enumeration time, ms. */
  ms: number({ min: 0, max: 3_600_000 }),
  ratePerSecond: integer({ min: 0, max: MAX_MS }),
  /** The logged hashes the enumeration turned back into numbers: hex -> E.164. */
  numbers: record(string({ max: LIMITS.maxNumberLength }), { max: MAX_TRACE_ROWS, key: /^[0-9a-f]{64}$/ }),
});
export type TraceReversal = Infer<typeof TraceReversal>;
export const TraceReply = object({
  design: literal(...DESIGNS),
  since: integer({ min: 0, max: MAX_MS }),
  now: integer({ min: 0, max: MAX_MS }),
  requester: object({ accountId: integer({ min: 1, max: MAX_MS }), ip: string({ max: 64 }) }),
  /** Blinded: how evaluate knows its caller on this server, a Privacy Pass token or the account (shared/tokens.ts). */
  auth: optional(literal(...BLINDED_AUTHS)),
  /** The tables of the design this server writes (a log it does not keep under its options is left out). */
  tables: array(TraceTable, { max: 16 }),
  reversal: optional(TraceReversal),
});
export type TraceReply = Infer<typeof TraceReply>;

// POST /v1/admin/page-link -> 201 { path }
export const PageLinkReply = object({ path: string({ max: 128, pattern: /^\/#login=[A-Za-z0-9_-]{16,64}$/, what: 'a login link path' }) });
export type PageLinkReply = Infer<typeof PageLinkReply>;
