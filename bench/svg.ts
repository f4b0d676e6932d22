/**
 * Minimal SVG charts for the writeup: grouped bar charts and line charts,
 * linear or log axes, with a title, axis labels (units included by the
 * caller), a legend and an optional footnote. No dependency, no script,
 * plain text that diffs well.
 */

const WIDTH = 760;
const HEIGHT = 440;
const MARGIN = { top: 64, right: 24, bottom: 84, left: 84 };
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#7f7f7f'];
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/** Short tick label: 1.2k, 3M, 0.5, 1e-3 style. */
export function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e12) return `${trim(v / 1e12)}T`;
  if (a >= 1e9) return `${trim(v / 1e9)}G`;
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e3) return `${trim(v / 1e3)}k`;
  if (a >= 1) return trim(v);
  if (a >= 1e-3) return trim(v);
  return v.toExponential(0);
}

function trim(v: number): string {
  return Number(v.toPrecision(3)).toString();
}

interface Scale {
  map(v: number): number;
  ticks: number[];
}

function linearScale(min: number, max: number, from: number, to: number): Scale {
  const lo = Math.min(0, min);
  let hi = max > lo ? max : lo + 1;
  const rawStep = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(rawStep));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= rawStep) ?? rawStep;
  hi = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { map: (v) => from + ((v - lo) / (hi - lo)) * (to - from), ticks };
}

function logScale(min: number, max: number, from: number, to: number): Scale {
  const lo = Math.floor(Math.log10(min > 0 ? min : 1));
  let hi = Math.ceil(Math.log10(max > 0 ? max : 10));
  if (hi <= lo) hi = lo + 1;
  const ticks: number[] = [];
  for (let e = lo; e <= hi; e++) ticks.push(10 ** e);
  return { map: (v) => from + ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * (to - from), ticks };
}

function frame(title: string, subtitle: string | undefined, body: string[], note: string | undefined, height = HEIGHT): string {
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" role="img" aria-label="${escapeXml(title)}">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="26" text-anchor="middle" font-size="${Math.min(17, Math.floor((1.8 * WIDTH) / Math.max(1, title.length)))}" font-weight="600" ${FONT}>${escapeXml(title)}</text>`,
  ];
  if (subtitle) out.push(`<text x="${WIDTH / 2}" y="46" text-anchor="middle" font-size="12" fill="#555" ${FONT}>${escapeXml(subtitle)}</text>`);
  out.push(...body);
  if (note) out.push(`<text x="12" y="${height - 8}" font-size="10.5" fill="#666" ${FONT}>${escapeXml(note)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function axes(x0: number, y0: number, x1: number, y1: number, xLabel: string, yLabel: string, height = HEIGHT): string[] {
  return [
    `<line x1="${x0}" y1="${y0}" x2="${x1}" y2="${y0}" stroke="#333"/>`,
    `<line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y1}" stroke="#333"/>`,
    `<text x="${(x0 + x1) / 2}" y="${height - 30}" text-anchor="middle" font-size="13" ${FONT}>${escapeXml(xLabel)}</text>`,
    `<text x="18" y="${(y0 + y1) / 2}" text-anchor="middle" font-size="13" transform="rotate(-90 18 ${(y0 + y1) / 2})" ${FONT}>${escapeXml(yLabel)}</text>`,
  ];
}

function yGrid(scale: Scale, x0: number, x1: number): string[] {
  return scale.ticks.flatMap((t) => {
    const y = fmt(scale.map(t));
    return [
      `<line x1="${x0}" y1="${y}" x2="${x1}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${x0 - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" font-size="11" ${FONT}>${tickLabel(t)}</text>`,
    ];
  });
}

/** Legend entries left to right, wrapping into rows within [x, xMax]; returns the elements and the rows used. */
function legend(names: { name: string; color: string; dashed?: boolean }[], x: number, xMax: number, y: number): { elements: string[]; rows: number } {
  const out: string[] = [];
  let cx = x;
  let row = 0;
  for (const n of names) {
    const w = 40 + n.name.length * 6.6;
    if (cx > x && cx + w > xMax) {
      cx = x;
      row++;
    }
    const cy = y + row * LEGEND_ROW;
    out.push(
      `<line x1="${cx}" y1="${cy}" x2="${cx + 18}" y2="${cy}" stroke="${n.color}" stroke-width="${n.dashed ? 3 : 6}"${n.dashed ? ' stroke-dasharray="4 3"' : ''}/>`,
      `<text x="${cx + 24}" y="${cy}" dominant-baseline="middle" font-size="12" ${FONT}>${escapeXml(n.name)}</text>`,
    );
    cx += w;
  }
  return { elements: out, rows: row + 1 };
}

const LEGEND_ROW = 18;

export interface BarChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  /** With the unit, e.g. 'lookups per second'. */
  yLabel: string;
  categories: string[];
  series: { name: string; values: (number | undefined)[] }[];
  log?: boolean;
  /** Slanted category labels, for many or long categories. */
  slantLabels?: boolean;
  note?: string;
}

/** Grouped bars: one group per category, one bar per series; values above the bars. */
export function barChart(spec: BarChartSpec): string {
  const x0 = MARGIN.left;
  const x1 = WIDTH - MARGIN.right;
  const groupW = (x1 - x0) / Math.max(1, spec.categories.length);
  // Slant category labels that would not fit under their group.
  const slant = spec.slantLabels ?? spec.categories.some((c) => c.length * 6.6 > groupW - 8);
  const height = HEIGHT + (slant ? 90 : 0);
  const y0 = height - MARGIN.bottom - (slant ? 90 : 0);
  const leg = legend(spec.series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length]! })), x0, x1, MARGIN.top - 4);
  const y1 = MARGIN.top + 12 + (leg.rows - 1) * LEGEND_ROW;
  const values = spec.series.flatMap((s) => s.values.filter((v): v is number => v !== undefined && Number.isFinite(v)));
  const positives = values.filter((v) => v > 0);
  const scale = spec.log
    ? logScale(Math.min(...positives, Infinity), Math.max(...positives, 1), y0, y1)
    : linearScale(0, Math.max(...values, 0), y0, y1);
  const body = [...yGrid(scale, x0, x1), ...axes(x0, y0, x1, y1, spec.xLabel, spec.yLabel, height)];
  const barW = Math.min(56, (groupW * 0.8) / Math.max(1, spec.series.length));
  spec.categories.forEach((cat, ci) => {
    // Only the series with a value here take a slot, centred in the group.
    const present = spec.series.map((s, si) => ({ s, si, v: s.values[ci] })).filter((e) => e.v !== undefined && Number.isFinite(e.v));
    const gx = x0 + ci * groupW + (groupW - barW * present.length) / 2;
    present.forEach(({ s, si, v: value }, k) => {
      const v = value!;
      const top = scale.map(spec.log ? Math.max(v, 1e-300) : v);
      const x = gx + k * barW;
      body.push(
        `<rect x="${fmt(x + 1)}" y="${fmt(top)}" width="${fmt(barW - 2)}" height="${fmt(Math.max(0, y0 - top))}" fill="${PALETTE[si % PALETTE.length]}"><title>${escapeXml(`${s.name}, ${cat}: ${tickLabel(v)}`)}</title></rect>`,
        `<text x="${fmt(x + barW / 2)}" y="${fmt(top - 4)}" text-anchor="middle" font-size="${Math.min(10, Math.max(7, barW / 3.4)).toFixed(1)}" ${FONT}>${tickLabel(v)}</text>`,
      );
    });
    const cx = fmt(x0 + ci * groupW + groupW / 2);
    body.push(
      slant
        ? `<text x="${cx}" y="${y0 + 12}" text-anchor="end" font-size="11" transform="rotate(-40 ${cx} ${y0 + 12})" ${FONT}>${escapeXml(cat)}</text>`
        : `<text x="${cx}" y="${y0 + 18}" text-anchor="middle" font-size="12" ${FONT}>${escapeXml(cat)}</text>`,
    );
  });
  body.push(...leg.elements);
  return frame(spec.title, spec.subtitle, body, spec.note, height);
}

export interface LineChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  series: { name: string; points: [number, number][]; dashed?: boolean }[];
  logX?: boolean;
  logY?: boolean;
  /** Tick labels for x (e.g. bucket bits); default: the scale's ticks. */
  xTicks?: number[];
  note?: string;
}

/** Lines with markers; dashed series for projections or models. */
export function lineChart(spec: LineChartSpec): string {
  const x0 = MARGIN.left;
  const x1 = WIDTH - MARGIN.right;
  const y0 = HEIGHT - MARGIN.bottom;
  const leg = legend(spec.series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length]!, dashed: s.dashed })), x0, x1, MARGIN.top - 4);
  const y1 = MARGIN.top + 12 + (leg.rows - 1) * LEGEND_ROW;
  const pts = spec.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xs = pts.map(([x]) => x);
  const ys = pts.map(([, y]) => y);
  const xScale = spec.logX
    ? logScale(Math.min(...xs.filter((x) => x > 0), Infinity), Math.max(...xs, 1), x0, x1)
    : xRange(Math.min(...xs, 0), Math.max(...xs, 1), x0, x1);
  const yScale = spec.logY
    ? logScale(Math.min(...ys.filter((y) => y > 0), Infinity), Math.max(...ys, 1), y0, y1)
    : linearScale(0, Math.max(...ys, 0), y0, y1);
  const body = [...yGrid(yScale, x0, x1), ...axes(x0, y0, x1, y1, spec.xLabel, spec.yLabel)];
  for (const t of spec.xTicks ?? xScale.ticks) {
    const x = fmt(xScale.map(t));
    body.push(
      `<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + 5}" stroke="#333"/>`,
      `<text x="${x}" y="${y0 + 18}" text-anchor="middle" font-size="11" ${FONT}>${tickLabel(t)}</text>`,
    );
  }
  spec.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!spec.logY || y > 0) && (!spec.logX || x > 0));
    if (p.length === 0) return;
    const d = p.map(([x, y], k) => `${k === 0 ? 'M' : 'L'}${fmt(xScale.map(x))},${fmt(yScale.map(y))}`).join(' ');
    body.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    for (const [x, y] of p) {
      body.push(
        `<circle cx="${fmt(xScale.map(x))}" cy="${fmt(yScale.map(y))}" r="3.5" fill="${s.dashed ? '#fff' : color}" stroke="${color}"><title>${escapeXml(`${s.name}: ${tickLabel(x)} → ${tickLabel(y)}`)}</title></circle>`,
      );
    }
  });
  body.push(...leg.elements);
  return frame(spec.title, spec.subtitle, body, spec.note);
}

function xRange(min: number, max: number, from: number, to: number): Scale {
  const lo = min;
  const hi = max > min ? max : min + 1;
  const s = linearScale(0, hi - lo, 0, 1);
  return { map: (v) => from + ((v - lo) / (hi - lo)) * (to - from), ticks: s.ticks.map((t) => t + lo).filter((t) => t <= hi) };
}
