/**
 * The web page's server side: the page's files at `/`, the one-time login
 * links, and the operator's view of what a lookup left in the query logs.
 *
 *   GET  /                     the page (dist/web/index.html), its files at /<name>
 *   POST /v1/ui/login          { code } -> { viewToken, requester }   (a Route: the API's pipeline)
 *   GET  /v1/ui/clock          (view token) -> { now }
 *   GET  /v1/ui/trace          (view token) ?design&since[&plan] -> the rows the page's lookups left (blinded: and the server's auth)
 *   POST /v1/admin/page-link   (admin) -> 201 { path: '/#login=CODE' }, a new one-time link (`pcd page-link`)
 *
 * Who sees the logs. Log rows are an operator's view, so they need more
 * than the page: `pcd start` / `pcd serve` print a link carrying a one-time
 * login code in its fragment (`/#login=CODE`, which a browser never sends in
 * a request, so it is in no access log), as notebook servers do. The page
 * trades the code once for a view token (random, in memory, gone when the
 * server stops or {@link VIEW_TOKEN_TTL_MS} after the login) and, for its lookups, the token of the page's requester
 * account. A page opened without the link shows answers only: its
 * visitor pastes an account token and sees no log. The admin token itself
 * never reaches the browser, and a view token can read the log view only.
 *
 * The trace is scoped to the page's own requester (the account column) and,
 * for a table without one (the blinded design's bucket counts, and its
 * evaluations paid with a Privacy Pass token), to the IP the trace request
 * comes from; each table says which (`scope`). The batched logs are flushed
 * first, so what it shows is what the database holds, and only the tables
 * this server writes are listed (server/loghealth.ts: a server whose blinded
 * evaluate takes accounts keeps no token logs).
 *
 * What the IP scope means, said plainly because it is the point of the
 * anonymous variant: a row of `blinded_token_eval_log` holds a minute, an
 * IP, an epoch, a size class and a count, and nothing that names an
 * account. The trace finds it the only way an operator could: by the IP
 * and the time, which is also how the operator would tie it to the account
 * that fetched tokens (`token_issuance_log`, per account and day) from the
 * same IP. Other requesters at that IP in that minute are in the same rows;
 * through an OHTTP relay the IP is the relay's, and the page's own trace
 * would not find them either. `auth` says which variant the server runs. For the hashed design it also
 * reverses the logged hashes by enumerating a numbering-plan range the page
 * names (at most 10^6 numbers, about 1 s of CPU), timed: the audit's own
 * enumeration (shared/reversal.ts `reverseHashes`, a pure function; the
 * server process loads nothing of audit/), in a worker thread, at most two at once (web/reverse.ts), so traces never hold the
 * server's main thread.
 *
 * Files are served with a strict Content-Security-Policy (no inline script
 * or style; 'wasm-unsafe-eval' for libsodium's WASM) and no-referrer.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Statement } from 'better-sqlite3';
import express, { type Request, type Router } from 'express';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { DESIGN_PROTOCOLS } from '../shared/designs/index.ts';
import { columnNames, type LogTable } from '../shared/logs.ts';
import { route, type Requester } from '../shared/design.ts';
import {
  DESIGNS,
  MAX_TRACE_PLAN,
  MAX_TRACE_ROWS,
  PATHS,
  PageLoginRequest,
  type DesignName,
  type PageClockReply,
  type PageLinkReply,
  type PageLoginReply,
  type TraceReply,
  type TraceScope,
  type TraceTable,
} from '../shared/messages.ts';
import { DEFAULT_BLINDED_AUTH, type BlindedAuth } from '../shared/tokens.ts';
import { bearer, replyFormat, send } from '../server/app.ts';
import type { ServerContext, WebMount } from '../server/context.ts';
import { flushLogs, logHealth } from '../server/loghealth.ts';
import { parsePlan, planSize, type PlanPattern } from '../shared/numbering.ts';
import { reverseInWorker } from './reverse.ts';

/** Where `npm run build` writes the page (web/build.ts). */
export const DEFAULT_WEB_DIST = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'web');
/** The page's own requester account when the server is not told which to use. */
export const PAGE_ACCOUNT_EMAIL = 'web-page@pcd.local';
/** An unused login code expires after this long. */
export const LOGIN_CODE_TTL_MS = 24 * 3600_000;
const MAX_CODES = 64;
/** A view token reads the log view this long after its login (the server's clock), then a new link is needed. */
export const VIEW_TOKEN_TTL_MS = 8 * 3600_000;
/** View tokens held at once: a login past it forgets the oldest. */
const MAX_VIEWS = 64;

export const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export type { WebMount } from '../server/context.ts';

export interface WebUiOptions {
  /** The built page (default dist/web beside this checkout). */
  distDir?: string;
  /** The account whose token the page's lookups use; default the page's own account, created on first login. */
  pageAccount?: { accountId: number; email: string; token: string };
}

export interface WebUi {
  readonly mount: WebMount;
  /** Mints a one-time login code and returns the link that carries it. */
  loginUrl(baseUrl: string): string;
  /** From now on, logins hand out this account's token for the page's lookups (`pcd start`: its demo requester). */
  usePageAccount(account: { accountId: number; email: string; token: string }): void;
}

function randomSecret(): string {
  return crypto.randomBytes(24).toString('base64url');
}

function digest(s: string): string {
  return crypto.createHash('sha256').update(s).digest('hex');
}

/** Replies as the API's routes do (server/app.ts): in the format Accept asks for (the page asks JSON), never cached. */
function reply(req: Request, res: express.Response, body: PageClockReply | TraceReply): void {
  res.setHeader('Cache-Control', 'no-store');
  send(res, 200, body, replyFormat(req, 'json'));
}

function queryParam(req: Request, name: string): string | undefined {
  const v = (req.query as Record<string, unknown>)[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length > 64) throw new PcdError(ErrorCode.InvalidField, `${name} must be given once, as a short string`);
  return v;
}

/** A database value as a trace cell: BLOBs as hex. */
function toCell(v: unknown): string | number | null {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (typeof v === 'bigint') return Number(v);
  return v as string | number;
}

type PageAccount = { accountId: number; email: string; token: string };

/**
 * Who may see the log view: the one-time login codes, the view tokens they
 * are traded for, and the page's requester account the login hands out.
 */
class Logins {
  /** Login codes by their SHA-256 (a code is compared as a digest, never kept), with their expiry. */
  private readonly codes = new Map<string, number>();
  /** View tokens by their SHA-256, each with the requester its page looks up as and its expiry (ctx.now()). */
  private readonly views = new Map<string, { requester: Requester; expires: number }>();

  constructor(private page: PageAccount | undefined) {}

  usePageAccount(account: PageAccount): void {
    this.page = { accountId: account.accountId, email: account.email, token: account.token }; // only these reach the page
  }

  /** Mints a one-time login code: the link's fragment. */
  newLinkPath(): string {
    const now = Date.now();
    for (const [k, exp] of this.codes) if (exp < now || this.codes.size >= MAX_CODES) this.codes.delete(k);
    const code = randomSecret();
    this.codes.set(digest(code), now + LOGIN_CODE_TTL_MS);
    return `/#login=${code}`;
  }

  /** The page's requester: as configured, else its own account (created once; its token issued once per server run). */
  private pageRequester(ctx: ServerContext): PageAccount {
    if (this.page) return this.page;
    const existing = ctx.store.accountByEmail(PAGE_ACCOUNT_EMAIL);
    if (existing) this.page = { ...existing, token: ctx.store.issueToken(existing.accountId) };
    else {
      const made = ctx.store.createAccount({ email: PAGE_ACCOUNT_EMAIL, numbers: [], mask: 0 }, ctx.now());
      this.page = { accountId: made.accountId, email: PAGE_ACCOUNT_EMAIL, token: made.token };
    }
    return this.page;
  }

  /** Trades a login code, once, for a view token and the page's requester. */
  login(ctx: ServerContext, code: string): PageLoginReply {
    const key = digest(code);
    const expires = this.codes.get(key);
    this.codes.delete(key); // one use, whatever happens next
    if (expires === undefined || expires < Date.now()) {
      throw new PcdError(ErrorCode.Forbidden, 'this login link was used already or has expired: each link works once; run pcd page-link or restart the server for a new one');
    }
    const p = this.pageRequester(ctx);
    const viewToken = randomSecret();
    const now = ctx.now();
    for (const [k, v] of this.views) if (v.expires <= now) this.views.delete(k);
    while (this.views.size >= MAX_VIEWS) this.views.delete(this.views.keys().next().value!); // the oldest login first
    this.views.set(digest(viewToken), { requester: { accountId: p.accountId, email: p.email }, expires: now + VIEW_TOKEN_TTL_MS });
    // What the page uses (web/page/main.ts), nothing more: no server path, contact list or counts the caller's object may carry.
    return { viewToken, requester: { email: p.email, accountId: p.accountId, token: p.token } };
  }

  /** The view token a log-view request carries, checked. */
  viewer(ctx: ServerContext, req: Request): { requester: Requester } {
    const token = bearer(req);
    if (!token) throw new PcdError(ErrorCode.Unauthenticated, "the log view needs 'Authorization: Bearer <view token>' (from the one-time login link)");
    const key = digest(token);
    const v = this.views.get(key);
    if (!v) throw new PcdError(ErrorCode.Forbidden, 'this view token is unknown (the server was restarted?): open a new login link');
    if (v.expires <= ctx.now()) {
      this.views.delete(key);
      throw new PcdError(ErrorCode.Forbidden, `this view token has expired (it reads the log view for ${VIEW_TOKEN_TTL_MS / 3600_000} hours after its login): open a new login link (\`pcd page-link\`)`);
    }
    return v;
  }
}

/** The API's routes of the page: POST /v1/ui/login and POST /v1/admin/page-link, through the API's pipeline (content type, size, strict schema). */
function loginRoutes(ctx: ServerContext, logins: Logins) {
  return [
    route<PageLoginRequest, PageLoginReply>({
      method: 'POST',
      path: PATHS.pageLogin,
      auth: 'anyone',
      request: PageLoginRequest,
      handle: ({ body }) => ({ body: logins.login(ctx, body.code) }),
    }),
    route<undefined, PageLinkReply>({
      method: 'POST',
      path: PATHS.adminPageLink,
      auth: 'admin',
      handle: () => ({ status: 201, body: { path: logins.newLinkPath() } }),
    }),
  ];
}

/**
 * GET /v1/ui/trace: the rows the page's lookups left in the served design's declared tables.
 * One statement per table, prepared on first use: its rows since a time, newest first, scoped to
 * the page's requester by the table's account column, else to the asking IP by its IP column.
 */
function traceHandler(ctx: ServerContext, logins: Logins): (req: Request, res: express.Response) => Promise<void> {
  const { store } = ctx;
  const served = new Set<DesignName>(ctx.options.designs ?? DESIGNS);
  const queries = new Map<string, { stmt: Statement; scope: TraceScope }>();
  const traceQuery = (t: LogTable) => {
    let q = queries.get(t.name);
    if (!q) {
      const account = t.columns.find((c) => c.holds === 'account');
      const ipColumn = t.columns.find((c) => c.holds === 'ip');
      const by = account ?? ipColumn;
      const sql =
        `SELECT ${columnNames(t).join(', ')} FROM ${t.name} WHERE ts >= ?${by ? ` AND ${by.name} = ?` : ''} ` +
        `ORDER BY ${t.kind === 'rows' ? 'ts DESC, rowid DESC' : 'ts DESC'} LIMIT ${MAX_TRACE_ROWS}`;
      q = { stmt: store.db.prepare(sql).raw(), scope: account ? 'account' : ipColumn ? 'ip' : 'none' };
      queries.set(t.name, q);
    }
    return q;
  };

  return async (req, res) => {
    const { requester } = logins.viewer(ctx, req);
    const design = queryParam(req, 'design');
    if (!design || !(DESIGNS as readonly string[]).includes(design)) {
      throw new PcdError(ErrorCode.InvalidField, `design must be one of ${DESIGNS.join(', ')}`);
    }
    if (!served.has(design as DesignName)) throw new PcdError(ErrorCode.DesignDisabled, `this server does not serve the ${design} design`);
    const sinceText = queryParam(req, 'since') ?? '0';
    const since = /^\d{1,15}$/.test(sinceText) ? Number(sinceText) : Number.NaN;
    if (!Number.isSafeInteger(since)) throw new PcdError(ErrorCode.InvalidField, `since must be a time in Unix ms, got '${sinceText}'`);
    // The design's declared tables that this server writes (a log is registered with the store when made).
    const written = new Set(logHealth(store).map((l) => l.table));
    const logs: readonly LogTable[] = DESIGN_PROTOCOLS.find((d) => d.name === design)!.logs.filter((t) => written.has(t.name));
    // The enumeration applies to a log that holds number hashes (the hashed design's), whichever design declares one.
    const hashed = logs.findIndex((t) => t.columns.some((c) => c.holds === 'number-hash'));
    const planText = queryParam(req, 'plan');
    if (planText !== undefined && hashed < 0) throw new PcdError(ErrorCode.InvalidField, `plan applies to a design whose log holds number hashes; ${design}'s holds none`);
    const plan = planText === undefined ? undefined : parsePlan(planText);
    if (plan && planSize(plan) > MAX_TRACE_PLAN) {
      throw new PcdError(ErrorCode.InvalidField, `the plan spans ${planSize(plan).toLocaleString('en-US')} numbers; the page's trace enumerates at most ${MAX_TRACE_PLAN.toLocaleString('en-US')} (at most 6 X)`);
    }
    const ip = req.ip ?? req.socket.remoteAddress ?? 'unknown';

    flushLogs(store); // what the database holds, not what waits in memory
    const tables: TraceTable[] = logs.map((t) => {
      const q = traceQuery(t);
      const from = t.kind === 'counts' ? Math.floor(since / t.windowMs) * t.windowMs : since;
      const rows = (q.scope === 'none' ? q.stmt.all(from) : q.stmt.all(from, q.scope === 'account' ? requester.accountId : ip)) as unknown[][];
      return {
        name: t.name,
        kind: t.kind,
        ...(t.kind === 'counts' ? { windowMs: t.windowMs } : {}),
        scope: q.scope,
        description: t.description,
        columns: t.columns.map((c) => ({ name: c.name, holds: c.holds })),
        rows: rows.map((r) => r.map(toCell)),
      };
    });

    const reversal = plan ? await reverseTrace(logs[hashed]!, tables[hashed]!, plan) : undefined;
    const auth: BlindedAuth | undefined = design === 'blinded' ? (ctx.options.blindedAuth ?? DEFAULT_BLINDED_AUTH) : undefined;
    reply(req, res, { design: design as DesignName, since, now: ctx.now(), requester: { accountId: requester.accountId, ip }, ...(auth ? { auth } : {}), tables, reversal });
  };
}

/** The hashed log's rows reversed by enumerating the plan, off the main thread, at most two at once (web/reverse.ts). */
async function reverseTrace(log: LogTable, table: TraceTable, plan: PlanPattern[]): Promise<TraceReply['reversal']> {
  const hashColumn = log.columns.findIndex((c) => c.holds === 'number-hash');
  const hashes = table.rows.map((r) => Buffer.from(String(r[hashColumn]), 'hex'));
  const r = await reverseInWorker(hashes, plan);
  return {
    plan: plan.map((p) => p.pattern).join(','),
    candidates: r.candidates,
    ms: r.ms,
    ratePerSecond: r.ms > 0 ? Math.round((r.candidates / r.ms) * 1000) : r.candidates * 1000,
    numbers: Object.fromEntries(r.numbers),
  };
}

/** GET / and the page's other files from the built page, with its CSP. */
function pageFiles(router: Router, distDir: string): void {
  const page404 = () => {
    throw new PcdError(ErrorCode.NotFound, `the web page is not built (${path.join(distDir, 'index.html')} is missing): run npm run build`);
  };
  const headers = (res: express.Response) => {
    res.setHeader('Content-Security-Policy', PAGE_CSP);
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Content-Type-Options', 'nosniff');
  };
  router.get('/', (_req, res) => {
    const file = path.join(distDir, 'index.html');
    if (!fs.existsSync(file)) page404();
    headers(res);
    res.setHeader('Cache-Control', 'no-cache');
    res.sendFile(file);
  });
  router.use(
    express.static(distDir, {
      index: false,
      dotfiles: 'ignore',
      fallthrough: true,
      setHeaders: (res) => {
        headers(res);
        res.setHeader('Cache-Control', 'no-cache');
      },
    }),
  );
}

export function createWebUi(options: WebUiOptions = {}): WebUi {
  const distDir = path.resolve(options.distDir ?? DEFAULT_WEB_DIST);
  const logins = new Logins(options.pageAccount && { accountId: options.pageAccount.accountId, email: options.pageAccount.email, token: options.pageAccount.token });

  const pageRouter = (ctx: ServerContext): Router => {
    const router = express.Router();
    router.get(PATHS.pageClock, (req, res) => {
      logins.viewer(ctx, req);
      reply(req, res, { now: ctx.now() });
    });
    router.get(PATHS.pageTrace, traceHandler(ctx, logins));
    pageFiles(router, distDir);
    return router;
  };

  return {
    mount: (ctx) => ({ router: pageRouter(ctx), routes: loginRoutes(ctx, logins) }),
    usePageAccount: (account) => logins.usePageAccount(account),
    loginUrl: (baseUrl) => `${baseUrl.replace(/\/+$/, '')}${logins.newLinkPath()}`,
  };
}
