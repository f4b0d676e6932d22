/**
 * Charts as Vega-Lite specs, rendered to SVG in Node (vega + vega-lite, no
 * canvas, no browser, nothing fetched: every spec carries its data inline).
 *
 * Each chart is written twice, side by side: `<name>.vl.json`, the spec a
 * researcher restyles (colours, sizes, fonts, scales) and re-renders with
 * `npx vl2svg <name>.vl.json > <name>.svg` or any Vega-Lite editor, and
 * `<name>.svg`, the rendering the writeup embeds.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export type ChartSpec = TopLevelSpec;

/**
 * Text widths for layout. Without a canvas vega guesses 0.8 em per
 * character, twice too wide for proportional fonts, which leaves wide
 * empty margins and far-off axis titles; this uses Helvetica's advance
 * widths (the charts' first font; Arial has the same metrics), as
 * vl-convert does with its own fonts, widened by 15 % so that text still
 * fits where the SVG falls back to a wider sans-serif (DejaVu Sans). Per
 * 1000 em, characters 32 to 126.
 */
const FALLBACK_ALLOWANCE = 1.15;
const HELVETICA = [
  278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
  1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
  333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
];

export function textWidth(text: string, fontSize: number, bold = false): number {
  let em = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    em += c >= 32 && c <= 126 ? HELVETICA[c - 32]! : ch === '…' ? 1000 : 556;
  }
  return (em / 1000) * fontSize * (bold ? 1.15 : 1) * FALLBACK_ALLOWANCE;
}

interface TextItem {
  text?: unknown;
  fontSize?: number;
  fontWeight?: string | number;
}
(vega as unknown as { textMetrics: { width: (item: TextItem, text?: unknown) => number } }).textMetrics.width = (item, text) => {
  const line = String(text ?? (Array.isArray(item.text) ? item.text.join(' ') : (item.text ?? ''))).trim();
  const size = item.fontSize != null ? +item.fontSize || 0 : 11;
  const weight = item.fontWeight;
  return textWidth(line, size, weight === 'bold' || (typeof weight === 'number' && weight >= 600) || (typeof weight === 'string' && Number(weight) >= 600));
};

export const VEGA_LITE_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

export interface RenderOptions {
  /** Called with every warning vega-lite or vega logs (default: printed to stderr). */
  onWarn?: (message: string) => void;
}

/** A vega logger that hands warnings to `onWarn` and throws on errors. */
function logger(onWarn: (message: string) => void): vega.LoggerInterface {
  const base = vega.logger(vega.Warn);
  const text = (args: readonly unknown[]) => args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
  const self: vega.LoggerInterface = {
    level(...args: [number?]) {
      if (args.length === 0) return base.level();
      base.level(args[0]!);
      return self;
    },
    error(...args: readonly unknown[]) {
      throw new Error(`vega: ${text(args)}`);
    },
    warn(...args: readonly unknown[]) {
      onWarn(text(args));
      return self;
    },
    info() {
      return self;
    },
    debug() {
      return self;
    },
  } as vega.LoggerInterface;
  return self;
}

/** The SVG of a Vega-Lite spec (vega's headless renderer: no canvas, deterministic text). */
export async function renderSpec(spec: ChartSpec | object, options: RenderOptions = {}): Promise<string> {
  const onWarn = options.onWarn ?? ((m: string) => console.warn(`vega-lite: ${m}`));
  const log = logger(onWarn);
  const compiled = compile(spec as ChartSpec, { logger: log }).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logger: log });
  try {
    const svg = await view.toSVG();
    return svg.endsWith('\n') ? svg : `${svg}\n`;
  } finally {
    view.finalize();
  }
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/** `http-lookups.svg` or `http-lookups` -> `http-lookups` (the name both files share). */
export function chartBase(file: string): string {
  return file.replace(/\.(svg|vl\.json)$/, '');
}

/**
 * Writes `<name>.vl.json` (the spec, pretty-printed) and `<name>.svg` (its
 * rendering) into `outDir`; `file` is the chart's name with or without
 * `.svg`. Returns the two paths, spec first.
 */
export async function writeChart(outDir: string, file: string, spec: ChartSpec | object, options: RenderOptions = {}): Promise<[string, string]> {
  const base = path.join(outDir, chartBase(file));
  const svg = await renderSpec(spec, options);
  fs.mkdirSync(outDir, { recursive: true });
  writeAtomic(`${base}.vl.json`, JSON.stringify(spec, null, 2) + '\n');
  writeAtomic(`${base}.svg`, svg);
  return [`${base}.vl.json`, `${base}.svg`];
}

/** Removes both files of a chart (a stale chart of an earlier run would not match the tables). */
export function removeChart(outDir: string, file: string): void {
  const base = path.join(outDir, chartBase(file));
  fs.rmSync(`${base}.vl.json`, { force: true });
  fs.rmSync(`${base}.svg`, { force: true });
}
