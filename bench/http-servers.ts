/**
 * The servers of one HTTP benchmark run (bench/http.ts) and the lookup
 * requests prepared for them.
 *
 * One seeded template store; one server child per configuration (backend,
 * evaluator threads, OPRF mode, auth), each over its own copy of the store,
 * so each builds its own epoch with its own key. Every server's answers are
 * checked through the real client before anything is measured.
 *
 * Requests are prepared ahead by each design's own client, as the real
 * client sends them, so the load measures the server's work.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CLIENT_DESIGNS, createClient } from '../client/client.ts';
import { createTransport } from '../client/transport.ts';
import { encodeBody } from '../shared/codec.ts';
import { BlindedConfigReply, PATHS, type DesignName } from '../shared/messages.ts';
import type { BackendName, OprfMode } from '../shared/suite.ts';
import type { BlindedAuth } from '../shared/tokens.ts';
import type { E164 } from '../shared/e164.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { forkServer, openTimeoutMs, waitBlindedServing, type ServerChild } from '../harness/fork.ts';
import type { LoadRequest } from './loadgen.ts';
import { TokenMinter } from './tokens.ts';
import { BENCH_ADMIN_TOKEN, copyFolder, seedFolder, type SeededFolder } from './seeding.ts';

/** One server child under measurement and what it was started with. */
export interface Target {
  key: string;
  child: ServerChild;
  url: string;
  backend: BackendName;
  evalThreads: number;
  mode: OprfMode;
  epoch: number;
  designs: readonly DesignName[];
  startSeconds: number;
  /** How blinded evaluate is paid; with tokens, what mints them. */
  auth: BlindedAuth;
  dataDir: string;
  minter?: TokenMinter;
}

/** The run's folder, its seeded template store and the server children started over copies of it; close() ends them all. */
export class HttpServers {
  /** The servers started, by key (see serverFor). */
  readonly targets = new Map<string, Target>();
  private readonly spawned: ServerChild[] = [];
  private readonly template: string;
  private seededFolder: SeededFolder | undefined;

  constructor(
    private readonly root: string,
    private readonly config: { bucketBits: number; mode: OprfMode },
    private readonly log: (line: string) => void,
  ) {
    this.template = path.join(root, 'template');
  }

  /** Seeds the template store: a directory of `size` numbers and a requester whose contact list holds `contacts` of them. */
  seed(size: number, contacts: number): SeededFolder {
    return (this.seededFolder = seedFolder(this.template, size, contacts));
  }

  get seeded(): SeededFolder {
    if (!this.seededFolder) throw new Error('the template store is not seeded yet');
    return this.seededFolder;
  }

  /**
   * A server child over its own copy of the seeded store (each builds its own epoch, with its own key),
   * answers checked through the real client; with tokens, a minter of its token keys.
   */
  async serverFor(backend: BackendName, evalThreads: number, designs: readonly DesignName[], mode: OprfMode = this.config.mode, auth: BlindedAuth = 'token'): Promise<Target> {
    const { config, seeded, log } = this;
    const key = `${backend}/${evalThreads}${mode === config.mode ? '' : `/${mode}`}${auth === 'token' ? '' : `/${auth}`}`;
    const have = this.targets.get(key);
    if (have) return have;
    const dataDir = copyFolder(this.template, path.join(this.root, key.replaceAll('/', '-')));
    const child = forkServer();
    this.spawned.push(child);
    const t0 = performance.now();
    const started = await child.start(
      { dataDir, designs: [...designs], bucketBits: config.bucketBits, mode, adminToken: BENCH_ADMIN_TOKEN, progress: false, backend, evalThreads, blindedAuth: auth },
      openTimeoutMs(seeded.numbers),
    );
    await waitBlindedServing(started.url, openTimeoutMs(seeded.numbers));
    const cfg = (await createTransport({ baseUrl: started.url }).request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false })).body!;
    if (cfg.mode !== mode) throw new Error(`the server runs ${cfg.mode}, the benchmark asked for ${mode}`);
    if ((cfg.auth ?? 'account') !== auth) throw new Error(`the server's blinded evaluate takes ${cfg.auth ?? 'account'}, the benchmark asked for ${auth}`);
    const t: Target = { key, child, url: started.url, backend, evalThreads, mode, epoch: cfg.current, designs, startSeconds: (performance.now() - t0) / 1000, auth, dataDir };
    if (auth === 'token') {
      // After the server made its keys (it serves once they exist): the very keys it publishes, each checked by minting one.
      const keys = cfg.epochs.find((e) => e.epoch === cfg.current)?.tokenKeys ?? [];
      t.minter = await TokenMinter.open(dataDir, { issuer: cfg.issuer!, epoch: cfg.current, keys });
    }
    this.targets.set(key, t);
    log(`  server ${key} (pid ${child.pid}, ${designs.join(', ')}, evaluate paid with ${auth === 'token' ? 'a Privacy Pass token' : 'the account'}) serving at ${t.url} after ${t.startSeconds.toFixed(1)} s`);
    await this.checkAnswers(t);
    return t;
  }

  /** Correctness first: every design, through the real client (tokens fetched from the issuer with the account), gives the expected answers. */
  private async checkAnswers(t: Target): Promise<void> {
    const probe = this.seeded.contacts.slice(0, 16);
    for (const design of t.designs) {
      const results = await createClient({ baseUrl: t.url, token: this.seeded.token, design, allowOprf: t.mode === 'oprf' }).lookupMany(probe.map((c) => c.number));
      results.forEach((r, i) => {
        if ((r.capabilities.length > 0) !== probe[i]!.registered) {
          throw new Error(`${t.key} ${design}: ${r.number} answered ${JSON.stringify(r.capabilities)}, expected ${probe[i]!.registered ? 'registered' : 'SMS only'}`);
        }
      });
    }
    this.log(`  answers checked through the real client for ${t.designs.join(', ')}${t.minter ? `; token minting checked with privacypass-ts for classes ${t.minter.classes[0]}..${t.minter.classes.at(-1)}` : ''}`);
  }

  /** Closes every child started (its logs flushed) and removes the run's folder. */
  async close(): Promise<void> {
    for (const c of this.spawned) await c.close();
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/**
 * Each design's lookup requests for slices of n pool numbers, prepared
 * ahead by the design's own client (ClientDesign.prepare: hashing, or
 * the config and blinding with sodium, and with tokens the padding to
 * the token's class) against the target's config, as the real client
 * sends them: the load then measures the server's work. The tokens the
 * client fetched to prepare them are not sent: each request sent pays
 * with a minted one.
 */
export interface Prepared {
  requests: LoadRequest[];
  /** Elements each request sends (blinded evaluate: the distinct numbers and the padding). */
  elements: number;
  /** Distinct numbers per request (fewer than asked for when the pool is smaller: the client evaluates each once). */
  distinct: number;
}

/** The lookup requests of one run, prepared once per (server, design, numbers per request) and cycled. */
export class PreparedRequests {
  private readonly prepared = new Map<string, Prepared>();
  /** Numbers outside the pool, for requests of more numbers than it holds. */
  private readonly extra: E164[] = [];
  /** Time spent preparing so far. */
  seconds = 0;

  /** `pool`: the requester's contact list; `token`: its account, with which the clients fetch their tokens from the issuer. */
  constructor(
    private readonly pool: readonly E164[],
    private readonly token: string,
  ) {}

  /** The requests already prepared for `design`'s lookups of `n` numbers on `target`, if any. */
  get(target: Target, design: DesignName, n: number): Prepared | undefined {
    return this.prepared.get(`${target.key}|${design}|${n}`);
  }

  async requestsFor(target: Target, design: DesignName, n: number): Promise<Prepared> {
    const key = `${target.key}|${design}|${n}`;
    let out = this.prepared.get(key);
    if (!out) {
      const t0 = performance.now();
      const client = CLIENT_DESIGNS[design](createTransport({ baseUrl: target.url }), { backend: 'sodium', allowOprf: true, issuer: createTransport({ baseUrl: target.url, token: this.token }) });
      const requests: LoadRequest[] = [];
      const sizes = new Set<number>();
      // With tokens, each prepared request costs the client a real token (~40 ms): fewer of them, cycled (evaluate caches nothing).
      const paid = design === 'blinded' && target.auth === 'token';
      const parts = slices(this.poolOf(n), n, paid ? 16 : 64);
      for (const numbers of parts) {
        const r = (await client.prepare(numbers)).request;
        if (!r || r.method === 'DELETE') throw new Error(`${design}: prepared no lookup request for ${n} numbers`);
        const elements = (r.body as { elements?: unknown[] } | undefined)?.elements;
        sizes.add(Array.isArray(elements) ? elements.length : n);
        requests.push({ method: r.method, path: r.path, body: r.body === undefined ? undefined : Buffer.from(encodeBody(r.body, 'msgpack')) });
      }
      if (sizes.size !== 1) throw new Error(`${design}: requests for ${n} numbers sent ${[...sizes].join(', ')} elements`);
      out = { requests, elements: [...sizes][0]!, distinct: new Set(parts[0]).size };
      this.prepared.set(key, out);
      this.seconds += (performance.now() - t0) / 1000;
    }
    return out;
  }

  /**
   * Numbers for requests of n: the contact list, and past its end numbers outside it (not in the directory, so
   * answered "SMS only"): every request holds n distinct numbers, since a client evaluates each number once.
   */
  private poolOf(n: number): readonly E164[] {
    const { pool, extra } = this;
    if (n <= pool.length) return pool;
    if (extra.length < n - pool.length) {
      const inPool = new Set(pool);
      extra.splice(0, extra.length, ...sampleNumbers({ count: n - pool.length, seed: 'pcd-bench-http-extra', exclude: (x) => inPool.has(x) }));
    }
    return [...pool, ...extra.slice(0, n - pool.length)];
  }
}

function slices<T>(pool: readonly T[], n: number, max = 64): T[][] {
  const count = Math.max(1, Math.min(max, Math.ceil(pool.length / n)));
  return Array.from({ length: count }, (_, i) => Array.from({ length: n }, (_, j) => pool[(i * n + j) % pool.length]!));
}
