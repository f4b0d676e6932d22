/**
 * Smoke test of the benchmark: every section at its tiniest size (a real
 * server in a child process, real clients, real builds, both crypto
 * backends, a flood beside a light requester, a kill -9 and a restart) into
 * a temporary folder, then the files a writeup uses are checked for shape:
 * results.json parses with the expected keys, marks and ratios (units
 * present), results.md holds tables, every chart is a well-formed SVG with a
 * title. Never a timing: the machines are shared.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHART_FILES, mergeEarlier, parseSections, readResults, runBench, writeResults } from '../bench/run.ts';
import { RESULTS_SCHEMA, SECTIONS, type BenchResults, type CryptoMark, type FairnessMark, type HttpMark, type ScaleMark } from '../bench/results.ts';
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
  }, 300_000);

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
    expect(json.versions['libsodium-wrappers-sumo']).toMatch(/^\d+\.\d+\.\d+/);
    expect(json.parameters).toMatchObject({ profile: 'tiny' });
    expect(Number.isNaN(Date.parse(json.date))).toBe(false);

    for (const m of json.marks) expect(typeof m.name).toBe('string');
    const crypto = json.marks.filter((m): m is CryptoMark => m.section === 'crypto');
    expect(crypto.map((m) => m.name)).toEqual(
      expect.arrayContaining([
        ...['noble', 'sodium'].flatMap((b) => [
          `client blind (voprf) [${b}]`,
          `server Evaluate: directory build (voprf) [${b}]`,
          `server BlindEvaluate (voprf, batch 1) [${b}]`,
          `server BlindEvaluate (oprf, batch 1) [${b}]`,
          `server BlindEvaluate (voprf, batch 4) [${b}]`,
          `server evaluateChunk x2 + proveComposite (voprf, batch 4) [${b}]`,
          `client finalize (voprf, batch 4, proof verified) [${b}]`,
        ]),
        'hashed: SHA-256 of a number',
        'normalizeNumber (E.164 input)',
      ]),
    );
    for (const m of crypto) {
      expect(m).toMatchObject({ ops: expect.any(Number), meanUs: expect.any(Number), medianUs: expect.any(Number), p50Us: expect.any(Number), p99Us: expect.any(Number) });
      expect(['noble', 'sodium', 'psi.js', 'any']).toContain(m.backend);
      expect(m.usPerItem).toBeGreaterThan(0);
      expect(['number', 'element', 'item']).toContain(m.op);
    }
    const ratio = (name: string) => json.ratios.find((r) => r.name === name);
    for (const op of ['server BlindEvaluate (voprf, batch 4)', 'server BlindEvaluate (oprf, batch 4)', 'client blind (voprf)', 'client finalize (voprf, batch 4, proof verified)', 'server Evaluate: directory build (voprf)']) {
      expect(ratio(`sodium / noble speed: ${op}`)?.value).toBeGreaterThan(0);
    }
    // The peer: measured when psi.js can be loaded (bench/psi.ts), else an external figure labelled as not measured, with why.
    const psi = crypto.filter((m) => m.backend === 'psi.js');
    if (psi.length > 0) {
      expect(psi.map((m) => m.name).sort()).toEqual(['psi.js client createRequest (batch 4)', 'psi.js server processRequest (batch 4)']);
      expect(ratio('sodium server BlindEvaluate (voprf) / psi.js processRequest, items per second (batch 4)')?.value).toBeGreaterThan(0);
    } else {
      expect(json.references).toEqual([expect.objectContaining({ measured: false, low: 1000, high: 1600, unit: 'items/s', why: expect.any(String) })]);
      expect(json.ratios.some((r) => r.name.startsWith('sodium server BlindEvaluate (voprf, batch 4) / psi.js') && r.name.includes('NOT MEASURED'))).toBe(true);
    }

    const http = json.marks.filter((m): m is HttpMark => m.section === 'http');
    const byGroup = (g: HttpMark['group']) => http.filter((m) => m.group === g);
    expect(new Set(byGroup('designs').map((m) => m.design))).toEqual(new Set(['plain', 'hashed', 'blinded']));
    expect(new Set(byGroup('backends').map((m) => m.backend))).toEqual(new Set(['noble', 'sodium']));
    expect(new Set(byGroup('threads').map((m) => m.evalThreads))).toEqual(new Set([1, 2]));
    for (const m of [...byGroup('backends'), ...byGroup('threads')]) expect(m).toMatchObject({ design: 'blinded', numbersPerRequest: 100 });
    for (const m of http) {
      expect(m.errors).toBe(0);
      expect(m.requests).toBeGreaterThan(0);
      expect(m.latencyMs).toMatchObject({ p50: expect.any(Number), p99: expect.any(Number), mean: expect.any(Number) });
    }
    for (const name of [
      'HTTP blinded sync-100: sodium / noble elements per second',
      'HTTP blinded sync-100 (sodium): 2 / 1 evaluator threads, elements per second',
      'HTTP single (on-demand): blinded sodium / plain p99 latency',
      'HTTP single: plain / blinded lookups per second',
    ]) {
      expect(ratio(name)?.value).toBeGreaterThan(0);
    }

    const fairness = json.marks.filter((m): m is FairnessMark => m.section === 'fairness');
    expect(fairness.map((m) => m.phase)).toEqual(['idle', 'flood']);
    for (const m of fairness) {
      expect(m.light.sent).toBeGreaterThan(0);
      expect(m.light.ok + m.light.rejected503).toBeLessThanOrEqual(m.light.sent);
      expect(m.light.latencyMs).toMatchObject({ p99: expect.any(Number), max: expect.any(Number) });
    }
    const flood = fairness.find((m) => m.phase === 'flood')!;
    expect(flood.flooder).toMatchObject({ elementsPerRequest: 4096, ok: expect.any(Number), rejected503: expect.any(Number), elementsPerSec: expect.any(Number) });
    expect(ratio('light requester under a flood / idle: p99 latency')?.value).toBeGreaterThan(0);

    const scale = json.marks.filter((m): m is ScaleMark => m.section === 'scale');
    expect(scale.map((m) => m.numbers)).toEqual([300]);
    for (const m of scale) {
      expect(m.blindedServingSeconds).toBeGreaterThanOrEqual(m.listeningSeconds);
      expect(m.rssBytes).toBeGreaterThan(0);
      // Correctness, not timing: the number registered just before kill -9 answers after the restart.
      expect(m.restart).toMatchObject({ answersMessages: true, capabilities: expect.arrayContaining(['messages']) });
      expect(m.targets.map((t) => t.target)).toEqual(expect.arrayContaining([expect.stringMatching(/^restart after kill -9/), expect.stringMatching(/registered just before kill -9/)]));
      for (const t of m.targets) expect(typeof t.met).toBe('boolean');
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
    for (const heading of [
      '## Ratios',
      '## Crypto per operation, backends side by side',
      '### The peer: OpenMined psi.js',
      '## HTTP lookups',
      '### Blinded evaluate: backend and evaluator threads',
      '## Fairness',
      '## Bytes on the wire',
      '## Directory build',
      '## Scale',
      '## Reversing a hashed log',
    ]) {
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
