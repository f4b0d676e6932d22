/**
 * One lookup in one design, as the page runs it:
 *
 *   clock   GET /v1/ui/clock                 the server's time, so the trace asks for rows from now on (operator view only)
 *   lookup  the real client library          plain / hashed / blinded, through a metering transport
 *   trace   GET /v1/ui/trace?design&since    the rows this lookup left (hashed: once per number block, reversed by enumeration)
 *
 * The metering transport wraps the client's HTTP transport and adds up each
 * exchange's request and reply body bytes (TransportReply.bytesSent /
 * bytesReceived): what the lookup cost on the wire, counted on this side.
 * The page's calls to the log view are not part of it.
 *
 * One client per design and token lives as long as the page: the blinded
 * client keeps its pinned epoch keys (a server that swaps its key for this
 * tab is refused with key_changed), its tag cache and its buckets with their
 * ETags, so repeating a lookup shows what a phone's second lookup costs.
 */
import { fetchTrace, serverClock, type Trace, type View } from './api.ts';
import {
  PcdError,
  ErrorCode,
  createClient,
  createTransport,
  loadBackend,
  type BackendName,
  type Client,
  type DesignName,
  type E164,
  type LookupResult,
  type RequestOptions,
  type Transport,
  type TransportReply,
} from './lib.ts';
import { planOf } from './numbers.ts';

/** Hashed: number blocks the trace enumerates per lookup at most (each up to 10^6 hashes on the server). */
export const MAX_TRACE_BLOCKS = 3;

export interface WireExchange {
  method: string;
  path: string;
  /** HTTP status; 0 when the request failed before an answer. */
  status: number;
  sent: number;
  received: number;
  error?: string;
}

export interface BlindedFacts {
  backend: BackendName;
  /** Why the WASM backend did not load, when noble ran instead. */
  fallback?: string;
  bucketBits?: number;
  mode?: string;
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
  /** Where the metering transport writes; swapped for each lookup. */
  sink: WireExchange[];
}

const slots = new Map<DesignName, Slot>();
let backendChoice: Promise<{ name: BackendName; fallback?: string }> | undefined;
let blindedConfig: { bucketBits?: number; mode?: string } = {};

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

function metered(inner: Transport, slot: () => Slot): Transport {
  return {
    async request<T>(req: RequestOptions<T>): Promise<TransportReply<T>> {
      const x: WireExchange = { method: req.method, path: req.path, status: 0, sent: 0, received: 0 };
      slot().sink.push(x);
      try {
        const r = await inner.request(req);
        x.status = r.status;
        x.sent = r.bytesSent;
        x.received = r.bytesReceived;
        if (req.path === '/v1/blinded/config' && r.body && typeof r.body === 'object') {
          const b = r.body as { bucketBits?: unknown; mode?: unknown };
          blindedConfig = { bucketBits: typeof b.bucketBits === 'number' ? b.bucketBits : undefined, mode: typeof b.mode === 'string' ? b.mode : undefined };
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
  const slot: Slot = { token, client: undefined as unknown as Client, sink: [] };
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

export async function runDesign(design: DesignName, numbers: E164[], token: string, view: View | undefined): Promise<DesignRun> {
  const run: DesignRun = { design, numbers, wire: [], ms: 0 };
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
  try {
    const slot = await clientFor(design, token);
    slot.sink = run.wire;
    if (design === 'blinded') {
      const b = await chooseBackend();
      run.blinded = { backend: b.name, fallback: b.fallback };
    }
    run.results = await slot.client.lookupMany(numbers);
  } catch (e) {
    run.error = asPcdError(e);
  }
  run.ms = performance.now() - started;
  if (run.blinded) run.blinded = { ...run.blinded, ...blindedConfig };
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
