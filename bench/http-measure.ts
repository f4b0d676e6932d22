/**
 * How bench/http.ts measures: runs of prepared requests against a server
 * child, several runs taking turns in slices, each slice's server CPU read
 * around it, and each run's slices added up into one HttpMark.
 *
 * A run whose server takes Privacy Pass tokens gets one token per request,
 * minted between parts of a slice (off the clock) from a supply per server
 * and size class.
 */
import { runLoad, type LoadRequest, type LoadResult } from './loadgen.ts';
import type { HttpGroup, HttpMark, HttpShape } from './results.ts';
import type { DesignName } from '../shared/messages.ts';
import type { Target } from './http-servers.ts';
import { TokenSupply } from './tokens.ts';
import { summarize } from './stats.ts';

/** One measured phase: its concurrency and how long, or how many requests, it runs. */
export interface HttpPhaseConfig {
  concurrency: number;
  durationMs: number;
  minRequests: number;
  maxRequests: number;
}

/** One configuration under measurement: prepared requests of one design and shape sent to one server. */
export interface Run {
  target: Target;
  group: HttpGroup;
  design: DesignName;
  shape: HttpShape;
  phase: HttpMark['phase'];
  endpoint: string;
  numbersPerRequest: number;
  requests: LoadRequest[];
  headers: Record<string, string>;
  p: HttpPhaseConfig;
  warmup: boolean;
  /** Blinded evaluate: elements sent per request, and with tokens the supply each request takes its own from. */
  elementsPerRequest?: number;
  tokens?: TokenSupply;
  /** Requests per ms seen so far (how many tokens the next slice needs). */
  rate?: number;
  /** Next prepared request to send (token runs build their requests slice by slice). */
  cursor?: number;
}

/** The bounds of one slice of load. */
type SliceBounds = Pick<HttpPhaseConfig, 'concurrency' | 'durationMs' | 'minRequests' | 'maxRequests'>;

interface Tally extends LoadResult {
  cpuMs: number;
}

const emptyTally = (): Tally => ({ requests: 0, errors: 0, statuses: {}, durationMs: 0, latenciesMs: [], requestBodyBytes: 0, replyBodyBytes: 0, retryAfterSeconds: [], cpuMs: 0 });

function addTo(t: Tally, r: LoadResult, cpuMs: number): void {
  t.cpuMs += cpuMs;
  t.requests += r.requests;
  t.errors += r.errors;
  for (const [k, v] of Object.entries(r.statuses)) t.statuses[k] = (t.statuses[k] ?? 0) + v;
  t.durationMs += r.durationMs;
  t.latenciesMs.push(...r.latenciesMs);
  t.requestBodyBytes += r.requestBodyBytes;
  t.replyBodyBytes += r.replyBodyBytes;
}

/** Tokens per server and class, minted as the phases spend them. */
export class TokenSupplies {
  private readonly supplies = new Map<string, TokenSupply>();

  supplyFor(target: Target, sizeClass: number): TokenSupply {
    const key = `${target.key}|${sizeClass}`;
    let s = this.supplies.get(key);
    if (!s) this.supplies.set(key, (s = new TokenSupply(target.minter!, sizeClass)));
    return s;
  }

  /** Tokens minted so far and the seconds it took. */
  minted(): { n: number; s: number } {
    return [...this.supplies.values()].reduce((a, s) => ({ n: a.n + s.minted, s: a.s + s.mintSeconds }), { n: 0, s: 0 });
  }
}

/** The marks of a run's measurements, and a note for each that had failed requests. */
export class HttpMeasurements {
  readonly marks: HttpMark[] = [];
  readonly errorNotes: string[] = [];

  constructor(
    private readonly warmupMs: number,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Runs several configurations (designs, or servers) in alternating
   * slices, `rounds` slices each, so that background load on the shared
   * machine falls on every one alike; each configuration's slices add up.
   */
  async measure(runs: Run[], rounds: number): Promise<void> {
    const tallies: Tally[] = runs.map(emptyTally);
    for (const run of runs) {
      if (run.warmup && this.warmupMs > 0) {
        const t = await loadSlice(run, { concurrency: 1, durationMs: this.warmupMs, minRequests: 1, maxRequests: 1_000_000 });
        if (run.tokens && t.requests > 0) run.rate = ((t.requests + t.errors) / t.durationMs) * run.p.concurrency;
      }
    }
    for (let round = 0; round < rounds; round++) {
      for (const [i, run] of runs.entries()) {
        const r = await loadSlice(run, {
          concurrency: run.p.concurrency,
          durationMs: run.p.durationMs / rounds,
          minRequests: Math.ceil(run.p.minRequests / rounds),
          maxRequests: Math.ceil(run.p.maxRequests / rounds),
        });
        addTo(tallies[i]!, r, r.cpuMs);
      }
    }
    for (const [i, run] of runs.entries()) this.record(run, tallies[i]!);
  }

  private record(run: Run, t: Tally): void {
    const mark = markOf(run, t);
    const attempted = t.requests + t.errors;
    const s = mark.latencyMs;
    this.marks.push(mark);
    const unit = run.group === 'issuance' ? 'tokens' : 'lookups';
    this.log(
      `  ${mark.name.padEnd(58)} c=${run.p.concurrency} ${String(mark.requests).padStart(6)} req in ${(t.durationMs / 1000).toFixed(1)} s: ` +
        `${Math.round(mark.lookupsPerSec).toLocaleString('en-US')} ${unit}/s, p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, ` +
        `server CPU ${mark.serverCpuUsPerLookup.toFixed(1)} µs/${unit.slice(0, -1)} (${Math.round(mark.serverCpuShare * 100)} % busy)` +
        (t.errors ? `, ${t.errors} ERRORS ${JSON.stringify(t.statuses)}` : ''),
    );
    if (t.errors > 0) this.errorNotes.push(`${mark.name}: ${t.errors} of ${attempted} requests failed (${Object.entries(t.statuses).map(([k, v]) => `${k} x${v}`).join(', ')}).`);
  }
}

/** A run's slices added up: rates per second, latency, and the server's CPU per request and per lookup. */
function markOf(run: Run, t: Tally): HttpMark {
  const lookups = t.requests * run.numbersPerRequest;
  const attempted = t.requests + t.errors;
  const s = summarize(t.latenciesMs);
  return {
    section: 'http',
    name: markName(run),
    design: run.design,
    shape: run.shape,
    group: run.group,
    backend: run.target.backend,
    evalThreads: run.target.evalThreads,
    phase: run.phase,
    endpoint: run.endpoint,
    numbersPerRequest: run.numbersPerRequest,
    concurrency: run.p.concurrency,
    requests: t.requests,
    lookups,
    errors: t.errors,
    errorKinds: t.statuses,
    durationMs: t.durationMs,
    requestsPerSec: t.requests / (t.durationMs / 1000),
    lookupsPerSec: lookups / (t.durationMs / 1000),
    latencyMs: { mean: s.mean, median: s.median, p50: s.p50, p95: s.p95, p99: s.p99, min: s.min, max: s.max },
    serverCpuMsPerRequest: attempted > 0 ? t.cpuMs / attempted : Number.NaN,
    serverCpuUsPerLookup: attempted > 0 ? (t.cpuMs * 1000) / (attempted * run.numbersPerRequest) : Number.NaN,
    serverCpuShare: t.cpuMs / t.durationMs,
    requestBodyBytes: t.requests > 0 ? t.requestBodyBytes / t.requests : 0,
    replyBodyBytes: t.requests > 0 ? t.replyBodyBytes / t.requests : 0,
    ...(run.elementsPerRequest !== undefined
      ? { auth: run.target.auth, elementsPerRequest: run.elementsPerRequest, elementsPerSec: (t.requests * run.elementsPerRequest) / (t.durationMs / 1000) }
      : {}),
  };
}

function markName(run: Run): string {
  if (run.group === 'issuance') return `http token issuance (${run.numbersPerRequest} per request)`;
  const base = `http ${run.design} ${run.shape}${run.phase === 'latency' ? ' (idle, 1 in flight)' : ''}`;
  if (run.group === 'designs') return base;
  if (run.group === 'auth') return `${base} (${run.target.auth}${run.target.auth === 'token' && run.elementsPerRequest !== undefined && run.elementsPerRequest !== run.numbersPerRequest ? `, padded to ${run.elementsPerRequest}` : ''})`;
  if (run.group === 'modes') return `${base} (${run.target.mode} epoch, ${run.target.backend})`;
  return `${base} (${run.target.backend}, ${run.target.evalThreads} eval thread${run.target.evalThreads === 1 ? '' : 's'})`;
}

/** One slice of load; usage of the server child read around it. */
async function loadOnce(run: Run, requests: readonly LoadRequest[], b: SliceBounds): Promise<[LoadResult, number]> {
  const before = await run.target.child.usage();
  const r = await runLoad(run.target.url, { requests, headers: run.headers, ...b });
  const after = await run.target.child.usage();
  return [r, (after.cpuUs - before.cpuUs) / 1000];
}

/**
 * One slice of a run. With tokens it may be cut in parts: before each
 * part (off the clock) the tokens it is expected to spend are minted,
 * each request taking its own; a part that runs out of tokens is
 * followed by another until the slice's time and minimum are reached.
 * Tokens not sent go back to the supply.
 */
async function loadSlice(run: Run, b: SliceBounds): Promise<Tally> {
  const t = emptyTally();
  const supply = run.tokens;
  if (!supply) {
    const [r, cpu] = await loadOnce(run, run.requests, b);
    addTo(t, r, cpu);
    return t;
  }
  let timeLeft = b.durationMs;
  let minLeft = b.minRequests;
  let maxLeft = b.maxRequests;
  for (;;) {
    const expected = run.rate !== undefined ? Math.ceil(run.rate * Math.max(0, timeLeft) * 1.25) + 2 * b.concurrency : Math.max(16, 2 * b.concurrency);
    const n = Math.max(1, Math.min(maxLeft, 200_000, Math.max(minLeft, expected)));
    await supply.fill(n);
    const tokens = supply.take(n);
    const cursor = run.cursor ?? 0;
    const requests = tokens.map((authorization, i): LoadRequest => ({ ...run.requests[(cursor + i) % run.requests.length]!, headers: { authorization } }));
    const [r, cpu] = await loadOnce(run, requests, { concurrency: b.concurrency, durationMs: timeLeft, minRequests: Math.min(minLeft, n), maxRequests: n });
    const sent = r.requests + r.errors;
    supply.giveBack(tokens.slice(sent));
    run.cursor = (cursor + sent) % run.requests.length;
    if (sent > 0 && r.durationMs > 0) run.rate = sent / r.durationMs;
    addTo(t, r, cpu);
    timeLeft -= r.durationMs;
    minLeft -= sent;
    maxLeft -= sent;
    if (sent < n || maxLeft <= 0 || (timeLeft <= 0 && minLeft <= 0)) return t;
  }
}
