/**
 * Parent side of harness/child.ts: forks a Node process that runs the server,
 * started as `bin/pcd.mjs` is (its bundle while fresh, else the sources through
 * tsx: launch/launch.mjs), and sends it commands.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import http from 'node:http';
import type { ChildCommand, ChildReply, ChildServerOptions, OpenReply, StartReply, Usage } from './child.ts';
import { PATHS } from '../shared/messages.ts';
import { bundled } from '../launch/launch.mjs';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));

function tsxLoader(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
}

export interface ServerChild {
  readonly pid: number;
  /** `timeoutMs`: kill the process and fail if the server is not up by then (a build that hangs must not hang the run). */
  start(options: ChildServerOptions, timeoutMs?: number, listenOnly?: boolean): Promise<StartReply>;
  open(options: ChildServerOptions, timeoutMs?: number): Promise<OpenReply>;
  /** CPU time and memory now; with `gc`, after a full garbage collection (steady-state memory). */
  usage(options?: { gc?: boolean }): Promise<Usage>;
  /** Sends a signal (SIGKILL: the crash a restart must survive) and waits for the process to be gone. */
  kill(signal: NodeJS.Signals): Promise<void>;
  /** Closes the server (its logs flushed) and waits for the process to exit. */
  close(): Promise<void>;
  /** Sets the server's clock (ServerOptions.now) to `now`, Unix ms; set it before `start` to run on simulated time from the first row. */
  clock(now: number): Promise<void>;
}

/** A server process as forked, before it is handed out: `close` ends it, `stop` keeps it for the next server. */
interface Proc extends Omit<ServerChild, 'close'> {
  readonly exited: () => boolean;
  close(): Promise<void>;
  stop(): Promise<void>;
}

/** Idle server processes by their environment, while reuseServerProcesses runs; undefined otherwise. */
let idle: Map<string, Proc[]> | undefined;

/**
 * Runs `fn` with server processes reused: a server closed through its
 * ServerChild leaves its process running (the child's `stop`), and the next
 * forkServer with the same environment takes it instead of forking, which
 * saves a second or so of Node and module start per server. A killed process
 * is never reused; every idle one is closed when `fn` settles. CPU marks
 * (deltas of process.cpuUsage) are unchanged by it; absolute memory (RSS,
 * peak RSS) is then not that of a fresh process: the benchmark's tiny profile
 * uses it, and says so in its notes (bench/run.ts).
 */
export async function reuseServerProcesses<T>(fn: () => Promise<T>): Promise<T> {
  const outer = idle;
  const mine = new Map<string, Proc[]>();
  idle = mine;
  try {
    return await fn();
  } finally {
    idle = outer;
    await Promise.all([...mine.values()].flat().map((p) => p.close()));
  }
}

/**
 * A server process, with `env` over this process's environment: an idle one
 * of the same environment while reuseServerProcesses runs (unless `fresh`:
 * a section that kills its server or measures the process's own start asks
 * for a new one), else a new fork. Its `close` ends it, or, while reuse runs,
 * stops its server and keeps the process for the next caller; after `close`
 * this ServerChild refuses every command.
 */
export function forkServer(env: Record<string, string | undefined> = {}, options: { fresh?: boolean } = {}): ServerChild {
  const key = JSON.stringify(Object.entries(env).sort(([a], [b]) => (a < b ? -1 : 1)));
  const pool = idle;
  let proc: Proc | undefined;
  while (!options.fresh && pool && !proc) {
    const kept = pool.get(key)?.pop();
    if (!kept) break;
    if (!kept.exited()) proc = kept;
  }
  proc ??= forkProc(env);
  let closed = false;
  const live = <A extends unknown[], R>(f: (...a: A) => Promise<R>) => (...a: A): Promise<R> =>
    closed ? Promise.reject(new Error('benchmark server process: already closed')) : f(...a);
  return {
    pid: proc.pid,
    start: live(proc.start),
    open: live(proc.open),
    usage: live(proc.usage),
    clock: live(proc.clock),
    // Once closed, the process may be another caller's: a late kill leaves it alone.
    kill: (signal) => (closed ? Promise.resolve() : proc.kill(signal)),
    async close() {
      if (closed) return;
      closed = true;
      if (pool && pool === idle && !proc.exited()) {
        try {
          await proc.stop();
          if (!proc.exited() && pool === idle) {
            pool.set(key, [...(pool.get(key) ?? []), proc]);
            return;
          }
        } catch {
          // a process that cannot stop its server is not reused
        }
      }
      await proc.close();
    },
  };
}

function forkProc(env: Record<string, string | undefined>): Proc {
  // The bundle of `npm run build` while it is fresh, else the sources through tsx (launch/launch.mjs).
  const bundle = bundled('child');
  const child: ChildProcess = fork(bundle ?? CHILD, [], {
    execArgv: bundle ? ['--expose-gc'] : ['--import', tsxLoader(), '--expose-gc'],
    env: { ...process.env, PCD_LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'advanced',
  });
  let nextId = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let exited: Error | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = new Error(`benchmark server process exited (code ${code}, signal ${signal})`);
      for (const w of waiting.values()) w.reject(exited);
      waiting.clear();
      resolve();
    });
  });
  child.on('message', (m: ChildReply) => {
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.ok) w.resolve(m.value);
    else w.reject(new Error(`benchmark server process: ${m.error}`));
  });

  const send = <T>(command: ChildCommand, timeoutMs?: number): Promise<T> => {
    if (exited) return Promise.reject(exited);
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`benchmark server process: no answer to '${command.cmd}' within ${Math.round(timeoutMs / 1000)} s; killed it`));
          child.kill('SIGKILL');
        }, timeoutMs);
      }
      waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      child.send({ id, command });
    });
  };

  return {
    pid: child.pid ?? -1,
    exited: () => exited !== undefined,
    stop: () => send<null>({ cmd: 'stop' }, 30_000).then(() => undefined),
    start: (options, timeoutMs, listenOnly) => send<StartReply>({ cmd: 'start', options, ...(listenOnly ? { listenOnly } : {}) }, timeoutMs),
    open: (options, timeoutMs) => send<OpenReply>({ cmd: 'open', options }, timeoutMs),
    usage: (options) => send<Usage>({ cmd: 'usage', ...(options?.gc ? { gc: true } : {}) }),
    clock: (now) => send<null>({ cmd: 'clock', now }).then(() => undefined),
    async kill(signal) {
      if (exited) return;
      child.kill(signal);
      await exit;
    },
    async close() {
      if (!exited) {
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await send<null>({ cmd: 'close' }).catch(() => {});
        await exit;
        clearTimeout(timer);
      }
    },
  };
}

/**
 * A generous bound on opening a server over `numbers` numbers: the blinded
 * build evaluates ~300 numbers/s per core; allow 30/s, plus a minute.
 */
export function openTimeoutMs(numbers: number): number {
  return 60_000 + (numbers / 30) * 1000;
}

/**
 * Resolves once `GET /v1/blinded/config` answers 200 and, on a server that
 * takes Privacy Pass tokens, lists the current epoch's token keys: the
 * blinded design serves. The server listens while its epoch builds (the
 * route answers 503 meanwhile) and makes its token keys in the background
 * (the config lists none until then, and a client finds no size class), so
 * the socket being open is not enough. Polls every `intervalMs`; returns
 * the seconds waited and the statuses seen ('200 without token keys' for a
 * config that lists none yet).
 */
/** False for a config (JSON) of a token server whose current epoch lists no token keys yet; true otherwise. */
function tokenKeysListed(json: string): boolean {
  try {
    const c = JSON.parse(json) as { auth?: string; current?: number; epochs?: { epoch?: number; tokenKeys?: unknown[] }[] };
    if (c.auth !== 'token') return true;
    return (c.epochs?.find((e) => e.epoch === c.current)?.tokenKeys?.length ?? 0) > 0;
  } catch {
    return true; // not ours to judge: the status said it serves
  }
}

export async function waitBlindedServing(url: string, timeoutMs: number, intervalMs = 50): Promise<{ seconds: number; statuses: Record<string, number> }> {
  const t0 = performance.now();
  const statuses: Record<string, number> = {};
  const u = new URL(PATHS.blindedConfig, url);
  for (;;) {
    const status = await new Promise<string>((resolve) => {
      const r = http.get(u, { agent: false, headers: { accept: 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(res.statusCode === 200 && !tokenKeysListed(Buffer.concat(chunks).toString('utf8')) ? '200 without token keys' : String(res.statusCode ?? 0)));
        res.on('error', () => resolve('error'));
      });
      r.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      r.setTimeout(Math.max(1000, intervalMs * 20), () => r.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    });
    statuses[status] = (statuses[status] ?? 0) + 1;
    if (status === '200') return { seconds: (performance.now() - t0) / 1000, statuses };
    if (performance.now() - t0 > timeoutMs) {
      throw new Error(`blinded did not serve within ${Math.round(timeoutMs / 1000)} s (GET ${PATHS.blindedConfig}: ${JSON.stringify(statuses)})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
