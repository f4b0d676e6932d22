/**
 * Error codes of the pcd protocol: one code, one HTTP status, one body shape.
 *
 * Every error the server sends is `{ error: { code, message } }` with the
 * status from {@link STATUS}; the client turns that body back into the same
 * {@link PcdError}, so callers branch on `code`, never on message text.
 * Client-only failures (a proof that does not verify, a malformed reply) use
 * the same class with codes the server never sends.
 */

export const ErrorCode = {
  // 400: the request is malformed
  BadRequest: 'bad_request',
  MalformedBody: 'malformed_body',
  InvalidField: 'invalid_field',
  InvalidNumber: 'invalid_number',
  InvalidElement: 'invalid_element',
  TooManyItems: 'too_many_items',
  // 401/403: who is asking
  Unauthenticated: 'unauthenticated',
  Forbidden: 'forbidden',
  /** Privacy Pass (RFC 9577): the request carries no token; the reply's WWW-Authenticate holds the challenge and token keys. */
  TokenRequired: 'token_required',
  /** A token that does not parse or whose signature does not verify (a forgery), or one made for another challenge. */
  TokenInvalid: 'token_invalid',
  /** A token already spent (its nonce hash is in the spent store). */
  TokenReplayed: 'token_replayed',
  /** A token of a key this server does not know, or of a retired one. */
  TokenKeyUnknown: 'token_key_unknown',
  /** A token of another size class than the request's element count. */
  TokenWrongClass: 'token_wrong_class',
  // 404/405/409/410
  NotFound: 'not_found',
  DesignDisabled: 'design_disabled',
  UnknownEpoch: 'unknown_epoch',
  MethodNotAllowed: 'method_not_allowed',
  Conflict: 'conflict',
  EpochRetired: 'epoch_retired',
  /** The request's headers or body did not arrive in time (server/net.ts). */
  RequestTimeout: 'request_timeout',
  // 406/413/415/429
  NotAcceptable: 'not_acceptable',
  BodyTooLarge: 'body_too_large',
  HeadersTooLarge: 'headers_too_large',
  UnsupportedMediaType: 'unsupported_media_type',
  RateLimited: 'rate_limited',
  // 500/503
  Internal: 'internal',
  Unavailable: 'unavailable',
  // client side only: what the client found wrong with a server's reply
  ProofInvalid: 'proof_invalid',
  MalformedReply: 'malformed_reply',
  /** The server published another public key for an epoch the client has pinned (client/designs/blinded.ts). */
  KeyChanged: 'key_changed',
  /** The server showed this client another view than before for something pinned: a root or a token key of a known epoch, an OHTTP key config. */
  ViewChanged: 'view_changed',
  /** A bucket whose Merkle path does not lead to its epoch's published root (a doctored or dropped tag). */
  BucketUnproven: 'bucket_unproven',
  /** The client's token pool for a size class is empty and could not be refilled. */
  TokensExhausted: 'tokens_exhausted',
  Network: 'network',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The one table from code to HTTP status. */
export const STATUS: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  malformed_body: 400,
  invalid_field: 400,
  invalid_number: 400,
  invalid_element: 400,
  too_many_items: 400,
  unauthenticated: 401,
  token_required: 401,
  token_invalid: 401,
  token_replayed: 401,
  token_key_unknown: 401,
  token_wrong_class: 401,
  forbidden: 403,
  not_found: 404,
  design_disabled: 404,
  unknown_epoch: 404,
  method_not_allowed: 405,
  not_acceptable: 406,
  request_timeout: 408,
  conflict: 409,
  epoch_retired: 410,
  body_too_large: 413,
  headers_too_large: 431,
  unsupported_media_type: 415,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
  proof_invalid: 502,
  malformed_reply: 502,
  key_changed: 502,
  view_changed: 502,
  bucket_unproven: 502,
  tokens_exhausted: 503,
  // No HTTP status: no server answered (refused, unresolvable, cut off, timed out), so none is claimed.
  network: 0,
};

const CODES = new Set<string>(Object.values(ErrorCode));

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && CODES.has(value);
}

/** Characters of a client's input an error message echoes at most ({@link quoteInput}). */
export const MAX_ECHO_CHARS = 64;

/**
 * A client's input as an error message may quote it: at most
 * {@link MAX_ECHO_CHARS} characters (an ellipsis marks the cut), in double
 * quotes with JSON's escapes, and `<`, `>`, `&` escaped too, so no message
 * carries markup or control characters, however it is shown. Every message
 * that names what a client sent (a header, a path segment, a field) goes
 * through it.
 */
export function quoteInput(value: unknown, max: number = MAX_ECHO_CHARS): string {
  const text = typeof value === 'string' ? value : value === undefined ? 'undefined' : String(value);
  const chars = Array.from(text); // whole code points: a cut never splits a surrogate pair
  const cut = chars.length > max ? chars.slice(0, max).join('') + '…' : text;
  return JSON.stringify(cut).replace(/[<>&]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Wire layout of every error reply. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

export class PcdError extends Error {
  override readonly name = 'PcdError';
  readonly code: ErrorCode;
  /** HTTP status: the one from {@link STATUS}, or what the server actually sent; 0 for `network`, where no server answered. */
  readonly status: number;
  /** For 429 and 503: when to try again, in whole seconds (the server sends it as Retry-After). */
  readonly retryAfterSeconds: number | undefined;
  /** For a 401 of a token-authenticated endpoint: the WWW-Authenticate challenge the server sends with it (RFC 9577 §2.1). */
  readonly wwwAuthenticate: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { status?: number; cause?: unknown; retryAfterSeconds?: number; wwwAuthenticate?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options?.status ?? STATUS[code];
    const r = options?.retryAfterSeconds;
    this.retryAfterSeconds = r === undefined ? undefined : Math.max(1, Math.ceil(r));
    this.wwwAuthenticate = options?.wwwAuthenticate;
  }

  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

/** Narrowing guard, after libsignal's `is(error, code)`. */
export function isPcdError<C extends ErrorCode>(e: unknown, code?: C): e is PcdError & { code: C } {
  return e instanceof PcdError && (code === undefined || e.code === code);
}

/** Reads an error body sent by a server; anything else is a malformed reply. */
export function errorFromBody(status: number, body: unknown): PcdError {
  if (typeof body === 'object' && body !== null && 'error' in body) {
    const err = (body as { error: unknown }).error;
    if (typeof err === 'object' && err !== null) {
      const { code, message } = err as { code?: unknown; message?: unknown };
      if (isErrorCode(code) && typeof message === 'string') {
        return new PcdError(code, message, { status });
      }
    }
  }
  return new PcdError(ErrorCode.MalformedReply, `server answered HTTP ${status} without a pcd error body`, {
    status,
  });
}
