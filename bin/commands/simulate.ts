/**
 * `pcd simulate`: the workload simulation from the command line (see
 * workload/run.ts). Every population and script parameter is a flag; the
 * defaults are the default scale: plain, hashed, and the blinded variants
 * (blinded, blinded-anonymous, blinded-anonymous+relay) at 0, 4, 8 and 12
 * bucket bits.
 *
 *   pcd simulate                                   default scale, table on stdout
 *   pcd simulate --out sim/ --days 7 --bucket-bits 0,8,16
 *   pcd simulate --designs blinded --bucket-bits 12 --people 20000 --registered-share 0.5
 *   pcd simulate --designs blinded-anonymous,blinded-anonymous+relay --bucket-bits 0 --days 3
 *
 * With --out: results.json (parameters, population, script counts and the
 * `workload` rows), workload.md (the tables) and workload.vl.json (the
 * chart as a Vega-Lite spec). No token is ever written: the accounts'
 * tokens live in memory only. Progress goes to stderr, the table to stdout.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { DESIGNS } from '../../shared/designs/index.ts';
import { workloadChart, workloadMarkdown } from '../../bench/workload.ts';
import { DEFAULT_POPULATION } from '../../workload/population.ts';
import { DEFAULT_ANONYMOUS_BUCKET_BITS, DEFAULT_BUCKET_BITS, runWorkload } from '../../workload/run.ts';
import { DEFAULT_SCRIPT } from '../../workload/script.ts';
import { LIBRARY_TOKEN_QUANTUM, VARIANT_NAMES, type WorkloadVariant } from '../../workload/simulate.ts';

export const WORKLOAD_SCHEMA = 'pcd-workload/1';

function bad(flag: string, value: string, want: string): never {
  throw new PcdError(ErrorCode.InvalidField, `${flag} '${value.slice(0, 40)}' is not ${want}`);
}

const num = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) bad(flag, v, 'a number');
  return n;
};

const int = (flag: string) => (v: string): number => {
  const n = Number(v);
  if (!/^\s*\d+\s*$/.test(v) || !Number.isSafeInteger(n)) bad(flag, v, 'a whole number');
  return n;
};

const list = (v: string): string[] =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

const intList = (flag: string) => (v: string): number[] => {
  const xs = list(v);
  if (xs.length === 0) bad(flag, v, 'a comma-separated list of whole numbers');
  return xs.map((x) => int(flag)(x));
};

function parseStart(v: string): number {
  const t = /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/i.test(v.trim()) ? Date.parse(v.trim()) : NaN;
  if (!Number.isFinite(t)) bad('--start', v, 'an ISO 8601 date (2026-01-05 or 2026-01-05T00:00:00Z)');
  return t;
}

interface Flags {
  seed: string;
  regions: string[];
  blocks: number;
  blockDigits: number;
  people: number;
  registeredShare: number;
  degreeMedian: number;
  degreeSigma: number;
  maxDegree: number;
  communitySize: number;
  clustering: number;
  mutual: number;
  tieSigma: number;
  days: number;
  conversationsPerDay: number;
  activitySigma: number;
  newContactsPerDay: number;
  newContactChat: number;
  reinstallsPerYear: number;
  cacheTtlHours: number;
  start: number;
  designs: string[];
  bucketBits: number[];
  anonymousBucketBits: number[];
  usersPerIp: number;
  orderDays?: number;
  tokenQuantum: number;
  evalThreads?: number;
  parallel: number;
  keepData?: boolean;
  out?: string;
  json?: boolean;
  quick?: boolean;
}

/** `--quick`: a population and window small enough for a first look in under a minute, and no anonymous variant (their client-side blind RSA alone takes minutes). */
export const QUICK = {
  blocks: 2,
  blockDigits: 3,
  people: 150,
  degreeMedian: 12,
  communitySize: 15,
  days: 2,
  designs: [...DESIGNS],
  bucketBits: [0, 8],
} as const satisfies Partial<Record<keyof Flags, unknown>>;

export function simulateProgram(): Command {
  const P = DEFAULT_POPULATION;
  const S = DEFAULT_SCRIPT;
  return new Command('pcd simulate')
    .description(
      'simulate days of contact discovery by a synthetic population against real servers (plain, hashed, blinded at several bucket bits, ' +
        'with evaluate paid by the account or by Privacy Pass tokens, directly or through an OHTTP relay), then rebuild the contact graph ' +
        '(and, with tokens, who sent each request) from each server\u2019s persisted data as its operator could, and score it',
    )
    .option('--seed <s>', 'seed of the population and of the days (deterministic)', P.seed)
    .addOption(new Option('--regions <list>', 'regions of the numbering-plan blocks, round robin').argParser(list).default(P.regions, P.regions.join(',')))
    .option('--blocks <n>', 'numbering-plan blocks (each 10^block-digits valid mobile numbers)', int('--blocks'), P.blocks)
    .option('--block-digits <n>', 'free trailing digits per block', int('--block-digits'), P.blockDigits)
    .option('--people <n>', 'people (numbers in use) in the plan', int('--people'), P.people)
    .option('--registered-share <x>', 'share of the people registered: the users, each a requester', num('--registered-share'), P.registeredShare)
    .option('--degree-median <n>', 'address-book size: log-normal median', num('--degree-median'), P.degreeMedian)
    .option('--degree-sigma <x>', 'address-book size: log-normal sigma (heavier tail when larger)', num('--degree-sigma'), P.degreeSigma)
    .option('--max-degree <n>', 'largest address book', int('--max-degree'), P.maxDegree)
    .option('--community-size <n>', 'median community size', num('--community-size'), P.communitySize)
    .option('--clustering <x>', 'share of a book drawn from the own community and its neighbours', num('--clustering'), P.clustering)
    .option('--mutual <x>', 'probability that a user contact has the requester in their book too', num('--mutual'), P.mutual)
    .option('--tie-sigma <x>', 'tie strength: log-normal sigma (who is talked to most)', num('--tie-sigma'), P.tieSigma)
    .option('--days <n>', 'simulated days', num('--days'), S.days)
    .option('--conversations-per-day <x>', 'conversations a user starts per day (median over users)', num('--conversations-per-day'), S.conversationsPerDay)
    .option('--activity-sigma <x>', 'spread of the per-user activity (log-normal sigma)', num('--activity-sigma'), S.activitySigma)
    .option('--new-contacts-per-day <x>', 'contacts a user adds per day', num('--new-contacts-per-day'), S.newContactsPerDay)
    .option('--new-contact-chat <x>', 'probability of a conversation with a new contact at once', num('--new-contact-chat'), S.newContactChat)
    .option('--reinstalls-per-year <x>', 'reinstalls and new phones per user per year (each a full contact sync)', num('--reinstalls-per-year'), S.reinstallsPerYear)
    .option('--cache-ttl-hours <x>', 'the app\u2019s answer cache: hours before a contact is looked up again', num('--cache-ttl-hours'), S.cacheTtlHours)
    .addOption(new Option('--start <date>', 'first day of the window (ISO 8601)').argParser(parseStart).default(S.start, new Date(S.start).toISOString().slice(0, 10)))
    .addOption(new Option('--designs <list>', `designs to run: ${VARIANT_NAMES.join(',')}`).argParser(list).default([...VARIANT_NAMES], VARIANT_NAMES.join(',')))
    .addOption(
      new Option('--bucket-bits <list>', 'blinded (every variant): one run per bucketBits value').argParser(intList('--bucket-bits')).default(DEFAULT_BUCKET_BITS, DEFAULT_BUCKET_BITS.join(',')),
    )
    .addOption(
      new Option('--anonymous-bucket-bits <list>', 'the anonymous variants\u2019 bucketBits values (each of their runs costs 10-15x a blinded one: the client\u2019s blind RSA)')
        .argParser(intList('--anonymous-bucket-bits'))
        .default(DEFAULT_ANONYMOUS_BUCKET_BITS, DEFAULT_ANONYMOUS_BUCKET_BITS.join(',')),
    )
    .option('--quick', `a small run for a first look (under a minute): ${Object.entries(QUICK).map(([k, v]) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${Array.isArray(v) ? v.join(',') : v}`).join(' ')}; flags given beside it win`)
    .option('--users-per-ip <n>', 'users behind one IP address (1: every user its own; more: a carrier NAT)', int('--users-per-ip'), 1)
    .addOption(
      new Option('--order-days <n>', 'daisy-chained orders: a log kept n days, an order served every n days; scores each order and the chain read together (with --days 90: three orders of 30)').argParser(
        num('--order-days'),
      ),
    )
    .option(
      '--token-quantum <n>',
      'with tokens: class-1 tokens each app\u2019s pool fetches once a simulated day, whatever it spent (the library\u2019s default)',
      int('--token-quantum'),
      LIBRARY_TOKEN_QUANTUM,
    )
    .addOption(new Option('--eval-threads <n>', 'blinded evaluator threads of the server (default one per core)').argParser(int('--eval-threads')))
    .option('--parallel <n>', 'runs at once, each with its own server child and clock (the results do not depend on it)', int('--parallel'), 1)
    .option(
      '--keep-data',
      'keep each run\u2019s data folder (under --out/data) for pcd audit, and write the true edges beside them (--out/data/truth.csv) to score an attack of your own; like any data folder it holds the server\u2019s keys and token hashes',
    )
    .option('--out <dir>', 'write results.json, workload.md and workload.vl.json here')
    .option('--json', 'print the results as JSON instead of the tables')
    .exitOverride()
    .showHelpAfterError();
}

export async function main(argv: string[]): Promise<void> {
  const program = simulateProgram();
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    throw e;
  }
  const f = program.opts<Flags>();
  if (f.quick) {
    // The profile replaces defaults only: what the user typed stands.
    for (const [k, v] of Object.entries(QUICK)) if (program.getOptionValueSource(k) === 'default') (f as unknown as Record<string, unknown>)[k] = v;
  }
  if (program.args.length) throw new PcdError(ErrorCode.InvalidField, `pcd simulate takes no arguments, got '${program.args[0]!.slice(0, 40)}'`);
  if (f.keepData && !f.out) throw new PcdError(ErrorCode.InvalidField, '--keep-data needs --out (the data folders go to --out/data)');
  const out = f.out ? path.resolve(f.out) : undefined;
  if (out) fs.mkdirSync(out, { recursive: true });
  const root = f.keepData && out ? path.join(out, 'data') : undefined;
  const t0 = performance.now();
  const run = await runWorkload({
    population: {
      seed: f.seed,
      regions: f.regions,
      blocks: f.blocks,
      blockDigits: f.blockDigits,
      people: f.people,
      registeredShare: f.registeredShare,
      degreeMedian: f.degreeMedian,
      degreeSigma: f.degreeSigma,
      maxDegree: f.maxDegree,
      communitySize: f.communitySize,
      clustering: f.clustering,
      mutual: f.mutual,
      tieSigma: f.tieSigma,
    },
    script: {
      seed: f.seed,
      days: f.days,
      conversationsPerDay: f.conversationsPerDay,
      activitySigma: f.activitySigma,
      newContactsPerDay: f.newContactsPerDay,
      newContactChat: f.newContactChat,
      reinstallsPerYear: f.reinstallsPerYear,
      cacheTtlHours: f.cacheTtlHours,
      start: f.start,
    },
    designs: f.designs as WorkloadVariant[],
    bucketBits: f.bucketBits,
    anonymousBucketBits: f.anonymousBucketBits,
    usersPerIp: f.usersPerIp,
    ...(f.orderDays !== undefined ? { orderDays: f.orderDays } : {}),
    poolQuantum: f.tokenQuantum,
    ...(f.evalThreads !== undefined ? { evalThreads: f.evalThreads } : {}),
    parallel: f.parallel,
    keepData: f.keepData ?? false,
    ...(root ? { root, truthFile: path.join(root, 'truth.csv') } : {}),
    log: (line) => console.error(line),
  });
  const { dataDirs, results, ...rest } = run;
  const doc = { schema: WORKLOAD_SCHEMA, date: new Date().toISOString(), ...rest, workload: results };
  const md = workloadMarkdown(run.results);
  if (out) {
    fs.writeFileSync(path.join(out, 'results.json'), JSON.stringify(doc, null, 2) + '\n');
    fs.writeFileSync(path.join(out, 'workload.md'), md);
    const chart = workloadChart(run.results);
    fs.writeFileSync(path.join(out, chart.file.replace(/\.svg$/, '.vl.json')), JSON.stringify(chart.spec, null, 2) + '\n');
  }
  console.log(f.json ? JSON.stringify(doc, null, 2) : md);
  const seconds = (performance.now() - t0) / 1000;
  console.error(
    `${run.results.length} run(s) in ${seconds.toFixed(0)} s${out ? `; wrote ${path.join(out, 'results.json')}, workload.md, workload.vl.json` : ''}` +
      `${dataDirs.length ? `; data folders kept in ${root}, the true edges in ${path.join(root!, 'truth.csv')}` : ''}`,
  );
  const failed = run.results.filter((r) => r.errors > 0);
  if (failed.length) {
    console.error(`failed lookups in: ${failed.map((r) => `${r.label} (${r.errors})`).join(', ')}`);
    process.exitCode = 1;
  }
}
