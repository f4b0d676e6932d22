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
import { isAnonymous, type WorkloadVariant } from '../workload/simulate.ts';
import type { DesignName } from '../shared/messages.ts';

export type { WorkloadResult } from '../workload/score.ts';

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
  const run = await runWorkload({
    population: { ...DEFAULT_POPULATION, ...config.population },
    script: { ...DEFAULT_SCRIPT, ...config.script },
    designs: workloadVariants(config),
    bucketBits: config.bucketBits,
    ...(config.anonymousBucketBits ? { anonymousBucketBits: config.anonymousBucketBits } : {}),
    usersPerIp: config.usersPerIp,
    log,
  });
  const days = run.parameters.script.days;
  const marks = run.results.map(
    (r): WorkloadMark => ({
      section: 'workload',
      name: `workload ${r.label}: ${days} simulated days`,
      design: r.design,
      variant: r.variant,
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
/** The variant (results.json from before the variants have only the design). */
const variantOf = (r: WorkloadResult): string => r.variant ?? r.design;

const ci = (x: [number, number] | null) => (x === null ? '' : ` (${pct(x[0])} – ${pct(x[1])})`);

/**
 * The rows as Markdown: recovery per variant and bucketBits, the blinded
 * attacks one by one, requester recovery and padding for the anonymous
 * variants, and what each log still holds.
 */
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
        variantOf(r),
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
        'The headline claims are `bucket` or else `mutual`; fetches are tied to requesters by IP and minute (workload/operator.ts); in the anonymous variants, ' +
        'whose evaluation log names no account, through the requests the requester attack links (below). ' +
        'What decides these figures is how many numbers share a bucket (plan / 2^b and directory / 2^b, in the first table), not b itself: ' +
        'a deployment with 10^9 registered numbers leaves far larger sets at the same b than this simulated plan does.',
      mdTable(
        ['design', 'bucket bits', 'attack', 'claimed', 'correct', 'recall', 'precision', 'median registered candidates'],
        blinded.flatMap((r) => r.attacks.map((a) => [variantOf(r), bits(r), a.name, count(a.claimed), count(a.recovered), pct(a.recall), pct(a.precision), count(r.medianCandidatesRegistered)])),
      ),
    );
  }
  const anonymous = w.filter((r) => r.requesters);
  if (anonymous.length) {
    parts.push(
      '### Requester recovery: who sent each anonymous request',
      'With Privacy Pass tokens the evaluation log holds no account; the operator links each counted evaluate request to an account from the token logs ' +
        '(issuance per day and account; requests per minute, IP and size class) and, without a relay, the IP (workload/requesters.ts). ' +
        '*Linked*: requests the attack names an account for (a unique match), and the precision of those names; *top guess*: a guess for every request. ' +
        '*Chance*: 1 / the accounts that sent a request that day, averaged over requests. *Volume only*: guessing the day\u2019s largest token issuer for every request, ' +
        'which uses nothing of the request: what issuance counts alone give away. Intervals: Wilson, 95 %.',
      mdTable(
        ['design', 'bucket bits', 'requests', 'linked', 'precision of links', 'top guess', 'chance', 'top guess / chance', 'top guess, single lookups', 'volume only', 'syncs linked (right)', 'IPs linked (named, right)'],
        anonymous.map((r) => {
          const q = r.requesters!;
          return [
            variantOf(r),
            bits(r),
            count(q.requests) + (q.requests !== q.sent ? ` (sent ${count(q.sent)})` : ''),
            pct(q.linkedShare),
            pct(q.precision) + ci(q.precisionCi),
            pct(q.top1) + ci(q.top1Ci),
            `${pct(q.chance)} (1 / ${count(q.activePerDay)})`,
            q.chance > 0 ? `${(q.top1 / q.chance).toFixed(1)}x${q.top1Ci[0] <= q.chance ? ' (at chance)' : ''}` : '-',
            q.requests > q.syncs.requests ? pct((q.top1Correct - q.syncs.top1Correct) / (q.requests - q.syncs.requests)) : '-',
            pct(q.volume),
            `${count(q.syncs.named)} of ${count(q.syncs.requests)} (${count(q.syncs.namedCorrect)})`,
            q.ips.linked ? `${count(q.ips.linked)} (${count(q.ips.named)}, ${count(q.ips.namedCorrect)})` : '-',
          ];
        }),
      ),
    );
    parts.push(
      '### Padding to the size classes',
      'Elements sent / elements asked (the numbers not in a tag cache): each anonymous request is padded with dummy elements to its token\u2019s size class ' +
        '(shared/tokens.ts). Single lookups are class 1; a contact sync pads to the next class. Tokens: issued and spent over every install, and the ' +
        'issuances a lookup had to wait for (an empty class).',
      mdTable(
        ['design', 'bucket bits', 'requests', 'elements asked', 'elements sent', 'padding', 'single lookups', 'syncs', 'tokens issued / spent', 'fetched on demand'],
        anonymous.map((r) => {
          const p = r.padding ?? { requests: 0, asked: 0, sent: 0, ratio: 1, single: null, batch: null };
          const t = r.pools;
          const x = (v: number | null) => (v === null ? '-' : `${v.toFixed(2)}x`);
          return [variantOf(r), bits(r), count(p.requests), count(p.asked), count(p.sent), x(p.ratio), x(p.single), x(p.batch), t ? `${count(t.fetched)} / ${count(t.spent)}` : '-', t ? count(t.fetchedOnDemand) : '-'];
        }),
      ),
    );
  }
  parts.push(
    '### What remains in each log',
    mdTable(
      ['design', 'bucket bits', 'rows', 'requesters', 'IPs', 'lookups counted', 'sync requests', 'bucket rows (ambiguous, unattributed)', 'a row holds'],
      w.map((r) => [
        variantOf(r),
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
      const v = variantOf(r);
      values.push({ ...base, series: `${v}: bucket or mutual`, recall: r.recall, precision: r.precision });
      const g = v === 'blinded' ? r.attacks.find((a) => a.name === 'registered') : undefined;
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
