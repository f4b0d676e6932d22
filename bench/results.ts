/**
 * The shape of `bench/results/results.json`: the machine, the versions, the
 * parameters, one flat list of named marks (every section's measurements,
 * each tagged with its section), then what is derived from them in the same
 * run: ratios between designs, and projections (always labelled as such).
 */
import type { DesignName } from '../shared/messages.ts';
import type { BackendName, OprfMode } from '../shared/suite.ts';
import type { BlindedAuth } from '../shared/tokens.ts';
import type { MachineInfo, TreeState } from './machine.ts';
import type { Summary, TimedMark } from './stats.ts';
import type { WorkloadMark, WorkloadResult } from './workload.ts';

export const RESULTS_SCHEMA = 'pcd-bench/2';
export const SECTIONS = ['crypto', 'http', 'fairness', 'bandwidth', 'build', 'scale', 'store', 'nodes', 'reverse', 'workload'] as const;
export type Section = (typeof SECTIONS)[number];

/**
 * Who computed a crypto mark: one of our two suite backends (shared/suite.ts),
 * a peer library measured in the same run for comparison (OpenMined psi.js),
 * or `any` for work that does not touch the OPRF (hashing, normalisation).
 */
export type CryptoImpl = BackendName | 'psi.js' | 'any';

/** One crypto operation, timed per call; `items` per call for batch operations. */
export interface CryptoMark extends TimedMark {
  section: 'crypto';
  name: string;
  /** The operation without the implementation: marks of one `op` and batch compare across implementations. */
  operation: string;
  /** What one item is: 'number', 'element', 'item'. */
  op: string;
  backend: CryptoImpl;
  mode?: OprfMode;
  /** Items (numbers, elements) one call handles. */
  batch: number;
  itemsPerSec: number;
  usPerItem: number;
  /** Privacy Pass marks (bench/crypto.ts): 'tokens'; their `backend` is 'any' (not the OPRF suite). */
  group?: 'tokens';
  /** Who computed a 'tokens' mark: node:crypto, privacypass-ts (WebCrypto), blindrsa-ts, SQLite. */
  impl?: string;
}

export type HttpShape = 'single' | 'sync-100' | 'sync-1000' | 'sync-4096' | 'bucket' | 'tokens';

/**
 * What an HTTP mark compares: `designs` (the three designs on one server),
 * `backends` (blinded evaluate, one server per crypto backend), `threads`
 * (blinded evaluate, sodium, one server per evaluator thread count).
 */
export type HttpGroup = 'designs' | 'backends' | 'threads' | 'modes' | 'auth' | 'issuance';

export type LatencyMs = Omit<Summary, 'count'>;

/** Closed-loop load on a real server over loopback. */
export interface HttpMark {
  section: 'http';
  name: string;
  design: DesignName;
  shape: HttpShape;
  group: HttpGroup;
  /** The server's crypto backend and evaluator threads (as configured). */
  backend: BackendName;
  evalThreads: number;
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
  /**
   * Blinded evaluate: how the server was paid (`--blinded-auth`), and the
   * elements each request sent: with a token, the numbers padded with dummy
   * elements to the token's size class (lookups count the numbers only).
   * Group 'auth' compares the two on twin servers; group 'issuance' is
   * POST /v1/tokens, where a "lookup" is one token issued.
   */
  auth?: BlindedAuth;
  elementsPerRequest?: number;
  elementsPerSec?: number;
}

/**
 * Elements sent per number asked for when every request is padded to its
 * Privacy Pass size class (shared/tokens.ts), over a mix of request sizes:
 * one of the bench's shapes, a log-normal mix of sync sizes, or the
 * workload simulation's script. Computed, not timed.
 */
export interface PaddingRow {
  name: string;
  kind: 'shape' | 'log-normal' | 'workload';
  requests: number;
  /** Requests of a single number among them. */
  singles: number;
  /** Numbers asked for, and elements sent once each request is padded to its class. */
  asked: number;
  sent: number;
  /** sent / asked. */
  ratio: number;
  /** The same over the requests of more than one number (syncs) alone. */
  syncRatio?: number;
  /** Where the sizes come from. */
  basis: string;
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

/**
 * One account floods blinded evaluate with large batches (several in flight,
 * retrying on 503) while another sends 1-element requests one after the
 * other: what the light requester still gets.
 */
export interface FairnessMark {
  section: 'fairness';
  name: string;
  /** 'flood': the light requester while the flood runs; 'idle': the same requests alone, for comparison. */
  phase: 'flood' | 'idle';
  backend: BackendName;
  evalThreads: number;
  durationMs: number;
  flooder?: {
    elementsPerRequest: number;
    inFlight: number;
    /** Pause after a 503 before the next attempt. */
    retryDelayMs: number;
    ok: number;
    rejected503: number;
    otherErrors: Record<string, number>;
    elementsPerSec: number;
    /** Retry-After values seen on its 503s, seconds. */
    retryAfterSeconds?: { min: number; max: number };
  };
  light: {
    elementsPerRequest: number;
    sent: number;
    ok: number;
    rejected503: number;
    otherErrors: Record<string, number>;
    /** Of the 200s. */
    latencyMs: LatencyMs;
  };
}

/** A target the issue set, judged from the marks of this run. */
export interface ScaleTarget {
  target: string;
  limit: string;
  measured: string;
  met: boolean;
}

/**
 * A directory of `numbers` seeded through the ordinary path, one server
 * child serving all three designs over it: when blinded serves, memory, then
 * a registration, kill -9, and the restart on the same folder.
 */
export interface ScaleMark {
  section: 'scale';
  name: string;
  numbers: number;
  backend: BackendName;
  /** Seeding the store (bench/seeding.ts, the store's bulk insert). */
  seedSeconds: number;
  /** From fork to the socket listening (the child's start reply). */
  listeningSeconds: number;
  /** From fork to GET /v1/blinded/config answering 200. */
  blindedServingSeconds: number;
  /** The epoch build as the server reports it, when it reports one. */
  buildSeconds?: number;
  buildThreads?: number;
  buildNumbersPerSec?: number;
  /** Server RSS with everything loaded (after a full GC), and its peak so far. */
  rssBytes: number;
  peakRssBytes: number;
  heapUsedBytes: number;
  arrayBuffersBytes: number;
  /** After kill -9 about `killAfterMs` after one registration through the admin API. */
  restart?: {
    killAfterMs: number;
    /** From fork of the new child to blinded config 200. */
    blindedServingSeconds: number;
    listeningSeconds: number;
    /** How the restarted server got its epoch: 'cache' (loaded, journal replayed) or 'build'. */
    epochSource?: string;
    /** The number registered before the kill, looked up through the real blinded client after the restart. */
    registered: string;
    answersMessages: boolean;
    capabilities: string[];
    rssBytes: number;
  };
  targets: ScaleTarget[];
}

/**
 * The accounts and directory store (bench/store.ts): one store (SQLite or
 * Postgres) at one directory size, seeded, scanned, then registrations and
 * authentications.
 */
export interface StoreMark {
  section: 'store';
  name: string;
  store: 'sqlite' | 'postgres';
  /** Numbers seeded (one per account). */
  numbers: number;
  /** bulkInsert of the synthetic directory, the generator included. */
  seedSeconds: number;
  seedNumbersPerSec: number;
  /** A full `directory()` scan. */
  scanSeconds: number;
  scanNumbersPerSec: number;
  /** createAccount, one at a time, into the seeded store. */
  creates: number;
  createLatencyMs: LatencyMs;
  /** authenticate() of one known token. */
  authentications: number;
  authenticateMeanUs: number;
  authenticateLatencyMs: LatencyMs;
  /** After seeding: SQLite's files (WAL included), Postgres's pg_database_size. */
  diskBytes?: number;
  /** Postgres at 10^7 numbers: the seeding target. */
  target?: ScaleTarget;
}

/** Where the lookups of a nodes mark went (bench/nodes.ts). */
export type NodesSetup = 'sqlite' | 'postgres, 1 node' | 'postgres, 2 nodes';

/**
 * Single lookups over HTTP through nodes on one store (bench/nodes.ts): a
 * SQLite-backed node, a Postgres-backed node, two Postgres-backed nodes
 * sharing the load, in the same minutes.
 */
export interface NodesMark {
  section: 'nodes';
  name: string;
  design: 'plain' | 'blinded';
  setup: NodesSetup;
  nodes: number;
  requests: number;
  errors: number;
  errorKinds: Record<string, number>;
  durationMs: number;
  lookupsPerSec: number;
  latencyMs: LatencyMs;
  /** CPU of the node processes per lookup. */
  nodeCpuMsPerLookup: number;
  /** CPU of the Postgres processes per lookup (0 for SQLite). */
  postgresCpuMsPerLookup: number;
  /** Lookups per CPU-second of the node processes, and of the nodes and Postgres together: the per-core figures. */
  lookupsPerNodeCpuSecond: number;
  lookupsPerCpuSecond: number;
  /** lookups/s over the SQLite node's, same design, same run. */
  ratioToSqlite: number;
}

export type Mark = CryptoMark | HttpMark | FairnessMark | BandwidthMark | BuildMark | ScaleMark | StoreMark | NodesMark | ReverseMark | WorkloadMark;

export interface Ratio {
  name: string;
  value: number;
  /** How it was formed, from marks of this run. */
  formula: string;
  section: Section;
}

/** A figure from outside this run (a peer's published throughput), never mixed with marks. */
export interface ExternalReference {
  name: string;
  /** The quoted range (low = high for a single figure). */
  low: number;
  high: number;
  unit: string;
  source: string;
  measured: false;
  /** Why it stands in for a measurement in this run. */
  why?: string;
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
  /** Figures from outside this run, labelled as such (e.g. a peer that could not be loaded). */
  references: ExternalReference[];
  notes: string[];
  /** Folded mark return values (see bench/stats.ts sink). */
  sink: number;
  durationSeconds: number;
  /** The workload section: the contact graph an operator rebuilds from each design's persisted logs (bench/workload.ts). */
  workload?: WorkloadResult[];
  /** The http section: padding to Privacy Pass size classes over request-size mixes (bench/tokens.ts). */
  padding?: PaddingRow[];
}
