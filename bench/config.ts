/**
 * The three profiles of the benchmark: `full` (the default, for the
 * writeup: long enough for stable figures, sizes as large as the reference
 * crypto allows in tens of minutes), `quick` (small sizes, about a minute,
 * for smoke runs) and `tiny` (seconds; what test/bench.test.ts runs).
 */
import type { BandwidthConfig } from './bandwidth.ts';
import type { BuildConfig } from './build.ts';
import type { CryptoConfig } from './crypto.ts';
import type { HttpConfig } from './http.ts';
import type { ReverseConfig } from './reverse.ts';

export type Profile = 'quick' | 'full' | 'tiny';

export interface BenchConfig {
  crypto: CryptoConfig;
  http: HttpConfig;
  bandwidth: BandwidthConfig;
  build: BuildConfig;
  reverse: ReverseConfig;
}

const PROJECT_TO = [1e7, 1e9];
const PROJECT_BITS = [0, 4, 8, 12, 16, 20, 24];
/** Ranges only projected (ranges enumerated in part are projected to their whole size as well). */
const PROJECTED_RANGES = [{ label: '+1XXXXXXXXXX (all of +1, an upper bound)', size: 1e10 }];

export function configFor(profile: Profile, cores: number): BenchConfig {
  const projectCores = [...new Set([1, cores, 64])].sort((a, b) => a - b);
  switch (profile) {
    case 'tiny':
      return {
        crypto: {
          budget: { ms: 15, minSamples: 1, warmupMs: 0 },
          bigBudget: { ms: 0, minSamples: 1, maxSamples: 1, warmupMs: -1 },
          batches: [1, 4],
          bucketEntries: 256,
        },
        http: {
          directorySize: 120,
          bucketBits: 2,
          mode: 'voprf',
          poolSize: 40,
          shapes: [
            { shape: 'single', numbers: 1, concurrency: 2, durationMs: 150, minRequests: 2, maxRequests: 10_000 },
            { shape: 'sync-100', numbers: 100, concurrency: 1, durationMs: 0, minRequests: 1, maxRequests: 1 },
          ],
          bucket: { concurrency: 2, durationMs: 100, minRequests: 2, maxRequests: 10_000 },
          warmupMs: 0,
          rounds: 1,
        },
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
      };
    case 'quick':
      return {
        crypto: {
          budget: { ms: 200, minSamples: 3 },
          bigBudget: { ms: 0, minSamples: 2, warmupMs: -1 },
          batches: [1, 100],
          bucketEntries: 4096,
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
        },
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
      };
    case 'full':
      return {
        crypto: {
          budget: { ms: 2000, minSamples: 5 },
          bigBudget: { ms: 4000, minSamples: 3, warmupMs: -1 },
          batches: [1, 10, 100, 1000],
          bucketEntries: 4096,
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
        },
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
      };
  }
}
