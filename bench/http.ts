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
 *
 * Here the phases of a run, in order; the server children and the requests
 * prepared for them are in bench/http-servers.ts, the slices of load, token
 * supplies and marks in bench/http-measure.ts.
 */
import { CONTENT_TYPE, encodeBody } from '../shared/codec.ts';
import { DESIGNS, PATHS, type DesignName } from '../shared/messages.ts';
import type { BackendName, OprfMode } from '../shared/suite.ts';
import { DEFAULT_SIZE_CLASSES, type BlindedAuth } from '../shared/tokens.ts';
import type { PopulationOptions } from '../workload/population.ts';
import type { ScriptOptions } from '../workload/script.ts';
import type { Usage } from '../harness/child.ts';
import type { LoadRequest } from './loadgen.ts';
import type { HttpGroup, HttpMark, HttpShape, PaddingRow } from './results.ts';
import { logNormalSizes, paddingRow, workloadRequestSizes, type LogNormalMix } from './tokens.ts';
import { BENCH_SEED, tempRoot } from './seeding.ts';
import { formatBytes } from './stats.ts';
import { HttpServers, PreparedRequests, type Target } from './http-servers.ts';
import { HttpMeasurements, TokenSupplies, type HttpPhaseConfig, type Run } from './http-measure.ts';

export type { HttpPhaseConfig };

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
  /**
   * Start every server of the run at once, before anything is measured, instead of each before the first phase
   * that uses it (the tiny profile: the starts overlap; the servers then idle until their phases, as they do anyway).
   */
  startServersTogether?: boolean;
}

export interface HttpOutcome {
  marks: HttpMark[];
  setup: Record<string, string>;
  notes: string[];
  padding: PaddingRow[];
}

/**
 * What the phases of one run share: the main server (all three designs),
 * the requests prepared ahead, the token supplies and the marks so far.
 */
class HttpSession {
  readonly supplies = new TokenSupplies();
  readonly measured: HttpMeasurements;
  readonly headers: Record<string, string>;

  constructor(
    readonly config: HttpConfig,
    readonly servers: HttpServers,
    readonly main: Target,
    readonly prepared: PreparedRequests,
    log: (line: string) => void,
  ) {
    this.measured = new HttpMeasurements(config.warmupMs, log);
    this.headers = {
      'content-type': CONTENT_TYPE.msgpack,
      accept: CONTENT_TYPE.msgpack,
      authorization: `Bearer ${servers.seeded.token!}`,
    };
  }

  measure(runs: Run[], rounds: number): Promise<void> {
    return this.measured.measure(runs, rounds);
  }

  /** No more slices than the phase's minimum requests: a slice holds at least one request. */
  roundsFor(p: { minRequests: number }): number {
    return Math.max(1, Math.min(this.config.rounds, p.minRequests));
  }

  /** The same server configuration as the main server with the account in place of tokens: the twin the variants reuse. */
  twin(): Promise<Target> {
    return serverOf(this.servers, twinSpec(this.config));
  }

  /** A run of `design`'s lookups of `n` numbers on `target`: blinded evaluate says its elements, and with tokens takes them from the class's supply. */
  async lookupRun(target: Target, group: HttpGroup, design: DesignName, shape: HttpShape, phase: HttpMark['phase'], n: number, p: HttpPhaseConfig, warmup: boolean): Promise<Run> {
    const { requests, elements } = await this.prepared.requestsFor(target, design, n);
    const endpoint = `${requests[0]!.method} ${requests[0]!.path}`;
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
      headers: this.headers,
      p,
      warmup,
      ...(evaluate ? { elementsPerRequest: elements } : {}),
      ...(evaluate && target.auth === 'token' ? { tokens: this.supplies.supplyFor(target, elements) } : {}),
    };
  }

  /** The three designs on the main server, one run each. */
  designRuns(shape: HttpShapeConfig, phase: HttpMark['phase'], p: HttpPhaseConfig): Promise<Run[]> {
    return Promise.all(DESIGNS.map((design) => this.lookupRun(this.main, 'designs', design, shape.shape, phase, shape.numbers, p, phase === 'throughput' && shape.numbers <= 100)));
  }

  /** Blinded evaluate on each of several servers, taking turns, shape after shape. */
  async compare(group: HttpGroup, servers: Target[], shapes: readonly HttpShapeConfig[]): Promise<void> {
    for (const shape of shapes) {
      const runs = await Promise.all(servers.map((target) => this.lookupRun(target, group, 'blinded', shape.shape, 'throughput', shape.numbers, shape, shape.numbers <= 100)));
      await this.measure(runs, this.roundsFor(shape));
    }
  }
}

/** A server of a run, as HttpServers.serverFor takes it: backend, evaluator threads, designs, OPRF mode, how blinded evaluate is paid. */
type ServerSpec = readonly [backend: BackendName, evalThreads: number, designs: readonly DesignName[], mode: OprfMode, auth: BlindedAuth];

const serverOf = (servers: HttpServers, spec: ServerSpec): Promise<Target> => servers.serverFor(...spec);
/** The main server: all three designs, evaluate paid with tokens. */
const mainSpec = (c: HttpConfig): ServerSpec => [c.backend, c.evalThreads, DESIGNS, c.mode, 'token'];
/** The twin: the main server's configuration, paid with the account. */
const twinSpec = (c: HttpConfig): ServerSpec => [c.backend, c.evalThreads, DESIGNS, c.mode, 'account'];
/** A server per crypto backend, blinded only and paid with the account; the main configuration's is its twin. */
const backendSpecs = (c: HttpConfig, backends: readonly BackendName[]): ServerSpec[] => backends.map((b) => (b === c.backend ? twinSpec(c) : [b, c.evalThreads, ['blinded'], c.mode, 'account']));
/** A sodium server per evaluator thread count, blinded only and paid with the account; the main configuration's is its twin. */
const threadSpecs = (c: HttpConfig, counts: readonly number[]): ServerSpec[] => counts.map((n) => (n === c.evalThreads && c.backend === 'sodium' ? twinSpec(c) : ['sodium', n, ['blinded'], c.mode, 'account']));
/** Plain and blinded on a server whose epochs are in the other OPRF mode, paid with tokens as the main server is. */
const otherModeSpec = (c: HttpConfig): ServerSpec => [c.backend, c.evalThreads, ['plain', 'blinded'], c.mode === 'voprf' ? 'oprf' : 'voprf', 'token'];

/** Every server the run's phases use, each once. */
function serverSpecs(c: HttpConfig): ServerSpec[] {
  const specs = [
    mainSpec(c),
    ...(c.auth ? [twinSpec(c)] : []),
    ...(c.backends ? backendSpecs(c, c.backends.backends) : []),
    ...(c.threads ? threadSpecs(c, c.threads.counts) : []),
    ...(c.otherMode ? [otherModeSpec(c)] : []),
  ];
  return [...new Map(specs.map((x) => [JSON.stringify(x), x])).values()];
}

export async function runHttp(config: HttpConfig, log: (line: string) => void): Promise<HttpOutcome> {
  const servers = new HttpServers(tempRoot('pcd-bench-http-'), config, log);
  try {
    const seeded = servers.seed(config.directorySize, config.poolSize);
    const pool = seeded.contacts.map((c) => c.number);
    log(`  directory of ${seeded.numbers} numbers seeded in ${seeded.seedSeconds.toFixed(1)} s; pool of ${pool.length} numbers (${seeded.contacts.filter((c) => c.registered).length} registered)`);
    // Started together, the later phases find theirs running (serverFor keeps each by its configuration); every start
    // settled before a failure is thrown, so that close() finds no server half started.
    if (config.startServersTogether) {
      const failed = (await Promise.allSettled(serverSpecs(config).map((spec) => serverOf(servers, spec)))).find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    }
    const main = await serverOf(servers, mainSpec(config));
    const s = new HttpSession(config, servers, main, new PreparedRequests(pool, seeded.token!), log);

    await measureDesigns(s);
    const mainUsage = await main.child.usage();
    log(`  lookup requests prepared ahead through each design's client (hashing, blinding with sodium, tokens and padding) in ${s.prepared.seconds.toFixed(1)} s so far`);
    if (config.auth) await s.compare('auth', [main, await s.twin()], config.auth.shapes);
    if (config.issuance) await s.measure(issuanceRuns(s, config.issuance), s.roundsFor(config.issuance));
    if (config.backends) await s.compare('backends', await backendServers(s, config.backends.backends), config.backends.shapes);
    if (config.threads) await s.compare('threads', await threadServers(s, config.threads.counts), config.threads.shapes);
    if (config.otherMode) await measureOtherMode(s, config.otherMode.single);

    const classes = main.minter?.classes ?? [...DEFAULT_SIZE_CLASSES];
    const padding = paddingRows(s, classes);
    for (const p of padding) log(`  padding, ${p.name}: ${p.sent.toLocaleString('en-US')} elements sent for ${p.asked.toLocaleString('en-US')} asked (${p.ratio.toFixed(3)}x${p.syncRatio !== undefined && p.singles > 0 ? `; syncs alone ${p.syncRatio.toFixed(3)}x` : ''})`);
    const minted = s.supplies.minted();
    if (minted.n > 0) log(`  ${minted.n.toLocaleString('en-US')} tokens minted between slices in ${minted.s.toFixed(1)} s (not timed)`);
    return { marks: s.measured.marks, padding, setup: httpSetup(s, mainUsage, classes, minted), notes: httpNotes(config.rounds, s.measured.errorNotes) };
  } finally {
    await servers.close();
  }
}

/** Each request shape with the three designs taking turns on the main server; bucket fetches; then each shape with one request in flight. */
async function measureDesigns(s: HttpSession): Promise<void> {
  const { config, main } = s;
  for (const shape of config.shapes) await s.measure(await s.designRuns(shape, 'throughput', shape), s.roundsFor(shape));
  if (config.bucket) {
    const count = 2 ** config.bucketBits;
    const requests: LoadRequest[] = Array.from({ length: Math.min(count, 4096) }, (_, b) => ({ method: 'GET', path: PATHS.blindedBucket(main.epoch, b) }));
    await s.measure(
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
    for (const shape of config.shapes) await s.measure(await s.designRuns(shape, 'latency', { ...config.latency, concurrency: 1 }), s.roundsFor(config.latency));
  }
}

/** POST /v1/tokens on the main server, one run per count of tokens per request, the token requests prepared with its keys. */
function issuanceRuns(s: HttpSession, iss: NonNullable<HttpConfig['issuance']>): Run[] {
  const { main } = s;
  const minter = main.minter!;
  return iss.perRequest.map((k): Run => {
    const requests = Array.from({ length: 16 }, (): LoadRequest => ({
      method: 'POST',
      path: PATHS.tokens,
      body: Buffer.from(encodeBody({ epoch: main.epoch, sizeClass: iss.sizeClass, requests: minter.tokenRequests(iss.sizeClass, k) }, 'msgpack')),
    }));
    return { target: main, group: 'issuance', design: 'blinded', shape: 'tokens', phase: 'throughput', endpoint: `POST ${PATHS.tokens}`, numbersPerRequest: k, requests, headers: s.headers, p: iss, warmup: true };
  });
}

/** The servers of specs, started one after the other where not running yet. */
async function serversOf(s: HttpSession, specs: readonly ServerSpec[]): Promise<Target[]> {
  const servers: Target[] = [];
  for (const spec of specs) servers.push(await serverOf(s.servers, spec));
  return servers;
}

/** A server per crypto backend (backendSpecs). */
const backendServers = (s: HttpSession, backends: readonly BackendName[]): Promise<Target[]> => serversOf(s, backendSpecs(s.config, backends));

/** A sodium server per evaluator thread count (threadSpecs). */
const threadServers = (s: HttpSession, counts: readonly number[]): Promise<Target[]> => serversOf(s, threadSpecs(s.config, counts));

/** Single lookups, plain and blinded taking turns, on a server whose epochs are in the other OPRF mode. */
async function measureOtherMode(s: HttpSession, p: HttpPhaseConfig): Promise<void> {
  const target = await serverOf(s.servers, otherModeSpec(s.config));
  const runs = await Promise.all((['plain', 'blinded'] as const).map((design) => s.lookupRun(target, 'modes', design, 'single', 'throughput', 1, p, true)));
  await s.measure(runs, s.roundsFor(p));
}

/** Padding: the shapes as prepared (their elements counted from the bodies), then mixes of request sizes. */
function paddingRows(s: HttpSession, classes: readonly number[]): PaddingRow[] {
  const { config, main } = s;
  const padding: PaddingRow[] = [];
  const shapes = new Map<number, HttpShape>();
  for (const x of [...config.shapes, ...(config.auth?.shapes ?? [])]) shapes.set(x.numbers, x.shape);
  for (const [n, shape] of [...shapes].sort((a, b) => a[0] - b[0])) {
    const p = s.prepared.get(main, 'blinded', n);
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
  return padding;
}

/** The report's setup lines: the servers, how evaluate is paid, the load generator, the directory and the requests. */
function httpSetup(s: HttpSession, mainUsage: Usage, classes: readonly number[], minted: { n: number; s: number }): Record<string, string> {
  const { config, main } = s;
  const { seeded } = s.servers;
  const serverLines = [...s.servers.targets.values()].map((t) => {
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
    server: `child process (pid ${main.child.pid}) serving ${DESIGNS.join(', ')} on ${main.url} with the ${main.backend} backend; requests, plain and hashed lookups and bucket fetches on its one event loop, ${evaluatorText}. Server CPU is all its threads, so above 100 % it used more than one core`,
    blindedAuth: `the main server takes Privacy Pass tokens on blinded evaluate (the default): each request spends a token, padded to its size class (${classes.join(', ')}), so its blinded rows count the numbers asked for and pay for the padding; the twin with \`blindedAuth: 'account'\` is the same configuration paid with the account, and the backend and thread-count servers take the account too`,
    servers: `one child per (backend, evaluator threads, auth), each over its own copy of the seeded store with its own epoch: ${serverLines.join('; ')}`,
    loadGenerator: `this process: closed loop over keep-alive node:http connections, bodies encoded and blinded (sodium) before timing; tokens minted with the issuer's key between slices (${minted.n.toLocaleString('en-US')} in ${minted.s.toFixed(1)} s, not timed), one per request`,
    directory: `${seeded.numbers} numbers (synth/, seed '${BENCH_SEED}'), blinded epochs: ${config.mode}, bucketBits ${config.bucketBits}`,
    requests: `numbers drawn from a contact list of ${seeded.contacts.length} (half registered), and for a request of more, numbers outside it (every request holds distinct numbers: a client evaluates each once); the same prepared requests are cycled, each with a token of its own where the server takes tokens`,
    serverRssAfter: formatBytes(mainUsage.memory.rss),
  };
}

function httpNotes(rounds: number, errorNotes: readonly string[]): string[] {
  return [
    'HTTP: lookups/s counts numbers answered per second (requests/s x numbers per request). For blinded it is the evaluate endpoint, the crypto-bound part; the bucket fetch is a separate, cacheable GET measured on its own row (one bucket serves every number that falls in it).',
    'HTTP: latency is per request, measured by the load generator at the stated concurrency (c); with c > 1 on a saturated server it includes queueing. Rows marked "idle" have one request in flight.',
    `HTTP: for each request shape the designs (or the servers of a backend or thread-count comparison) take turns in up to ${rounds} slice${rounds > 1 ? 's' : ''} each, so background load on the shared machine falls on all of them alike.`,
    'HTTP: rows with a backend and thread count in parentheses are blinded evaluate on servers that differ only in that setting (`--backend`, `--eval-threads`); the load generator shares the machine\'s cores with the server, so on 2 cores a second evaluator thread competes with it.',
    'HTTP, tokens: blinded evaluate on the main server (and the other-mode server) is paid with a Privacy Pass token per request, padded to the token\'s size class; the tokens are minted by the benchmark with the issuer\'s key (the same RSA-PSS signature a blind issuance yields; one per key checked with privacypass-ts first), between load slices, never on the clock. Token / account rows are twin servers, one per auth, taking turns.',
    ...(errorNotes.length > 0 ? [`HTTP: failed requests (left out of the rates): ${errorNotes.join(' ')}`] : []),
  ];
}
