/**
 * The three profiles of the benchmark: `full` (the default, for the
 * writeup: long enough for stable figures, sizes as large as the reference
 * crypto allows in tens of minutes), `quick` (small sizes, about a minute,
 * for smoke runs) and `tiny` (seconds; what test/bench.test.ts runs).
 */
import { DESIGNS } from '../shared/designs/index.ts';
import type { BandwidthConfig } from './bandwidth.ts';
import type { BuildConfig } from './build.ts';
import type { CryptoConfig } from './crypto.ts';
import type { FairnessConfig } from './fairness.ts';
import type { HttpConfig, HttpShapeConfig } from './http.ts';
import type { ReverseConfig } from './reverse.ts';
import type { ScaleConfig } from './scale.ts';
import type { StoreConfig } from './store.ts';
import type { NodesConfig } from './nodes.ts';
import type { WorkloadConfig, WorkloadStudy } from './workload.ts';
import { WORKLOAD_BOOKS } from './tokens.ts';

export type Profile = 'quick' | 'full' | 'tiny';

export interface BenchConfig {
  /**
   * `fresh`: every server in a new process, so that memory is a fresh process's; `reused`: a closed server's process
   * serves the next (harness/fork.ts reuseServerProcesses), a second or so less per server, for the tiny profile.
   */
  serverProcesses: 'fresh' | 'reused';
  crypto: CryptoConfig;
  http: HttpConfig;
  fairness: FairnessConfig;
  bandwidth: BandwidthConfig;
  build: BuildConfig;
  scale: ScaleConfig;
  store: StoreConfig;
  nodes: NodesConfig;
  reverse: ReverseConfig;
  workload: WorkloadConfig;
}

/** Evaluator threads compared in the http section (`--eval-threads 1` vs `2`). */
const THREAD_COUNTS = [1, 2];

const once = (shape: HttpShapeConfig['shape'], numbers: number, concurrency: number): HttpShapeConfig => ({ shape, numbers, concurrency, durationMs: 0, minRequests: concurrency, maxRequests: concurrency });

const PROJECT_TO = [1e7, 1e9];
const PROJECT_BITS = [0, 4, 8, 12, 16, 20, 24];
/** Ranges only projected (ranges enumerated in part are projected to their whole size as well). */
const PROJECTED_RANGES = [{ label: '+1XXXXXXXXXX (all of +1, an upper bound)', size: 1e10 }];

/**
 * The full profile's studies beside the default month (bench/workload.ts WorkloadStudy):
 * - a carrier NAT: four users behind each IP address;
 * - daisy-chained orders: 90 days, a log kept 30 days, an order every 30;
 * - densities: registered numbers 18 % and 50 % of the plan (the default: 2.4 %), for the model of workload/model.ts.
 */
const WORKLOAD_STUDIES: WorkloadStudy[] = [
  { name: 'carrier NAT, 4 users per IP', designs: ['blinded'], bucketBits: [8, 12, 16], usersPerIp: 4 },
  { name: '90 days, orders of 30', designs: ['plain', 'blinded'], bucketBits: [12], script: { days: 90 }, orderDays: 30 },
  { name: 'density 18 % (plan of 4,000)', designs: ['blinded'], bucketBits: [4, 8, 12], population: { blocks: 4, blockDigits: 3 } },
  { name: 'density 50 % (plan of 2,000)', designs: ['blinded'], bucketBits: [4, 8, 12], population: { blocks: 2, blockDigits: 3, people: 1500, registeredShare: 2 / 3 } },
];

/** What a profile takes from the machine: its cores, and the core counts the build projects to. */
interface Machine {
  cores: number;
  projectCores: number[];
}

export function configFor(profile: Profile, cores: number): BenchConfig {
  const projectCores = [...new Set([1, cores, 64])].sort((a, b) => a - b);
  return PROFILES[profile]({ cores, projectCores });
}

/**
 * Seconds; what test/bench.test.ts runs. Its measurement windows are 50-150 ms: every mark still gets its
 * `minRequests` and, on this profile's machines, dozens of requests; its HTTP servers start together.
 */
function tinyConfig({ projectCores }: Machine): BenchConfig {
  return {
    serverProcesses: 'reused',
    crypto: {
      budget: { ms: 8, minSamples: 1, warmupMs: 0 },
      bigBudget: { ms: 0, minSamples: 1, maxSamples: 1, warmupMs: -1 },
      batches: [1, 4],
      finalizeBatches: [4],
      split: { elements: 4, chunks: 2 },
      psiItems: 4,
      bucketEntries: 256,
      tokens: { slowSamples: 1 },
    },
    http: {
      directorySize: 120,
      bucketBits: 2,
      mode: 'voprf',
      poolSize: 100,
      shapes: [
        { shape: 'single', numbers: 1, concurrency: 2, durationMs: 75, minRequests: 2, maxRequests: 10_000 },
        { shape: 'sync-100', numbers: 100, concurrency: 1, durationMs: 0, minRequests: 1, maxRequests: 1 },
      ],
      bucket: { concurrency: 2, durationMs: 50, minRequests: 2, maxRequests: 10_000 },
      warmupMs: 0,
      rounds: 1,
      startServersTogether: true,
      backend: 'sodium',
      evalThreads: 2,
      backends: { backends: ['noble', 'sodium'], shapes: [once('sync-100', 100, 1)] },
      otherMode: { single: { concurrency: 4, durationMs: 75, minRequests: 2, maxRequests: 1_000_000 } },
      threads: { counts: THREAD_COUNTS, shapes: [once('sync-100', 100, 2)] },
      auth: {
        shapes: [
          { shape: 'single', numbers: 1, concurrency: 2, durationMs: 75, minRequests: 2, maxRequests: 10_000 },
          once('sync-100', 100, 1),
        ],
      },
      issuance: { perRequest: [8], sizeClass: 1, concurrency: 2, durationMs: 50, minRequests: 2, maxRequests: 10_000 },
      padding: { logNormal: { ...WORKLOAD_BOOKS, points: 1000 }, workload: { population: { blocks: 2, blockDigits: 3, people: 120, registeredShare: 0.25, degreeMedian: 12, communitySize: 15 }, script: { days: 2, reinstallsPerYear: 60 } } },
    },
    fairness: {
      directorySize: 100,
      bucketBits: 0,
      backend: 'sodium',
      evalThreads: 2,
      flood: { elements: 4096, inFlight: 3, retryDelayMs: 10 },
      leadMs: 100,
      light: { durationMs: 150, minRequests: 3 },
    },
    scale: { sizes: [300], backend: 'sodium', bucketBits: 0, killAfterMs: 200 },
    store: { sizes: [10_000], creates: 50, authentications: 200 },
    nodes: { directorySize: 300, poolSize: 16, designs: ['plain', 'blinded'], concurrency: 2, durationMs: 150, rounds: 1, warmupMs: 0, sizeClasses: [1] },
    bandwidth: { directorySize: 100, bucketBits: [0, 2], lookups: [1, 20], projectTo: PROJECT_TO, projectBits: PROJECT_BITS },
    build: { sizes: [100], blindedSizes: [100], bucketBits: 0, projectTo: PROJECT_TO, projectCores },
    reverse: {
      ranges: [
        { prefix: '+1415555', freeDigits: 3, alsoNoble: true },
        { prefix: '+1415', freeDigits: 7, limit: 10_000 },
      ],
      targetsPerRange: 10,
      projected: PROJECTED_RANGES,
    },
    workload: {
      population: { blocks: 2, blockDigits: 3, people: 120, registeredShare: 0.25, degreeMedian: 12, communitySize: 15 },
      script: { days: 2, conversationsPerDay: 3, reinstallsPerYear: 60 },
      designs: [...DESIGNS],
      bucketBits: [0, 8],
      usersPerIp: 1,
      // The anonymous variants cost 10-15x (the client's blind RSA): test/workload-anonymous.test.ts runs them.
      anonymous: false,
    },
  };
}

/** Small sizes, about a minute, for smoke runs. */
function quickConfig({ cores, projectCores }: Machine): BenchConfig {
  return {
    serverProcesses: 'fresh',
    crypto: {
      budget: { ms: 200, minSamples: 3 },
      bigBudget: { ms: 0, minSamples: 2, warmupMs: -1 },
      batches: [1, 100],
      finalizeBatches: [100, 1000],
      split: { elements: 100, chunks: 4 },
      psiItems: 100,
      bucketEntries: 4096,
      tokens: { slowSamples: 2 },
    },
    http: {
      directorySize: 1000,
      bucketBits: 4,
      mode: 'voprf',
      poolSize: 1000,
      shapes: [
        { shape: 'single', numbers: 1, concurrency: 4, durationMs: 800, minRequests: 10, maxRequests: 100_000 },
        { shape: 'sync-100', numbers: 100, concurrency: 2, durationMs: 800, minRequests: 2, maxRequests: 100_000 },
        { shape: 'sync-1000', numbers: 1000, concurrency: 1, durationMs: 0, minRequests: 1, maxRequests: 100_000 },
      ],
      bucket: { concurrency: 4, durationMs: 800, minRequests: 10, maxRequests: 100_000 },
      warmupMs: 200,
      rounds: 2,
      backend: 'sodium',
      evalThreads: cores,
      backends: { backends: ['noble', 'sodium'], shapes: [{ shape: 'sync-100', numbers: 100, concurrency: 4, durationMs: 1500, minRequests: 8, maxRequests: 100_000 }] },
      otherMode: { single: { concurrency: 4, durationMs: 800, minRequests: 10, maxRequests: 1_000_000 } },
      threads: {
        counts: THREAD_COUNTS,
        shapes: [
          { shape: 'sync-100', numbers: 100, concurrency: 4, durationMs: 1500, minRequests: 8, maxRequests: 100_000 },
          { shape: 'sync-4096', numbers: 4096, concurrency: 1, durationMs: 0, minRequests: 2, maxRequests: 100_000 },
        ],
      },
      auth: {
        shapes: [
          { shape: 'single', numbers: 1, concurrency: 4, durationMs: 1500, minRequests: 10, maxRequests: 1_000_000 },
          { shape: 'sync-100', numbers: 100, concurrency: 2, durationMs: 1500, minRequests: 4, maxRequests: 100_000 },
          { shape: 'sync-1000', numbers: 1000, concurrency: 2, durationMs: 1500, minRequests: 4, maxRequests: 100_000 },
        ],
      },
      issuance: { perRequest: [8, 64], sizeClass: 1, concurrency: 2, durationMs: 1000, minRequests: 4, maxRequests: 1_000_000 },
      padding: { logNormal: WORKLOAD_BOOKS, workload: { population: {}, script: {} } },
    },
    fairness: {
      directorySize: 1000,
      bucketBits: 4,
      backend: 'sodium',
      evalThreads: cores,
      flood: { elements: 4096, inFlight: 4, retryDelayMs: 10 },
      leadMs: 500,
      light: { durationMs: 3000, minRequests: 20 },
    },
    scale: { sizes: [20_000], backend: 'sodium', bucketBits: 4, killAfterMs: 1000 },
    store: { sizes: [100_000], creates: 50, authentications: 200 },
    nodes: { directorySize: 10_000, poolSize: 200, designs: ['plain', 'blinded'], concurrency: 4, durationMs: 6000, rounds: 3, warmupMs: 500 },
    bandwidth: { directorySize: 1000, bucketBits: [0, 4, 8], lookups: [1, 100], projectTo: PROJECT_TO, projectBits: PROJECT_BITS },
    build: { sizes: [1000, 10_000], blindedSizes: [1000], bucketBits: 0, projectTo: PROJECT_TO, projectCores },
    reverse: {
      ranges: [
        { prefix: '+1415555', freeDigits: 4, alsoNoble: true },
        { prefix: '+1415', freeDigits: 7, limit: 1_000_000 },
      ],
      targetsPerRange: 100,
      projected: PROJECTED_RANGES,
    },
    workload: {
      population: { people: 600, registeredShare: 0.3, degreeMedian: 30 },
      script: { days: 3 },
      designs: [...DESIGNS],
      bucketBits: [0, 4, 8, 12],
      anonymousBucketBits: [0, 8],
      usersPerIp: 1,
    },
  };
}

/** The default, for the writeup. */
function fullConfig({ cores, projectCores }: Machine): BenchConfig {
  return {
    serverProcesses: 'fresh',
    crypto: {
      budget: { ms: 2000, minSamples: 5 },
      bigBudget: { ms: 4000, minSamples: 3, warmupMs: -1 },
      batches: [1, 10, 100, 1000],
      finalizeBatches: [1, 100, 1000],
      split: { elements: 100, chunks: 4 },
      psiItems: 100,
      bucketEntries: 4096,
      tokens: { slowSamples: 5 },
    },
    http: {
      directorySize: 10_000,
      bucketBits: 8,
      mode: 'voprf',
      poolSize: 2000,
      shapes: [
        { shape: 'single', numbers: 1, concurrency: 4, durationMs: 10_000, minRequests: 20, maxRequests: 1_000_000 },
        { shape: 'sync-100', numbers: 100, concurrency: 2, durationMs: 10_000, minRequests: 4, maxRequests: 1_000_000 },
        { shape: 'sync-1000', numbers: 1000, concurrency: 2, durationMs: 15_000, minRequests: 4, maxRequests: 1_000_000 },
      ],
      bucket: { concurrency: 4, durationMs: 10_000, minRequests: 20, maxRequests: 1_000_000 },
      latency: { durationMs: 5000, minRequests: 3, maxRequests: 1_000_000 },
      warmupMs: 2000,
      rounds: 5,
      backend: 'sodium',
      evalThreads: cores,
      backends: { backends: ['noble', 'sodium'], shapes: [{ shape: 'sync-100', numbers: 100, concurrency: 4, durationMs: 10_000, minRequests: 20, maxRequests: 1_000_000 }] },
      otherMode: { single: { concurrency: 4, durationMs: 10_000, minRequests: 20, maxRequests: 1_000_000 } },
      threads: {
        counts: THREAD_COUNTS,
        shapes: [
          { shape: 'sync-100', numbers: 100, concurrency: 4, durationMs: 10_000, minRequests: 20, maxRequests: 1_000_000 },
          { shape: 'sync-4096', numbers: 4096, concurrency: 1, durationMs: 10_000, minRequests: 5, maxRequests: 1_000_000 },
        ],
      },
      auth: {
        shapes: [
          { shape: 'single', numbers: 1, concurrency: 4, durationMs: 10_000, minRequests: 20, maxRequests: 1_000_000 },
          { shape: 'sync-100', numbers: 100, concurrency: 2, durationMs: 10_000, minRequests: 4, maxRequests: 1_000_000 },
          { shape: 'sync-1000', numbers: 1000, concurrency: 2, durationMs: 15_000, minRequests: 4, maxRequests: 1_000_000 },
        ],
      },
      issuance: { perRequest: [8, 64], sizeClass: 1, concurrency: 2, durationMs: 5000, minRequests: 10, maxRequests: 1_000_000 },
      padding: { logNormal: WORKLOAD_BOOKS, workload: { population: {}, script: {} } },
    },
    fairness: {
      directorySize: 10_000,
      bucketBits: 8,
      backend: 'sodium',
      evalThreads: cores,
      flood: { elements: 4096, inFlight: 4, retryDelayMs: 10 },
      leadMs: 1000,
      light: { durationMs: 15_000, minRequests: 50 },
    },
    scale: { sizes: [1_000_000, 10_000_000], backend: 'sodium', bucketBits: 8, killAfterMs: 1000 },
    // Seeding 10^7 numbers into Postgres is the target (at most 5 min).
    store: { sizes: [1_000_000, 10_000_000], creates: 200, authentications: 2000 },
    // Lookups through a Postgres-backed node against a SQLite-backed one, and two nodes on one store: the 10 % target.
    nodes: { directorySize: 100_000, poolSize: 1000, designs: ['plain', 'blinded'], concurrency: 4, durationMs: 60_000, rounds: 6, warmupMs: 2000 },
    bandwidth: {
      directorySize: 10_000,
      bucketBits: [0, 2, 4, 6, 8, 10, 12],
      lookups: [1, 100, 1000],
      projectTo: PROJECT_TO,
      projectBits: PROJECT_BITS,
    },
    build: {
      sizes: [1000, 10_000, 100_000, 1_000_000],
      blindedSizes: [1000, 10_000, 100_000],
      perCoreSize: 10_000,
      bucketBits: 0,
      projectTo: PROJECT_TO,
      projectCores,
    },
    reverse: {
      ranges: [
        { prefix: '+1415555', freeDigits: 4, alsoNoble: true },
        { prefix: '+14150', freeDigits: 6, alsoNoble: true },
        { prefix: '+1415', freeDigits: 7 },
      ],
      targetsPerRange: 1000,
      projected: PROJECTED_RANGES,
    },
    // The default scale of `pcd simulate`, with 16 bucket bits added, and the studies beside it (about 40 minutes on 2 cores, two runs at once).
    // The anonymous variants take hours at this scale (the client's blind RSA): their figures come from the shorter run in the README.
    workload: {
      population: {},
      script: {},
      designs: [...DESIGNS],
      bucketBits: [0, 4, 8, 12, 16],
      anonymous: false,
      usersPerIp: 1,
      parallel: 2,
      studies: WORKLOAD_STUDIES,
    },
  };
}

const PROFILES: { [P in Profile]: (machine: Machine) => BenchConfig } = { tiny: tinyConfig, quick: quickConfig, full: fullConfig };
