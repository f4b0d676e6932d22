/**
 * The page's own calls to the server, besides the lookups (which go through
 * the client library): the one-time login and the operator's log view
 * (web/server.ts), all JSON.
 *
 *   POST /v1/ui/login  { code }             -> { viewToken, requester: { email, accountId, token } | null }
 *   GET  /v1/ui/clock  (Bearer view token)  -> { now }
 *   GET  /v1/ui/trace  ?design&since[&plan] -> { design, since, now, requester, tables, reversal? }
 *
 * The login code comes in the link's fragment (`/#login=CODE`), which a
 * browser never sends, so it reaches the server once, in this POST body;
 * the fragment is then taken out of the address bar and history. The view
 * token and the page's requester token live in sessionStorage: gone with the tab.
 */
import { ErrorCode, PcdError, type DesignName } from './lib.ts';

export interface PageRequester {
  email: string;
  accountId: number;
  token: string;
}

export interface View {
  viewToken: string;
  requester: PageRequester | null;
}

export interface TraceColumn {
  name: string;
  holds: string;
}

export interface TraceTable {
  name: string;
  kind: 'rows' | 'counts';
  description: string;
  columns: TraceColumn[];
  rows: (string | number | null)[][];
}

export interface Reversal {
  plan: string;
  candidates: number;
  ms: number;
  ratePerSecond: number;
  /** Reversed hashes: lowercase hex -> E.164. */
  numbers: Record<string, string>;
}

export interface Trace {
  design: DesignName;
  since: number;
  now: number;
  requester: { accountId: number; ip: string };
  tables: TraceTable[];
  reversal?: Reversal;
}

const VIEW_KEY = 'pcd.view';
const TOKEN_KEY = 'pcd.token';
const CODES = new Set<string>(Object.values(ErrorCode));

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A pcd error body turned back into the PcdError the server threw; anything else named by its status. */
function errorOf(status: number, body: unknown, what: string): PcdError {
  const err = isRecord(body) ? body.error : undefined;
  if (isRecord(err) && typeof err.code === 'string' && CODES.has(err.code) && typeof err.message === 'string') {
    return new PcdError(err.code as ErrorCode, err.message, { status });
  }
  return new PcdError(ErrorCode.MalformedReply, `${what}: the server answered HTTP ${status} without a pcd error body`, { status });
}

async function callJson(path: string, init: RequestInit, what: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(path, { ...init, headers: { accept: 'application/json', ...(init.headers as Record<string, string> | undefined) }, cache: 'no-store' });
  } catch (e) {
    throw new PcdError(ErrorCode.Network, `${what}: cannot reach the server (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) throw errorOf(res.status, body, what);
  if (body === undefined) throw new PcdError(ErrorCode.MalformedReply, `${what}: the reply is not JSON`);
  return body;
}

function readView(): View | undefined {
  try {
    const v: unknown = JSON.parse(sessionStorage.getItem(VIEW_KEY) ?? 'null');
    if (isRecord(v) && typeof v.viewToken === 'string' && (v.requester === null || isRequester(v.requester))) return v as unknown as View;
  } catch {
    // unreadable: as if absent
  }
  return undefined;
}

function isRequester(v: unknown): v is PageRequester {
  return isRecord(v) && typeof v.email === 'string' && typeof v.accountId === 'number' && typeof v.token === 'string';
}

export function forgetView(): void {
  sessionStorage.removeItem(VIEW_KEY);
}

/** The account token a visitor without the login link pasted (kept for this tab). */
export function savedToken(): string | undefined {
  return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
}

export function saveToken(token: string): void {
  if (token === '') sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export interface SessionStart {
  view: View | undefined;
  /** The login link was refused (used twice, expired, unknown) or could not be sent. */
  loginError?: PcdError;
  /** A login happened just now (not restored from this tab's storage). */
  fresh: boolean;
}

/**
 * Trades a `#login=CODE` fragment for a view, once; else restores this tab's
 * view. The fragment leaves the address bar before the code is sent, so
 * neither a reload nor a bookmark can replay it.
 */
export async function startSession(): Promise<SessionStart> {
  const m = /(?:^#|&)login=([^&]*)/.exec(location.hash);
  const stored = readView();
  if (!m) return { view: stored, fresh: false };
  history.replaceState(history.state, '', location.pathname + location.search);
  const code = decodeURIComponent(m[1] ?? '');
  try {
    const body = await callJson(
      '/v1/ui/login',
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) },
      'the login link',
    );
    if (!isRecord(body) || typeof body.viewToken !== 'string' || !(body.requester === null || isRequester(body.requester))) {
      throw new PcdError(ErrorCode.MalformedReply, 'the login reply is not { viewToken, requester }');
    }
    const view: View = { viewToken: body.viewToken, requester: body.requester };
    sessionStorage.setItem(VIEW_KEY, JSON.stringify(view));
    return { view, fresh: true };
  } catch (e) {
    const err = e instanceof PcdError ? e : new PcdError(ErrorCode.Internal, String(e));
    return { view: stored, loginError: err, fresh: false };
  }
}

export async function serverClock(view: View): Promise<number> {
  const body = await callJson('/v1/ui/clock', { headers: { authorization: `Bearer ${view.viewToken}` } }, 'the log view');
  if (!isRecord(body) || typeof body.now !== 'number') throw new PcdError(ErrorCode.MalformedReply, 'the clock reply is not { now }');
  return body.now;
}

export async function fetchTrace(view: View, design: DesignName, since: number, plan?: string): Promise<Trace> {
  const q = new URLSearchParams({ design, since: String(since) });
  if (plan !== undefined) q.set('plan', plan);
  const body = await callJson(`/v1/ui/trace?${q.toString()}`, { headers: { authorization: `Bearer ${view.viewToken}` } }, 'the log view');
  if (!isRecord(body) || !Array.isArray(body.tables) || !isRecord(body.requester)) {
    throw new PcdError(ErrorCode.MalformedReply, 'the trace reply is not { design, requester, tables }');
  }
  for (const t of body.tables as unknown[]) {
    if (!isRecord(t) || typeof t.name !== 'string' || !Array.isArray(t.columns) || !Array.isArray(t.rows)) {
      throw new PcdError(ErrorCode.MalformedReply, 'a trace table is not { name, columns, rows }');
    }
  }
  return body as unknown as Trace;
}
