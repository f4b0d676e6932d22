/**
 * The client library.
 *
 *   const client = createClient({ baseUrl, token, design: 'blinded' });
 *   await client.lookup('+14155550123');        // { number, capabilities }
 *   await client.lookupMany(['(415) 555-0123'], { defaultRegion: 'US' });
 *
 * Numbers are normalised to E.164 here (shared/e164.ts) before any design
 * sees them; lookupMany splits large lists into batches the server accepts
 * and keeps order and duplicates. Errors are PcdError with the server's code
 * (or a client-side one such as proof_invalid or key_changed): match on `code`.
 *
 * The blinded design insists on VOPRF (`allowOprf` accepts OPRF epochs) and
 * pins each epoch's public key per server (`pinFile` keeps the pins across
 * runs; client/designs/blinded.ts says why and how).
 */
import type { ClientDesign, ClientDesignFactory, LookupResult, Transport } from '../shared/design.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError, isPcdError } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import {
  CreateAccountReply,
  OkReply,
  PATHS,
  RotateKeyReply,
  HealthReply,
  PageLinkReply,
  DEFAULT_DESIGN,
  type CreateAccountRequest,
  type DesignName,
  type RotateKeyRequest,
} from '../shared/messages.ts';
import type { Format } from '../shared/schema.ts';
import type { BackendName } from '../shared/suite.ts';
import { KeyPins, createBlindedClient, type BlindedClient } from './designs/blinded.ts';
import { createHashedClient } from './designs/hashed.ts';
import { createPlainClient } from './designs/plain.ts';
import { createTransport, normalizeServerUrl } from './transport.ts';
import { relayFetchFor } from './ohttp.ts';
import type { TokenPoolOptions } from './tokens.ts';

export type { LookupResult } from '../shared/design.ts';

/** What each design's client is: the blinded one has its own features (stats, token pool, pins, clear). */
export interface ClientDesigns {
  plain: ClientDesign;
  hashed: ClientDesign;
  blinded: BlindedClient;
}

/** Every design's client factory: a new design in the protocol's registry is a missing key here. */
export const CLIENT_DESIGNS: { readonly [N in DesignName]: (...args: Parameters<ClientDesignFactory>) => ClientDesigns[N] } = {
  plain: createPlainClient,
  hashed: createHashedClient,
  blinded: createBlindedClient,
};

/** The client's design as its own type when it is `name` (the blinded client's stats and token pool), else undefined. */
export function designOf<N extends DesignName>(client: Pick<Client, 'design'>, name: N): ClientDesigns[N] | undefined {
  return client.design.name === name ? (client.design as ClientDesigns[N]) : undefined;
}

export interface ClientOptions {
  baseUrl: string;
  token?: string;
  design?: DesignName;
  format?: Format;
  /** Region for numbers written without a country code (ISO 3166, e.g. 'US'). */
  defaultRegion?: string;
  /** Numbers per request (default and maximum LIMITS.maxBatch). */
  batchSize?: number;
  timeoutMs?: number;
  /** Crypto backend of the blinded design (default sodium). */
  backend?: BackendName;
  /** Blinded design: accept epochs in OPRF mode, whose answers carry no proof (default false: refused, proof_invalid). */
  allowOprf?: boolean;
  /** Blinded design: keep the pinned epoch keys in this JSON file across runs (default: in memory only). */
  pinFile?: string;
  /** Blinded design: pins shared with other clients (overrides pinFile). */
  pins?: KeyPins;
  /** Use this transport instead of HTTP fetch (tests, instrumentation); baseUrl still names the server for the pins. */
  transport?: Transport;
  /**
   * An Oblivious HTTP relay (RFC 9458; `pcd relay`): the blinded design's
   * config, evaluate and bucket requests go through it, sealed to the
   * server's gateway, so the server does not see this client's address
   * (client/ohttp.ts). Other designs, token issuance and admin calls go
   * direct. Ignored when `transport` is given (build it with
   * client/ohttp.ts relayFetchFor then).
   */
  relay?: string;
  /**
   * Blinded design on a server that takes Privacy Pass tokens (the default):
   * the token pool's options (client/tokens.ts: tokens kept ahead per size
   * class, the refill's random delay, what an empty class does). Tokens are
   * fetched with `token` (the account) and spent without it.
   */
  tokens?: TokenPoolOptions;
}

export interface Client {
  readonly design: ClientDesign;
  readonly transport: Transport;
  lookup(number: string, options?: { signal?: AbortSignal }): Promise<LookupResult>;
  lookupMany(numbers: readonly string[], options?: { signal?: AbortSignal }): Promise<LookupResult[]>;
  health(): Promise<HealthReply>;
}

/** Normalises every number; the first bad one fails the call, naming its index. */
export function normalizeList(numbers: readonly string[], defaultRegion?: string): E164[] {
  return numbers.map((n, i) => {
    try {
      return normalizeNumber(n, defaultRegion);
    } catch (e) {
      if (e instanceof PcdError && numbers.length > 1) throw new PcdError(e.code, `number ${i + 1}: ${e.message}`);
      throw e;
    }
  });
}

/** A batch size is a whole number from 1 to LIMITS.maxBatch; anything else is invalid_field, never rounded. */
export function checkBatchSize(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > LIMITS.maxBatch) {
    throw new PcdError(ErrorCode.InvalidField, `the batch size must be a whole number from 1 to ${LIMITS.maxBatch}, got ${String(n).slice(0, 40)}`);
  }
  return n;
}

export function createClient(options: ClientOptions): Client {
  const baseUrl = normalizeServerUrl(options.baseUrl);
  const name = options.design ?? DEFAULT_DESIGN;
  // OHTTP (client/ohttp.ts): the blinded design's config, evaluate and bucket requests through the relay, the rest direct.
  const viaRelay = relayFetchFor(name, options.relay);
  const transport = options.transport ?? createTransport({ baseUrl, token: options.token, format: options.format, timeoutMs: options.timeoutMs, fetch: viaRelay });
  const design = CLIENT_DESIGNS[name](transport, {
    backend: options.backend,
    allowOprf: options.allowOprf,
    pins: (options.pins ?? new KeyPins(options.pinFile)).scope(baseUrl),
    issuer: transport,
    tokens: options.tokens,
    // Through a relay the buckets come through it from the API: a static host would be fetched directly (docs/protocol.md).
    staticBuckets: viaRelay === undefined,
  });
  const batch = checkBatchSize(options.batchSize ?? LIMITS.maxBatch);

  const lookupNormalized = async (numbers: readonly E164[], signal?: AbortSignal): Promise<LookupResult[]> => {
    const out: LookupResult[] = [];
    for (let i = 0; i < numbers.length; i += batch) {
      out.push(...(await design.lookupBatch(numbers.slice(i, i + batch), { signal })));
    }
    return out;
  };

  return {
    design,
    transport,
    async lookup(number, opts) {
      const [r] = await lookupNormalized([normalizeNumber(number, options.defaultRegion)], opts?.signal);
      return r!;
    },
    lookupMany(numbers, opts) {
      return lookupNormalized(normalizeList(numbers, options.defaultRegion), opts?.signal);
    },
    async health() {
      const { body } = await transport.request({ method: 'GET', path: PATHS.health, reply: HealthReply, auth: false });
      return body!;
    },
  };
}

/** Admin calls: create and delete accounts, rotate the blinded design's key, mint a link to the page's log view. */
export function createAdminClient(options: { baseUrl: string; adminToken: string; format?: Format }) {
  const t = createTransport({ baseUrl: options.baseUrl, token: options.adminToken, format: options.format });
  return {
    async createAccount(account: CreateAccountRequest): Promise<CreateAccountReply> {
      return (await t.request({ method: 'POST', path: PATHS.accounts, body: account, reply: CreateAccountReply })).body!;
    },
    async deleteAccount(accountId: number): Promise<void> {
      await t.request({ method: 'DELETE', path: PATHS.account(accountId), reply: OkReply, auth: true });
    },
    async rotateKey(params: RotateKeyRequest = {}): Promise<RotateKeyReply> {
      return (await t.request({ method: 'POST', path: PATHS.adminRotate, body: params, reply: RotateKeyReply })).body!;
    },
    /** A new one-time link to the web page's log view (the server must serve the page: not --no-ui). */
    async pageLink(): Promise<string> {
      try {
        const { body } = await t.request({ method: 'POST', path: PATHS.adminPageLink, reply: PageLinkReply, auth: true });
        return normalizeServerUrl(options.baseUrl) + body!.path;
      } catch (e) {
        if (isPcdError(e, ErrorCode.NotFound)) throw new PcdError(ErrorCode.NotFound, `${normalizeServerUrl(options.baseUrl)} serves no web page (started with --no-ui?)`, { status: e.status });
        throw e;
      }
    },
  };
}
