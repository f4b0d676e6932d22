/**
 * Anonymous requesters for the blinded design: Privacy Pass tokens
 * (RFC 9576 architecture, RFC 9577 HTTP authentication scheme, RFC 9578
 * issuance) in place of the account on `POST /v1/blinded/evaluate`.
 *
 *   issue    POST /v1/tokens (account)  { epoch, sizeClass, requests: [TokenRequest] } -> { responses: [TokenResponse] }
 *   redeem   POST /v1/blinded/evaluate  Authorization: PrivateToken token=<base64url Token>   (no account)
 *   refuse   401 { error: { code: token_* } }  WWW-Authenticate: PrivateToken challenge=…, token-key=…
 *
 * Token type 0x0002 (Blind RSA, 2048-bit, RSABSSA-SHA384-PSS-Deterministic,
 * RFC 9578 §6): publicly verifiable, so an evaluator needs only the public
 * key. The formats, the challenge and the client's blinding and
 * finalisation are @cloudflare/privacypass-ts's; the server signs with
 * node:crypto (server/tokens/).
 *
 * ## Size classes hide the count
 *
 * One token key per size class and epoch. A request of n elements is padded
 * with dummy blinded elements (uniformly random group elements, as real
 * ones are) to the smallest class >= n, and spends one token of that class.
 * The server's log then holds a class, not a count. The default classes
 * are the powers of two up to 64, then four steps per doubling
 * (64 * 2^(k/4), rounded: 76, 91, 108, 128, 152, ... 4096), 31 in all:
 *  - a single lookup is class 1 and costs nothing extra;
 *  - below 64 elements a request's fixed cost (its token, its proof, its
 *    round trip) is a large part of the whole, so doubling steps cost
 *    little and keep the classes few;
 *  - above 64 the evaluation is nearly all of a request's cost, so padding
 *    is lost throughput one for one. A step of 2^(1/4) pads by at most
 *    1.19x, so every sync of more than 64 stays within 15 % of the account
 *    path counting only the elements asked for (the bench measured the
 *    token path at 1.04x per element sent: 1.04 / 1.19 = 0.87). With
 *    powers of two, a sync of 100 padded to 128 ran at 0.82x.
 * So the count is known to within a factor of two below 64 and to within
 * 19 % above. Coarser classes (`--size-classes`) hide more and pad more
 * (README, "Anonymous requesters").
 *
 * ## The challenge
 *
 * The redemption context is empty and the origin info fixed
 * (RFC 9577 §2.1.1-2.1.2): every token of a server is made for the same
 * challenge, so a client can fetch tokens long before it spends them, and
 * issuance time says nothing about lookup time. Double spending is stopped
 * by the server's spent-token store (RFC 9577 §2.3), not by the context.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { TOKEN_TYPES, TokenChallenge } from '@cloudflare/privacypass-ts';
import { ErrorCode } from './errors.ts';
import { LIMITS } from './limits.ts';
import { array, bytes, integer, object, string, type Infer } from './schema.ts';

/** Token type 0x0002, Blind RSA (2048-bit), RFC 9578 §6. */
export const TOKEN_TYPE = TOKEN_TYPES.BLIND_RSA.value;
/** Nk: the authenticator (an RSA-2048 signature), RFC 9578 §6. */
export const TOKEN_AUTHENTICATOR_BYTES = TOKEN_TYPES.BLIND_RSA.Nk;
/** TokenRequest: token_type (2) || truncated_token_key_id (1) || blinded_msg (Nk), RFC 9578 §6.1. */
export const TOKEN_REQUEST_BYTES = 2 + 1 + TOKEN_AUTHENTICATOR_BYTES;
/** TokenResponse: blind_sig (Nk), RFC 9578 §6.2. */
export const TOKEN_RESPONSE_BYTES = TOKEN_AUTHENTICATOR_BYTES;
/** Token: token_type (2) || nonce (32) || challenge_digest (32) || token_key_id (32) || authenticator (Nk), RFC 9577 §2.2. */
export const TOKEN_BYTES = 2 + 32 + 32 + 32 + TOKEN_AUTHENTICATOR_BYTES;
/** A token key: the RSASSA-PSS SubjectPublicKeyInfo of RFC 9578 §6.5 (342 bytes for RSA-2048); bounded for the schema. */
export const MAX_TOKEN_KEY_BYTES = 1024;

/** The origin info every pcd challenge carries: tokens are for the blinded evaluate endpoint and nothing else. */
export const TOKEN_ORIGIN_INFO = 'pcd-blinded-evaluate';
/** The issuer name a server uses unless configured (`--token-issuer`). */
export const DEFAULT_ISSUER_NAME = 'pcd.issuer';

/** Below this many elements the default classes double; above it they take four steps per doubling (module header: why). */
export const FINE_CLASSES_FROM = 64;

/** 1, 2, 4, ... 64, then 64 * 2^(k/4) rounded, up to LIMITS.maxBatch: 31 classes (module header: why). */
export const DEFAULT_SIZE_CLASSES: readonly number[] = [
  ...Array.from({ length: Math.log2(FINE_CLASSES_FROM) + 1 }, (_, i) => 2 ** i),
  ...Array.from({ length: 4 * Math.log2(LIMITS.maxBatch / FINE_CLASSES_FROM) }, (_, k) => Math.round(FINE_CLASSES_FROM * 2 ** ((k + 1) / 4))),
];

/** Tokens one issuance request may ask for. */
export const MAX_TOKENS_PER_REQUEST = 64;

/** The smallest class that holds `n` elements; undefined when none does. */
export function sizeClassFor(n: number, classes: readonly number[]): number | undefined {
  let best: number | undefined;
  for (const c of classes) if (c >= n && (best === undefined || c < best)) best = c;
  return best;
}

/** A list of size classes: distinct integers from 1 to LIMITS.maxBatch, ascending, the largest being LIMITS.maxBatch. Returns an error message, or undefined. */
export function sizeClassProblem(classes: readonly number[]): string | undefined {
  if (classes.length === 0 || classes.length > 32) return 'give 1 to 32 size classes';
  for (let i = 0; i < classes.length; i++) {
    const c = classes[i]!;
    if (!Number.isInteger(c) || c < 1 || c > LIMITS.maxBatch) return `a size class is a whole number from 1 to ${LIMITS.maxBatch}, got ${c}`;
    if (i > 0 && c <= classes[i - 1]!) return 'size classes must be ascending and distinct';
  }
  if (classes.at(-1) !== LIMITS.maxBatch) return `the largest size class must be ${LIMITS.maxBatch}, so that every request fits one`;
  return undefined;
}

/** The challenge of every token a server issues (module header): type 0x0002, its issuer name, empty redemption context, the fixed origin info. */
export function tokenChallenge(issuerName: string): TokenChallenge {
  return new TokenChallenge(TOKEN_TYPE, issuerName, new Uint8Array(0), [TOKEN_ORIGIN_INFO]);
}

/** challenge_digest = SHA-256(TokenChallenge), RFC 9577 §2.2. */
export function challengeDigest(challenge: TokenChallenge): Uint8Array {
  return sha256(challenge.serialize());
}

/** token_key_id = SHA-256(token key), RFC 9578 §6.5; the TokenRequest carries its last byte (§6.1). */
export function tokenKeyId(tokenKey: Uint8Array): Uint8Array {
  return sha256(tokenKey);
}

export const TOKEN_PATHS = {
  tokens: '/v1/tokens',
} as const;

const epochId = integer({ min: 1, max: 2 ** 31 - 1 });

// In GET /v1/blinded/config, per epoch: tokenKeys: [{ sizeClass, tokenKey: bin(SPKI) }] (absent when the server takes accounts)
export const TokenKeyInfo = object({
  sizeClass: integer({ min: 1, max: LIMITS.maxBatch }),
  tokenKey: bytes({ max: MAX_TOKEN_KEY_BYTES }),
});
export type TokenKeyInfo = Infer<typeof TokenKeyInfo>;
export const TokenKeyList = array(TokenKeyInfo, { max: 32 });

// In GET /v1/blinded/config: auth: 'token' | 'account', issuer: str (the challenge's issuer name, with auth 'token')
export const IssuerName = string({ max: 255, min: 1, pattern: /^[\x21-\x7e]+$/, what: 'an issuer name (printable ASCII)' });

// POST /v1/tokens { epoch, sizeClass, requests: [bin(259)] } -> { responses: [bin(256)] }
export const TokensRequest = object({
  epoch: epochId,
  sizeClass: integer({ min: 1, max: LIMITS.maxBatch }),
  requests: array(bytes({ length: TOKEN_REQUEST_BYTES, requestCode: ErrorCode.InvalidField }), { max: MAX_TOKENS_PER_REQUEST, min: 1 }),
});
export type TokensRequest = Infer<typeof TokensRequest>;
export const TokensReply = object({
  responses: array(bytes({ length: TOKEN_RESPONSE_BYTES }), { max: MAX_TOKENS_PER_REQUEST }),
});
export type TokensReply = Infer<typeof TokensReply>;

/** How the blinded evaluate endpoint knows its caller: a Privacy Pass token (default) or the account's bearer token. */
export const BLINDED_AUTHS = ['token', 'account'] as const;
export type BlindedAuth = (typeof BLINDED_AUTHS)[number];
/** A server's blinded auth unless configured (`--blinded-auth`): tokens, so that the evaluation log names no account. */
export const DEFAULT_BLINDED_AUTH: BlindedAuth = 'token';
