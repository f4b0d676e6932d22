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
 * worth (its log keeps the day and the sum). So that this says nothing
 * about when, or how often, the account looks numbers up, the pool's
 * issuance does not follow its use (docs/threat-model.md):
 * - **a fixed quantum per period**: once per period (default one day), at
 *   a moment drawn uniformly within the period, the pool fetches
 *   `quantum` tokens (default 8 of class 1) whatever it holds or spent,
 *   and keeps at most `maxHeld` per class (default 32 of class 1: four
 *   days' worth), dropping the oldest. Every install then issues the same
 *   elements every day, used or not; what a light user does not spend is
 *   wasted, which is the price (8 blind signatures a day, about 2 ms of
 *   the issuer's CPU per account);
 * - `fill()` tops each class up to `ahead` (default 8 of class 1) when
 *   the app starts, which the account's login shows anyway;
 * - a lookup that finds its class empty fetches at once
 *   (`whenEmpty: 'fetch'`, the default, counted in `fetchesOnDemand`:
 *   that issuance is tied to that lookup, and says the account used more
 *   than its quantum) or fails with `tokens_exhausted` (`'fail'`). A
 *   class above 1 (a contact sync, after an install) is fetched on demand:
 *   one token of c elements, on the day of the sync. Holding every class
 *   ahead would cost up to 4,096 elements of the allowance a day.
 * A quota refusal of the issuer is the server's 429 rate_limited with its
 * Retry-After.
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
   * Tokens `fill()` tops each class up to. Default: 8 of class 1 (single
   * lookups), and of every other class one, once that class has been used.
   */
  ahead?: Readonly<Record<number, number>>;
  /** Tokens fetched per class once every period, whatever the pool holds or spent (default {@link DEFAULT_QUANTUM}: 8 of class 1). */
  quantum?: Readonly<Record<number, number>>;
  /** The period of the quantum fetch (default one day); Infinity: no timer of the pool's own, the owner calls fetchQuantum(). */
  periodMs?: number;
  /** Most tokens held of one class; the oldest beyond it are dropped (default 4 x the class's quantum, at least its `ahead`). */
  maxHeld?: number;
  /** A lookup whose class is empty: fetch now (default) or fail with tokens_exhausted. */
  whenEmpty?: 'fetch' | 'fail';
  /** Randomness for the moment of each period's fetch (tests, simulations); default Math.random. */
  random?: () => number;
}

/** Tokens fetched per period by default: 8 of class 1. */
export const DEFAULT_QUANTUM: Readonly<Record<number, number>> = { 1: 8 };
/** The default period of the quantum fetch: one day (the issuance log's unit). */
export const DEFAULT_PERIOD_MS = 86_400_000;
/** Tokens `fill()` keeps of class 1 by default (an app's start). */
export const DEFAULT_AHEAD_SINGLE = 8;
/** Held per class, as a multiple of its quantum, by default. */
export const DEFAULT_HELD_PERIODS = 4;

/**
 * When the fetch of a period falls: `periodStart + u x periodMs`, u drawn
 * uniformly in [0, 1) for each period; the next period starts
 * `periodMs` later, whenever the fetch fell. The pool's timer follows it,
 * and so does the simulation (workload/simulate.ts), on its own clock.
 */
export function quantumFetchAt(periodStart: number, periodMs: number, u: number): number {
  return periodStart + Math.min(Math.max(u, 0), 0.999999) * periodMs;
}

export interface TokenPoolStats {
  issuanceRequests: number;
  tokensFetched: number;
  tokensSpent: number;
  /** Fetches made because a lookup found its class empty (each ties issuance to a lookup in time). */
  fetchesOnDemand: number;
  /** Tokens dropped unspent because the class held `maxHeld` (the quantum's waste). */
  tokensDropped: number;
}

interface HeldToken {
  keyB64: string;
  header: string;
}

/** A held token as a pool file keeps it (bin/commands/client.ts --tokens): a secret, like a bearer token, for mode-0600 files only. */
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
  private closed = false;
  readonly stats: TokenPoolStats = { issuanceRequests: 0, tokensFetched: 0, tokensSpent: 0, fetchesOnDemand: 0, tokensDropped: 0 };

  constructor(
    /** The transport to the issuer: direct, with the account's bearer token. */
    private readonly transport: Transport,
    /** The server's view, fetched (and pinned) by the blinded client. */
    private readonly view: (fresh: boolean) => Promise<TokenView>,
    private readonly options: TokenPoolOptions = {},
  ) {
    this.schedule(Date.now());
  }

  /** Tokens held of `sizeClass` (any live key). */
  count(sizeClass: number): number {
    return this.held.get(sizeClass)?.length ?? 0;
  }

  private target(sizeClass: number): number {
    const ahead = this.options.ahead;
    if (ahead) return ahead[sizeClass] ?? 0;
    return sizeClass === 1 ? DEFAULT_AHEAD_SINGLE : this.used.has(sizeClass) ? 1 : 0;
  }

  private quantumOf(sizeClass: number): number {
    return (this.options.quantum ?? DEFAULT_QUANTUM)[sizeClass] ?? 0;
  }

  private maxHeldOf(sizeClass: number): number {
    return this.options.maxHeld ?? Math.max(DEFAULT_HELD_PERIODS * this.quantumOf(sizeClass), this.target(sizeClass), 1);
  }

  /**
   * The period's fetch (module header): `quantum` of each class, whatever
   * the pool holds, then at most `maxHeld` kept. Called by the pool's own
   * timer, or by its owner when `periodMs` is Infinity.
   */
  async fetchQuantum(): Promise<void> {
    const v = await this.view(false);
    this.dropUnlisted(v);
    const epoch = this.keysEpoch(v);
    const classes = [...new Set(v.keys.filter((k) => k.epoch === epoch).map((k) => k.sizeClass))].sort((a, b) => a - b);
    for (const c of classes) {
      const q = this.quantumOf(c);
      if (q > 0) await this.fetch(v, c, q);
    }
  }

  /** Arms the timer of the next period's fetch (periods start at `periodStart`). */
  private schedule(periodStart: number): void {
    const period = this.options.periodMs ?? DEFAULT_PERIOD_MS;
    if (!Number.isFinite(period) || period <= 0 || this.closed) return;
    const at = quantumFetchAt(periodStart, period, (this.options.random ?? Math.random)());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.fetchQuantum()
        .catch(() => {
          // A failed fetch (server down, quota) is not retried early: a retry would follow the failure, not the schedule. A lookup that finds its class empty says why.
        })
        .finally(() => this.schedule(periodStart + period));
    }, Math.max(0, at - Date.now()));
    (this.timer as { unref?: () => void }).unref?.();
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
      // The oldest go first: they are the likeliest to be of a key about to retire.
      const max = this.maxHeldOf(sizeClass);
      if (list.length > max) this.stats.tokensDropped += list.splice(0, list.length - max).length;
      this.held.set(sizeClass, list);
      this.stats.tokensFetched += k;
      left -= k;
    }
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
        throw new PcdError(ErrorCode.TokensExhausted, `no token of size class ${sizeClass} in the pool; it gets more at its next period's fetch (or call fill())`);
      }
      this.stats.fetchesOnDemand++;
      await this.fetch(v, sizeClass, Math.max(1, this.target(sizeClass)));
      list = this.held.get(sizeClass);
    }
    const t = list?.shift();
    if (!t) throw new PcdError(ErrorCode.TokensExhausted, `no token of size class ${sizeClass} could be had`);
    this.stats.tokensSpent++;
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

  /** Stops the period's timer. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
