/**
 * The `workload` section: the 30-day simulation of workload/ (a synthetic
 * population, real server children on simulated time, the real client,
 * the operator's reconstruction from the persisted data folder), and its
 * tables and chart. `pcd simulate` (workload/cli.ts) runs the same thing
 * with every parameter on the command line.
 *
 * - {@link runWorkloadSection}: the rows for results.json's `workload`
 *   list, plus one mark per simulated run (its wall time and traffic).
 * - {@link workloadMarkdown}: the rows as Markdown tables.
 * - {@link workloadChart}: graph recovery, candidate-set size and bytes per
 *   lookup against bucketBits, as one Vega-Lite spec (data inline).
 */
import { DEFAULT_POPULATION, type PopulationOptions } from '../workload/population.ts';
import { runWorkload, type WorkloadRun } from '../workload/run.ts';
import { DEFAULT_SCRIPT, type ScriptOptions } from '../workload/script.ts';
import type { WorkloadResult } from '../workload/score.ts';
import type { DesignName } from '../shared/messages.ts';

export type { WorkloadResult } from '../workload/score.ts';

export interface WorkloadConfig {
  population: Partial<PopulationOptions>;
  script: Partial<Omit<ScriptOptions, 'start' | 'seed'>>;
  designs: DesignName[];
  bucketBits: number[];
  usersPerIp: number;
}

/** One simulated run: what it took and sent. Its graph recovery is the matching row of `workload`. */
export interface WorkloadMark {
  section: 'workload';
  name: string;
  design: DesignName;
  bucketBits: number | null;
  days: number;
  users: number;
  lookups: number;
  requests: number;
  /** Wall time of the run (seeding, server start, the simulated days, reconstruction). */
  seconds: number;
  lookupsPerSec: number;
  bytesPerLookup: number;
}

export async function runWorkloadSection(
  config: WorkloadConfig,
  log: (line: string) => void,
): Promise<{ rows: WorkloadResult[]; marks: WorkloadMark[]; notes: string[]; run: WorkloadRun }> {
  const run = await runWorkload({
    population: { ...DEFAULT_POPULATION, ...config.population },
    script: { ...DEFAULT_SCRIPT, ...config.script },
    designs: config.designs,
    bucketBits: config.bucketBits,
    usersPerIp: config.usersPerIp,
    log,
  });
  const days = run.parameters.script.days;
  const marks = run.results.map(
    (r): WorkloadMark => ({
      section: 'workload',
      name: `workload ${r.label}: ${days} simulated days`,
      design: r.design,
      bucketBits: r.bucketBits,
      days,
      users: run.population.users,
      lookups: r.lookups,
      requests: r.requests,
      seconds: r.seconds,
      lookupsPerSec: r.seconds > 0 ? r.lookups / r.seconds : 0,
      bytesPerLookup: r.bytesPerLookup,
    }),
  );
  const p = run.population;
  const notes = [
    `Workload: ${p.users} users of ${p.people} people in a plan of ${p.planSize} numbers (${p.plan}), ${days} simulated days, ` +
      `${run.script.lookups} lookups and ${run.script.syncs} full syncs per design; the operator read only the persisted data folder (workload/operator.ts).`,
  ];
  return { rows: run.results, marks, notes, run };
}

// ---------------------------------------------------------------------------
// Markdown

function cell(v: unknown): string {
  return String(v).replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function mdTable(headers: readonly string[], rows: readonly (readonly unknown[])[]): string {
  return [`| ${headers.map(cell).join(' | ')} |`, `|${headers.map(() => ' --- |').join('')}`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(x > 0 && x < 0.01 ? 2 : 1)} %`);
const count = (x: number | null) =>
  x === null ? '-' : x !== 0 && Math.abs(x) < 1 ? String(Number(x.toPrecision(2))) : x.toLocaleString('en-US', { maximumFractionDigits: 1 });
const bits = (r: WorkloadResult) => (r.bucketBits === null ? '-' : String(r.bucketBits));

/** The rows as Markdown: recovery per design and bucketBits, the blinded attacks one by one, and what each log still holds. */
export function workloadMarkdown(w: readonly WorkloadResult[]): string {
  if (w.length === 0) return '';
  const first = w[0]!;
  const parts = [
    '## Contact graph from the logs (workload simulation)',
    `What an operator rebuilds from the data folder alone: edges are (requester, number looked up) pairs that the simulated clients sent ` +
      `(${first.edges.toLocaleString('en-US')} in this run); a claim is an edge the operator names; the candidate set is, per true edge, the numbers of the ` +
      `plan (${first.planSize.toLocaleString('en-US')}) the operator cannot tell the true contact from. Bytes: request and reply bodies per number looked up, caches included.`,
    mdTable(
      ['design', 'bucket bits', 'numbers per bucket (plan / registered)', 'true edges', 'recovered', 'recall', 'precision', 'median candidates', 'edges with ≤ 10 candidates', 'address-book recall', 'bytes / lookup'],
      w.map((r) => [
        r.design,
        bits(r),
        r.planPerBucket === null ? '-' : `${count(r.planPerBucket)} / ${count(r.registeredPerBucket)}`,
        count(r.edges),
        count(r.recovered),
        pct(r.recall),
        pct(r.precision),
        count(r.medianCandidates),
        pct(r.candidatesAtMost10),
        pct(r.addressBookRecall),
        count(Math.round(r.bytesPerLookup)),
      ]),
    ),
  ];
  const blinded = w.filter((r) => r.design === 'blinded');
  if (blinded.length) {
    parts.push(
      '### Blinded: the attacks one by one',
      '`bucket`: the plan numbers of a fetched bucket are one number (certain). `mutual`: one registered number of the bucket whose account fetched ' +
        'the bucket of the requester\u2019s own number (a guess). `registered`: the bucket holds one registered number (a guess: the contact may be unregistered). ' +
        'The headline claims are `bucket` or else `mutual`; fetches are tied to requesters by IP and minute (workload/operator.ts). ' +
        'What decides these figures is how many numbers share a bucket (plan / 2^b and directory / 2^b, in the first table), not b itself: ' +
        'a deployment with 10^9 registered numbers leaves far larger sets at the same b than this simulated plan does.',
      mdTable(
        ['bucket bits', 'attack', 'claimed', 'correct', 'recall', 'precision', 'median registered candidates'],
        blinded.flatMap((r) => r.attacks.map((a) => [bits(r), a.name, count(a.claimed), count(a.recovered), pct(a.recall), pct(a.precision), count(r.medianCandidatesRegistered)])),
      ),
    );
  }
  parts.push(
    '### What remains in each log',
    mdTable(
      ['design', 'bucket bits', 'rows', 'requesters', 'IPs', 'lookups counted', 'sync requests', 'bucket rows (ambiguous, unattributed)', 'a row holds'],
      w.map((r) => [
        r.design,
        bits(r),
        count(r.remains.rows),
        count(r.remains.requesters),
        count(r.remains.ips),
        count(r.remains.lookups),
        count(r.remains.syncRequests),
        r.remains.bucketRows === undefined ? '-' : `${count(r.remains.bucketRows)} (${count(r.remains.ambiguousBucketRows ?? 0)}, ${count(r.remains.unattributedBucketRows ?? 0)})`,
        r.remains.fields,
      ]),
    ),
  );
  return parts.join('\n\n') + '\n';
}

// ---------------------------------------------------------------------------
// Chart

/** The schema bench/vega.ts renders. */
const VEGA_LITE_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

/**
 * Three panels against bucketBits: recall of the rebuilt graph (blinded's
 * headline attack and its registered-only guess; plain and hashed as
 * horizontal rules), the median candidate set per true edge, and bytes per
 * lookup. A Vega-Lite spec, data inline.
 */
export function workloadChart(w: readonly WorkloadResult[]): { file: 'workload.svg'; spec: object } {
  const values: Record<string, unknown>[] = [];
  for (const r of w) {
    const base = { design: r.design, bucketBits: r.bucketBits, medianCandidates: Math.max(1, r.medianCandidates), bytesPerLookup: Math.max(1, r.bytesPerLookup) };
    if (r.design === 'blinded') {
      values.push({ ...base, series: 'blinded: bucket or mutual', recall: r.recall, precision: r.precision });
      const g = r.attacks.find((a) => a.name === 'registered');
      if (g) values.push({ ...base, series: 'blinded: registered-only guess', recall: g.recall, precision: g.precision, guess: true });
    } else values.push({ ...base, series: r.design, rule: r.design, recall: r.recall, precision: r.precision });
  }
  const series = [...new Set(values.map((v) => v.series as string))];
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain: series }, legend: { orient: 'bottom', columns: 2, labelLimit: 320 } };
  const x = { field: 'bucketBits', type: 'quantitative', title: 'bucket bits (blinded)', axis: { format: 'd', tickMinStep: 1 } };
  const blindedOnly = { filter: "datum.design === 'blinded'" };
  const others = { filter: "datum.design !== 'blinded'" };
  const main = (guess: boolean) => ({ filter: guess ? 'datum.guess === true' : 'datum.guess !== true' });
  const panel = (field: string, yTitle: string, scale: object, format: string | undefined, withGuess: boolean) => ({
    width: 240,
    height: 200,
    layer: [
      {
        transform: [blindedOnly, ...(withGuess ? [] : [main(false)])],
        mark: { type: 'line', point: true },
        encoding: {
          x,
          y: { field, type: 'quantitative', title: yTitle, scale, ...(format ? { axis: { format } } : {}) },
          color,
        },
      },
      {
        transform: [others],
        mark: { type: 'rule', strokeWidth: 2 },
        // plain and hashed often coincide: the second one dashed, so that both show.
        encoding: { y: { field, type: 'quantitative' }, color, strokeDash: { field: 'rule', type: 'nominal', scale: { domain: ['plain', 'hashed'], range: [[1, 0], [6, 4]] }, legend: null } },
      },
    ],
  });
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: 'What a month of lookup logs gives away',
      subtitle: 'contact-graph edges the operator rebuilds from the persisted data folder, against the blinded design\u2019s bucket bits; plain and hashed as rules',
    },
    data: { values },
    hconcat: [
      panel('recall', 'edges recovered (share of true edges)', { domain: [0, 1] }, '.0%', true),
      panel('medianCandidates', 'median candidate set per true edge (numbers)', { type: 'log' }, '~s', false),
      panel('bytesPerLookup', 'bytes per lookup (bodies, both ways)', { type: 'log' }, '~s', false),
    ],
    resolve: { scale: { color: 'shared' } },
    config: { font: 'Helvetica, Arial, sans-serif', background: 'white', title: { anchor: 'start' } },
  };
  return { file: 'workload.svg', spec };
}
