/**
 * Numbers as the page shows them: bytes, durations, rates, times. Pure
 * functions (no DOM), in English with thin grouping.
 */

const int = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function formatInt(n: number): string {
  return int.format(n);
}

/** Exact bytes, and a rounded size next to them from 10 kB on: "1,234 B", "52,311 B (52.3 kB)". */
export function formatBytes(n: number): string {
  const exact = `${int.format(n)} B`;
  if (n < 10_000) return exact;
  const units = ['kB', 'MB', 'GB'];
  let v = n / 1000;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${exact} (${v.toFixed(v < 100 ? 1 : 0)} ${units[u]})`;
}

/** A duration in ms, in the unit a person reads best: "0.8 ms", "420 ms", "3.2 s", "18 min", "5.6 h", "41 days", "3.1 years". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return 'unknown';
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const min = s / 60;
  if (min < 120) return `${Math.round(min)} min`;
  const hours = min / 60;
  if (hours < 48) return `${hours.toFixed(hours < 10 ? 1 : 0)} h`;
  const days = hours / 24;
  if (days < 730) return `${Math.round(days)} days`;
  return `${(days / 365.25).toFixed(1)} years`;
}

/** A rate per second with an SI prefix, three significant digits at most: "2.1 M hashes/s", "621 k hashes/s". */
export function formatRate(perSecond: number, what: string): string {
  const [v, p] = perSecond >= 1e9 ? [perSecond / 1e9, 'G '] : perSecond >= 1e6 ? [perSecond / 1e6, 'M '] : perSecond >= 1e3 ? [perSecond / 1e3, 'k '] : [perSecond, ''];
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${p}${what}/s`;
}

const SUPERSCRIPT = '⁰¹²³⁴⁵⁶⁷⁸⁹';

/** 10^n written as a power when it is one: "10⁶"; other counts grouped. */
export function formatCount(n: number): string {
  const e = Math.log10(n);
  return n >= 1e4 && Number.isInteger(e) ? `10${[...String(e)].map((d) => SUPERSCRIPT[Number(d)]).join('')}` : int.format(n);
}

/** Local wall-clock time with milliseconds: "14:03:07.042". */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  const two = (x: number) => String(x).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** Local time of a minute window's start: "14:03". */
export function formatMinute(ms: number): string {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

const DAY_MS = 86_400_000;

/**
 * A counts table's window from its start: a day (the server's days are UTC, as its windows are floor(ts / window))
 * as its date, "2026-11-01 (UTC)"; a shorter one as local times, "14:03–14:04".
 */
export function formatWindow(start: number, windowMs: number): string {
  if (windowMs >= DAY_MS && windowMs % DAY_MS === 0) {
    const day = new Date(start).toISOString().slice(0, 10);
    return windowMs === DAY_MS ? `${day} (UTC)` : `${day} + ${windowMs / DAY_MS} days (UTC)`;
  }
  return `${formatMinute(start)}–${formatMinute(start + windowMs)}`;
}

/** A counts table's window as a unit: "minute", "day", "10 s". */
export function windowName(windowMs: number): string {
  if (windowMs === DAY_MS) return 'day';
  if (windowMs === 3_600_000) return 'hour';
  if (windowMs === 60_000) return 'minute';
  return formatDuration(windowMs);
}

/** "1 request", "3 requests". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${int.format(n)} ${n === 1 ? one : many}`;
}
