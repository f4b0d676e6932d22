/**
 * `pcd audit`: what a pen-register order yields under each design, on a data
 * folder's persisted data (audit/designs/), or with `--scan` a search of
 * every file in it for a list of numbers (audit/scan/). Reads only: the
 * server need not run, and nothing in the data folder is written. An
 * offline tool: registered by bin/pcd.ts, never part of the server process.
 *
 * A shared store (`--store postgres://…`, or PCD_DATABASE_URL without
 * --data): the same audits on a copy of one snapshot of it in a temporary
 * folder (audit/pgimage.ts); `--pg-data DIR` searches the files of a
 * Postgres cluster (audit/scan/pgdata.ts).
 */
import fs from 'node:fs';
import { Command, Option } from 'commander';
import type { E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { normalizeNumber } from '../../shared/e164.ts';
import { DESIGNS, parseDesigns } from '../../shared/designs/index.ts';
import type { AuditResult } from '../../audit/designs/index.ts';
import { AUDIT_FORMATS, type AuditFormat } from '../../audit/format.ts';
import { parseAccounts, parseRelays, parseTargets, parseTime } from '../../audit/plan.ts';
import { parsePlan } from '../../shared/numbering.ts';
import type { PgSnapshotInfo } from '../../audit/pgimage.ts';
import { STORE_URL_ENV, storeUrl } from '../../server/pg/connect.ts';


interface AuditFlags {
  data: string;
  store?: string;
  design: string;
  target: string[];
  account: string[];
  relay: string[];
  region?: string;
  since?: string;
  until?: string;
  plan?: string;
  format: AuditFormat;
  scan?: string;
  pgData?: string;
  national: boolean;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** A numbers file: one number per line; blank lines and lines starting with '#' are skipped. Errors name the line. */
export function readNumbersFile(file: string, region?: string): E164[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new PcdError(ErrorCode.NotFound, `cannot read numbers file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const out: E164[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const s = line.trim();
    if (s === '' || s.startsWith('#')) return;
    try {
      out.push(normalizeNumber(s, region));
    } catch (e) {
      if (e instanceof PcdError) throw new PcdError(e.code, `${file} line ${i + 1}: ${e.message}`);
      throw e;
    }
  });
  if (out.length === 0) throw new PcdError(ErrorCode.InvalidField, `${file} holds no number (one per line)`);
  return out;
}

export function registerAuditCommand(program: Command): void {
  program
    .command('audit')
    .description(
      "what a pen-register order yields under each design, computed on the data folder's persisted data, or on a copy of a shared store's " +
        '(reads only: the server need not run, nothing in the data folder or the store is written)',
    )
    .option('--data <dir>', 'data folder', 'data')
    .option(
      '--store <url>',
      `instead of a data folder: a shared Postgres store (postgres://…, or ${STORE_URL_ENV} unless --data is given), ` +
        'copied from one REPEATABLE READ READ ONLY snapshot into a temporary SQLite database and audited as a folder is; plain and hashed',
    )
    .option('--design <list>', `design(s) to audit, comma separated: ${DESIGNS.join(', ')}`, DESIGNS.join(','))
    .addOption(
      new Option('--target <number>', 'target number; repeat the option or separate with commas')
        .argParser(collect)
        .default([] as string[], 'every number in the log'),
    )
    .addOption(
      new Option(
        '--account <id>',
        "blinded: the order's other face, what the operator can produce about an account (token issuance per day, evaluations paid with the account); " +
          'repeat the option or separate with commas; without it, the relays the server was started with (recorded in the folder)',
      )
        .argParser(collect)
        .default([] as string[], 'every account with a row in the range'),
    )
    .addOption(
      new Option(
        '--relay <ip>',
        "blinded: an OHTTP relay's address (pcd serve --ohttp-relay), marked in the rows: such a row stands for every client of the relay; " +
          'repeat the option or separate with commas; without it, the relays the server was started with (recorded in the folder)',
      )
        .argParser(collect)
        .default([] as string[], 'none'),
    )
    .option('-r, --region <CC>', 'default region for numbers written without a country code, e.g. US')
    .option('--since <time>', "start of the range: ISO 8601 (2026-11-01, 2026-11-01T12:00Z) or an age such as 7d, 12h, 30m (default: the beginning)")
    .option('--until <time>', "end of the range, exclusive: ISO 8601, an age, or 'now' (default: open)")
    .option(
      '--plan <patterns>',
      'numbering-plan range(s), X = any digit, comma separated, e.g. +1415555XXXX. hashed: the range enumerated to reverse the hashes ' +
        '(default: each target with its last 4 digits as X, i.e. its surrounding 10^4 numbers); ' +
        "blinded: the plan the anonymity set is counted in (default: the target country's national numbers of its length)",
    )
    .addOption(new Option('--format <format>', 'output: aligned table, CSV with header, or JSON').choices([...AUDIT_FORMATS]).default('table'))
    .option('--scan <NUMBERS_FILE>', 'instead: search every file of the data folder for these numbers (one per line) in every form and print hits per design')
    .option(
      '--pg-data <dir>',
      "instead: search every file of a Postgres cluster's data directory (relation files under base/, the WAL under pg_wal/, ...) for the numbers " +
        'of --scan NUMBERS_FILE and --target in every form, per file; no attribution to designs (not SQLite pages); with --store, relation files are named',
    )
    .option('--no-national', 'scan: do not search national-format digits')
    .addHelpText(
      'after',
      [
        '',
        'Examples:',
        '  pcd audit --data data --design plain --target +14155550123 --since 7d',
        '  pcd audit --design hashed --target +14155550123 --plan +1415XXXXXXX --format json',
        '  pcd audit --design blinded --target +14155550123',
        '  pcd audit --design blinded --account 3 --since 30d --relay 203.0.113.7',
        '  pcd audit --scan contacts/user0.txt',
        '  pcd audit --store postgres://pcd@db.internal/pcd --design plain --target +14155550123',
        '  pcd audit --pg-data /var/lib/postgresql/16/main --target +14155550123',
      ].join('\n'),
    )
    .action(async (o: AuditFlags, cmd: Command) => {
      // The audit's readers are loaded when it runs, so a process that serves never loads them.
      const readers = await loadReaders();
      if (o.pgData !== undefined) return scanPgData(readers, o, o.pgData);
      if (o.scan !== undefined && o.store !== undefined) {
        throw new PcdError(ErrorCode.InvalidField, '--scan searches the files of a data folder: give --data, not --store (or --pg-data DIR for the files of a Postgres cluster)');
      }
      // --store, or the environment's store unless --data names a folder or --scan searches one.
      const store = storeUrl(o.store, cmd.getOptionValueSource('data') === 'cli' || o.scan !== undefined ? {} : process.env);
      if (store === undefined) readers.databaseFile(o.data); // a clear error before anything else when --data is wrong
      if (o.scan !== undefined) {
        const numbers = readNumbersFile(o.scan, o.region);
        const result = readers.scanDataFolder(o.data, numbers, { national: o.national });
        console.log(readers.formatScan(result, o.format));
        return;
      }
      await auditDesigns(readers, o, cmd, store);
    });
}

/** The audit's readers, loaded together when the command runs. */
async function loadReaders() {
  const [{ formatAudit, runAudit }, { databaseFile }, { formatScan, scanDataFolder }, { relationNames, withPgSnapshot }, { formatPgScan, scanPgDataDir }] = await Promise.all([
    import('../../audit/designs/index.ts'),
    import('../../audit/image.ts'),
    import('../../audit/scan/scan.ts'),
    import('../../audit/pgimage.ts'),
    import('../../audit/scan/pgdata.ts'),
  ]);
  return { formatAudit, runAudit, databaseFile, formatScan, scanDataFolder, relationNames, withPgSnapshot, formatPgScan, scanPgDataDir };
}
type AuditReaders = Awaited<ReturnType<typeof loadReaders>>;

/** `--pg-data DIR`: the files of a Postgres cluster searched for the numbers of --scan and --target. */
async function scanPgData(readers: AuditReaders, o: AuditFlags, pgData: string): Promise<void> {
  const numbers = [...(o.scan !== undefined ? readNumbersFile(o.scan, o.region) : []), ...parseTargets(o.target, o.region)];
  if (numbers.length === 0) throw new PcdError(ErrorCode.InvalidField, '--pg-data searches for numbers: give --target NUMBER or --scan NUMBERS_FILE');
  // Relation names only from an explicit --store: the scan is offline, PCD_DATABASE_URL alone does not make it connect.
  const relations = o.store !== undefined ? await readers.relationNames(storeUrl(o.store, {})!) : undefined;
  console.log(readers.formatPgScan(readers.scanPgDataDir(pgData, numbers, { national: o.national, relations }), o.format));
}

/** The order under each design: on the data folder, or on a copy of one snapshot of the store (`store`). */
async function auditDesigns(readers: AuditReaders, o: AuditFlags, cmd: Command, store: string | undefined): Promise<void> {
  let designs = parseDesigns(o.design);
  // Without --design, --target or --plan the hashed audit has no range to enumerate: the others run, and one line says what it needs.
  let skipped: string | undefined;
  if (cmd.getOptionValueSource('design') === 'default' && o.target.length === 0 && o.plan === undefined && designs.length > 1) {
    designs = designs.filter((d) => d !== 'hashed');
    skipped = 'hashed: not audited: reversing its hashes needs the numbers to try, --target NUMBER (its 10^4 neighbours) or --plan +1415555XXXX (a range)';
  }
  if (o.format === 'csv' && designs.length > 1) {
    throw new PcdError(ErrorCode.InvalidField, `--format csv prints one design's rows: pick one with --design (${DESIGNS.join(', ')})`);
  }
  const now = Date.now();
  const since = o.since === undefined ? undefined : parseTime(o.since, now);
  const until = o.until === undefined ? undefined : parseTime(o.until, now);
  if (since !== undefined && until !== undefined && since >= until) {
    throw new PcdError(ErrorCode.InvalidField, `--since (${new Date(since).toISOString()}) must be before --until (${new Date(until).toISOString()})`);
  }
  const targets = parseTargets(o.target, o.region);
  const accounts = parseAccounts(o.account);
  const relays = parseRelays(o.relay);
  if ((accounts.length || relays.length) && !designs.includes('blinded')) {
    throw new PcdError(ErrorCode.InvalidField, `--account and --relay are the blinded design's (token issuance, relayed requests): add blinded to --design`);
  }
  if (o.plan !== undefined) parsePlan(o.plan); // report a bad pattern before any work
  const audit = (dataDir: string) => designs.map((design) => readers.runAudit(dataDir, design, { targets, since, until, plan: o.plan, accounts, relays }));
  let results: AuditResult[];
  let info: PgSnapshotInfo | undefined;
  if (store === undefined) results = audit(o.data);
  else {
    [results, info] = await readers.withPgSnapshot(store, (dir, i) => [audit(dir), i] as const);
  }
  printAudits(readers.formatAudit, o.format, results, info, skipped);
}

/** The results in the asked format; from a store, with where they were read from; and what was skipped. */
function printAudits(formatAudit: AuditReaders['formatAudit'], format: AuditFormat, results: AuditResult[], info: PgSnapshotInfo | undefined, skipped: string | undefined): void {
  const source = info && sourceText(info);
  // console.log, as every pcd command writes: what an in-process run (test/helpers.ts runPcd) reads as stdout.
  if (format === 'json') {
    // From a store, the folder audited was a temporary copy: the result names the store instead.
    const out = info ? results.map(({ dataDir: _copy, ...r }) => ({ ...r, store: info.source })) : results;
    console.log(JSON.stringify(out.length === 1 ? out[0] : out, null, 2));
    if (skipped) process.stderr.write(`pcd audit: ${skipped}\n`);
    return;
  }
  if (source && format === 'csv') process.stderr.write(`pcd audit: ${source}\n`);
  const body = results.map((r) => formatAudit(r, format)).join('\n\n' + '='.repeat(72) + '\n\n');
  console.log(source && format === 'table' ? `${source}\n\n${body}` : body);
  if (skipped) console.log(`\n${'='.repeat(72)}\n\n${skipped}`);
}

/** Where a store audit read from: the store (no password) and what the snapshot held. */
function sourceText(info: PgSnapshotInfo): string {
  const rows = info.tables.reduce((n, t) => n + t.rows, 0);
  const missing = info.missing.length ? `; not in the store (audited as empty): ${info.missing.join(', ')}` : '';
  return `read from the shared store ${info.source}: one REPEATABLE READ READ ONLY snapshot, ${rows} row(s) of ${info.tables.length} table(s) copied${missing}`;
}
