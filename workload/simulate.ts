/**
 * Plays a workload script (workload/script.ts) against a real server, one
 * design at a time, through the real client library, and leaves the data
 * folder the server persisted for the operator's reading (workload/operator.ts).
 *
 * - The server runs in a child process (harness/fork.ts, harness/child.ts) on
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
 *   'loopback'` and each client's fetch adds an `X-Forwarded-For` header
 *   (TransportOptions.fetch), so the operator's logs show per-user IPs as a
 *   deployment's would. `usersPerIp` > 1 puts that many users behind one
 *   address (a carrier NAT).
 * - One client (createClient) per install: its tag and bucket caches live
 *   until the simulated reinstall, which starts a new client and syncs the
 *   whole book with lookupMany. Bytes are counted per client from the
 *   transport's body counts (client/transport.ts countingTransport).
 *
 * Variants ({@link WORKLOAD_VARIANTS}): the blinded design with evaluate
 * paid by the account (`blinded`, the server's `blindedAuth: 'account'`),
 * or by a Privacy Pass token (`blinded-anonymous`, shared/tokens.ts),
 * alone or through an OHTTP relay (`blinded-anonymous+relay`: a relay
 * (relay/relay.ts) in this process, so the server sees the relay's
 * address for the config, evaluate and bucket requests; token issuance
 * goes direct, with the account, as the library does). With tokens:
 * - the app starts its token pool (client/tokens.ts) with `fill()` when it
 *   is installed, and the library pads and pays each evaluate request;
 * - every user's app is installed before the window: at its start each
 *   pool is filled (`fill()`, 8 of class 1), the same for every user; a
 *   reinstall starts a new app, filled at that instant;
 * - the pool's issuance runs on the simulated clock. The library fetches
 *   its quantum (8 of class 1) once a day at a moment drawn uniformly in
 *   each day of the install (client/tokens.ts quantumFetchAt), whatever
 *   it spent, with a real `setTimeout`, which would fire at a random
 *   moment of the run's wall time. So the pool runs without a timer
 *   (`periodMs: Infinity`: the owner calls `fetchQuantum()`), and the run
 *   plays the same rule in simulated time (draws seeded per user), setting
 *   the server's clock to each fetch's instant. A lookup that finds its
 *   class empty fetches on demand, as the library does. The issuance
 *   log's day is the server's clock's.
 * - every evaluate request is recorded as the truth of the requester
 *   attack (workload/requesters.ts): its simulated instant, the user, the
 *   address the server saw and its size class (elements sent, padding
 *   included), with the elements it asked for.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createClient, designOf, type Client } from '../client/client.ts';
import type { BlindedClient } from '../client/designs/blinded.ts';
import { relayFetchFor } from '../client/ohttp.ts';
import { DEFAULT_QUANTUM, quantumFetchAt, type TokenPool, type TokenPoolOptions } from '../client/tokens.ts';
import { countingTransport, createTransport } from '../client/transport.ts';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import type { RequestOptions, Transport } from '../shared/design.ts';
import { designLabel } from '../shared/designs/index.ts';
import type { E164 } from '../shared/e164.ts';
import { PATHS, type DesignName } from '../shared/messages.ts';
import type { BlindedAuth } from '../shared/tokens.ts';
import { Store } from '../server/store.ts';
import { forkServer, openTimeoutMs, type ServerChild } from '../harness/fork.ts';
import { startRelay, type RunningRelay } from '../relay/relay.ts';
import type { WorkloadPopulation } from './population.ts';
import { stream, type WorkloadRng } from './rng.ts';
import { DAY_MS, type Script, type ScriptAction } from './script.ts';

/** Not a secret: the admin API is not used; the server needs a token to start without writing one. */
const ADMIN_TOKEN = 'pcd-workload-admin-token-not-a-secret';

/** What a variant runs: a design and, for blinded, how evaluate is paid and whether through a relay. */
export interface VariantSpec {
  design: DesignName;
  /** Blinded: the server's `blindedAuth`. */
  auth?: BlindedAuth;
  relay: boolean;
}

/** Every variant a run can be, as `--designs` names them. */
export const WORKLOAD_VARIANTS = {
  plain: { design: 'plain', relay: false },
  hashed: { design: 'hashed', relay: false },
  blinded: { design: 'blinded', auth: 'account', relay: false },
  'blinded-anonymous': { design: 'blinded', auth: 'token', relay: false },
  'blinded-anonymous+relay': { design: 'blinded', auth: 'token', relay: true },
} as const satisfies Record<string, VariantSpec>;
export type WorkloadVariant = keyof typeof WORKLOAD_VARIANTS;
export const VARIANT_NAMES = Object.keys(WORKLOAD_VARIANTS) as WorkloadVariant[];

export function variantSpec(v: WorkloadVariant): VariantSpec {
  return WORKLOAD_VARIANTS[v];
}

/** Evaluate paid with Privacy Pass tokens: no account in the evaluation log. */
export function isAnonymous(v: WorkloadVariant): boolean {
  return variantSpec(v).auth === 'token';
}

export interface RunTarget {
  variant: WorkloadVariant;
  /** Blinded only. */
  bucketBits?: number;
}

/** The library's quantum of class-1 tokens per day (client/tokens.ts DEFAULT_QUANTUM). */
export const LIBRARY_TOKEN_QUANTUM = DEFAULT_QUANTUM[1]!;

/** No timer of the pool's own (module header): the run calls fetchQuantum() at the simulated instants the library's rule gives. */
const simulatedPool = (quantum: number): TokenPoolOptions => ({ periodMs: Infinity, quantum: { 1: quantum } });

export interface RunOptions {
  /** Parent folder; the run's data folder is made inside it. */
  root: string;
  usersPerIp: number;
  evalThreads?: number;
  /** Anonymous variants: class-1 tokens each pool fetches per simulated day (default the library's, 8). */
  poolQuantum?: number;
  log?: (line: string) => void;
}

/** One evaluate request a client sent: the truth the requester attack is scored against. */
export interface SentEvaluation {
  /** Simulated instant (the server's clock when it was sent). */
  t: number;
  user: number;
  /** The address the server saw: the user's, or the relay's. */
  ip: string;
  /** Elements sent: with tokens, the size class paid for (padding included). */
  elements: number;
  /** Elements asked for: the numbers that were not in the tag cache. */
  asked: number;
}

/**
 * The anonymous variants' token pools, summed over every install
 * (client/tokens.ts TokenPoolStats: issuance requests, tokens fetched,
 * spent, and fetched on demand), and the app starts and periods' fetches played.
 */
export interface PoolRunStats {
  issuanceRequests: number;
  fetched: number;
  spent: number;
  fetchedOnDemand: number;
  /** App starts (one `fill()` per install: every user at the window's start, and each reinstall). */
  appStarts: number;
  /** Periods' fetches played (one per install and simulated day). */
  quantumFetches: number;
  /** fill() and fetchQuantum() calls that failed (a background fetch's failure is swallowed by the library; counted here). */
  fillErrors: number;
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
  /** Blinded: every evaluate request sent, in order. */
  evaluations: SentEvaluation[];
  /** With tokens. */
  pools: PoolRunStats | null;
  /** Through a relay: the addresses the server was told are relays (ServerOptions.ohttpRelays), which its operator knows. */
  relayIps: string[];
  /** Users behind one IP address (RunOptions.usersPerIp). */
  usersPerIp: number;
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
  return designLabel(variantSpec(t.variant).design, t, t.variant);
}

/** A transport that reports each evaluate request it sent successfully. */
function observingTransport(inner: Transport, sent: (o: RequestOptions<unknown>) => void): Transport {
  return {
    async request<T>(o: RequestOptions<T>) {
      const r = await inner.request(o);
      if (o.method === 'POST' && o.path === PATHS.blindedEvaluate) sent(o as RequestOptions<unknown>);
      return r;
    },
  };
}

/** The address the relay's requests reach the server from (it listens and connects on loopback). */
const RELAY_ADDRESS = '127.0.0.1';

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

/** One install of the app: its client, and with tokens its pool and its next quantum fetch on the simulated clock. */
interface Install {
  user: number;
  client: Client;
  blinded: BlindedClient | undefined;
  /** Padding elements of this client already reported (BlindedClientStats.paddingElements is counted before the request is sent). */
  padding: number;
  /** With tokens: the start of the install's current period, and the instant of its fetch (client/tokens.ts quantumFetchAt). */
  periodStart: number;
  fetchAt: number;
}

/** What a run's player needs of the started run: the server, the relay, the users' tokens and how they reach it. */
interface PlayerSetup {
  child: ServerChild;
  url: string;
  relay: RunningRelay | undefined;
  spec: VariantSpec;
  /** Requester token of user u. */
  tokens: string[];
  usersPerIp: number;
  /** With tokens: class-1 tokens each pool fetches per simulated day. */
  quantum: number;
  seed: string;
  /** The server's clock when the player starts. */
  start: number;
}

/**
 * Plays a script's events on a started server: the app's installs and
 * their first fill, the day's token fetches, and the lookup actions, each
 * at its simulated instant; what they send and cost goes into `record`.
 */
class ScriptPlayer {
  private clock: number;
  private readonly anonymous: boolean;
  private readonly installs = new Map<number, Install>();
  /** Every install of the run, replaced ones included (their pools' stats are summed, and every pool is closed). */
  private readonly everyInstall: Install[] = [];
  private readonly counters: { requests: number; sent: number; received: number }[] = [];
  private readonly rngs = new Map<number, WorkloadRng>();

  constructor(
    private readonly setup: PlayerSetup,
    private readonly record: RunRecord,
  ) {
    this.clock = setup.start;
    this.anonymous = setup.spec.auth === 'token';
  }

  async setClock(t: number): Promise<void> {
    if (t === this.clock) return;
    const c0 = performance.now();
    await this.setup.child.clock(t);
    this.clock = t;
    this.record.clockSeconds += (performance.now() - c0) / 1000;
  }

  private rngOf(u: number): WorkloadRng {
    let r = this.rngs.get(u);
    if (!r) this.rngs.set(u, (r = stream(this.setup.seed, 'token-quantum', u)));
    return r;
  }

  /** A new install of user u's app: a new client (and with tokens its pool and its first period), replacing the old one. */
  private install(u: number): Install {
    const { url, relay, spec, usersPerIp } = this.setup;
    const direct = forwardedFetch(userIp(u, usersPerIp));
    // Through the relay: the blinded config, evaluate and bucket requests sealed to the server's gateway; token issuance direct.
    const fetchFn = relay ? relayFetchFor('blinded', relay.url, { fetch: direct }) : direct;
    const { transport, stats } = countingTransport(createTransport({ baseUrl: url, token: this.setup.tokens[u]!, fetch: fetchFn }));
    this.counters.push(stats);
    let self: Install | undefined;
    const observed = observingTransport(transport, (o) => {
      const elements = (o.body as { elements: unknown[] }).elements.length;
      const padding = self?.blinded ? self.blinded.stats.paddingElements - self.padding : 0;
      if (self?.blinded) self.padding = self.blinded.stats.paddingElements;
      this.record.evaluations.push({ t: this.clock, user: u, ip: spec.relay ? RELAY_ADDRESS : userIp(u, usersPerIp), elements, asked: elements - padding });
    });
    const client = createClient({ baseUrl: url, design: spec.design, transport: observed, ...(this.anonymous ? { tokens: simulatedPool(this.setup.quantum) } : {}) });
    self = { user: u, client, blinded: designOf(client, 'blinded'), padding: 0, periodStart: this.clock, fetchAt: Infinity };
    if (this.anonymous) self.fetchAt = quantumFetchAt(self.periodStart, DAY_MS, this.rngOf(u).float());
    const old = this.installs.get(u);
    if (old) old.blinded?.tokens.close(); // the old app is gone, with its tokens and its schedule (its entry is replaced)
    this.installs.set(u, self);
    this.everyInstall.push(self);
    return self;
  }

  /** The app starts: installed, and with tokens its pool fetches ahead (client/tokens.ts fill). */
  async appStart(u: number): Promise<Install> {
    const inst = this.install(u);
    if (this.anonymous) {
      this.record.pools!.appStarts++;
      await this.fill(inst.blinded!.tokens, 'fill');
    }
    return inst;
  }

  private async fill(pool: TokenPool, how: 'fill' | 'quantum'): Promise<void> {
    try {
      if (how === 'fill') await pool.fill();
      else await pool.fetchQuantum();
    } catch (e) {
      this.record.pools!.fillErrors++;
      this.record.firstError ??= `token ${how}: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  /** With tokens: the periods' fetches due up to `t`, in time order (ties: the lower user), each at its own instant. */
  async quantumFetchesUntil(t: number): Promise<void> {
    if (!this.anonymous) return;
    for (;;) {
      let due: Install | undefined;
      for (const i of this.installs.values()) if (i.fetchAt <= t && (due === undefined || i.fetchAt < due.fetchAt)) due = i;
      if (!due) return;
      await this.setClock(Math.round(due.fetchAt));
      due.periodStart += DAY_MS;
      due.fetchAt = quantumFetchAt(due.periodStart, DAY_MS, this.rngOf(due.user).float());
      this.record.pools!.quantumFetches++;
      await this.fill(due.blinded!.tokens, 'quantum');
    }
  }

  /** A lookup action at its instant: a reinstall's sync starts a new app; a failure is counted, not thrown. */
  async play(a: ScriptAction, numbers: readonly E164[]): Promise<void> {
    await this.quantumFetchesUntil(a.t);
    await this.setClock(a.t);
    this.record.lookups += numbers.length;
    const l0 = performance.now();
    try {
      const inst = (a.kind === 'sync' ? undefined : this.installs.get(a.user)) ?? (await this.appStart(a.user));
      if (a.kind === 'sync') await inst.client.lookupMany(numbers);
      else await inst.client.lookup(numbers[0]!);
    } catch (e) {
      this.record.errors++;
      this.record.firstError ??= e instanceof Error ? e.message : String(e);
    }
    this.record.clientSeconds += (performance.now() - l0) / 1000;
  }

  /** The transports' request and byte counts, and with tokens every pool's stats, into the record. */
  tally(): void {
    const { record } = this;
    for (const c of this.counters) {
      record.requests += c.requests;
      record.bytesSent += c.sent;
      record.bytesReceived += c.received;
    }
    if (record.pools) {
      for (const i of this.everyInstall) {
        const st = i.blinded!.tokens.stats;
        record.pools.issuanceRequests += st.issuanceRequests;
        record.pools.fetched += st.tokensFetched;
        record.pools.spent += st.tokensSpent;
        record.pools.fetchedOnDemand += st.fetchesOnDemand;
      }
    }
  }

  close(): void {
    for (const i of this.everyInstall) i.blinded?.tokens.close();
  }
}

function emptyRecord(target: RunTarget, dataDir: string, accountIds: number[], relayIps: string[], usersPerIp: number): RunRecord {
  return {
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
    evaluations: [],
    pools: isAnonymous(target.variant) ? { issuanceRequests: 0, fetched: 0, spent: 0, fetchedOnDemand: 0, appStarts: 0, quantumFetches: 0, fillErrors: 0 } : null,
    relayIps,
    usersPerIp,
  };
}

export async function runScript(pop: WorkloadPopulation, script: Script, target: RunTarget, options: RunOptions): Promise<RunRecord> {
  const log = options.log ?? (() => {});
  const t0 = performance.now();
  const label = runLabel(target);
  const spec = variantSpec(target.variant);
  const dataDir = fs.mkdtempSync(path.join(options.root, `${label.replace(/[^a-z0-9]+/gi, '-')}-`));
  const { accountIds, tokens } = seedUsers(dataDir, pop, script.options.start - DAY_MS);
  const child = forkServer();
  let relay: RunningRelay | undefined;
  let player: ScriptPlayer | undefined;
  const relayIps = spec.relay ? [RELAY_ADDRESS] : [];
  const record = emptyRecord(target, dataDir, accountIds, relayIps, options.usersPerIp);
  try {
    await child.clock(script.options.start);
    const started = await child.start(
      {
        dataDir,
        designs: [spec.design],
        bucketBits: target.bucketBits ?? 0,
        ...(spec.auth ? { blindedAuth: spec.auth } : {}),
        ...(spec.relay ? { ohttpRelays: relayIps } : {}),
        rateLimits: false,
        trustProxy: 'loopback',
        retentionMs: Math.max(30 * DAY_MS, script.end - script.options.start + 2 * DAY_MS),
        adminToken: ADMIN_TOKEN,
        ...(options.evalThreads !== undefined ? { evalThreads: options.evalThreads } : {}),
      },
      openTimeoutMs(pop.users),
    );
    record.directorySize = started.directorySize;
    record.startSeconds = started.seconds;
    // The relay's own per-IP limit would see every simulated user as this process's one address.
    if (spec.relay) relay = await startRelay({ gateway: started.url, host: RELAY_ADDRESS, port: 0, ipLimitPerMinute: 1_000_000_000 });
    const quantum = options.poolQuantum ?? LIBRARY_TOKEN_QUANTUM;
    player = new ScriptPlayer({ child, url: started.url, relay, spec, tokens, usersPerIp: options.usersPerIp, quantum, seed: script.options.seed, start: script.options.start }, record);

    // Every app is installed before the window (the same fill for every user, at the window's start); the schedule follows.
    if (isAnonymous(target.variant)) for (let u = 0; u < pop.users; u++) await player.appStart(u);

    let last = performance.now();
    for (let i = 0; i < script.actions.length; i++) {
      const a = script.actions[i]!;
      await player.play(a, a.people.map((p) => pop.numbers[p]!));
      if (performance.now() - last > 15_000) {
        last = performance.now();
        log(`    ${label}: ${i + 1}/${script.actions.length} actions, day ${((a.t - script.options.start) / DAY_MS).toFixed(1)}`);
      }
    }
    await player.quantumFetchesUntil(script.end - 1);
    await child.clock(script.end);
    player.tally();
  } finally {
    player?.close();
    await relay?.close();
    await child.close(); // flushes the query logs into the data folder
  }
  record.seconds = (performance.now() - t0) / 1000;
  return record;
}
