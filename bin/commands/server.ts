/**
 * Server-side commands: `pcd serve`, `pcd start` (npm start), `pcd seed`,
 * `pcd rotate-key`, `pcd publish-buckets` and `pcd page-link`'s server half
 * (`pcd audit` is bin/commands/audit.ts). They own argv, the environment,
 * signals and the console; the work itself is in the modules they call
 * (seeding: server/seed.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { DESIGNS, parseDesigns } from '../../shared/designs/index.ts';
import { MODES, type BackendName, type OprfMode } from '../../shared/suite.ts';
import { DEFAULT_PORT } from '../../shared/defaults.ts';
import { BLINDED_AUTHS, DEFAULT_BLINDED_AUTH, DEFAULT_ISSUER_NAME, DEFAULT_SIZE_CLASSES, type BlindedAuth } from '../../shared/tokens.ts';
import { backendOption, int, num, sizeClassList } from '../options.ts';
import { runsUntilStopped } from '../output.ts';
import { DAY_MS } from '../../server/querylog.ts';
import { DEFAULT_RATE_LIMITS } from '../../server/ratelimit.ts';
import { LIMITS } from '../../shared/limits.ts';
import { checkListen, startServer, type RunningServer } from '../../server/server.ts';
import { relayAddresses } from '../../server/ohttp.ts';
import { parseTrustProxy } from '../../server/clientip.ts';
import { DEFAULT_CONNECTION_LIMITS } from '../../server/net.ts';
import { Store } from '../../server/store.ts';
import { PgStore } from '../../server/pg/store.ts';
import { redactUrl, storeUrl, STORE_URL_ENV } from '../../server/pg/connect.ts';
import { acquireFolderLock } from '../../server/lock.ts';
import { rotateKeyOffline } from '../../server/designs/blinded.ts';
import { designOf } from '../../server/designs/index.ts';
import { publishBuckets } from '../../server/blinded/publish.ts';
import { BUCKET_BASE_URL } from '../../shared/designs/blinded.ts';
import { createWebUi, type WebUi } from '../../web/server.ts';
import { recordStartDemo, startDemoAccount } from '../../server/startdemo.ts';
import { contactsDirFor, REQUESTERS_FILE, seedDataFolder, seedStore, START_SEED_SIZE, type SeedResult } from '../../server/seed.ts';
import { loggerFor } from '../../server/logger.ts';
import type { SeedOptions } from '../../synth/directory.ts';

export const DEFAULT_DATA = 'data';

/**
 * Says when the blinded design is ready: the server listens (plain and
 * hashed answer) while its epochs load or build, with progress on stderr.
 */
function announceReady(server: RunningServer): void {
  const blinded = designOf(server.designs, 'blinded');
  if (!blinded) return;
  let pending = true;
  void server.ready.then(
    () => {
      pending = false;
      const st = blinded.epochs.stats;
      const how = [
        st.cacheLoads ? `${st.cacheLoads} epoch(s) loaded from cache${st.replayedChanges ? `, ${st.replayedChanges} journaled change(s) replayed` : ''}` : '',
        st.lastBuild
          ? `${st.builds} built, the last from ${st.lastBuild.numbers.toLocaleString('en-US')} numbers in ${st.lastBuild.seconds.toFixed(1)} s on ${st.lastBuild.threads} thread(s)`
          : '',
      ].filter(Boolean);
      console.log(`blinded ready: current epoch ${blinded.epochs.currentNumber}${how.length ? ` (${how.join('; ')})` : ''}`);
    },
    (e: unknown) => {
      pending = false;
      process.stderr.write(`blinded is not ready: ${e instanceof Error ? e.message : String(e)}; its routes answer 503 (see the log)\n`);
    },
  );
  // Printed after the "serving" line unless the epochs were ready already.
  setImmediate(() => {
    if (pending) console.log('blinded: loading or building its epochs; its routes answer 503 until it is ready');
  });
}

/**
 * SIGINT/SIGTERM: stop accepting, let in-flight requests finish within the
 * deadline, flush the query logs, exit 0. A second signal cuts the
 * in-flight requests at once (the logs are still flushed).
 */
function onSignals(server: RunningServer, deadlineMs: number): void {
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) {
      process.stderr.write(`${sig} again: cutting in-flight requests\n`);
      server.http.closeAllConnections();
      return;
    }
    stopping = true;
    process.stderr.write(`\n${sig}: finishing in-flight requests (at most ${deadlineMs / 1000} s), flushing query logs, stopping\n`);
    server.close(deadlineMs).then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`pcd: stopping failed: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // Started by `pcd cluster` (server/cluster.ts) with an IPC channel: when the cluster is gone, even killed, the node stops too.
  if (process.channel) {
    process.channel.unref();
    process.once('disconnect', () => stop('the cluster exited'));
  }
}

interface ServeFlags {
  port: number;
  host: string;
  data: string;
  design: string;
  bucketBits?: number;
  mode?: OprfMode;
  retentionDays: number;
  graceHours: number;
  rateLimit: boolean;
  limitBurst: number;
  limitPerHour: number;
  ipLimitPerMinute: number;
  shutdownTimeout: number;
  evalThreads?: number;
  backend: BackendName;
  logLevel: string;
  /** --log FILE: the server log goes there instead of stderr. */
  log?: string;
  /** --trust-proxy, checked (server/clientip.ts parseTrustProxy). */
  trustProxy?: string[];
  maxConnectionsPerIp: number;
  maxConnections: number;
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  /** --ohttp-relay, repeatable and comma separated (server/ohttp.ts). */
  ohttpRelay: string[];
  blindedAuth: BlindedAuth;
  sizeClasses?: number[];
  tokenIssuer?: string;
  /** --bucket-base-url, checked, without a trailing slash. */
  bucketBaseUrl?: string;
  /** --no-ui sets it false. */
  ui: boolean;
}

/** `--bucket-base-url https://cdn.example/pcd`: http(s), no query or fragment; a trailing slash is dropped. */
function bucketBaseUrl(value: string): string {
  const v = value.replace(/\/+$/, '');
  if (!BUCKET_BASE_URL.test(v)) throw new InvalidArgumentError(`expected an http(s) URL without query or fragment, got '${value.slice(0, 80)}'`);
  return v;
}

/** `start` logs at warn unless told otherwise (its terminal is for the human lines); `serve` at info. */
function addServeOptions(cmd: Command, defaultLogLevel = 'info'): Command {
  return cmd
    .option('-p, --port <port>', 'port', int('--port', 0, 65535), DEFAULT_PORT)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--data <dir>', 'data folder', DEFAULT_DATA)
    .option('--design <list>', 'designs to serve, comma separated', DESIGNS.join(','))
    .option('--bucket-bits <b>', 'blinded design: bucket bits for new epochs', int('--bucket-bits', 0, LIMITS.maxBucketBits))
    .addOption(new Option('--mode <mode>', 'blinded design: OPRF mode for new epochs').choices([...MODES]))
    .option('--retention-days <days>', 'query log retention', num('--retention-days', 0, 36_500), 30)
    .option('--grace-hours <hours>', 'blinded design: how long a rotated-out epoch is still served', num('--grace-hours', 0, 87_600), 24)
    .option('--no-rate-limit', 'turn the rate limits off (benchmarks, scripted research runs)')
    .option('--limit-burst <n>', 'lookups a requester may make at first (its initial contact sync)', int('--limit-burst', 1), DEFAULT_RATE_LIMITS.requesterBurst)
    .option('--limit-per-hour <n>', 'lookups given back to a requester per hour', num('--limit-per-hour', 0.001, 1e9), DEFAULT_RATE_LIMITS.requesterPerHour)
    .option('--ip-limit-per-minute <n>', 'requests per minute per client IP, on every endpoint', int('--ip-limit-per-minute', 1), DEFAULT_RATE_LIMITS.ipPerMinute)
    .option('--shutdown-timeout <s>', 'on SIGTERM/SIGINT: seconds in-flight requests get to finish', num('--shutdown-timeout', 0, 3600), 10)
    .option('--eval-threads <n>', 'blinded design: evaluate worker threads (0: main thread; default PCD_EVAL_THREADS, else one per core)', int('--eval-threads', 0, 256))
    .addOption(backendOption())
    .option(
      '--trust-proxy <list>',
      'reverse proxies whose X-Forwarded-For is believed, comma separated: addresses, CIDRs, loopback, linklocal, uniquelocal (the client IP is the rightmost address they did not add)',
      (v: string) => [...parseTrustProxy(v)],
    )
    .option('--max-connections-per-ip <n>', 'open connections one address may hold (trusted proxies and OHTTP relays exempt)', int('--max-connections-per-ip', 1, 1_000_000), DEFAULT_CONNECTION_LIMITS.maxConnectionsPerIp)
    .option('--max-connections <n>', 'open connections in all (lowered to the open-file limit less a headroom)', int('--max-connections', DEFAULT_CONNECTION_LIMITS.reserve + 1, 10_000_000), DEFAULT_CONNECTION_LIMITS.maxConnections)
    .option('--headers-timeout <s>', 'seconds a request line and headers may take to arrive', num('--headers-timeout', 0.1, 3600), DEFAULT_CONNECTION_LIMITS.headersTimeoutMs / 1000)
    .option('--request-timeout <s>', 'seconds a whole request, body included, may take to arrive', num('--request-timeout', 0.1, 3600), DEFAULT_CONNECTION_LIMITS.requestTimeoutMs / 1000)
    .option('--keep-alive-timeout <s>', 'seconds an idle kept-alive connection stays open', num('--keep-alive-timeout', 0.1, 3600), DEFAULT_CONNECTION_LIMITS.keepAliveTimeoutMs / 1000)
    .option(
      '--ohttp-relay <addrs>',
      'IP addresses of OHTTP relays (pcd relay), comma separated or repeated: exempt from the per-IP limit, as each speaks for many clients',
      (v: string, prev: string[]) => [...prev, ...relayAddresses(v.split(',')).values()],
      [] as string[],
    )
    .addOption(
      new Option('--blinded-auth <auth>', 'blinded design: who pays for evaluate: a Privacy Pass token (no account in the log) or the account')
        .choices([...BLINDED_AUTHS])
        .default(DEFAULT_BLINDED_AUTH),
    )
    .option('--size-classes <list>', `blinded design, with tokens: the size classes a request is padded to (default ${DEFAULT_SIZE_CLASSES.join(',')})`, sizeClassList)
    .option('--token-issuer <name>', `blinded design, with tokens: the issuer name in the token challenge (default ${DEFAULT_ISSUER_NAME})`)
    .option('--bucket-base-url <url>', 'blinded design: a static host serving what pcd publish-buckets wrote; the config names it and clients fetch buckets there', bucketBaseUrl)
    .option('--no-ui', 'do not serve the web page at / (nor its log view)')
    .option('--log-level <level>', 'server log level (pino)', process.env.PCD_LOG_LEVEL ?? defaultLogLevel)
    .option('--log <file>', 'append the server log (pino JSON) to this file (0600) instead of stderr');
}

async function serve(o: ServeFlags & { store?: string; nodeName?: string; masterKeyFile?: string }, web: WebUi | undefined): Promise<RunningServer> {
  const server = await startServer({
    store: o.store,
    nodeName: o.nodeName,
    masterKeyFile: o.masterKeyFile,
    web: web?.mount,
    dataDir: o.data,
    port: o.port,
    host: o.host,
    designs: parseDesigns(o.design),
    bucketBits: o.bucketBits,
    mode: o.mode,
    retentionMs: o.retentionDays * DAY_MS,
    graceMs: o.graceHours * 3600_000,
    rateLimits: o.rateLimit ? { requesterBurst: o.limitBurst, requesterPerHour: o.limitPerHour, ipPerMinute: o.ipLimitPerMinute } : false,
    shutdownTimeoutMs: o.shutdownTimeout * 1000,
    evalThreads: o.evalThreads,
    backend: o.backend,
    trustProxy: o.trustProxy,
    connectionLimits: {
      maxConnectionsPerIp: o.maxConnectionsPerIp,
      maxConnections: o.maxConnections,
      headersTimeoutMs: Math.round(o.headersTimeout * 1000),
      requestTimeoutMs: Math.round(o.requestTimeout * 1000),
      keepAliveTimeoutMs: Math.round(o.keepAliveTimeout * 1000),
    },
    ohttpRelays: o.ohttpRelay,
    blindedAuth: o.blindedAuth,
    sizeClasses: o.sizeClasses,
    tokenIssuer: o.tokenIssuer,
    bucketBaseUrl: o.bucketBaseUrl,
    progress: true,
    logger: loggerFor(o.logLevel, o.log),
  });
  onSignals(server, o.shutdownTimeout * 1000);
  return server;
}

export function registerServerCommands(program: Command): void {
  registerServe(program);
  registerStart(program);
  registerSeed(program);
  registerRotateKey(program);
  registerPublishBuckets(program);
}

/** `pcd serve`: what the data folder holds (or a shared store), with the page unless on a shared store. */
function registerServe(program: Command): void {
  addServeOptions(program.command('serve').description('serve what the data folder holds (an empty directory included)'))
    .option('--store <url>', `a shared Postgres store (postgres://…, or ${STORE_URL_ENV}) for accounts, the directory, the blinded epochs and the query logs, which several nodes serve from (the data folder stays this node's own)`)
    .option('--node-name <name>', 'with --store: this node\'s name in the shared journal holds (default: one made once and kept in the data folder)')
    .option('--master-key <file>', 'with --store: the key (32 bytes, 0600) that wraps the blinded epoch and token keys in the store, the same file on every node (default: <data>/master.key, made there when the store has none yet)')
    .action(async (o: ServeFlags & { store?: string; nodeName?: string; masterKey?: string }, cmd: Command) => {
      runsUntilStopped();
      const shared = storeUrl(o.store);
      // No page on a shared store (server/server.ts), unless asked for (and then refused in one line).
      if (shared && cmd.getOptionValueSource('ui') === 'default') o.ui = false;
      const web = o.ui ? createWebUi() : undefined;
      const server = await serve({ ...o, store: shared, nodeName: o.nodeName, masterKeyFile: o.masterKey }, web);
      const where = shared ? `store: ${redactUrl(shared)}, data: ${path.resolve(o.data)}` : `data: ${path.resolve(o.data)}`;
      console.log(`pcd serving ${server.designs.map((d) => d.name).join(', ')} on ${server.url} (${where}, ${server.directory.size} numbers)`);
      console.log(`admin token: ${server.adminTokenSource}`);
      if (web) printPage(server, web, o.host);
      announceReady(server);
    });
}

/** `pcd start`: seeds an empty data folder, serves it, and prints what to paste to try it. */
function registerStart(program: Command): void {
  addServeOptions(
    program
      .command('start')
      .description('the quick start: seed a default directory into an empty data folder, then serve and print how to query it')
      .option('--size <n>', 'numbers to seed when the data folder is empty', int('--size', 10, 10_000_000), START_SEED_SIZE),
    'warn',
  ).action(async (o: ServeFlags & { size: number }) => {
    runsUntilStopped();
    // A busy port first, before the folder is locked, seeded or given keys (server/server.ts checkListen).
    await checkListen(o.host, o.port);
    const contactsDir = contactsDirFor(o.data);
    // Under the folder's lock, like the seeding and serving that follow (each takes it in turn).
    const lock = acquireFolderLock(o.data, { role: 'server', logger: loggerFor(o.logLevel, o.log) });
    let empty: boolean;
    try {
      const store = Store.open(o.data);
      empty = store.directorySize() === 0;
      store.close();
    } finally {
      lock.release();
    }
    let seeded: SeedResult | undefined;
    if (empty) {
      console.log(`seeding a synthetic directory of ${o.size} numbers into ${path.resolve(o.data)} ...`);
      // Contact lists of 200 (half registered), shorter for a directory too small for them.
      seeded = await seedDataFolder(o.data, contactsDir, { size: o.size, contactsPerRequester: Math.min(200, Math.max(2, Math.floor(o.size / 2))) });
      console.log(`seeded ${seeded.numbers} numbers in ${(seeded.ms / 1000).toFixed(1)} s; contact lists in ${contactsDir}`);
    }
    const web = o.ui ? createWebUi() : undefined;
    const server = await serve(o, web);
    // Only an account start seeded or made itself: never a token for someone else's (server/startdemo.ts).
    const first = seeded?.requesters[0];
    if (first) recordStartDemo(server.store, first.accountId);
    const demo = startDemoAccount(server.store, readRequesters(contactsDir), Date.now());
    if (demo.created) console.log(`created the demo requester ${demo.email} (account ${demo.accountId}): this data folder was not seeded by pcd start`);
    web?.usePageAccount(demo);
    console.log('');
    console.log(`pcd is serving ${server.designs.map((d) => d.name).join(', ')} on ${server.url}  (${server.directory.size} registered numbers)`);
    console.log(`admin token:      ${server.adminTokenSource}`);
    if (web) printPage(server, web, o.host);
    console.log(`demo requester:   ${demo.email} (account ${demo.accountId})`);
    console.log(`requester token:  ${demo.token}`);
    console.log(`server log:       ${o.log ? path.resolve(o.log) : `stderr, level ${o.logLevel} (--log FILE, --log-level)`}`);
    console.log('');
    for (const line of quickStartCommands(server, o, demo)) console.log(line);
    console.log('Ctrl-C stops the server (query logs are flushed first).');
    announceReady(server);
  });
}

interface SeedFlags {
  data: string;
  size: number;
  seed: string;
  regions?: string;
  requesters: number;
  contacts: number;
  registeredShare: number;
  contactsDir?: string;
  store?: string;
}

/** `pcd seed`: a synthetic directory into an empty data folder, or a shared store. */
function registerSeed(program: Command): void {
  program
    .command('seed')
    .description('write a synthetic directory (fixed random seed) into an empty data folder')
    .option('--data <dir>', 'data folder', DEFAULT_DATA)
    .option('--size <n>', 'registered numbers (10^3 .. 10^7)', int('--size', 1, 10_000_000), 10_000)
    .option('--seed <seed>', 'random seed', 'pcd')
    .option('--regions <list>', 'regions, comma separated ISO 3166 codes')
    .option('--requesters <n>', 'accounts that get a contact list', int('--requesters', 0, 10_000), 3)
    .option('--contacts <n>', 'numbers per contact list', int('--contacts', 1, 1_000_000), 200)
    .option('--registered-share <f>', 'share of a contact list that is registered (0..1)', num('--registered-share', 0, 1), 0.5)
    .option('--contacts-dir <dir>', 'where contact lists and requester tokens go (default: contacts/ in the data folder)')
    .option('--store <url>', `a shared Postgres store (postgres://…, or ${STORE_URL_ENV} when no --data is given) instead of the data folder's SQLite: seeded by COPY`)
    .action(async (o: SeedFlags, cmd: Command) => {
      const contactsDir = o.contactsDir ?? contactsDirFor(o.data);
      const options: SeedOptions = {
        size: o.size,
        seed: o.seed,
        regions: o.regions?.split(',').map((s) => s.trim().toUpperCase()),
        requesters: o.requesters,
        contactsPerRequester: o.contacts,
        registeredShare: o.registeredShare,
      };
      const progress = (s: string) => process.stderr.write(s + '\r');
      // PCD_DATABASE_URL applies when no --data is given: a folder named on the command line wins, as in pcd audit.
      const url = storeUrl(o.store, cmd.getOptionValueSource('data') === 'cli' ? {} : process.env);
      let r: SeedResult;
      let where: string;
      if (url) {
        where = redactUrl(url);
        const store = await PgStore.open(url);
        try {
          r = await seedStore(store, where, contactsDir, options, progress);
        } finally {
          await store.close();
        }
      } else {
        where = path.resolve(o.data);
        r = await seedDataFolder(o.data, contactsDir, options, progress);
      }
      process.stderr.write('\n');
      console.log(`seeded ${r.numbers} numbers into ${where} in ${(r.ms / 1000).toFixed(1)} s`);
      for (const q of r.requesters) console.log(`requester ${q.email} (account ${q.accountId}): ${q.contacts} (${q.registered}/${q.total} registered), token ${q.token}`);
      console.log(`tokens are also in ${path.join(contactsDir, REQUESTERS_FILE)} (mode 0600)`);
    });
}

/** `pcd rotate-key`: the blinded design's offline key rotation (server/designs/blinded.ts rotateKeyOffline). */
function registerRotateKey(program: Command): void {
  program
    .command('rotate-key')
    .description('blinded design: make a new epoch with a new key; the old one is served for the grace period, then its key is destroyed (server must be stopped; use POST /v1/admin/rotate-key on a running one)')
    .option('--data <dir>', 'data folder', DEFAULT_DATA)
    .option('--bucket-bits <b>', 'bucket bits of the new epoch', int('--bucket-bits', 0, LIMITS.maxBucketBits))
    .addOption(new Option('--mode <mode>', 'OPRF mode of the new epoch').choices([...MODES]))
    .option('--grace-hours <hours>', 'how long the previous epoch is still served', num('--grace-hours', 0, 87_600), 24)
    .addOption(backendOption())
    .option('--repair', 'where the key file and the database disagree: destroy keys of unknown epochs, retire for good the live epochs whose key is lost or wrong, then rotate')
    .action(async (o: { data: string; bucketBits?: number; mode?: OprfMode; graceHours: number; backend: BackendName; repair?: boolean }) => {
      const r = await rotateKeyOffline({
        dataDir: o.data,
        bucketBits: o.bucketBits,
        mode: o.mode,
        graceMs: o.graceHours * 3600_000,
        backend: o.backend,
        progress: true,
        repair: o.repair,
        logger: loggerFor(process.env.PCD_LOG_LEVEL ?? 'warn'), // what was tightened or repaired, on stderr
      });
      for (const line of r.repaired ?? []) console.log(`repaired: ${line}`);
      console.log(`new epoch ${r.epoch}${r.previous ? `; epoch ${r.previous} is served until ${new Date(r.retiresAt ?? 0).toISOString()}, then its key is destroyed` : ''}`);
    });
}

/** `pcd publish-buckets`: an epoch's buckets as static files (server/blinded/publish.ts). */
function registerPublishBuckets(program: Command): void {
  program
    .command('publish-buckets')
    .description("blinded design: write an epoch's buckets as static files (OUT/<epoch>/<bucket>.msgpack and manifest.json) for any static host; with the server stopped")
    .option('--data <dir>', 'data folder', DEFAULT_DATA)
    .option('--epoch <n>', 'the epoch to publish (required)', int('--epoch', 1, 2 ** 31 - 1))
    .option('--out <dir>', 'where to write <epoch>/ (required; an existing <epoch>/ there is replaced in one rename)')
    .addOption(backendOption())
    .action(async (o: { data: string; epoch?: number; out?: string; backend: BackendName }) => {
      // Checked here rather than by commander, whose refusal of a missing option is followed by the whole help.
      if (o.epoch === undefined) throw new PcdError(ErrorCode.InvalidField, '--epoch N is required: the epoch whose buckets to publish (see GET /v1/blinded/config)');
      if (o.out === undefined) throw new PcdError(ErrorCode.InvalidField, '--out DIR is required: the folder to write <epoch>/ into, which a static host serves');
      const r = await publishBuckets({ dataDir: o.data, epoch: o.epoch, out: o.out, backend: o.backend, logger: loggerFor(process.env.PCD_LOG_LEVEL ?? 'warn') });
      const m = r.manifest;
      console.log(
        `published epoch ${m.epoch}: ${m.buckets} bucket${m.buckets === 1 ? '' : 's'} (bucketBits ${m.bucketBits}, ${r.bytes.toLocaleString('en-US')} bytes) at directory version ${m.version}, root ${m.root}, into ${shownPath(r.dir)}`,
      );
      console.log(`serve ${shownPath(o.out)} from a static host and start the server with --bucket-base-url <its URL>; publish again after directory changes`);
    });
}

/** A path as the user can paste it: relative to the working folder when below it, else absolute. */
function shownPath(p: string): string {
  const rel = path.relative(process.cwd(), path.resolve(p));
  return rel === '' ? '.' : rel.startsWith('..') || path.isAbsolute(rel) ? path.resolve(p) : rel;
}

/**
 * What `pcd start` prints to paste, in order, in another terminal: the same
 * lookup in each design, then the audit of each design's log for the
 * looked-up number (plain names it, hashed gives it up by enumeration,
 * blinded has no row derived from it), then a contact list and the relay.
 */
export function quickStartCommands(server: RunningServer, o: Pick<ServeFlags, 'data' | 'port'>, demo: { token: string; accountId: number; contacts: string }): string[] {
  const registered = server.store.sampleNumber() ?? '+14155550123';
  const numbers = `${registered} +442079460000`;
  const served = server.designs.map((d) => d.name);
  const out = [
    'paste in order, in another terminal: the same lookup (a registered number and one that is not) in each design,',
    `  export PCD_SERVER=${server.url} PCD_TOKEN=${demo.token}`,
    ...served.map((d) => `  npm run pcd -- lookup ${numbers} --design ${d}`),
    `then what a pen-register order for ${registered} yields from each design's log (plain and hashed rows are written within a second; blinded keeps counts per minute, written when the minute ends or the server stops):`,
    `  npm run pcd -- audit --data ${shownPath(o.data)} --target ${registered}${served.includes('blinded') ? ` --account ${demo.accountId}` : ''}`,
  ];
  if (demo.contacts) out.push('check a whole contact list:', `  npm run pcd -- sync ${shownPath(demo.contacts)}${served.includes('blinded') ? '' : ` --design ${served[0]}`}`);
  const blinded = designOf(server.designs, 'blinded');
  if (blinded?.tokens) {
    const relayPort = o.port === 0 ? 8788 : o.port + 1;
    out.push(
      'blinded evaluate is paid with Privacy Pass tokens, so its log names no account (--blinded-auth account to compare);',
      'to hide your address as well, run an OHTTP relay and add --relay to the lookup:',
      `  npm run pcd -- relay --gateway ${server.url} --port ${relayPort}`,
      `  npm run pcd -- lookup ${registered} --relay http://127.0.0.1:${relayPort}`,
    );
  }
  return out;
}

/** The page's address, and the one-time link that opens it with the log view (notebook-server style). */
function printPage(server: RunningServer, web: WebUi, host: string): void {
  console.log(`web page:         ${server.url}/  (answers only)`);
  console.log(`operator link:    ${web.loginUrl(server.url)}  (works once; opens the page with the log view)`);
  if (!/^(127\.|localhost$|::1$|\[::1\]$)/.test(host)) {
    console.log(`note: --host ${host} makes the page reachable from other machines; its log view still needs the link above`);
  }
}

function readRequesters(contactsDir: string): SeedResult['requesters'] {
  try {
    return JSON.parse(fs.readFileSync(path.join(contactsDir, REQUESTERS_FILE), 'utf8')) as SeedResult['requesters'];
  } catch {
    return [];
  }
}
