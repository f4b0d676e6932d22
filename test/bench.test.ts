/**
 * Smoke test of the benchmark: every section at its tiniest size (a real
 * server in a child process, real clients, real builds) into a temporary
 * folder, then the files a writeup uses are checked for shape: results.json
 * parses with the expected keys, results.md holds tables, every chart is a
 * well-formed SVG with a title. Never a timing: the machines are shared.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHART_FILES, mergeEarlier, parseSections, readResults, runBench, writeResults } from '../bench/run.ts';
import { RESULTS_SCHEMA, SECTIONS, type BenchResults } from '../bench/results.ts';
import { barChart, lineChart } from '../bench/svg.ts';
import { table } from '../bench/report.ts';

/** Tags open and close in order (self-closing ones aside), one root <svg>. */
function expectWellFormedSvg(text: string): void {
  expect(text.startsWith('<svg')).toBe(true);
  expect(text.trimEnd().endsWith('</svg>')).toBe(true);
  const stack: string[] = [];
  for (const m of text.matchAll(/<(\/?)([a-zA-Z][\w:-]*)([^>]*?)(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    if (selfClosing) continue;
    if (closing) expect(stack.pop()).toBe(name);
    else stack.push(name!);
  }
  expect(stack).toEqual([]);
  expect(text).toMatch(/<title>[^<]+<\/title>/);
  expect(text).not.toMatch(/NaN|undefined|Infinity/);
}

const MD_TABLE = /^\|.*\|\n\|(?:\s*:?-{3,}:?\s*\|)+$/m;

describe('benchmark, tiny profile', () => {
  let out: string;
  let results: BenchResults;

  beforeAll(async () => {
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-bench-test-'));
    results = await runBench({ profile: 'tiny', out, log: () => {} });
    writeResults(results, out);
  }, 180_000);

  afterAll(() => {
    fs.rmSync(out, { recursive: true, force: true });
  });

  it('runs every section without error', () => {
    expect(results.sections.map((s) => s.section)).toEqual([...SECTIONS]);
    expect(results.sections.filter((s) => s.error)).toEqual([]);
    for (const section of SECTIONS) expect(results.marks.some((m) => m.section === section)).toBe(true);
  });

  it('writes results.json with the machine, versions, parameters, marks, ratios and projections', () => {
    const json = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) as BenchResults;
    expect(json.schema).toBe(RESULTS_SCHEMA);
    expect(Object.keys(json)).toEqual(
      expect.arrayContaining(['date', 'profile', 'machine', 'versions', 'tree', 'parameters', 'setup', 'sections', 'marks', 'ratios', 'projections', 'notes']),
    );
    expect(json.machine).toMatchObject({ cpuModel: expect.any(String), cores: expect.any(Number), memoryBytes: expect.any(Number), os: expect.any(String), node: process.version });
    expect(json.versions['@noble/curves']).toMatch(/^\d+\.\d+\.\d+/);
    expect(json.versions['@noble/hashes']).toMatch(/^\d+\.\d+\.\d+/);
    expect(json.parameters).toMatchObject({ profile: 'tiny' });
    expect(Number.isNaN(Date.parse(json.date))).toBe(false);

    for (const m of json.marks) expect(typeof m.name).toBe('string');
    const crypto = json.marks.filter((m) => m.section === 'crypto');
    expect(crypto.map((m) => m.name)).toEqual(
      expect.arrayContaining([
        'client blind (voprf)',
        'server Evaluate: directory build (voprf)',
        'server BlindEvaluate (voprf, batch 1)',
        'server BlindEvaluate (oprf, batch 1)',
        'client finalize (voprf, batch 1, proof verified)',
        'hashed: SHA-256 of a number',
        'normalizeNumber (E.164 input)',
      ]),
    );
    for (const m of crypto) expect(m).toMatchObject({ ops: expect.any(Number), meanUs: expect.any(Number), medianUs: expect.any(Number), p50Us: expect.any(Number), p99Us: expect.any(Number) });

    const http = json.marks.filter((m) => m.section === 'http');
    expect(new Set(http.map((m) => m.design))).toEqual(new Set(['plain', 'hashed', 'blinded']));
    for (const m of http) {
      expect(m.errors).toBe(0);
      expect(m.requests).toBeGreaterThan(0);
      expect(m.latencyMs).toMatchObject({ p50: expect.any(Number), p99: expect.any(Number), mean: expect.any(Number) });
    }

    const bw = json.marks.filter((m) => m.section === 'bandwidth');
    expect(bw.some((m) => m.design === 'blinded' && m.bucketBits === 0)).toBe(true);
    for (const m of bw) {
      expect(m.wireBytesPerLookup).toBeGreaterThan(0);
      expect(m.wireBytesSent + m.wireBytesReceived).toBeGreaterThanOrEqual(m.bodyBytesSent + m.bodyBytesReceived);
    }

    const build = json.marks.filter((m) => m.section === 'build');
    expect(new Set(build.map((m) => m.design))).toEqual(new Set(['directory', 'plain', 'hashed', 'blinded']));
    for (const m of build) expect(m.directoryIndexBytes).toBeGreaterThan(0);

    const reverse = json.marks.filter((m) => m.section === 'reverse');
    for (const m of reverse) expect(m.recovered).toBe(m.targetsInRange);

    expect(json.ratios.length).toBeGreaterThan(0);
    expect(json.projections.length).toBeGreaterThan(0);
    for (const p of json.projections) expect(p.projection).toBe(true);
  });

  it('writes results.md with the machine named and Markdown tables', () => {
    const md = fs.readFileSync(path.join(out, 'results.md'), 'utf8');
    expect(md).toMatch(/^# pcd benchmark results/);
    expect(md).toContain(results.machine.cpuModel);
    expect(md).toMatch(MD_TABLE);
    for (const heading of ['## Ratios', '## Crypto per operation', '## HTTP lookups', '## Bytes on the wire', '## Directory build', '## Reversing a hashed log']) {
      expect(md).toContain(heading);
    }
    expect(md).toContain('projection, not a measurement');
  });

  it('writes every chart as a well-formed SVG with a title and axis labels', () => {
    for (const name of CHART_FILES) {
      const svg = fs.readFileSync(path.join(out, name), 'utf8');
      expectWellFormedSvg(svg);
      expect(svg).toMatch(/rotate\(-90/); // the y-axis label
    }
  });

  it('carries sections over from an earlier results.json when only some are re-run', () => {
    const earlier = readResults(path.join(out, 'results.json'))!;
    const partial: BenchResults = { ...earlier, date: new Date().toISOString(), marks: earlier.marks.filter((m) => m.section === 'reverse'), sections: earlier.sections.filter((s) => s.section === 'reverse'), projections: earlier.projections.filter((p) => p.section === 'reverse') };
    const merged = mergeEarlier(partial, earlier, ['reverse']);
    expect(merged.sections.map((s) => s.section)).toEqual([...SECTIONS]);
    expect(merged.sections.filter((s) => s.carriedOverFrom).map((s) => s.section)).toEqual(SECTIONS.filter((s) => s !== 'reverse'));
    expect(merged.marks.length).toBe(earlier.marks.length);
  });
});

describe('benchmark report pieces', () => {
  it('draws charts from hand-made data, log and linear', () => {
    expectWellFormedSvg(barChart({ title: 'a & b', xLabel: 'x', yLabel: 'y (units)', categories: ['one', 'two'], series: [{ name: 's', values: [1, undefined] }], log: true }));
    expectWellFormedSvg(lineChart({ title: 't', xLabel: 'x', yLabel: 'y', series: [{ name: 'l', points: [[0, 1], [4, 10]] }, { name: 'm', points: [[0, 2]], dashed: true }] }));
  });

  it('renders a Markdown table', () => {
    expect(table(['a', 'b'], [[1, 'x|y']])).toMatch(MD_TABLE);
    expect(table(['a', 'b'], [[1, 'x|y']])).toContain('x\\|y');
  });

  it('refuses unknown sections', () => {
    expect(parseSections('crypto, http')).toEqual(['crypto', 'http']);
    expect(() => parseSections('crypto,nope')).toThrow(/unknown section 'nope'/);
  });
});
