/**
 * Client commands: `pcd lookup NUMBER...`, `pcd sync FILE`, and `pcd page-link`
 * (a one-time link to a running server's page with its log view).
 * lookup and sync take --server, --token (or PCD_SERVER, PCD_TOKEN), --design and
 * --region, and print human lines or, with --json, one JSON document.
 *
 * The blinded design refuses OPRF epochs unless --allow-oprf, and pins each
 * epoch's public key; `--pins FILE` (or PCD_PINS) keeps the pins across runs,
 * by default they live for one command only (client/designs/blinded.ts says why).
 *
 * Environment variables are read when the command runs, never as option
 * defaults: `--help` shows no token. Every user error is a PcdError, which
 * bin/pcd.ts prints as one line with a non-zero exit; a refusal for load
 * (429, 503) says when to try again.
 */
import fs from 'node:fs';
import { Command, Option } from 'commander';
import { normalizeNumber, type E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { LIMITS } from '../../shared/limits.ts';
import { DEFAULT_DESIGN, DESIGNS, type DesignName } from '../../shared/messages.ts';
import type { BackendName } from '../../shared/suite.ts';
import { DEFAULT_SERVER } from '../../shared/defaults.ts';
import { backendOption } from '../options.ts';
import path from 'node:path';
import { ADMIN_TOKEN_FILE } from '../../disk/files.ts';
import { readAdminToken } from '../../disk/admintoken.ts';
import { OWNER_FILE, ROLE_NAMES, processRuns, readLockOwner } from '../../disk/lockowner.ts';
import { checkBatchSize, createAdminClient, createClient, designOf, type Client, type LookupResult } from '../../client/client.ts';
import type { TokenRecord } from '../../client/tokens.ts';
import { countingTransport, createTransport, normalizeServerUrl } from '../../client/transport.ts';
import { parseContactFile } from '../../client/contacts.ts';
import { relayFetchFor } from '../../client/ohttp.ts';


export function describeAnswer(capabilities: readonly string[]): string {
  return capabilities.length ? `messenger (${capabilities.join(', ')})` : 'SMS only';
}

interface CommonOptions {
  server?: string;
  token?: string;
  design: DesignName;
  region?: string;
  json?: boolean;
  format: 'msgpack' | 'json';
  backend: BackendName;
  allowOprf?: boolean;
  pins?: string;
  /** --relay (env PCD_RELAY): an OHTTP relay for the blinded design (client/ohttp.ts). */
  relay?: string;
  /** --tokens (env PCD_TOKENS): a file that keeps the Privacy Pass token pool across runs. */
  tokens?: string;
}

/** Environment variables of the client commands. */
export const SERVER_ENV = 'PCD_SERVER';
export const TOKEN_ENV = 'PCD_TOKEN';
export const PINS_ENV = 'PCD_PINS';
export const RELAY_ENV = 'PCD_RELAY';
export const TOKENS_ENV = 'PCD_TOKENS';

function addCommon(cmd: Command): Command {
  return cmd
    .option('-s, --server <url>', `server base URL, http:// when no scheme is given (env ${SERVER_ENV}, default ${DEFAULT_SERVER})`)
    .option('-t, --token <token>', `requester token (env ${TOKEN_ENV})`)
    .addOption(new Option('-d, --design <design>', 'lookup design').choices([...DESIGNS]).default(DEFAULT_DESIGN))
    .option('-r, --region <CC>', 'default region for numbers without a country code, e.g. US')
    .addOption(new Option('--format <format>', 'wire format').choices(['msgpack', 'json']).default('msgpack'))
    .addOption(backendOption())
    .option('--allow-oprf', 'blinded: accept epochs in OPRF mode, whose answers carry no proof (refused by default)')
    .option('--pins <file>', `blinded: keep the pinned epoch keys in this JSON file across runs (env ${PINS_ENV}; default: this run only)`)
    .option('--relay <url>', `blinded: send config, evaluate and bucket requests through this OHTTP relay (pcd relay), so the server does not see your address (env ${RELAY_ENV})`)
    .option('--tokens <file>', `blinded, with Privacy Pass tokens: keep a token pool in this file (mode 0600) across runs and top it up after each, so that tokens are fetched ahead of lookups (env ${TOKENS_ENV}; default: each run fetches just the tokens it spends, at the time it spends them)`)
    .option('--json', 'print JSON for machines');
}

/** The connection settings of a command: flags first, then the environment, read now (not when the options were built). */
export function resolveCommon(o: CommonOptions, env: NodeJS.ProcessEnv = process.env): { server: string; token?: string; pinFile?: string; relay?: string; tokenFile?: string } {
  const pick = (flag: string | undefined, name: string) => (flag !== undefined && flag !== '' ? flag : env[name] !== undefined && env[name] !== '' ? env[name] : undefined);
  return {
    server: pick(o.server, SERVER_ENV) ?? DEFAULT_SERVER,
    token: pick(o.token, TOKEN_ENV),
    pinFile: pick(o.pins, PINS_ENV),
    relay: pick(o.relay, RELAY_ENV),
    tokenFile: pick(o.tokens, TOKENS_ENV),
  };
}

/**
 * The token pool of a command run. A CLI process lives for one command, so
 * a pool kept in memory would be fetched right before the lookup and lost
 * after it: without a file the pool keeps nothing ahead and fetches exactly
 * the tokens it spends (nothing of the account's allowance is wasted, but
 * issuance then comes at lookup time). With `--tokens FILE` the pool is
 * read from the file, topped up after the command (client/tokens.ts
 * defaults: 8 of class 1, one of each class used), and written back, so
 * that the next run's lookups spend tokens fetched before.
 */
function tokenPoolFile(file: string | undefined, server: string) {
  const read = (): TokenRecord[] => {
    if (file === undefined) return [];
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new PcdError(ErrorCode.InvalidField, `cannot read the token file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    let doc: { version?: unknown; servers?: Record<string, unknown> };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      throw new PcdError(ErrorCode.InvalidField, `${file} is not a pcd token file (not JSON): fix or remove it`);
    }
    if (doc?.version !== 1 || typeof doc.servers !== 'object' || doc.servers === null) throw new PcdError(ErrorCode.InvalidField, `${file} is not a pcd token file (expected version 1): fix or remove it`);
    const mine = doc.servers[server];
    return Array.isArray(mine) ? (mine as TokenRecord[]) : [];
  };
  const write = (records: TokenRecord[]): void => {
    if (file === undefined) return;
    let servers: Record<string, unknown> = {};
    try {
      servers = (JSON.parse(fs.readFileSync(file, 'utf8')) as { servers?: Record<string, unknown> }).servers ?? {};
    } catch {
      servers = {};
    }
    servers[server] = records;
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ version: 1, servers }) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, file);
  };
  return { keeps: file !== undefined, read, write, options: file === undefined ? { ahead: {}, periodMs: Infinity } : { periodMs: Infinity } };
}

/** Runs `work` with the blinded design's token pool loaded from and saved to the token file (when there is one). */
async function withTokenPool<T>(client: Client, pool: ReturnType<typeof tokenPoolFile>, work: () => Promise<T>): Promise<T> {
  const tokens = designOf(client, 'blinded')?.tokens;
  if (!tokens) return work();
  tokens.import(pool.read());
  try {
    return await work();
  } finally {
    // With a file: topped up after the lookups, so the next run spends tokens fetched now, not at its own lookup time.
    if (pool.keeps) {
      await tokens.fill().catch(() => {});
      pool.write(tokens.export());
    }
    tokens.close();
  }
}

/** Said after a number written without its country code (shared/e164.ts normalizeNumber's message) when no --region was given. */
const REGION_HINT = ": add --region with the number's region (e.g. --region US) or write it with its country code (e.g. +1 415 555 0123)";

function isRegionless(e: PcdError): boolean {
  return e.code === ErrorCode.InvalidNumber && / has no country code and no default region was given$/.test(e.message);
}

/** `--batch`: a whole number from 1 to LIMITS.maxBatch, written in decimal digits; anything else is one invalid_field line. */
export function parseBatchOption(v: string): number {
  const t = v.trim();
  if (!/^\d{1,9}$/.test(t)) throw new PcdError(ErrorCode.InvalidField, `--batch must be a whole number from 1 to ${LIMITS.maxBatch}, got '${v.slice(0, 40)}'`);
  try {
    return checkBatchSize(Number(t));
  } catch {
    throw new PcdError(ErrorCode.InvalidField, `--batch must be a whole number from 1 to ${LIMITS.maxBatch}, got '${v.slice(0, 40)}'`);
  }
}

/**
 * Runs a command's action so that every failure reaching bin/pcd.ts is one
 * line: a PcdError's message (which may come from the server) loses its line
 * breaks, shows other control characters escaped (no terminal escapes from a
 * server) and gains the server's Retry-After; an abort or timeout under
 * fetch becomes a network error.
 */
export function oneLine<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (e) {
      if (e instanceof PcdError) {
        const text = (e.message + (isRegionless(e) ? REGION_HINT : ''))
          .replace(/\s*[\r\n]+\s*/g, ' ')
          .replace(/[\p{Cc}\u2028\u2029\u202a-\u202e\u2066-\u2069]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
        const retry = e.retryAfterSeconds !== undefined ? `; retry after ${e.retryAfterSeconds} s` : '';
        if (text === e.message && retry === '') throw e;
        throw new PcdError(e.code, text + retry, { status: e.status, retryAfterSeconds: e.retryAfterSeconds, cause: e });
      }
      const name = (e as { name?: unknown } | null)?.name;
      if (name === 'AbortError' || name === 'TimeoutError') throw new PcdError(ErrorCode.Network, `the request was cut off: ${(e as Error).message}`, { cause: e });
      throw e;
    }
  };
}

function needToken(token: string | undefined): string {
  if (!token) throw new PcdError(ErrorCode.Unauthenticated, `no requester token: pass --token or set ${TOKEN_ENV} (npm start prints a demo token)`);
  return token;
}

/** The admin token as the server finds it (disk/admintoken.ts), never generated here. */
function adminTokenOf(dataDir: string): string {
  const found = readAdminToken(dataDir);
  if (found?.token) return found.token;
  throw new PcdError(ErrorCode.InvalidField, `no admin token: set PCD_ADMIN_TOKEN, or point --data at the server's data folder (${path.join(dataDir, ADMIN_TOKEN_FILE)} is missing or empty)`);
}

/**
 * Where `pcd page-link` sends the admin token: an address the user gave
 * (--server, else PCD_SERVER), else the URL the server holding the data
 * folder recorded in its owner file (disk/lockowner.ts), which sits beside
 * the admin token in the same 0600 folder. Never a default port: on a
 * shared host whatever listens there may be someone else's server, and it
 * would receive this folder's admin token.
 */
export function pageLinkServer(flag: string | undefined, dataDir: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return flag;
  const fromEnv = env[SERVER_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const owner = readLockOwner(dataDir);
  const ask = `pass --server URL (or set ${SERVER_ENV})`;
  if (!owner) throw new PcdError(ErrorCode.InvalidField, `no server is recorded in ${path.join(dataDir, OWNER_FILE)}: start one on ${dataDir} (pcd serve --data ${dataDir}), or ${ask}`);
  if (owner.role !== 'server') throw new PcdError(ErrorCode.InvalidField, `${dataDir} is held by ${ROLE_NAMES[owner.role]} (pid ${owner.pid}), not a server: ${ask}`);
  if (!processRuns(owner.pid)) throw new PcdError(ErrorCode.InvalidField, `the server recorded in ${path.join(dataDir, OWNER_FILE)} (pid ${owner.pid}) is not running: start one, or ${ask}`);
  if (!owner.url) throw new PcdError(ErrorCode.InvalidField, `the server on ${dataDir} (pid ${owner.pid}) has not recorded its URL yet (is it still starting?): ${ask}`);
  return owner.url;
}

/** A contact file's entries, each normalised (with `region` for national numbers) or refused with why. */
function readContactFile(file: string, region: string | undefined): { entries: string[]; valid: { entry: string; number: E164 }[]; invalid: { entry: string; error: string }[] } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a contact file' : code === 'EACCES' ? 'not readable' : (e as Error).message;
    throw new PcdError(ErrorCode.InvalidField, `cannot read the contact file ${file}: ${why}`);
  }
  const entries = parseContactFile(text);
  const valid: { entry: string; number: E164 }[] = [];
  const invalid: { entry: string; error: string }[] = [];
  for (const entry of entries) {
    try {
      valid.push({ entry, number: normalizeNumber(entry, region) });
    } catch (e) {
      if (!(e instanceof PcdError)) throw e;
      invalid.push({ entry, error: e.message });
    }
  }
  return { entries, valid, invalid };
}

export function registerClientCommands(program: Command): void {
  registerPageLink(program);
  registerLookup(program);
  registerSync(program);
}

/** `pcd page-link`: asks a running server, with its admin token, for a new one-time link to its page. */
function registerPageLink(program: Command): void {
  program
    .command('page-link')
    .description("a new one-time link to a running server's web page with its log view (admin token: PCD_ADMIN_TOKEN, else the data folder's file)")
    .option('-s, --server <url>', `server base URL (env ${SERVER_ENV}; default: the URL the data folder's server recorded in its ${OWNER_FILE})`)
    .option('--data <dir>', "the server's data folder, for its admin-token file and the server's URL", 'data')
    .action(
      oneLine(async (o: { server?: string; data: string }) => {
        const baseUrl = pageLinkServer(o.server, o.data);
        console.log(await createAdminClient({ baseUrl, adminToken: adminTokenOf(o.data) }).pageLink());
      }),
    );
}

/** `pcd lookup NUMBER...`: one lookup of the numbers given. */
function registerLookup(program: Command): void {
  addCommon(
    program
      .command('lookup')
      .description('look numbers up: messenger (with capabilities) or SMS only')
      .argument('<numbers...>', 'phone numbers, E.164 or national with --region'),
  ).action(oneLine(async (numbers: string[], o: CommonOptions) => {
    const c = resolveCommon(o);
    const pool = tokenPoolFile(c.tokenFile, normalizeServerUrl(c.server));
    const client = createClient({
      baseUrl: c.server,
      token: needToken(c.token),
      design: o.design,
      defaultRegion: o.region,
      format: o.format,
      backend: o.backend,
      allowOprf: o.allowOprf,
      pinFile: c.pinFile,
      relay: c.relay,
      tokens: pool.options,
    });
    const results = await withTokenPool(client, pool, () => client.lookupMany(numbers));
    if (o.json) {
      console.log(JSON.stringify({ design: o.design, results }, null, 2));
      return;
    }
    for (const r of results) console.log(`${r.number.padEnd(16)} ${describeAnswer(r.capabilities)}`);
  }));
}

/** `pcd sync FILE`: a contact file checked in batches, with what it cost on the wire. */
function registerSync(program: Command): void {
  addCommon(
    program
      .command('sync')
      .description('check a contact list (one number per line, or a vCard file) in batches')
      .argument('<file>', 'contact file: one number per line, or .vcf')
      .option('-b, --batch <n>', `numbers per request, 1 to ${LIMITS.maxBatch}`, '1000'),
  ).action(oneLine(async (file: string, o: CommonOptions & { batch: string }) => {
    const batch = parseBatchOption(o.batch);
    const c = resolveCommon(o);
    const { entries, valid, invalid } = readContactFile(file, o.region);
    const { transport, stats } = countingTransport(createTransport({ baseUrl: c.server, token: needToken(c.token), format: o.format, fetch: relayFetchFor(o.design, c.relay) }));
    const pool = tokenPoolFile(c.tokenFile, normalizeServerUrl(c.server));
    const client = createClient({ baseUrl: c.server, design: o.design, batchSize: batch, transport, backend: o.backend, allowOprf: o.allowOprf, pinFile: c.pinFile, tokens: pool.options });
    const started = performance.now();
    const results: LookupResult[] = valid.length ? await withTokenPool(client, pool, () => client.lookupMany(valid.map((v) => v.number))) : [];
    const ms = performance.now() - started;
    const messenger = results.filter((r) => r.capabilities.length > 0).length;
    const summary = {
      design: o.design,
      entries: entries.length,
      valid: valid.length,
      unique: new Set(valid.map((v) => v.number)).size,
      invalid: invalid.length,
      messenger,
      smsOnly: results.length - messenger,
      requests: stats.requests,
      bytesSent: stats.sent,
      bytesReceived: stats.received,
      ms: Math.round(ms),
    };
    if (o.json) {
      console.log(
        JSON.stringify(
          { summary, results: results.map((r, i) => ({ entry: valid[i]!.entry, ...r })), invalid },
          null,
          2,
        ),
      );
      return;
    }
    console.log(
      `${summary.entries} entries: ${summary.valid} valid (${summary.unique} unique), ${summary.invalid} invalid; ` +
        `${summary.messenger} messenger, ${summary.smsOnly} SMS only; ` +
        `${summary.requests} requests, ${summary.bytesSent} B sent, ${summary.bytesReceived} B received, ${summary.ms} ms (${o.design})`,
    );
    for (const r of results) console.log(`${r.number.padEnd(16)} ${describeAnswer(r.capabilities)}`);
    for (const x of invalid) console.log(`${x.entry.padEnd(16)} invalid: ${x.error}`);
    if (invalid.some((x) => / has no country code and no default region was given$/.test(x.error))) {
      console.log(`numbers without a country code${REGION_HINT}`);
    }
  }));
}
