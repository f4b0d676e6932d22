/**
 * `npm run bench` (= `pcd bench`): runs the benchmark sections and writes,
 * into one run folder:
 *
 *   results.json   the machine, versions, commit and tree state, parameters, every mark, ratios, projections
 *   results.md     writeup-ready tables (the machine and commit named at the top)
 *   *.vl.json      each chart as a Vega-Lite spec, data inline (bench/charts.ts)
 *   *.svg          its rendering (bench/vega.ts): title, axis titles with units, the run
 *
 * The run folder: the full profile writes the reference run, bench/results/
 * (committed), and only from a clean commit (--allow-dirty overrides, and
 * the report then says "dirty tree"); --quick and --tiny write a new
 * bench/scratch/<profile>-<time>/ (git-ignored) and never bench/results/.
 * --out names another folder.
 *
 *   npm run bench                      full profile (about 25 minutes on 2 cores, plus the
 *                                      store section, about 10 minutes at 10^6 and 10^7, and the
 *                                      scale section: 10^6 and 10^7 numbers, about an hour)
 *   npm run bench -- --only scale --scale-sizes 1e6     the scale section alone, at 10^6
 *   npm run bench -- --quick           small sizes, about two minutes, into bench/scratch/
 *   npm run bench -- --only crypto,reverse --out /tmp/b
 *   npm run bench -- --only store,nodes --pg-url postgres://user:pw@host:5432/postgres
 *                                      the store and nodes sections on a Postgres server of one's own
 *                                      (a database each, made and dropped), not an embedded one each
 *   npm run bench -- --render          tables and charts again from bench/results/results.json (or --out)
 *   npm run bench -- compare A B       ratios between two runs (folders or results.json files)
 *   node --import tsx bench/run.ts --quick     the same without the pcd binary
 *
 * Sections: crypto, http, fairness, bandwidth, build, scale, store (the
 * accounts and directory store, SQLite against Postgres), nodes (lookups
 * through Postgres-backed nodes against a SQLite-backed one), reverse,
 * workload (a simulated month, workload/: what each design's logs give away)
 * (README, "Benchmarks"). `scale` is the heavy one (10^6 and 10^7 numbers in the
 * full profile, tens of minutes): run it on its own with --only scale. With
 * --only, sections not run are carried over from an existing results.json
 * of the same profile and machine (and say so), so one section can be
 * re-measured without redoing the rest.
 *
 * Servers under measurement run in child processes (harness/child.ts), never
 * in the process that drives them; see bench/http.ts for why.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import pg from 'pg';
import { runBandwidth } from './bandwidth.ts';
import { runBuild } from './build.ts';
import { configFor, type BenchConfig, type Profile } from './config.ts';
import { runCrypto } from './crypto.ts';
import { deriveRatios } from './derive.ts';
import { runFairness } from './fairness.ts';
import { runHttp } from './http.ts';
import { chartSpecs } from './charts.ts';
import { describeTree, machineInfo, packageVersions, PROJECT_ROOT, treeState, type TreeState } from './machine.ts';
import { renderMarkdown } from './report.ts';
import { removeChart, writeChart } from './vega.ts';
import { RESULTS_SCHEMA, SECTIONS, type BenchResults, type ExternalReference, type Mark, type PaddingRow, type Projection, type Section, type SectionRun } from './results.ts';
import { runReverse } from './reverse.ts';
import { runWorkloadSection, type WorkloadResult } from './workload.ts';
import { runScale } from './scale.ts';
import { runStore } from './store.ts';
import { runNodes } from './nodes.ts';
import { sinkDigest } from './stats.ts';
import { reuseServerProcesses } from '../harness/fork.ts';
import { isPostgresUrl, redactUrl } from '../server/pg/connect.ts';

/** The reference run (committed): full profile only, from a clean commit. */
export const DEFAULT_OUT = path.join(PROJECT_ROOT, 'bench', 'results');
/** Where --quick and --tiny runs go by default, one folder per run (git-ignored). */
export const SCRATCH_ROOT = path.join(PROJECT_ROOT, 'bench', 'scratch');

/** The run folder when no --out is given: bench/results/ for the full profile, a new bench/scratch/<profile>-<time>/ otherwise. */
export function defaultOut(profile: Profile, now = new Date()): string {
  if (profile === 'full') return DEFAULT_OUT;
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let dir = path.join(SCRATCH_ROOT, `${profile}-${stamp}`);
  for (let i = 2; fs.existsSync(dir); i++) dir = path.join(SCRATCH_ROOT, `${profile}-${stamp}-${i}`);
  return dir;
}

/**
 * Why a run must not start (checked before anything is measured), or
 * undefined: only a full run from a clean commit writes the reference run
 * in bench/results/ (--allow-dirty lets a dirty tree through, labelled).
 */
export function refusal(profile: Profile, out: string, tree: TreeState, allowDirty = false): string | undefined {
  if (path.resolve(out) !== DEFAULT_OUT) return undefined;
  if (profile !== 'full') return `a --${profile} run never writes bench/results/ (the reference run): drop --out to write a scratch folder under bench/scratch/, or name another folder`;
  if (tree.dirty === false || allowDirty) return undefined;
  const what = tree.dirty === undefined ? 'git cannot tell whether the tree is clean' : `the tree has uncommitted changes (${describeTree(tree)}${tree.changes?.[0] ? `, e.g. ${tree.changes[0].trim()}` : ''})`;
  return `refusing a full run into bench/results/ (the reference run): ${what}; commit first, or pass --allow-dirty (the report will say "dirty tree"), or --out another folder`;
}

export const CHART_FILES = [
  'http-lookups.svg',
  'http-server-cpu.svg',
  'http-backends.svg',
  'fairness.svg',
  'crypto.svg',
  'crypto-backends.svg',
  'bandwidth.svg',
  'build-time.svg',
  'memory.svg',
  'scale.svg',
  'store.svg',
  'nodes.svg',
  'workload.svg',
  'reverse.svg',
];

export interface BenchOptions {
  profile: Profile;
  out: string;
  only?: readonly Section[];
  /** Carry sections not run over from an existing results.json (default true). */
  merge?: boolean;
  /** Override parts of the profile's configuration (tests). */
  config?: Partial<BenchConfig>;
  log?: (line: string) => void;
  /** The tree state checked before the run (default: read when the run ends). */
  tree?: TreeState;
  /** `--pg-url`: the Postgres server the store and nodes sections make their databases on, instead of an embedded one each. */
  pgUrl?: string;
}

export function parseSections(list: string): Section[] {
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) {
    if (!(SECTIONS as readonly string[]).includes(n)) throw new Error(`unknown section '${n}': choose from ${SECTIONS.join(', ')}`);
  }
  if (names.length === 0) throw new Error('--only names no section');
  return names as Section[];
}

/** '1e6,100000' -> [1000000, 100000]: positive integers, in the order given. */
export function parseSizes(list: string): number[] {
  const sizes = list.split(',').map((x) => Number(x.trim()));
  for (const n of sizes) {
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--scale-sizes: '${list}' is not a list of positive integers`);
  }
  return sizes;
}

/** The sections that make databases on the `--pg-url` server. */
export const PG_SECTIONS: readonly Section[] = ['store', 'nodes'];

/** `--pg-url`: a postgres:// (or postgresql://) URL with a host (or `?host=` a socket folder); the message names it without its password. */
export function parsePgUrl(value: string): string {
  let u: URL | undefined;
  try {
    u = isPostgresUrl(value) ? new URL(value) : undefined;
  } catch {
    u = undefined;
  }
  if (!u || !(u.hostname || u.searchParams.get('host'))) throw new Error(`--pg-url: '${redactUrl(value)}' is not a Postgres URL (postgres://user:password@host:port/database)`);
  return value;
}

/**
 * Before anything is measured: the `--pg-url` server answers, and its role may create databases (the store and
 * nodes sections make theirs and drop them). The reason it cannot be used, in one line, or undefined.
 */
export async function pgUrlProblem(url: string): Promise<string | undefined> {
  const where = redactUrl(url);
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  c.on('error', () => {}); // a connection that drops after the check is of no concern here
  try {
    await c.connect();
    const r = await c.query<{ can: boolean | null; user: string }>('SELECT current_user AS user, (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) AS can');
    const row = r.rows[0];
    if (!row?.can) return `--pg-url: the role '${row?.user ?? '?'}' on ${where} may not create databases, which the store and nodes sections do (and drop when done): grant it CREATEDB, or give another role`;
    return undefined;
  } catch (e) {
    const message = (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
    return `--pg-url: cannot use ${where}: ${message || (e as { code?: string }).code || 'connection failed'}`;
  } finally {
    await c.end().catch(() => {});
  }
}

/** The configuration with the store and nodes sections on the `--pg-url` server. */
function onPgServer(config: BenchConfig, pgUrl: string | undefined): BenchConfig {
  return pgUrl ? { ...config, store: { ...config.store, pgUrl }, nodes: { ...config.nodes, pgUrl } } : config;
}

/** The parameters as results.json records them: a `--pg-url` without its password. */
function recordedParameters(config: BenchConfig): BenchConfig {
  const hide = <T extends { pgUrl?: string }>(c: T): T => (c.pgUrl ? { ...c, pgUrl: redactUrl(c.pgUrl) } : c);
  return { ...config, store: hide(config.store), nodes: hide(config.nodes) };
}

/** What one section adds to the run's results. */
interface SectionOutput {
  marks: Mark[];
  notes?: string[];
  projections?: Projection[];
  references?: ExternalReference[];
  setup?: Record<string, string>;
  padding?: PaddingRow[];
  workload?: WorkloadResult[];
}

/** What the sections of a run measured, gathered. */
interface SectionsRun {
  marks: Mark[];
  projections: Projection[];
  references: ExternalReference[];
  sections: SectionRun[];
  notes: string[];
  setup: Record<string, string>;
  workload?: WorkloadResult[];
  padding?: PaddingRow[];
}

/** Runs each section of `only` in order; a section that fails is recorded with its error and the others go on. */
async function runSections(only: readonly Section[], config: BenchConfig, log: (line: string) => void): Promise<SectionsRun> {
  const run: SectionsRun = { marks: [], projections: [], references: [], sections: [], notes: [], setup: {} };
  for (const section of SECTIONS) {
    if (!only.includes(section)) continue;
    log(`\n== ${section}`);
    const startedAt = new Date().toISOString();
    const t0 = performance.now();
    try {
      const r = await runSection(section, config, log);
      run.marks.push(...r.marks);
      run.projections.push(...(r.projections ?? []));
      run.references.push(...(r.references ?? []));
      run.notes.push(...(r.notes ?? []));
      if (r.setup) run.setup = { ...run.setup, ...r.setup };
      if (r.padding) run.padding = r.padding;
      if (r.workload) run.workload = r.workload;
      run.sections.push({ section, startedAt, seconds: (performance.now() - t0) / 1000 });
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      log(`  section ${section} FAILED: ${e instanceof Error ? (e.stack ?? message) : message}`);
      run.sections.push({ section, startedAt, seconds: (performance.now() - t0) / 1000, error: message.split('\n')[0]! });
    }
  }
  return run;
}

/** Runs one section with its part of the configuration. */
async function runSection(section: Section, config: BenchConfig, log: (line: string) => void): Promise<SectionOutput> {
  switch (section) {
    case 'crypto': {
      const r = await runCrypto(config.crypto, { log });
      return { marks: r.marks, references: r.references, notes: r.notes, ...(r.implementations['psi.js'] ? { setup: { psiJs: r.implementations['psi.js'] } } : {}) };
    }
    case 'http': {
      const r = await runHttp(config.http, log);
      return { marks: r.marks, padding: r.padding, setup: r.setup, notes: r.notes };
    }
    case 'fairness': {
      const r = await runFairness(config.fairness, log);
      return { marks: r.marks, notes: r.notes };
    }
    case 'scale': {
      const r = await runScale(config.scale, log);
      return { marks: r.marks, notes: r.notes };
    }
    case 'bandwidth': {
      const r = await runBandwidth(config.bandwidth, log);
      return { marks: r.marks, projections: r.projections, notes: r.notes };
    }
    case 'build': {
      const r = await runBuild(config.build, log);
      const s = r.seeding.at(-1);
      const seeding = s ? [`Build: seeding the store (synth/ generator + SQLite bulk insert) ran at ${Math.round(s.numbers / s.seconds).toLocaleString('en-US')} numbers/s at ${s.numbers.toLocaleString('en-US')} numbers.`] : [];
      return { marks: r.marks, projections: r.projections, notes: [...r.notes, ...seeding] };
    }
    case 'store': {
      const r = await runStore(config.store, log);
      return { marks: r.marks, notes: r.notes };
    }
    case 'nodes': {
      const r = await runNodes(config.nodes, log);
      return { marks: r.marks, notes: r.notes };
    }
    case 'reverse': {
      const r = runReverse(config.reverse, log);
      return { marks: r.marks, projections: r.projections };
    }
    case 'workload': {
      const r = await runWorkloadSection(config.workload, log);
      return { marks: r.marks, notes: r.notes, workload: r.rows };
    }
  }
}

export async function runBench(options: BenchOptions): Promise<BenchResults> {
  const log = options.log ?? ((line: string) => console.log(line));
  const started = performance.now();
  const machine = machineInfo();
  const config = onPgServer({ ...configFor(options.profile, machine.cores), ...options.config }, options.pgUrl);
  const only = options.only ?? SECTIONS;
  const versions = packageVersions();

  const notes: string[] = [];
  log(`pcd bench (${options.profile}) on ${machine.cpuModel}, ${machine.cores} cores, ${(machine.memoryBytes / 2 ** 30).toFixed(1)} GiB, Node ${machine.node}`);
  if (config.serverProcesses === 'reused') {
    notes.push(`Server processes: reused (${options.profile} profile): a closed server's process serves the next one, so the memory marks (RSS, peak RSS) are not a fresh process's; CPU marks are deltas and unchanged by it. The scale section's restart still forks.`);
  }
  const sectionsRun = () => runSections(only, config, log);
  const { marks, projections, references, sections, setup, workload, padding, notes: sectionNotes } = await (config.serverProcesses === 'reused' ? reuseServerProcesses(sectionsRun) : sectionsRun());
  notes.push(...sectionNotes);

  const results: BenchResults = {
    schema: RESULTS_SCHEMA,
    date: new Date().toISOString(),
    profile: options.profile,
    machine: { ...machine, loadavgAtEnd: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    versions,
    tree: options.tree ?? treeState(),
    parameters: { profile: options.profile, sections: [...only], ...recordedParameters(config) },
    setup,
    sections,
    marks,
    ratios: [],
    projections,
    references,
    notes,
    sink: sinkDigest(),
    durationSeconds: (performance.now() - started) / 1000,
    ...(workload ? { workload } : {}),
    ...(padding ? { padding } : {}),
  };
  results.ratios = deriveRatios(results.marks, results.references);
  return results;
}

/** Reads a results.json, or undefined when absent or of another schema. */
export function readResults(file: string): BenchResults | undefined {
  try {
    const r = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults;
    return r.schema === RESULTS_SCHEMA ? r : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Adds the sections this run skipped from an earlier run of the same profile
 * on the same machine; they keep their own dates (sections[].carriedOverFrom).
 */
export function mergeEarlier(r: BenchResults, earlier: BenchResults | undefined, ran: readonly Section[]): BenchResults {
  if (!earlier || earlier.profile !== r.profile || earlier.machine.hostname !== r.machine.hostname || earlier.machine.cpuModel !== r.machine.cpuModel) return r;
  const keep = (s: Section) => !ran.includes(s) && earlier.sections.some((x) => x.section === s && !x.error);
  const carried = SECTIONS.filter(keep);
  if (carried.length === 0) return r;
  const merged: BenchResults = {
    ...r,
    sections: SECTIONS.flatMap((s) => {
      if (ran.includes(s)) return r.sections.filter((x) => x.section === s);
      if (!carried.includes(s)) return [];
      return earlier.sections.filter((x) => x.section === s).map((x) => ({ ...x, carriedOverFrom: x.carriedOverFrom ?? earlier.date }));
    }),
    marks: SECTIONS.flatMap((s) => (carried.includes(s) ? earlier.marks : r.marks).filter((m) => m.section === s)),
    projections: SECTIONS.flatMap((s) => (carried.includes(s) ? earlier.projections : r.projections).filter((p) => p.section === s)),
    setup: carried.includes('http') ? { ...r.setup, ...earlier.setup } : r.setup,
    references: carried.includes('crypto') ? earlier.references : r.references,
    workload: carried.includes('workload') ? earlier.workload : r.workload,
    padding: carried.includes('http') ? earlier.padding : r.padding,
    notes: [...new Set([...r.notes, ...earlier.notes.filter((n) => carried.some((s) => n.toLowerCase().startsWith(s)))])],
  };
  merged.ratios = deriveRatios(merged.marks, merged.references);
  return merged;
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/** Writes results.json, results.md and the charts (`<name>.vl.json` and `<name>.svg`) into `out`; returns the files written. */
export async function writeResults(r: BenchResults, out: string): Promise<string[]> {
  fs.mkdirSync(out, { recursive: true });
  const charts = chartSpecs(r);
  const written: string[] = [];
  for (const name of new Set([...CHART_FILES, ...charts.keys()])) {
    const spec = charts.get(name);
    if (spec) written.push(...(await writeChart(out, name, spec)));
    else removeChart(out, name); // a stale chart of an earlier run would not match the tables
  }
  writeAtomic(path.join(out, 'results.json'), JSON.stringify(r, null, 2) + '\n');
  writeAtomic(path.join(out, 'results.md'), renderMarkdown(r, [...charts.keys()]));
  written.unshift(path.join(out, 'results.json'), path.join(out, 'results.md'));
  return written;
}

/** What main uses that a test replaces (the tree state, the measuring itself). */
export interface MainDeps {
  tree?: () => TreeState;
  run?: typeof runBench;
}

/** A refusal or a bad argument: one line on stderr, exit code 2, nothing measured. */
function fail(message: string): void {
  console.error(`pcd bench: ${message}`);
  process.exitCode = 2;
}

export async function main(argv: string[], deps: MainDeps = {}): Promise<void> {
  if (argv[0] === 'compare') {
    const { compareMain } = await import('./compare.ts');
    compareMain(argv.slice(1));
    return;
  }
  const program = new Command('pcd bench')
    .description('benchmarks: crypto per operation, HTTP lookups, bytes on the wire, directory build and memory, hashed-log reversal (`pcd bench compare A B`: ratios between two runs)')
    .option('--quick', 'small sizes (about a minute), for smoke runs; written under bench/scratch/')
    .addOption(new Option('--tiny', 'smallest sizes (seconds), for tests').hideHelp())
    .option('--out <dir>', 'where results.json, results.md and the charts go (default: bench/results/ for the full profile, a new bench/scratch/<profile>-<time>/ for --quick)')
    .option('--only <sections>', `comma-separated sections: ${SECTIONS.join(', ')}`)
    .option('--scale-sizes <list>', 'scale section: comma-separated directory sizes instead of the profile\'s (e.g. 1e6 or 100000,1e6)')
    .option('--pg-url <url>', 'store and nodes sections: make their databases on this Postgres server (postgres://user:password@host:port/database, a role that may create databases) instead of starting an embedded Postgres; they drop them when done')
    .option('--no-merge', 'with --only: do not carry the other sections over from an existing results.json')
    .option('--allow-dirty', 'let a full run write bench/results/ from a tree with uncommitted changes (the report says "dirty tree")')
    .option('--render', 'measure nothing: rewrite results.md and the charts from the results.json in --out (default bench/results/)')
    .exitOverride()
    .showHelpAfterError();
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    throw e;
  }
  const o = program.opts<{ quick?: boolean; tiny?: boolean; out?: string; only?: string; merge: boolean; render?: boolean; scaleSizes?: string; allowDirty?: boolean; pgUrl?: string }>();
  const profile: Profile = o.tiny ? 'tiny' : o.quick ? 'quick' : 'full';
  let only: Section[] | undefined;
  let scaleSizes: number[] | undefined;
  let pgUrl: string | undefined;
  try {
    only = o.only ? parseSections(o.only) : undefined;
    scaleSizes = o.scaleSizes ? parseSizes(o.scaleSizes) : undefined;
    pgUrl = o.pgUrl !== undefined ? parsePgUrl(o.pgUrl) : undefined;
    if (pgUrl && !o.render && only && !only.some((s) => PG_SECTIONS.includes(s))) throw new Error(`--pg-url is for the ${PG_SECTIONS.join(' and ')} sections, and --only runs neither`);
  } catch (e) {
    return fail(e instanceof Error ? e.message : String(e));
  }
  if (o.render) {
    const out = path.resolve(o.out ?? DEFAULT_OUT);
    const earlier = readResults(path.join(out, 'results.json'));
    if (!earlier) return fail(`no ${RESULTS_SCHEMA} results.json in ${out}`);
    console.log(`rewrote ${(await writeResults(earlier, out)).join(', ')}`);
    return;
  }
  const out = path.resolve(o.out ?? defaultOut(profile));
  // Before anything is measured: only a full run from a clean commit writes the reference run.
  const tree = (deps.tree ?? treeState)();
  const refused = refusal(profile, out, tree, o.allowDirty);
  if (refused) return fail(refused);
  if (pgUrl) {
    const problem = await pgUrlProblem(pgUrl);
    if (problem) return fail(problem);
  }
  if (tree.dirty !== false) console.error(`pcd bench: measuring ${describeTree(tree)}${path.resolve(out) === DEFAULT_OUT ? ' into bench/results/ (--allow-dirty): the report says "dirty tree"' : ''}`);
  const results = await (deps.run ?? runBench)({
    profile,
    out,
    only,
    tree,
    ...(pgUrl ? { pgUrl } : {}),
    ...(scaleSizes ? { config: { scale: { ...configFor(profile, machineInfo().cores).scale, sizes: scaleSizes } } } : {}),
  });
  const final = only && o.merge ? mergeEarlier(results, readResults(path.join(out, 'results.json')), only) : results;
  const files = await writeResults(final, out);
  const shown = (f: string) => (path.relative(process.cwd(), f).startsWith('..') ? f : path.relative(process.cwd(), f));
  console.log(`\nwrote ${files.map(shown).join(', ')}`);
  console.log(`${final.marks.length} marks, ${final.ratios.length} ratios, ${final.projections.length} projections in ${final.durationSeconds.toFixed(0)} s`);
  const failed = final.sections.filter((s) => s.error);
  if (failed.length > 0) {
    console.error(`failed sections: ${failed.map((s) => `${s.section} (${s.error})`).join('; ')}`);
    process.exitCode = 1;
  }
}

// `node --import tsx bench/run.ts --quick`: the same without the pcd binary.
if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  try {
    await main(process.argv.slice(2));
  } catch (e) {
    if (process.env.PCD_DEBUG) throw e;
    console.error(`pcd bench: ${e instanceof Error ? e.message : String(e)} (PCD_DEBUG=1 shows where)`);
    process.exitCode = 1;
  }
}
