/**
 * Parent side of bench/child.ts: forks a Node process that runs the server
 * through the same tsx loader as `bin/pcd.mjs`, and sends it commands.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ChildCommand, ChildReply, ChildServerOptions, OpenReply, StartReply, Usage } from './child.ts';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));

function tsxLoader(): string {
  return pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
}

export interface ServerChild {
  readonly pid: number;
  /** `timeoutMs`: kill the process and fail if the server is not up by then (a build that hangs must not hang the run). */
  start(options: ChildServerOptions, timeoutMs?: number): Promise<StartReply>;
  open(options: ChildServerOptions, timeoutMs?: number): Promise<OpenReply>;
  usage(): Promise<Usage>;
  /** Closes the server (its logs flushed) and waits for the process to exit. */
  close(): Promise<void>;
}

export function forkServer(env: Record<string, string | undefined> = {}): ServerChild {
  const child: ChildProcess = fork(CHILD, [], {
    execArgv: ['--import', tsxLoader(), '--expose-gc'],
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
    start: (options, timeoutMs) => send<StartReply>({ cmd: 'start', options }, timeoutMs),
    open: (options, timeoutMs) => send<OpenReply>({ cmd: 'open', options }, timeoutMs),
    usage: () => send<Usage>({ cmd: 'usage' }),
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
