/**
 * Blinded design, client side (docs/protocol.md, "The blinded design"):
 *
 *   config  GET  /v1/blinded/config           epochs, public keys, parameters (cached)
 *   blind   (r, B) = Blind(x) for each number not in the tag cache
 *   eval    POST /v1/blinded/evaluate         ONE request per batch: { epoch, elements: [B] }
 *   final   tag = Finalize(x, r, Z), the batch DLEQ proof checked first (voprf)
 *   bucket  GET  /v1/blinded/buckets/{e}/{b}  each needed bucket once, revalidated by ETag;
 *                                             its Merkle path checked against the epoch's published root
 *           or GET {bucketBaseUrl}/{e}/{b}.msgpack when the config names a static host
 *                                             (pcd publish-buckets), checked against the root the config showed
 *   answer  search the tag in its bucket, locally
 *
 * The server sees blinded elements and bucket ids, never a number or an
 * answer. Tags are cached per epoch (a repeated lookup costs no evaluation)
 * and buckets per epoch and id with their ETag (a repeated fetch is a 304).
 *
 * Nothing the client cannot verify becomes an answer: a failed or missing
 * proof, an evaluated list of the wrong length or epoch, a bucket that is
 * not what was asked, not sorted or holding a tag with an empty capability
 * mask: each is a thrown PcdError, never "SMS only". An unknown or retired
 * epoch makes the client fetch the config again and retry once.
 *
 * VOPRF only, unless told otherwise: an epoch the config says is in `oprf`
 * mode comes with no proof, so a server (or whoever rewrote the config)
 * could answer with any key. Such an epoch is refused with `proof_invalid`
 * before anything is blinded or sent, unless the caller passes `allowOprf`
 * (CLI: `--allow-oprf`).
 *
 * Key pinning (trust on first use): the public key of every epoch the client
 * has seen is pinned per server base URL and epoch number, in memory always
 * ({@link KeyPins}), and in a JSON file when one is given (`pinFile`; CLI
 * `--pins FILE` or PCD_PINS). A config that lists a known epoch with another
 * key is `key_changed`, never an answer: that is what a server singling one
 * requester out with its own key looks like. A new epoch (rotation) is
 * simply pinned. The CLI persists no pins unless asked: a default file in
 * the user's home would collect pins of every throwaway test server, and a
 * local server whose data folder was reset (epoch 1 again, a new key) would
 * then be refused until its entry is removed.
 *
 * One view for everyone (shared/merkle.ts): the proof says nothing about the
 * buckets, so the config publishes, per epoch, the Merkle root over all its
 * buckets at a directory version, and each bucket reply carries its version
 * and its path to the root. The client checks every bucket it receives
 * against the root it was shown for that (epoch, version): a bucket with a
 * tag dropped (a messenger contact turned "SMS only") or changed is
 * `bucket_unproven`, never an answer. A bucket newer than the config held
 * makes the client fetch the config again, fresh, once; a bucket of a
 * version whose root it never saw is fetched once more, then refused. The
 * roots seen are kept per (epoch, version) beside the key pins, in memory
 * ({@link KeyPins}), and a config that shows another root for a pair seen
 * before is `view_changed`. A 304 keeps the bucket checked when it was
 * fetched. What this does not show: that other clients see the same root;
 * comparing roots between clients (gossip, a log) is not part of pcd.
 */
import { Bucket, bucketOf, truncateTag } from '../../shared/buckets.ts';
import { maskToCapabilities } from '../../shared/capabilities.ts';
import type { ClientDesign, ClientDesignOptions, LookupResult, PinnedEpoch, PinScope, PreparedLookup, RequestOptions, Transport } from '../../shared/design.ts';
import { loadBackend } from '../../shared/backends.ts';
import type { E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError, isPcdError } from '../../shared/errors.ts';
import { BlindedConfigReply, BucketReply, EvaluateReply, PATHS, staticBucketUrl } from '../../shared/messages.ts';
import { decodeBody } from '../../shared/codec.ts';
import { LIMITS } from '../../shared/limits.ts';
import { parseReply } from '../../shared/schema.ts';
import { verifyBucketPath } from '../../shared/merkle.ts';
import { DEFAULT_BACKEND, type BackendName, type OprfBackend, type OprfMode, type RandomSource } from '../../shared/suite.ts';
import type { BlindedAuth } from '../../shared/tokens.ts';
import { utf8ToBytes } from '@noble/hashes/utils.js';
import { bytesEqual, bytesToBase64 } from '../../shared/bytes.ts';
import { TokenPool, type TokenPoolOptions, type TokenView } from '../tokens.ts';

export interface BlindedClientOptions {
  /** Crypto backend, or its name (default sodium, ~10x noble per scalar multiplication, falling back to noble where WASM cannot load). */
  backend?: BackendName | OprfBackend;
  /** Randomness for blinding (tests); default crypto.getRandomValues. */
  rng?: RandomSource;
  /** Refetch the config when it is older than this (default 5 minutes); an unknown or retired epoch refetches at once. */
  configMaxAgeMs?: number;
  /** Tags kept per epoch (default 2^17); the oldest go first. */
  maxCachedTags?: number;
  /** Bucket requests in flight at once (default 8). */
  bucketConcurrency?: number;
  /** Accept epochs in OPRF mode (no proof that the server used the published key); default false: refused with proof_invalid. */
  allowOprf?: boolean;
  /** Fetch buckets from the static host the config names, if any (default true; client/client.ts sets false with an OHTTP relay). */
  staticBuckets?: boolean;
  /** Where this client's epoch keys are pinned; default a fresh in-memory pin set. */
  pins?: PinScope;
  /**
   * Privacy Pass (a server whose config says auth 'token'): the transport to
   * the issuer, direct and with the account's bearer token (default: this
   * client's transport), and the pool's options (client/tokens.ts).
   */
  issuer?: Transport;
  tokens?: TokenPoolOptions;
  now?: () => number;
}

/** Pins kept per server; the lowest epochs go first beyond this. */
export const MAX_PINNED_EPOCHS = 256;
/** Bucket roots kept per server and epoch, one per directory version seen; the lowest versions go first beyond this. */
export const MAX_ROOTS_PER_EPOCH = 64;

type PinTable = Map<string, Map<number, string>>;
/** Roots seen: server, then epoch, then directory version. */
type RootTable = Map<string, Map<number, Map<number, Uint8Array>>>;

/**
 * Pinned epoch public keys per server base URL, in memory and optionally in
 * a JSON file (`{ version: 1, servers: { url: { epoch: base64 key } } }`,
 * written atomically with mode 0600). A file that exists but cannot be read
 * as a pin file is an error: silently starting over would drop every pin.
 * Saving merges with what another process may have written meanwhile.
 *
 * Beside the keys, in memory only, the bucket roots each server showed per
 * (epoch, directory version): one version has one root, so another root
 * for a pair seen before is `view_changed`.
 */
export class KeyPins {
  private table: PinTable | undefined;
  private readonly roots: RootTable = new Map();

  constructor(readonly file?: string) {}

  /** The pins of one server, by its normalised base URL. */
  scope(server: string): PinScope {
    return {
      check: (epochs) => this.check(server, epochs),
      root: (epoch, version) => this.root(server, epoch, version),
      keepRoot: (epoch, version, root) => this.keepRoot(server, epoch, version, root),
    };
  }

  /** The pinned key of `epoch` at `server`, base64, or undefined. */
  pinned(server: string, epoch: number): string | undefined {
    return this.load().get(server)?.get(epoch);
  }

  /** The root `server` showed for `epoch` at directory `version`, or undefined. */
  root(server: string, epoch: number, version: number): Uint8Array | undefined {
    return this.roots.get(server)?.get(epoch)?.get(version);
  }

  check(server: string, epochs: readonly PinnedEpoch[]): void {
    const table = this.load();
    const known = table.get(server);
    const fresh: [number, string][] = [];
    for (const e of epochs) {
      const key = bytesToBase64(e.publicKey);
      const pin = known?.get(e.epoch);
      if (pin === undefined) fresh.push([e.epoch, key]);
      else if (pin !== key) throw this.changed(server, e.epoch);
    }
    // One (epoch, version), one root: checked before anything of this config is kept.
    for (const e of epochs) {
      const seen = this.root(server, e.epoch, e.version);
      if (seen !== undefined && !bytesEqual(seen, e.root)) throw this.viewChanged(server, e.epoch, e.version);
    }
    if (fresh.length > 0) this.pinKeys(server, fresh);
    this.keepRoots(server, epochs);
  }

  /** Keeps one root shown with a bucket (view_changed when another root was seen for the pair). */
  keepRoot(server: string, epoch: number, version: number, root: Uint8Array): void {
    const seen = this.root(server, epoch, version);
    if (seen !== undefined) {
      if (!bytesEqual(seen, root)) throw this.viewChanged(server, epoch, version);
      return;
    }
    this.keepRoots(server, [{ epoch, version, root }]);
  }

  private keepRoots(server: string, epochs: readonly { epoch: number; version: number; root: Uint8Array }[]): void {
    const mine = this.roots.get(server) ?? new Map<number, Map<number, Uint8Array>>();
    for (const e of epochs) {
      const versions = mine.get(e.epoch) ?? new Map<number, Uint8Array>();
      versions.set(e.version, e.root.slice());
      if (versions.size > MAX_ROOTS_PER_EPOCH) {
        for (const v of [...versions.keys()].sort((a, b) => a - b).slice(0, versions.size - MAX_ROOTS_PER_EPOCH)) versions.delete(v);
      }
      mine.set(e.epoch, versions);
    }
    if (mine.size > MAX_PINNED_EPOCHS) {
      for (const epoch of [...mine.keys()].sort((a, b) => a - b).slice(0, mine.size - MAX_PINNED_EPOCHS)) mine.delete(epoch);
    }
    this.roots.set(server, mine);
  }

  private pinKeys(server: string, fresh: readonly [number, string][]): void {
    let table = this.load();
    if (this.file !== undefined) {
      // Another process may have pinned meanwhile: merge with the file as it is now.
      const now = readPinFile(this.file);
      for (const [epoch, key] of fresh) {
        const other = now.get(server)?.get(epoch);
        if (other !== undefined && other !== key) throw this.changed(server, epoch);
      }
      table = this.table = now;
    }
    const mine = table.get(server) ?? new Map<number, string>();
    for (const [epoch, key] of fresh) mine.set(epoch, key);
    if (mine.size > MAX_PINNED_EPOCHS) {
      for (const epoch of [...mine.keys()].sort((a, b) => a - b).slice(0, mine.size - MAX_PINNED_EPOCHS)) mine.delete(epoch);
    }
    table.set(server, mine);
    if (this.file !== undefined) writePinFile(this.file, table);
  }

  private load(): PinTable {
    return (this.table ??= this.file === undefined ? new Map() : readPinFile(this.file));
  }

  private viewChanged(server: string, epoch: number, version: number): PcdError {
    return new PcdError(
      ErrorCode.ViewChanged,
      `${server} now shows a different bucket root for epoch ${epoch} at directory version ${version} than it showed this client before: ` +
        `no answer was produced (a server showing this client a directory of its own looks like this)`,
    );
  }

  private changed(server: string, epoch: number): PcdError {
    const where = this.file === undefined ? 'earlier by this client' : `in ${this.file}`;
    const reset = this.file === undefined ? '' : `; if its operator confirms its data folder was reset, remove the pins of ${server} from ${this.file}`;
    return new PcdError(
      ErrorCode.KeyChanged,
      `${server} now publishes a different public key for epoch ${epoch} than the one pinned ${where}: no answer was produced ` +
        `(a server answering this client with a key of its own looks like this${reset})`,
    );
  }
}

/**
 * node:fs and node:path, taken at run time (process.getBuiltinModule, Node
 * 20.16+) rather than imported, so that a browser bundle of the client holds
 * no Node import: there, pins live in memory and a pin file is refused.
 */
function nodeFiles(): { fs: typeof import('node:fs'); path: typeof import('node:path'); pid: number } {
  const proc = (globalThis as { process?: { pid: number; getBuiltinModule?: (id: string) => unknown } }).process;
  if (!proc?.getBuiltinModule) {
    throw new PcdError(ErrorCode.InvalidField, 'a pin file needs Node.js (20.16 or later); elsewhere the pins are kept in memory: leave pinFile unset');
  }
  return { fs: proc.getBuiltinModule('node:fs') as typeof import('node:fs'), path: proc.getBuiltinModule('node:path') as typeof import('node:path'), pid: proc.pid };
}

function readPinFile(file: string): PinTable {
  const { fs } = nodeFiles();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new PcdError(ErrorCode.InvalidField, `cannot read the pin file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const bad = (why: string): never => {
    throw new PcdError(ErrorCode.InvalidField, `${file} is not a pcd pin file (${why}): fix or remove it`);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return bad('not JSON');
  }
  const d = doc as { version?: unknown; servers?: unknown };
  if (typeof doc !== 'object' || doc === null || d.version !== 1) bad('expected version 1');
  if (typeof d.servers !== 'object' || d.servers === null || Array.isArray(d.servers)) bad('no servers object');
  const table: PinTable = new Map();
  for (const [server, epochs] of Object.entries(d.servers as Record<string, unknown>)) {
    if (typeof epochs !== 'object' || epochs === null || Array.isArray(epochs)) bad(`the pins of ${server.slice(0, 80)} are not an object`);
    const m = new Map<number, string>();
    for (const [epoch, key] of Object.entries(epochs as Record<string, unknown>)) {
      if (!/^[1-9]\d{0,9}$/.test(epoch)) bad(`epoch '${epoch.slice(0, 20)}' is not a positive integer`);
      if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(key)) bad(`the key of epoch ${epoch} is not 32 bytes of base64`);
      m.set(Number(epoch), key as string);
    }
    table.set(server, m);
  }
  return table;
}

function writePinFile(file: string, table: PinTable): void {
  const servers: Record<string, Record<string, string>> = {};
  for (const [server, epochs] of table) servers[server] = Object.fromEntries([...epochs].sort((a, b) => a[0] - b[0]).map(([e, k]) => [String(e), k]));
  const { fs, path, pid } = nodeFiles();
  const tmp = `${file}.${pid}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, JSON.stringify({ version: 1, servers }, null, 2) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new PcdError(ErrorCode.InvalidField, `cannot write the pin file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** What the client spent, for benchmarks and tests. */
export interface BlindedClientStats {
  configFetches: number;
  evaluateRequests: number;
  /** Blinded elements sent to the server. */
  elementsEvaluated: number;
  /** Tags answered from the tag cache. */
  tagCacheHits: number;
  bucketFetches: number;
  /** Bucket fetches answered 304 Not Modified. */
  bucketNotModified: number;
  /** Buckets whose Merkle path was checked against the root published for their version. */
  bucketsProven: number;
  /** Buckets fetched from the config's static host (bucketBaseUrl), included in bucketFetches. */
  staticBucketFetches: number;
  /** Static buckets of a version whose root this client was never shown (published before the directory moved on): fetched from the API instead. */
  staticBucketsStale: number;
  bytesSent: number;
  bytesReceived: number;
  /** Dummy blinded elements sent to pad requests to their token's size class. */
  paddingElements: number;
}

export interface BlindedClient extends ClientDesign {
  readonly stats: BlindedClientStats;
  /** The Privacy Pass token pool, once the server asked for tokens (config auth 'token'). */
  readonly tokens: TokenPool;
  /** Forgets the config, tags and buckets; the pinned keys stay. */
  clear(): void;
}

interface EpochParams {
  /** How evaluate is paid: a Privacy Pass token, or the account (config auth). */
  auth: BlindedAuth;
  epoch: number;
  publicKey: Uint8Array;
  mode: OprfMode;
  bucketBits: number;
  tagBytes: number;
  /** The config's static bucket host, if it names one. */
  bucketBaseUrl: string | undefined;
}

interface CachedBucket {
  etag: string | undefined;
  bucket: Bucket;
}

export function createBlindedClientWith(transport: Transport, options: BlindedClientOptions = {}): BlindedClient {
  const now = options.now ?? Date.now;
  const configMaxAge = options.configMaxAgeMs ?? 5 * 60_000;
  const maxTags = options.maxCachedTags ?? 1 << 17;
  const concurrency = Math.max(1, options.bucketConcurrency ?? 8);
  const chosen = options.backend ?? DEFAULT_BACKEND;
  const pins = options.pins ?? new KeyPins().scope('the server');
  let backend: Promise<OprfBackend> | undefined;
  /**
   * Loaded on first use (libsodium's WASM module starts in ~20-40 ms), once. With no backend asked for, the
   * fast one where it loads (WASM), else the noble reference, which runs anywhere: both give the same bytes.
   */
  const suite = (): Promise<OprfBackend> =>
    (backend ??=
      typeof chosen !== 'string' ? Promise.resolve(chosen) : options.backend === undefined ? loadBackend(chosen).catch(() => loadBackend('noble')) : loadBackend(chosen));
  const stats: BlindedClientStats = {
    configFetches: 0,
    evaluateRequests: 0,
    elementsEvaluated: 0,
    tagCacheHits: 0,
    bucketFetches: 0,
    bucketNotModified: 0,
    bucketsProven: 0,
    staticBucketFetches: 0,
    staticBucketsStale: 0,
    bytesSent: 0,
    bytesReceived: 0,
    paddingElements: 0,
  };

  let config: { reply: BlindedConfigReply; at: number } | undefined;
  let configInFlight: Promise<BlindedConfigReply> | undefined;
  const tagCache = new Map<number, Map<E164, Uint8Array>>();
  const bucketCache = new Map<string, CachedBucket>();

  const count = (r: { bytesSent: number; bytesReceived: number }) => {
    stats.bytesSent += r.bytesSent;
    stats.bytesReceived += r.bytesReceived;
  };

  /** Drops caches of epochs the config no longer lists. */
  const prune = (reply: BlindedConfigReply) => {
    const listed = new Set(reply.epochs.map((e) => e.epoch));
    for (const epoch of tagCache.keys()) if (!listed.has(epoch)) tagCache.delete(epoch);
    for (const key of bucketCache.keys()) if (!listed.has(Number(key.split('/', 1)[0]))) bucketCache.delete(key);
  };

  const getConfig = async (signal: AbortSignal | undefined, fresh: boolean): Promise<BlindedConfigReply> => {
    if (!fresh && config && now() - config.at < configMaxAge) return config.reply;
    configInFlight ??= (async () => {
      try {
        const r = await transport.request({ method: 'GET', path: PATHS.blindedConfig, reply: BlindedConfigReply, auth: false, signal });
        count(r);
        stats.configFetches++;
        if (!r.body) throw new PcdError(ErrorCode.MalformedReply, 'the blinded config reply has no body');
        // Before anything of this config is used: a changed key for a known epoch is key_changed.
        pins.check(r.body.epochs);
        checkTokenKeys(r.body);
        config = { reply: r.body, at: now() };
        prune(r.body);
        return r.body;
      } finally {
        configInFlight = undefined;
      }
    })();
    return configInFlight;
  };

  /**
   * Token keys are pinned with their epoch, in memory: a config that shows
   * a known epoch with another token key for a class is view_changed, since
   * a server giving one client keys of its own could tell its tokens apart.
   */
  const tokenPins = new Map<number, Map<number, string>>();
  const checkTokenKeys = (reply: BlindedConfigReply) => {
    for (const e of reply.epochs) {
      const pinned = tokenPins.get(e.epoch) ?? new Map<number, string>();
      for (const k of e.tokenKeys ?? []) {
        const key = bytesToBase64(k.tokenKey);
        const pin = pinned.get(k.sizeClass);
        if (pin !== undefined && pin !== key) {
          throw new PcdError(
            ErrorCode.ViewChanged,
            `the server now publishes another token key for epoch ${e.epoch}, size class ${k.sizeClass}, than it did before: a server singling this client out looks like this; no request was sent`,
          );
        }
        pinned.set(k.sizeClass, key);
      }
      tokenPins.set(e.epoch, pinned);
    }
    if (tokenPins.size > MAX_PINNED_EPOCHS) for (const epoch of [...tokenPins.keys()].sort((a, b) => a - b).slice(0, tokenPins.size - MAX_PINNED_EPOCHS)) tokenPins.delete(epoch);
  };

  const tokenView = async (fresh: boolean): Promise<TokenView> => {
    const reply = await getConfig(undefined, fresh);
    if (reply.auth !== 'token' || reply.issuer === undefined) throw new PcdError(ErrorCode.MalformedReply, 'the server takes no Privacy Pass tokens (its config says auth account)');
    return {
      issuer: reply.issuer,
      current: reply.current,
      keys: reply.epochs.flatMap((e) => (e.tokenKeys ?? []).map((k) => ({ epoch: e.epoch, sizeClass: k.sizeClass, tokenKey: k.tokenKey }))),
    };
  };
  const tokens = new TokenPool(options.issuer ?? transport, tokenView, options.tokens);

  /** The current epoch and its parameters, as the config states them. */
  const currentEpoch = (reply: BlindedConfigReply): EpochParams => {
    const e = reply.epochs.find((x) => x.epoch === reply.current);
    if (!e) throw new PcdError(ErrorCode.MalformedReply, `the config names epoch ${reply.current} current but does not list it`);
    const p: EpochParams = {
      auth: reply.auth ?? 'account',
      epoch: e.epoch,
      publicKey: e.publicKey,
      mode: e.mode ?? reply.mode,
      bucketBits: e.bucketBits ?? reply.bucketBits,
      tagBytes: e.tagBytes ?? reply.tagBytes,
      bucketBaseUrl: options.staticBuckets === false ? undefined : reply.bucketBaseUrl,
    };
    if (p.mode !== 'voprf' && !options.allowOprf) {
      throw new PcdError(
        ErrorCode.ProofInvalid,
        `epoch ${p.epoch} is in ${p.mode} mode: the server would send no proof that it uses the epoch's published key, ` +
          `so its answers cannot be checked; refused before anything was sent (allow it with --allow-oprf, or allowOprf in the client options)`,
      );
    }
    return p;
  };

  const tagsOf = (epoch: number): Map<E164, Uint8Array> => {
    let m = tagCache.get(epoch);
    if (!m) tagCache.set(epoch, (m = new Map()));
    return m;
  };

  /**
   * Blinds `numbers` (distinct, none cached) for one evaluate request; `tagsFrom`
   * checks its reply, verifies the proof, finalises and truncates: their tags.
   */
  const blindFor = async (p: EpochParams, numbers: readonly E164[]) => {
    const inputs = numbers.map((n) => utf8ToBytes(n));
    const b = await suite();
    // With tokens: one token of the request's size class, and dummy elements up to the class (shared/tokens.ts):
    // blinded random inputs, uniformly random group elements as real blinded elements are.
    const token = p.auth === 'token' ? await tokens.take(numbers.length) : undefined;
    const padding = token ? token.sizeClass - numbers.length : 0;
    for (let i = 0; i < padding; i++) inputs.push(randomBytes(32));
    stats.paddingElements += padding;
    const { blinds, blinded } = b.blindBatch(p.mode, inputs, options.rng);
    const request: RequestOptions<EvaluateReply> = {
      method: 'POST',
      path: PATHS.blindedEvaluate,
      body: { epoch: p.epoch, elements: blinded },
      reply: EvaluateReply,
      ...(token ? { authorization: token.authorization } : {}),
    };
    const tagsFrom = (reply: EvaluateReply | undefined): Uint8Array[] => {
      if (!reply) throw new PcdError(ErrorCode.MalformedReply, 'the evaluate reply has no body');
      if (reply.epoch !== p.epoch) {
        throw new PcdError(ErrorCode.MalformedReply, `asked epoch ${p.epoch} to evaluate, the server answered for epoch ${reply.epoch}`);
      }
      if (reply.evaluated.length !== blinded.length) {
        throw new PcdError(ErrorCode.MalformedReply, `sent ${blinded.length} blinded elements, the server returned ${reply.evaluated.length} evaluated ones`);
      }
      if (p.mode === 'voprf' && reply.proof === undefined) {
        throw new PcdError(
          ErrorCode.ProofInvalid,
          `epoch ${p.epoch} is in voprf mode but the server sent no proof, so nothing shows it used the epoch's published key: no answer was produced`,
        );
      }
      let outputs: Uint8Array[];
      try {
        outputs = b.finalizeBatch(p.mode, { inputs, blinds, blinded, evaluated: reply.evaluated }, p.publicKey, reply.proof);
      } catch (e) {
        if (isPcdError(e, ErrorCode.ProofInvalid)) {
          throw new PcdError(
            ErrorCode.ProofInvalid,
            `the server did not evaluate with epoch ${p.epoch}'s published key (its batch proof does not verify against it): ` +
              `no answer was produced. ${e.message}`,
            { cause: e },
          );
        }
        throw e;
      }
      // The padding's outputs are dropped: its elements were covered by the proof, nothing else.
      return outputs.slice(0, numbers.length).map((o) => truncateTag(o, p.tagBytes));
    };
    return { request, tagsFrom };
  };

  /**
   * One bucket, proven: its path must lead to the root of its epoch and
   * version (shared/merkle.ts), else bucket_unproven; that root must be the
   * one this client was shown for the pair before, in a config or with
   * another bucket, else view_changed. From the cache when the server says
   * it has not changed (it was proven when fetched).
   */
  const fetchBucket = async (p: EpochParams, id: number, signal: AbortSignal | undefined): Promise<Bucket> => {
    if (p.bucketBaseUrl !== undefined) {
      const fromHost = await fetchStaticBucket(p, p.bucketBaseUrl, id, signal);
      if (fromHost) return fromHost;
      stats.staticBucketsStale++; // its version's root was never shown to this client: the API's bucket, proven as usual
    }
    const key = `${p.epoch}/${id}`;
    const cached = bucketCache.get(key);
    for (let attempt = 0; ; attempt++) {
      const revalidate = attempt === 0 ? cached : undefined;
      const r = await transport.request({
        method: 'GET',
        path: PATHS.blindedBucket(p.epoch, id),
        reply: BucketReply,
        auth: false,
        ifNoneMatch: revalidate?.etag,
        signal,
      });
      count(r);
      stats.bucketFetches++;
      if (r.status === 304) {
        if (!revalidate) throw new PcdError(ErrorCode.MalformedReply, `bucket ${id} of epoch ${p.epoch}: 304 Not Modified to a request without If-None-Match`);
        stats.bucketNotModified++;
        return revalidate.bucket;
      }
      const body = r.body;
      if (!body) throw new PcdError(ErrorCode.MalformedReply, `bucket ${id} of epoch ${p.epoch}: the reply has no body`);
      if (body.epoch !== p.epoch || body.bucket !== id) {
        throw new PcdError(ErrorCode.MalformedReply, `asked bucket ${id} of epoch ${p.epoch}, got bucket ${body.bucket} of epoch ${body.epoch}`);
      }
      let bucket: Bucket;
      try {
        bucket = Bucket.received(body.tags, body.capabilities, p.tagBytes);
      } catch (e) {
        if (e instanceof PcdError) throw new PcdError(e.code, `bucket ${id} of epoch ${p.epoch}: ${e.message}`);
        throw e;
      }
      const root = body.root;
      if (!verifyBucketPath({ epoch: p.epoch, bucket: id, tags: body.tags, capabilities: body.capabilities }, body.path, root, p.bucketBits)) {
        throw new PcdError(
          ErrorCode.BucketUnproven,
          `bucket ${id} of epoch ${p.epoch} does not lead to the root the server published for directory version ${body.version} ` +
            `(a tag dropped, added or changed, or a path of ${body.path.length} entries for ${p.bucketBits} bucket bits): no answer was produced`,
        );
      }
      // The root of the bucket's version: the one this client was shown before for the pair (in a config or with another
      // bucket), else kept now; another root for a pair seen before is view_changed (KeyPins.keepRoot).
      pins.keepRoot(p.epoch, body.version, root);
      stats.bucketsProven++;
      bucketCache.set(key, { etag: r.etag, bucket });
      return bucket;
    }
  };

  /**
   * One bucket from the config's static host (docs/protocol.md, "Buckets
   * from a static host"): no credentials, no cookies, no referrer. The file
   * is trusted for nothing: its path must lead to the root the server showed
   * this client for the file's (epoch, version), in a config or with an API
   * bucket, never to the root written in the file; else bucket_unproven. A
   * file of a version whose root this client was never shown (published
   * before the directory moved on) is undefined: the caller asks the API,
   * whose bucket is proven as usual. A host that fails (network, 404) is an
   * error, not a silent switch to the API: the operator chose to keep bucket
   * ids away from the API, and a missing file means publishing is broken.
   */
  const fetchStaticBucket = async (p: EpochParams, base: string, id: number, signal: AbortSignal | undefined): Promise<Bucket | undefined> => {
    const url = staticBucketUrl(base, p.epoch, id);
    const what = `bucket ${id} of epoch ${p.epoch} from the static bucket host (${url})`;
    let bytes: Uint8Array;
    try {
      const res = await fetch(url, { credentials: 'omit', referrerPolicy: 'no-referrer', signal });
      if (!res.ok) {
        await res.body?.cancel();
        throw new PcdError(ErrorCode.Network, `${what}: HTTP ${res.status}; the API was not asked instead (publish the epoch there with pcd publish-buckets)`);
      }
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      if (e instanceof PcdError || signal?.aborted) throw e;
      throw new PcdError(ErrorCode.Network, `${what}: ${(e as Error).message}; the API was not asked instead`, { cause: e });
    }
    stats.staticBucketFetches++;
    stats.bucketFetches++;
    stats.bytesReceived += bytes.length;
    if (bytes.length > LIMITS.maxReplyBytes) throw new PcdError(ErrorCode.MalformedReply, `${what}: ${bytes.length} bytes, more than a reply may hold`);
    let body: BucketReply;
    try {
      body = parseReply(BucketReply, decodeBody(bytes, 'msgpack'), 'msgpack');
    } catch (e) {
      throw new PcdError(ErrorCode.MalformedReply, `${what}: ${(e as Error).message}`, { cause: e });
    }
    if (body.epoch !== p.epoch || body.bucket !== id) throw new PcdError(ErrorCode.MalformedReply, `${what}: the file holds bucket ${body.bucket} of epoch ${body.epoch}`);
    const root = pins.root(p.epoch, body.version);
    if (root === undefined) return undefined;
    let bucket: Bucket;
    try {
      bucket = Bucket.received(body.tags, body.capabilities, p.tagBytes);
    } catch (e) {
      if (e instanceof PcdError) throw new PcdError(e.code, `${what}: ${e.message}`);
      throw e;
    }
    if (!verifyBucketPath({ epoch: p.epoch, bucket: id, tags: body.tags, capabilities: body.capabilities }, body.path, root, p.bucketBits)) {
      throw new PcdError(
        ErrorCode.BucketUnproven,
        `${what} does not lead to the root the server published for directory version ${body.version} ` +
          `(a tag dropped, added or changed, or a path of ${body.path.length} entries for ${p.bucketBits} bucket bits): no answer was produced`,
      );
    }
    stats.bucketsProven++;
    return bucket;
  };

  /** Config, tag cache, blinding: the evaluate request for the numbers whose tags are not cached, and what finishes the lookup. */
  const prepareWith = async (numbers: readonly E164[], signal: AbortSignal | undefined, fresh: boolean): Promise<PreparedLookup> => {
    const reply = await getConfig(signal, fresh);
    const p = currentEpoch(reply);
    const tags = tagsOf(p.epoch);

    const distinct = [...new Set(numbers)];
    const missing = distinct.filter((n) => !tags.has(n));
    stats.tagCacheHits += distinct.length - missing.length;
    const got = new Map<E164, Uint8Array>();
    for (const n of distinct) {
      const t = tags.get(n);
      if (t) got.set(n, t);
    }
    const evaluation = missing.length > 0 ? await blindFor(p, missing) : undefined;

    return {
      request: evaluation?.request,
      async finish(r, opts) {
        const signal = opts?.signal;
        if (evaluation) {
          if (!r) throw new PcdError(ErrorCode.MalformedReply, 'the evaluate request got no reply');
          count(r);
          stats.evaluateRequests++;
          stats.elementsEvaluated += missing.length;
          const evaluated = evaluation.tagsFrom(r.body as EvaluateReply | undefined);
          missing.forEach((n, i) => {
            const t = evaluated[i]!;
            got.set(n, t);
            tags.set(n, t);
          });
          // Oldest entries out first (Map keeps insertion order).
          for (const k of tags.keys()) {
            if (tags.size <= maxTags) break;
            tags.delete(k);
          }
        }

        const bucketIds = new Map<E164, number>();
        for (const n of distinct) bucketIds.set(n, bucketOf(n, p.bucketBits));
        const wanted = [...new Set(bucketIds.values())];
        const buckets = new Map<number, Bucket>();
        for (let i = 0; i < wanted.length; i += concurrency) {
          const part = wanted.slice(i, i + concurrency);
          const fetched = await Promise.all(part.map((id) => fetchBucket(p, id, signal)));
          part.forEach((id, j) => buckets.set(id, fetched[j]!));
        }

        return numbers.map((number) => {
          const mask = buckets.get(bucketIds.get(number)!)!.lookup(got.get(number)!);
          return { number, capabilities: maskToCapabilities(mask, reply.capabilities) };
        });
      },
    };
  };

  const attempt = async (numbers: readonly E164[], signal: AbortSignal | undefined, fresh: boolean): Promise<LookupResult[]> => {
    const prepared = await prepareWith(numbers, signal, fresh);
    const r = prepared.request ? await transport.request({ ...prepared.request, signal }) : undefined;
    return prepared.finish(r, { signal });
  };

  return {
    name: 'blinded',
    stats,
    tokens,
    clear() {
      config = undefined;
      tagCache.clear();
      bucketCache.clear();
    },
    prepare(numbers, opts) {
      return prepareWith(numbers, opts?.signal, false);
    },
    async lookupBatch(numbers, opts) {
      if (numbers.length === 0) return [];
      try {
        return await attempt(numbers, opts?.signal, false);
      } catch (e) {
        // The epoch moved on (rotation, retirement): fetch the config again and retry once.
        // A token of a key that retired meanwhile: drop the pool's tokens of keys no longer listed, and retry with another.
        if (isPcdError(e, ErrorCode.UnknownEpoch) || isPcdError(e, ErrorCode.EpochRetired) || isPcdError(e, ErrorCode.TokenKeyUnknown)) {
          config = undefined;
          if (isPcdError(e, ErrorCode.TokenKeyUnknown)) await tokens.refresh();
          return attempt(numbers, opts?.signal, true);
        }
        throw e;
      }
    },
  };
}

export const createBlindedClient = (transport: Transport, options?: ClientDesignOptions): BlindedClient =>
  createBlindedClientWith(transport, {
    backend: options?.backend,
    allowOprf: options?.allowOprf,
    pins: options?.pins,
    issuer: options?.issuer,
    tokens: options?.tokens,
    staticBuckets: options?.staticBuckets,
  });

/** Random bytes from the platform (Web Crypto: Node and browsers), for the padding's dummy inputs. */
function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}
