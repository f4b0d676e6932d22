/**
 * Plays a workload script (workload/script.ts) against a real server, one
 * design at a time, through the real client library, and leaves the data
 * folder the server persisted for the operator's reading (workload/operator.ts).
 *
 * - The server runs in a child process (bench/fork.ts, bench/child.ts) on
 *   simulated time: the child's clock (ServerOptions.now) is set to the
 *   window's start before the server starts, and to each action's instant
 *   before the action is sent, so every log row carries the simulated time
 *   while 30 days take minutes. Rate limits are off (`rateLimits: false`):
 *   a scripted research run. Query-log retention is set past the window so
 *   the operator holds all of it (a real operator holds 30 days).
 * - Every user is an account of its own (seeded straight into the store, as
 *   `pcd seed` does, created a day before the window) with its own requester
 *   token, kept in memory only and never written to any output.
 * - Every user has its own IP address: the server runs with `trustProxy:
 *   true` and each client's fetch adds an `X-Forwarded-For` header
 *   (TransportOptions.fetch), so the operator's logs show per-user IPs as a
 *   deployment's would. `usersPerIp` > 1 puts that many users behind one
 *   address (a carrier NAT).
 * - One client (createClient) per install: its tag and bucket caches live
 *   until the simulated reinstall, which starts a new client and syncs the
 *   whole book with lookupMany. Bytes are counted per client from the
 *   transport's body counts (client/cli.ts countingTransport).
 */
import fs from 'node:fs';
import path from 'node:path';
import { countingTransport } from '../client/cli.ts';
import { createClient, type Client } from '../client/client.ts';
import { createTransport } from '../client/transport.ts';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import type { DesignName } from '../shared/messages.ts';
import { Store } from '../server/store.ts';
import { forkServer, openTimeoutMs } from '../bench/fork.ts';
import type { WorkloadPopulation } from './population.ts';
import { DAY_MS, type Script } from './script.ts';

/** Not a secret: the admin API is not used; the server needs a token to start without writing one. */
const ADMIN_TOKEN = 'pcd-workload-admin-token-not-a-secret';

export interface RunTarget {
  design: DesignName;
  /** Blinded only. */
  bucketBits?: number;
}

export interface RunOptions {
  /** Parent folder; the run's data folder is made inside it. */
  root: string;
  usersPerIp: number;
  evalThreads?: number;
  log?: (line: string) => void;
}

export interface RunRecord {
  target: RunTarget;
  dataDir: string;
  /** Account id of user u (the store's). */
  accountIds: number[];
  /** Numbers handed to the client library (lookup and lookupMany), and its HTTP requests. */
  lookups: number;
  requests: number;
  bytesSent: number;
  bytesReceived: number;
  /** Lookup actions that failed (none expected; counted rather than thrown). */
  errors: number;
  firstError?: string;
  directorySize: number;
  seconds: number;
  startSeconds: number;
  /** Wall time spent in the client library's calls, and in setting the server's clock. */
  clientSeconds: number;
  clockSeconds: number;
}

/** The IP user u's requests come from: 10.0.0.0/8, one address per `usersPerIp` users. */
export function userIp(u: number, usersPerIp: number): string {
  const k = Math.floor(u / Math.max(1, usersPerIp)) + 1;
  return `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`;
}

/** A fetch that says, as a reverse proxy would, which address the request came from. */
export function forwardedFetch(ip: string): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set('x-forwarded-for', ip);
    return fetch(input, { ...init, headers });
  };
}

export function runLabel(t: RunTarget): string {
  return t.design === 'blinded' ? `blinded b=${t.bucketBits ?? 0}` : t.design;
}

/** Seeds a fresh data folder with every user's account; returns the account ids and tokens (in memory only). */
function seedUsers(dataDir: string, pop: WorkloadPopulation, createdAt: number): { accountIds: number[]; tokens: string[] } {
  const store = Store.open(dataDir);
  try {
    const mask = capabilitiesToMask(['messages', 'facetime']);
    const email = (u: number) => `user${u}@workload.example`;
    store.bulkInsert(
      (function* () {
        for (let u = 0; u < pop.users; u++) yield { email: email(u), numbers: [pop.numbers[u]!], mask };
      })(),
      createdAt,
    );
    const accountIds: number[] = [];
    const tokens: string[] = [];
    for (let u = 0; u < pop.users; u++) {
      const a = store.accountByEmail(email(u));
      if (!a) throw new Error(`seeding: ${email(u)} is not in the store`);
      accountIds.push(a.accountId);
      tokens.push(store.issueToken(a.accountId));
    }
    return { accountIds, tokens };
  } finally {
    store.close();
  }
}

export async function runScript(pop: WorkloadPopulation, script: Script, target: RunTarget, options: RunOptions): Promise<RunRecord> {
  const log = options.log ?? (() => {});
  const t0 = performance.now();
  const label = runLabel(target);
  const dataDir = fs.mkdtempSync(path.join(options.root, `${label.replace(/[^a-z0-9]+/gi, '-')}-`));
  const { accountIds, tokens } = seedUsers(dataDir, pop, script.options.start - DAY_MS);
  const child = forkServer();
  const record: RunRecord = {
    target,
    dataDir,
    accountIds,
    lookups: 0,
    requests: 0,
    bytesSent: 0,
    bytesReceived: 0,
    errors: 0,
    directorySize: 0,
    seconds: 0,
    startSeconds: 0,
    clientSeconds: 0,
    clockSeconds: 0,
  };
  try {
    await child.clock(script.options.start);
    const started = await child.start(
      {
        dataDir,
        designs: [target.design],
        bucketBits: target.bucketBits ?? 0,
        rateLimits: false,
        trustProxy: true,
        retentionMs: Math.max(30 * DAY_MS, script.end - script.options.start + 2 * DAY_MS),
        adminToken: ADMIN_TOKEN,
        ...(options.evalThreads !== undefined ? { evalThreads: options.evalThreads } : {}),
      },
      openTimeoutMs(pop.users),
    );
    record.directorySize = started.directorySize;
    record.startSeconds = started.seconds;

    const counters: { requests: number; sent: number; received: number }[] = [];
    const clients = new Map<number, Client>();
    const install = (u: number): Client => {
      const { transport, stats } = countingTransport(
        createTransport({ baseUrl: started.url, token: tokens[u]!, fetch: forwardedFetch(userIp(u, options.usersPerIp)) }),
      );
      counters.push(stats);
      const client = createClient({ baseUrl: started.url, design: target.design, transport });
      clients.set(u, client);
      return client;
    };

    let clock = script.options.start;
    let last = performance.now();
    for (let i = 0; i < script.actions.length; i++) {
      const a = script.actions[i]!;
      if (a.t !== clock) {
        const c0 = performance.now();
        await child.clock(a.t);
        clock = a.t;
        record.clockSeconds += (performance.now() - c0) / 1000;
      }
      const numbers = a.people.map((p) => pop.numbers[p]!);
      record.lookups += numbers.length;
      const l0 = performance.now();
      try {
        if (a.kind === 'sync') await install(a.user).lookupMany(numbers);
        else await (clients.get(a.user) ?? install(a.user)).lookup(numbers[0]!);
      } catch (e) {
        record.errors++;
        record.firstError ??= e instanceof Error ? e.message : String(e);
      }
      record.clientSeconds += (performance.now() - l0) / 1000;
      if (performance.now() - last > 15_000) {
        last = performance.now();
        log(`    ${label}: ${i + 1}/${script.actions.length} actions, day ${((a.t - script.options.start) / DAY_MS).toFixed(1)}`);
      }
    }
    await child.clock(script.end);
    for (const c of counters) {
      record.requests += c.requests;
      record.bytesSent += c.sent;
      record.bytesReceived += c.received;
    }
  } finally {
    await child.close(); // flushes the query logs into the data folder
  }
  record.seconds = (performance.now() - t0) / 1000;
  return record;
}
