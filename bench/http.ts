/**
 * HTTP lookups per second and latency per design, over a real server on
 * 127.0.0.1 (an ephemeral port) in a child process, driven by the load
 * generator in this process.
 *
 * Why a child process: the server is one Node process with one event loop
 * (plus, for blinded evaluate, its evaluator worker threads). Were the load
 * generator in the same process, every request it builds and every reply
 * it reads would run on the server's loop and be counted as server time.
 * As separate processes the OS schedules them on separate cores where it
 * can; on a 2-core machine the generator, the server's event loop and its
 * evaluator threads still share two cores, which is why the generator's
 * own cost is kept low (bodies encoded and, for blinded, elements blinded
 * before the clock starts; node:http with keep-alive) and why the server's
 * CPU time is measured: process.cpuUsage() of the child around each phase
 * gives the cost per lookup even where the generator, not the server, is
 * the limit (cheap plain lookups). `serverCpuShare` is that CPU time over
 * wall time: near 1 means one core was busy, above 1 several threads were.
 *
 * All designs are served by one server over one directory, and phases run
 * design after design for each request shape, so ratios between designs come
 * from the same minutes of the same machine. The same goes for the blinded
 * comparisons across servers: one child per crypto backend (`--backend`)
 * and one per evaluator thread count (`--eval-threads`), each over its own
 * copy of the seeded store, alive together and measured in alternating
 * slices, so "sodium / noble" and "2 / 1 threads" are ratios of one run.
 *
 * Anonymous requesters (shared/tokens.ts). The main server runs as a server
 * runs by default: blinded evaluate is paid with a Privacy Pass token, one
 * per request, the request padded with dummy elements to the token's size
 * class (the real client pads them: requests are prepared through it), so
 * its blinded rows count the numbers asked for and pay for the padding.
 * Beside it a twin, started from its own copy of the store with the same
 * backend, threads and designs but `blindedAuth: 'account'`: the two take
 * turns on single lookups and syncs of 100 and 1,000, and their ratio is
 * the cost of anonymity on the same machine in the same minutes (one
 * process cannot serve both: the auth is a startup option). The twin is the
 * one the backend and thread-count comparisons reuse in place of the main
 * server, so they compare crypto alone, with no padding in their elements;
 * the other-mode server takes tokens, as the main server does, so the two
 * single-lookup ratios stay comparable. Tokens are minted by the benchmark
 * with the issuer's key between load slices, never on the clock
 * (bench/tokens.ts says why that is the same work for the server), each
 * request carrying its own. Issuance (POST /v1/tokens) is measured on the
 * main server with prepared token requests: tokens/s and server CPU per
 * token. And the padding over request-size mixes, computed: elements sent
 * per number asked for.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CLIENT_DESIGNS, createClient } from '../client/client.ts';
import { createTransport } from '../client/transport.ts';
import { CONTENT_TYPE, encodeBody } from '../shared/codec.ts';
import { BlindedConfigReply, DESIGNS, PATHS, type DesignName } from '../shared/messages.ts';
import type { BackendName, OprfMode } from '../shared/suite.ts';
import { DEFAULT_SIZE_CLASSES, type BlindedAuth } from '../shared/tokens.ts';
import type { E164 } from '../shared/e164.ts';
import { sampleNumbers } from '../synth/directory.ts';
import type { PopulationOptions } from '../workload/population.ts';
import type { ScriptOptions } from '../workload/script.ts';
import { forkServer, openTimeoutMs, waitBlindedServing, type ServerChild } from '../harness/fork.ts';
import { runLoad, type LoadRequest, type LoadResult } from './loadgen.ts';
import type { HttpGroup, HttpMark, HttpShape, PaddingRow } from './results.ts';
import { TokenMinter, TokenSupply, logNormalSizes, paddingRow, workloadRequestSizes, type LogNormalMix } from './tokens.ts';
import { BENCH_ADMIN_TOKEN, BENCH_SEED, copyFolder, seedFolder, tempRoot } from './seeding.ts';
import { formatBytes, summarize } from './stats.ts';

export interface HttpPhaseConfig {
  concurrency: number;
  durationMs: number;
  minRequests: number;
  maxRequests: number;
}

export interface HttpShapeConfig extends HttpPhaseConfig {
  shape: Exclude<HttpShape, 'bucket'>;
  numbers: number;
}

/** Blinded evaluate phases on servers that differ in one setting, taking turns. */
export interface HttpVariantConfig {
  shapes: HttpShapeConfig[];
}

export interface HttpConfig {
  directorySize: number;
  /** The main server's crypto backend and evaluator threads (the one serving all three designs). */
  backend: BackendName;
  evalThreads: number;
  /** Blinded evaluate, one server per backend (same evaluator threads as the main server). */
  backends?: HttpVariantConfig & { backends: BackendName[] };
  /** Blinded evaluate, sodium, one server per evaluator thread count (`--eval-threads`). */
  threads?: HttpVariantConfig & { counts: number[] };
  /**
   * Single lookups against a second server (same backend and threads) whose
   * epochs are in the other OPRF mode: plain and blinded on that one server,
   * taking turns, so the blinded / plain ratio is shown for both modes.
   */
  otherMode?: { single: HttpPhaseConfig };
  /**
   * Blinded evaluate paid with a token (the main server) against the account
   * (a twin with `blindedAuth: 'account'`), taking turns per shape.
   */
  auth?: HttpVariantConfig;
  /** POST /v1/tokens on the main server, one phase per count of tokens per request, taking turns. */
  issuance?: HttpPhaseConfig & { perRequest: number[]; sizeClass: number };
  /** Padding to the size classes over request-size mixes (computed, not timed): syncs of log-normal sizes, and the workload script's requests. */
  padding?: { logNormal: LogNormalMix; workload?: { population: Partial<PopulationOptions>; script: Partial<Omit<ScriptOptions, 'start' | 'seed'>> } };
  bucketBits: number;
  mode: OprfMode;
  /** Distinct numbers the requests draw from (half registered). */
  poolSize: number;
  shapes: HttpShapeConfig[];
  /** GET bucket throughput (blinded). */
  bucket?: HttpPhaseConfig;
  /** Also a phase at concurrency 1 per shape (latency on an idle server). */
  latency?: Omit<HttpPhaseConfig, 'concurrency'>;
  warmupMs: number;
  /** Slices each design's phase is cut into, the designs alternating (see measure()). */
  rounds: number;
}

export interface HttpOutcome {
  marks: HttpMark[];
  setup: Record<string, string>;
  notes: string[];
  padding: PaddingRow[];
}

function slices<T>(pool: readonly T[], n: number, max = 64): T[][] {
  const count = Math.max(1, Math.min(max, Math.ceil(pool.length / n)));
  return Array.from({ length: count }, (_, i) => Array.from({ length: n }, (_, j) => pool[(i * n + j) % pool.length]!));
}

/** One server child under measurement and what it was started with. */
interface Target {
  key: string;
  child: ServerChild;
  url: string;
  backend: BackendName;
  evalThreads: number;
  mode: OprfMode;
  epoch: number;
  designs: readonly DesignName[];
  startSeconds: number;
  /** How blinded evaluate is paid; with tokens, what mints them. */
  auth: BlindedAuth;
  dataDir: string;
  minter?: TokenMinter;
}

export async function runHttp(config: HttpConfig, log: (line: string) => void): Promise<HttpOutcome> {
  const root = tempRoot('pcd-bench-http-');
  const template = path.join(root, 'template');
  const targets = new Map<string, Target>();
  const spawned: ServerChild[] = [];
  try {
    const seeded = seedFolder(template, config.directorySize, config.poolSize);
    const token = seeded.token!;
    const pool = seeded.contacts.map((c) => c.number);
    log(`  directory of ${seeded.numbers} numbers seeded in ${seeded.seedSeconds.toFixed(1)} s; pool of ${pool.length} numbers (${seeded.contacts.filter((c) => c.registered).length} registered)`);

    /**
     * A server child over its own copy of the seeded store (each builds its own epoch, with its own key),
     * answers checked through the real client; with tokens, a minter of its token keys.
     */
    const serverFor = async (backend: BackendName, evalThreads: number, designs: readonly DesignName[], mode: OprfMode = config.mode, auth: BlindedAuth = 'token'): Promise<Target> => {
      const key = `${backend}/${evalThreads}${mode === config.mode ? '' : `/${mode}`}${auth === 'token' ? '' : `/${auth}`}`;
      const have = targets.get(key);
      if (have) return have;
      const dataDir = copyFolder(template, path.join(root, key.replaceAll('/', '-')));
      const child = forkServer();
      spawned.push(child);
      const t0 = performance.now();
      const started = await child.start(
        { dataDir, designs: [...designs], bucketBits: config.bucketBits, mode, adminToken: BENCH_ADMIN_TOKEN, progress: false, backend, evalThreads, blindedAuth: auth },
        openTimeoutMs(seeded.numbers),
      );
      await waitBlindedServing(started.url, openTimeoutMs(seeded.numbers));
      const cfg = (await createTransport({ baseUrl: started.url }).request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false })).body!;
      if (cfg.mode !== mode) throw new Error(`the server runs ${cfg.mode}, the benchmark asked for ${mode}`);
      if ((cfg.auth ?? 'account') !== auth) throw new Error(`the server's blinded evaluate takes ${cfg.auth ?? 'account'}, the benchmark asked for ${auth}`);
      const t: Target = { key, child, url: started.url, backend, evalThreads, mode, epoch: cfg.current, designs, startSeconds: (performance.now() - t0) / 1000, auth, dataDir };
      if (auth === 'token') {
        // After the server made its keys (it serves once they exist): the very keys it publishes, each checked by minting one.
        const keys = cfg.epochs.find((e) => e.epoch === cfg.current)?.tokenKeys ?? [];
        t.minter = await TokenMinter.open(dataDir, { issuer: cfg.issuer!, epoch: cfg.current, keys });
      }
      targets.set(key, t);
      log(`  server ${key} (pid ${child.pid}, ${designs.join(', ')}, evaluate paid with ${auth === 'token' ? 'a Privacy Pass token' : 'the account'}) serving at ${t.url} after ${t.startSeconds.toFixed(1)} s`);

      // Correctness first: every design, through the real client (tokens fetched from the issuer with the account), gives the expected answers.
      const probe = seeded.contacts.slice(0, 16);
      for (const design of designs) {
        const results = await createClient({ baseUrl: t.url, token, design, allowOprf: mode === 'oprf' }).lookupMany(probe.map((c) => c.number));
        results.forEach((r, i) => {
          if ((r.capabilities.length > 0) !== probe[i]!.registered) {
            throw new Error(`${key} ${design}: ${r.number} answered ${JSON.stringify(r.capabilities)}, expected ${probe[i]!.registered ? 'registered' : 'SMS only'}`);
          }
        });
      }
      log(`  answers checked through the real client for ${designs.join(', ')}${t.minter ? `; token minting checked with privacypass-ts for classes ${t.minter.classes[0]}..${t.minter.classes.at(-1)}` : ''}`);
      return t;
    };

    const main = await serverFor(config.backend, config.evalThreads, DESIGNS);

    const headers = {
      'content-type': CONTENT_TYPE.msgpack,
      accept: CONTENT_TYPE.msgpack,
      authorization: `Bearer ${token}`,
    };
    /**
     * Each design's lookup requests for slices of n pool numbers, prepared
     * ahead by the design's own client (ClientDesign.prepare: hashing, or
     * the config and blinding with sodium, and with tokens the padding to
     * the token's class) against the target's config, as the real client
     * sends them: the load then measures the server's work. The tokens the
     * client fetched to prepare them are not sent: each request sent pays
     * with a minted one.
     */
    interface Prepared {
      requests: LoadRequest[];
      /** Elements each request sends (blinded evaluate: the distinct numbers and the padding). */
      elements: number;
      /** Distinct numbers per request (fewer than asked for when the pool is smaller: the client evaluates each once). */
      distinct: number;
    }
    const prepared = new Map<string, Prepared>();
    let prepareSeconds = 0;
    const requestsFor = async (target: Target, design: DesignName, n: number): Promise<Prepared> => {
      const key = `${target.key}|${design}|${n}`;
      let out = prepared.get(key);
      if (!out) {
        const t0 = performance.now();
        const client = CLIENT_DESIGNS[design](createTransport({ baseUrl: target.url }), { backend: 'sodium', allowOprf: true, issuer: createTransport({ baseUrl: target.url, token }) });
        const requests: LoadRequest[] = [];
        const sizes = new Set<number>();
        // With tokens, each prepared request costs the client a real token (~40 ms): fewer of them, cycled (evaluate caches nothing).
        const paid = design === 'blinded' && target.auth === 'token';
        const parts = slices(poolOf(n), n, paid ? 16 : 64);
        for (const numbers of parts) {
          const r = (await client.prepare(numbers)).request;
          if (!r || r.method === 'DELETE') throw new Error(`${design}: prepared no lookup request for ${n} numbers`);
          const elements = (r.body as { elements?: unknown[] } | undefined)?.elements;
          sizes.add(Array.isArray(elements) ? elements.length : n);
          requests.push({ method: r.method, path: r.path, body: r.body === undefined ? undefined : Buffer.from(encodeBody(r.body, 'msgpack')) });
        }
        if (sizes.size !== 1) throw new Error(`${design}: requests for ${n} numbers sent ${[...sizes].join(', ')} elements`);
        out = { requests, elements: [...sizes][0]!, distinct: new Set(parts[0]).size };
        prepared.set(key, out);
        prepareSeconds += (performance.now() - t0) / 1000;
      }
      return out;
    };
    /**
     * Numbers for requests of n: the contact list, and past its end numbers outside it (not in the directory, so
     * answered "SMS only"): every request holds n distinct numbers, since a client evaluates each number once.
     */
    const extra: E164[] = [];
    const poolOf = (n: number): readonly E164[] => {
      if (n <= pool.length) return pool;
      if (extra.length < n - pool.length) {
        const inPool = new Set(pool);
        extra.splice(0, extra.length, ...sampleNumbers({ count: n - pool.length, seed: 'pcd-bench-http-extra', exclude: (x) => inPool.has(x) }));
      }
      return [...pool, ...extra.slice(0, n - pool.length)];
    };
    const endpointOf = (requests: readonly LoadRequest[]): string => `${requests[0]!.method} ${requests[0]!.path}`;

    /** Tokens per server and class, minted as the phases spend them. */
    const supplies = new Map<string, TokenSupply>();
    const supplyFor = (target: Target, sizeClass: number): TokenSupply => {
      const key = `${target.key}|${sizeClass}`;
      let s = supplies.get(key);
      if (!s) supplies.set(key, (s = new TokenSupply(target.minter!, sizeClass)));
      return s;
    };

    const marks: HttpMark[] = [];
    const errorNotes: string[] = [];

    interface Run {
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
    interface Tally extends LoadResult {
      cpuMs: number;
    }
    const emptyTally = (): Tally => ({ requests: 0, errors: 0, statuses: {}, durationMs: 0, latenciesMs: [], requestBodyBytes: 0, replyBodyBytes: 0, retryAfterSeconds: [], cpuMs: 0 });
    const addTo = (t: Tally, r: LoadResult, cpuMs: number) => {
      t.cpuMs += cpuMs;
      t.requests += r.requests;
      t.errors += r.errors;
      for (const [k, v] of Object.entries(r.statuses)) t.statuses[k] = (t.statuses[k] ?? 0) + v;
      t.durationMs += r.durationMs;
      t.latenciesMs.push(...r.latenciesMs);
      t.requestBodyBytes += r.requestBodyBytes;
      t.replyBodyBytes += r.replyBodyBytes;
    };

    const markName = (run: Run): string => {
      if (run.group === 'issuance') return `http token issuance (${run.numbersPerRequest} per request)`;
      const base = `http ${run.design} ${run.shape}${run.phase === 'latency' ? ' (idle, 1 in flight)' : ''}`;
      if (run.group === 'designs') return base;
      if (run.group === 'auth') return `${base} (${run.target.auth}${run.target.auth === 'token' && run.elementsPerRequest !== undefined && run.elementsPerRequest !== run.numbersPerRequest ? `, padded to ${run.elementsPerRequest}` : ''})`;
      if (run.group === 'modes') return `${base} (${run.target.mode} epoch, ${run.target.backend})`;
      return `${base} (${run.target.backend}, ${run.target.evalThreads} eval thread${run.target.evalThreads === 1 ? '' : 's'})`;
    };

    /** One slice of load; usage of the server child read around it. */
    const loadOnce = async (run: Run, requests: readonly LoadRequest[], b: { concurrency: number; durationMs: number; minRequests: number; maxRequests: number }): Promise<[LoadResult, number]> => {
      const before = await run.target.child.usage();
      const r = await runLoad(run.target.url, { requests, headers: run.headers, ...b });
      const after = await run.target.child.usage();
      return [r, (after.cpuUs - before.cpuUs) / 1000];
    };

    /**
     * One slice of a run. With tokens it may be cut in parts: before each
     * part (off the clock) the tokens it is expected to spend are minted,
     * each request taking its own; a part that runs out of tokens is
     * followed by another until the slice's time and minimum are reached.
     * Tokens not sent go back to the supply.
     */
    const slice = async (run: Run, b: { concurrency: number; durationMs: number; minRequests: number; maxRequests: number }): Promise<Tally> => {
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
    };

    /**
     * Runs several configurations (designs, or servers) in alternating
     * slices, `rounds` slices each, so that background load on the shared
     * machine falls on every one alike; each configuration's slices add up.
     */
    const measure = async (runs: Run[], rounds: number) => {
      const tallies: Tally[] = runs.map(emptyTally);
      for (const run of runs) {
        if (run.warmup && config.warmupMs > 0) {
          const t = await slice(run, { concurrency: 1, durationMs: config.warmupMs, minRequests: 1, maxRequests: 1_000_000 });
          if (run.tokens && t.requests > 0) run.rate = ((t.requests + t.errors) / t.durationMs) * run.p.concurrency;
        }
      }
      for (let round = 0; round < rounds; round++) {
        for (const [i, run] of runs.entries()) {
          const r = await slice(run, {
            concurrency: run.p.concurrency,
            durationMs: run.p.durationMs / rounds,
            minRequests: Math.ceil(run.p.minRequests / rounds),
            maxRequests: Math.ceil(run.p.maxRequests / rounds),
          });
          addTo(tallies[i]!, r, r.cpuMs);
        }
      }
      for (const [i, run] of runs.entries()) {
        const t = tallies[i]!;
        const lookups = t.requests * run.numbersPerRequest;
        const attempted = t.requests + t.errors;
        const s = summarize(t.latenciesMs);
        const mark: HttpMark = {
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
        marks.push(mark);
        const unit = run.group === 'issuance' ? 'tokens' : 'lookups';
        log(
          `  ${mark.name.padEnd(58)} c=${run.p.concurrency} ${String(mark.requests).padStart(6)} req in ${(t.durationMs / 1000).toFixed(1)} s: ` +
            `${Math.round(mark.lookupsPerSec).toLocaleString('en-US')} ${unit}/s, p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, ` +
            `server CPU ${mark.serverCpuUsPerLookup.toFixed(1)} µs/${unit.slice(0, -1)} (${Math.round(mark.serverCpuShare * 100)} % busy)` +
            (t.errors ? `, ${t.errors} ERRORS ${JSON.stringify(t.statuses)}` : ''),
        );
        if (t.errors > 0) errorNotes.push(`${mark.name}: ${t.errors} of ${attempted} requests failed (${Object.entries(t.statuses).map(([k, v]) => `${k} x${v}`).join(', ')}).`);
      }
    };

    /** A run of `design`'s lookups of `n` numbers on `target`: blinded evaluate says its elements, and with tokens takes them from the class's supply. */
    const lookupRun = async (target: Target, group: HttpGroup, design: DesignName, shape: HttpShape, phase: HttpMark['phase'], n: number, p: HttpPhaseConfig, warmup: boolean): Promise<Run> => {
      const { requests, elements } = await requestsFor(target, design, n);
      const endpoint = endpointOf(requests);
      const evaluate = design === 'blinded' && endpoint === `POST ${PATHS.blindedEvaluate}`;
      return {
        target,
        group,
        design,
        shape,
        phase,
        endpoint,
        numbersPerRequest: n,
        requests,
        headers,
        p,
        warmup,
        ...(evaluate ? { elementsPerRequest: elements } : {}),
        ...(evaluate && target.auth === 'token' ? { tokens: supplyFor(target, elements) } : {}),
      };
    };
    const designRuns = (shape: HttpShapeConfig, phase: HttpMark['phase'], p: HttpPhaseConfig): Promise<Run[]> =>
      Promise.all(DESIGNS.map((design) => lookupRun(main, 'designs', design, shape.shape, phase, shape.numbers, p, phase === 'throughput' && shape.numbers <= 100)));
    /** Blinded evaluate on each of several servers, taking turns. */
    const serverRuns = (group: HttpGroup, servers: Target[], shape: HttpShapeConfig): Promise<Run[]> =>
      Promise.all(servers.map((target) => lookupRun(target, group, 'blinded', shape.shape, 'throughput', shape.numbers, shape, shape.numbers <= 100)));

    // No more slices than the phase's minimum requests: a slice holds at least one request.
    const roundsFor = (p: { minRequests: number }) => Math.max(1, Math.min(config.rounds, p.minRequests));
    for (const shape of config.shapes) await measure(await designRuns(shape, 'throughput', shape), roundsFor(shape));
    if (config.bucket) {
      const count = 2 ** config.bucketBits;
      const requests: LoadRequest[] = Array.from({ length: Math.min(count, 4096) }, (_, b) => ({ method: 'GET', path: PATHS.blindedBucket(main.epoch, b) }));
      await measure(
        [
          {
            target: main,
            group: 'designs',
            design: 'blinded',
            shape: 'bucket',
            phase: 'throughput',
            endpoint: 'GET /v1/blinded/buckets/{epoch}/{bucket}',
            numbersPerRequest: 1,
            requests,
            headers: { accept: CONTENT_TYPE.msgpack },
            p: config.bucket,
            warmup: true,
          },
        ],
        1,
      );
    }
    if (config.latency) {
      for (const shape of config.shapes) await measure(await designRuns(shape, 'latency', { ...config.latency, concurrency: 1 }), roundsFor(config.latency));
    }
    const mainUsage = await main.child.usage();
    log(`  lookup requests prepared ahead through each design's client (hashing, blinding with sodium, tokens and padding) in ${prepareSeconds.toFixed(1)} s so far`);

    // The same server configuration with the account in place of tokens: the twin the variants below reuse.
    const twin = () => serverFor(config.backend, config.evalThreads, DESIGNS, config.mode, 'account');
    if (config.auth) {
      const servers = [main, await twin()];
      for (const shape of config.auth.shapes) await measure(await serverRuns('auth', servers, shape), roundsFor(shape));
    }

    if (config.issuance) {
      const iss = config.issuance;
      const minter = main.minter!;
      const runs = iss.perRequest.map((k): Run => {
        const requests = Array.from({ length: 16 }, (): LoadRequest => ({
          method: 'POST',
          path: PATHS.tokens,
          body: Buffer.from(encodeBody({ epoch: main.epoch, sizeClass: iss.sizeClass, requests: minter.tokenRequests(iss.sizeClass, k) }, 'msgpack')),
        }));
        return { target: main, group: 'issuance', design: 'blinded', shape: 'tokens', phase: 'throughput', endpoint: `POST ${PATHS.tokens}`, numbersPerRequest: k, requests, headers, p: iss, warmup: true };
      });
      await measure(runs, roundsFor(iss));
    }

    if (config.backends) {
      const servers: Target[] = [];
      for (const b of config.backends.backends) servers.push(b === config.backend ? await twin() : await serverFor(b, config.evalThreads, ['blinded'], config.mode, 'account'));
      for (const shape of config.backends.shapes) await measure(await serverRuns('backends', servers, shape), roundsFor(shape));
    }
    if (config.threads) {
      const servers: Target[] = [];
      for (const n of config.threads.counts) servers.push(n === config.evalThreads && config.backend === 'sodium' ? await twin() : await serverFor('sodium', n, ['blinded'], config.mode, 'account'));
      for (const shape of config.threads.shapes) await measure(await serverRuns('threads', servers, shape), roundsFor(shape));
    }

    if (config.otherMode) {
      const other: OprfMode = config.mode === 'voprf' ? 'oprf' : 'voprf';
      const target = await serverFor(config.backend, config.evalThreads, ['plain', 'blinded'], other);
      const p = config.otherMode.single;
      const runs = await Promise.all((['plain', 'blinded'] as const).map((design) => lookupRun(target, 'modes', design, 'single', 'throughput', 1, p, true)));
      await measure(runs, roundsFor(p));
    }

    // Padding: the shapes as prepared (their elements counted from the bodies), then mixes of request sizes.
    const classes = main.minter?.classes ?? [...DEFAULT_SIZE_CLASSES];
    const padding: PaddingRow[] = [];
    const shapes = new Map<number, HttpShape>();
    for (const s of [...config.shapes, ...(config.auth?.shapes ?? [])]) shapes.set(s.numbers, s.shape);
    for (const [n, shape] of [...shapes].sort((a, b) => a[0] - b[0])) {
      const p = prepared.get(`${main.key}|blinded|${n}`);
      const asked = p?.distinct ?? n;
      const row = paddingRow(`bench shape ${shape}${asked < n ? ` (${asked} distinct numbers: the pool is smaller)` : ''}`, 'shape', [asked], classes, p ? 'the blinded client\'s prepared request' : 'the size classes');
      if (p && p.elements !== row.sent) throw new Error(`the client padded ${asked} numbers to ${p.elements} elements, the size classes say ${row.sent}`);
      padding.push(row);
    }
    if (config.padding) {
      const ln = config.padding.logNormal;
      padding.push(paddingRow(`syncs of log-normal size (median ${ln.median}, σ ${ln.sigma}, at most ${ln.max})`, 'log-normal', logNormalSizes(ln), classes, `${ln.points.toLocaleString('en-US')} evenly spaced quantiles; the workload population's address-book sizes`));
      if (config.padding.workload) {
        const w = workloadRequestSizes(config.padding.workload.population, config.padding.workload.script);
        padding.push(
          paddingRow(`the workload's requests (${w.users} users, ${w.days} days: single lookups and reinstall syncs)`, 'workload', w.sizes, classes, 'workload/script.ts as `pcd simulate` plays it, a lookup dropped when the install evaluated that number before (tag cache)'),
        );
      }
    }
    for (const p of padding) log(`  padding, ${p.name}: ${p.sent.toLocaleString('en-US')} elements sent for ${p.asked.toLocaleString('en-US')} asked (${p.ratio.toFixed(3)}x${p.syncRatio !== undefined && p.singles > 0 ? `; syncs alone ${p.syncRatio.toFixed(3)}x` : ''})`);
    const minted = [...supplies.values()].reduce((a, s) => ({ n: a.n + s.minted, s: a.s + s.mintSeconds }), { n: 0, s: 0 });
    if (minted.n > 0) log(`  ${minted.n.toLocaleString('en-US')} tokens minted between slices in ${minted.s.toFixed(1)} s (not timed)`);

    const serverLines = [...targets.values()].map((t) => {
      const threads = t.evalThreads === 0 ? 'evaluate inline on the event loop' : `${t.evalThreads} evaluator worker thread${t.evalThreads === 1 ? '' : 's'}`;
      return `${t.key}: pid ${t.child.pid}, ${t.designs.join(', ')}, backend ${t.backend}, ${t.mode} epochs, ${threads}, evaluate paid with ${t.auth === 'token' ? 'Privacy Pass tokens' : 'the account'}, blinded serving ${t.startSeconds.toFixed(1)} s after fork`;
    });
    const ev = mainUsage.evaluator;
    const evaluatorText = !ev
      ? `blinded evaluate with --eval-threads ${main.evalThreads}`
      : ev.inline
        ? 'blinded evaluate inline on the event loop (no evaluator threads)'
        : `blinded evaluate on ${ev.threads} evaluator worker thread${ev.threads === 1 ? '' : 's'}`;
    return {
      marks,
      padding,
      setup: {
        server: `child process (pid ${main.child.pid}) serving ${DESIGNS.join(', ')} on ${main.url} with the ${main.backend} backend; requests, plain and hashed lookups and bucket fetches on its one event loop, ${evaluatorText}. Server CPU is all its threads, so above 100 % it used more than one core`,
        blindedAuth: `the main server takes Privacy Pass tokens on blinded evaluate (the default): each request spends a token, padded to its size class (${classes.join(', ')}), so its blinded rows count the numbers asked for and pay for the padding; the twin with \`blindedAuth: 'account'\` is the same configuration paid with the account, and the backend and thread-count servers take the account too`,
        servers: `one child per (backend, evaluator threads, auth), each over its own copy of the seeded store with its own epoch: ${serverLines.join('; ')}`,
        loadGenerator: `this process: closed loop over keep-alive node:http connections, bodies encoded and blinded (sodium) before timing; tokens minted with the issuer's key between slices (${minted.n.toLocaleString('en-US')} in ${minted.s.toFixed(1)} s, not timed), one per request`,
        directory: `${seeded.numbers} numbers (synth/, seed '${BENCH_SEED}'), blinded epochs: ${config.mode}, bucketBits ${config.bucketBits}`,
        requests: `numbers drawn from a contact list of ${pool.length} (half registered), and for a request of more, numbers outside it (every request holds distinct numbers: a client evaluates each once); the same prepared requests are cycled, each with a token of its own where the server takes tokens`,
        serverRssAfter: formatBytes(mainUsage.memory.rss),
      },
      notes: [
        'HTTP: lookups/s counts numbers answered per second (requests/s x numbers per request). For blinded it is the evaluate endpoint, the crypto-bound part; the bucket fetch is a separate, cacheable GET measured on its own row (one bucket serves every number that falls in it).',
        'HTTP: latency is per request, measured by the load generator at the stated concurrency (c); with c > 1 on a saturated server it includes queueing. Rows marked "idle" have one request in flight.',
        `HTTP: for each request shape the designs (or the servers of a backend or thread-count comparison) take turns in up to ${config.rounds} slice${config.rounds > 1 ? 's' : ''} each, so background load on the shared machine falls on all of them alike.`,
        'HTTP: rows with a backend and thread count in parentheses are blinded evaluate on servers that differ only in that setting (`--backend`, `--eval-threads`); the load generator shares the machine\'s cores with the server, so on 2 cores a second evaluator thread competes with it.',
        'HTTP, tokens: blinded evaluate on the main server (and the other-mode server) is paid with a Privacy Pass token per request, padded to the token\'s size class; the tokens are minted by the benchmark with the issuer\'s key (the same RSA-PSS signature a blind issuance yields; one per key checked with privacypass-ts first), between load slices, never on the clock. Token / account rows are twin servers, one per auth, taking turns.',
        ...(errorNotes.length > 0 ? [`HTTP: failed requests (left out of the rates): ${errorNotes.join(' ')}`] : []),
      ],
    };
  } finally {
    for (const c of spawned) await c.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}
