/**
 * The Privacy Pass issuer and redeemer of the blinded design
 * (shared/tokens.ts; RFC 9576 architecture with the issuer and the
 * origin in one server, token type 0x0002).
 *
 * ## Issuance (RFC 9578 §6)
 *
 * `POST /v1/tokens`, authenticated by the account's bearer token. The
 * quota is the account's lookup allowance (server/ratelimit.ts), counted in
 * elements: a token of class c costs c. What the issuer keeps is
 * `token_issuance_log`: per account and day, the elements' worth issued;
 * nothing about the class or the time of day, and nothing that links a
 * token to its issuance (the signature is blind: RFC 9474 §1).
 *
 * BlindSign (RFC 9474 §4.3) is RSASP1 through node:crypto
 * (`privateDecrypt` with RSA_NO_PADDING: OpenSSL's CRT, about 0.3 ms), then
 * RSAVP1 of the result compared with the input, as the RFC requires before
 * a signature leaves (a fault in the private operation would leak the key).
 * blindrsa-ts signs with big numbers in JavaScript, about 455 ms a token.
 *
 * ## Redemption (RFC 9577 §2.2)
 *
 * `Authorization: PrivateToken token=<base64url>`; the header is parsed by
 * privacypass-ts and checked in this order, each failure a 401 with its
 * code and the challenge in WWW-Authenticate:
 *  1. one token of type 0x0002, of the exact length: else token_invalid
 *     (the common form read directly: tokenOfHeader);
 *  2. its token_key_id names a live key of ours: else token_key_unknown
 *     (a retired key's too: its spent tokens were purged with it);
 *  3. its challenge_digest is our challenge's: else token_invalid;
 *  4. the RSA-PSS signature verifies (RFC 9578 §6.4: RSASSA-PSS with
 *     SHA-384, MGF1 with SHA-384, a 48-byte salt, over the token input):
 *     else token_invalid (a forgery). Verified by node:crypto's OpenSSL
 *     directly (about 40 µs), where privacypass-ts's Origin.verify goes
 *     through WebCrypto's promise machinery (about 160 µs): the bench
 *     measured that difference as 0.82x against 0.85x for a single lookup.
 *     The two are checked to agree, on the RFC 9578 vectors, our tokens and
 *     forgeries (test/rfc9578-privacypass.test.ts);
 *  5. its class is the request's element count: else token_wrong_class;
 *  6. spending it inserts SHA-256(key id || nonce) into `spent_tokens`
 *     under a unique key: a second spend fails there, token_replayed. The
 *     store is behind an async interface (server/tokens/spent.ts: SQLite,
 *     or a Postgres shared by several nodes, where a token spent on one
 *     node is refused on every other).
 * A spent token is given back (its row deleted) when the request is then
 * refused (a bad element, an unknown epoch, a 503), as a rate-limit charge
 * is refunded. A spend that cannot be written (a full disk, an I/O error)
 * refuses the request with 503 and Retry-After (server/store.ts): a spend
 * kept only in memory could be replayed after a restart, so evaluate with
 * tokens does not answer unrecorded, where the account path's buffered log
 * lets it answer while the buffer has room.
 */
import crypto from 'node:crypto';
import { AuthorizationHeader, TOKEN_TYPES, Token, WWWAuthenticateHeader } from '@cloudflare/privacypass-ts';
import { bytesEqual } from '../../shared/bytes.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import {
  TOKEN_BYTES,
  TOKEN_REQUEST_BYTES,
  TOKEN_TYPE,
  challengeDigest,
  sizeClassFor,
  tokenChallenge,
} from '../../shared/tokens.ts';
import type { TokenKey, TokenKeys } from './keys.ts';
import type { SpentTokenStore } from './spent.ts';

/** Longest Authorization header read as a token: the base64url of a token is 472 characters. */
const MAX_TOKEN_HEADER = 1024;

/** Longest WWW-Authenticate value of a 401: about 14 challenges of RSA-2048 keys, half of node's 16 KB header limit. */
export const MAX_CHALLENGE_HEADER = 8 * 1024;

/**
 * The one form pcd's clients send (RFC 9577 §2.2.2): `PrivateToken token=<base64url of one token>`, the value
 * quoted or not and of exactly a type 0x0002 token's length (472 characters). It is decoded with Buffer and read
 * by privacypass-ts's Token.deserialize; every other form (parameters, several tokens) goes through the
 * library's whole header parser, whose JavaScript base64 took more time than the signature check.
 */
const ONE_TOKEN = /^\s*privatetoken\s+token\s*=\s*("?)([A-Za-z0-9_-]{472})\1\s*$/i;

/** The token of an Authorization header (a PrivateToken header, not longer than MAX_TOKEN_HEADER); throws when it does not hold exactly one. */
export function tokenOfHeader(authorization: string): Token {
  const m = ONE_TOKEN.exec(authorization);
  if (m) {
    // A fresh Uint8Array: Token.deserialize reads `bytes.buffer` from offset 0 (Buffer.from may return a view into a pool).
    return Token.deserialize(TOKEN_TYPES.BLIND_RSA, new Uint8Array(Buffer.from(m[2]!, 'base64url')));
  }
  // The scheme name is case-insensitive (RFC 9110 §11.1); the library matches it as written in RFC 9577.
  const parsed = AuthorizationHeader.parse(TOKEN_TYPES.BLIND_RSA, authorization.trim().replace(/^privatetoken/i, 'PrivateToken'));
  if (parsed.length !== 1 || !parsed[0]) throw new Error('not one token');
  return parsed[0].token;
}

/** What gives a spent token back when the request it paid for is refused. */
export type Refund = () => Promise<void> | void;

/** A token whose signature verified, not yet spent. */
export interface CheckedToken {
  readonly key: TokenKey;
  readonly nonceHash: Uint8Array;
}

/**
 * BlindSign, RFC 9474 §4.3: s = RSASP1(sk, m); m' = RSAVP1(pk, s); m' must equal m.
 * `blindedMsg` is the TokenRequest's blinded_msg (Nk bytes).
 */
export function blindSign(key: TokenKey, blindedMsg: Uint8Array): Uint8Array {
  let s: Buffer;
  try {
    // RSASP1 (RFC 8017 §5.2.1): "message representative out of range" when m >= n, which OpenSSL refuses too.
    s = crypto.privateDecrypt({ key: key.privateKey, padding: crypto.constants.RSA_NO_PADDING }, blindedMsg);
  } catch {
    throw new PcdError(ErrorCode.InvalidField, 'a token request\'s blinded message is not below the token key\'s modulus');
  }
  const back = crypto.publicEncrypt({ key: key.publicKey, padding: crypto.constants.RSA_NO_PADDING }, s);
  if (!bytesEqual(back, blindedMsg)) throw new PcdError(ErrorCode.Internal, 'signing failure (RFC 9474 §4.3): the signature did not verify');
  return new Uint8Array(s);
}

/** Step 4: RSASSA-PSS (SHA-384, MGF1-SHA-384, salt 48) of the token input under the key, RFC 9578 §6.4. */
export function verifyToken(key: Pick<TokenKey, 'publicKey'>, token: Token): boolean {
  try {
    return crypto.verify(
      'sha384',
      token.authInput.serialize(),
      { key: key.publicKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 },
      token.authenticator,
    );
  } catch {
    return false;
  }
}

export class TokenService {
  readonly challenge;
  private readonly digest: Uint8Array;

  constructor(
    readonly keys: TokenKeys,
    readonly spent: SpentTokenStore,
    readonly issuerName: string,
  ) {
    this.challenge = tokenChallenge(issuerName);
    this.digest = challengeDigest(this.challenge);
  }

  /**
   * The WWW-Authenticate value of a 401 (RFC 9577 §2.1): one challenge per
   * token key of `epoch` that could pay for a request of `elements` (the
   * bounds a Content-Length allows, {@link elementsBetween}), so at most a
   * few. Without bounds, the keys of the smallest classes that fit in
   * {@link MAX_CHALLENGE_HEADER} characters: 31 keys would not fit in the
   * 16 KB of headers node and most proxies accept, and a client finds them
   * all in `GET /v1/blinded/config`.
   */
  wwwAuthenticate(epoch: number, elements?: { min: number; max: number }): string {
    const keys = this.keys.of(epoch);
    const low = elements && sizeClassFor(elements.min, keys.map((k) => k.sizeClass));
    const high = elements && sizeClassFor(elements.max, keys.map((k) => k.sizeClass));
    const wanted = low === undefined ? keys : keys.filter((k) => k.sizeClass >= low && k.sizeClass <= (high ?? low));
    let value = '';
    for (const k of wanted) {
      const one = new WWWAuthenticateHeader(this.challenge, k.tokenKey).toString();
      if (value && value.length + 2 + one.length > MAX_CHALLENGE_HEADER) break;
      value = value ? `${value}, ${one}` : one;
    }
    return value;
  }

  /** Issues one TokenResponse per TokenRequest with `epoch`'s key of `sizeClass` (quota charged by the caller). */
  issue(epoch: number, sizeClass: number, requests: readonly Uint8Array[]): Uint8Array[] {
    const key = this.keys.get(epoch, sizeClass);
    if (!key) {
      const classes = this.keys.of(epoch).map((k) => k.sizeClass);
      throw new PcdError(
        classes.length === 0 ? ErrorCode.UnknownEpoch : ErrorCode.InvalidField,
        classes.length === 0 ? `epoch ${epoch} has no token keys (not a live epoch, or its keys are still being made)` : `epoch ${epoch} has no size class ${sizeClass}: its classes are ${classes.join(', ')}`,
      );
    }
    const truncated = key.keyId[key.keyId.length - 1]!;
    return requests.map((r, i) => {
      // TokenRequest, RFC 9578 §6.1: token_type (0x0002) || truncated_token_key_id || blinded_msg.
      if (r.length !== TOKEN_REQUEST_BYTES || ((r[0]! << 8) | r[1]!) !== TOKEN_TYPE) {
        throw new PcdError(ErrorCode.InvalidField, `requests[${i}]: not a TokenRequest of type 0x0002`);
      }
      // §6.3: the issuer MUST check that truncated_token_key_id is the last byte of its key's id.
      if (r[2] !== truncated) throw new PcdError(ErrorCode.InvalidField, `requests[${i}]: made for another token key than epoch ${epoch}'s class ${sizeClass}`);
      return blindSign(key, r.subarray(3));
    });
  }

  /** Steps 1-4 of the module header; throws a 401 PcdError with the challenge of `epoch` (the current one). */
  async check(authorization: string | undefined, challengeEpoch: number, elements?: { min: number; max: number }): Promise<CheckedToken> {
    const refuse = (code: ErrorCode, message: string): never => {
      throw new PcdError(code, message, { wwwAuthenticate: this.wwwAuthenticate(challengeEpoch, elements) });
    };
    if (authorization === undefined || !/^\s*privatetoken\s/i.test(authorization)) {
      return refuse(ErrorCode.TokenRequired, 'this endpoint takes a Privacy Pass token (Authorization: PrivateToken token=…, RFC 9577); the WWW-Authenticate header has the challenge and token keys');
    }
    if (authorization.length > MAX_TOKEN_HEADER) return refuse(ErrorCode.TokenInvalid, `the Authorization header is ${authorization.length} characters, longer than any token`);
    let token: Token;
    try {
      token = tokenOfHeader(authorization);
    } catch {
      return refuse(ErrorCode.TokenInvalid, 'the Authorization header does not hold one PrivateToken token of type 0x0002 (RFC 9577 §2.2.2)');
    }
    const a = token.authInput;
    if (a.tokenType !== TOKEN_TYPE || token.serialize().length !== TOKEN_BYTES) return refuse(ErrorCode.TokenInvalid, 'the token is not of type 0x0002 (Blind RSA-2048)');
    const key = this.keys.byKeyId(a.tokenKeyId);
    if (!key) return refuse(ErrorCode.TokenKeyUnknown, 'the token was issued under a key this server does not know or has retired: fetch tokens of a current key');
    if (!bytesEqual(a.challengeDigest, this.digest)) return refuse(ErrorCode.TokenInvalid, 'the token was made for another challenge (issuer name or origin)');
    const ok = verifyToken(key, token);
    if (!ok) return refuse(ErrorCode.TokenInvalid, 'the token\'s signature does not verify under its token key');
    const nonceHash = crypto.createHash('sha256').update(a.tokenKeyId).update(a.nonce).digest();
    return { key, nonceHash: new Uint8Array(nonceHash) };
  }

  /**
   * Step 6: records the spend, or rejects with token_replayed (or the store's 503); resolves to what gives it
   * back (a refund the caller runs best-effort: it may reject when the store cannot be written).
   */
  async spend(t: CheckedToken, challengeEpoch: number): Promise<Refund> {
    if (!(await this.spent.spend(t))) {
      const n = t.key.sizeClass;
      throw new PcdError(ErrorCode.TokenReplayed, 'this token was spent before: each token pays for one request', { wwwAuthenticate: this.wwwAuthenticate(challengeEpoch, { min: n, max: n }) });
    }
    return () => this.spent.unspend(t);
  }

  /**
   * An epoch's keys retire with it: their tokens are refused from now on (before this returns its promise), then
   * their spent tokens are purged from the store; resolves to how many were purged.
   */
  async retire(epoch: number): Promise<number> {
    const ids = await this.keys.retire(epoch); // dropped from memory before its first await
    let purged = 0;
    for (const id of ids) purged += await this.spent.purge(id);
    return purged;
  }
}
