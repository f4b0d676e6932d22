/**
 * The charts of a run as Vega-Lite specs (rendered and written by
 * bench/vega.ts): grouped bars and lines, each with a title, axis titles
 * with units, the machine and run in the subtitle, and the run's label
 * (bench/label.ts) in the title when it is not a full run from a clean
 * commit. The data sit inline in each spec, one row per value, so a spec is
 * all a researcher needs to restyle a chart.
 *
 * Series that could hide one another stay apart: bars of a group side by
 * side (xOffset), lines with their own point shape and dash, log scales
 * where values span decades, one legend per chart.
 */
import { workloadChart } from './workload.ts';
import { runLine, titleSuffix } from './label.ts';
import type { BandwidthMark, BenchResults, BuildMark, CryptoMark, FairnessMark, HttpMark, Mark, NodesMark, ReverseMark, ScaleMark, StoreMark } from './results.ts';
import { formatNumber } from './stats.ts';
import { VEGA_LITE_SCHEMA, type ChartSpec } from './vega.ts';

/** Short value label: 1.2k, 3M, 0.5, 1e-3 style. */
export function tickLabel(v: number): string {
  const a = Math.abs(v);
  const trim = (x: number) => Number(x.toPrecision(3)).toString();
  if (a === 0) return '0';
  if (a >= 1e12) return `${trim(v / 1e12)}T`;
  if (a >= 1e9) return `${trim(v / 1e9)}G`;
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e3) return `${trim(v / 1e3)}k`;
  if (a >= 1e-3) return trim(v);
  return v.toExponential(0);
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];

const CONFIG: NonNullable<ChartSpec['config']> = {
  font: 'Helvetica, Arial, sans-serif',
  background: 'white',
  title: { fontSize: 15, subtitleFontSize: 11, subtitleColor: '#555', anchor: 'start', offset: 12 },
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#e8e8e8' },
  legend: { labelFontSize: 11, titleFontSize: 11, labelLimit: 360 },
  range: { category: PALETTE },
};

/** Dash patterns: measured series solid or long dashes, projections and models dotted. */
const MEASURED_DASHES = [[1, 0], [8, 3], [12, 3, 3, 3], [5, 2], [16, 4]];
const PROJECTED_DASHES = [[2, 3], [1, 4], [2, 3, 6, 3], [1, 2]];
const SHAPES = ['circle', 'square', 'triangle-up', 'diamond', 'cross', 'triangle-down', 'triangle-right', 'wedge'];

/**
 * The title block every chart of a run shares: the title (the run's label on
 * a second line when there is one), the machine and run, and a note.
 */
export function runHeader(r: BenchResults, title: string, note?: string): Pick<ChartSpec, '$schema' | 'title' | 'config' | 'description'> {
  const suffix = titleSuffix(r).trim();
  return {
    $schema: VEGA_LITE_SCHEMA,
    description: `${title}${suffix ? ` ${suffix}` : ''}. pcd bench, ${runLine(r)}.`,
    title: { text: suffix ? [title, suffix] : title, subtitle: [runLine(r), ...(note ? [note] : [])] },
    config: CONFIG,
  };
}

/**
 * Any spec (e.g. one another section builds) with the run's label added the
 * way runHeader adds it: the label as a second title line, the machine and
 * run as the first subtitle line (the spec's own subtitle after it).
 */
export function withRunLabel(r: BenchResults, spec: ChartSpec | object): ChartSpec {
  const s = spec as { title?: string | string[] | { text: string | string[]; subtitle?: string | string[] } };
  const own = typeof s.title === 'object' && s.title !== null && !Array.isArray(s.title) ? s.title : { text: s.title ?? '' };
  const text = Array.isArray(own.text) ? own.text : [own.text];
  const subtitle = own.subtitle === undefined ? [] : Array.isArray(own.subtitle) ? own.subtitle : [own.subtitle];
  const suffix = titleSuffix(r).trim();
  return { ...spec, title: { ...own, text: suffix ? [...text, suffix] : text.length === 1 ? text[0]! : text, subtitle: [runLine(r), ...subtitle] } } as ChartSpec;
}

export interface BarRow {
  category: string;
  series: string;
  value: number;
}

export interface BarChartInput {
  title: string;
  xTitle: string;
  /** With the unit, e.g. 'lookups per second (log scale)'. */
  yTitle: string;
  legendTitle: string;
  /** Category and series order (rows may leave some pairs out). */
  categories: string[];
  series: string[];
  rows: BarRow[];
  log?: boolean;
  /** Bars of one category side by side (default); false: one bar per category, coloured by series. */
  grouped?: boolean;
  slant?: boolean;
  note?: string;
}

/** Grouped bars: one group per category, one bar per series beside the others, values above the bars. */
export function barChartSpec(r: BenchResults, input: BarChartInput): ChartSpec {
  const rows = input.rows.filter((x) => Number.isFinite(x.value) && (!input.log || x.value > 0));
  const grouped = (input.grouped ?? true) && input.series.length > 1;
  const slant = input.slant ?? input.categories.some((c) => c.length * 6.5 > 640 / Math.max(1, input.categories.length));
  const bars = input.categories.length * (grouped ? input.series.length : 1);
  const single = input.series.length <= 1;
  // Log bars start at the domain's foot: leave a decade below the smallest value, so that no bar is a sliver.
  const least = Math.min(...rows.map((x) => x.value));
  const logScale = { type: 'log', nice: true, ...(Number.isFinite(least) ? { domainMin: 10 ** Math.floor(Math.log10(least) - 0.3) } : {}) };
  return {
    ...runHeader(r, input.title, input.note),
    width: Math.round(Math.max(420, Math.min(1100, bars * (grouped ? 16 : 40) + input.categories.length * 12))),
    height: 300,
    data: { values: rows.map((x) => ({ ...x, label: tickLabel(x.value) })) },
    encoding: {
      x: {
        field: 'category',
        type: 'nominal',
        sort: input.categories,
        title: input.xTitle,
        axis: slant ? { labelAngle: -35, labelAlign: 'right', labelLimit: 260 } : { labelAngle: 0, labelLimit: 260 },
      },
      ...(grouped ? { xOffset: { field: 'series', type: 'nominal', sort: input.series } } : {}),
      y: { field: 'value', type: 'quantitative', title: input.yTitle, stack: null, scale: input.log ? logScale : { zero: true } },
      color: single ? { value: PALETTE[0] } : { field: 'series', type: 'nominal', sort: input.series, title: input.legendTitle },
    },
    layer: [{ mark: { type: 'bar' } }, { mark: { type: 'text', dy: -5, fontSize: 9, color: '#333' }, encoding: { text: { field: 'label', type: 'nominal' } } }],
  } as ChartSpec;
}

export interface LineSeries {
  name: string;
  points: [number, number][];
  /** A projection or model, not a measurement: dotted, and said so in its name. */
  projected?: boolean;
}

export interface LineChartInput {
  title: string;
  xTitle: string;
  yTitle: string;
  legendTitle: string;
  series: LineSeries[];
  logX?: boolean;
  logY?: boolean;
  /** Tick values for x (e.g. bucket bits); default: the scale's ticks. */
  xTicks?: number[];
  note?: string;
}

/** Lines with points; every series its own colour, point shape and dash, so lines that coincide stay visible. */
export function lineChartSpec(r: BenchResults, input: LineChartInput): ChartSpec {
  const ok = (x: number, y: number) => Number.isFinite(x) && Number.isFinite(y) && (!input.logX || x > 0) && (!input.logY || y > 0);
  const series = input.series.filter((s) => s.points.some(([x, y]) => ok(x, y)));
  const names = series.map((s) => s.name);
  let measured = 0;
  let projected = 0;
  const dashes = series.map((s) => (s.projected ? PROJECTED_DASHES[projected++ % PROJECTED_DASHES.length]! : MEASURED_DASHES[measured++ % MEASURED_DASHES.length]!));
  const legend = { field: 'series', type: 'nominal', sort: names, title: input.legendTitle } as const;
  return {
    ...runHeader(r, input.title, input.note),
    width: 600,
    height: 320,
    data: {
      values: series.flatMap((s) => s.points.filter(([x, y]) => ok(x, y)).map(([x, y]) => ({ series: s.name, kind: s.projected ? 'projection or model' : 'measured', x, y, label: tickLabel(y) }))),
    },
    mark: { type: 'line', strokeWidth: 2, point: { filled: false, size: 70, strokeWidth: 1.8 } },
    encoding: {
      x: {
        field: 'x',
        type: 'quantitative',
        title: input.xTitle,
        scale: input.logX ? { type: 'log' } : { zero: false, nice: false },
        ...(input.xTicks ? { axis: { values: input.xTicks } } : {}),
      },
      y: { field: 'y', type: 'quantitative', title: input.yTitle, scale: input.logY ? { type: 'log' } : { zero: true } },
      color: { ...legend, scale: { domain: names, range: names.map((_, i) => PALETTE[i % PALETTE.length]!) } },
      shape: { ...legend, scale: { domain: names, range: names.map((_, i) => SHAPES[i % SHAPES.length]!) } },
      strokeDash: { ...legend, scale: { domain: names, range: dashes } },
    },
  } as ChartSpec;
}

function by<T extends Mark>(r: BenchResults, section: T['section']): T[] {
  return r.marks.filter((m): m is T => m.section === section);
}

/**
 * The charts this run's marks support: file name (`<name>.svg`) to Vega-Lite spec.
 * Each kind of chart adds its own, when the run has the marks it needs, in this order.
 */
export function chartSpecs(r: BenchResults): Map<string, ChartSpec> {
  const charts = new Map<string, ChartSpec>();
  for (const add of [workloadCharts, httpCharts, cryptoCharts, httpVariantCharts, fairnessChart, scaleChart, bandwidthChart, buildCharts, storeChart, nodesChart, reverseChart]) add(r, charts);
  return charts;
}

/** The workload's chart (bench/workload.ts), with the run's label. */
function workloadCharts(r: BenchResults, charts: Map<string, ChartSpec>): void {
  if (r.workload && r.workload.length > 0) {
    const { file, spec } = workloadChart(r.workload);
    charts.set(file, withRunLabel(r, spec));
  }
}

/** HTTP by design: lookups per second and server CPU per lookup, per request shape. */
function httpCharts(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const http = by<HttpMark>(r, 'http').filter((m) => m.phase === 'throughput' && m.shape !== 'bucket' && (m.group ?? 'designs') === 'designs');
  if (http.length > 0) {
    const shapes = [...new Set(http.map((m) => m.shape))];
    const designs = [...new Set(http.map((m) => m.design))];
    const category = (s: string) => {
      const base = s === 'single' ? 'single lookup' : `contact sync of ${s.slice(5)}`;
      return http.some((m) => m.shape === s && m.requests === 1) ? `${base} (1 request)` : base;
    };
    const common = { xTitle: 'request shape (numbers per request)', legendTitle: 'design', categories: shapes.map(category), series: designs, log: true };
    charts.set(
      'http-lookups.svg',
      barChartSpec(r, {
        ...common,
        title: 'HTTP lookups per second, by design',
        yTitle: 'lookups per second (log scale)',
        rows: http.map((m) => ({ category: category(m.shape), series: m.design, value: m.lookupsPerSec })),
        note: 'Server in its own process on 127.0.0.1; blinded = evaluate requests (elements blinded ahead); bucket fetches separate.',
      }),
    );
    charts.set(
      'http-server-cpu.svg',
      barChartSpec(r, {
        ...common,
        title: 'Server CPU time per lookup, by design',
        yTitle: 'server CPU per lookup, µs (log scale)',
        rows: http.map((m) => ({ category: category(m.shape), series: m.design, value: m.serverCpuUsPerLookup })),
        note: 'process.cpuUsage() of the server process (user + system) over each phase, divided by the numbers answered.',
      }),
    );
  }
}

/** Crypto per item: the server's default backend by operation, then the backends (and the psi.js peer) side by side. */
function cryptoCharts(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const crypto = by<CryptoMark>(r, 'crypto');
  if (crypto.length > 0) {
    // One implementation per operation: the server's default backend, and the backend-independent work.
    const main = crypto.filter((m) => m.backend === 'sodium' || m.backend === 'any');
    const shown = main.length > 0 ? main : crypto;
    charts.set(
      'crypto.svg',
      barChartSpec(r, {
        title: 'Crypto cost per number or element, by operation',
        xTitle: 'operation',
        yTitle: 'µs per item, one core (log scale)',
        legendTitle: 'implementation',
        categories: shown.map((m) => shortCryptoName(m.operation)),
        series: ['µs per item'],
        rows: shown.map((m) => ({ category: shortCryptoName(m.operation), series: 'µs per item', value: m.usPerItem })),
        log: true,
        slant: true,
        note: `${shown.some((m) => m.backend === 'sodium') ? 'sodium backend (libsodium WASM) and backend-independent work' : 'one backend'}; batch operations: one call per batch, one DLEQ proof per batch in voprf.`,
      }),
    );
    const impls: string[] = [...new Set(crypto.map((m) => m.backend))].filter((b) => b !== 'any' && b !== 'psi.js');
    const ops = [...new Set(crypto.filter((m) => impls.includes(m.backend)).map((m) => m.operation))];
    const psi = crypto.filter((m) => m.backend === 'psi.js');
    if (impls.length > 0 && ops.length > 0) {
      const categories = ops.map(shortCryptoName);
      // psi.js beside its like-for-like operation: processRequest by OPRF BlindEvaluate of the same batch (no proof on either side), createRequest by blind.
      const psiCategory = (m: CryptoMark) => {
        const like = m.operation.includes('processRequest') ? `BlindEval oprf ×${m.batch}` : m.operation.includes('createRequest') ? 'blind voprf' : shortCryptoName(m.operation);
        if (!categories.includes(like)) categories.push(like);
        return like;
      };
      const rows = [
        ...crypto.filter((m) => impls.includes(m.backend)).map((m) => ({ category: shortCryptoName(m.operation), series: m.backend as string, value: m.usPerItem })),
        ...psi.map((m) => ({ category: psiCategory(m), series: 'psi.js', value: m.usPerItem })),
      ];
      charts.set(
        'crypto-backends.svg',
        barChartSpec(r, {
          title: `Crypto per item: ${impls.join(' vs ')}${psi.length > 0 ? ' and the psi.js peer' : ''}, measured in the same run`,
          xTitle: 'operation (×N: items per call)',
          yTitle: 'µs per item, one core (log scale)',
          legendTitle: 'implementation',
          categories,
          series: [...impls, ...(psi.length > 0 ? ['psi.js'] : [])],
          rows,
          log: true,
          slant: true,
          note:
            psi.length > 0
              ? 'Implementations of one operation timed in alternation; psi.js (OpenMined ECDH PSI, P-256, WASM) beside OPRF BlindEvaluate and blind.'
              : 'Implementations of one operation timed in alternation; psi.js not measured in this run (see results.md).',
        }),
      );
    }
  }
}

/** Blinded evaluate over HTTP on servers that differ in backend or evaluator threads. */
function httpVariantCharts(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const variants = by<HttpMark>(r, 'http').filter((m) => m.group === 'backends' || m.group === 'threads');
  if (variants.length > 0) {
    const category = (m: HttpMark) => `${m.group === 'backends' ? 'backend' : 'threads'}: ${m.numbersPerRequest}/req, c=${m.concurrency}${m.requests === 1 ? ' (1 request)' : ''}`;
    const setting = (m: HttpMark) => `${m.backend}, ${m.evalThreads} thread${m.evalThreads === 1 ? '' : 's'}`;
    charts.set(
      'http-backends.svg',
      barChartSpec(r, {
        title: 'Blinded evaluate over HTTP: elements per second by backend and evaluator threads',
        xTitle: 'comparison: elements per request, requests in flight',
        yTitle: 'elements evaluated per second',
        legendTitle: 'server setting',
        categories: [...new Set(variants.map(category))],
        series: [...new Set(variants.map(setting))],
        rows: variants.map((m) => ({ category: category(m), series: setting(m), value: m.lookupsPerSec })),
        note: 'One server child per setting (--backend, --eval-threads), the same prepared requests; the load generator shares the cores.',
      }),
    );
  }
}

/** The light requester's latency, idle and beside a flood. */
function fairnessChart(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const fair = by<FairnessMark>(r, 'fairness');
  if (fair.length > 0) {
    const phase = (m: FairnessMark) => (m.phase === 'flood' ? `beside ${m.flooder?.inFlight} x ${m.flooder?.elementsPerRequest}-element requests` : 'idle');
    const stats = ['p50', 'p95', 'p99', 'max'] as const;
    charts.set(
      'fairness.svg',
      barChartSpec(r, {
        title: 'Latency of 1-element evaluate requests, idle vs beside a flood',
        xTitle: 'what the server was doing',
        yTitle: 'latency per request, ms (log scale)',
        legendTitle: 'percentile',
        categories: fair.map(phase),
        series: [...stats],
        rows: fair.flatMap((m) => stats.map((k) => ({ category: phase(m), series: k, value: m.light.latencyMs[k] }))),
        log: true,
        note: 'Another account floods evaluate (retrying on 503); fair admission should keep the light requester answered.',
      }),
    );
  }
}

/** Seeding, time to serve and restart, by directory size. */
function scaleChart(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const scale = by<ScaleMark>(r, 'scale');
  if (scale.length > 0) {
    const size = (m: ScaleMark) => `${formatNumber(m.numbers, 0)} numbers`;
    const series = ['seed', 'fork to blinded serving', 'restart to blinded serving'];
    charts.set(
      'scale.svg',
      barChartSpec(r, {
        title: 'Seeding, time to serve and restart after kill -9, by directory size',
        xTitle: 'registered numbers',
        yTitle: 'seconds (log scale)',
        legendTitle: 'phase',
        categories: scale.map(size),
        series,
        rows: scale.flatMap((m) => [
          { category: size(m), series: series[0]!, value: m.seedSeconds },
          { category: size(m), series: series[1]!, value: m.blindedServingSeconds },
          ...(m.restart ? [{ category: size(m), series: series[2]!, value: m.restart.blindedServingSeconds }] : []),
        ]),
        log: true,
        note: 'One child serving plain, hashed and blinded; serving = first 200 of GET /v1/blinded/config; restart on the same folder after SIGKILL.',
      }),
    );
  }
}

/** Wire bytes per lookup against bucket bits: blinded measured, plain and hashed for reference, the model dotted. */
function bandwidthChart(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const bw = by<BandwidthMark>(r, 'bandwidth');
  const blinded = bw.filter((m) => m.design === 'blinded');
  if (blinded.length > 0) {
    const bits = [...new Set(blinded.map((m) => m.bucketBits!))].sort((a, b) => a - b);
    const lookups = [...new Set(blinded.map((m) => m.lookups))].sort((a, b) => a - b);
    const label = (l: number) => (l === 1 ? 'single lookup' : `sync of ${l}`);
    const proj = r.projections.filter((p) => p.section === 'bandwidth');
    const allBits = [...new Set([...bits, ...proj.flatMap((p) => p.rows.map((x) => x.x))])].sort((a, b) => a - b);
    const series: LineSeries[] = lookups.map((l) => ({
      name: `blinded, ${label(l)}`,
      points: blinded.filter((m) => m.lookups === l).map((m) => [m.bucketBits!, m.wireBytesPerLookup] as [number, number]),
    }));
    for (const d of ['plain', 'hashed'] as const) {
      const m = bw.find((x) => x.design === d && x.lookups === 1);
      if (m) series.push({ name: `${d}, single lookup`, points: [[allBits[0]!, m.wireBytesPerLookup], [allBits[allBits.length - 1]!, m.wireBytesPerLookup]] });
    }
    for (const p of proj) {
      const n = /at (\S+) registered/.exec(p.name)?.[1] ?? '';
      series.push({ name: `model, ${n} numbers (projection)`, points: p.rows.map((x) => [x.x, x.value]), projected: true });
    }
    charts.set(
      'bandwidth.svg',
      lineChartSpec(r, {
        title: 'Bytes on the wire per lookup vs bucket bits',
        xTitle: 'bucketBits b (anonymity set = numbering plan / 2^b)',
        yTitle: 'wire bytes per lookup (log scale)',
        legendTitle: 'design and request',
        series,
        logY: true,
        xTicks: allBits,
        note: `Measured over a directory of ${formatNumber(blinded[0]!.directorySize, 0)} numbers (HTTP/1.1 headers and bodies both ways, cold client, config fetch excluded); dotted: model for larger directories.`,
      }),
    );
  }
}

/** Server open time and memory against directory size, with the blinded build projected to this machine's cores. */
function buildCharts(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const build = by<BuildMark>(r, 'build').filter((m) => !m.name.endsWith('(1 thread)'));
  if (build.length > 0) {
    const designs = [...new Set(build.map((m) => m.design))];
    const name = (d: string) => (d === 'directory' ? 'directory index' : d);
    const series: LineSeries[] = designs.map((d) => ({ name: name(d), points: build.filter((m) => m.design === d).map((m) => [m.numbers, m.seconds] as [number, number]) }));
    const cores = r.machine.cores;
    const projected = r.projections
      .filter((p) => p.section === 'build' && p.rows.every((x) => x.unit === 's'))
      .map((p) => [Number(/at ([\d,]+) numbers/.exec(p.name)?.[1]?.replace(/,/g, '')), p.rows.find((x) => x.x === cores)?.value] as const)
      .filter((x): x is readonly [number, number] => Number.isFinite(x[0]) && x[1] !== undefined);
    const lastBlinded = build.filter((m) => m.design === 'blinded').sort((a, b) => b.numbers - a.numbers)[0];
    if (projected.length > 0 && lastBlinded) {
      series.push({ name: `blinded, projected (${cores} cores)`, points: [[lastBlinded.numbers, lastBlinded.seconds], ...projected.map(([n, s]) => [n, s] as [number, number])], projected: true });
    }
    charts.set(
      'build-time.svg',
      lineChartSpec(r, {
        title: 'Server open time (directory load + design build) vs directory size',
        xTitle: 'registered numbers (log scale)',
        yTitle: 'seconds (log scale)',
        legendTitle: 'design',
        series,
        logX: true,
        logY: true,
        note: 'blinded evaluates RFC 9497 Evaluate once per number; dotted: projection at the measured per-core rate.',
      }),
    );
    charts.set(
      'memory.svg',
      lineChartSpec(r, {
        title: 'Server memory for the directory vs directory size',
        xTitle: 'registered numbers (log scale)',
        yTitle: 'typed-array bytes added (log scale)',
        legendTitle: 'design',
        series: designs.map((d) => ({ name: name(d), points: build.filter((m) => m.design === d && m.arrayBuffersDeltaBytes > 0).map((m) => [m.numbers, m.arrayBuffersDeltaBytes] as [number, number]) })),
        logX: true,
        logY: true,
        note: 'process.memoryUsage().arrayBuffers after minus before opening the server (after GC): the hash tables and buckets.',
      }),
    );
  }
}

/** The accounts and directory store: seeding and scan throughput, SQLite and Postgres. */
function storeChart(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const store = by<StoreMark>(r, 'store');
  if (store.length > 0) {
    const sizes = [...new Set(store.map((m) => m.numbers))].sort((a, b) => a - b);
    const stores = [...new Set(store.map((m) => m.store))];
    const cat = (what: string, n: number) => `${what}, ${tickLabel(n)} numbers`;
    const categories = (['seeding', 'scan'] as const).flatMap((w) => sizes.map((n) => cat(w, n)));
    charts.set(
      'store.svg',
      barChartSpec(r, {
        title: 'Accounts and directory store: seeding and full-scan throughput, SQLite and Postgres',
        xTitle: 'operation, directory size',
        yTitle: 'numbers per second (log scale)',
        legendTitle: 'store',
        categories,
        series: stores,
        rows: store.flatMap((m) => [
          { category: cat('seeding', m.numbers), series: m.store, value: m.seedNumbersPerSec },
          { category: cat('scan', m.numbers), series: m.store, value: m.scanNumbersPerSec },
        ]),
        log: true,
        note: 'seeding: bulk insert of the synthetic directory (Postgres by COPY), generator included; scan: directory() read whole. Postgres on the same machine over TCP loopback, fsync on.',
      }),
    );
  }
}

/** Single lookups through nodes: SQLite, one Postgres-backed node, two on one store. */
function nodesChart(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const nodes = by<NodesMark>(r, 'nodes');
  if (nodes.length > 0) {
    const setups = [...new Set(nodes.map((m) => m.setup))];
    const designs = [...new Set(nodes.map((m) => m.design))];
    charts.set(
      'nodes.svg',
      barChartSpec(r, {
        title: 'Single lookups through nodes: SQLite, one Postgres-backed node, two on one store',
        xTitle: 'design',
        yTitle: 'lookups per second',
        legendTitle: 'setup',
        categories: designs,
        series: setups,
        rows: nodes.map((m) => ({ category: m.design, series: m.setup, value: m.lookupsPerSec })),
        log: false,
        note: 'Server child processes, taking turns in slices; blinded pays a Privacy Pass token per request (spent in the store). Two cores: a second node shows correctness, not added throughput.',
      }),
    );
  }
}

/** Time to reverse a hashed log: measured ranges, and larger ones projected. */
function reverseChart(r: BenchResults, charts: Map<string, ChartSpec>): void {
  const rev = by<ReverseMark>(r, 'reverse').filter((m) => m.hasher.startsWith('node:crypto'));
  if (rev.length > 0) {
    const proj = r.projections.find((p) => p.section === 'reverse');
    const measured = rev.map((m) => ({ category: `${m.range}${m.enumerated < m.rangeSize ? ' (part)' : ''}`, series: 'measured', value: m.seconds }));
    const taken = new Set(measured.map((x) => x.category));
    const projectedRows = (proj?.rows ?? []).map((x) => {
      const label = x.label.replace(/ \(.*\)$/, '');
      return { category: taken.has(label) ? `${label} (projected)` : label, series: 'projected', value: x.value };
    });
    charts.set(
      'reverse.svg',
      barChartSpec(r, {
        title: 'Time to reverse a hashed log, by numbering-plan range',
        xTitle: 'range enumerated',
        yTitle: 'seconds on one core (log scale)',
        legendTitle: 'figure',
        categories: [...new Set([...measured, ...projectedRows].map((x) => x.category))],
        series: ['measured', ...(projectedRows.length > 0 ? ['projected'] : [])],
        rows: [...measured, ...projectedRows],
        log: true,
        grouped: false,
        note: 'SHA-256 via node:crypto on one core; projected = range size / measured rate, divided by the cores or GPUs an attacker brings.',
      }),
    );
  }

}

export function shortCryptoName(name: string): string {
  return name
    .replace('normalizeNumber (E.164 input)', 'normalize E.164')
    .replace('normalizeNumber (national input + region)', 'normalize national')
    .replace('hashed: SHA-256 of a number', 'SHA-256')
    .replace(/blinded: bucket id \(b = \d+\)/, 'bucket id')
    .replace('server Evaluate: directory build (voprf)', 'Evaluate')
    .replace(/server BlindEvaluate \((\w+), batch (\d+)\)/, 'BlindEval $1 ×$2')
    .replace(/server evaluateChunk x(\d+) \+ proveComposite \((\w+), batch (\d+)\)/, 'split $2 ×$3 /$1')
    .replace(/psi\.js server processRequest \(batch (\d+)\)/, 'psi.js server ×$1')
    .replace(/psi\.js client createRequest \(batch (\d+)\)/, 'psi.js client ×$1')
    .replace(/client finalize \((\w+), batch (\d+)(, proof verified)?\)/, 'finalize $1 ×$2')
    .replace(/client blind \((\w+)\)/, 'blind $1')
    .replace(/client bucket search \((\d+) tags\)/, 'search $1')
    .replace(/^token redemption check .*/, 'token check')
    .replace(/^token spend .*/, 'token spend')
    .replace(/^issuance BlindSign per token \(server blindSign.*/, 'BlindSign node:crypto')
    .replace(/^issuance BlindSign per token \(blindrsa-ts.*/, 'BlindSign blindrsa-ts')
    .replace(/^client token request .*/, 'token request')
    .replace(/^client token finalize .*/, 'token finalize')
    .replace(/^bench: mint a token .*/, 'mint (bench)');
}
