/**
 * Test harness: a real server on an ephemeral port over a temporary data
 * folder, the real client, and an admin client. Every e2e test builds on it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { vi } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createAdminClient, createClient, type ClientOptions } from '../client/client.ts';
import type { DesignName } from '../shared/messages.ts';
import type { ServerOptions } from '../server/context.ts';
import { startServer, type RunningServer } from '../server/server.ts';

export const ADMIN_TOKEN = 'test-admin-token-not-a-secret';

export function tempDir(prefix = 'pcd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A clock tests can move. */
export function testClock(start = Date.UTC(2026, 10, 1, 12, 0, 0)) {
  let t = start;
  const now = () => t;
  return { now, advance: (ms: number) => (t += ms), set: (ms: number) => (t = ms) };
}

export interface TestServer {
  server: RunningServer;
  dataDir: string;
  admin: ReturnType<typeof createAdminClient>;
  client(token: string, design: DesignName, extra?: Partial<ClientOptions>): ReturnType<typeof createClient>;
  /** Restarts on the same data folder (graceful close first). */
  restart(overrides?: Partial<ServerOptions>): Promise<TestServer>;
  close(): Promise<void>;
}

export async function startTestServer(options: Partial<ServerOptions> = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? tempDir();
  // One evaluator worker: the pool is exercised, and test servers do not start one per core each.
  // Rate limits off unless a test asks for them (test/ratelimit.test.ts): tests run thousands of lookups from one IP.
  const server = await startServer({ adminToken: ADMIN_TOKEN, logIntervalMs: 20, evalThreads: 1, rateLimits: false, ...options, dataDir, port: 0 });
  // Every design answering (the blinded epochs loaded or built): tests that watch a design come up use startServer.
  await server.ready.catch(async (e: unknown) => {
    await server.close();
    throw e;
  });
  const ts: TestServer = {
    server,
    dataDir,
    admin: createAdminClient({ baseUrl: server.url, adminToken: ADMIN_TOKEN }),
    client: (token, design, extra) => createClient({ baseUrl: server.url, token, design, ...extra }),
    async restart(overrides = {}) {
      await server.close();
      return startTestServer({ ...options, ...overrides, dataDir });
    },
    close: () => server.close(),
  };
  return ts;
}

/** Raw HTTP request for bad-input tests. */
export async function raw(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {},
): Promise<{ status: number; contentType: string | null; json: any; text: string }> {
  const res = await fetch(url, { method: init.method ?? 'POST', headers: { accept: 'application/json', ...init.headers }, body: init.body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType: res.headers.get('content-type'), json, text };
}

/** The CLI entry, for tests that run `pcd` as a user does. */
export const PCD_BIN = path.resolve('bin/pcd.mjs');

/**
 * Starts `pcd serve` in a child process; resolves once it listens and, when
 * it serves blinded, once it says blinded is ready. A server that never gets
 * ready is killed, so a failed run leaves no process behind.
 */
export async function spawnServe(args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, [PCD_BIN, 'serve', '--port', '0', '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pcd serve was not ready within 50 s: ${out}`));
    }, 50_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving (.+?) on (http:\/\/[\d.:]+)/.exec(out);
      if (m && (!m[1]!.includes('blinded') || /^blinded ready: /m.test(out))) {
        clearTimeout(timer);
        resolve(m[2]!);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`pcd serve exited with ${code}: ${out}`));
    });
  });
  return { child, url, output: () => out };
}

/** Sends `signal` and resolves with the exit code. */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.on('exit', (code) => resolve(code));
    child.kill(signal);
  });
}

/**
 * Holds every epoch build until `release()`: the server module graph is
 * re-imported with server/blinded/build.ts mocked, so a test can look at a
 * server mid-build. Import `startServer` from the returned loader; undo with
 * `vi.doUnmock('../server/blinded/build.ts')` and `vi.resetModules()`.
 */
export async function holdEpochBuilds(): Promise<{ release: () => void; startServer: typeof startServer }> {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  vi.resetModules();
  vi.doMock('../server/blinded/build.ts', async (importOriginal) => {
    const real = await importOriginal<typeof import('../server/blinded/build.ts')>();
    return {
      ...real,
      async buildEpoch(...args: Parameters<typeof real.buildEpoch>) {
        await gate; // held until the test has looked at the server mid-build
        return real.buildEpoch(...args);
      },
    };
  });
  const mocked = await import('../server/server.ts');
  return { release, startServer: mocked.startServer };
}
