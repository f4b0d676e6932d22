/**
 * The server core: opens the store, loads the directory, builds the chosen
 * designs and the app, and listens. `openServer` gives the pieces without a
 * socket (bench/build.ts and harness/child.ts use it); `startServer` listens
 * and returns the URL. The server's own routes (health, accounts) are
 * server/core-routes.ts.
 *
 * Directory changes made through the admin API go to the store first (one
 * transaction, journaled there for the blinded epochs' crash recovery), then
 * to the in-memory directory, then to every design, before the admin call
 * answers: the next lookup sees them.
 *
 * With a shared Postgres store (`store: 'postgres://…'`, server/pg/),
 * accounts, the directory and its journal live there, and the node follows
 * the journal (PgStore.follow: NOTIFY, then a poll): every change, its own
 * or another node's, reaches the in-memory directory and the designs in
 * version order through that one path, and an admin call answers once its
 * change has come through it. A gap (a seeding) is a rescan, applied as the
 * difference. The blinded design's epochs live there too (server/pg/epochs.ts:
 * keys wrapped under each node's master key, tables built by the leading
 * node and loaded by the others).
 *
 * Each design comes up on its own: a factory returns once its design can
 * answer (plain and hashed index the directory at once; blinded checks its
 * keys and loads or builds its epochs in the background, answering 503
 * until then), so the server listens while a large epoch builds.
 * `OpenServer.ready` settles when every design is ready.
 */
import { recordRelays } from '../disk/relays.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import net, { type AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import pino from 'pino';
import type express from 'express';
import type { DirectoryChange, ServerDesign } from '../shared/design.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { DESIGNS, type DesignName } from '../shared/messages.ts';
import { ADMIN_TOKEN_FILE, HASHED_SNAPSHOT_FILE, NODE_NAME_FILE } from '../disk/files.ts';
import { readAdminToken } from '../disk/admintoken.ts';
import { createApp } from './app.ts';
import { coreRoutes } from './core-routes.ts';
import type { ServerContext, ServerOptions } from './context.ts';
import { Directory, directoryDifference, type DirectorySource } from './directory.ts';
import { DAY_MS, Retention } from './querylog.ts';
import { DEFAULT_RATE_LIMITS, RateLimiter } from './ratelimit.ts';
import { Store } from './store.ts';
import { SqliteDirectoryStore, type DirectoryStore } from './directory-store.ts';
import { PgStore, type Follower } from './pg/store.ts';
import { storeUrl } from './pg/connect.ts';
import { startLeadership, type Leadership } from './pg/leader.ts';
import { nodeMasterKey } from './pg/epochkeys.ts';
import { sharedGatewayKeys } from './pg/ohttpkeys.ts';
import { PgAllowances } from './pg/ratelimits.ts';
import { acquireFolderLock, type FolderLock } from './lock.ts';
import { DESIGN_FACTORIES } from './designs/index.ts';
import { openGateway, relayAddresses, type Dispatch, type Gateway } from './ohttp.ts';
import { compileTrust, parseTrustProxy, type TrustedProxies } from './clientip.ts';
import { fitToFileLimit, guardConnections, openFileLimit, resolveConnectionLimits, serverOptions, type ConnectionStats } from './net.ts';


export { ADMIN_TOKEN_FILE };

type Logger = ServerContext['logger'];
export const DEFAULT_RETENTION_MS = 30 * DAY_MS;

/** The admin token: the option, else PCD_ADMIN_TOKEN, else the data folder's file (generated on first use). */
export function resolveAdminToken(dataDir: string, explicit?: string): { token: string; source: string } {
  if (explicit) return { token: explicit, source: 'option' };
  const found = readAdminToken(dataDir);
  if (found) return found;
  const file = path.join(dataDir, ADMIN_TOKEN_FILE);
  const token = crypto.randomBytes(32).toString('base64url');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  return { token, source: file };
}

export interface OpenServer {
  readonly app: express.Express;
  /** The OHTTP gateway (server/ohttp.ts), when the blinded design is served. */
  readonly gateway: Gateway | undefined;
  readonly store: Store;
  readonly directory: Directory;
  readonly designs: readonly ServerDesign[];
  readonly context: ServerContext;
  readonly adminTokenSource: string;
  /** The data folder's lock (server/lock.ts), held until close(). */
  readonly folderLock: FolderLock;
  /** Settles when every design is ready to answer (the blinded epochs loaded or built); rejects when one cannot be. */
  readonly ready: Promise<void>;
  /**
   * Registers or removes numbers everywhere (store already changed, to
   * directory version `version`; default: the store's version now).
   */
  applyChanges(changes: readonly DirectoryChange[], version?: number): Promise<void>;
  /** The rate limiter (absent with rateLimits: false). */
  readonly rateLimiter: RateLimiter | undefined;
  /** The proxies whose X-Forwarded-For is believed (ServerOptions.trustProxy, checked); empty: none. */
  readonly trustedProxies: TrustedProxies;
  /** True for an address the per-IP limits do not apply to: a trusted proxy or a configured OHTTP relay. */
  readonly speaksForMany: (ip: string) => boolean;
  /** Starts shutting down: new requests get 503 (Retry-After) and every reply closes its connection. */
  drain(): void;
  /** Flushes logs, closes designs and the store. Idempotent. */
  close(): Promise<void>;
  /** Where the directory came from at start: its snapshot plus the journal, or a scan of the numbers table (server/directory-snapshot.ts). */
  readonly directorySource: DirectorySource;
  /** Writes the directory snapshot now (done every options.directorySnapshotMs while the directory changes, and at close). */
  persistDirectory(): void;
  /** On a shared store: whether this node leads (server/pg/leader.ts); undefined on the embedded default. */
  readonly leadership: Leadership | undefined;
}

/** How long an admin call waits for its own change to come through the shared store's journal before it answers 503. */
const CHANGE_VISIBLE_MS = 10_000;

export async function openServer(options: ServerOptions): Promise<OpenServer> {
  const sharedUrl = storeUrl(options.store, {});
  const designNames = [...new Set(options.designs ?? DESIGNS)];
  if (sharedUrl && options.web) throw new PcdError(ErrorCode.InvalidField, '--store: the web page does not run on a shared store yet; serve it without --ui');
  for (const d of designNames) {
    if (!(DESIGNS as readonly string[]).includes(d)) throw new PcdError(ErrorCode.InvalidField, `unknown design '${d}': known are ${DESIGNS.join(', ')}`);
  }
  const relays = relayAddresses(options.ohttpRelays ?? []); // OHTTP relays' addresses, checked before anything is opened
  const trustedProxies = trustProxyOption(options.trustProxy);
  const trusted = compileTrust(trustedProxies);
  const logger = options.logger ?? pino({ level: process.env.PCD_LOG_LEVEL ?? 'silent' });
  const now = options.now ?? Date.now;
  const s = await openStores(options, { sharedUrl, relays, blinded: designNames.includes('blinded') }, logger, now);
  const { folderLock, store, shared, directoryStore, opened, leadership } = s;
  const directory = opened.directory;
  const designs: ServerDesign[] = [];
  const changes = new ChangeChain(directory, designs, store, opened.version);
  const context: ServerContext = { store, shared, directoryStore, leadership, masterKey: s.masterKey, directory, directoryVersion: () => changes.version, now, options, logger, restart: opened.restart };
  const gateway = await openDesigns(s, context, designNames, designs, (req, res) => app(req, res));

  const ready = Promise.all(designs.map((d) => d.ready)).then(() => undefined);
  ready.catch(() => {}); // observed by whoever awaits `ready`; the design logs its own failure
  const follower = await followJournal(s, changes, logger);

  const limits = { ...DEFAULT_RATE_LIMITS, ...options.rateLimits };
  // On a shared store the requesters' allowances are every node's (server/pg/ratelimits.ts: the bound on overshoot).
  const allowances = shared && new PgAllowances(shared.pool, limits);
  const rateLimiter = options.rateLimits === false ? undefined : new RateLimiter(limits, now, store.db, logger, undefined, allowances);
  let draining = false;
  const web = options.web?.(context);
  const app = createApp({
    routes: [...coreRoutes({ store, directoryStore, designNames, now, rateLimiter, changed: (update) => changes.inMemory(update, follower) }), ...designs.flatMap((d) => d.routes), ...(web?.routes ?? [])],
    designs: designNames,
    authenticate: (t) => (shared ? shared.authenticate(t) : store.authenticate(t)),
    adminToken: s.adminToken,
    rateLimiter,
    trustProxy: trustedProxies,
    logger,
    draining: () => draining,
    extra: web?.router,
    gateway: gateway?.router,
    ipLimitExempt: relays.size > 0 ? (ip) => relays.has(ip) : undefined, // ip is canonical (server/clientip.ts), as the relays' are
  });

  // The rate limits' rows are aged with the logs: none names a day older than the retention (server/ratelimit.ts).
  // On a shared store the leader alone purges the shared logs.
  const purgeShared =
    shared &&
    leadership &&
    (async (cutoff: number) => {
      if (!leadership.isLeader) return 0;
      if (rateLimiter && allowances) await allowances.age(now(), cutoff);
      return shared.purgeLogs(cutoff);
    });
  const retention = new Retention(store, options.retentionMs ?? DEFAULT_RETENTION_MS, now, undefined, logger, (cutoff) => rateLimiter?.age(cutoff), purgeShared);
  retention.start();

  const snapshots = new Snapshots(s, changes, designs, { dataDir: options.dataDir, hashed: designNames.includes('hashed') }, logger);
  // A design that had to build its index writes its snapshot now, so that the next start loads it: beside the
  // directory snapshot of this very version when there is one (written by a scan, or no change replayed), else with a new one.
  if (designs.some((d) => d.snapshotLoaded === false)) {
    if (snapshots.version === changes.version) snapshots.writeDesigns();
    else snapshots.write();
  }
  // Run on the chain of directory changes, so the in-memory directory and the version it records agree.
  const persistDirectory = (): void => {
    if (store.db.open) snapshots.write();
  };
  const snapshotTimer = setInterval(() => {
    if (changes.version !== snapshots.version) changes.then(persistDirectory);
  }, options.directorySnapshotMs ?? 10 * 60_000);
  snapshotTimer.unref();

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      retention.stop();
      clearInterval(snapshotTimer);
      await rateLimiter?.close();
      try {
        await leadership?.close();
        await follower?.close();
        await changes.settled();
        for (const d of designs) await d.close();
        if (changes.version !== snapshots.version) snapshots.write(); // unchanged: the one on disk is current
        store.close();
        await shared?.close();
      } finally {
        folderLock.release();
      }
    })());

  const drain = (): void => {
    draining = true;
  };
  const speaksForMany = (ip: string): boolean => relays.has(ip) || trusted(ip);
  const applyChanges = (c: readonly DirectoryChange[], version?: number): Promise<void> => changes.apply(c, version);
  return { app, store, directory, designs, context, adminTokenSource: s.adminTokenSource, folderLock, ready, rateLimiter, trustedProxies, speaksForMany, drain, applyChanges, close, persistDirectory, directorySource: opened.source, gateway, leadership };
}

/** The stores a server runs on, opened in order under the data folder's lock, each closed again when a later step fails. */
interface OpenedStores {
  folderLock: FolderLock;
  store: Store;
  adminToken: string;
  adminTokenSource: string;
  /** The shared Postgres store, when the options name one. */
  shared: PgStore | undefined;
  directoryStore: DirectoryStore;
  /** The directory as loaded, the version it reflects and where it came from. */
  opened: Awaited<ReturnType<typeof Directory.open>>;
  leadership: Leadership | undefined;
  masterKey: ServerContext['masterKey'];
  /** Closes the embedded store and the shared one. */
  closeStores(): void;
}

/**
 * The data folder's lock, the embedded store, the admin token, the shared
 * store if any, the directory, and on a shared store the leadership and
 * (with the blinded design) the node's master key.
 */
async function openStores(
  options: ServerOptions,
  plan: { sharedUrl: string | undefined; relays: ReadonlySet<string>; blinded: boolean },
  logger: Logger,
  now: () => number,
): Promise<OpenedStores> {
  const { sharedUrl } = plan;
  // One owner per data folder: refused with one line naming the holder; also makes the folder 0700, its files 0600.
  const folderLock = acquireFolderLock(options.dataDir, { role: 'server', logger });
  const store = folderLock.guard(() => Store.open(options.dataDir));
  // Which logged addresses are relays', for an audit of the folder (disk/relays.ts).
  folderLock.guard(() => recordRelays(store.db, [...plan.relays], now()), () => store.close());
  const { token: adminToken, source: adminTokenSource } = folderLock.guard(() => resolveAdminToken(options.dataDir, options.adminToken), () => store.close());
  // The directory snapshot (server/directory-snapshot.ts) replays the journal, so the journal is always kept: the
  // snapshot holds it from the version it reflects, the epoch caches from theirs (Store.pruneDirectoryChanges).
  store.enableDirectoryJournal();
  const shared = sharedUrl
    ? await folderLock.guardAsync(() => PgStore.open(sharedUrl, { logger, node: options.nodeName ?? folderNodeName(options.dataDir) }), () => store.close())
    : undefined;
  const closeStores = (): void => {
    store.close();
    void shared?.close().catch(() => {});
  };
  const directoryStore: DirectoryStore = shared ?? new SqliteDirectoryStore(store);
  // With the load: the version the in-memory directory reflects (the scan reads one moment, even while other nodes write).
  const opened = await folderLock.guardAsync(() => Directory.open(directoryStore, options.dataDir, logger), closeStores);
  // The snapshot on disk replays the rows above its version until the next one is written: none is deleted for it before.
  if (opened.snapshotVersion !== undefined) await folderLock.guardAsync(() => directoryStore.holdDirectoryChanges(opened.snapshotVersion!, 'snapshot'), closeStores);
  // On a shared store one node leads (server/pg/leader.ts): it builds the blinded epochs and purges the shared logs;
  // a node that does not serve blinded leads only while no node that does is there.
  const leadership = shared
    ? await folderLock.guardAsync(() => startLeadership(sharedUrl!, { node: shared.node, logger, builds: plan.blinded }), closeStores)
    : undefined;
  // On a shared store the blinded design's keys are there, wrapped under the master key every node reads from its own file.
  const masterKey =
    shared && plan.blinded
      ? await folderLock.guardAsync(
          () => nodeMasterKey(shared.pool, options, logger),
          () => {
            void leadership?.close();
            closeStores();
          },
        )
      : undefined;
  return { folderLock, store, adminToken, adminTokenSource, shared, directoryStore, opened, leadership, masterKey, closeStores };
}

/**
 * Each design as its factory returns it (into `designs`), then, with the
 * blinded design, the OHTTP gateway (server/ohttp.ts), its key loaded or
 * generated under the folder's lock. When one fails, what was opened is
 * closed and the lock released.
 */
async function openDesigns(s: OpenedStores, context: ServerContext, designNames: readonly DesignName[], designs: ServerDesign[], dispatch: Dispatch): Promise<Gateway | undefined> {
  const { shared, masterKey } = s;
  let gateway: Gateway | undefined;
  try {
    for (const name of designNames) designs.push(await DESIGN_FACTORIES[name](context));
    context.restart = undefined; // the designs have loaded their snapshots: the journal rows need not stay in memory
    if (designNames.includes('blinded')) {
      // On a shared store one gateway key for every node (server/pg/ohttpkeys.ts), else the data folder's.
      const keys = shared && masterKey ? () => sharedGatewayKeys(shared.pool, masterKey) : undefined;
      gateway = await openGateway({ dataDir: context.options.dataDir, dispatch, logger: context.logger, keys });
    }
  } catch (e) {
    try {
      for (const d of designs) await d.close();
      await s.leadership?.close();
      s.closeStores();
    } finally {
      s.folderLock.release();
    }
    throw e;
  }
  return gateway;
}

/**
 * Directory changes, serialised so the designs see them in the order the
 * store made them: the in-memory directory, the version it reflects, then
 * every design.
 */
class ChangeChain {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly directory: Directory,
    readonly designs: readonly ServerDesign[],
    private readonly store: Store,
    /** The directory version the in-memory directory reflects. */
    public version: number,
  ) {}

  apply(changes: readonly DirectoryChange[], version?: number): Promise<void> {
    const at = version ?? this.store.directoryVersion();
    const run = this.chain.then(async () => {
      this.directory.apply(changes);
      this.version = Math.max(this.version, at);
      for (const d of this.designs) await d.onDirectoryChange(changes);
    });
    this.chain = run.catch(() => {});
    return run;
  }

  /** Runs `step` after the changes queued so far, before any queued after. */
  then(step: () => void): void {
    this.chain = this.chain.then(step);
  }

  /** Settles when the changes queued so far are applied. */
  settled(): Promise<void> {
    return this.chain;
  }

  /** An admin change is answered once it is in memory: applied here, or come through the journal on a shared store. */
  async inMemory(update: { changes: readonly DirectoryChange[]; version: number }, follower: Follower | undefined): Promise<void> {
    if (!follower) return this.apply(update.changes, update.version);
    for (const started = Date.now(); follower.version < update.version; ) {
      const before = follower.version;
      await follower.poll();
      if (follower.version > before) continue;
      if (Date.now() - started > CHANGE_VISIBLE_MS) {
        throw new PcdError(ErrorCode.Unavailable, `the change is stored (directory version ${update.version}) but this node cannot read the journal yet: it will come through; try the lookup again later`, { retryAfterSeconds: 5 });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.chain;
  }
}

/** A shared store: every change comes through the journal, in version order (module header); none without one. */
async function followJournal(s: OpenedStores, changes: ChangeChain, logger: Logger): Promise<Follower | undefined> {
  const { shared } = s;
  if (!shared) return undefined;
  const directory = s.opened.directory;
  return s.folderLock.guardAsync(
    () =>
      shared.follow(
        changes.version,
        async (e) => {
          if (e.kind === 'changes') return changes.apply(e.changes, e.version);
          // A gap (a seeding): the difference between a fresh scan and the directory in memory, as changes.
          const { directory: now, version } = await Directory.load(shared);
          logger.warn({ version }, 'the directory journal has a gap (a seeding?): rescanned the shared store');
          return changes.apply(directoryDifference(directory, now), version);
        },
        { holder: 'directory' },
      ),
    () => {
      for (const d of changes.designs) void d.close();
      s.closeStores();
    },
  );
}

/**
 * The directory snapshot (server/directory-snapshot.ts) and the designs'
 * index snapshots (the hashed design's), stamped with the same version and
 * digest. Written at a clean shutdown (the next start loads it with nothing
 * to replay) and periodically while the directory changes (the journal then
 * drops the rows it kept for it). A failure costs the next start a scan,
 * nothing more.
 */
class Snapshots {
  /** The directory version of the snapshot on disk, if any. */
  version: number | undefined;

  constructor(
    private readonly s: OpenedStores,
    private readonly changes: ChangeChain,
    private readonly designs: readonly ServerDesign[],
    private readonly folder: { dataDir: string; hashed: boolean },
    private readonly logger: Logger,
  ) {
    this.version = s.opened.snapshotVersion;
  }

  writeDesigns(): void {
    const directory = this.s.opened.directory;
    const stamp = { version: this.changes.version, digest: directory.digest().bytes() };
    for (const d of this.designs) {
      try {
        d.writeSnapshot?.(stamp);
      } catch (e) {
        this.logger.warn({ design: d.name, err: (e as Error).message }, 'could not write the design index snapshot');
      }
    }
    // A design no longer served leaves no index of the numbers behind (deleted numbers among them).
    if (!this.folder.hashed) fs.rmSync(path.join(this.folder.dataDir, HASHED_SNAPSHOT_FILE), { force: true });
  }

  write(): void {
    const version = this.changes.version;
    try {
      this.s.opened.directory.writeSnapshot(this.folder.dataDir, version);
      this.version = version;
      this.writeDesigns();
      const pruned = this.s.directoryStore.pruneDirectoryChanges(version, 'snapshot');
      pruned.catch((e: unknown) => this.logger.warn({ err: (e as Error).message }, 'could not prune the directory journal'));
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'could not write the directory snapshot');
    }
  }
}

/** This node's name on a shared store when none is given: made once into the data folder and kept (disk/files.ts NODE_NAME_FILE). */
export function folderNodeName(dataDir: string): string {
  const file = path.join(dataDir, NODE_NAME_FILE);
  try {
    const kept = fs.readFileSync(file, 'utf8').trim();
    if (/^[\w.:-]{1,100}$/.test(kept)) return kept;
  } catch {
    // none yet
  }
  const name = `${os.hostname().replace(/[^\w.-]/g, '_').slice(0, 60)}-${crypto.randomBytes(4).toString('hex')}`;
  fs.writeFileSync(file, name + '\n', { mode: 0o600 });
  return name;
}

/** ServerOptions.trustProxy checked: a list of proxies, never "everyone" (express's `true` or a hop count, refused). */
function trustProxyOption(value: unknown): TrustedProxies {
  if (value === undefined || value === false) return [];
  if (typeof value === 'string' || (Array.isArray(value) && value.every((v) => typeof v === 'string'))) return parseTrustProxy(value as string | string[]);
  throw new PcdError(ErrorCode.InvalidField, `trustProxy names the proxies (addresses, CIDRs, loopback, linklocal, uniquelocal); ${String(value)} would trust every client's X-Forwarded-For`);
}

export interface RunningServer extends OpenServer {
  readonly url: string;
  readonly port: number;
  readonly http: Server;
  /** Connections open, refused and the addresses holding them (server/net.ts). */
  readonly connections: ConnectionStats;
  /** Stops as OpenServer.close does, after in-flight requests finish or `deadlineMs` passes (default options.shutdownTimeoutMs, else 10 s). */
  close(deadlineMs?: number): Promise<void>;
}

/** A listen failure as one line: a busy port, a forbidden one, an address this host does not have. */
function listenError(e: unknown, host: string, port: number): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const where = `${host}:${port}`;
  if (code === 'EADDRINUSE') return new PcdError(ErrorCode.Conflict, `${where} is in use (another pcd serve?): stop it or choose another --port`, { cause: e });
  if (code === 'EACCES') return new PcdError(ErrorCode.Forbidden, `not allowed to listen on ${where}: ports below 1024 need privileges, choose another --port`, { cause: e });
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return new PcdError(ErrorCode.InvalidField, `cannot listen on ${where}: this host has no such address (--host)`, { cause: e });
  return e;
}

/**
 * Fails, as one line, when `host:port` cannot be listened on (busy,
 * forbidden, no such address), by listening and closing at once: run
 * before the data folder is locked, seeded or given keys, so a busy port
 * is found before any of that work (port 0 always succeeds). Another
 * process may still take the port between this check and the real listen;
 * that listen then fails with the same line.
 */
export async function checkListen(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve()));
  }).catch((e: unknown) => {
    throw listenError(e, host, port);
  });
}

/** Opens the server and listens (port 0: an ephemeral port). */
export async function startServer(options: ServerOptions & { port?: number; host?: string }): Promise<RunningServer> {
  const limits = resolveConnectionLimits(options.connectionLimits); // checked before anything is opened
  const host = options.host ?? '127.0.0.1';
  await checkListen(host, options.port ?? 0); // a busy port before the folder is locked, keys made or epochs built
  const open = await openServer(options);
  // Connection caps and timeouts (server/net.ts), fitted to the open-file limit, in place before the first connection.
  const nofile = openFileLimit();
  const fit = fitToFileLimit(limits, nofile);
  if (fit.warning) open.context.logger.warn(fit.warning);
  const http = createServer(serverOptions(limits), open.app);
  const connections = guardConnections(http, limits, { exempt: open.speaksForMany, nofile });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port ?? 0, host, () => {
      http.off('error', reject);
      resolve();
    });
  }).catch(async (e: unknown) => {
    await open.close();
    throw listenError(e, host, options.port ?? 0);
  });
  const { port } = http.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  open.folderLock.setPort(port, `http://${urlHost}:${port}`);
  // Graceful stop: no new connections; requests on kept-alive ones get 503 and `Connection: close`;
  // in-flight requests get until the deadline, then their connections are cut; then the logs are
  // flushed and the store closed (OpenServer.close). Every acknowledged lookup is in the log.
  let closing: Promise<void> | undefined;
  const closeAll = (deadlineMs = options.shutdownTimeoutMs ?? 10_000): Promise<void> =>
    (closing ??= (async () => {
      open.drain();
      await new Promise<void>((resolve) => {
        const cut = setTimeout(() => http.closeAllConnections(), deadlineMs);
        cut.unref();
        http.close(() => {
          clearTimeout(cut);
          resolve();
        });
        http.closeIdleConnections();
      });
      await open.close();
    })());
  return { ...open, url: `http://${urlHost}:${port}`, port, http, connections, close: closeAll };
}
