/**
 * The idle-connection flood of issue 17, as a hostile client runs it:
 * `pcd serve` in a child process whose open-file limit is 4,096 (prlimit),
 * one address (127.0.0.1 by default) opening and holding thousands of
 * connections (idle, headers half sent, a body trickled a byte at a time,
 * reopening what the server closes), while another address (127.0.0.2)
 * asks `/v1/health` every 200 ms on a fresh connection. Reports how long
 * health took at worst, how many descriptors the server held at most and
 * at the end, and what became of the flood's sockets
 * (docs/operations.md, "Connections and timeouts").
 *
 *   node --import tsx bench/flood.ts [--connections 6000] [--seconds 20] [--nofile 4096]
 *
 * test/connections.test.ts runs the same function and asserts on it.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export interface FloodOptions {
  connections: number;
  seconds: number;
  nofile: number;
  floodAddress: string;
  healthAddress: string;
  /** Extra `pcd serve` flags (e.g. shorter timeouts for a quick run). */
  serveArgs: readonly string[];
  log?: (line: string) => void;
}

export interface FloodResult {
  /** Connections the flood opened in all (first wave and reopened). */
  opened: number;
  /** Of them, closed by the server within a second of connecting (refused at once). */
  refusedAtOnce: number;
  /** Closed by the server later (a timeout), with the flood's side still open. */
  closedLater: number;
  /** The flood's connected sockets not closed by the server at the end (as the client sees them: closed only by the server). */
  heldAtEnd: number;
  /** The flood's sockets still in connect() at the end: the kernel's listen backlog is full, they hold no server descriptor. */
  connectingAtEnd: number;
  /** The flood's connected sockets open at most at one time, as the client saw them. */
  heldMax: number;
  health: { asked: number; answered: number; failed: number; maxMs: number; medianMs: number };
  /** Descriptors of the server process (/proc/<pid>/fd): at start, at most during the flood, at the end. */
  fds: { start: number; max: number; end: number };
  /** The server's stderr lines (the open-file warning among them). */
  serverStderr: string;
  nofile: number;
}

/** Connections the flood reopens per second, at most, after the server closed them. */
const REOPEN_PER_S = 300;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function fdCount(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

function health(url: URL, localAddress: string): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: url.hostname, port: url.port, path: '/v1/health', localAddress, agent: false, timeout: 1000, headers: { accept: 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - started) : reject(new Error(`health answered ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 1 s')));
    req.on('error', reject);
  });
}

export async function runFlood(o: FloodOptions): Promise<FloodResult> {
  const log = o.log ?? (() => {});
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-flood-'));
  const child = spawn(
    'prlimit',
    [`--nofile=${o.nofile}:${o.nofile}`, process.execPath, path.join(ROOT, 'bin/pcd.mjs'), 'serve', '--port', '0', '--data', dataDir, '--design', 'plain', '--no-ui', '--log-level', 'warn', ...o.serveArgs],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PCD_EVAL_THREADS: '0', PCD_ADMIN_TOKEN: 'flood-admin-token' } },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let flood: Flood | undefined;
  try {
    const url = await servingUrl(child, () => stderr);
    const pid = child.pid!; // prlimit execs the command: the same process
    const fds = { start: fdCount(pid), max: 0, end: 0 };
    log(`server ${url.href} (pid ${pid}, open-file limit ${o.nofile}), ${fds.start} descriptors at start`);

    flood = new Flood(url, o.floodAddress);
    await flood.start(o.connections);
    log(`flood: ${o.connections} connections from ${o.floodAddress} opened`);
    const h = await watchHealth(o, url, { pid, fds }, flood, log);
    flood.stop();
    fds.end = fdCount(pid);
    const sorted = [...h.latencies].sort((a, b) => a - b);
    const result: FloodResult = {
      opened: flood.opened,
      refusedAtOnce: flood.refusedAtOnce,
      closedLater: flood.closedLater,
      heldAtEnd: flood.connected,
      connectingAtEnd: flood.sockets.size - flood.connected,
      heldMax: flood.heldMax,
      health: { asked: h.asked, answered: h.latencies.length, failed: h.failed, maxMs: sorted.at(-1) ?? Number.NaN, medianMs: sorted[Math.floor(sorted.length / 2)] ?? Number.NaN },
      fds,
      serverStderr: stderr + (h.failures.length ? `\n(health failures: ${h.failures.slice(0, 3).join('; ')})` : ''),
      nofile: o.nofile,
    };
    return result;
  } finally {
    flood?.destroy();
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode === null ? child.once('exit', r) : r(undefined)));
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The URL `pcd serve` prints once it serves; an error when it exits first or says nothing within 30 s. */
function servingUrl(child: ChildProcessByStdio<null, Readable, Readable>, stderr: () => string): Promise<URL> {
  return new Promise<URL>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`pcd serve did not start within 30 s: ${out}${stderr()}`)), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving .+? on (http:\/\/[\d.:]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(new URL(m[1]!));
      }
    });
    child.on('exit', (code) => reject(new Error(`pcd serve exited with ${code}: ${out}${stderr()}`)));
  });
}

/**
 * The hostile client: connections from one address, a third each left idle,
 * with headers never finished, and with a body trickled a byte a second;
 * each one the server lets go comes back, paced.
 */
class Flood {
  opened = 0;
  /** Closed by the server within a second of connecting. */
  refusedAtOnce = 0;
  closedLater = 0;
  heldMax = 0;
  /** Connected now. */
  connected = 0;
  readonly sockets = new Set<net.Socket>();
  private readonly pending: number[] = [];
  private stopping = false;
  private reopen: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: URL,
    private readonly localAddress: string,
  ) {}

  /** Opens the first wave, in batches so the client's own event loop keeps up; from now on, what closes is reopened. */
  async start(connections: number): Promise<void> {
    // Reopened at most REOPEN_PER_S a second: pressure that stays on, without the client spending both cores on connect().
    this.reopen = setInterval(() => {
      for (const i of this.pending.splice(0, REOPEN_PER_S / 10)) this.open(i);
    }, 100);
    for (let i = 0; i < connections; i++) {
      this.open(i);
      if (i % 500 === 499) await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops reopening; the sockets stay as they are, to be counted. */
  stop(): void {
    this.stopping = true;
    clearInterval(this.reopen);
  }

  destroy(): void {
    this.stop();
    for (const s of this.sockets) s.destroy();
  }

  private open(i: number): void {
    if (this.stopping) return;
    this.opened++;
    let connectedAt: number | undefined;
    // allowHalfOpen: the flood never closes its side, so only the server can free the descriptor.
    const s = net.connect({ host: this.url.hostname, port: Number(this.url.port), localAddress: this.localAddress, allowHalfOpen: true });
    this.sockets.add(s);
    s.on('error', () => {});
    s.on('data', () => {});
    s.on('end', () => s.destroy()); // the server closed its side: the attacker lets go and comes back
    s.on('connect', () => {
      connectedAt = performance.now();
      this.connected++;
      this.heldMax = Math.max(this.heldMax, this.connected);
      const kind = i % 3;
      if (kind === 1) s.write('GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: '); // headers never finished
      if (kind === 2) {
        s.write('POST /v1/plain/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer x\r\nContent-Length: 100000\r\n\r\n{');
        const trickle = setInterval(() => (s.writable ? s.write(' ') : clearInterval(trickle)), 1000);
        s.once('close', () => clearInterval(trickle));
      }
    });
    s.on('close', () => {
      this.sockets.delete(s);
      if (connectedAt !== undefined) this.connected--;
      if (this.stopping) return;
      if (connectedAt === undefined) return void this.pending.push(i); // never connected (the listen backlog was full)
      if (performance.now() - connectedAt < 1000) this.refusedAtOnce++;
      else this.closedLater++;
      this.pending.push(i); // the attacker comes back (paced below)
    });
  }
}

/** The other client: /v1/health every 200 ms from its own address, on a fresh connection, for `o.seconds`; the server's descriptors watched meanwhile. */
async function watchHealth(
  o: FloodOptions,
  url: URL,
  server: { pid: number; fds: FloodResult['fds'] },
  flood: Flood,
  log: (line: string) => void,
): Promise<{ latencies: number[]; asked: number; failed: number; failures: string[] }> {
  const { pid, fds } = server;
  const latencies: number[] = [];
  let asked = 0;
  let failed = 0;
  const failures: string[] = [];
  const end = performance.now() + o.seconds * 1000;
  let nextReport = performance.now() + 2000;
  while (performance.now() < end) {
    asked++;
    await health(url, o.healthAddress).then(
      (ms) => latencies.push(ms),
      (e: unknown) => {
        failed++;
        failures.push(e instanceof Error ? e.message : String(e));
      },
    );
    fds.max = Math.max(fds.max, fdCount(pid));
    if (performance.now() >= nextReport) {
      nextReport += 2000;
      log(`  t=${(o.seconds - (end - performance.now()) / 1000).toFixed(0)}s: flood sockets connected ${flood.connected} (and ${flood.sockets.size - flood.connected} still connecting), server fds ${fdCount(pid)}, health worst so far ${Math.max(0, ...latencies).toFixed(1)} ms, failed ${failed}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { latencies, asked, failed, failures };
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const r = await runFlood({
    connections: arg('--connections', 6000),
    seconds: arg('--seconds', 20),
    nofile: arg('--nofile', 4096),
    floodAddress: '127.0.0.1',
    healthAddress: '127.0.0.2',
    serveArgs: [],
    log: (l) => console.log(l),
  });
  console.log(JSON.stringify(r, null, 2));
}
