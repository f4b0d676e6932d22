/**
 * Rendering shared by the audit's designs (audit/designs/) and the scan
 * (audit/scan/): aligned tables for humans, CSV records, times and counts.
 * Each design renders its own result with these (its `table` and `csv`);
 * `json` is the result itself.
 */

export const AUDIT_FORMATS = ['table', 'csv', 'json'] as const;
export type AuditFormat = (typeof AUDIT_FORMATS)[number];

/** ISO 8601 in UTC; '' for no time. */
export function isoTime(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '' : new Date(ms).toISOString();
}

/** Aligned columns for humans. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** One CSV record (RFC 4180 quoting). */
export function csvRecord(values: readonly (string | number | boolean | null | undefined)[]): string {
  return values
    .map((v) => {
      const s = v === null || v === undefined ? '' : String(v);
      return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
    })
    .join(',');
}

/** A result's range in words: ISO times, open ends as 'the beginning' and 'now'. */
export function rangeText(r: { since: number | null; until: number | null }): string {
  return `${r.since === null ? 'the beginning' : isoTime(r.since)} .. ${r.until === null ? 'now' : isoTime(r.until)}`;
}

/** A count for humans: grouped digits, or e-notation from a million. */
export function fmtCount(n: number): string {
  return n >= 1e6 ? n.toExponential(2).replace('e+', 'e') : n.toLocaleString('en-US', { maximumFractionDigits: 1 });
}

/** The warnings, each on a `warning:` line of its own after the output; nothing when there are none. */
export function warningsText(w: readonly string[]): string {
  return w.length ? '\n' + w.map((s) => `warning: ${s}`).join('\n') : '';
}

/** The targets of a result, or what no target means. */
export function targetsText(t: readonly string[]): string {
  return t.length ? t.join(', ') : 'every number in the log';
}
