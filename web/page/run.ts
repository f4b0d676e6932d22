/**
 * One lookup in one design, as the page runs it:
 *
 *   clock   GET /v1/ui/clock                 the server's time, so the trace asks for rows from now on (operator view only)
 *   lookup  the real client library          plain / hashed / blinded, through a metering transport
 *   trace   GET /v1/ui/trace?design&since    the rows this lookup left (hashed: once per number block, reversed by enumeration)
 *
 * The metering transport wraps the client's HTTP transport and adds up each
 * exchange's request and reply body bytes (TransportReply.bytesSent /
 * bytesReceived) and its Authorization header, the part of the headers that
 * says who sends: the account's bearer token, or on the blinded evaluate of
 * a server that takes Privacy Pass tokens, the token (~470 bytes) and no
 * account. That is what the lookup cost on the wire, counted on this side;
 * the page's calls to the log view are not part of it. It also notes what
 * the bodies hold that the page shows: the elements an evaluate request
 * carries (real ones and padding), the tokens an issuance request asks for.
 *
 * Blinded, tokens (client/tokens.ts): the client fetches tokens with the
 * account's token (POST /v1/tokens), on demand when its pool has none of
 * the class a lookup needs, and refills the pool later at random times;
 * what such a refill sent between two lookups is shown with the second
 * (`between`). Token requests and their finalisation are privacypass-ts's
 * blind RSA in JavaScript (~35 ms per token) and need Web Crypto, which a
 * browser offers only to a secure context (https, or http on localhost).
 *
 * One client per design and token lives as long as the page: the blinded
 * client keeps its pinned epoch keys (a server that swaps its key for this
 * tab is refused with key_changed), its tag cache and its buckets with their
 * ETags, so repeating a lookup shows what a phone's second lookup costs.
 */
import { fetchTrace, serverClock, type Trace, type View } from './api.ts';
import {
  PATHS,
  PcdError,
  ErrorCode,
  createClient,
  createTransport,
  designOf,
  loadBackend,
  type BackendName,
  type BlindedAuth,
  type Client,
  type DesignName,
  type E164,
  type LookupResult,
  type RequestOptions,
  type Transport,
  type TransportReply,
} from './imports.ts';
import { planOf } from './numbers.ts';

/** Hashed: number blocks the trace enumerates per lookup at most (each up to 10^6 hashes on the server). */
export const MAX_TRACE_BLOCKS = 3;

/** What a request carried to say who sent it. */
export type Credential = 'account' | 'token' | 'none';

export interface WireExchange {
  method: string;
  path: string;
  /** HTTP status; 0 when the request failed before an answer. */
  status: number;
  /** Request body and Authorization header bytes. */
  sent: number;
  received: number;
  error?: string;
  credential: Credential;
  /** The Authorization header line's bytes (counted in `sent`). */
  authBytes: number;
  /** Evaluate: the blinded elements the body carries, padding included. */
  elements?: number;
  /** Token issuance: how many tokens of which size class were asked for. */
  tokens?: { count: number; sizeClass: number };
}

export interface BlindedFacts {
  backend: BackendName;
  /** Why the WASM backend did not load, when noble ran instead. */
  fallback?: string;
  bucketBits?: number;
  mode?: string;
  /** How the server's evaluate knows its caller (its config): a Privacy Pass token, or the account. */
  auth?: BlindedAuth;
  /** This lookup, from the client's own counts: dummy elements sent as padding, tokens spent and fetched. */
  padding: number;
  tokensSpent: number;
  tokensFetched: number;
  /** Issuance requests made because the pool had no token of the class (tied to this lookup in time). */
  fetchesOnDemand: number;
  /** Buckets checked against the epoch's published Merkle root. */
  bucketsProven: number;
  /** Tokens the pool holds after the lookup, of the class it paid with. */
  tokensHeld?: number;
}

export interface TraceOutcome {
  trace?: Trace;
  /** One reversal per enumerated block (hashed). */
  reversals: NonNullable<Trace['reversal']>[];
  /** Blocks the page did not enumerate (more than MAX_TRACE_BLOCKS). */
  skippedBlocks: string[];
  error?: PcdError;
}

export interface DesignRun {
  design: DesignName;
  numbers: E164[];
  results?: LookupResult[];
  error?: PcdError;
  wire: WireExchange[];
  /** What the page's client sent since its previous lookup, on its own (a token refill at a random time). */
  between: WireExchange[];
  ms: number;
  blinded?: BlindedFacts;
  /** Undefined when there is no operator view (answers only). */
  trace?: TraceOutcome;
}

function asPcdError(e: unknown): PcdError {
  if (e instanceof PcdError) return e;
  return new PcdError(ErrorCode.Internal, e instanceof Error ? `${e.name}: ${e.message}` : String(e));
}

/** Per design: one client per token, for the page's lifetime. */
interface Slot {
  token: string;
  client: Client;
  /** Where the metering transport writes: a lookup's wire while it runs, else `idle`. */
  sink: WireExchange[];
  /** What the client sends between lookups (the token pool's refills). */
  idle: WireExchange[];
}

const slots = new Map<DesignName, Slot>();
let backendChoice: Promise<{ name: BackendName; fallback?: string }> | undefined;
let blindedConfig: { bucketBits?: number; mode?: string; auth?: BlindedAuth } = {};

/**
 * The blinded design's crypto backend: the page address's `?backend=noble` or `?backend=sodium` when it names
 * one (to compare them in a browser), else libsodium's WASM build where it loads (the server's CSP allows
 * 'wasm-unsafe-eval'), else the noble reference.
 */
export function chooseBackend(): Promise<{ name: BackendName; fallback?: string }> {
  const asked = new URLSearchParams(location.search).get('backend');
  if (asked === 'noble' || asked === 'sodium') {
    backendChoice ??= loadBackend(asked).then(() => ({ name: asked }));
  }
  backendChoice ??= loadBackend('sodium').then(
    () => ({ name: 'sodium' as BackendName }),
    async (e: unknown) => {
      await loadBackend('noble');
      return { name: 'noble' as BackendName, fallback: e instanceof Error ? e.message : String(e) };
    },
  );
  return backendChoice;
}

/** The Authorization header a request goes out with (client/transport.ts): its own (a token), else the account's for an authenticated one. */
function authorizationOf(req: RequestOptions<unknown>, token: string): { credential: Credential; header?: string } {
  if (req.authorization !== undefined) return { credential: /^PrivateToken\b/i.test(req.authorization) ? 'token' : 'account', header: req.authorization };
  if (req.auth ?? req.method !== 'GET') return { credential: 'account', header: `Bearer ${token}` };
  return { credential: 'none' };
}

/** What the page reads of a request body: evaluate's element count, issuance's token count and class. */
function bodyFacts(req: RequestOptions<unknown>): Pick<WireExchange, 'elements' | 'tokens'> {
  const b = req.body as { elements?: unknown; requests?: unknown; sizeClass?: unknown } | undefined;
  if (!b || typeof b !== 'object') return {};
  if (req.path === PATHS.blindedEvaluate && Array.isArray(b.elements)) return { elements: b.elements.length };
  if (req.path === PATHS.tokens && Array.isArray(b.requests) && typeof b.sizeClass === 'number') return { tokens: { count: b.requests.length, sizeClass: b.sizeClass } };
  return {};
}

function metered(inner: Transport, slot: () => Slot): Transport {
  return {
    async request<T>(req: RequestOptions<T>): Promise<TransportReply<T>> {
      const auth = authorizationOf(req, slot().token);
      // "Authorization: " + value + CRLF, in ASCII.
      const authBytes = auth.header === undefined ? 0 : 'Authorization: '.length + auth.header.length + 2;
      const x: WireExchange = { method: req.method, path: req.path, status: 0, sent: 0, received: 0, credential: auth.credential, authBytes, ...bodyFacts(req) };
      slot().sink.push(x);
      try {
        const r = await inner.request(req);
        x.status = r.status;
        x.sent = r.bytesSent + authBytes;
        x.received = r.bytesReceived;
        if (req.path === PATHS.blindedConfig && r.body && typeof r.body === 'object') {
          const b = r.body as { bucketBits?: unknown; mode?: unknown; auth?: unknown };
          blindedConfig = {
            bucketBits: typeof b.bucketBits === 'number' ? b.bucketBits : undefined,
            mode: typeof b.mode === 'string' ? b.mode : undefined,
            // A config without `auth` is a server from before tokens: evaluate takes the account.
            auth: b.auth === 'token' ? 'token' : 'account',
          };
        }
        return r;
      } catch (e) {
        x.error = e instanceof PcdError ? e.code : 'error';
        if (e instanceof PcdError && e.status) x.status = e.code === ErrorCode.Network ? 0 : e.status;
        throw e;
      }
    },
  };
}

async function clientFor(design: DesignName, token: string): Promise<Slot> {
  const have = slots.get(design);
  if (have && have.token === token) return have;
  const baseUrl = location.origin;
  const slot: Slot = { token, client: undefined as unknown as Client, sink: [], idle: [] };
  slot.sink = slot.idle;
  const transport = metered(createTransport({ baseUrl, token }), () => slot);
  const backend = design === 'blinded' ? (await chooseBackend()).name : undefined;
  slot.client = createClient({ baseUrl, token, design, transport, backend });
  slots.set(design, slot);
  return slot;
}

/** The page's health check: which designs the server serves. */
export async function servedDesigns(): Promise<DesignName[]> {
  const h = await createClient({ baseUrl: location.origin, design: 'plain' }).health();
  return [...h.designs];
}

/** The blinded client's counts that a lookup moves (client/designs/blinded.ts stats, client/tokens.ts pool stats). */
function blindedCounts(client: Client): { padding: number; spent: number; fetched: number; onDemand: number; proven: number } | undefined {
  const d = designOf(client, 'blinded');
  if (!d) return undefined;
  return { padding: d.stats.paddingElements, spent: d.tokens.stats.tokensSpent, fetched: d.tokens.stats.tokensFetched, onDemand: d.tokens.stats.fetchesOnDemand, proven: d.stats.bucketsProven };
}

/** A failure that is not the protocol's: a page outside a secure context has no Web Crypto, which the token code needs. */
function explain(e: unknown, design: DesignName): PcdError {
  if (!(e instanceof PcdError) && design === 'blinded' && globalThis.crypto?.subtle === undefined) {
    return new PcdError(
      ErrorCode.Internal,
      `this browser offers no Web Crypto here (crypto.subtle), which the Privacy Pass token code needs: browsers offer it only to a secure context; open the page at http://127.0.0.1 or http://localhost, or over https (${e instanceof Error ? e.message : String(e)})`,
    );
  }
  return asPcdError(e);
}

/**
 * Numbers per lookupMany call. The client library sends a list in as few batches as the server takes
 * (up to 4,096 numbers) and says nothing until the last answer; the page gives it a long list in chunks
 * of this many, in order, so the card can show how far it got. A list this long or shorter is one
 * request as before; a longer one costs a request (blinded: an evaluate and its token) per chunk.
 */
export const PAGE_CHUNK = 50;

/** Told after each chunk: `done` of `total` numbers answered. */
export type Progress = (done: number, total: number) => void;

export async function runDesign(design: DesignName, numbers: E164[], token: string, view: View | undefined, onProgress?: Progress): Promise<DesignRun> {
  const run: DesignRun = { design, numbers, wire: [], between: [], ms: 0 };
  let since: number | undefined;
  let traceError: PcdError | undefined;
  if (view) {
    try {
      since = await serverClock(view);
    } catch (e) {
      traceError = asPcdError(e);
    }
  }
  const started = performance.now();
  let slot: Slot | undefined;
  let before: ReturnType<typeof blindedCounts>;
  try {
    slot = await clientFor(design, token);
    run.between = slot.idle.splice(0);
    slot.sink = run.wire;
    before = blindedCounts(slot.client);
    if (design === 'blinded') {
      const b = await chooseBackend();
      run.blinded = { backend: b.name, fallback: b.fallback, padding: 0, tokensSpent: 0, tokensFetched: 0, fetchesOnDemand: 0, bucketsProven: 0 };
    }
    const results: LookupResult[] = [];
    for (let i = 0; i < numbers.length; i += PAGE_CHUNK) {
      results.push(...(await slot.client.lookupMany(numbers.slice(i, i + PAGE_CHUNK))));
      onProgress?.(results.length, numbers.length);
    }
    run.results = results;
  } catch (e) {
    run.error = explain(e, design);
  } finally {
    if (slot) slot.sink = slot.idle;
  }
  run.ms = performance.now() - started;
  const after = slot ? blindedCounts(slot.client) : undefined;
  if (run.blinded && before && after && slot) {
    const evaluated = run.wire.filter((x) => x.elements !== undefined);
    const paidClass = evaluated.at(-1)?.elements;
    run.blinded = {
      ...run.blinded,
      ...blindedConfig,
      padding: after.padding - before.padding,
      tokensSpent: after.spent - before.spent,
      tokensFetched: after.fetched - before.fetched,
      fetchesOnDemand: after.onDemand - before.onDemand,
      bucketsProven: after.proven - before.proven,
      ...(blindedConfig.auth === 'token' && paidClass !== undefined ? { tokensHeld: designOf(slot.client, 'blinded')!.tokens.count(paidClass) } : {}),
    };
  } else if (run.blinded) run.blinded = { ...run.blinded, ...blindedConfig };
  if (view) run.trace = traceError ? { reversals: [], skippedBlocks: [], error: traceError } : await traceOf(design, numbers, view, since!, run.error === undefined);
  return run;
}

async function traceOf(design: DesignName, numbers: E164[], view: View, since: number, answered: boolean): Promise<TraceOutcome> {
  const out: TraceOutcome = { reversals: [], skippedBlocks: [] };
  try {
    if (design !== 'hashed' || !answered) {
      out.trace = await fetchTrace(view, design, since);
      return out;
    }
    // What an operator answering an order for these numbers would enumerate: each number's block of 10^6.
    const blocks = [...new Set(numbers.map((n) => planOf(n).block))];
    out.skippedBlocks = blocks.slice(MAX_TRACE_BLOCKS);
    for (const block of blocks.slice(0, MAX_TRACE_BLOCKS)) {
      const t = await fetchTrace(view, design, since, block);
      out.trace = t;
      if (t.reversal) out.reversals.push(t.reversal);
    }
  } catch (e) {
    out.error = asPcdError(e);
  }
  return out;
}
