/**
 * The page's own calls to the server, besides the lookups (which go through
 * the client library): the one-time login and the operator's log view
 * (web/server.ts), all JSON, through the client library's transport and
 * checked by the schemas of shared/page.ts.
 *
 *   POST /v1/ui/login  { code }             -> { viewToken, requester: { email, accountId, token } }
 *   GET  /v1/ui/clock  (Bearer view token)  -> { now }
 *   GET  /v1/ui/trace  ?design&since[&plan] -> { design, since, now, requester, auth?, tables, reversal? }
 *
 * The login code comes in the link's fragment (`/#login=CODE`), which a
 * browser never sends, so it reaches the server once, in this POST body;
 * the fragment is then taken out of the address bar and history. The view
 * token and the page's requester token live in sessionStorage: gone with the tab.
 */
import {
  ErrorCode,
  PATHS,
  PageClockReply,
  PageLoginReply,
  PcdError,
  TraceReply,
  createTransport,
  parseReply,
  type DesignName,
  type RequestOptions,
  type TraceReversal,
  type TraceTable,
} from './imports.ts';

export type PageRequester = PageLoginReply['requester'];
export type View = PageLoginReply;
export type Trace = TraceReply;
export type { TraceReversal, TraceTable };

const VIEW_KEY = 'pcd.view';
const TOKEN_KEY = 'pcd.token';
/**
 * One call of the page's own endpoints through the client library's transport (JSON here): the same
 * error mapping (a pcd error body becomes its PcdError, a refused connection a `network` one) and the reply
 * checked by its schema in shared/page.ts. `what` names the call in an error message.
 */
async function call<T>(token: string | undefined, req: RequestOptions<T>, what: string): Promise<T> {
  try {
    const { body } = await createTransport({ baseUrl: location.origin, token, format: 'json' }).request(req);
    if (body === undefined) throw new PcdError(ErrorCode.MalformedReply, 'the reply has no body');
    return body;
  } catch (e) {
    if (e instanceof PcdError) throw new PcdError(e.code, `${what}: ${e.message}`, { status: e.status, cause: e });
    throw e;
  }
}

/** This tab's view, as the login reply's schema reads it; anything else is as if absent. */
function readView(): View | undefined {
  const stored = sessionStorage.getItem(VIEW_KEY);
  if (stored === null) return undefined;
  try {
    return parseReply(PageLoginReply, JSON.parse(stored), 'json');
  } catch {
    return undefined;
  }
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
    const view = await call(undefined, { method: 'POST', path: PATHS.pageLogin, body: { code }, reply: PageLoginReply, auth: false }, 'the login link');
    sessionStorage.setItem(VIEW_KEY, JSON.stringify(view));
    return { view, fresh: true };
  } catch (e) {
    const err = e instanceof PcdError ? e : new PcdError(ErrorCode.Internal, String(e));
    return { view: stored, loginError: err, fresh: false };
  }
}

export async function serverClock(view: View): Promise<number> {
  return (await call(view.viewToken, { method: 'GET', path: PATHS.pageClock, reply: PageClockReply, auth: true }, 'the log view')).now;
}

export async function fetchTrace(view: View, design: DesignName, since: number, plan?: string): Promise<Trace> {
  const q = new URLSearchParams({ design, since: String(since) });
  if (plan !== undefined) q.set('plan', plan);
  return call(view.viewToken, { method: 'GET', path: `${PATHS.pageTrace}?${q.toString()}`, reply: TraceReply, auth: true }, 'the log view');
}
