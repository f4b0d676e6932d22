/**
 * The `workload` section: the 30-day simulation of workload/ (a synthetic
 * population, real server children on simulated time, the real client,
 * the operator's reconstruction from the persisted data folder), and its
 * tables and chart. `pcd simulate` (bin/commands/simulate.ts) runs the same thing
 * with every parameter on the command line.
 *
 * - {@link runWorkloadSection}: the rows for results.json's `workload`
 *   list, plus one mark per simulated run (its wall time and traffic).
 * - {@link workloadMarkdown}: the rows as Markdown tables.
 * - {@link workloadChart}: graph recovery, candidate-set size and bytes per
 *   lookup against bucketBits, as one Vega-Lite spec (data inline).
 *
 * Where the config lists `blinded` and none of its anonymous variants, the
 * section runs those too (blinded-anonymous and blinded-anonymous+relay:
 * evaluate paid with Privacy Pass tokens, directly and through an OHTTP
 * relay), at the same bucket bits; `anonymous: false` leaves them out.
 */
import { DEFAULT_POPULATION, type PopulationOptions } from '../workload/population.ts';
import { runWorkload, type WorkloadRun } from '../workload/run.ts';
import { DEFAULT_SCRIPT, type ScriptOptions } from '../workload/script.ts';
import type { WorkloadResult } from '../workload/score.ts';
import { CONSERVATIVE } from '../workload/operator.ts';
import { isAnonymous, type WorkloadVariant } from '../workload/simulate.ts';
import type { DesignName } from '../shared/messages.ts';

export type { WorkloadResult } from '../workload/score.ts';
export { workloadMarkdown } from './workload-report.ts';

export interface WorkloadConfig {
  population: Partial<PopulationOptions>;
  script: Partial<Omit<ScriptOptions, 'start' | 'seed'>>;
  /** Variants (workload/simulate.ts WORKLOAD_VARIANTS). */
  designs: WorkloadVariant[];
  bucketBits: number[];
  usersPerIp: number;
  /** Add the anonymous variants beside `blinded` when the list names none (default true). */
  anonymous?: boolean;
  /** The anonymous variants' bucket bits, when not all of `bucketBits` (workload/run.ts WorkloadOptions.anonymousBucketBits). */
  anonymousBucketBits?: number[];
  /** Runs (server children) at once (workload/run.ts WorkloadOptions.parallel). */
  parallel?: number;
  /** More simulations beside the default one, each its own table: densities, a carrier NAT, daisy-chained orders. */
  studies?: WorkloadStudy[];
}

/** A simulation of its own, its rows labelled with its name: what it changes from the section's population and script. */
export interface WorkloadStudy {
  name: string;
  population?: Partial<PopulationOptions>;
  script?: Partial<Omit<ScriptOptions, 'start' | 'seed'>>;
  designs: WorkloadVariant[];
  bucketBits: number[];
  usersPerIp?: number;
  /** workload/run.ts WorkloadOptions.orderDays. */
  orderDays?: number;
}

/** The variants a config runs (module header). */
export function workloadVariants(config: Pick<WorkloadConfig, 'designs' | 'anonymous'>): WorkloadVariant[] {
  const listed = [...config.designs];
  if (config.anonymous === false || !listed.includes('blinded') || listed.some(isAnonymous)) return listed;
  return [...listed, 'blinded-anonymous', 'blinded-anonymous+relay'];
}

/** One simulated run: what it took and sent. Its graph recovery is the matching row of `workload`. */
export interface WorkloadMark {
  section: 'workload';
  name: string;
  design: DesignName;
  variant: WorkloadVariant;
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
  const population = { ...DEFAULT_POPULATION, ...config.population };
  const script = { ...DEFAULT_SCRIPT, ...config.script };
  const run = await runWorkload({
    population,
    script,
    designs: workloadVariants(config),
    bucketBits: config.bucketBits,
    ...(config.anonymousBucketBits ? { anonymousBucketBits: config.anonymousBucketBits } : {}),
    usersPerIp: config.usersPerIp,
    ...(config.parallel ? { parallel: config.parallel } : {}),
    log,
  });
  const rows = [...run.results];
  const marks = run.results.map((r) => markOf(r, run.parameters.script.days, run.population.users));
  const p = run.population;
  const notes = [
    `Workload: ${p.users} users of ${p.people} people in a plan of ${p.planSize} numbers (${p.plan}), ${run.parameters.script.days} simulated days, ` +
      `${run.script.lookups} lookups at a conversation, ${run.script.newContactLookups} of new contacts and ${run.script.syncs} full syncs per design; the operator read only the persisted data folder (workload/operator.ts).`,
  ];
  for (const study of config.studies ?? []) {
    log(`  study: ${study.name}`);
    const s = await runWorkload({
      population: { ...population, ...study.population },
      script: { ...script, ...study.script },
      designs: study.designs,
      bucketBits: study.bucketBits,
      usersPerIp: study.usersPerIp ?? config.usersPerIp,
      ...(study.orderDays !== undefined ? { orderDays: study.orderDays } : {}),
      ...(config.parallel ? { parallel: config.parallel } : {}),
      log,
    });
    for (const r of s.results) {
      r.study = study.name;
      rows.push(r);
      marks.push({ ...markOf(r, s.parameters.script.days, s.population.users), name: `${study.name}: ${r.label}` });
    }
    notes.push(`Study "${study.name}": ${s.population.users} users of ${s.population.people} people in a plan of ${s.population.planSize} numbers, ${s.parameters.script.days} days, ${s.parameters.usersPerIp} users per IP.`);
  }
  return { rows, marks, notes, run };
}

function markOf(r: WorkloadResult, days: number, users: number): WorkloadMark {
  return {
    section: 'workload',
    name: r.label,
    design: r.design,
    variant: r.variant,
    bucketBits: r.bucketBits,
    days,
    users,
    lookups: r.lookups,
    requests: r.requests,
    seconds: r.seconds,
    lookupsPerSec: r.seconds > 0 ? r.lookups / r.seconds : 0,
    bytesPerLookup: r.bytesPerLookup,
  };
}

// ---------------------------------------------------------------------------
// Chart

/** The schema bench/vega.ts renders. */
const VEGA_LITE_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

const variantOf = (r: WorkloadResult): string => r.variant ?? r.design;

/**
 * Four panels, from the default study's rows: recall of the rebuilt graph
 * against bucketBits (blinded at the headline level over all edges and over
 * edges to registered contacts, and the conservative rule; plain and
 * hashed as horizontal rules); the scored attack's precision-recall curves,
 * one per bucketBits; the median candidate set per true edge; and bytes
 * per lookup. A Vega-Lite spec, data inline.
 */
export function workloadChart(all: readonly WorkloadResult[]): { file: 'workload.svg'; spec: object } {
  const inDefault = all.filter((r) => (r.study ?? 'default') === 'default');
  const w = inDefault.length ? inDefault : all;
  const values: Record<string, unknown>[] = [];
  for (const r of w) {
    const base = { design: r.design, bucketBits: r.bucketBits, medianCandidates: Math.max(1, r.medianCandidates), bytesPerLookup: Math.max(1, r.bytesPerLookup) };
    if (r.design === 'blinded') {
      const v = variantOf(r);
      values.push({ ...base, series: `${v}: all edges`, recall: r.recall });
      if (r.recallRegistered !== undefined) values.push({ ...base, series: `${v}: edges to registered contacts`, recall: r.recallRegistered, extra: true });
      const c = v === 'blinded' ? r.attacks.find((a) => a.name === CONSERVATIVE) : undefined;
      if (c) values.push({ ...base, series: 'blinded: conservative rule, all edges', recall: c.recall, extra: true });
    } else values.push({ ...base, series: r.design, rule: r.design, recall: r.recall });
  }
  // Curves that reach a precision of 50 % somewhere (at b = 0 and 4 every claim is a guess among hundreds).
  const curves = w
    .filter((r) => r.design === 'blinded' && variantOf(r) === 'blinded' && r.curve?.some((q) => q.precision >= 0.5))
    .flatMap((r) =>
      r.curve.flatMap((q) => [
        { bits: `b = ${r.bucketBits}`, edges: 'all edges', recall: q.recall, precision: q.precision },
        ...(q.recallRegistered === undefined ? [] : [{ bits: `b = ${r.bucketBits}`, edges: 'edges to registered contacts', recall: q.recallRegistered, precision: q.precision }]),
      ]),
    );
  const series = [...new Set(values.map((v) => v.series as string))];
  const color = { field: 'series', type: 'nominal', title: null, scale: { domain: series }, legend: { orient: 'bottom', columns: 2, labelLimit: 320 } };
  const x = { field: 'bucketBits', type: 'quantitative', title: 'bucket bits (blinded)', axis: { format: 'd', tickMinStep: 1 } };
  const blindedOnly = { filter: "datum.design === 'blinded'" };
  const others = { filter: "datum.design !== 'blinded'" };
  const mainOnly = { filter: 'datum.extra !== true' };
  const panel = (field: string, yTitle: string, scale: object, format: string | undefined, withExtra: boolean) => ({
    width: 220,
    height: 200,
    layer: [
      {
        transform: [blindedOnly, ...(withExtra ? [] : [mainOnly])],
        mark: { type: 'line', point: true },
        encoding: { x, y: { field, type: 'quantitative', title: yTitle, scale, ...(format ? { axis: { format } } : {}) }, color },
      },
      {
        transform: [others],
        mark: { type: 'rule', strokeWidth: 2 },
        // plain and hashed often coincide: the second one dashed, so that both show.
        encoding: { y: { field, type: 'quantitative' }, color, strokeDash: { field: 'rule', type: 'nominal', scale: { domain: ['plain', 'hashed'], range: [[1, 0], [6, 4]] }, legend: null } },
      },
    ],
  });
  // The scored attack's curves, each labelled with its b at its far end (a legend of its own would fight the shared colour legend);
  // over registered contacts dashed (the precision is the claims', so both share it).
  const xy = {
    x: { field: 'recall', type: 'quantitative', title: 'recall: all edges, registered contacts dashed', axis: { format: '.0%' }, scale: { domain: [0, 1] } },
    y: { field: 'precision', type: 'quantitative', title: 'precision', axis: { format: '.0%' }, scale: { domain: [0, 1] } },
  };
  const curvePanel = {
    width: 220,
    height: 200,
    data: { values: curves },
    layer: [
      {
        mark: { type: 'line', color: '#555' },
        encoding: {
          ...xy,
          detail: { field: 'bits', type: 'nominal' },
          strokeDash: { field: 'edges', type: 'nominal', scale: { domain: ['all edges', 'edges to registered contacts'], range: [[1, 0], [5, 3]] }, legend: null },
          order: { field: 'recall', type: 'quantitative' },
        },
      },
      {
        transform: [
          { filter: "datum.edges === 'all edges'" },
          { aggregate: [{ op: 'max', field: 'recall', as: 'recall' }, { op: 'min', field: 'precision', as: 'precision' }], groupby: ['bits'] },
        ],
        mark: { type: 'text', align: 'right', dx: -4, dy: -8, fontSize: 11 },
        encoding: { ...xy, text: { field: 'bits', type: 'nominal' } },
      },
    ],
  };
  const spec = {
    $schema: VEGA_LITE_SCHEMA,
    title: {
      text: 'What a month of lookup logs gives away',
      subtitle: 'contact-graph edges the operator rebuilds from the persisted data folder (a lower bound: the strongest attack written so far), against the blinded design\u2019s bucket bits; plain and hashed as rules',
    },
    data: { values },
    hconcat: [
      panel('recall', 'edges recovered (share of true edges)', { domain: [0, 1] }, '.0%', true),
      curvePanel,
      panel('medianCandidates', 'median candidate set per true edge (numbers)', { type: 'log' }, '~s', false),
      panel('bytesPerLookup', 'bytes per lookup (bodies, both ways)', { type: 'log' }, '~s', false),
    ],
    resolve: { scale: { color: 'shared', strokeDash: 'independent' } },
    config: { font: 'Helvetica, Arial, sans-serif', background: 'white', title: { anchor: 'start' } },
  };
  return { file: 'workload.svg', spec };
}
