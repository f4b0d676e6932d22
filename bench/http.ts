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
 */
import fs from 'node:fs';
import path from 'node:path';
import { CLIENT_DESIGNS, createClient } from '../client/client.ts';
import { createTransport } from '../client/transport.ts';
import { CONTENT_TYPE, encodeBody } from '../shared/codec.ts';
import { BlindedConfigReply, DESIGNS, PATHS, type DesignName } from '../shared/messages.ts';
import type { BackendName, OprfMode } from '../shared/suite.ts';
import { forkServer, openTimeoutMs, waitBlindedServing, type ServerChild } from './fork.ts';
import { runLoad, type LoadRequest, type LoadResult } from './loadgen.ts';
import type { HttpGroup, HttpMark, HttpShape } from './results.ts';
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

    /** A server child over its own copy of the seeded store (each builds its own epoch, with its own key). */
    const serverFor = async (backend: BackendName, evalThreads: number, designs: readonly DesignName[], mode: OprfMode = config.mode): Promise<Target> => {
      const key = `${backend}/${evalThreads}${mode === config.mode ? '' : `/${mode}`}`;
      const have = targets.get(key);
      if (have) return have;
      const dataDir = copyFolder(template, path.join(root, key.replaceAll('/', '-')));
      const child = forkServer();
      spawned.push(child);
      const t0 = performance.now();
      const started = await child.start(
        { dataDir, designs: [...designs], bucketBits: config.bucketBits, mode, adminToken: BENCH_ADMIN_TOKEN, progress: false, backend, evalThreads },
        openTimeoutMs(seeded.numbers),
      );
      await waitBlindedServing(started.url, openTimeoutMs(seeded.numbers));
      const cfg = (await createTransport({ baseUrl: started.url }).request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false })).body!;
      if (cfg.mode !== mode) throw new Error(`the server runs ${cfg.mode}, the benchmark asked for ${mode}`);
      const t: Target = { key, child, url: started.url, backend, evalThreads, mode, epoch: cfg.current, designs, startSeconds: (performance.now() - t0) / 1000 };
      targets.set(key, t);
      log(`  server ${key} (pid ${child.pid}, ${designs.join(', ')}) serving at ${t.url} after ${t.startSeconds.toFixed(1)} s`);
      return t;
    };

    const main = await serverFor(config.backend, config.evalThreads, DESIGNS);

    // Correctness first: every design, through the real client, gives the expected answers.
    const probe = seeded.contacts.slice(0, 16);
    for (const design of DESIGNS) {
      const results = await createClient({ baseUrl: main.url, token, design, allowOprf: config.mode === 'oprf' }).lookupMany(probe.map((c) => c.number));
      results.forEach((r, i) => {
        if ((r.capabilities.length > 0) !== probe[i]!.registered) {
          throw new Error(`${design}: ${r.number} answered ${JSON.stringify(r.capabilities)}, expected ${probe[i]!.registered ? 'registered' : 'SMS only'}`);
        }
      });
    }
    log(`  answers checked through the real client for ${DESIGNS.join(', ')}`);

    const headers = {
      'content-type': CONTENT_TYPE.msgpack,
      accept: CONTENT_TYPE.msgpack,
      authorization: `Bearer ${token}`,
    };
    /**
     * Each design's lookup requests for slices of n pool numbers, prepared
     * ahead by the design's own client (ClientDesign.prepare: hashing, or
     * the config and blinding with sodium) against the target's config, as
     * the real client sends them: the load then measures the server's work.
     */
    const prepared = new Map<string, LoadRequest[]>();
    let prepareSeconds = 0;
    const requestsFor = async (target: Target, design: DesignName, n: number): Promise<LoadRequest[]> => {
      const key = `${target.key}|${design}|${n}`;
      let out = prepared.get(key);
      if (!out) {
        const t0 = performance.now();
        const client = CLIENT_DESIGNS[design](createTransport({ baseUrl: target.url }), { backend: 'sodium', allowOprf: true });
        out = [];
        for (const numbers of slices(pool, n)) {
          const r = (await client.prepare(numbers)).request;
          if (!r || r.method === 'DELETE') throw new Error(`${design}: prepared no lookup request for ${n} numbers`);
          out.push({ method: r.method, path: r.path, body: r.body === undefined ? undefined : Buffer.from(encodeBody(r.body, 'msgpack')) });
        }
        prepared.set(key, out);
        prepareSeconds += (performance.now() - t0) / 1000;
      }
      return out;
    };
    const endpointOf = (requests: readonly LoadRequest[]): string => `${requests[0]!.method} ${requests[0]!.path}`;

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
    }
    interface Tally extends LoadResult {
      cpuMs: number;
    }

    const markName = (run: Run): string => {
      const base = `http ${run.design} ${run.shape}${run.phase === 'latency' ? ' (idle, 1 in flight)' : ''}`;
      if (run.group === 'designs') return base;
      if (run.group === 'modes') return `${base} (${run.target.mode} epoch, ${run.target.backend})`;
      return `${base} (${run.target.backend}, ${run.target.evalThreads} eval thread${run.target.evalThreads === 1 ? '' : 's'})`;
    };

    /**
     * Runs several configurations (designs, or servers) in alternating
     * slices, `rounds` slices each, so that background load on the shared
     * machine falls on every one alike; each configuration's slices add up.
     */
    const measure = async (runs: Run[], rounds: number) => {
      const tallies: Tally[] = runs.map(() => ({ requests: 0, errors: 0, statuses: {}, durationMs: 0, latenciesMs: [], requestBodyBytes: 0, replyBodyBytes: 0, retryAfterSeconds: [], cpuMs: 0 }));
      for (const run of runs) {
        if (run.warmup && config.warmupMs > 0) {
          await runLoad(run.target.url, { requests: run.requests, headers: run.headers, concurrency: 1, durationMs: config.warmupMs, minRequests: 1, maxRequests: 1_000_000 });
        }
      }
      for (let round = 0; round < rounds; round++) {
        for (const [i, run] of runs.entries()) {
          const t = tallies[i]!;
          const before = await run.target.child.usage();
          const r = await runLoad(run.target.url, {
            requests: run.requests,
            headers: run.headers,
            concurrency: run.p.concurrency,
            durationMs: run.p.durationMs / rounds,
            minRequests: Math.ceil(run.p.minRequests / rounds),
            maxRequests: Math.ceil(run.p.maxRequests / rounds),
          });
          const after = await run.target.child.usage();
          t.cpuMs += (after.cpuUs - before.cpuUs) / 1000;
          t.requests += r.requests;
          t.errors += r.errors;
          for (const [k, v] of Object.entries(r.statuses)) t.statuses[k] = (t.statuses[k] ?? 0) + v;
          t.durationMs += r.durationMs;
          t.latenciesMs.push(...r.latenciesMs);
          t.requestBodyBytes += r.requestBodyBytes;
          t.replyBodyBytes += r.replyBodyBytes;
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
        };
        marks.push(mark);
        log(
          `  ${mark.name.padEnd(58)} c=${run.p.concurrency} ${String(mark.requests).padStart(6)} req in ${(t.durationMs / 1000).toFixed(1)} s: ` +
            `${Math.round(mark.lookupsPerSec).toLocaleString('en-US')} lookups/s, p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, ` +
            `server CPU ${mark.serverCpuUsPerLookup.toFixed(1)} µs/lookup (${Math.round(mark.serverCpuShare * 100)} % busy)` +
            (t.errors ? `, ${t.errors} ERRORS ${JSON.stringify(t.statuses)}` : ''),
        );
        if (t.errors > 0) errorNotes.push(`${mark.name}: ${t.errors} of ${attempted} requests failed (${Object.entries(t.statuses).map(([k, v]) => `${k} x${v}`).join(', ')}).`);
      }
    };

    const designRuns = (shape: HttpShapeConfig, phase: HttpMark['phase'], p: HttpPhaseConfig): Promise<Run[]> =>
      Promise.all(
        DESIGNS.map(async (design): Promise<Run> => {
          const requests = await requestsFor(main, design, shape.numbers);
          return {
            target: main,
            group: 'designs',
            design,
            shape: shape.shape,
            phase,
            endpoint: endpointOf(requests),
            numbersPerRequest: shape.numbers,
            requests,
            headers,
            p,
            warmup: phase === 'throughput' && shape.numbers <= 100,
          };
        }),
      );
    /** Blinded evaluate on each of several servers, taking turns. */
    const serverRuns = (group: HttpGroup, servers: Target[], shape: HttpShapeConfig): Promise<Run[]> =>
      Promise.all(
        servers.map(async (target): Promise<Run> => {
          const requests = await requestsFor(target, 'blinded', shape.numbers);
          return {
            target,
            group,
            design: 'blinded',
            shape: shape.shape,
            phase: 'throughput',
            endpoint: endpointOf(requests),
            numbersPerRequest: shape.numbers,
            requests,
            headers,
            p: shape,
            warmup: shape.numbers <= 100,
          };
        }),
      );

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
    log(`  lookup requests prepared ahead through each design's client (hashing, blinding with sodium) in ${prepareSeconds.toFixed(1)} s so far`);

    if (config.backends) {
      const servers: Target[] = [];
      for (const b of config.backends.backends) servers.push(b === main.backend ? main : await serverFor(b, config.evalThreads, ['blinded']));
      for (const shape of config.backends.shapes) await measure(await serverRuns('backends', servers, shape), roundsFor(shape));
    }
    if (config.threads) {
      const servers: Target[] = [];
      for (const n of config.threads.counts) servers.push(n === main.evalThreads && main.backend === 'sodium' ? main : await serverFor('sodium', n, ['blinded']));
      for (const shape of config.threads.shapes) await measure(await serverRuns('threads', servers, shape), roundsFor(shape));
    }

    if (config.otherMode) {
      const other: OprfMode = config.mode === 'voprf' ? 'oprf' : 'voprf';
      const target = await serverFor(config.backend, config.evalThreads, ['plain', 'blinded'], other);
      const p = config.otherMode.single;
      const runs: Run[] = await Promise.all(
        (['plain', 'blinded'] as const).map(async (design): Promise<Run> => {
          const requests = await requestsFor(target, design, 1);
          return { target, group: 'modes', design, shape: 'single', phase: 'throughput', endpoint: endpointOf(requests), numbersPerRequest: 1, requests, headers, p, warmup: true };
        }),
      );
      await measure(runs, roundsFor(p));
    }

    const serverLines = [...targets.values()].map((t) => {
      const threads = t.evalThreads === 0 ? 'evaluate inline on the event loop' : `${t.evalThreads} evaluator worker thread${t.evalThreads === 1 ? '' : 's'}`;
      return `${t.key}: pid ${t.child.pid}, ${t.designs.join(', ')}, backend ${t.backend}, ${t.mode} epochs, ${threads}, blinded serving ${t.startSeconds.toFixed(1)} s after fork`;
    });
    const ev = mainUsage.evaluator;
    const evaluatorText = !ev
      ? `blinded evaluate with --eval-threads ${main.evalThreads}`
      : ev.inline
        ? 'blinded evaluate inline on the event loop (no evaluator threads)'
        : `blinded evaluate on ${ev.threads} evaluator worker thread${ev.threads === 1 ? '' : 's'}`;
    return {
      marks,
      setup: {
        server: `child process (pid ${main.child.pid}) serving ${DESIGNS.join(', ')} on ${main.url} with the ${main.backend} backend; requests, plain and hashed lookups and bucket fetches on its one event loop, ${evaluatorText}. Server CPU is all its threads, so above 100 % it used more than one core`,
        servers: `one child per (backend, evaluator threads), each over its own copy of the seeded store with its own epoch: ${serverLines.join('; ')}`,
        loadGenerator: 'this process: closed loop over keep-alive node:http connections, bodies encoded and blinded (sodium) before timing',
        directory: `${seeded.numbers} numbers (synth/, seed '${BENCH_SEED}'), blinded epochs: ${config.mode}, bucketBits ${config.bucketBits}`,
        requests: `numbers drawn from a contact list of ${pool.length} (half registered); the same prepared requests are cycled (a 4,096-element batch repeats the pool's elements)`,
        serverRssAfter: formatBytes(mainUsage.memory.rss),
      },
      notes: [
        'HTTP: lookups/s counts numbers answered per second (requests/s x numbers per request). For blinded it is the evaluate endpoint, the crypto-bound part; the bucket fetch is a separate, cacheable GET measured on its own row (one bucket serves every number that falls in it).',
        'HTTP: latency is per request, measured by the load generator at the stated concurrency (c); with c > 1 on a saturated server it includes queueing. Rows marked "idle" have one request in flight.',
        `HTTP: for each request shape the designs (or the servers of a backend or thread-count comparison) take turns in up to ${config.rounds} slice${config.rounds > 1 ? 's' : ''} each, so background load on the shared machine falls on all of them alike.`,
        'HTTP: rows with a backend and thread count in parentheses are blinded evaluate on servers that differ only in that setting (`--backend`, `--eval-threads`); the load generator shares the machine\'s cores with the server, so on 2 cores a second evaluator thread competes with it.',
        ...(errorNotes.length > 0 ? [`HTTP: failed requests (left out of the rates): ${errorNotes.join(' ')}`] : []),
      ],
    };
  } finally {
    for (const c of spawned) await c.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}
