/**
 * Test harness: a real server on an ephemeral port over a temporary data
 * folder, the real client, and an admin client. Every e2e test builds on it.
 * Also: one describe block per design, the strength of property tests, and
 * `pcd` run in this process or as a child.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { describe, expect, vi } from 'vitest';
import { PcdError } from '../shared/errors.ts';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { format } from 'node:util';
import { createAdminClient, createClient, type ClientOptions } from '../client/client.ts';
import { DESIGNS, type DesignName } from '../shared/messages.ts';
import type { ServerOptions } from '../server/context.ts';
import { startServer, type RunningServer } from '../server/server.ts';

export const ADMIN_TOKEN = 'test-admin-token-not-a-secret';

/**
 * `PCD_TEST_FULL=1` (CI sets it): property tests and long loops run at full
 * strength. Unset, they run a fraction of it, so the suite stays quick on a
 * laptop; the assertions are the same either way.
 */
export const FULL_ENV = 'PCD_TEST_FULL';
export const FULL = process.env[FULL_ENV] === '1';

/** Runs of a property test (fast-check numRuns) or rounds of a loop: `full` under PCD_TEST_FULL=1, else `quick` (default a fifth). */
export function runs(full: number, quick = Math.ceil(full / 5)): number {
  return FULL ? full : Math.max(1, Math.min(full, quick));
}

/**
 * One describe block per design (shared/messages.ts DESIGNS, or the subset
 * given), `fn` getting the design's name; `%s` in the title is the name.
 */
export function describeDesigns(title: string, fn: (design: DesignName) => void, designs: readonly DesignName[] = DESIGNS): void {
  for (const d of designs) if (!DESIGNS.includes(d)) throw new Error(`describeDesigns: unknown design '${d}'`);
  describe.each([...designs])(title.includes('%s') ? title : `${title} (%s)`, fn);
}

/** The token size classes of a test server (startTestServer), unless a test gives its own: four RSA keys, not the default thirty-one. */
export const TEST_SIZE_CLASSES: readonly number[] = [1, 16, 256, 4096];
/**
 * The same with 64 in place of 256, for files whose lookups hold 17 to 64 numbers: padded to 64 elements, not 256 (a
 * padding element costs the client and the server what a number does).
 */
export const SHORT_LIST_SIZE_CLASSES: readonly number[] = [1, 16, 64, 4096];

/** The PcdError a promise rejects with; fails the test when it resolves (an answer where a refusal was due). */
export async function rejection(p: Promise<unknown>): Promise<PcdError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected a PcdError, got an answer').toBeInstanceOf(PcdError);
  return e as PcdError;
}

export function tempDir(prefix = 'pcd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A stand-in for the built page (dist/web) that the web tests serve: an index.html loading /app.js, and app.js. */
export function fakeWebDist(): string {
  const dir = tempDir('pcd-web-');
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>pcd</title><script type="module" src="/app.js"></script>');
  fs.writeFileSync(path.join(dir, 'app.js'), 'console.log(1)');
  return dir;
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
  // Evaluation inline (no worker thread): a worker costs ~0.3 s of CPU to start and adds nothing to most tests;
  // the tests of the pool itself (and the e2e, load and shutdown tests) ask for workers with evalThreads.
  // Rate limits off unless a test asks for them (test/ratelimit.test.ts): tests run thousands of lookups from one IP.
  // Four token size classes unless a test asks for more: each class is an RSA-2048 key made at the first start (~0.1 s of CPU).
  const server = await startServer({ adminToken: ADMIN_TOKEN, logIntervalMs: 20, evalThreads: 0, rateLimits: false, sizeClasses: TEST_SIZE_CLASSES, ...options, dataDir, port: 0 });
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

export interface PcdRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `pcd ARGS` in this process: the commands bin/pcd.ts registers, and
 * its way out (a PcdError is one `pcd: message (code)` line on stderr and
 * exit 2, or 3 for a 5xx; anything else one line and exit 1), without the
 * second or so a child process costs to start. `env` is set for the run and
 * restored after. For commands whose point is a real process (signals, the
 * binary's own exit), run bin/pcd.mjs as a child instead.
 *
 * The program and its error mapping are bin/program.ts's, as the binary's.
 */
export async function runPcd(args: string[], env: Record<string, string | undefined> = {}): Promise<PcdRun> {
  const { buildErrorOutcome, buildProgram, errorOutcome } = await import('../bin/program.ts');
  const out = { stdout: '', stderr: '' };
  const saved = new Map<string, string | undefined>();
  for (const [k, v] of Object.entries(env)) {
    saved.set(k, process.env[k]);
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  const spies = [
    vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (out.stdout += format(...a) + '\n')),
    vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void (out.stderr += format(...a) + '\n')),
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((out.stderr += String(chunk)), true)),
  ];
  let code = 0;
  try {
    let program;
    try {
      program = buildProgram({ writeOut: (s) => void (out.stdout += s), writeErr: (s) => void (out.stderr += s) });
    } catch (e) {
      const o = buildErrorOutcome(e);
      out.stderr += `${o.line}\n`;
      return { code: o.code, ...out };
    }
    await program.parseAsync(args, { from: 'user' });
  } catch (e) {
    const o = errorOutcome(e);
    if (o.line) out.stderr += `${o.line}\n`;
    code = o.code;
  } finally {
    for (const s of spies) s.mockRestore();
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  return { code, ...out };
}

/**
 * Starts `pcd serve` in a child process; resolves once it listens and, when
 * it serves blinded, once it says blinded is ready. A server that never gets
 * ready is killed, so a failed run leaves no process behind. Evaluation is
 * inline (PCD_EVAL_THREADS=0) unless `env` or `--eval-threads` says otherwise.
 */
export async function spawnServe(args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, [PCD_BIN, 'serve', '--port', '0', '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PCD_EVAL_THREADS: '0', ...env },
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

/**
 * Starts `pcd start ARGS` in a child process (`entry`: bin/pcd.mjs, or a
 * bundle of it) and resolves once it has printed its instructions and, unless
 * `blinded` is false (a plain-only start), said blinded is ready. A start that
 * is not ready within 50 s is killed and fails; so does one that exits.
 * Evaluation is inline (PCD_EVAL_THREADS=0) unless `env` says otherwise.
 */
export async function spawnStart(
  args: string[],
  options: { entry?: string; env?: Record<string, string>; blinded?: boolean } = {},
): Promise<{ child: ChildProcess; stdout: () => string; stderr: () => string }> {
  const child = spawn(process.execPath, [options.entry ?? PCD_BIN, 'start', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PCD_EVAL_THREADS: '0', ...options.env },
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pcd start not ready within 50 s: ${stdout}${stderr}`));
    }, 50_000);
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/^Ctrl-C stops the server/m.test(stdout) && (options.blinded === false || /^blinded ready: /m.test(stdout))) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`pcd start exited with ${code}: ${stdout}${stderr}`));
    });
  });
  return { child, stdout: () => stdout, stderr: () => stderr };
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
