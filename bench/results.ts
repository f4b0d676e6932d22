/**
 * The shape of `bench/results/results.json`: the machine, the versions, the
 * parameters, one flat list of named marks (every section's measurements,
 * each tagged with its section), then what is derived from them in the same
 * run: ratios between designs, and projections (always labelled as such).
 */
import type { DesignName } from '../shared/messages.ts';
import type { OprfMode } from '../shared/oprf.ts';
import type { MachineInfo, TreeState } from './machine.ts';
import type { Summary, TimedMark } from './stats.ts';

export const RESULTS_SCHEMA = 'pcd-bench/1';
export const SECTIONS = ['crypto', 'http', 'bandwidth', 'build', 'reverse'] as const;
export type Section = (typeof SECTIONS)[number];

/** One crypto operation (reference backend), timed per call; `items` per call for batch operations. */
export interface CryptoMark extends TimedMark {
  section: 'crypto';
  name: string;
  /** What one item is: 'number', 'element'. */
  op: string;
  backend: string;
  mode?: OprfMode;
  /** Items (numbers, elements) one call handles. */
  batch: number;
  itemsPerSec: number;
  usPerItem: number;
}

export type HttpShape = 'single' | 'sync-100' | 'sync-1000' | 'bucket';

export type LatencyMs = Omit<Summary, 'count'>;

/** Closed-loop load on a real server over loopback. */
export interface HttpMark {
  section: 'http';
  name: string;
  design: DesignName;
  shape: HttpShape;
  /** 'throughput' (several requests in flight) or 'latency' (one at a time, idle server). */
  phase: 'throughput' | 'latency';
  endpoint: string;
  numbersPerRequest: number;
  concurrency: number;
  requests: number;
  lookups: number;
  /** Requests that failed (not counted in requests or lookups), by status code or socket error. */
  errors: number;
  errorKinds: Record<string, number>;
  durationMs: number;
  requestsPerSec: number;
  lookupsPerSec: number;
  latencyMs: LatencyMs;
  /** Server process CPU time (user + system) spent per request and per number looked up. */
  serverCpuMsPerRequest: number;
  serverCpuUsPerLookup: number;
  /** Server CPU time / wall time: near 1 means the server's core was saturated. */
  serverCpuShare: number;
  requestBodyBytes: number;
  replyBodyBytes: number;
}

export interface BandwidthExchange {
  /** Route pattern, e.g. 'POST /v1/blinded/evaluate'. */
  route: string;
  requests: number;
  bodySent: number;
  bodyReceived: number;
}

/** Bytes one client needs to look `lookups` numbers up, from a cold start. */
export interface BandwidthMark {
  section: 'bandwidth';
  name: string;
  design: DesignName;
  bucketBits?: number;
  directorySize: number;
  /** Numbers looked up in one go (1: a single lookup; more: a contact sync). */
  lookups: number;
  requests: number;
  /** Request and reply bodies as the transport counts them. */
  bodyBytesSent: number;
  bodyBytesReceived: number;
  /** Everything on the TCP connection: HTTP headers and bodies, both ways. */
  wireBytesSent: number;
  wireBytesReceived: number;
  bodyBytesPerLookup: number;
  wireBytesPerLookup: number;
  exchanges: BandwidthExchange[];
  /** The blinded config fetch is once per epoch per client, so it is listed but also reported apart. */
  configWireBytes?: number;
}

/** Opening a server over a directory of `numbers`: time and memory of one design (or the bare directory index). */
export interface BuildMark {
  section: 'build';
  name: string;
  /** 'directory': the shared index only (no design); else that design on top of it. */
  design: DesignName | 'directory';
  numbers: number;
  /** Worker threads of the blinded build (1: inline). */
  threads?: number;
  /** Wall time to open (directory load + the design's build). */
  seconds: number;
  /** The design's own build time (blinded: its reported build), without the directory load. */
  buildSeconds: number;
  numbersPerSec: number;
  rssBytes: number;
  rssDeltaBytes: number;
  heapUsedDeltaBytes: number;
  /** ArrayBuffer memory (typed arrays: indexes, buckets) after open, minus before. */
  arrayBuffersDeltaBytes: number;
  peakRssBytes: number;
  /** The shared directory index (KeyTable) arrays. */
  directoryIndexBytes: number;
  /** Blinded: the epoch cache file written for this build (its tags and masks). */
  epochCacheBytes?: number;
  /** Blinded: tag collisions merged by the build. */
  collisions?: number;
}

/** Reversing a hashed log: enumerate a numbering-plan range and hash every number. */
export interface ReverseMark {
  section: 'reverse';
  name: string;
  /** The range as a pattern, e.g. '+1415555XXXX'. */
  range: string;
  rangeSize: number;
  /** Numbers hashed (the whole range when measured). */
  enumerated: number;
  seconds: number;
  hashesPerSec: number;
  hasher: string;
  /** Hashes in the log being reversed, and how many the enumeration recovered. */
  targets: number;
  targetsInRange: number;
  recovered: number;
}

export type Mark = CryptoMark | HttpMark | BandwidthMark | BuildMark | ReverseMark;

export interface Ratio {
  name: string;
  value: number;
  /** How it was formed, from marks of this run. */
  formula: string;
  section: Section;
}

/** An extrapolation from measured marks; never a measurement. */
export interface Projection {
  projection: true;
  section: Section;
  name: string;
  /** The measurement it extrapolates from. */
  basis: string;
  assumption: string;
  /** `x`: what is projected to (numbers in a directory, a range size, bucket bits); `value` in `unit`. */
  rows: { label: string; x: number; value: number; unit: 's' | 'bytes' }[];
}

export interface SectionRun {
  section: Section;
  startedAt: string;
  seconds: number;
  /** Set when this section was carried over from an earlier results.json (a run with --only). */
  carriedOverFrom?: string;
  error?: string;
}

export interface BenchResults {
  schema: typeof RESULTS_SCHEMA;
  date: string;
  profile: 'quick' | 'full' | 'tiny';
  machine: MachineInfo;
  versions: Record<string, string>;
  tree: TreeState;
  /** Every knob of this run (sizes, durations, concurrency, bucket bits...). */
  parameters: Record<string, unknown>;
  /** How the HTTP load generator and the server shared the machine. */
  setup: Record<string, string>;
  sections: SectionRun[];
  marks: Mark[];
  ratios: Ratio[];
  projections: Projection[];
  notes: string[];
  /** Folded mark return values (see bench/stats.ts sink). */
  sink: number;
  durationSeconds: number;
}
