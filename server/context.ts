/**
 * What a server design gets from the server core: the store, the directory
 * index, the clock and the resolved options. One factory per design builds
 * its ServerDesign from it (server/designs/<name>.ts).
 */
import type { Router } from 'express';
import type { Logger } from 'pino';
import type { Route, ServerDesign } from '../shared/design.ts';
import type { DesignName } from '../shared/messages.ts';
import type { BackendName, OprfMode } from '../shared/suite.ts';
import type { BlindedAuth } from '../shared/tokens.ts';
import type { Directory, DirectoryRestart } from './directory.ts';
import type { ConnectionLimits } from './net.ts';
import type { RateLimits } from './ratelimit.ts';
import type { Store } from './store.ts';
import type { DirectoryStore } from './directory-store.ts';
import type { PgStore } from './pg/store.ts';
import type { Leadership } from './pg/leader.ts';
import type { MasterKey } from './pg/epochkeys.ts';

export interface ServerOptions {
  /** Data folder: the SQLite file, the key file, epoch caches, the admin token. */
  dataDir: string;
  /** Designs to serve (default: all). */
  designs?: readonly DesignName[];
  /** Clock in Unix ms; tests inject one to move through retention and grace periods. */
  now?: () => number;
  /** Query-log retention (default 30 days). */
  retentionMs?: number;
  /** Query-log batch interval (default 1 s) and size (default 1000 rows). */
  logIntervalMs?: number;
  /**
   * How often the directory snapshot is rewritten while the directory changes
   * (server/directory-snapshot.ts), which lets the journal drop the rows,
   * deleted numbers among them, that it kept for the snapshot; default 10
   * minutes. It is also written at a clean shutdown.
   */
  directorySnapshotMs?: number;
  logMaxRows?: number;
  /** Rows one query log holds in memory at most while it cannot write them (default 100,000; past it the oldest are dropped and counted). */
  logMaxPending?: number;
  /** Admin token; default PCD_ADMIN_TOKEN, else generated into the data folder. */
  adminToken?: string;
  /** Blinded design parameters for new epochs. */
  bucketBits?: number;
  mode?: OprfMode;
  tagBytes?: number;
  /** How long an epoch is still served after a newer one exists (default 24 h). */
  graceMs?: number;
  /** Who may call the blinded evaluate endpoint: 'token' (Privacy Pass, default: no account in its log) or 'account' (the requester's bearer token). */
  blindedAuth?: BlindedAuth;
  /** Privacy Pass size classes (default shared/tokens.ts DEFAULT_SIZE_CLASSES). */
  sizeClasses?: readonly number[];
  /** The token challenge's issuer name (default shared/tokens.ts DEFAULT_ISSUER_NAME). */
  tokenIssuer?: string;
  /**
   * Blinded design: the base URL of a static host serving the buckets
   * `pcd publish-buckets` wrote (`{base}/{epoch}/{bucket}.msgpack`), named in
   * the config reply so clients fetch buckets there (docs/protocol.md).
   */
  bucketBaseUrl?: string;
  /** Crypto backend of the blinded design (evaluation, build, directory changes); default sodium (shared/suite.ts DEFAULT_BACKEND). */
  backend?: BackendName;
  /** Blinded evaluate worker threads (0: on the main thread); default PCD_EVAL_THREADS, else one per core. */
  evalThreads?: number;
  /**
   * Rate limits (server/ratelimit.ts): per requester in lookups, per IP in
   * requests. On by default (DEFAULT_RATE_LIMITS, any field overridable);
   * false turns them off (benchmarks, scripted research runs).
   */
  rateLimits?: Partial<RateLimits> | false;
  /** On close: how long in-flight requests may take to finish before their connections are cut (default 10 s). */
  shutdownTimeoutMs?: number;
  /**
   * Reverse proxies whose X-Forwarded-For is believed (server/clientip.ts):
   * addresses, CIDRs, `loopback`, `linklocal`, `uniquelocal`, as a list or
   * comma separated. Default none: the client IP is the socket's. Trusting
   * everyone (express's `true`, a hop count) is refused.
   */
  trustProxy?: string | readonly string[];
  /** Connection caps and timeouts (server/net.ts DEFAULT_CONNECTION_LIMITS, any field overridable); used by startServer. */
  connectionLimits?: Partial<ConnectionLimits>;
  /**
   * IP addresses of OHTTP relays (relay/relay.ts, `pcd serve --ohttp-relay`):
   * exempt from the per-IP limit, since each speaks for many clients and
   * limits them itself (server/ohttp.ts says why the server still sees it).
   */
  ohttpRelays?: readonly string[];
  /**
   * A shared Postgres store (postgres://…) for accounts, the directory and
   * the query logs, which several nodes serve from (server/pg/); default
   * none: everything in the data folder's SQLite file. The data folder is
   * still the node's own (its lock, admin token, snapshots, rate limits).
   */
  store?: string;
  /**
   * On a shared store, the file of the master key that wraps the blinded
   * epochs' keys and the token keys in the store (server/pg/epochkeys.ts);
   * default `<dataDir>/master.key`, made there when the store holds no key yet.
   */
  masterKeyFile?: string;
  /** On a shared store, how often the leader stores changed epoch tables again (server/pg/epochs.ts; default 10 minutes). */
  epochStoreMs?: number;
  /** This node's name in the shared store's journal holds (default: one made once into the data folder, disk/files.ts NODE_NAME_FILE). */
  nodeName?: string;
  /** Show a progress bar on stderr for long builds. */
  progress?: boolean;
  /** The web page and its log view (web/server.ts createWebUi().mount), mounted after the API routes; absent: no page (`--no-ui`). */
  web?: WebMount;
  logger?: Logger;
}

export interface ServerContext {
  /** The data folder's SQLite store: everything without a shared store; with one, what stays on the node (rate limits, the relays it was started with). */
  readonly store: Store;
  /**
   * The shared Postgres store (`--store postgres://…`, server/pg/): accounts,
   * the directory and its journal, and the query logs live there, and every
   * node follows the journal. Undefined on the embedded default.
   */
  readonly shared?: PgStore;
  /** Accounts and the directory: the shared store when there is one, else the data folder's. */
  readonly directoryStore: DirectoryStore;
  /** On a shared store serving blinded: this node's master key, which opens the keys the store holds wrapped (server/pg/epochkeys.ts). */
  readonly masterKey?: MasterKey;
  /** On a shared store: whether this node leads (server/pg/leader.ts), which builds the blinded epochs and purges the logs. */
  readonly leadership?: Leadership;
  readonly directory: Directory;
  /**
   * The directory version that `directory` reflects: every change up to it
   * has been applied there (and delivered to, or is being delivered to, the
   * designs), none after it. Read it in the same synchronous step as a copy
   * of the directory to know what the copy holds.
   */
  directoryVersion(): number;
  readonly now: () => number;
  readonly options: ServerOptions;
  readonly logger: Logger;
  /**
   * Set while the designs are created when the directory came from its
   * snapshot: that snapshot's version and digest and the journal replayed on
   * it (server/directory.ts DirectoryRestart); undefined after a scan.
   */
  restart?: DirectoryRestart;
}

export type ServerDesignFactory = (ctx: ServerContext) => ServerDesign | Promise<ServerDesign>;

/** The web page's part of the server (web/server.ts): its routes through the API pipeline, and a router for the page's own files and endpoints. */
export interface WebParts {
  routes: readonly Route<any, any>[];
  router: Router;
}

/** Builds the web page's part (web/server.ts) from the server's context. */
export type WebMount = (ctx: ServerContext) => WebParts;
