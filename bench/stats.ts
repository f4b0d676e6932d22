/**
 * The timing harness: one named mark, timed in samples until a time budget
 * and a minimum sample count are met, summarised as ops/s and per-op
 * mean / median (p50) / p95 / p99 (nearest rank: with fewer than 20
 * samples p95 is the slowest one, with fewer than 100 so is p99).
 *
 * Every mark's function returns a value, folded into {@link sink}, so the
 * engine cannot drop the work as dead code (the same reason libsignal's and
 * noble's benchmarks return what they compute).
 *
 * Cheap operations (microseconds) are timed in samples of several calls each,
 * so the clock's own cost stays below 1 % of a sample; the percentiles of
 * such a mark are then percentiles of per-sample averages, and the mark
 * records `opsPerSample` so a reader can tell.
 */

/** Folded return values of every mark; printed in the results so nothing is optimised away. */
let sinkValue = 0;

/** Folds any return value into the sink (cheaply: lengths, a byte, a number). */
export function sink(value: unknown): void {
  if (typeof value === 'number') sinkValue = (sinkValue + value) | 0;
  else if (typeof value === 'string') sinkValue = (sinkValue + value.length + value.charCodeAt(value.length - 1)) | 0;
  else if (value instanceof Uint8Array) sinkValue = (sinkValue + value.length + (value[value.length - 1] ?? 0)) | 0;
  else if (Array.isArray(value)) {
    sinkValue = (sinkValue + value.length) | 0;
    if (value.length > 0) sink(value[value.length - 1]);
  } else if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) sink(v);
  } else sinkValue = (sinkValue + 1) | 0;
}

export function sinkDigest(): number {
  return sinkValue;
}

/** Nearest-rank percentile of an ascending array (q in 0..1). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

export interface Summary {
  count: number;
  mean: number;
  median: number;
  p50: number;
  p95: number;
  p99: number;
  min: number;
  max: number;
}

export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const p50 = percentile(sorted, 0.5);
  return {
    count: sorted.length,
    mean: mean(sorted),
    median: p50,
    p50,
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

export interface TimingBudget {
  /** Stop sampling once this much time has been spent (and minSamples reached). */
  ms: number;
  /** At least this many samples, whatever the time. */
  minSamples: number;
  /** At most this many samples. */
  maxSamples?: number;
  /**
   * Untimed calls before sampling (JIT warm-up): for this long, and at least
   * one call. Default: a tenth of `ms`. Negative: none (for calls of seconds
   * whose code smaller marks have warmed already); each call is then one sample.
   */
  warmupMs?: number;
}

export interface TimedMark {
  /** Operations timed (samples x opsPerSample). */
  ops: number;
  samples: number;
  opsPerSample: number;
  totalMs: number;
  opsPerSec: number;
  /** Per operation, microseconds. */
  meanUs: number;
  medianUs: number;
  p50Us: number;
  p95Us: number;
  p99Us: number;
  minUs: number;
  maxUs: number;
}

/** Aim for samples of at least this long when an op is cheap. */
const MIN_SAMPLE_MS = 2;

/**
 * Times `fn` (one operation per call). Async functions are awaited; for
 * synchronous ones nothing but the call sits between the two clock reads.
 */
export async function time(fn: () => unknown, budget: TimingBudget): Promise<TimedMark> {
  return (await timeInterleaved([fn], budget))[0]!;
}

/**
 * Times several functions in alternation, one sample of each in turn, so
 * that whatever else the (shared) machine does meanwhile falls on all of
 * them alike: the way to measure a ratio between two variants. `budget.ms`
 * is per function.
 */
export async function timeInterleaved(fns: readonly (() => unknown)[], budget: TimingBudget): Promise<TimedMark[]> {
  const warmupMs = budget.warmupMs ?? budget.ms / 10;
  const opsPerSample: number[] = [];
  for (const fn of fns) {
    let probeMs = Number.POSITIVE_INFINITY;
    const warmStart = performance.now();
    if (warmupMs >= 0) {
      do {
        const t0 = performance.now();
        const r = fn();
        sink(r instanceof Promise ? await r : r);
        probeMs = Math.min(probeMs, performance.now() - t0);
      } while (performance.now() - warmStart < warmupMs);
    }
    opsPerSample.push(probeMs >= MIN_SAMPLE_MS ? 1 : Math.max(1, Math.min(10_000, Math.ceil(MIN_SAMPLE_MS / Math.max(probeMs, 1e-4)))));
  }
  const perOpMs: number[][] = fns.map(() => []);
  const totals = fns.map(() => 0);
  const started = performance.now();
  for (;;) {
    for (let i = 0; i < fns.length; i++) {
      const fn = fns[i]!;
      const k = opsPerSample[i]!;
      const t0 = performance.now();
      for (let j = 0; j < k; j++) {
        const r = fn();
        sink(r instanceof Promise ? await r : r);
      }
      const dt = performance.now() - t0;
      totals[i]! += dt;
      perOpMs[i]!.push(dt / k);
    }
    const n = perOpMs[0]!.length;
    if (budget.maxSamples !== undefined && n >= budget.maxSamples) break;
    if (n >= budget.minSamples && performance.now() - started >= budget.ms * fns.length) break;
  }
  return fns.map((_, i) => {
    const s = summarize(perOpMs[i]!);
    const ops = perOpMs[i]!.length * opsPerSample[i]!;
    return {
      ops,
      samples: perOpMs[i]!.length,
      opsPerSample: opsPerSample[i]!,
      totalMs: totals[i]!,
      opsPerSec: ops / (totals[i]! / 1000),
      meanUs: s.mean * 1000,
      medianUs: s.median * 1000,
      p50Us: s.p50 * 1000,
      p95Us: s.p95 * 1000,
      p99Us: s.p99 * 1000,
      minUs: s.min * 1000,
      maxUs: s.max * 1000,
    };
  });
}

/** Bytes as a short human string (binary units). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? Math.round(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}

/** A number with thousands separators and a sensible number of digits. */
/** Milliseconds for a table cell: three significant figures up to 100, whole above. */
export function formatMs(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function formatNumber(n: number, digits?: number): string {
  if (!Number.isFinite(n)) return '–';
  const d = digits ?? (Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : Math.abs(n) >= 1 ? 2 : 3);
  return n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: 0 });
}

/** Seconds as a human duration (µs .. years). */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '–';
  if (s < 1e-3) return `${formatNumber(s * 1e6)} µs`;
  if (s < 1) return `${formatNumber(s * 1e3)} ms`;
  if (s < 120) return `${formatNumber(s)} s`;
  if (s < 7200) return `${formatNumber(s / 60)} min`;
  if (s < 172_800) return `${formatNumber(s / 3600)} h`;
  if (s < 2 * 31_557_600) return `${formatNumber(s / 86_400)} days`;
  return `${formatNumber(s / 31_557_600)} years`;
}

/**
 * Time per item, given in µs, with its unit: ns below 1 µs (a hash of a
 * number takes tens of ns: "0.0 µs" said nothing), else µs with three
 * significant digits or a thousands separator.
 */
export function formatPerItem(us: number): string {
  if (!Number.isFinite(us)) return '–';
  if (us < 1) return `${(us * 1000).toFixed(us * 1000 >= 100 ? 0 : us * 1000 >= 10 ? 1 : 2)} ns`;
  return `${us >= 1000 ? Math.round(us).toLocaleString('en-US') : us.toFixed(us >= 100 ? 0 : us >= 10 ? 1 : 2)} µs`;
}
