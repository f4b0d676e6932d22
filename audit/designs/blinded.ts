/**
 * The blinded design's audit. No column of its declared logs
 * (shared/designs/blinded.ts: BLINDED_EVAL_LOG, BLINDED_BUCKET_LOG,
 * BLINDED_TOKEN_EVAL_LOG, TOKEN_ISSUANCE_LOG) holds a number or a function
 * of one; the result's `statement` says so from the declarations. What the
 * operator can produce is the target's bucket id (shared by every number of
 * the bucket), the fetches of that bucket and the evaluation rows; the audit
 * reports the anonymity set.
 *
 * ## Two ways to pay for an evaluation, both read
 *
 * - With the account (`--blinded-auth account`): `blinded_eval_log`, one row
 *   per request: when, which account, IP, epoch, element count.
 * - With a Privacy Pass token (the default, shared/tokens.ts):
 *   `blinded_token_eval_log` counts requests per minute, IP, epoch and size
 *   class, and names no account and no element count; through an OHTTP
 *   relay the IP is the relay's (the order names relays with `relays`: the
 *   data folder does not record them). The account shows up only at
 *   issuance: `token_issuance_log`, per account and day, the elements' worth
 *   of tokens issued; the signature is blind (RFC 9474), so nothing links a
 *   token to its issuance. `spent_tokens` holds a hash per spent token and
 *   its key id: no time, no account; counted per token key (and, while the
 *   key is in the token key file, its epoch and class: audit/tokenkeys.ts).
 *
 * A data folder may hold both (a server run one way, then the other). So an
 * order has two faces: a target number (no row links to it: its bucket, the
 * fetches, every evaluation in the range) and an account (`accounts`: its
 * issuance per day and the evaluations it paid for itself).
 *
 * ## Linked rows
 *
 * The data is checked too: a target's `linkedRows` counts the rows of the
 * design's declared log tables, in the range, and of `spent_tokens` (no
 * time: all of them), in which the value of any column (every column the
 * table has, declared or not) holds any form of the target the scan
 * searches for (audit/scan/forms.ts: its E.164 text, digits and national
 * number, its SHA-256, SHA-1 and MD5 in their encodings, and, per epoch
 * whose key is in the key file, its tag and OPRF output). A server that logs
 * as declared leaves 0; any other count is also a warning naming the tables
 * and forms.
 *
 * ## Accounts and time
 *
 * Account-path evaluation rows carry an account id only, which is named only
 * if that account already existed when the row was written (ids are never
 * reused, server/store.ts; data folders of versions that did reuse them are
 * guarded by the creation time), so a deleted account shows as deleted,
 * never as a later account. Counts tables (bucket fetches per minute, token
 * evaluations per minute, issuance per day) hold the start of their window:
 * a bucket fetch row is in the range when its start is; a token evaluation
 * or issuance row when its window overlaps the range (a day's row would
 * otherwise drop out of any range that starts after midnight).
 */
import path from 'node:path';
import type Database from 'better-sqlite3';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { bucketOf } from '../../shared/buckets.ts';
import type { E164 } from '../../shared/e164.ts';
import {
  BLINDED,
  BLINDED_BUCKET_LOG,
  BLINDED_EVAL_LOG,
  BLINDED_TOKEN_EVAL_LOG,
  BUCKET_LOG_WINDOW_MS,
  SPENT_TOKENS_TABLE,
  TOKEN_ISSUANCE_LOG,
} from '../../shared/designs/blinded.ts';
import { columnNames, numberColumns, type LogTable } from '../../shared/logs.ts';
import { pickCurrent, type EpochRow } from '../../disk/epochs.ts';
import { readEpochKeys } from '../../disk/keyfile.ts';
import { csvRecord, fmtCount, isoTime, rangeText, renderTable, warningsText } from '../format.ts';
import { requireTable, tableColumns, tableExists, withSnapshot } from '../image.ts';
import { recordedRelays } from '../../disk/relays.ts';
import { parsePlan, planContains, planSize, type PlanPattern } from '../../shared/numbering.ts';
import { bounds, normalizeIp, rangeOf, type AuditOptions } from '../plan.ts';
import { readTokenKeyIds, type TokenKeyOnDisk } from '../tokenkeys.ts';
import { numberForms, tagEpochsOf, type TagEpoch } from '../scan/forms.ts';
import { MultiPatternSearcher, type Boundary } from '../scan/search.ts';

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

/** The blinded design's declared log tables: what its audit reads, and what its statement is about. */
export const BLINDED_LOGS: readonly LogTable[] = BLINDED.logs;

/** A column in words: its name, and what it holds when that is not its name. */
function columnText(c: LogTable['columns'][number]): string {
  return c.name === c.holds ? c.name : `${c.name} (${c.holds})`;
}

/** spent_tokens (disk/sql.ts) is not a log and has no declaration: its columns and what each holds, for the statement and the column check. */
const SPENT_TOKENS_COLUMNS = [
  { name: 'nonce_hash', holds: "SHA-256 of the token key id and the token's nonce, which the client chose and the issuer never saw" },
  { name: 'key_id', holds: "the token key's id" },
] as const;

/**
 * What the logs hold, from their declarations (shared/logs.ts): each table
 * with its description and every declared column with what it holds, and
 * whether a column holds a number or a function of one (`numberColumns`);
 * then what spent_tokens holds. The same for every target; the targets'
 * linked rows are checked on the data.
 */
export function blindedStatement(tables: readonly LogTable[] = BLINDED_LOGS): string {
  const names = tables.map((t) => t.name).join(' or ');
  const derived = tables.flatMap((t) => numberColumns(t).map((c) => `${t.name}.${c}`));
  const claim = derived.length
    ? `Rows of ${names} are derived from a number: ${derived.join(', ')} hold(s) a number or a function of one.`
    : `No row of ${names} is derived from a number: no declared column holds a number or a function of one.`;
  const holds = tables.map((t) => `${t.name} rows hold ${t.columns.map(columnText).join(', ')} (${t.description})`);
  const spent = `${SPENT_TOKENS_TABLE} rows hold ${SPENT_TOKENS_COLUMNS.map((c) => `${c.name} (${c.holds})`).join(', ')}: no time, no account (not a log: rows go when their key retires with its epoch)`;
  const bucket = tables.some((t) => t.columns.some((c) => c.holds === 'bucket')) ? '; a bucket id is shared by every number of the bucket' : '';
  return (
    `${claim} ${holds.join('; ')}; ${spent}. The blinded elements are uniformly random group elements to the server${bucket}. ` +
    `Linked rows per target: the rows of these tables and of ${SPENT_TOKENS_TABLE} with any form of the target (text, digits, hashes, tags) in any column. ` +
    'What the operator can produce is below.'
  );
}

/** Columns each blinded log may have: its declared ones, and `id` (a rows table's; a counts table's in the per-fetch shape of earlier versions, before the server migrates it). */
function knownColumns(t: LogTable): string[] {
  return ['id', ...columnNames(t)];
}

/** The bytes of an SQLite value as stored: BLOBs as they are, text in UTF-8, numbers in decimal; NULL: none. */
function valueBytes(v: unknown): Uint8Array | undefined {
  if (v === null || v === undefined) return undefined;
  if (v instanceof Uint8Array) return v;
  return Buffer.from(typeof v === 'string' ? v : String(v), 'utf8');
}

interface LinkedRows {
  /** Per target: rows of the tables holding a form of it. */
  rows: number;
  /** Per table: those rows, and the forms found in them. */
  tables: Map<string, { rows: number; forms: Set<string> }>;
}

/**
 * Counts, per target, the rows of `tables` in the range, and every row of
 * `untimed` (tables without a time, such as spent_tokens), in which the
 * value of any column (SELECT *: every column the table has) holds any form
 * of the target (audit/scan/forms.ts, with the tags of `epochs`). One
 * search per value for every form of every target at once
 * (audit/scan/search.ts).
 */
export function linkedRowsOf(
  db: Database.Database,
  tables: readonly LogTable[],
  targets: readonly E164[],
  epochs: readonly TagEpoch[],
  range: [number, number],
  untimed: readonly string[] = [],
): LinkedRows[] {
  const out: LinkedRows[] = targets.map(() => ({ rows: 0, tables: new Map() }));
  const patterns: Uint8Array[] = [];
  const boundaries: Boundary[] = [];
  const owner: { target: number; form: string }[] = [];
  targets.forEach((t, i) => {
    for (const f of numberForms(t, { epochs })) {
      if (f.bytes.length < 4) continue; // below the searcher's minimum; tags are at least 4 bytes (shared/buckets.ts)
      patterns.push(f.bytes);
      boundaries.push(f.boundary);
      owner.push({ target: i, form: f.form });
    }
  });
  if (patterns.length === 0) return out;
  const searcher = new MultiPatternSearcher(patterns, boundaries);
  // Raw rows (every column, in order) and integers exact, as their decimal digits are searched.
  const scans: { name: string; rows: () => Iterable<unknown[]> }[] = [
    ...tables.map((t) => ({
      name: t.name,
      rows: () => db.prepare<[number, number], unknown[]>(`SELECT * FROM ${t.name} WHERE ts >= ? AND ts < ?`).raw(true).safeIntegers(true).iterate(...range),
    })),
    ...untimed.map((name) => ({ name, rows: () => db.prepare<[], unknown[]>(`SELECT * FROM ${name}`).raw(true).safeIntegers(true).iterate() })),
  ];
  for (const table of scans) {
    for (const row of table.rows()) {
      const found = new Map<number, Set<string>>(); // target -> forms in this row
      for (const v of row) {
        const bytes = valueBytes(v);
        if (!bytes) continue;
        searcher.searchBuffer(bytes, (p) => {
          const { target, form } = owner[p]!;
          const forms = found.get(target);
          if (forms) forms.add(form);
          else found.set(target, new Set([form]));
        });
      }
      for (const [target, forms] of found) {
        const r = out[target]!;
        r.rows++;
        const t = r.tables.get(table.name) ?? { rows: 0, forms: new Set<string>() };
        t.rows++;
        for (const f of forms) t.forms.add(f);
        r.tables.set(table.name, t);
      }
    }
  }
  return out;
}

type EpochDbRow = Omit<EpochRow, 'public_key'>;

/** The epoch the server serves as current, by the server's own rule (server/blinded/epoch.ts). */
export function currentEpochOf(epochs: readonly EpochSummary[]): EpochSummary | undefined {
  return pickCurrent(
    epochs.filter((e) => e.destroyedAt === null),
    (e) => e.retiresAt !== null,
  );
}

/**
 * The numbers an operator would consider for a target: the given plan, else
 * every national number of the target's length in its country calling code
 * (10^length: an upper bound, since not every prefix is in service).
 */
export function planFor(target: E164, plan?: readonly PlanPattern[]): { planSize: number; planSource: string } {
  if (plan && plan.length) {
    return { planSize: planSize(plan), planSource: `plan ${plan.map((p) => p.pattern).join(',')}` };
  }
  const p = parsePhoneNumberFromString(target);
  const cc = p?.countryCallingCode ?? '';
  const national = p ? p.nationalNumber.length : target.length - 2;
  const where = p?.country ? `${p.country} (+${cc})` : `+${cc}`;
  return {
    planSize: 10 ** national,
    planSource: `${where} national numbers of ${national} digits: 10^${national} (upper bound; not every prefix is in service)`,
  };
}

/** What the blinded design's logs yield for the targets: the rows linked to each (none, from a server that logs as declared), the bucket, its anonymity set, and the rows the operator can produce, about the targets and about accounts. */
export function auditBlinded(dataDir: string, options: AuditOptions & { plan?: string }): BlindedAudit {
  const plan = options.plan ? parsePlan(options.plan) : undefined;
  const warnings: string[] = [];
  let keys: Map<number, Uint8Array>;
  try {
    keys = readEpochKeys(dataDir);
  } catch (e) {
    keys = new Map();
    warnings.push(`the key file could not be read (${(e as Error).message}); keyOnDisk is reported as false and no tag was looked for in the logs`);
  }
  let tokenKeys: TokenKeyOnDisk[];
  try {
    tokenKeys = readTokenKeyIds(dataDir);
  } catch (e) {
    tokenKeys = [];
    warnings.push(`the token key file could not be read (${(e as Error).message}); spent tokens are counted per key id without their epoch and class`);
  }
  try {
    return withSnapshot(dataDir, ({ db }) => blindedOf(db, dataDir, options, plan, keys, tokenKeys, warnings));
  } finally {
    for (const sk of keys.values()) sk.fill(0);
  }
}

/** Tables of the token path, which data folders written before anonymous requesters do not have: read as empty then. */
const TOKEN_TABLES: ReadonlySet<string> = new Set([BLINDED_TOKEN_EVAL_LOG.name, TOKEN_ISSUANCE_LOG.name, SPENT_TOKENS_TABLE]);

function blindedOf(
  db: Database.Database,
  dataDir: string,
  options: AuditOptions,
  plan: readonly PlanPattern[] | undefined,
  keys: ReadonlyMap<number, Uint8Array>,
  tokenKeys: readonly TokenKeyOnDisk[],
  warnings: string[],
): BlindedAudit {
  const EVAL = BLINDED_EVAL_LOG.name;
  const BUCKETS = BLINDED_BUCKET_LOG.name;
  const TOKEN_EVAL = BLINDED_TOKEN_EVAL_LOG.name;
  const ISSUANCE = TOKEN_ISSUANCE_LOG.name;
  // The design's log tables, and the tables of disk/sql.ts every server has that this audit reads; the token path's may be missing.
  const missing = [...TOKEN_TABLES].filter((t) => !tableExists(db, t));
  if (missing.length) warnings.push(`the database has no ${missing.join(', ')}: written by a version without anonymous requesters; read as empty`);
  const logs = BLINDED_LOGS.filter((l) => !missing.includes(l.name));
  for (const t of [...logs.map((l) => l.name), 'epochs', 'numbers']) requireTable(db, t);
  const hasSpent = !missing.includes(SPENT_TOKENS_TABLE);
  const columnsOf = new Map(logs.map((t) => [t.name, tableColumns(db, t.name)]));
  for (const t of logs) {
    const extra = columnsOf.get(t.name)!.filter((c) => !knownColumns(t).includes(c));
    if (extra.length) warnings.push(`${t.name} has column(s) ${extra.join(', ')} the audit does not know: check that none is derived from a number`);
  }
  if (hasSpent) {
    const known: readonly string[] = SPENT_TOKENS_COLUMNS.map((c) => c.name);
    const extra = tableColumns(db, SPENT_TOKENS_TABLE).filter((c) => !known.includes(c));
    if (extra.length) warnings.push(`${SPENT_TOKENS_TABLE} has column(s) ${extra.join(', ')} the audit does not know: check that none is derived from a number, a time or an account`);
  }
  const [since, until] = bounds(options);
  // The order's relays; without any, those the server recorded it was configured with (disk/relays.ts).
  const recorded = Object.keys(recordedRelays(db)).map(normalizeIp);
  const relaysFrom: BlindedAudit['relaysFrom'] = options.relays?.length ? 'order' : recorded.length ? 'recorded' : 'none';
  const relays = [...new Set(relaysFrom === 'order' ? options.relays!.map(normalizeIp) : recorded)];
  const isRelay = (ip: string) => relays.includes(normalizeIp(ip));
  const epochs: EpochSummary[] = db
    .prepare<[], EpochDbRow>('SELECT epoch, mode, bucket_bits, tag_bytes, created_at, retires_at, destroyed_at FROM epochs ORDER BY epoch')
    .all()
    .map((r) => ({
      epoch: r.epoch,
      mode: r.mode,
      bucketBits: r.bucket_bits,
      tagBytes: r.tag_bytes,
      createdAt: r.created_at,
      retiresAt: r.retires_at,
      destroyedAt: r.destroyed_at,
      keyOnDisk: keys.has(r.epoch),
    }));
  const current = currentEpochOf(epochs);
  if (!current) warnings.push('no live epoch in the database: the blinded design has not run on this data folder, or every epoch is destroyed');
  for (const e of epochs) {
    if (e.destroyedAt !== null && e.keyOnDisk) warnings.push(`epoch ${e.epoch} is marked destroyed but its key is still in the key file`);
  }

  // One pass over the directory: registered numbers per (bucketBits, bucket) of the targets.
  const targets = [...new Set(options.targets)];
  const bitsInUse = [...new Set(epochs.map((e) => e.bucketBits))];
  const wanted = new Map<number, Map<number, number>>(); // bits -> bucket -> count
  for (const bits of bitsInUse) {
    const m = new Map<number, number>();
    for (const t of targets) m.set(bucketOf(t, bits), 0);
    wanted.set(bits, m);
  }
  const registered = new Set<string>();
  const targetSet = new Set<string>(targets);
  let directorySize = 0;
  for (const { number } of db.prepare<[], { number: string }>('SELECT number FROM numbers').iterate()) {
    directorySize++;
    if (targetSet.has(number)) registered.add(number);
    if (targets.length === 0) continue;
    for (const [bits, m] of wanted) {
      const b = bucketOf(number as E164, bits);
      const c = m.get(b);
      if (c !== undefined) m.set(b, c + 1);
    }
  }

  // Per-minute counts; a data folder the previous version wrote (and no server has migrated yet) has one row per fetch.
  const aggregated = columnsOf.get(BUCKETS)!.includes('count');
  const fetchRows = db.prepare<[number, number, number, number], Omit<BucketFetchRow, 'sameIpRequesters' | 'sameIpTokenEvaluations' | 'relay'>>(
    aggregated
      ? `SELECT ts, ip, epoch, bucket, count FROM ${BUCKETS} WHERE epoch = ? AND bucket = ? AND ts >= ? AND ts < ? ORDER BY ts, ip`
      : `SELECT ts, ip, epoch, bucket, 1 AS count FROM ${BUCKETS} WHERE epoch = ? AND bucket = ? AND ts >= ? AND ts < ? ORDER BY ts, id`,
  );
  // The operator can join the logs on IP and time: a fetch near an evaluation from the same IP points at that requester.
  const sameIp = db.prepare<[string, number, number], { account_id: number }>(
    `SELECT DISTINCT account_id FROM ${EVAL} WHERE ip = ? AND ts >= ? AND ts <= ? ORDER BY account_id`,
  );
  // ... and near a token evaluation, at an evaluation with no account: rows whose minute overlaps the window.
  const tokenWindow = BLINDED_TOKEN_EVAL_LOG.windowMs;
  const sameIpTokens = logs.includes(BLINDED_TOKEN_EVAL_LOG)
    ? db.prepare<[string, number, number, number], { n: number }>(
        `SELECT coalesce(sum(count), 0) AS n FROM ${TOKEN_EVAL} WHERE ip = ? AND ts <= ? AND ts + ? >= ?`,
      )
    : undefined;
  const fetchesOf = (epoch: number, bucket: number): BucketFetchRow[] =>
    fetchRows.all(epoch, bucket, since, until).map((f) => {
      // An aggregated row stands for fetches anywhere in its minute.
      const lo = f.ts - CORRELATION_WINDOW_MS;
      const hi = f.ts + (aggregated ? BUCKET_LOG_WINDOW_MS : 0) + CORRELATION_WINDOW_MS;
      return {
        ...f,
        relay: isRelay(f.ip),
        sameIpRequesters: sameIp.all(f.ip, lo, hi).map((r) => r.account_id),
        sameIpTokenEvaluations: sameIpTokens?.get(f.ip, hi, tokenWindow, lo)!.n ?? 0,
      };
    });
  // Rows linked to each target, looked for in every column of every declared table, and in every spent token.
  const tagEpochs = tagEpochsOf(epochs, keys, warnings);
  const linked = linkedRowsOf(db, logs, targets, tagEpochs, [since, until], hasSpent ? [SPENT_TOKENS_TABLE] : []);
  const blindedTargets: BlindedTarget[] = targets.map((target, i) => {
    const link = linked[i]!;
    for (const [table, t] of link.tables) {
      warnings.push(
        `${target}: ${t.rows} row(s) of ${table} hold a form of it (${[...t.forms].join(', ')}): the data does not match the declaration, ` +
          'which has no column derived from a number; find out what wrote them',
      );
    }
    const perEpoch: BlindedTargetEpoch[] = epochs.map((e) => {
      const bucket = bucketOf(target, e.bucketBits);
      return {
        epoch: e.epoch,
        bucketBits: e.bucketBits,
        bucket,
        registeredInBucket: wanted.get(e.bucketBits)!.get(bucket)!,
        fetches: fetchesOf(e.epoch, bucket),
      };
    });
    const cur = current && perEpoch.find((p) => p.epoch === current.epoch);
    const { planSize: size, planSource } = planFor(target, plan);
    if (plan && !planContains(plan, target)) warnings.push(`${target} is outside the plan ${plan.map((p) => p.pattern).join(',')}: its anonymity set is counted in a plan it is not in`);
    return {
      target,
      linkedRows: link.rows,
      registered: registered.has(target),
      epoch: cur ? cur.epoch : null,
      bucketBits: cur ? cur.bucketBits : null,
      bucket: cur ? cur.bucket : null,
      registeredInBucket: cur ? cur.registeredInBucket : null,
      anonymitySet: cur ? { planSize: size, planSource, estimate: size / 2 ** cur.bucketBits } : null,
      epochs: perEpoch,
    };
  });

  const evalRows = db
    .prepare<[number, number], { ts: number; account_id: number; email: string | null; ip: string; epoch: number; count: number }>(
      // The row holds an account id only: name the account only if it is the one that asked (it existed then), never a later one.
      `SELECT e.ts, e.account_id, a.email, e.ip, e.epoch, e.count FROM ${EVAL} e ` +
        'LEFT JOIN accounts a ON a.id = e.account_id AND a.created_at <= e.ts WHERE e.ts >= ? AND e.ts < ? ORDER BY e.ts, e.id',
    )
    .all(since, until)
    .map((r) => ({ ts: r.ts, accountId: r.account_id, email: r.email, ip: r.ip, epoch: r.epoch, count: r.count }));

  // Token evaluations: rows whose minute overlaps the range.
  const tokenRows: TokenEvaluationRow[] = logs.includes(BLINDED_TOKEN_EVAL_LOG)
    ? db
        .prepare<[number, number, number], { ts: number; ip: string; epoch: number; size_class: number; count: number }>(
          `SELECT ts, ip, epoch, size_class, count FROM ${TOKEN_EVAL} WHERE ts < ? AND ts + ? > ? ORDER BY ts, ip, epoch, size_class`,
        )
        .all(until, tokenWindow, since)
        .map((r) => ({ ts: r.ts, ip: r.ip, relay: isRelay(r.ip), epoch: r.epoch, sizeClass: r.size_class, count: r.count }))
    : [];
  const perClass = new Map<number, number>();
  for (const r of tokenRows) perClass.set(r.sizeClass, (perClass.get(r.sizeClass) ?? 0) + r.count);
  const tokenEvaluations: TokenEvaluations = {
    rows: tokenRows,
    requests: tokenRows.reduce((s, r) => s + r.count, 0),
    classes: [...perClass].sort((a, b) => a[0] - b[0]).map(([sizeClass, requests]) => ({ sizeClass, requests })),
    paddedElements: tokenRows.reduce((s, r) => s + r.count * r.sizeClass, 0),
  };

  // The order's other face: accounts. Issuance rows whose day overlaps the range.
  const issuanceRows = logs.includes(TOKEN_ISSUANCE_LOG)
    ? db
        .prepare<[number, number, number], { ts: number; account_id: number; count: number }>(
          `SELECT ts, account_id, count FROM ${ISSUANCE} WHERE ts < ? AND ts + ? > ? ORDER BY account_id, ts`,
        )
        .all(until, TOKEN_ISSUANCE_LOG.windowMs, since)
    : [];
  const named = options.accounts?.length ? [...new Set(options.accounts)] : null;
  const accountIds = named ?? [...new Set([...issuanceRows.map((r) => r.account_id), ...evalRows.map((r) => r.accountId)])].sort((a, b) => a - b);
  const dayOf = logs.includes(BLINDED_TOKEN_EVAL_LOG)
    ? db.prepare<[number, number], { requests: number; paddedElements: number; ips: number }>(
        `SELECT coalesce(sum(count), 0) AS requests, coalesce(sum(count * size_class), 0) AS paddedElements, count(DISTINCT ip) AS ips FROM ${TOKEN_EVAL} WHERE ts >= ? AND ts < ?`,
      )
    : undefined;
  const sameDay = (day: number) => dayOf?.get(day, day + TOKEN_ISSUANCE_LOG.windowMs) ?? { requests: 0, paddedElements: 0, ips: 0 };
  const accountRow = db.prepare<[number], { email: string; created_at: number }>('SELECT email, created_at FROM accounts WHERE id = ?');
  const lastId = tableExists(db, 'sqlite_sequence')
    ? (db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'accounts'").get()?.seq ?? 0)
    : 0;
  const accounts: AccountOrder[] = accountIds.map((id) => {
    const a = accountRow.get(id);
    const issuance = issuanceRows.filter((r) => r.account_id === id).map((r) => ({ day: r.ts, elements: r.count, sameDay: sameDay(r.ts) }));
    const evaluations = evalRows.filter((r) => r.accountId === id);
    return {
      accountId: id,
      status: a ? 'exists' : id <= lastId ? 'deleted' : 'unknown',
      email: a?.email ?? null,
      createdAt: a?.created_at ?? null,
      issuance,
      issuedElements: issuance.reduce((s, r) => s + r.elements, 0),
      evaluations,
      evaluatedElements: evaluations.reduce((s, r) => s + r.count, 0),
    };
  });

  // Spent tokens: per key id, named by the token key file while it holds the key.
  const byKeyId = new Map(tokenKeys.map((k) => [k.keyId, k]));
  const spentKeys: SpentTokenKey[] = hasSpent
    ? db
        .prepare<[], { key_id: Buffer; n: number }>(`SELECT key_id, count(*) AS n FROM ${SPENT_TOKENS_TABLE} GROUP BY key_id`)
        .all()
        .map((r) => {
          const hex = Buffer.from(r.key_id).toString('hex');
          const k = byKeyId.get(hex);
          return { keyIdPrefix: hex.slice(0, 16), epoch: k?.epoch ?? null, sizeClass: k?.sizeClass ?? null, spent: r.n };
        })
        .sort((a, b) => (a.epoch ?? Infinity) - (b.epoch ?? Infinity) || (a.sizeClass ?? Infinity) - (b.sizeClass ?? Infinity) || a.keyIdPrefix.localeCompare(b.keyIdPrefix))
    : [];

  const bucketFetches = db
    .prepare<[number, number], { n: number }>(
      `SELECT ${aggregated ? 'coalesce(sum(count), 0)' : 'count(*)'} AS n FROM ${BUCKETS} WHERE ts >= ? AND ts < ?`,
    )
    .get(since, until)!.n;

  return {
    design: 'blinded',
    dataDir: path.resolve(dataDir),
    range: rangeOf(options),
    statement: blindedStatement(),
    directorySize,
    currentEpoch: current?.epoch ?? null,
    epochs,
    targets: blindedTargets,
    evaluations: { rows: evalRows, requests: evalRows.length, elements: evalRows.reduce((s, r) => s + r.count, 0) },
    tokenEvaluations,
    relays,
    relaysFrom,
    accountsNamed: named,
    accounts,
    spentTokens: { total: spentKeys.reduce((s, k) => s + k.spent, 0), keys: spentKeys },
    bucketFetches,
    warnings,
  };
}

/** An IP as the tables show it: marked when the order names it as a relay's. */
function ipText(ip: string, relay: boolean): string {
  return relay ? `${ip} (relay)` : ip;
}

function relayNote(r: BlindedAudit): string {
  if (r.relaysFrom === 'order') return `IPs marked (relay) are the OHTTP relays the order names (${r.relays.join(', ')}): such a row stands for every client of the relay.`;
  if (r.relaysFrom === 'recorded') {
    return `IPs marked (relay) are the OHTTP relays the server was started with (${r.relays.join(', ')}, recorded in the folder; --relay names others instead): such a row stands for every client of the relay.`;
  }
  return 'An IP may be an OHTTP relay\'s, standing for every client of that relay: no relay is recorded in the folder (pcd serve --ohttp-relay records them); name them with --relay.';
}

export function blindedTable(r: BlindedAudit): string {
  const parts: string[] = [
    `blinded design: what a pen-register order yields\nrange: ${rangeText(r.range)}\n${r.statement}`,
    `directory: ${r.directorySize} registered numbers; current epoch: ${r.currentEpoch ?? 'none'}`,
    renderTable(
      ['epoch', 'mode', 'bucket bits', 'tag bytes', 'created', 'retires', 'destroyed', 'key on disk'],
      r.epochs.map((e) => [String(e.epoch), e.mode, String(e.bucketBits), String(e.tagBytes), isoTime(e.createdAt), isoTime(e.retiresAt), isoTime(e.destroyedAt), e.keyOnDisk ? 'yes' : 'no']),
    ),
    renderTable(
      ['target', 'linked rows', 'registered', 'epoch', 'bucket bits', 'bucket', 'registered in bucket', 'anonymity set', 'bucket fetches'],
      r.targets.map((t) => [
        t.target,
        String(t.linkedRows),
        t.registered ? 'yes' : 'no',
        String(t.epoch ?? '-'),
        String(t.bucketBits ?? '-'),
        String(t.bucket ?? '-'),
        String(t.registeredInBucket ?? '-'),
        t.anonymitySet ? fmtCount(t.anonymitySet.estimate) : '-',
        String(t.epochs.reduce((s, e) => s + e.fetches.reduce((n, f) => n + f.count, 0), 0)),
      ]),
    ),
  ];
  for (const t of r.targets) {
    if (t.anonymitySet) parts.push(`${t.target}: anonymity set = ${t.anonymitySet.planSource} / 2^${t.bucketBits} = ${fmtCount(t.anonymitySet.estimate)} possible numbers per bucket id`);
    const fetches = t.epochs.flatMap((e) => e.fetches);
    if (fetches.length) {
      parts.push(
        `fetches of ${t.target}'s bucket (each concerns every number of the bucket equally; joined with the evaluation logs on IP ` +
          `within ${CORRELATION_WINDOW_MS / 1000} s, a fetch suggests which account asked about SOME number of the bucket, ` +
          'or finds only evaluations paid with a token, which name no account):\n' +
          renderTable(
            ['minute', 'ip', 'epoch', 'bucket', 'fetches', 'same-IP requesters', 'same-IP token evaluations'],
            fetches.map((f) => [isoTime(f.ts), ipText(f.ip, f.relay), String(f.epoch), String(f.bucket), String(f.count), f.sameIpRequesters.join(' '), String(f.sameIpTokenEvaluations)]),
          ),
      );
    }
  }
  parts.push(
    `evaluation requests paid with an account (${BLINDED_EVAL_LOG.name}) in the range: ${r.evaluations.requests} ` +
      `(${r.evaluations.elements} blinded elements; the same for every target)` +
      (r.evaluations.rows.length
        ? '\n' +
          renderTable(
            ['time', 'account', 'email', 'ip', 'epoch', 'elements'],
            r.evaluations.rows.map((e) => [isoTime(e.ts), String(e.accountId), e.email ?? '(deleted)', e.ip, String(e.epoch), String(e.count)]),
          )
        : ''),
  );
  const te = r.tokenEvaluations;
  parts.push(
    `evaluation requests paid with a token (${BLINDED_TOKEN_EVAL_LOG.name}) in the range: ${te.requests}` +
      (te.requests
        ? ` (${te.classes.map((c) => `${c.requests} of size class ${c.sizeClass}`).join(', ')}; at most ${te.paddedElements} blinded elements, padding included; the same for every target)\n` +
          'They name no account and no element count: a row is a minute, an IP, an epoch, the size class the request was padded to, and how many requests. ' +
          relayNote(r) +
          '\n' +
          renderTable(
            ['minute', 'ip', 'epoch', 'size class', 'requests'],
            te.rows.map((x) => [isoTime(x.ts), ipText(x.ip, x.relay), String(x.epoch), String(x.sizeClass), String(x.count)]),
          )
        : ''),
  );
  const who = r.accountsNamed ? `named by the order: ${r.accountsNamed.join(', ')}` : 'every account with a row in the range; name accounts with --account';
  const issuance = r.accounts.flatMap((a) => a.issuance.map((d) => ({ a, d })));
  parts.push(
    `what the operator can produce about accounts (${who}): ${r.accounts.length} account(s)\n` +
      `Token issuance (${TOKEN_ISSUANCE_LOG.name}) is kept per account and day, in elements' worth (the sum of the tokens' size classes), ` +
      'with no size class and no time of day. Nothing links a token to its issuance: the issuer signed blinded messages (RFC 9474) ' +
      'and never saw the tokens it later sees spent, so the evaluations paid with tokens above cannot be attributed to an account from the data. ' +
      `Evaluations paid with an account (${BLINDED_EVAL_LOG.name}) name it.` +
      (r.accounts.length
        ? '\n' +
          renderTable(
            ['account', 'email', 'created', 'days with issuance', 'elements issued', 'evaluations paid with the account', 'elements evaluated'],
            r.accounts.map((a) => [
              String(a.accountId),
              a.email ?? `(${a.status === 'deleted' ? 'deleted' : 'no such account'})`,
              isoTime(a.createdAt),
              String(a.issuance.length),
              String(a.issuedElements),
              String(a.evaluations.length),
              String(a.evaluatedElements),
            ]),
          )
        : ''),
  );
  if (issuance.length) {
    parts.push(
      'token issuance per day, beside the evaluations paid with a token that day by every requester (a day-level join: on a quiet day ' +
        "one account's issuance may be the only one that matches the day's size classes; tokens fetched ahead are spent any later day):\n" +
        renderTable(
          ['day', 'account', 'email', 'elements issued', 'token evaluations that day', 'padded elements', 'IPs'],
          issuance.map(({ a, d }) => [
            isoTime(d.day).slice(0, 10),
            String(a.accountId),
            a.email ?? `(${a.status === 'deleted' ? 'deleted' : 'no such account'})`,
            String(d.elements),
            String(d.sameDay.requests),
            String(d.sameDay.paddedElements),
            String(d.sameDay.ips),
          ]),
        ),
    );
  }
  const own = r.accounts.flatMap((a) => a.evaluations);
  if (own.length && r.accountsNamed) {
    parts.push(
      `evaluations paid with the named account(s):\n` +
        renderTable(
          ['time', 'account', 'email', 'ip', 'epoch', 'elements'],
          own.map((e) => [isoTime(e.ts), String(e.accountId), e.email ?? '(deleted)', e.ip, String(e.epoch), String(e.count)]),
        ),
    );
  }
  parts.push(
    `spent tokens held (${SPENT_TOKENS_TABLE}): ${r.spentTokens.total}; a hash per token and its token key's id, with no time and no account ` +
      '(rows go when their key retires with its epoch; epoch and class known while the token key file holds the key)' +
      (r.spentTokens.keys.length
        ? '\n' +
          renderTable(
            ['token key id', 'epoch', 'size class', 'spent'],
            r.spentTokens.keys.map((k) => [`${k.keyIdPrefix}…`, String(k.epoch ?? '-'), String(k.sizeClass ?? '-'), String(k.spent)]),
          )
        : ''),
  );
  parts.push(`bucket fetches in the range, all buckets: ${r.bucketFetches}`);
  return parts.join('\n\n') + warningsText(r.warnings);
}

/**
 * One CSV with a `record` column: a 'target' line per target, then its
 * 'bucket_fetch' lines, the 'evaluation' lines (paid with an account), the
 * 'token_evaluation' lines, an 'account' line per account (ts: its
 * creation; count: the elements' worth issued in the range) with its
 * 'issuance' lines (ts: the day; count: the elements' worth issued that
 * day), and a 'spent_tokens' line per token key (count: tokens spent).
 */
export function blindedCsv(r: BlindedAudit): string {
  const header = [
    'record', 'target', 'linked_rows', 'registered', 'epoch', 'bucket_bits', 'bucket', 'registered_in_bucket', 'anonymity_set',
    'ts', 'time', 'account_id', 'email', 'ip', 'count', 'same_ip_requesters', 'relay', 'size_class', 'same_ip_token_evaluations', 'key_id',
  ] as const;
  const line = (v: Partial<Record<(typeof header)[number], string | number | boolean | null | undefined>>) => csvRecord(header.map((h) => v[h]));
  const lines = [csvRecord(header)];
  for (const t of r.targets) {
    lines.push(
      line({
        record: 'target', target: t.target, linked_rows: t.linkedRows, registered: t.registered, epoch: t.epoch, bucket_bits: t.bucketBits,
        bucket: t.bucket, registered_in_bucket: t.registeredInBucket, anonymity_set: t.anonymitySet?.estimate,
      }),
    );
    for (const e of t.epochs) {
      for (const f of e.fetches) {
        lines.push(
          line({
            record: 'bucket_fetch', target: t.target, epoch: f.epoch, bucket_bits: e.bucketBits, bucket: f.bucket, ts: f.ts, time: isoTime(f.ts), ip: f.ip,
            count: f.count, same_ip_requesters: f.sameIpRequesters.join(' '), relay: f.relay, same_ip_token_evaluations: f.sameIpTokenEvaluations,
          }),
        );
      }
    }
  }
  for (const e of r.evaluations.rows) {
    lines.push(line({ record: 'evaluation', epoch: e.epoch, ts: e.ts, time: isoTime(e.ts), account_id: e.accountId, email: e.email, ip: e.ip, count: e.count }));
  }
  for (const x of r.tokenEvaluations.rows) {
    lines.push(line({ record: 'token_evaluation', epoch: x.epoch, ts: x.ts, time: isoTime(x.ts), ip: x.ip, count: x.count, relay: x.relay, size_class: x.sizeClass }));
  }
  for (const a of r.accounts) {
    lines.push(line({ record: 'account', account_id: a.accountId, email: a.email, ts: a.createdAt, time: isoTime(a.createdAt), count: a.issuedElements }));
    for (const d of a.issuance) lines.push(line({ record: 'issuance', ts: d.day, time: isoTime(d.day), account_id: a.accountId, email: a.email, count: d.elements }));
  }
  for (const k of r.spentTokens.keys) lines.push(line({ record: 'spent_tokens', epoch: k.epoch, count: k.spent, size_class: k.sizeClass, key_id: k.keyIdPrefix }));
  return lines.join('\n');
}
