/**
 * The two interfaces every design implements, one file per side:
 * `client/designs/<name>.ts` implements {@link ClientDesign} and
 * `server/designs/<name>.ts` implements {@link ServerDesign}. The express app,
 * the client library, the CLI, the tests and the benchmarks are written once
 * over these; adding a design is adding one file on each side.
 *
 * Nothing here touches sockets or disk: the server side describes its routes
 * as data (method, path, who may call, request schema, handler) and the
 * server's app turns them into express routes with the body limits, content
 * negotiation, authentication and error mapping they all share.
 */
import type { CapabilityMask } from './capabilities.ts';
import type { E164 } from './e164.ts';
import type { DesignName } from './messages.ts';
import type { Schema } from './schema.ts';
import type { BackendName, OprfBackend } from './suite.ts';

// ---------------------------------------------------------------- client side

export interface RequestOptions<T> {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  body?: unknown;
  /** Schema of a 2xx reply body. */
  reply: Schema<T>;
  /** Send the requester token (default true for POST). */
  auth?: boolean;
  /** An Authorization header of its own, sent instead of the requester token: a Privacy Pass token (`PrivateToken token=…`, RFC 9577). */
  authorization?: string;
  /** Conditional GET: an ETag the caller holds. */
  ifNoneMatch?: string;
  signal?: AbortSignal;
}

export interface TransportReply<T> {
  status: number;
  /** Undefined on 304 Not Modified. */
  body: T | undefined;
  etag: string | undefined;
  /** Bytes of the request and reply bodies, for bandwidth accounting. */
  bytesSent: number;
  bytesReceived: number;
}

/** What a client design uses to talk to the server: one HTTP exchange, errors typed. */
export interface Transport {
  request<T>(options: RequestOptions<T>): Promise<TransportReply<T>>;
}

export interface LookupResult {
  number: E164;
  /** Capability names; empty means not registered: SMS only. */
  capabilities: string[];
}

/**
 * One lookup exchange a design has prepared: the request to send and what
 * turns its reply into answers. Preparing is everything done before the
 * numbers' request leaves (plain: nothing; hashed: hashing; blinded: the
 * config, the tag cache and blinding); finishing is everything after
 * (checking the reply; blinded: the proof, finalising, the buckets).
 */
export interface PreparedLookup {
  /** The lookup request (plain or hashed lookup, blinded evaluate), or undefined when nothing needs asking (every tag cached). */
  readonly request: RequestOptions<unknown> | undefined;
  /** The answers for the prepared numbers, in order, from the reply to `request` (undefined when there was none). */
  finish(reply: TransportReply<unknown> | undefined, options?: { signal?: AbortSignal }): Promise<LookupResult[]>;
}

export interface ClientDesign {
  readonly name: DesignName;
  /**
   * Prepares the lookup of normalised numbers (at most LIMITS.maxBatch). The
   * benchmark sends prepared requests itself, so that what it measures is
   * the server's work.
   */
  prepare(numbers: readonly E164[], options?: { signal?: AbortSignal }): Promise<PreparedLookup>;
  /**
   * Answers for normalised numbers, in order, duplicates included: prepare,
   * send, finish (a design may retry, e.g. blinded after a key rotation).
   * Numbers arrive in batches of at most LIMITS.maxBatch. A reply the design
   * cannot trust (a failed proof, an unknown epoch, a malformed bucket) is
   * thrown as a PcdError, never turned into "SMS only".
   */
  lookupBatch(numbers: readonly E164[], options?: { signal?: AbortSignal }): Promise<LookupResult[]>;
}

/** prepare, send, finish: one lookup exchange through a transport. */
export async function lookupOnce(design: ClientDesign, transport: Transport, numbers: readonly E164[], signal?: AbortSignal): Promise<LookupResult[]> {
  const prepared = await design.prepare(numbers, { signal });
  const reply = prepared.request ? await transport.request({ ...prepared.request, signal }) : undefined;
  return prepared.finish(reply, { signal });
}

/** What a client design may be given besides its transport. */
export interface ClientDesignOptions {
  /** Crypto backend for designs that blind (default: DEFAULT_BACKEND, shared/suite.ts). */
  backend?: BackendName | OprfBackend;
  /** Designs with a verifiable mode: accept a server that runs the unverifiable one (blinded: OPRF mode; default false). */
  allowOprf?: boolean;
  /** Designs that pin server keys: the pins for this server (client/designs/blinded-pins.ts KeyPins.scope). */
  pins?: PinScope;
  /** Designs paid with Privacy Pass tokens (blinded, auth 'token'): the transport to the issuer, direct with the account's bearer token. */
  issuer?: Transport;
  /**
   * Designs with buckets (blinded): fetch them from the static host the
   * config names, when it names one (default true). False through an OHTTP
   * relay: the static host is fetched directly and would see the client's address.
   */
  staticBuckets?: boolean;
  /** Their token pool's options (client/tokens.ts TokenPoolOptions). */
  tokens?: {
    ahead?: Readonly<Record<number, number>>;
    quantum?: Readonly<Record<number, number>>;
    periodMs?: number;
    maxHeld?: number;
    whenEmpty?: 'fetch' | 'fail';
  };
}

/** What one server showed this client of an epoch in a config: its key, and its bucket tree's root at a directory version (shared/merkle.ts). */
export interface PinnedEpoch {
  epoch: number;
  publicKey: Uint8Array;
  root: Uint8Array;
  version: number;
}

/** The pinned epoch keys of one server, and the bucket roots it showed per (epoch, version). */
export interface PinScope {
  /**
   * Checks every listed epoch's key against its pin and pins the new ones
   * (a changed key is a `key_changed` PcdError), and its root against the
   * root seen before for the same (epoch, version), keeping the new ones
   * (another root is `view_changed`); nothing is pinned when either fails.
   */
  check(epochs: readonly PinnedEpoch[]): void;
  /** The root this server showed for `epoch` at directory `version`, if this client saw it. */
  root(epoch: number, version: number): Uint8Array | undefined;
  /** Keeps the root a bucket reply showed for (epoch, version), or throws `view_changed` when another was seen before. */
  keepRoot(epoch: number, version: number, root: Uint8Array): void;
}

export type ClientDesignFactory = (transport: Transport, options?: ClientDesignOptions) => ClientDesign;

// ---------------------------------------------------------------- server side

/** The authenticated account behind a requester token. */
export interface Requester {
  accountId: number;
  email: string;
}

export interface RouteInput<Req, Who extends Requester | undefined = Requester | undefined> {
  body: Req;
  /** Path parameters, still raw strings: the handler parses them. */
  params: Readonly<Record<string, string>>;
  /** The authenticated requester on an `auth: 'requester'` route; undefined on the others. */
  requester: Who;
  /** The requester's IP address as the server sees it. */
  ip: string;
  ifNoneMatch: string | undefined;
}

/** What {@link RequesterRoute.admit} knows: who asks, and the declared body size (absent for a chunked body). */
export interface AdmitInput {
  requester: Requester;
  contentLength: number | undefined;
  ip: string;
}

export interface RouteReply<Res> {
  status?: number;
  /** Absent for 304. */
  body?: Res;
  etag?: string;
  cacheControl?: string;
}

interface RouteCommon<Req> {
  method: 'GET' | 'POST' | 'DELETE';
  /** express 5 path: a PATHS string, or a PATHS template's `.pattern` ('/v1/blinded/buckets/:epoch/:bucket'). */
  path: string;
  /** Request body schema (POST). */
  request?: Schema<Req>;
}

/** A route anyone, or only the admin token, may call: its handler has no requester. */
export interface OpenRoute<Req = unknown, Res = unknown> extends RouteCommon<Req> {
  auth: 'anyone' | 'admin';
  handle(input: RouteInput<Req, undefined>): RouteReply<Res> | Promise<RouteReply<Res>>;
}

/** A route that needs a requester token: its handler is given the authenticated requester. */
export interface RequesterRoute<Req = unknown, Res = unknown> extends RouteCommon<Req> {
  auth: 'requester';
  /** Lookups this request costs the requester's rate limit (numbers, hashes or elements). */
  cost?: (body: Req) => number;
  /**
   * Load admission before the body is read or decoded: throws a PcdError
   * (503 with retryAfterSeconds) to refuse, from what the headers say, so a
   * flood costs no decoding.
   */
  admit?: (input: AdmitInput) => void;
  handle(input: RouteInput<Req, Requester>): RouteReply<Res> | Promise<RouteReply<Res>>;
}

/** A token checked by a {@link TokenRoute} (signature, key, challenge), not yet spent. */
export interface CheckedPayment<Req> {
  /**
   * Checks the decoded body against the token (its size class) and spends it, or rejects; resolves to what gives
   * it back when the request is then refused (best-effort: the caller logs its failure).
   */
  spend(body: Req): Promise<() => Promise<void> | void>;
}

/**
 * A route paid with a Privacy Pass token (RFC 9577) instead of an account
 * (the blinded design's evaluate with auth 'token', server/tokens/): its
 * handler has no requester. The token is checked from the headers alone,
 * before the body is read, and spent after the body is checked.
 */
export interface TokenRoute<Req = unknown, Res = unknown> extends RouteCommon<Req> {
  auth: 'token';
  /** Checks the Authorization header's token; throws a 401 PcdError (with its WWW-Authenticate challenge, for a body of `contentLength` bytes when declared) when it is missing or not good. */
  checkToken(authorization: string | undefined, contentLength: number | undefined): Promise<CheckedPayment<Req>>;
  /** Load admission before the body is read, as {@link RequesterRoute.admit}, with no requester. */
  admit?: (input: { contentLength: number | undefined; ip: string }) => void;
  handle(input: RouteInput<Req, undefined>): RouteReply<Res> | Promise<RouteReply<Res>>;
}

export type Route<Req = unknown, Res = unknown> = OpenRoute<Req, Res> | RequesterRoute<Req, Res> | TokenRoute<Req, Res>;

/** Erases a route's type parameters so routes of several shapes sit in one list. */
export function route<Req, Res>(r: Route<Req, Res>): Route<any, any> {
  return r;
}

/** One directory change: the number now has `mask` (0: no longer registered). */
export interface DirectoryChange {
  number: E164;
  mask: CapabilityMask;
}

export interface ServerDesign {
  readonly name: DesignName;
  readonly routes: readonly Route<any, any>[];
  /**
   * Applies directory changes before the admin call that made them returns,
   * so the very next lookup sees them.
   */
  onDirectoryChange(changes: readonly DirectoryChange[]): void | Promise<void>;
  /**
   * Settles once the design answers (absent: at once). The server listens
   * before: a design that loads or builds in the background answers 503
   * with Retry-After until then, and the others serve meanwhile.
   */
  readonly ready?: Promise<void>;
  /**
   * Writes the design's own index snapshot, stamped with the directory
   * version and digest it reflects, beside the directory snapshot and at the
   * same moments (server/designs/hashed.ts). Absent: the design keeps none.
   */
  writeSnapshot?(stamp: { version: number; digest: Uint8Array }): void;
  /** False when the design has a snapshot of its own but built its index without it at start: the server then writes one. */
  readonly snapshotLoaded?: boolean;
  /** Flushes what the design buffers (its query log) and releases resources. */
  close(): Promise<void>;
}
