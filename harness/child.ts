/**
 * The server side of a benchmark, run in its own process (forked by
 * harness/fork.ts) so the load generator never shares an event loop, a heap
 * or a garbage collector with the server it measures, and so each memory
 * measurement starts from a fresh process (except where the benchmark's tiny
 * profile reuses one: `stop` below).
 *
 * Commands arrive over IPC, one at a time:
 * - `start`: startServer on 127.0.0.1, an ephemeral port; replies the URL
 *   once every design is ready (or, with `listenOnly`, once it listens).
 * - `open`: openServer without a socket, measuring time and memory around
 *   it (the directory build mark), then closes.
 * - `usage`: this process's CPU time and memory now (after a full GC with
 *   `gc`), with the blinded design's epoch counters.
 * - `close`: closes the server (flushing its logs) and exits.
 * - `stop`: closes the server (flushing its logs) and forgets the clock, but
 *   stays for the next `start` or `open`: the benchmark's tiny profile
 *   reuses its server processes (harness/fork.ts reuseServerProcesses).
 * - `clock`: sets the time the server's clock (ServerOptions.now) reads from
 *   then on, Unix ms; until it is first set, the real time. Simulated time
 *   (workload/simulate.ts) sets it before `start` and before every request.
 */
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import type { ServerOptions } from '../server/context.ts';
import { openServer, startServer, type OpenServer, type RunningServer } from '../server/server.ts';
import { designOf } from '../server/designs/index.ts';
import type { EpochStats } from '../server/blinded/epoch.ts';
import { EPOCHS_DIR } from '../server/blinded/table.ts';

/** ServerOptions that survive structured cloning (no logger, no clock). */
export type ChildServerOptions = Omit<ServerOptions, 'logger' | 'now'>;

export type ChildCommand =
  /** `listenOnly`: reply as soon as the socket listens, without waiting for every design to be ready (the scale section times both). */
  | { cmd: 'start'; options: ChildServerOptions; listenOnly?: boolean }
  | { cmd: 'open'; options: ChildServerOptions }
  | { cmd: 'usage'; gc?: boolean }
  | { cmd: 'close' }
  | { cmd: 'stop' }
  | { cmd: 'clock'; now: number };

export interface Usage {
  /** process.cpuUsage() user + system, microseconds: every thread of the process (evaluator and build workers too). */
  cpuUs: number;
  memory: NodeJS.MemoryUsage;
  /** Peak resident set size so far, bytes. */
  maxRssBytes: number;
  /** The running server's blinded evaluator pool, when it has one. */
  evaluator?: EvaluatorInfo;
  /** The running server's blinded epoch counters (builds, cache loads, the last build), when it has them. */
  epochStats?: EpochStats;
}

/** What the benchmark reports of the blinded design's evaluator pool (server/blinded/pool.ts). */
export interface EvaluatorInfo {
  /** Configured worker threads (0: evaluate inline on the event loop). */
  size: number;
  /** Workers running. */
  threads: number;
  inline: boolean;
}

export interface StartReply {
  url: string;
  seconds: number;
  directorySize: number;
  epochStats?: EpochStats;
  usage: Usage;
}

export interface OpenReply {
  seconds: number;
  before: Usage;
  after: Usage;
  directorySize: number;
  directoryIndexBytes: number;
  epochStats?: EpochStats;
  epochCacheBytes?: number;
}

export type ChildReply =
  | { ok: true; id: number; value: StartReply | OpenReply | Usage | null }
  | { ok: false; id: number; error: string };

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) {
    g();
    g();
  }
}

function usage(): Usage {
  const c = process.cpuUsage();
  const evaluator = server ? evaluatorInfo(server) : undefined;
  const epochStats = server ? blindedStats(server) : undefined;
  return {
    cpuUs: c.user + c.system,
    memory: process.memoryUsage(),
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    ...(evaluator ? { evaluator } : {}),
    ...(epochStats ? { epochStats } : {}),
  };
}

/** The blinded design's evaluator pool: the benchmark reports its size. */
function evaluatorInfo(s: OpenServer): EvaluatorInfo | undefined {
  const st = designOf(s.designs, 'blinded')?.evaluator.stats;
  if (!st || typeof st.size !== 'number') return undefined;
  return { size: st.size, threads: st.threads ?? 0, inline: st.inline ?? false };
}

function blindedStats(s: OpenServer): EpochStats | undefined {
  const d = designOf(s.designs, 'blinded');
  return d?.epochs ? structuredClone(d.epochs.stats) : undefined;
}

function dirBytes(dir: string): number | undefined {
  if (!fs.existsSync(dir)) return undefined;
  let n = 0;
  for (const f of fs.readdirSync(dir)) {
    if (f.endsWith('.bin')) n += fs.statSync(path.join(dir, f)).size;
  }
  return n;
}

const logger = pino({ level: 'silent' });
let server: RunningServer | undefined;
/** Set by the `clock` command: the time ServerOptions.now returns (undefined: the real time). */
let clockMs: number | undefined;

async function handle(c: ChildCommand): Promise<StartReply | OpenReply | Usage | null> {
  switch (c.cmd) {
    case 'start': {
      if (server) throw new Error('a server is running already');
      const t0 = performance.now();
      server = await startServer({ rateLimits: false, ...c.options, now: () => clockMs ?? Date.now(), host: '127.0.0.1', port: 0, logger });
      if (!c.listenOnly) await server.ready; // every design answering: the blinded epochs loaded or built
      const seconds = (performance.now() - t0) / 1000;
      return { url: server.url, seconds, directorySize: server.directory.size, epochStats: blindedStats(server), usage: usage() };
    }
    case 'open': {
      gc();
      const before = usage();
      const t0 = performance.now();
      const open = await openServer({ rateLimits: false, ...c.options, logger });
      await open.ready;
      const seconds = (performance.now() - t0) / 1000;
      gc();
      const after = usage();
      const reply: OpenReply = {
        seconds,
        before,
        after,
        directorySize: open.directory.size,
        directoryIndexBytes: open.directory.byteLength,
        epochStats: blindedStats(open),
        epochCacheBytes: dirBytes(path.join(c.options.dataDir, EPOCHS_DIR)),
      };
      await open.close();
      return reply;
    }
    case 'usage':
      if (c.gc) gc();
      return usage();
    case 'clock':
      if (!Number.isSafeInteger(c.now)) throw new Error(`clock: ${String(c.now)} is not a time in Unix ms`);
      clockMs = c.now;
      return null;
    case 'close':
    case 'stop':
      if (server) await server.close();
      server = undefined;
      clockMs = undefined;
      return null;
  }
}

process.on('message', (m: { id: number; command: ChildCommand }) => {
  handle(m.command).then(
    (value) => {
      process.send!({ ok: true, id: m.id, value } satisfies ChildReply);
      if (m.command.cmd === 'close') process.disconnect();
    },
    (e: unknown) => process.send!({ ok: false, id: m.id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies ChildReply),
  );
});
process.on('disconnect', () => {
  // The parent went away: close what is open and leave.
  void (server ? server.close() : Promise.resolve()).finally(() => process.exit(0));
});
