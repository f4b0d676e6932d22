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
 *
 * Here the reading of the data folder, part by part; the result's types are
 * audit/designs/blinded-types.ts, the linked-rows search
 * audit/designs/blinded-linked.ts, the text and CSV
 * audit/designs/blinded-render.ts.
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
import { requireTable, tableColumns, tableExists, withSnapshot } from '../image.ts';
import { recordedRelays } from '../../disk/relays.ts';
import { parsePlan, planContains, planSize, type PlanPattern } from '../../shared/numbering.ts';
import { bounds, normalizeIp, rangeOf, type AuditOptions } from '../plan.ts';
import { readTokenKeyIds, type TokenKeyOnDisk } from '../tokenkeys.ts';
import { tagEpochsOf } from '../scan/forms.ts';
import {
  CORRELATION_WINDOW_MS,
  type AccountOrder,
  type BlindedAudit,
  type BlindedTarget,
  type BlindedTargetEpoch,
  type BucketFetchRow,
  type EpochSummary,
  type EvaluationRow,
  type SpentTokenKey,
  type TokenEvaluationRow,
  type TokenEvaluations,
} from './blinded-types.ts';
import { linkedRowsOf } from './blinded-linked.ts';

export * from './blinded-types.ts';
export { linkedRowsOf } from './blinded-linked.ts';
export { blindedCsv, blindedTable } from './blinded-render.ts';

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

/** What each part of the audit reads with: the folder's database, the design's log tables it has, the range, and which IPs are relays'. */
interface Reading {
  db: Database.Database;
  logs: readonly LogTable[];
  since: number;
  until: number;
  isRelay: (ip: string) => boolean;
}

function blindedOf(
  db: Database.Database,
  dataDir: string,
  options: AuditOptions,
  plan: readonly PlanPattern[] | undefined,
  keys: ReadonlyMap<number, Uint8Array>,
  tokenKeys: readonly TokenKeyOnDisk[],
  warnings: string[],
): BlindedAudit {
  const { logs, hasSpent, columnsOf } = checkTables(db, warnings);
  const [since, until] = bounds(options);
  const { relays, relaysFrom } = relaysOf(db, options);
  const rd: Reading = { db, logs, since, until, isRelay: (ip) => relays.includes(normalizeIp(ip)) };
  const epochs = epochsOf(db, keys);
  const current = currentEpochOf(epochs);
  if (!current) warnings.push('no live epoch in the database: the blinded design has not run on this data folder, or every epoch is destroyed');
  for (const e of epochs) {
    if (e.destroyedAt !== null && e.keyOnDisk) warnings.push(`epoch ${e.epoch} is marked destroyed but its key is still in the key file`);
  }

  const targets = [...new Set(options.targets)];
  const { directorySize, registered, wanted } = directoryCounts(db, targets, epochs);
  // Per-minute counts; a data folder the previous version wrote (and no server has migrated yet) has one row per fetch.
  const aggregated = columnsOf.get(BLINDED_BUCKET_LOG.name)!.includes('count');
  const fetchesOf = bucketFetchReader(rd, aggregated);
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

  const evalRows = evaluationRows(rd);
  const { named, accounts } = accountOrders(rd, options.accounts, evalRows);
  const spentKeys = hasSpent ? spentTokenKeys(db, tokenKeys) : [];
  const bucketFetches = db
    .prepare<[number, number], { n: number }>(
      `SELECT ${aggregated ? 'coalesce(sum(count), 0)' : 'count(*)'} AS n FROM ${BLINDED_BUCKET_LOG.name} WHERE ts >= ? AND ts < ?`,
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
    tokenEvaluations: tokenEvaluationsOf(rd),
    relays,
    relaysFrom,
    accountsNamed: named,
    accounts,
    spentTokens: { total: spentKeys.reduce((s, k) => s + k.spent, 0), keys: spentKeys },
    bucketFetches,
    warnings,
  };
}

/**
 * The design's log tables the database has, and the tables of disk/sql.ts
 * every server has that this audit reads (required); the token path's may be
 * missing (a warning, read as empty). A column the audit does not know is a
 * warning.
 */
function checkTables(db: Database.Database, warnings: string[]): { logs: LogTable[]; hasSpent: boolean; columnsOf: Map<string, string[]> } {
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
  return { logs, hasSpent, columnsOf };
}

/** The order's relays; without any, those the server recorded it was configured with (disk/relays.ts). */
function relaysOf(db: Database.Database, options: AuditOptions): Pick<BlindedAudit, 'relays' | 'relaysFrom'> {
  const recorded = Object.keys(recordedRelays(db)).map(normalizeIp);
  const relaysFrom: BlindedAudit['relaysFrom'] = options.relays?.length ? 'order' : recorded.length ? 'recorded' : 'none';
  const relays = [...new Set(relaysFrom === 'order' ? options.relays!.map(normalizeIp) : recorded)];
  return { relays, relaysFrom };
}

function epochsOf(db: Database.Database, keys: ReadonlyMap<number, Uint8Array>): EpochSummary[] {
  return db
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
}

/** One pass over the directory: its size, the targets registered, and registered numbers per (bucketBits, bucket) of the targets. */
function directoryCounts(
  db: Database.Database,
  targets: readonly E164[],
  epochs: readonly EpochSummary[],
): { directorySize: number; registered: Set<string>; wanted: Map<number, Map<number, number>> } {
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
  return { directorySize, registered, wanted };
}

/**
 * The fetches of one bucket in the range, each joined with the evaluation
 * logs on IP and time, as the operator can: a fetch near an evaluation from
 * the same IP points at that requester, or, near a token evaluation, at an
 * evaluation with no account.
 */
function bucketFetchReader(rd: Reading, aggregated: boolean): (epoch: number, bucket: number) => BucketFetchRow[] {
  const { db, logs, since, until } = rd;
  const BUCKETS = BLINDED_BUCKET_LOG.name;
  const fetchRows = db.prepare<[number, number, number, number], Omit<BucketFetchRow, 'sameIpRequesters' | 'sameIpTokenEvaluations' | 'relay'>>(
    aggregated
      ? `SELECT ts, ip, epoch, bucket, count FROM ${BUCKETS} WHERE epoch = ? AND bucket = ? AND ts >= ? AND ts < ? ORDER BY ts, ip`
      : `SELECT ts, ip, epoch, bucket, 1 AS count FROM ${BUCKETS} WHERE epoch = ? AND bucket = ? AND ts >= ? AND ts < ? ORDER BY ts, id`,
  );
  const sameIp = db.prepare<[string, number, number], { account_id: number }>(
    `SELECT DISTINCT account_id FROM ${BLINDED_EVAL_LOG.name} WHERE ip = ? AND ts >= ? AND ts <= ? ORDER BY account_id`,
  );
  // Token evaluations: rows whose minute overlaps the window.
  const tokenWindow = BLINDED_TOKEN_EVAL_LOG.windowMs;
  const sameIpTokens = logs.includes(BLINDED_TOKEN_EVAL_LOG)
    ? db.prepare<[string, number, number, number], { n: number }>(
        `SELECT coalesce(sum(count), 0) AS n FROM ${BLINDED_TOKEN_EVAL_LOG.name} WHERE ip = ? AND ts <= ? AND ts + ? >= ?`,
      )
    : undefined;
  return (epoch, bucket) =>
    fetchRows.all(epoch, bucket, since, until).map((f) => {
      // An aggregated row stands for fetches anywhere in its minute.
      const lo = f.ts - CORRELATION_WINDOW_MS;
      const hi = f.ts + (aggregated ? BUCKET_LOG_WINDOW_MS : 0) + CORRELATION_WINDOW_MS;
      return {
        ...f,
        relay: rd.isRelay(f.ip),
        sameIpRequesters: sameIp.all(f.ip, lo, hi).map((r) => r.account_id),
        sameIpTokenEvaluations: sameIpTokens?.get(f.ip, hi, tokenWindow, lo)!.n ?? 0,
      };
    });
}

/** Evaluation requests paid with an account, in the range. */
function evaluationRows({ db, since, until }: Reading): EvaluationRow[] {
  return db
    .prepare<[number, number], { ts: number; account_id: number; email: string | null; ip: string; epoch: number; count: number }>(
      // The row holds an account id only: name the account only if it is the one that asked (it existed then), never a later one.
      `SELECT e.ts, e.account_id, a.email, e.ip, e.epoch, e.count FROM ${BLINDED_EVAL_LOG.name} e ` +
        'LEFT JOIN accounts a ON a.id = e.account_id AND a.created_at <= e.ts WHERE e.ts >= ? AND e.ts < ? ORDER BY e.ts, e.id',
    )
    .all(since, until)
    .map((r) => ({ ts: r.ts, accountId: r.account_id, email: r.email, ip: r.ip, epoch: r.epoch, count: r.count }));
}

/** Token evaluations: rows whose minute overlaps the range, and their requests per size class. */
function tokenEvaluationsOf({ db, logs, since, until, isRelay }: Reading): TokenEvaluations {
  const tokenRows: TokenEvaluationRow[] = logs.includes(BLINDED_TOKEN_EVAL_LOG)
    ? db
        .prepare<[number, number, number], { ts: number; ip: string; epoch: number; size_class: number; count: number }>(
          `SELECT ts, ip, epoch, size_class, count FROM ${BLINDED_TOKEN_EVAL_LOG.name} WHERE ts < ? AND ts + ? > ? ORDER BY ts, ip, epoch, size_class`,
        )
        .all(until, BLINDED_TOKEN_EVAL_LOG.windowMs, since)
        .map((r) => ({ ts: r.ts, ip: r.ip, relay: isRelay(r.ip), epoch: r.epoch, sizeClass: r.size_class, count: r.count }))
    : [];
  const perClass = new Map<number, number>();
  for (const r of tokenRows) perClass.set(r.sizeClass, (perClass.get(r.sizeClass) ?? 0) + r.count);
  return {
    rows: tokenRows,
    requests: tokenRows.reduce((s, r) => s + r.count, 0),
    classes: [...perClass].sort((a, b) => a[0] - b[0]).map(([sizeClass, requests]) => ({ sizeClass, requests })),
    paddedElements: tokenRows.reduce((s, r) => s + r.count * r.sizeClass, 0),
  };
}

/**
 * The order's other face: the accounts it names, else every account with a
 * row in the range; per account its issuance per day (rows whose day
 * overlaps the range), beside every requester's token evaluations that day,
 * and the evaluations it paid for itself.
 */
function accountOrders(rd: Reading, namedAccounts: readonly number[] | undefined, evalRows: readonly EvaluationRow[]): { named: number[] | null; accounts: AccountOrder[] } {
  const { db, logs, since, until } = rd;
  const issuanceRows = logs.includes(TOKEN_ISSUANCE_LOG)
    ? db
        .prepare<[number, number, number], { ts: number; account_id: number; count: number }>(
          `SELECT ts, account_id, count FROM ${TOKEN_ISSUANCE_LOG.name} WHERE ts < ? AND ts + ? > ? ORDER BY account_id, ts`,
        )
        .all(until, TOKEN_ISSUANCE_LOG.windowMs, since)
    : [];
  const named = namedAccounts?.length ? [...new Set(namedAccounts)] : null;
  const accountIds = named ?? [...new Set([...issuanceRows.map((r) => r.account_id), ...evalRows.map((r) => r.accountId)])].sort((a, b) => a - b);
  const dayOf = logs.includes(BLINDED_TOKEN_EVAL_LOG)
    ? db.prepare<[number, number], { requests: number; paddedElements: number; ips: number }>(
        `SELECT coalesce(sum(count), 0) AS requests, coalesce(sum(count * size_class), 0) AS paddedElements, count(DISTINCT ip) AS ips FROM ${BLINDED_TOKEN_EVAL_LOG.name} WHERE ts >= ? AND ts < ?`,
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
  return { named, accounts };
}

/** Spent tokens: per key id, named by the token key file while it holds the key. */
function spentTokenKeys(db: Database.Database, tokenKeys: readonly TokenKeyOnDisk[]): SpentTokenKey[] {
  const byKeyId = new Map(tokenKeys.map((k) => [k.keyId, k]));
  return db
    .prepare<[], { key_id: Buffer; n: number }>(`SELECT key_id, count(*) AS n FROM ${SPENT_TOKENS_TABLE} GROUP BY key_id`)
    .all()
    .map((r) => {
      const hex = Buffer.from(r.key_id).toString('hex');
      const k = byKeyId.get(hex);
      return { keyIdPrefix: hex.slice(0, 16), epoch: k?.epoch ?? null, sizeClass: k?.sizeClass ?? null, spent: r.n };
    })
    .sort((a, b) => (a.epoch ?? Infinity) - (b.epoch ?? Infinity) || (a.sizeClass ?? Infinity) - (b.sizeClass ?? Infinity) || a.keyIdPrefix.localeCompare(b.keyIdPrefix));
}
