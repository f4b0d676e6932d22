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
 * from the same minutes of the same machine.
 */
import fs from 'node:fs';
import path from 'node:path';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { createClient } from '../client/client.ts';
import { createTransport } from '../client/transport.ts';
import { CONTENT_TYPE, encodeBody } from '../shared/codec.ts';
import { hashNumber } from '../shared/hashed.ts';
import { BlindedConfigReply, DESIGNS, PATHS, type DesignName } from '../shared/messages.ts';
import { blindBatch, type OprfMode } from '../shared/oprf.ts';
import { forkServer, openTimeoutMs } from './fork.ts';
import { runLoad, type LoadRequest, type LoadResult } from './loadgen.ts';
import type { HttpMark, HttpShape } from './results.ts';
import { BENCH_ADMIN_TOKEN, BENCH_SEED, seedFolder, tempRoot } from './seeding.ts';
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

export interface HttpConfig {
  directorySize: number;
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

export async function runHttp(config: HttpConfig, log: (line: string) => void): Promise<HttpOutcome> {
  const root = tempRoot('pcd-bench-http-');
  const dataDir = path.join(root, 'data');
  const child = forkServer();
  try {
    const seeded = seedFolder(dataDir, config.directorySize, config.poolSize);
    const token = seeded.token!;
    const pool = seeded.contacts.map((c) => c.number);
    log(`  directory of ${seeded.numbers} numbers seeded in ${seeded.seedSeconds.toFixed(1)} s; pool of ${pool.length} numbers (${seeded.contacts.filter((c) => c.registered).length} registered)`);

    // The server builds its first epoch while this process blinds the pool.
    const starting = child.start(
      { dataDir, designs: [...DESIGNS], bucketBits: config.bucketBits, mode: config.mode, adminToken: BENCH_ADMIN_TOKEN, progress: false },
      openTimeoutMs(seeded.numbers),
    );
    const tBlind = performance.now();
    const blinded = blindBatch(config.mode, pool.map((n) => utf8ToBytes(n))).blinded;
    const blindSeconds = (performance.now() - tBlind) / 1000;
    const started = await starting;
    const url = started.url;
    log(`  server (pid ${child.pid}) up at ${url} in ${started.seconds.toFixed(1)} s; ${pool.length} numbers blinded ahead in ${blindSeconds.toFixed(1)} s`);

    const cfg = (await createTransport({ baseUrl: url }).request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false })).body!;
    if (cfg.mode !== config.mode) throw new Error(`the server runs ${cfg.mode}, the benchmark asked for ${config.mode}`);
    const epoch = cfg.current;

    // Correctness first: every design, through the real client, gives the expected answers.
    const probe = seeded.contacts.slice(0, 16);
    for (const design of DESIGNS) {
      const results = await createClient({ baseUrl: url, token, design }).lookupMany(probe.map((c) => c.number));
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
    const post = (p: string, body: unknown): LoadRequest => ({ method: 'POST', path: p, body: Buffer.from(encodeBody(body, 'msgpack')) });
    const requestsFor = (design: DesignName, n: number): LoadRequest[] => {
      switch (design) {
        case 'plain':
          return slices(pool, n).map((numbers) => post(PATHS.plainLookup, { numbers }));
        case 'hashed':
          return slices(pool, n).map((s) => post(PATHS.hashedLookup, { hashes: s.map(hashNumber) }));
        case 'blinded':
          return slices(blinded, n).map((elements) => post(PATHS.blindedEvaluate, { epoch, elements }));
      }
    };
    const endpointOf: Record<DesignName, string> = {
      plain: `POST ${PATHS.plainLookup}`,
      hashed: `POST ${PATHS.hashedLookup}`,
      blinded: `POST ${PATHS.blindedEvaluate}`,
    };

    const marks: HttpMark[] = [];
    const errorNotes: string[] = [];

    interface Run {
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

    /**
     * Runs several configurations (one per design) in alternating slices,
     * `rounds` slices each, so that background load on the shared machine
     * falls on every design alike; each configuration's slices add up.
     */
    const measure = async (runs: Run[], rounds: number) => {
      const tallies: Tally[] = runs.map(() => ({ requests: 0, errors: 0, statuses: {}, durationMs: 0, latenciesMs: [], requestBodyBytes: 0, replyBodyBytes: 0, cpuMs: 0 }));
      for (const run of runs) {
        if (run.warmup && config.warmupMs > 0) {
          await runLoad(url, { requests: run.requests, headers: run.headers, concurrency: 1, durationMs: config.warmupMs, minRequests: 1, maxRequests: 1_000_000 });
        }
      }
      for (let round = 0; round < rounds; round++) {
        for (const [i, run] of runs.entries()) {
          const t = tallies[i]!;
          const before = await child.usage();
          const r = await runLoad(url, {
            requests: run.requests,
            headers: run.headers,
            concurrency: run.p.concurrency,
            durationMs: run.p.durationMs / rounds,
            minRequests: Math.ceil(run.p.minRequests / rounds),
            maxRequests: Math.ceil(run.p.maxRequests / rounds),
          });
          const after = await child.usage();
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
          name: `http ${run.design} ${run.shape}${run.phase === 'latency' ? ' (idle, 1 in flight)' : ''}`,
          design: run.design,
          shape: run.shape,
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
          latencyMs: { mean: s.mean, median: s.median, p50: s.p50, p99: s.p99, min: s.min, max: s.max },
          serverCpuMsPerRequest: attempted > 0 ? t.cpuMs / attempted : Number.NaN,
          serverCpuUsPerLookup: attempted > 0 ? (t.cpuMs * 1000) / (attempted * run.numbersPerRequest) : Number.NaN,
          serverCpuShare: t.cpuMs / t.durationMs,
          requestBodyBytes: t.requests > 0 ? t.requestBodyBytes / t.requests : 0,
          replyBodyBytes: t.requests > 0 ? t.replyBodyBytes / t.requests : 0,
        };
        marks.push(mark);
        log(
          `  ${mark.name.padEnd(42)} c=${run.p.concurrency} ${String(mark.requests).padStart(6)} req in ${(t.durationMs / 1000).toFixed(1)} s: ` +
            `${Math.round(mark.lookupsPerSec).toLocaleString('en-US')} lookups/s, p50 ${s.p50.toFixed(2)} ms, p99 ${s.p99.toFixed(2)} ms, ` +
            `server CPU ${mark.serverCpuUsPerLookup.toFixed(1)} µs/lookup (${Math.round(mark.serverCpuShare * 100)} % busy)` +
            (t.errors ? `, ${t.errors} ERRORS ${JSON.stringify(t.statuses)}` : ''),
        );
        if (t.errors > 0) errorNotes.push(`${mark.name}: ${t.errors} of ${attempted} requests failed (${Object.entries(t.statuses).map(([k, v]) => `${k} x${v}`).join(', ')}).`);
      }
    };

    const designRuns = (shape: HttpShapeConfig, phase: HttpMark['phase'], p: HttpPhaseConfig): Run[] =>
      DESIGNS.map((design) => ({
        design,
        shape: shape.shape,
        phase,
        endpoint: endpointOf[design],
        numbersPerRequest: shape.numbers,
        requests: requestsFor(design, shape.numbers),
        headers,
        p,
        warmup: phase === 'throughput' && shape.numbers <= 100,
      }));

    // No more slices than the phase's minimum requests: a slice holds at least one request.
    const roundsFor = (p: { minRequests: number }) => Math.max(1, Math.min(config.rounds, p.minRequests));
    for (const shape of config.shapes) await measure(designRuns(shape, 'throughput', shape), roundsFor(shape));
    if (config.bucket) {
      const count = 2 ** config.bucketBits;
      const requests: LoadRequest[] = Array.from({ length: Math.min(count, 4096) }, (_, b) => ({ method: 'GET', path: PATHS.blindedBucket(epoch, b) }));
      await measure(
        [
          {
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
      for (const shape of config.shapes) await measure(designRuns(shape, 'latency', { ...config.latency, concurrency: 1 }), roundsFor(config.latency));
    }
    const end = await child.usage();
    const ev = end.evaluator;
    const evaluatorText = !ev
      ? 'blinded evaluate on the event loop'
      : ev.inline
        ? 'blinded evaluate inline on the event loop (no evaluator threads)'
        : `blinded evaluate on ${ev.threads} evaluator worker thread${ev.threads === 1 ? '' : 's'} (PCD_EVAL_THREADS, default one per core)`;
    return {
      marks,
      setup: {
        server: `child process (pid ${child.pid}) serving ${DESIGNS.join(', ')} on ${url}; requests, plain and hashed lookups and bucket fetches on its one event loop, ${evaluatorText}. Server CPU is all its threads, so above 100 % it used more than one core`,
        loadGenerator: 'this process: closed loop over keep-alive node:http connections, bodies encoded and blinded before timing',
        directory: `${seeded.numbers} numbers (server/seed.ts, seed '${BENCH_SEED}'), blinded epoch ${epoch}: ${cfg.mode}, bucketBits ${cfg.bucketBits}, tagBytes ${cfg.tagBytes}`,
        requests: `numbers drawn from a contact list of ${pool.length} (half registered); the same prepared requests are cycled`,
        serverRssAfter: formatBytes(end.memory.rss),
      },
      notes: [
        'HTTP: lookups/s counts numbers answered per second (requests/s x numbers per request). For blinded it is the evaluate endpoint, the crypto-bound part; the bucket fetch is a separate, cacheable GET measured on its own row (one bucket serves every number that falls in it).',
        'HTTP: latency is per request, measured by the load generator at the stated concurrency (c); with c > 1 on a saturated server it includes queueing. Rows marked "idle" have one request in flight.',
        `HTTP: for each request shape the designs take turns in up to ${config.rounds} slice${config.rounds > 1 ? 's' : ''} each, so background load on the shared machine falls on all of them alike.`,
        ...(errorNotes.length > 0
          ? [
              `HTTP: failed requests (left out of the rates): ${errorNotes.join(' ')} ` +
                'ECONNRESET here means the server closed a keep-alive connection that already carried the next request: a large blinded evaluate runs synchronously and holds the event loop for seconds, and when that is longer than the server\'s keep-alive timeout (5 s), the idle-connection timer of another connection fires before its pending request is read.',
            ]
          : []),
      ],
    };
  } finally {
    await child.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}
