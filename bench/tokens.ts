/**
 * Privacy Pass tokens for the benchmark (shared/tokens.ts, server/tokens/):
 * minting the tokens the load spends, the token requests issuance is fed,
 * the padding to size classes over mixes of request sizes, and the targets
 * of the issue judged from a run.
 *
 * ## Why the benchmark mints its own tokens
 *
 * A token is single-use, so a phase of 10 s at 1,500 single lookups a
 * second spends 15,000 of them. Through the client library each costs ~40
 * ms (blindrsa-ts: ~35 ms to make the request, ~5 ms to finalise), ten
 * minutes of CPU on the cores the server is measured on. So the benchmark
 * signs token inputs itself with the issuer's private key, read from the
 * server child's data folder (`token-keys.json`, through server/tokens/keys.ts
 * as the server reads it): a real token is the same RSA-PSS signature over
 * the same token input (RFC 9578 §6: RSABSSA-SHA384-PSS-Deterministic, the
 * signature unblinded is an ordinary RSASSA-PSS one), made blindly. The
 * server cannot tell them apart and does the same work to redeem either.
 * One minted token of each key is checked with the library's own
 * verification (privacypass-ts `publicVerif.Origin.verify`) before any is
 * used, and a tampered one must fail it.
 *
 * Minting (~1-2 ms a token, OpenSSL) happens between load slices, never
 * while the clock runs, in libuv's pool (node:crypto's async sign), as much
 * as each slice is expected to spend (bench/http.ts).
 *
 * ## Issuance without a client
 *
 * POST /v1/tokens is fed prepared TokenRequests (RFC 9578 §6.1): type
 * 0x0002, the truncated key id of the class's key, and a random 256-byte
 * blinded message below the modulus, which is what a blinded message is to
 * the server (a uniformly random residue): BlindSign costs it the same.
 */
import crypto from 'node:crypto';
import { AuthenticatorInput, AuthorizationHeader, TOKEN_TYPES, Token, publicVerif } from '@cloudflare/privacypass-ts';
import { LIMITS } from '../shared/limits.ts';
import { bytesEqual } from '../shared/bytes.ts';
import { TOKEN_AUTHENTICATOR_BYTES, TOKEN_ORIGIN_INFO, TOKEN_REQUEST_BYTES, TOKEN_TYPE, challengeDigest, sizeClassFor, tokenChallenge, type TokenKeyInfo } from '../shared/tokens.ts';
import { TokenKeys, type TokenKey } from '../server/tokens/keys.ts';
import { tokenKeyFilePath } from '../disk/tokenkeys.ts';
import { DEFAULT_POPULATION, generatePopulation, type PopulationOptions } from '../workload/population.ts';
import { normalQuantile } from '../workload/rng.ts';
import { DEFAULT_SCRIPT, generateScript, type ScriptOptions } from '../workload/script.ts';
import type { BenchResults, CryptoMark, HttpMark, PaddingRow, ScaleTarget } from './results.ts';

/** The crypto section's token operations (bench/crypto.ts); the report and the targets find the marks by them. */
export const TOKEN_OPS = {
  check: 'token redemption check (TokenService.check: parse, key lookup, challenge digest, RSA-PSS verify)',
  spend: 'token spend (SpentTokens.spend: SQLite insert of the nonce hash)',
  blindSign: 'issuance BlindSign per token (server blindSign: node:crypto RSASP1 + RSAVP1 check)',
  blindSignJs: 'issuance BlindSign per token (blindrsa-ts, privacypass-ts Issuer.issue)',
  request: 'client token request (privacypass-ts Client.createTokenRequest: blind)',
  finalize: 'client token finalize (privacypass-ts Client.finalize: unblind, verify)',
  mint: 'bench: mint a token with the issuer key (node:crypto RSA-PSS sign)',
} as const;

/** The targets the issue set for anonymous requesters. */
export const TOKEN_LIMITS = {
  /** Server time to check one token, µs. */
  checkUs: 1000,
  /** Issuance, tokens per second per core. */
  issuancePerCore: 500,
  /** Token / account lookups per second, at least. */
  authRatio: 0.85,
  /** Elements sent / asked for on the workload's mix, at most. */
  padding: 1.5,
} as const;

/** token_input (RFC 9577 §2.2): token_type || nonce || challenge_digest || token_key_id. */
function tokenInput(nonce: Uint8Array, digest: Uint8Array, keyId: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + nonce.length + digest.length + keyId.length);
  new DataView(out.buffer).setUint16(0, TOKEN_TYPE);
  out.set(nonce, 2);
  out.set(digest, 2 + nonce.length);
  out.set(keyId, 2 + nonce.length + digest.length);
  return out;
}

const PSS = { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 } as const;

function tokenOf(nonce: Uint8Array, digest: Uint8Array, keyId: Uint8Array, authenticator: Uint8Array): Token {
  if (authenticator.length !== TOKEN_AUTHENTICATOR_BYTES) throw new Error(`a token's authenticator is ${TOKEN_AUTHENTICATOR_BYTES} bytes, the signature has ${authenticator.length}`);
  return new Token(TOKEN_TYPES.BLIND_RSA, new AuthenticatorInput(TOKEN_TYPES.BLIND_RSA, TOKEN_TYPE, nonce, digest, keyId), authenticator);
}

/** One token of `key`, signed at once (synchronous: the crypto section times it). */
export function mintToken(key: Pick<TokenKey, 'privateKey' | 'keyId'>, digest: Uint8Array, nonce: Uint8Array = crypto.randomBytes(32)): Token {
  return tokenOf(nonce, digest, key.keyId, crypto.sign('sha384', tokenInput(nonce, digest, key.keyId), { key: key.privateKey, ...PSS }));
}

/** The same in libuv's pool (several at once use every core). */
function mintTokenAsync(key: Pick<TokenKey, 'privateKey' | 'keyId'>, digest: Uint8Array): Promise<Token> {
  const nonce = crypto.randomBytes(32);
  return new Promise((resolve, reject) =>
    crypto.sign('sha384', tokenInput(nonce, digest, key.keyId), { key: key.privateKey, ...PSS }, (err, sig) => {
      if (err) reject(err);
      else resolve(tokenOf(nonce, digest, key.keyId, sig));
    }),
  );
}

/** The Authorization header value that spends `token` (RFC 9577 §2.2.2). */
export function authorizationOf(token: Token): string {
  return new AuthorizationHeader(token).toString();
}

/**
 * A TokenRequest (RFC 9578 §6.1) for `key`: type 0x0002, the last byte of
 * its key id, and a random blinded message below the modulus (its top bit
 * clear: an RSA-2048 modulus has it set).
 */
export function randomTokenRequest(key: Pick<TokenKey, 'keyId'>): Uint8Array {
  const out = new Uint8Array(TOKEN_REQUEST_BYTES);
  new DataView(out.buffer).setUint16(0, TOKEN_TYPE);
  out[2] = key.keyId[key.keyId.length - 1]!;
  out.set(crypto.randomBytes(TOKEN_REQUEST_BYTES - 3), 3);
  out[3] = out[3]! & 0x7f;
  return out;
}

/** What a server's config publishes for tokens: its issuer name, its current epoch and that epoch's token keys. */
export interface PublishedTokens {
  issuer: string;
  epoch: number;
  keys: readonly TokenKeyInfo[];
}

/** Mints tokens of a running server's current epoch, with the keys of its data folder (or of its shared store). */
export class TokenMinter {
  readonly digest: Uint8Array;

  private constructor(
    readonly published: PublishedTokens,
    private readonly keys: ReadonlyMap<number, TokenKey>,
  ) {
    this.digest = challengeDigest(tokenChallenge(published.issuer));
  }

  /**
   * Reads `<dataDir>/token-keys.json` (after the server made it) and keeps
   * the keys the config publishes: each must be the very key published,
   * else the folder is not the server's and nothing is minted.
   */
  static async open(dataDir: string, published: PublishedTokens): Promise<TokenMinter> {
    if (published.keys.length === 0) throw new Error(`the server publishes no token keys for epoch ${published.epoch}`);
    const file = await TokenKeys.open(
      dataDir,
      published.keys.map((k) => k.sizeClass),
    );
    return TokenMinter.fromKeys(file, published, tokenKeyFilePath(dataDir));
  }

  /** The same, with keys read from wherever the server keeps them (a shared store's, bench/nodes.ts); `where` names them in errors. */
  static async fromKeys(held: TokenKeys, published: PublishedTokens, where: string): Promise<TokenMinter> {
    if (published.keys.length === 0) throw new Error(`the server publishes no token keys for epoch ${published.epoch}`);
    const keys = new Map<number, TokenKey>();
    for (const p of published.keys) {
      const k = held.get(published.epoch, p.sizeClass);
      if (!k || !bytesEqual(k.tokenKey, p.tokenKey)) throw new Error(`${where}: epoch ${published.epoch}, class ${p.sizeClass}: not the token key the server publishes`);
      keys.set(p.sizeClass, k);
    }
    const minter = new TokenMinter(published, keys);
    await minter.selfCheck();
    return minter;
  }

  get classes(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  key(sizeClass: number): TokenKey {
    const k = this.keys.get(sizeClass);
    if (!k) throw new Error(`no token key of class ${sizeClass} (classes: ${this.classes.join(', ')})`);
    return k;
  }

  /** `n` Authorization headers of class `sizeClass`, signed `parallel` at a time in libuv's pool. */
  async mint(sizeClass: number, n: number, parallel = 16): Promise<string[]> {
    const key = this.key(sizeClass);
    const out: string[] = [];
    for (let i = 0; i < n; i += parallel) {
      const batch = await Promise.all(Array.from({ length: Math.min(parallel, n - i) }, () => mintTokenAsync(key, this.digest)));
      for (const t of batch) out.push(authorizationOf(t));
    }
    return out;
  }

  /** `n` TokenRequests for class `sizeClass` (issuance). */
  tokenRequests(sizeClass: number, n: number): Uint8Array[] {
    const key = this.key(sizeClass);
    return Array.from({ length: n }, () => randomTokenRequest(key));
  }

  /**
   * One minted token per key, read back from its header and verified by
   * privacypass-ts as the server verifies it (same origin info, the key's
   * WebCrypto form); the same token with one nonce bit flipped must fail.
   */
  private async selfCheck(): Promise<void> {
    const origin = new publicVerif.Origin(publicVerif.BlindRSAMode.PSS, [TOKEN_ORIGIN_INFO]);
    for (const [c, key] of this.keys) {
      const [header] = await this.mint(c, 1);
      const parsed = AuthorizationHeader.parse(TOKEN_TYPES.BLIND_RSA, header!);
      const token = parsed[0]?.token;
      if (parsed.length !== 1 || !token) throw new Error(`a minted token of class ${c} does not parse back from its header`);
      if (!(await origin.verify(token, key.verifyKey))) throw new Error(`a minted token of class ${c} does not verify under the published key (privacypass-ts Origin.verify)`);
      const nonce = Uint8Array.from(token.authInput.nonce);
      nonce[0] = nonce[0]! ^ 1;
      if (await origin.verify(tokenOf(nonce, token.authInput.challengeDigest, token.authInput.tokenKeyId, token.authenticator), key.verifyKey)) {
        throw new Error('a tampered token verified: the check is not checking');
      }
    }
  }
}

/**
 * Tokens of one class for one server, minted ahead and handed out in
 * order; tokens taken but never sent are given back (they were not spent).
 */
export class TokenSupply {
  private held: string[] = [];
  minted = 0;
  mintSeconds = 0;

  constructor(
    readonly minter: TokenMinter,
    readonly sizeClass: number,
  ) {}

  get size(): number {
    return this.held.length;
  }

  /** Mints until `n` are held. */
  async fill(n: number): Promise<void> {
    const missing = n - this.held.length;
    if (missing <= 0) return;
    const t0 = performance.now();
    this.held.push(...(await this.minter.mint(this.sizeClass, missing)));
    this.minted += missing;
    this.mintSeconds += (performance.now() - t0) / 1000;
  }

  take(n: number): string[] {
    return this.held.splice(0, n);
  }

  giveBack(unsent: readonly string[]): void {
    this.held.unshift(...unsent);
  }
}

// ------------------------------------------------------------------ padding

/** Elements sent and numbers asked for when each request of `sizes` is padded to its class (split at LIMITS.maxBatch, as the client batches). */
export function paddingRow(name: string, kind: PaddingRow['kind'], sizes: Iterable<number>, classes: readonly number[], basis: string): PaddingRow {
  let requests = 0;
  let singles = 0;
  let asked = 0;
  let sent = 0;
  let syncAsked = 0;
  let syncSent = 0;
  for (const total of sizes) {
    for (let left = total; left > 0; left -= LIMITS.maxBatch) {
      const n = Math.min(left, LIMITS.maxBatch);
      const c = sizeClassFor(n, classes);
      if (c === undefined) throw new Error(`no size class holds ${n} elements (classes ${classes.join(', ')})`);
      requests++;
      asked += n;
      sent += c;
      if (n === 1) singles++;
      else {
        syncAsked += n;
        syncSent += c;
      }
    }
  }
  return { name, kind, requests, singles, asked, sent, ratio: asked > 0 ? sent / asked : Number.NaN, ...(syncAsked > 0 ? { syncRatio: syncSent / syncAsked } : {}), basis };
}

export interface LogNormalMix {
  median: number;
  sigma: number;
  /** Largest sync. */
  max: number;
  /** Quantiles taken (a deterministic sample of the distribution). */
  points: number;
}

/** The workload population's address-book sizes (workload/population.ts): a sync is the whole book. */
export const WORKLOAD_BOOKS: LogNormalMix = { median: DEFAULT_POPULATION.degreeMedian, sigma: DEFAULT_POPULATION.degreeSigma, max: DEFAULT_POPULATION.maxDegree, points: 10_000 };

/** Sync sizes at evenly spaced quantiles of a log-normal, rounded and bounded to 2..max (one number is a single lookup). */
export function logNormalSizes(mix: LogNormalMix): number[] {
  return Array.from({ length: mix.points }, (_, i) => {
    const x = mix.median * Math.exp(mix.sigma * normalQuantile((i + 0.5) / mix.points));
    return Math.max(2, Math.min(mix.max, Math.round(x)));
  });
}

/**
 * The evaluate request sizes of the workload simulation's script
 * (workload/script.ts, the same population and days as `pcd simulate`): a
 * reinstall's sync sends the whole book, a lookup one number, and the
 * library's tag cache, which lives as long as the install, drops a lookup of
 * a number it evaluated since (an epoch rotation, which empties it, is not
 * modelled).
 */
export function workloadRequestSizes(population: Partial<PopulationOptions> = {}, script: Partial<Omit<ScriptOptions, 'start' | 'seed'>> = {}): { sizes: number[]; users: number; days: number } {
  const pop = generatePopulation({ ...DEFAULT_POPULATION, ...population });
  const s = generateScript(pop, { ...DEFAULT_SCRIPT, ...script });
  const cache = new Map<number, Set<number>>();
  const sizes: number[] = [];
  for (const a of s.actions) {
    if (a.kind === 'sync') {
      const book = new Set(a.people);
      cache.set(a.user, book);
      if (book.size > 0) sizes.push(book.size);
      continue;
    }
    const seen = cache.get(a.user) ?? new Set<number>();
    cache.set(a.user, seen);
    const missing = [...new Set(a.people)].filter((p) => !seen.has(p));
    for (const p of missing) seen.add(p);
    if (missing.length > 0) sizes.push(missing.length);
  }
  return { sizes, users: pop.users, days: s.options.days };
}

// ------------------------------------------------------------------ targets

const fmt = (v: number, digits = 0) => v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** The issue's targets for anonymous requesters, judged from the marks of one run (those it has). */
export function tokenTargets(r: Pick<BenchResults, 'marks' | 'padding'>): ScaleTarget[] {
  const out: ScaleTarget[] = [];
  const crypto = r.marks.filter((m): m is CryptoMark => m.section === 'crypto' && m.group === 'tokens');
  const op = (o: string) => crypto.find((m) => m.operation === o);
  const http = r.marks.filter((m): m is HttpMark => m.section === 'http');
  const auth = http.filter((m) => m.group === 'auth');
  const check = op(TOKEN_OPS.check);
  if (check) {
    const spend = op(TOKEN_OPS.spend);
    const single = (a: string) => auth.find((m) => m.shape === 'single' && m.auth === a);
    const t = single('token');
    const a = single('account');
    const delta = t && a ? (t.serverCpuMsPerRequest - a.serverCpuMsPerRequest) * 1000 : undefined;
    out.push({
      target: 'token redemption check on the server, per request',
      limit: `≤ ${fmt(TOKEN_LIMITS.checkUs)} µs`,
      measured:
        `${fmt(check.usPerItem, 1)} µs mean, p50 ${fmt(check.p50Us, 1)} µs, p99 ${fmt(check.p99Us, 1)} µs (TokenService.check, one core)` +
        (spend ? `; the spend's insert ${fmt(spend.usPerItem, 1)} µs more` : '') +
        (delta !== undefined ? `; over HTTP the token server spent ${fmt(Math.abs(delta))} µs ${delta >= 0 ? 'more' : 'less'} CPU per single lookup than the account server (noise included)` : ''),
      met: check.usPerItem <= TOKEN_LIMITS.checkUs,
    });
  }
  for (const m of http.filter((x) => x.group === 'issuance')) {
    const perCore = 1e6 / m.serverCpuUsPerLookup;
    out.push({
      target: `issuance over HTTP (POST /v1/tokens, ${m.numbersPerRequest} per request), per core`,
      limit: `≥ ${fmt(TOKEN_LIMITS.issuancePerCore)} tokens/s`,
      measured: `${fmt(perCore)} tokens per server CPU second (${fmt(m.serverCpuUsPerLookup)} µs each); ${fmt(m.lookupsPerSec)} tokens/s wall`,
      met: perCore >= TOKEN_LIMITS.issuancePerCore,
    });
  }
  const blindSign = op(TOKEN_OPS.blindSign);
  if (blindSign) {
    out.push({
      target: 'issuance BlindSign alone (node:crypto), per core',
      limit: `≥ ${fmt(TOKEN_LIMITS.issuancePerCore)} tokens/s`,
      measured: `${fmt(blindSign.itemsPerSec)} tokens/s (${fmt(blindSign.usPerItem)} µs each)`,
      met: blindSign.itemsPerSec >= TOKEN_LIMITS.issuancePerCore,
    });
  }
  for (const shape of [...new Set(auth.map((m) => m.shape))]) {
    const t = auth.find((m) => m.shape === shape && m.auth === 'token');
    const a = auth.find((m) => m.shape === shape && m.auth === 'account');
    if (!t || !a) continue;
    const ratio = t.lookupsPerSec / a.lookupsPerSec;
    const padded = t.elementsPerRequest !== undefined && t.elementsPerRequest !== t.numbersPerRequest;
    const perElement = t.elementsPerSec !== undefined && a.elementsPerSec !== undefined ? t.elementsPerSec / a.elementsPerSec : undefined;
    out.push({
      target: `blinded ${shape} over HTTP with tokens, against the account (lookups asked for)`,
      limit: `≥ ${fmt(TOKEN_LIMITS.authRatio, 2)}x`,
      measured:
        `${fmt(ratio, 2)}x (${fmt(t.lookupsPerSec)} vs ${fmt(a.lookupsPerSec)} lookups/s)` +
        (padded ? `; ${t.numbersPerRequest} asked for, ${t.elementsPerRequest} sent${perElement !== undefined ? `: ${fmt(perElement, 2)}x per element sent` : ''}` : ''),
      met: ratio >= TOKEN_LIMITS.authRatio,
    });
  }
  for (const p of (r.padding ?? []).filter((x) => x.kind !== 'shape')) {
    out.push({
      target: `padding to size classes: ${p.name}`,
      limit: `≤ ${fmt(TOKEN_LIMITS.padding, 1)}x elements`,
      measured: `${fmt(p.ratio, 3)}x (${fmt(p.sent)} sent for ${fmt(p.asked)} asked, ${fmt(p.requests)} requests)` + (p.syncRatio !== undefined && p.singles > 0 ? `; syncs alone ${fmt(p.syncRatio, 3)}x` : ''),
      met: p.ratio <= TOKEN_LIMITS.padding,
    });
  }
  return out;
}
