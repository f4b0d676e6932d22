/**
 * The client's side of Oblivious HTTP (RFC 9458, shared/ohttp.ts): a
 * `fetch` that sends each request sealed to the server's gateway through a
 * relay, so the server does not see this client's address and the relay
 * does not see what it asks.
 *
 *   const fetchViaRelay = createOhttpFetch({ relayUrl: 'http://127.0.0.1:8788' });
 *   createTransport({ baseUrl, token, fetch: fetchViaRelay });
 *   // or simply: createClient({ baseUrl, token, design: 'blinded', relay: 'http://127.0.0.1:8788' })
 *
 * Each call encodes the request (method, the URL's scheme, authority and
 * path, the headers, the body) as binary HTTP (shared/bhttp.ts), seals it,
 * POSTs it to the relay as message/ohttp-req, opens the message/ohttp-res
 * reply and returns it as a standard `Response` (status, headers, body). A
 * reply that is not encapsulated (the relay's or the gateway's own refusal,
 * a coded error body) is returned as it came, so the transport reads it as
 * any error of the API, Retry-After included.
 *
 * ## The gateway's key
 *
 * Fetched from the relay (`GET <relay>/.well-known/ohttp-gateway`, RFC 9540
 * §3) on first use unless given (`gatewayKeys`), and again when older than
 * `keyMaxAgeMs`. The first configuration seen for a relay is kept (pinned)
 * in memory; a later, different one is `view_changed`, never used: a
 * gateway that hands one client a key of its own can tell that client's
 * requests apart from everybody else's, which is what OHTTP is meant to
 * prevent (RFC 9458 §7, key configuration consistency).
 *
 * The HPKE code is loaded on first use (a dynamic import), so a bundle that
 * never uses a relay, such as the web page, does not load it.
 */
import { decodeResponse, encodeRequest, type FieldLine } from '../shared/bhttp.ts';
import type { DesignName } from '../shared/designs/index.ts';
import { ErrorCode, PcdError, errorFromBody } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import type { KeyConfig } from '../shared/ohttp.ts';

type OhttpModule = typeof import('../shared/ohttp.ts');
let loading: Promise<OhttpModule> | undefined;
/** shared/ohttp.ts and its HPKE dependency, loaded once, when a relay is first used. */
function ohttp(): Promise<OhttpModule> {
  return (loading ??= import('../shared/ohttp.ts'));
}

/** Request headers that describe a connection, not the request: never sealed in. */
const HOP_HEADERS = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-connection', 'cookie']);
/** Statuses whose Response has no body (the Fetch standard's null body statuses). */
const NULL_BODY_STATUS = new Set([204, 205, 304]);
const KEY_LIST_MAX_BYTES = 64 * 1024;
const DEFAULT_KEY_MAX_AGE_MS = 3_600_000;

/**
 * Key configurations pinned per relay (the gateway it reaches), in memory:
 * the first one seen is kept, a different one later is `view_changed`.
 */
export class OhttpKeyPins {
  private readonly pins = new Map<string, Uint8Array>();

  /** Pins `config` for `relay` on first sight; throws view_changed when another one is pinned. */
  async check(relay: string, config: KeyConfig): Promise<void> {
    const { encodeKeyConfig } = await ohttp();
    const bytes = encodeKeyConfig(config);
    const pinned = this.pins.get(relay);
    if (!pinned) {
      this.pins.set(relay, bytes);
      return;
    }
    if (pinned.length !== bytes.length || pinned.some((b, i) => b !== bytes[i])) {
      throw new PcdError(
        ErrorCode.ViewChanged,
        `the OHTTP gateway behind ${relay} now publishes another key configuration (key ${config.keyId}) than the one this client first saw: refused, as a key of its own would single this client out`,
      );
    }
  }
}

export interface OhttpFetchOptions {
  /** The relay's URL: encapsulated requests are POSTed there, the key configuration is at <relayUrl>/.well-known/ohttp-gateway. */
  relayUrl: string;
  /** The gateway's key configuration, or an application/ohttp-keys list; default: fetched from the relay on first use. */
  gatewayKeys?: KeyConfig | Uint8Array;
  /** Pins shared between fetches (default: this fetch's own). */
  pins?: OhttpKeyPins;
  /** Fetch the key configuration again when older than this (default 1 hour; not with `gatewayKeys`). */
  keyMaxAgeMs?: number;
  /** The fetch that reaches the relay (default the global one). */
  fetch?: typeof fetch;
  /** Largest encapsulated reply read (default LIMITS.maxReplyBytes). */
  maxReplyBytes?: number;
  now?: () => number;
}

type FetchInput = Parameters<typeof fetch>[0];
type FetchInit = Parameters<typeof fetch>[1];

async function readBounded(res: Response, max: number, what: string): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > max) throw new PcdError(ErrorCode.MalformedReply, `${what} of ${declared} bytes exceeds the client limit of ${max}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length > max) throw new PcdError(ErrorCode.MalformedReply, `${what} of ${bytes.length} bytes exceeds the client limit of ${max}`);
  return bytes;
}

/** A failure to reach the relay, as one line naming it; an abort or timeout stays itself, for the caller to report. */
function unreachable(relay: string, signal: AbortSignal | undefined) {
  return (e: unknown): never => {
    if (signal?.aborted || e instanceof PcdError) throw e;
    const cause = (e as { cause?: unknown } | null)?.cause;
    const inner = cause instanceof Error ? cause : e instanceof Error ? e : undefined;
    const code = (inner as { code?: unknown } | undefined)?.code;
    throw new PcdError(ErrorCode.Network, `cannot reach the relay ${relay}: ${typeof code === 'string' ? code : (inner?.message ?? String(e)).slice(0, 160)}`, { cause: e });
  };
}

function mediaType(res: Response): string {
  return (res.headers.get('content-type') ?? '').split(';', 1)[0]?.trim().toLowerCase() ?? '';
}

/** A relay URL as typed (`127.0.0.1:8788` gets `http://`), checked once; without a trailing slash. */
function relayBase(input: string): string {
  const text = input.trim();
  const bad = (): never => {
    throw new PcdError(ErrorCode.InvalidField, `the relay URL '${text.slice(0, 80)}' is not an http(s) URL without query or credentials (expected e.g. http://127.0.0.1:8788)`);
  };
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    return bad();
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') bad();
  return (url.origin + url.pathname).replace(/\/+$/, '');
}

/** A `fetch` that goes through an OHTTP relay (see the module comment). */
export function createOhttpFetch(options: OhttpFetchOptions): typeof fetch {
  const relay = relayBase(options.relayUrl);
  const doFetch = options.fetch ?? ((input: FetchInput, init?: FetchInit) => fetch(input, init));
  const pins = options.pins ?? new OhttpKeyPins();
  const now = options.now ?? Date.now;
  const maxAge = options.keyMaxAgeMs ?? DEFAULT_KEY_MAX_AGE_MS;
  const maxReply = options.maxReplyBytes ?? LIMITS.maxReplyBytes;
  let current: { config: KeyConfig; at: number } | undefined;
  let pending: Promise<KeyConfig> | undefined;

  const fetchKey = async (signal: AbortSignal | undefined): Promise<KeyConfig> => {
    const m = await ohttp();
    let list: KeyConfig[];
    const given = options.gatewayKeys;
    if (given !== undefined) {
      list = given instanceof Uint8Array ? m.decodeKeyConfigList(given, ErrorCode.InvalidField) : [given];
    } else {
      const res = await doFetch(`${relay}${m.OHTTP_GATEWAY_PATH}`, { method: 'GET', headers: { accept: m.OHTTP_MEDIA.keys }, signal }).catch(unreachable(relay, signal));
      const bytes = await readBounded(res, KEY_LIST_MAX_BYTES, 'the key configuration');
      if (!res.ok) {
        let body: unknown;
        try {
          body = JSON.parse(new TextDecoder().decode(bytes));
        } catch {
          body = undefined;
        }
        throw errorFromBody(res.status, body);
      }
      if (mediaType(res) !== m.OHTTP_MEDIA.keys) {
        throw new PcdError(ErrorCode.MalformedReply, `the relay answered the key configuration with ${res.headers.get('content-type') ?? 'no content type'}, not ${m.OHTTP_MEDIA.keys}`);
      }
      list = m.decodeKeyConfigList(bytes, ErrorCode.MalformedReply);
    }
    const config = m.selectKeyConfig(list);
    if (!config) throw new PcdError(ErrorCode.MalformedReply, 'the OHTTP gateway offers no key for DHKEM(X25519), HKDF-SHA256, AES-128-GCM');
    await pins.check(relay, config);
    current = { config, at: now() };
    return config;
  };

  const keyConfig = (signal: AbortSignal | undefined): Promise<KeyConfig> => {
    if (current && (options.gatewayKeys !== undefined || now() - current.at < maxAge)) return Promise.resolve(current.config);
    pending ??= fetchKey(signal).finally(() => (pending = undefined));
    return pending;
  };

  return async (input: FetchInput, init?: FetchInit): Promise<Response> => {
    const m = await ohttp();
    const request = new Request(input, init);
    const url = new URL(request.url);
    const headers: FieldLine[] = [];
    request.headers.forEach((value, name) => {
      if (!HOP_HEADERS.has(name)) headers.push([name, value]);
    });
    const content = new Uint8Array(await request.arrayBuffer());
    const signal = init?.signal ?? undefined;
    const config = await keyConfig(signal);
    const binary = encodeRequest({ method: request.method, scheme: url.protocol.slice(0, -1), authority: url.host, path: url.pathname + url.search, headers, content });
    const { encapsulated, context } = await m.encapsulateRequest(config, binary);
    const outer = await doFetch(relay, {
      method: 'POST',
      headers: { 'content-type': m.OHTTP_MEDIA.request, accept: m.OHTTP_MEDIA.response },
      body: encapsulated as Uint8Array<ArrayBuffer>,
      signal,
    }).catch(unreachable(relay, signal));
    if (outer.status === 200 && mediaType(outer) === m.OHTTP_MEDIA.response) {
      const sealed = await readBounded(outer, maxReply + 1024, 'the encapsulated reply');
      const inner = decodeResponse(await m.decapsulateResponse(context, sealed), {
        code: ErrorCode.MalformedReply,
        limits: { maxMessageBytes: maxReply + 1024, maxContentBytes: maxReply },
      });
      const h = new Headers();
      for (const [name, value] of inner.headers) h.append(name, value);
      const body = NULL_BODY_STATUS.has(inner.status) ? null : (inner.content as Uint8Array<ArrayBuffer>);
      return new Response(body, { status: inner.status, headers: h });
    }
    // The relay's or the gateway's own answer (a refusal with a coded body): for the caller to read as any reply.
    if (!outer.ok) return outer;
    throw new PcdError(ErrorCode.MalformedReply, `the relay answered HTTP ${outer.status} with ${outer.headers.get('content-type') ?? 'no content type'}, not ${m.OHTTP_MEDIA.response}`);
  };
}

/**
 * A `fetch` for one design's transport: what goes through a relay
 * (shared/ohttp.ts RELAYED_REQUESTS: the blinded design's config, evaluate
 * and buckets, health) through `ohttpFetch`, anything else direct.
 */
export function createRelayedFetch(ohttpFetch: typeof fetch, direct: typeof fetch = (input, init) => fetch(input, init)): typeof fetch {
  return async (input: FetchInput, init?: FetchInit): Promise<Response> => {
    const { isRelayed } = await ohttp();
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    return url.search === '' && isRelayed(method, url.pathname) ? ohttpFetch(input, init) : direct(input, init);
  };
}

/**
 * The fetch a design's transport uses given a relay URL: through the relay
 * for the blinded design (the only one whose requests hide the number, so
 * the only one where hiding the address adds anything), undefined (direct)
 * for the others or without a relay.
 */
export function relayFetchFor(design: DesignName, relay: string | undefined, options: Omit<OhttpFetchOptions, 'relayUrl'> = {}): typeof fetch | undefined {
  if (relay === undefined || relay === '' || design !== 'blinded') return undefined;
  return createRelayedFetch(createOhttpFetch({ ...options, relayUrl: relay }), options.fetch);
}
