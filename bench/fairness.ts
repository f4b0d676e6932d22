/**
 * Fairness of blinded evaluate under a flood, over a real server child.
 *
 * Two requester accounts on one server: the flooder keeps several
 * 4,096-element evaluate requests in flight, retrying after a short pause
 * on 503 (the evaluator pool's per-requester admission, server/blinded/
 * fair.ts); the light requester sends 1-element requests one after the
 * other. What is recorded is what the light requester still gets: how many
 * of its requests got 200, their p99 and max latency, beside the same
 * requests on the idle server; and how many 503s the flooder got.
 *
 * The flood starts first and runs `leadMs` before the light requester, so
 * its backlog is full when the light requests arrive; it stops when they are
 * done. Elements are blinded before the clock starts, as in bench/http.ts.
 *
 * The server takes accounts (`blindedAuth: 'account'`), not Privacy Pass
 * tokens: what is measured is fairness between two accounts, and a request
 * paid with a token has no account (the scheduler treats each one as a
 * requester of its own, server/designs/blinded.ts anonymousFairnessKey).
 */
import fs from 'node:fs';
import path from 'node:path';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { createTransport } from '../client/transport.ts';
import { loadBackend } from '../shared/backends.ts';
import { CONTENT_TYPE, encodeBody } from '../shared/codec.ts';
import { BlindedConfigReply, PATHS } from '../shared/messages.ts';
import type { BackendName } from '../shared/suite.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { Store } from '../server/store.ts';
import { forkServer, openTimeoutMs, waitBlindedServing } from '../harness/fork.ts';
import { runLoad, type LoadRequest, type LoadResult } from './loadgen.ts';
import type { FairnessMark } from './results.ts';
import { BENCH_ADMIN_TOKEN, seedFolder, tempRoot } from './seeding.ts';
import { summarize } from './stats.ts';

export interface FairnessConfig {
  directorySize: number;
  bucketBits: number;
  backend: BackendName;
  evalThreads: number;
  flood: {
    /** Elements per flood request (4,096 = LIMITS.maxBatch). */
    elements: number;
    /** Flood requests in flight. */
    inFlight: number;
    /** Pause after a 503 before the next attempt. */
    retryDelayMs: number;
  };
  /** How long the flood runs before the light requester starts. */
  leadMs: number;
  /** The light requester: 1-element requests one after the other, for this long (and at least `minRequests`). */
  light: { durationMs: number; minRequests: number };
}

export interface FairnessOutcome {
  marks: FairnessMark[];
  notes: string[];
}

const ok = (r: LoadResult) => r.requests;
const others = (r: LoadResult) => Object.fromEntries(Object.entries(r.statuses).filter(([k]) => k !== '503'));

export async function runFairness(config: FairnessConfig, log: (line: string) => void): Promise<FairnessOutcome> {
  const root = tempRoot('pcd-bench-fair-');
  const dataDir = path.join(root, 'data');
  const child = forkServer();
  try {
    const seeded = seedFolder(dataDir, config.directorySize, 16);
    const flooderToken = seeded.token!;
    const lightToken = addLightRequester(dataDir);

    const starting = child.start(
      // Accounts, not tokens: the fairness measured is between two accounts (module header).
      { dataDir, bucketBits: config.bucketBits, adminToken: BENCH_ADMIN_TOKEN, progress: false, backend: config.backend, evalThreads: config.evalThreads, blindedAuth: 'account' },
      openTimeoutMs(seeded.numbers),
    );
    const backend = await loadBackend('sodium');
    const pool = sampleNumbers({ count: config.flood.elements, seed: 'pcd-bench-fairness-pool' });
    const blinded = backend.blindBatch('voprf', pool.map((n) => utf8ToBytes(n))).blinded;
    const { url } = await starting;
    await waitBlindedServing(url, openTimeoutMs(seeded.numbers));
    const cfg = (await createTransport({ baseUrl: url }).request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false })).body!;
    const epoch = cfg.current;
    log(`  server (pid ${child.pid}, ${config.backend}, ${config.evalThreads} eval threads) serving ${seeded.numbers} numbers at ${url}, epoch ${epoch} (${cfg.mode})`);

    const post = (elements: readonly Uint8Array[]): LoadRequest => ({ method: 'POST', path: PATHS.blindedEvaluate, body: Buffer.from(encodeBody({ epoch, elements }, 'msgpack')) });
    const headersFor = (token: string) => ({ 'content-type': CONTENT_TYPE.msgpack, accept: CONTENT_TYPE.msgpack, authorization: `Bearer ${token}` });
    const flooder = { requests: [post(blinded)], headers: headersFor(flooderToken) };
    const lightRequests = blinded.slice(0, 256).map((e) => post([e]));
    const light = () =>
      runLoad(url, { requests: lightRequests, headers: headersFor(lightToken), concurrency: 1, durationMs: config.light.durationMs, minRequests: config.light.minRequests, maxRequests: 1_000_000 });

    // Warm both paths, then the light requester alone.
    await runLoad(url, { requests: flooder.requests, headers: flooder.headers, concurrency: 1, durationMs: 0, minRequests: 1, maxRequests: 1 });
    await runLoad(url, { requests: lightRequests, headers: headersFor(lightToken), concurrency: 1, durationMs: 0, minRequests: 5, maxRequests: 5 });
    const idle = fairnessMark(config, 'idle', await light());
    const run = await beside(url, flooder, config, light);
    const flooded = fairnessMark(config, 'flood', run.light, run.flood);

    for (const m of [idle, flooded]) {
      const l = m.light;
      log(
        `  ${m.name}: ${l.ok} of ${l.sent} got 200 in ${(m.durationMs / 1000).toFixed(1)} s, p50 ${l.latencyMs.p50.toFixed(1)} ms, p99 ${l.latencyMs.p99.toFixed(1)} ms, max ${l.latencyMs.max.toFixed(1)} ms` +
          (l.rejected503 ? `, ${l.rejected503} x 503` : '') +
          (m.flooder ? `; flooder: ${m.flooder.ok} x 200, ${m.flooder.rejected503} x 503, ${Math.round(m.flooder.elementsPerSec).toLocaleString('en-US')} elements/s` : ''),
      );
    }
    return {
      marks: [idle, flooded],
      notes: [
        `Fairness: one server child (${config.backend}, ${config.evalThreads} evaluator threads, ${seeded.numbers} numbers); the flooder keeps ${config.flood.inFlight} requests of ${config.flood.elements} elements in flight and retries ${config.flood.retryDelayMs} ms after a 503 (ignoring Retry-After, as an abusive client would); the light requester, another account, sends 1-element requests one at a time, starting ${config.leadMs} ms after the flood. Latency is of the light requester's 200s.`,
      ],
    };
  } finally {
    await child.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** The light requester: a second account, registered in the store before the server opens it; its token. */
function addLightRequester(dataDir: string): string {
  const store = Store.open(dataDir);
  try {
    const [number] = sampleNumbers({ count: 1, seed: 'pcd-bench-fairness-light', exclude: (n) => store.numberRegistered(n) });
    return store.createAccount({ email: 'light-requester@bench.invalid', numbers: [number!], mask: 1 }, Date.now()).token;
  } finally {
    store.close();
  }
}

/** The flood, then the light requester once the flood's backlog is full (`leadMs` later); the flood stops when the light run is done. */
async function beside(
  url: string,
  flooder: { requests: LoadRequest[]; headers: Record<string, string> },
  config: FairnessConfig,
  light: () => Promise<LoadResult>,
): Promise<{ light: LoadResult; flood: LoadResult }> {
  let stopFlood!: () => void;
  const stop = new Promise<void>((resolve) => (stopFlood = resolve));
  const flooding = runLoad(url, {
    requests: flooder.requests,
    headers: flooder.headers,
    concurrency: config.flood.inFlight,
    durationMs: Number.POSITIVE_INFINITY,
    minRequests: 0,
    maxRequests: Number.MAX_SAFE_INTEGER,
    retryDelayMs: config.flood.retryDelayMs,
    stop,
  });
  let underFlood: LoadResult;
  try {
    await new Promise((r) => setTimeout(r, config.leadMs));
    underFlood = await light();
  } finally {
    stopFlood();
  }
  return { light: underFlood, flood: await flooding };
}

/** The light requester's run as a mark, and with a flood, what the flooder got. */
function fairnessMark(config: FairnessConfig, phase: FairnessMark['phase'], l: LoadResult, flood?: LoadResult): FairnessMark {
  const s = summarize(l.latenciesMs);
  const retry = flood?.retryAfterSeconds ?? [];
  return {
    section: 'fairness',
    name: phase === 'flood' ? `fairness: 1-element requests while another account floods ${config.flood.elements}-element batches` : 'fairness: the same 1-element requests, idle server',
    phase,
    backend: config.backend,
    evalThreads: config.evalThreads,
    durationMs: l.durationMs,
    ...(flood
      ? {
          flooder: {
            elementsPerRequest: config.flood.elements,
            inFlight: config.flood.inFlight,
            retryDelayMs: config.flood.retryDelayMs,
            ok: ok(flood),
            rejected503: flood.statuses['503'] ?? 0,
            otherErrors: others(flood),
            elementsPerSec: (ok(flood) * config.flood.elements) / (flood.durationMs / 1000),
            ...(retry.length > 0 ? { retryAfterSeconds: { min: Math.min(...retry), max: Math.max(...retry) } } : {}),
          },
        }
      : {}),
    light: {
      elementsPerRequest: 1,
      sent: l.requests + l.errors,
      ok: ok(l),
      rejected503: l.statuses['503'] ?? 0,
      otherErrors: others(l),
      latencyMs: { mean: s.mean, median: s.median, p50: s.p50, p95: s.p95, p99: s.p99, min: s.min, max: s.max },
    },
  };
}
