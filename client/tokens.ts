/**
 * The client's Privacy Pass tokens (shared/tokens.ts): a pool per size
 * class, fetched ahead from the issuer with the account's bearer token and
 * spent one per evaluate request, which then carries no account.
 *
 *   fill     POST /v1/tokens { epoch, sizeClass, requests }  (account) -> blind signatures
 *   finish   Token = Finalize(...) (privacypass-ts: unblind, and verify under the published key)
 *   spend    take one token of the request's class: `Authorization: PrivateToken token=…`
 *
 * What the issuer learns is when an account asked for how many elements'
 * worth. So that this says nothing about when the account looks numbers
 * up, the pool is refilled at random times after it is drawn from (an
 * exponential delay, mean `refillMeanMs`, default 10 minutes), not when a
 * lookup needs a token; `fill()` fetches ahead at start. A lookup that
 * finds its class empty fetches at once (`whenEmpty: 'fetch'`, the
 * default, which ties that issuance to that lookup in time) or fails with
 * `tokens_exhausted` (`whenEmpty: 'fail'`). A quota refusal of the issuer
 * is the server's 429 rate_limited with its Retry-After.
 *
 * Token requests are made and tokens finalised by @cloudflare/privacypass-ts
 * (blindrsa-ts: about 35 ms per request and 5 ms per finalisation on the
 * reference machine, in JavaScript big numbers); finalising verifies each
 * signature under the token key the config published, so an issuer that
 * signs with a key of its own for one account is caught (token_invalid).
 * Token keys are pinned with the epoch they belong to
 * (client/designs/blinded.ts).
 */
import { AuthorizationHeader, publicVerif, type TokenChallenge } from '@cloudflare/privacypass-ts';
import type { Transport } from '../shared/design.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { PATHS } from '../shared/messages.ts';
import { bytesToBase64 } from '../shared/bytes.ts';
import { MAX_TOKENS_PER_REQUEST, TokensReply, sizeClassFor, tokenChallenge } from '../shared/tokens.ts';

/** A token key as the config publishes it, with its epoch. */
export interface PublishedTokenKey {
  epoch: number;
  sizeClass: number;
  tokenKey: Uint8Array;
}

/** What the pool needs of the server's current view (the blinded client's pinned config). */
export interface TokenView {
  issuer: string;
  /** The epoch to fetch tokens for (the current one). */
  current: number;
  /** Every live epoch's token keys. */
  keys: readonly PublishedTokenKey[];
}

export interface TokenPoolOptions {
  /**
   * Tokens kept ahead per class. Default: 8 of class 1 (single lookups),
   * and of every other class one, once that class has been used (holding a
   * 4,096 token costs 4,096 of the account's allowance).
   */
  ahead?: Readonly<Record<number, number>>;
  /** Mean of the random delay before a refill (default 10 minutes; 0: at once; Infinity: never, the owner calls fill()). */
  refillMeanMs?: number;
  /** A lookup whose class is empty: fetch now (default) or fail with tokens_exhausted. */
  whenEmpty?: 'fetch' | 'fail';
  /** Randomness for the refill times (tests); default Math.random. */
  random?: () => number;
}

export interface TokenPoolStats {
  issuanceRequests: number;
  tokensFetched: number;
  tokensSpent: number;
  /** Fetches made because a lookup found its class empty (each ties issuance to a lookup in time). */
  fetchesOnDemand: number;
}

interface HeldToken {
  keyB64: string;
  header: string;
}

/** A held token as a pool file keeps it (client/cli.ts --tokens): a secret, like a bearer token, for mode-0600 files only. */
export interface TokenRecord {
  sizeClass: number;
  /** The token key it was issued under, base64. */
  tokenKey: string;
  /** The Authorization header value. */
  authorization: string;
}

/** One token, ready to send, and the class it pays for. */
export interface SpendableToken {
  sizeClass: number;
  epoch: number;
  /** The Authorization header value. */
  authorization: string;
}

export class TokenPool {
  private readonly held = new Map<number, HeldToken[]>();
  private readonly used = new Set<number>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private filling: Promise<void> | undefined;
  readonly stats: TokenPoolStats = { issuanceRequests: 0, tokensFetched: 0, tokensSpent: 0, fetchesOnDemand: 0 };

  constructor(
    /** The transport to the issuer: direct, with the account's bearer token. */
    private readonly transport: Transport,
    /** The server's view, fetched (and pinned) by the blinded client. */
    private readonly view: (fresh: boolean) => Promise<TokenView>,
    private readonly options: TokenPoolOptions = {},
  ) {}

  /** Tokens held of `sizeClass` (any live key). */
  count(sizeClass: number): number {
    return this.held.get(sizeClass)?.length ?? 0;
  }

  private target(sizeClass: number): number {
    const ahead = this.options.ahead;
    if (ahead) return ahead[sizeClass] ?? 0;
    return sizeClass === 1 ? 8 : this.used.has(sizeClass) ? 1 : 0;
  }

  /** Fetches what is missing of every class's target (once at a time). */
  fill(): Promise<void> {
    this.filling ??= (async () => {
      try {
        const v = await this.view(false);
        this.dropUnlisted(v);
        const epoch = this.keysEpoch(v);
        const classes = [...new Set(v.keys.filter((k) => k.epoch === epoch).map((k) => k.sizeClass))];
        for (const c of classes) {
          const missing = this.target(c) - this.count(c);
          if (missing > 0) await this.fetch(v, c, missing);
        }
      } finally {
        this.filling = undefined;
      }
    })();
    return this.filling;
  }

  /** Forgets tokens of keys the server no longer lists (retired with their epoch). */
  private dropUnlisted(v: TokenView): void {
    const listed = new Set(v.keys.map((k) => bytesToBase64(k.tokenKey)));
    for (const [c, list] of this.held) this.held.set(c, list.filter((t) => listed.has(t.keyB64)));
  }

  /** Fetches `n` tokens of class `sizeClass` for the view's current epoch. */
  private async fetch(v: TokenView, sizeClass: number, n: number): Promise<void> {
    const epoch = this.keysEpoch(v);
    const key = v.keys.find((k) => k.epoch === epoch && k.sizeClass === sizeClass);
    if (!key) throw new PcdError(ErrorCode.TokensExhausted, `the server publishes no token key of size class ${sizeClass} (epoch ${v.current})`);
    const challenge: TokenChallenge = tokenChallenge(v.issuer);
    const keyB64 = bytesToBase64(key.tokenKey);
    for (let left = n; left > 0; ) {
      const k = Math.min(left, MAX_TOKENS_PER_REQUEST);
      const clients = Array.from({ length: k }, () => new publicVerif.Client(publicVerif.BlindRSAMode.PSS));
      const requests = await Promise.all(clients.map((c) => c.createTokenRequest(challenge, key.tokenKey)));
      const r = await this.transport.request({
        method: 'POST',
        path: PATHS.tokens,
        body: { epoch: key.epoch, sizeClass, requests: requests.map((q) => q.serialize()) },
        reply: TokensReply,
        auth: true,
      });
      this.stats.issuanceRequests++;
      const responses = r.body?.responses ?? [];
      if (responses.length !== k) throw new PcdError(ErrorCode.MalformedReply, `asked the issuer for ${k} tokens, got ${responses.length}`);
      const list = this.held.get(sizeClass) ?? [];
      for (let i = 0; i < k; i++) {
        let header: string;
        try {
          // Unblinds and verifies the signature under the published key (RFC 9474 §4.4 Finalize).
          const token = await clients[i]!.finalize(new publicVerif.TokenResponse(responses[i]!));
          header = new AuthorizationHeader(token).toString();
        } catch (e) {
          throw new PcdError(
            ErrorCode.TokenInvalid,
            `the issuer's signature does not verify under the token key epoch ${key.epoch} publishes for class ${sizeClass}: it signed with another key (one of its own for this account?); no token kept`,
            { cause: e },
          );
        }
        list.push({ keyB64, header });
      }
      this.held.set(sizeClass, list);
      this.stats.tokensFetched += k;
      left -= k;
    }
  }

  /** Schedules a refill at a random time (module header), once at a time. */
  private scheduleRefill(): void {
    if (this.timer !== undefined) return;
    const mean = this.options.refillMeanMs ?? 10 * 60_000;
    if (!Number.isFinite(mean)) return; // Infinity: no refill timer (a short-lived process that fills by itself, client/cli.ts)
    const u = (this.options.random ?? Math.random)();
    const delay = mean <= 0 ? 0 : -Math.log(1 - Math.min(u, 0.999999)) * mean;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.fill().catch(() => {
        // A failed background refill (server down, quota) is retried at the next spend; the lookup that needs a token says why.
      });
    }, delay);
    (this.timer as { unref?: () => void }).unref?.();
  }

  /**
   * The epoch whose token keys to use: the current one, or, while its keys
   * are still being made (just after a rotation), the newest that has them.
   * A token of any live epoch's key pays for any evaluation.
   */
  private keysEpoch(v: TokenView): number {
    if (v.keys.some((k) => k.epoch === v.current)) return v.current;
    return v.keys.reduce((e, k) => Math.max(e, k.epoch), 0);
  }

  /** The class a request of `n` elements pays with, from the view's current epoch. */
  async classFor(n: number): Promise<number> {
    return this.classIn(await this.view(false), n);
  }

  private classIn(v: TokenView, n: number): number {
    const epoch = this.keysEpoch(v);
    const classes = v.keys.filter((k) => k.epoch === epoch).map((k) => k.sizeClass);
    const c = sizeClassFor(n, classes);
    if (c === undefined) throw new PcdError(ErrorCode.TokensExhausted, `no size class holds ${n} elements (the server's classes: ${classes.join(', ') || 'none'})`);
    return c;
  }

  /** Takes one token of the class for `n` elements, fetching when empty (options.whenEmpty). */
  async take(n: number): Promise<SpendableToken> {
    const v = await this.view(false);
    const sizeClass = this.classIn(v, n);
    this.used.add(sizeClass);
    this.dropUnlisted(v);
    let list = this.held.get(sizeClass);
    if (!list || list.length === 0) {
      if (this.options.whenEmpty === 'fail') {
        this.scheduleRefill();
        throw new PcdError(ErrorCode.TokensExhausted, `no token of size class ${sizeClass} in the pool; it is refilled in the background (or call fill())`);
      }
      this.stats.fetchesOnDemand++;
      await this.fetch(v, sizeClass, Math.max(1, this.target(sizeClass)));
      list = this.held.get(sizeClass);
    }
    const t = list?.shift();
    if (!t) throw new PcdError(ErrorCode.TokensExhausted, `no token of size class ${sizeClass} could be had`);
    this.stats.tokensSpent++;
    this.scheduleRefill();
    const epoch = v.keys.find((k) => bytesToBase64(k.tokenKey) === t.keyB64)?.epoch ?? v.current;
    return { sizeClass, epoch, authorization: t.header };
  }

  /** The unspent tokens, to keep across runs (a short-lived process: the CLI). */
  export(): TokenRecord[] {
    return [...this.held].flatMap(([sizeClass, list]) => list.map((t) => ({ sizeClass, tokenKey: t.keyB64, authorization: t.header })));
  }

  /** Adds tokens kept by an earlier run; those of keys the server no longer lists are dropped at the next fill or spend. */
  import(records: readonly TokenRecord[]): void {
    for (const r of records) {
      if (!Number.isInteger(r.sizeClass) || r.sizeClass < 1 || typeof r.tokenKey !== 'string' || typeof r.authorization !== 'string' || !/^PrivateToken token=/.test(r.authorization)) continue;
      const list = this.held.get(r.sizeClass) ?? [];
      list.push({ keyB64: r.tokenKey, header: r.authorization });
      this.held.set(r.sizeClass, list);
      this.used.add(r.sizeClass);
    }
  }

  /** Drops every token of keys the server no longer lists (after token_key_unknown). */
  async refresh(): Promise<void> {
    this.dropUnlisted(await this.view(true));
  }

  /** Stops the refill timer. */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
