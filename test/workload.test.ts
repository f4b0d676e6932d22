/**
 * The workload simulation, tiny, through the real pipeline: a synthetic
 * population, a real server child on simulated time (harness/child.ts's
 * clock), the real client library with per-user tokens and IPs, the data
 * folders the server persisted, and the operator's reconstruction through
 * the audit's readers. One server process serves the four runs in turn
 * (harness/fork.ts reuseServerProcesses: a second or so of process start
 * saved per run), each on a fresh data folder and its own clock, its
 * server stopped and its logs flushed before the folder is read. Asserts
 * what holds by construction, never a timing: plain and hashed give the
 * graph away, blinded with one bucket gives no edge, and with many buckets
 * a true edge still hides among several plan numbers.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { workloadChart, workloadMarkdown } from '../bench/workload.ts';
import { main as simulateMain } from '../bin/commands/simulate.ts';
import { reuseServerProcesses } from '../harness/fork.ts';
import { enumeratePlan } from '../workload/operator.ts';
import { DEFAULT_POPULATION, generatePopulation, planNumbers, type PopulationOptions } from '../workload/population.ts';
import { runWorkload, truthCsv, type WorkloadRun } from '../workload/run.ts';
import { DEFAULT_SCRIPT, generateScript, type ScriptOptions } from '../workload/script.ts';
import { parsePlan } from '../shared/numbering.ts';
import { isPcdError } from '../shared/errors.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';

const POPULATION: PopulationOptions = {
  ...DEFAULT_POPULATION,
  seed: 'workload-test',
  blocks: 2,
  blockDigits: 3,
  people: 120,
  registeredShare: 0.25,
  degreeMedian: 12,
  communitySize: 15,
};
const SCRIPT: ScriptOptions = { ...DEFAULT_SCRIPT, seed: 'workload-test', days: 2, conversationsPerDay: 3, reinstallsPerYear: 60 };

describe('workload population and script', () => {
  it('is deterministic in its seed, with valid numbers from the plan blocks', () => {
    const a = generatePopulation(POPULATION);
    const b = generatePopulation(POPULATION);
    expect(b.numbers).toEqual(a.numbers);
    expect(b.contacts).toEqual(a.contacts);
    expect(generatePopulation({ ...POPULATION, seed: 'other' }).numbers).not.toEqual(a.numbers);
    expect(a.users).toBe(30);
    expect(a.plan).toHaveLength(2);
    const plan = new Set(planNumbers(a.plan));
    expect(plan.size).toBe(2000);
    // The operator's enumeration of the plan spec is the same set.
    expect(new Set(enumeratePlan(parsePlan(a.planSpec)))).toEqual(plan);
    for (const n of a.numbers) {
      expect(plan.has(n)).toBe(true);
      expect(normalizeNumber(n)).toBe(n);
    }
    for (let u = 0; u < a.users; u++) expect(a.contacts[u]).not.toContain(u);
    expect(a.tie(3, 7)).toBe(a.tie(7, 3));
  });

  it('writes the truth for reviewers: one line per pair looked up, registered or not, first lookup, whether they talked', () => {
    const pop = generatePopulation(POPULATION);
    const s = generateScript(pop, SCRIPT);
    const lines = truthCsv(pop, s).trimEnd().split('\n');
    expect(lines[0]).toBe('requester,contact,registered,first_lookup,lookups,talked');
    expect(lines).toHaveLength(s.truth.lookedUp.size + 1);
    const users = new Set(pop.numbers.slice(0, pop.users));
    for (const line of lines.slice(1)) {
      const [requester, contact, registered, first, lookups, talked] = line.split(',');
      expect(users.has(requester as E164)).toBe(true);
      expect(registered).toBe(users.has(contact as E164) ? '1' : '0');
      expect(Date.parse(first!)).toBeGreaterThanOrEqual(SCRIPT.start);
      expect(Number(lookups)).toBeGreaterThanOrEqual(1);
      expect(['0', '1']).toContain(talked);
    }
    expect(lines.some((l) => l.endsWith(',0'))).toBe(true);
  });

  it('scripts lookups only of book entries, and the same script for the same seed', () => {
    const pop = generatePopulation(POPULATION);
    const s = generateScript(pop, SCRIPT);
    expect(generateScript(pop, SCRIPT).actions).toEqual(s.actions);
    expect(s.actions.length).toBeGreaterThan(0);
    for (const k of s.truth.lookedUp) expect(s.truth.addressBook.has(k)).toBe(true);
    for (const a of s.actions) {
      expect(a.t).toBeGreaterThanOrEqual(SCRIPT.start);
      expect(a.t).toBeLessThan(s.end);
    }
    expect(s.counts.lookups + s.counts.cacheHits).toBe(s.counts.conversations);
  });
});

describe('workload simulation against real servers, tiny', () => {
  let run: WorkloadRun;

  beforeAll(async () => {
    run = await reuseServerProcesses(() =>
      runWorkload({ population: POPULATION, script: SCRIPT, designs: ['plain', 'hashed', 'blinded'], bucketBits: [0, 8], usersPerIp: 1, orderDays: 1 }),
    );
  }, 180_000);

  const row = (label: string) => run.results.find((r) => r.label === label)!;

  it('runs every design without a failed lookup, on the simulated clock, with per-user IPs', () => {
    expect(run.results.map((r) => r.label)).toEqual(['plain', 'hashed', 'blinded b=0', 'blinded b=8']);
    const lookups = run.script.lookups + run.script.newContactLookups + run.script.syncedNumbers;
    for (const r of run.results) {
      expect(r.errors).toBe(0);
      expect(r.lookups).toBe(lookups);
      expect(r.edges).toBe(run.script.lookedUpEdges);
      // Every row carries simulated time, inside the window (bucket rows: the start of their minute).
      expect(r.remains.from).toBeGreaterThanOrEqual(SCRIPT.start - 60_000);
      expect(r.remains.until).toBeLessThan(SCRIPT.start + SCRIPT.days * 86_400_000);
      expect(r.remains.ips).toBe(r.remains.requesters);
      expect(r.bytesPerLookup).toBeGreaterThan(0);
    }
  });

  it('plain and hashed: the operator rebuilds the graph', () => {
    for (const label of ['plain', 'hashed']) {
      const r = row(label);
      expect(r.recall).toBeGreaterThanOrEqual(0.95);
      expect(r.precision).toBeGreaterThanOrEqual(0.95);
      expect(r.medianCandidates).toBe(1);
    }
    expect(row('plain').remains.lookups).toBe(run.script.lookups + run.script.newContactLookups + run.script.syncedNumbers);
    expect(row('hashed').remains.reversal?.reversed).toBe(row('hashed').remains.reversal?.distinctHashes);
  });

  it('blinded with one bucket: no edge is named, every candidate set is the whole plan', () => {
    const r = row('blinded b=0');
    expect(r.recovered).toBe(0);
    expect(r.claimed).toBe(0);
    expect(r.recall).toBe(0);
    expect(r.medianCandidates).toBe(run.population.planSize - 1);
    // What remains: who asked, when, how many elements.
    expect(r.remains.lookups).toBeGreaterThan(0);
    expect(r.remains.requesters).toBeGreaterThan(2);
  });

  it('blinded with 256 buckets over a plan of 2,000 numbers: a true edge hides among several', () => {
    const r = row('blinded b=8');
    expect(r.medianCandidates).toBeGreaterThan(1);
    expect(r.attacks.map((a) => a.name)).toEqual(['score ≥ 0.99', 'score ≥ 0.9', 'score ≥ 0.5', 'conservative', 'bucket', 'mutual', 'registered']);
    expect(r.remains.bucketRows).toBeGreaterThan(0);
    // The scored attack scores candidates: a curve, whose claims only grow as the score falls, and a model prediction per rule.
    expect(r.curve.length).toBeGreaterThan(0);
    for (let i = 1; i < r.curve.length; i++) expect(r.curve[i]!.claimed).toBeGreaterThan(r.curve[i - 1]!.claimed);
    expect(r.model?.map((m) => m.signal)).toEqual(['bucket', 'registered', 'mutual']);
    const levels = r.attacks.filter((a) => a.name.startsWith('score'));
    for (let i = 1; i < levels.length; i++) expect(levels[i]!.claimed).toBeGreaterThanOrEqual(levels[i - 1]!.claimed);
  });

  it('scores both recalls, the reverse direction and the conversation share against the script', () => {
    const plain = row('plain');
    expect(plain.registeredEdges).toBeGreaterThan(0);
    expect(plain.registeredEdges).toBeLessThan(plain.edges);
    expect(plain.recallRegistered).toBe(1);
    expect(plain.reverse.meanRecall).toBe(1);
    expect(plain.reverse.precision).toBe(1);
    expect(plain.reverse.allNamed).toBe(plain.reverse.targets);
    const s = run.script.conversationShare;
    expect(s.rows).toBe(run.script.lookups + run.script.newContactLookups + run.script.syncedNumbers);
    // A lookup made because a conversation started is followed by one; a sync's mostly are not.
    expect(s.byKind.conversation[1]).toBe(s.byKind.conversation[0]);
    expect(s.byKind.sync[1]).toBeLessThan(s.byKind.sync[0]);
    expect(s.talkedEdges).toBeLessThan(s.edges);
    expect(plain.conversationPrecision).toBeCloseTo(s.talkedEdges / s.edges, 10);
    expect(row('blinded b=0').reverse.anyNamed).toBe(0);
  });

  it('daisy-chained orders: each order reads its own window, the chain all of them', () => {
    const plain = row('plain').orders!;
    expect(plain.map((o) => o.name)).toEqual(['order 1 (served day 1)', 'order 2 (served day 2)', 'chain of 2 orders, read together']);
    for (const o of plain.slice(0, 2)) {
      expect(o.recallWindow).toBe(1);
      expect(o.recallAll).toBeLessThan(1);
    }
    expect(plain[2]!.recallAll).toBe(1);
    expect(plain[0]!.claimed + plain[1]!.claimed).toBeGreaterThanOrEqual(plain[2]!.claimed);
  });

  it('renders Markdown tables and a Vega-Lite spec without secrets', () => {
    const md = workloadMarkdown(run.results);
    expect(md).toMatch(/^\| design \| bucket bits \|/m);
    expect(md).toContain('| blinded | 8 |');
    const { file, spec } = workloadChart(run.results);
    expect(file).toBe('workload.svg');
    const s = spec as { $schema: string; hconcat: unknown[]; data: { values: unknown[] } };
    expect(s.$schema).toMatch(/vega-lite/);
    expect(s.hconcat).toHaveLength(4);
    expect(md).toContain('### Daisy-chained orders');
    expect(md).toContain('### Density: each signal measured beside the model');
    expect(md).toContain('### Real sizes, from the model');
    expect(s.data.values.length).toBeGreaterThanOrEqual(run.results.length);
    const json = JSON.stringify({ run, md, spec });
    expect(json).not.toMatch(/token/i);
    expect(json).not.toMatch(/NaN|Infinity/);
  });
});

describe('pcd simulate', () => {
  it('refuses bad flags with one PcdError', async () => {
    await expect(simulateMain(['--days', 'soon'])).rejects.toSatisfy((e: unknown) => isPcdError(e) && /--days 'soon' is not a number/.test(e.message));
    await expect(simulateMain(['--designs', 'plain,nope'])).rejects.toSatisfy((e: unknown) => isPcdError(e) && /unknown design 'nope'/.test(e.message));
    await expect(simulateMain(['--people', '100', '--blocks', '1', '--block-digits', '2'])).rejects.toSatisfy((e: unknown) => isPcdError(e) && /do not fit/.test(e.message));
  });
});
