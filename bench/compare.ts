/**
 * `pcd bench compare A B`: the ratios between two runs. A and B are run
 * folders (holding results.json) or results.json files. Marks are matched
 * by section and name (a name repeated within a section by its order);
 * each matched mark prints its main metrics, A, B and B/A, then the ratios
 * each run formed within itself, then the marks found in only one run.
 *
 * Two runs on a shared machine differ by noise as well as by code: a B/A
 * within a few per cent says nothing, and runs of different profiles or
 * machines are flagged before the table.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import { describeTree } from './machine.ts';
import { RESULTS_SCHEMA, type BenchResults, type Mark } from './results.ts';
import { formatNumber } from './stats.ts';

export class CompareError extends Error {}

/** Reads a run: a folder with results.json in it, or the file itself; one-line errors. */
export function loadRun(arg: string): { file: string; results: BenchResults } {
  const given = path.resolve(arg);
  let file = given;
  try {
    if (fs.statSync(given).isDirectory()) file = path.join(given, 'results.json');
  } catch {
    throw new CompareError(`${arg}: no such file or folder`);
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw new CompareError(`${arg}: no results.json in this folder`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CompareError(`${file}: not valid JSON (${e instanceof Error ? e.message.split('\n')[0] : String(e)})`);
  }
  const schema = (json as { schema?: unknown } | null)?.schema;
  if (schema !== RESULTS_SCHEMA || !Array.isArray((json as { marks?: unknown }).marks)) {
    throw new CompareError(`${file}: not a ${RESULTS_SCHEMA} results.json (schema: ${schema === undefined ? 'none' : JSON.stringify(schema)})`);
  }
  return { file, results: json as BenchResults };
}

export interface Metric {
  metric: string;
  value: number | undefined;
}

const get = (o: unknown, ...keys: string[]): number | undefined => {
  let v: unknown = o;
  for (const k of keys) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
};

/** The metrics a mark is compared by, per section; for a section this file does not know, its numeric fields. */
export function metricsOf(m: Mark): Metric[] {
  const lat = (prefix: string, l: unknown) => (['p50', 'p95', 'p99'] as const).map((k) => ({ metric: `${prefix}${k} (ms)`, value: get(l, k) }));
  switch (m.section) {
    case 'crypto':
      return [
        { metric: 'µs per item', value: get(m, 'usPerItem') },
        { metric: 'p50 per call (µs)', value: get(m, 'p50Us') },
        { metric: 'p95 per call (µs)', value: get(m, 'p95Us') },
        { metric: 'p99 per call (µs)', value: get(m, 'p99Us') },
      ];
    case 'http':
      return [{ metric: 'lookups/s', value: get(m, 'lookupsPerSec') }, ...lat('', m.latencyMs), { metric: 'server CPU per lookup (µs)', value: get(m, 'serverCpuUsPerLookup') }];
    case 'fairness':
      return [...lat('light ', m.light.latencyMs), { metric: 'light max (ms)', value: get(m, 'light', 'latencyMs', 'max') }, { metric: 'flooder elements/s', value: get(m, 'flooder', 'elementsPerSec') }];
    case 'bandwidth':
      return [
        { metric: 'wire bytes per lookup', value: get(m, 'wireBytesPerLookup') },
        { metric: 'body bytes per lookup', value: get(m, 'bodyBytesPerLookup') },
      ];
    case 'build':
      return [
        { metric: 'open (s)', value: get(m, 'seconds') },
        { metric: 'build (s)', value: get(m, 'buildSeconds') },
        { metric: 'RSS (bytes)', value: get(m, 'rssBytes') },
        { metric: 'typed arrays growth (bytes)', value: get(m, 'arrayBuffersDeltaBytes') },
      ];
    case 'scale':
      return [
        { metric: 'seed (s)', value: get(m, 'seedSeconds') },
        { metric: 'blinded serving (s)', value: get(m, 'blindedServingSeconds') },
        { metric: 'epoch build (s)', value: get(m, 'buildSeconds') },
        { metric: 'RSS (bytes)', value: get(m, 'rssBytes') },
        { metric: 'restart: serving (s)', value: get(m, 'restart', 'blindedServingSeconds') },
      ];
    case 'store':
      return [
        { metric: 'seed numbers/s', value: get(m, 'seedNumbersPerSec') },
        { metric: 'scan numbers/s', value: get(m, 'scanNumbersPerSec') },
        ...lat('createAccount ', m.createLatencyMs),
        { metric: 'authenticate mean (µs)', value: get(m, 'authenticateMeanUs') },
        { metric: 'on disk (bytes)', value: get(m, 'diskBytes') },
      ];
    case 'reverse':
      return [{ metric: 'hashes/s', value: get(m, 'hashesPerSec') }];
    default: {
      // A section newer than this file: every numeric field, and those of latencyMs.
      const any = m as unknown as Record<string, unknown>;
      const out: Metric[] = [];
      for (const [k, v] of Object.entries(any)) {
        if (typeof v === 'number' && Number.isFinite(v)) out.push({ metric: k, value: v });
        else if (k === 'latencyMs') out.push(...lat('', v));
      }
      return out;
    }
  }
}

/** `section: name`, with `#2`, `#3` for a name repeated within a section. */
function keyed(marks: readonly Mark[]): Map<string, Mark> {
  const out = new Map<string, Mark>();
  for (const m of marks) {
    const base = `${m.section}: ${m.name}`;
    let key = base;
    for (let i = 2; out.has(key); i++) key = `${base} #${i}`;
    out.set(key, m);
  }
  return out;
}

export interface CompareRow {
  mark: string;
  metric: string;
  a: number | undefined;
  b: number | undefined;
  /** B / A, when both are there and A is not 0. */
  ratio: number | undefined;
}

export interface Comparison {
  rows: CompareRow[];
  /** The ratios each run formed within itself (designs, backends...), A's against B's. */
  ratios: CompareRow[];
  onlyA: string[];
  onlyB: string[];
  warnings: string[];
}

const ratioOf = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined && a !== 0 ? b / a : undefined);

export function compareRuns(a: BenchResults, b: BenchResults): Comparison {
  const ka = keyed(a.marks);
  const kb = keyed(b.marks);
  const rows: CompareRow[] = [];
  for (const [key, ma] of ka) {
    const mb = kb.get(key);
    if (!mb) continue;
    const mbMetrics = new Map(metricsOf(mb).map((x) => [x.metric, x.value]));
    for (const x of metricsOf(ma)) {
      const bv = mbMetrics.get(x.metric);
      if (x.value === undefined && bv === undefined) continue;
      rows.push({ mark: key, metric: x.metric, a: x.value, b: bv, ratio: ratioOf(x.value, bv) });
    }
  }
  const rb = new Map(b.ratios.map((x) => [x.name, x.value]));
  const ratios = a.ratios.filter((x) => rb.has(x.name)).map((x) => ({ mark: `${x.section}: ${x.name}`, metric: 'ratio', a: x.value, b: rb.get(x.name), ratio: ratioOf(x.value, rb.get(x.name)) }));
  const warnings: string[] = [];
  if (a.profile !== b.profile) warnings.push(`the runs are of different profiles (${a.profile} vs ${b.profile}): their sizes and durations differ, so do their figures`);
  if (a.machine.cpuModel !== b.machine.cpuModel || a.machine.cores !== b.machine.cores || a.machine.hostname !== b.machine.hostname) {
    warnings.push(`the runs are from different machines (${a.machine.hostname}, ${a.machine.cpuModel}, ${a.machine.cores} cores vs ${b.machine.hostname}, ${b.machine.cpuModel}, ${b.machine.cores} cores)`);
  }
  for (const [name, r] of [['A', a], ['B', b]] as const) if (r.tree?.dirty !== false) warnings.push(`run ${name} was not measured from a clean commit (${describeTree(r.tree ?? { commit: undefined, dirty: undefined })})`);
  return { rows, ratios, onlyA: [...ka.keys()].filter((k) => !kb.has(k)), onlyB: [...kb.keys()].filter((k) => !ka.has(k)), warnings };
}

const num = (v: number | undefined) => (v === undefined ? '–' : Math.abs(v) >= 1e6 ? v.toExponential(3) : formatNumber(v, Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 1 ? 2 : 4));
const times = (v: number | undefined) => (v === undefined ? '–' : `${v >= 100 ? v.toFixed(0) : v.toFixed(2)}x`);

function textTable(headers: string[], rows: string[][], right: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function mdTable(headers: string[], rows: string[][], right: boolean[]): string {
  const esc = (c: string) => c.replace(/\|/g, '\\|');
  return [`| ${headers.join(' | ')} |`, `|${right.map((r) => (r ? '---:' : ':---')).join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

export function describeRun(label: string, file: string, r: BenchResults): string {
  return `${label}: ${file} (${r.profile} profile, ${r.date}, ${describeTree(r.tree ?? { commit: undefined, dirty: undefined })}; ${r.machine.cpuModel}, ${r.machine.cores} cores, Node ${r.machine.node})`;
}

export function formatComparison(c: Comparison, heads: [string, string], markdown = false): string {
  const render = markdown ? mdTable : textTable;
  const headers = ['mark', 'metric', 'A', 'B', 'B/A'];
  const right = [false, false, true, true, true];
  const cells = (rows: CompareRow[]) => rows.map((x) => [x.mark, x.metric, num(x.a), num(x.b), times(x.ratio)]);
  const out = [...heads, ''];
  for (const w of c.warnings) out.push(`warning: ${w}`);
  if (c.warnings.length > 0) out.push('');
  out.push(c.rows.length > 0 ? render(headers, cells(c.rows), right) : 'No mark is in both runs.', '');
  if (c.ratios.length > 0) out.push('Ratios each run formed within itself:', '', render(headers, cells(c.ratios), right), '');
  const list = (label: string, keys: string[]) => (keys.length === 0 ? [`Only in ${label}: none.`] : [`Only in ${label} (${keys.length} mark${keys.length === 1 ? '' : 's'}):`, ...keys.map((k) => `  ${k}`)]);
  out.push(...list('A', c.onlyA), ...list('B', c.onlyB));
  return out.join('\n') + '\n';
}

/** `pcd bench compare A B [--markdown]`: prints the comparison; one line on stderr and exit code 2 on a bad argument or file. */
export function compareMain(argv: string[]): void {
  const program = new Command('pcd bench compare')
    .description('ratios between two benchmark runs: A and B are run folders or results.json files; prints metric, A, B and B/A per mark')
    .argument('<A>', 'the run compared against (folder or results.json)')
    .argument('<B>', 'the run compared (folder or results.json)')
    .option('--markdown', 'Markdown tables instead of plain text')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(`pcd bench compare: ${(s.split('\n').find((l) => l.trim()) ?? s).replace(/^error: /, '')}\n`) });
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    throw e;
  }
  const [fa, fb] = program.args as [string, string];
  try {
    const a = loadRun(fa);
    const b = loadRun(fb);
    const c = compareRuns(a.results, b.results);
    process.stdout.write(formatComparison(c, [describeRun('A', a.file, a.results), describeRun('B', b.file, b.results)], program.opts<{ markdown?: boolean }>().markdown));
  } catch (e) {
    if (!(e instanceof CompareError)) throw e;
    console.error(`pcd bench compare: ${e.message}`);
    process.exitCode = 2;
  }
}
