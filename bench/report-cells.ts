/**
 * The cells every table of the report (bench/report.ts) is made of: the
 * Markdown table, number formats, latency percentiles, and the footnote
 * for values of one sample.
 */
import { formatNumber } from './stats.ts';

/** A table maker: the report's adds the run's label above each table. */
export type Table = (headers: string[], rows: (string | number)[][], align?: ('l' | 'r')[]) => string;

export function table(headers: string[], rows: (string | number)[][], align?: ('l' | 'r')[]): string {
  const esc = (c: string | number) => String(c).replace(/\|/g, '\\|');
  const a = align ?? headers.map((_, i) => (i === 0 ? 'l' : 'r'));
  return [
    `| ${headers.map(esc).join(' | ')} |`,
    `|${a.map((x) => (x === 'r' ? '---:' : ':---')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

export const n0 = (v: number) => formatNumber(v, 0);
export const ms = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) : '–');
export const us = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? (v >= 1000 ? formatNumber(v, 0) : v >= 10 ? v.toFixed(1) : v >= 0.1 ? v.toFixed(2) : v.toPrecision(2)) : '–');
export const pct = (v: number) => `${Math.round(v * 100)} %`;

/** Marks a value measured from one sample (one request, one call): no spread to speak of. */
export const ONE_SAMPLE = '†';
const ONE_SAMPLE_NOTE = `${ONE_SAMPLE} one sample only (one request, or one timed call): p50 is that sample, p95 and p99 are not shown; not a figure to cite.`;

/** p50, p95, p99 cells (ms); p95 and p99 blank for a single sample, p95 '–' in runs from before it was recorded. */
function percentiles(l: { p50: number; p95?: number; p99: number }, samples: number, scale = 1): string[] {
  if (samples < 2) return [`${ms(l.p50 * scale)} ${ONE_SAMPLE}`, '', ''];
  return [ms(l.p50 * scale), ms(l.p95 === undefined ? undefined : l.p95 * scale), ms(l.p99 * scale)];
}

/**
 * The one-sample footnote: a table's cells flag it when they show a value
 * of one sample, and it is written once, after that table.
 */
export class OneSampleNote {
  private pending = false;

  /** Flags the footnote when `samples` is fewer than two. */
  see(samples: number): void {
    if (samples < 2) this.pending = true;
  }

  /** p50, p95, p99 cells (ms) of `samples` samples, flagging the footnote for a single one. */
  percentiles(l: { p50: number; p95?: number; p99: number }, samples: number, scale = 1): string[] {
    this.see(samples);
    return percentiles(l, samples, scale);
  }

  /** The footnote's lines if a table flagged it since the last call, else none. */
  footnote(): string[] {
    if (!this.pending) return [];
    this.pending = false;
    return [`<sub>${ONE_SAMPLE_NOTE}</sub>`, ''];
  }
}
