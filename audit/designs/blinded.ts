/**
 * The blinded design's audit. No column of its declared logs
 * (shared/designs/blinded.ts: BLINDED_EVAL_LOG, BLINDED_BUCKET_LOG) holds a
 * number or a function of one; the result's `statement` says so from the
 * declarations. What the operator can produce is the target's bucket id
 * (shared by every number of the bucket), the fetches of that bucket and
 * the evaluation rows (who asked how many blinded elements when); the audit
 * reports the anonymity set.
 *
 * The data is checked too: a target's `linkedRows` counts the rows of the
 * design's declared log tables, in the range, in which the value of any
 * column (every column the table has, declared or not) holds any form of
 * the target the scan searches for (audit/scan/forms.ts: its E.164 text,
 * digits and national number, its SHA-256, SHA-1 and MD5 in their
 * encodings, and, per epoch whose key is in the key file, its tag and OPRF
 * output). A server that logs as declared leaves 0; any other count is also
 * a warning naming the tables and forms.
 *
 * Evaluation rows carry an account id only, which is named only if that
 * account already existed when the row was written (ids are never reused,
 * server/store.ts; data folders of versions that did reuse them are guarded
 * by the creation time), so a deleted account shows as deleted, never as a
 * later account. Bucket fetches are counted per minute, IP, epoch and bucket
 * (server/designs/blinded.ts).
 */
import path from 'node:path';
import type Database from 'better-sqlite3';
import { parsePhoneNumberFromString } from 'libphonenumber-js/max';
import { bucketOf } from '../../shared/buckets.ts';
import type { E164 } from '../../shared/e164.ts';
import { BLINDED, BLINDED_BUCKET_LOG, BLINDED_EVAL_LOG, BUCKET_LOG_WINDOW_MS } from '../../shared/designs/blinded.ts';
import { columnNames, numberColumns, type LogTable } from '../../shared/logs.ts';
import { pickCurrent, type EpochRow } from '../../disk/epochs.ts';
import { readEpochKeys } from '../../disk/keyfile.ts';
import { csvRecord, fmtCount, isoTime, rangeText, renderTable, warningsText } from '../format.ts';
import { requireTable, tableColumns, withSnapshot } from '../image.ts';
import { bounds, parsePlan, planContains, planSize, rangeOf, type AuditOptions, type PlanPattern } from '../plan.ts';
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
  /** Evaluation rows in the range: the same for every target, since none is derived from a number. */
  evaluations: { rows: EvaluationRow[]; requests: number; elements: number };
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

/**
 * What the logs hold, from their declarations (shared/logs.ts): each table
 * with its description and every declared column with what it holds, and
 * whether a column holds a number or a function of one (`numberColumns`).
 * The same for every target; the targets' linked rows are checked on the data.
 */
export function blindedStatement(tables: readonly LogTable[] = BLINDED_LOGS): string {
  const names = tables.map((t) => t.name).join(' or ');
  const derived = tables.flatMap((t) => numberColumns(t).map((c) => `${t.name}.${c}`));
  const claim = derived.length
    ? `Rows of ${names} are derived from a number: ${derived.join(', ')} hold(s) a number or a function of one.`
    : `No row of ${names} is derived from a number: no declared column holds a number or a function of one.`;
  const holds = tables.map((t) => `${t.name} rows hold ${t.columns.map(columnText).join(', ')} (${t.description})`);
  const bucket = tables.some((t) => t.columns.some((c) => c.holds === 'bucket')) ? '; a bucket id is shared by every number of the bucket' : '';
  return (
    `${claim} ${holds.join('; ')}. The blinded elements are uniformly random group elements to the server${bucket}. ` +
    'Linked rows per target: the rows of these tables with any form of the target (text, digits, hashes, tags) in any column. ' +
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
 * Counts, per target, the rows of `tables` in the range in which the value
 * of any column (SELECT *: every column the table has) holds any form of the
 * target (audit/scan/forms.ts, with the tags of `epochs`). One search per
 * value for every form of every target at once (audit/scan/search.ts).
 */
export function linkedRowsOf(
  db: Database.Database,
  tables: readonly LogTable[],
  targets: readonly E164[],
  epochs: readonly TagEpoch[],
  range: [number, number],
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
  for (const table of tables) {
    // Raw rows (every column, in order) and integers exact, as their decimal digits are searched.
    const q = db.prepare<[number, number], unknown[]>(`SELECT * FROM ${table.name} WHERE ts >= ? AND ts < ?`).raw(true).safeIntegers(true);
    for (const row of q.iterate(...range)) {
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

/** What the blinded design's logs yield for the targets: the rows linked to each (none, from a server that logs as declared), the bucket, its anonymity set, and the rows the operator can produce. */
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
  try {
    return withSnapshot(dataDir, ({ db }) => blindedOf(db, dataDir, options, plan, keys, warnings));
  } finally {
    for (const sk of keys.values()) sk.fill(0);
  }
}

function blindedOf(
  db: Database.Database,
  dataDir: string,
  options: AuditOptions,
  plan: readonly PlanPattern[] | undefined,
  keys: ReadonlyMap<number, Uint8Array>,
  warnings: string[],
): BlindedAudit {
  const EVAL = BLINDED_EVAL_LOG.name;
  const BUCKETS = BLINDED_BUCKET_LOG.name;
  // The design's log tables, and the tables of disk/schema.ts every server has that this audit reads.
  for (const t of [...BLINDED_LOGS.map((l) => l.name), 'epochs', 'numbers']) requireTable(db, t);
  const columnsOf = new Map(BLINDED_LOGS.map((t) => [t.name, tableColumns(db, t.name)]));
  for (const t of BLINDED_LOGS) {
    const extra = columnsOf.get(t.name)!.filter((c) => !knownColumns(t).includes(c));
    if (extra.length) warnings.push(`${t.name} has column(s) ${extra.join(', ')} the audit does not know: check that none is derived from a number`);
  }
  const [since, until] = bounds(options);
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
  const fetchRows = db.prepare<[number, number, number, number], Omit<BucketFetchRow, 'sameIpRequesters'>>(
    aggregated
      ? `SELECT ts, ip, epoch, bucket, count FROM ${BUCKETS} WHERE epoch = ? AND bucket = ? AND ts >= ? AND ts < ? ORDER BY ts, ip`
      : `SELECT ts, ip, epoch, bucket, 1 AS count FROM ${BUCKETS} WHERE epoch = ? AND bucket = ? AND ts >= ? AND ts < ? ORDER BY ts, id`,
  );
  // The operator can join the logs on IP and time: a fetch near an evaluation from the same IP points at that requester.
  const sameIp = db.prepare<[string, number, number], { account_id: number }>(
    `SELECT DISTINCT account_id FROM ${EVAL} WHERE ip = ? AND ts >= ? AND ts <= ? ORDER BY account_id`,
  );
  const fetchesOf = (epoch: number, bucket: number): BucketFetchRow[] =>
    fetchRows.all(epoch, bucket, since, until).map((f) => ({
      ...f,
      // An aggregated row stands for fetches anywhere in its minute.
      sameIpRequesters: sameIp
        .all(f.ip, f.ts - CORRELATION_WINDOW_MS, f.ts + (aggregated ? BUCKET_LOG_WINDOW_MS : 0) + CORRELATION_WINDOW_MS)
        .map((r) => r.account_id),
    }));
  // Rows linked to each target, looked for in every column of every declared table.
  const tagEpochs = tagEpochsOf(epochs, keys, warnings);
  const linked = linkedRowsOf(db, BLINDED_LOGS, targets, tagEpochs, [since, until]);
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
    bucketFetches,
    warnings,
  };
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
        `fetches of ${t.target}'s bucket (each concerns every number of the bucket equally; joined with the evaluation log on IP ` +
          `within ${CORRELATION_WINDOW_MS / 1000} s, a fetch suggests which account asked about SOME number of the bucket):\n` +
          renderTable(
            ['minute', 'ip', 'epoch', 'bucket', 'fetches', 'same-IP requesters'],
            fetches.map((f) => [isoTime(f.ts), f.ip, String(f.epoch), String(f.bucket), String(f.count), f.sameIpRequesters.join(' ')]),
          ),
      );
    }
  }
  parts.push(
    `evaluation requests in the range: ${r.evaluations.requests} (${r.evaluations.elements} blinded elements; the same for every target)` +
      (r.evaluations.rows.length
        ? '\n' +
          renderTable(
            ['time', 'account', 'email', 'ip', 'epoch', 'elements'],
            r.evaluations.rows.map((e) => [isoTime(e.ts), String(e.accountId), e.email ?? '(deleted)', e.ip, String(e.epoch), String(e.count)]),
          )
        : ''),
  );
  parts.push(`bucket fetches in the range, all buckets: ${r.bucketFetches}`);
  return parts.join('\n\n') + warningsText(r.warnings);
}

/** One CSV with a `record` column: a 'target' line per target, then its 'bucket_fetch' lines, then the 'evaluation' lines. */
export function blindedCsv(r: BlindedAudit): string {
  const lines = [
    csvRecord(['record', 'target', 'linked_rows', 'registered', 'epoch', 'bucket_bits', 'bucket', 'registered_in_bucket', 'anonymity_set', 'ts', 'time', 'account_id', 'email', 'ip', 'count', 'same_ip_requesters']),
  ];
  for (const t of r.targets) {
    lines.push(csvRecord(['target', t.target, t.linkedRows, t.registered, t.epoch, t.bucketBits, t.bucket, t.registeredInBucket, t.anonymitySet?.estimate, '', '', '', '', '', '', '']));
    for (const e of t.epochs) {
      for (const f of e.fetches) {
        lines.push(csvRecord(['bucket_fetch', t.target, '', '', f.epoch, e.bucketBits, f.bucket, '', '', f.ts, isoTime(f.ts), '', '', f.ip, f.count, f.sameIpRequesters.join(' ')]));
      }
    }
  }
  for (const e of r.evaluations.rows) lines.push(csvRecord(['evaluation', '', '', '', e.epoch, '', '', '', '', e.ts, isoTime(e.ts), e.accountId, e.email, e.ip, e.count, '']));
  return lines.join('\n');
}
