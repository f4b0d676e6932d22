/**
 * What the blinded design's audit yields (audit/designs/blinded.ts, whose
 * header says what each part means): the epochs, per target its bucket,
 * anonymity set and the fetches of that bucket, the evaluations paid with
 * an account or a token, the accounts, and the spent tokens.
 */
import type { E164 } from '../../shared/e164.ts';

export interface EpochSummary {
  epoch: number;
  mode: string;
  bucketBits: number;
  tagBytes: number;
  createdAt: number;
  retiresAt: number | null;
  destroyedAt: number | null;
  /** The secret key is still in the key file (tags of this epoch can still be computed). */
  keyOnDisk: boolean;
}

export interface BucketFetchRow {
  /** Start of the minute the fetches were counted in (the log aggregates per minute; older data folders: the fetch's time). */
  ts: number;
  ip: string;
  /** The IP is one the order names as an OHTTP relay's: the row stands for every client of that relay. */
  relay: boolean;
  epoch: number;
  bucket: number;
  /** Fetches from this IP of this bucket in that minute (1 per row in data folders of earlier versions). */
  count: number;
  /**
   * Accounts with an evaluation request from the same IP within
   * {@link CORRELATION_WINDOW_MS}: what joining the two logs suggests (that
   * account asked about SOME number of this bucket), no more.
   */
  sameIpRequesters: number[];
  /**
   * Evaluation requests paid with a token from the same IP in the same
   * window (the sum of their counts): the join finds an evaluation, and no
   * account to pin it on.
   */
  sameIpTokenEvaluations: number;
}

/** How far apart an evaluation and a bucket fetch from one IP may be for the audit to pair them. */
export const CORRELATION_WINDOW_MS = 60_000;

export interface EvaluationRow {
  ts: number;
  accountId: number;
  /**
   * The email of the account with that id, only if it existed when the row
   * was logged (created at or before `ts`); null when it was deleted since,
   * or the id was another account's (data folders of versions that reused ids).
   */
  email: string | null;
  ip: string;
  epoch: number;
  count: number;
}

/** Evaluate requests paid with a token (blinded_token_eval_log): one row per minute, IP, epoch and size class. */
export interface TokenEvaluationRow {
  /** Start of the minute. */
  ts: number;
  ip: string;
  /** The IP is one the order names as an OHTTP relay's: the row stands for every client of that relay. */
  relay: boolean;
  epoch: number;
  /** The class the request was padded to (shared/tokens.ts): the element count is at most this, and more than the next class down. */
  sizeClass: number;
  /** Requests of that class from that IP in that minute. */
  count: number;
}

export interface TokenEvaluations {
  rows: TokenEvaluationRow[];
  /** Requests in the range (the sum of the rows' counts). */
  requests: number;
  /** Requests per size class, ascending. */
  classes: { sizeClass: number; requests: number }[];
  /** Blinded elements evaluated, padding included (size class × requests): an upper bound on the numbers looked up. */
  paddedElements: number;
}

/** One day of token issuance to an account (token_issuance_log). */
export interface IssuanceRow {
  /** Start of the day (UTC). */
  day: number;
  /** Elements' worth of tokens issued that day: the sum of their size classes. */
  elements: number;
  /**
   * Evaluations paid with a token that day, every requester's (the
   * operator's day-level join: tokens fetched on demand are spent the day
   * they are issued, and on a quiet server one account's issuance may be
   * the only one that matches the day's size classes; tokens fetched ahead
   * may be spent any later day while their key lives).
   */
  sameDay: { requests: number; paddedElements: number; ips: number };
}

/** The order's other face: what the operator can produce about one account. */
export interface AccountOrder {
  accountId: number;
  /** 'exists': the account is in the accounts table; 'deleted': its id was given out and it is gone; 'unknown': no account ever had the id. */
  status: 'exists' | 'deleted' | 'unknown';
  email: string | null;
  createdAt: number | null;
  /** Token issuance in the range, per day: nothing links a token to its issuance (blind signatures). */
  issuance: IssuanceRow[];
  issuedElements: number;
  /** Evaluate requests paid with this account (auth 'account'), in the range. */
  evaluations: EvaluationRow[];
  evaluatedElements: number;
}

/** Spent tokens of one token key (spent_tokens): counted, and nothing else about them, as the table holds nothing else. */
export interface SpentTokenKey {
  /** The first 8 bytes of its token_key_id (SHA-256 of the token key), hex. */
  keyIdPrefix: string;
  /** The key's epoch and size class, from the token key file while it holds the key; null otherwise. */
  epoch: number | null;
  sizeClass: number | null;
  spent: number;
}

export interface AnonymitySet {
  /** Numbers the operator must consider (the plan). */
  planSize: number;
  /** Where planSize comes from. */
  planSource: string;
  /** planSize / 2^bucketBits: possible numbers behind one bucket id. */
  estimate: number;
}

export interface BlindedTargetEpoch {
  epoch: number;
  bucketBits: number;
  bucket: number;
  /** Registered numbers (today's directory) in that bucket. */
  registeredInBucket: number;
  /** Fetches of that bucket in the range; each one equally concerns every number of the bucket. */
  fetches: BucketFetchRow[];
}

export interface BlindedTarget {
  target: E164;
  /**
   * Rows of the blinded design's log tables in the range in which some
   * column holds a form of this number (see the module header): 0 when the
   * server logs as declared.
   */
  linkedRows: number;
  registered: boolean;
  /** The current epoch, its bucket bits and the target's bucket in it (undefined: no live epoch). */
  epoch: number | null;
  bucketBits: number | null;
  bucket: number | null;
  registeredInBucket: number | null;
  anonymitySet: AnonymitySet | null;
  /** Per epoch in the database: the target's bucket and its fetches in the range. */
  epochs: BlindedTargetEpoch[];
}

export interface BlindedAudit {
  design: 'blinded';
  dataDir: string;
  range: { since: number | null; until: number | null };
  statement: string;
  directorySize: number;
  currentEpoch: number | null;
  epochs: EpochSummary[];
  targets: BlindedTarget[];
  /** Evaluation rows paid with an account in the range: the same for every target, since none is derived from a number. */
  evaluations: { rows: EvaluationRow[]; requests: number; elements: number };
  /** Evaluation rows paid with a token in the range: no account, no element count; the same for every target. */
  tokenEvaluations: TokenEvaluations;
  /** The addresses taken as OHTTP relays' (normalised): the order's (--relay), else those the server recorded it was configured with. */
  relays: string[];
  relaysFrom: 'order' | 'recorded' | 'none';
  /** The accounts the order names, or null: every account with a row (issuance or account-path evaluation) in the range. */
  accountsNamed: number[] | null;
  /** What the operator can produce about each account. */
  accounts: AccountOrder[];
  /** Spent tokens held (spent_tokens): no time, no account; per token key. */
  spentTokens: { total: number; keys: SpentTokenKey[] };
  /** Bucket fetches in the range, all buckets (the sum of the rows' counts). */
  bucketFetches: number;
  warnings: string[];
}
