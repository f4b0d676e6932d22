/**
 * The blinded design (docs/protocol.md, "The blinded design"), server side:
 * RFC 9497 ristretto255-SHA512 in VOPRF mode by default, per-epoch keys,
 * buckets of truncated tags that clients search locally.
 *
 * ## What the server learns
 *
 * Hidden from it: the number looked up, any hash of it, and the answer.
 * `POST /v1/blinded/evaluate` carries blinded elements r * HashToGroup(x)
 * with a fresh random r per element: uniformly random group elements,
 * unlinkable to x even for an unbounded server (RFC 9497, "unconditional
 * input secrecy"). The match happens on the phone, against a bucket the
 * server sends whole, so the server never learns whether there was a hit.
 *
 * Not hidden: how many elements a request holds, when it came, the account
 * and the IP it came from, and, per bucket fetch, a `bucketBits`-bit bucket
 * id derived from the number: the anonymity set of a lookup is
 * (numbering plan) / 2^bucketBits, and 0 bits (full sync) reveals nothing.
 * Fetches and evaluations are separate requests, but an operator can still
 * correlate them by IP and time.
 *
 * What protects the rest: phone numbers are low-entropy, so whoever holds an
 * epoch's secret key can evaluate the whole numbering plan offline and turn
 * tags back into numbers. The key therefore lives only in the key file
 * (0600, never in the database, never logged, never sent) and is destroyed
 * when its epoch retires, after which leftover tags are unlinkable for good.
 * On a shared store (server/pg/epochs.ts) it lives in the store only
 * wrapped under a master key each node reads from its own file, and is
 * deleted there when its epoch retires (docs/threat-model.md says what a
 * dump, a node and a master key each give).
 * In memory it is held by the epoch and by the evaluator pool and its worker
 * threads (server/blinded/pool.ts: sent by postMessage, never through a
 * file), which zero and forget their copies when the epoch is destroyed.
 * A requester, for its part, can use evaluate as an oracle (one element per
 * number it wants to test), which only rate limiting bounds: the cost of an
 * evaluate request is its element count, charged against the requester's
 * limit (server/ratelimit.ts), and key rotation caps what one key is exposed to.
 *
 * ## Where evaluation runs
 *
 * BlindEvaluate (VOPRF: ~0.3 ms per element with sodium, ~2.5 ms with
 * noble) runs on a pool of worker threads (server/blinded/pool.ts;
 * `PCD_EVAL_THREADS`, default one per core): a batch is split into chunks
 * spread over every worker under one proof, so a large batch blocks neither
 * the event loop nor other requests. Chunks are served round-robin per
 * requester (server/blinded/fair.ts), and the route's admission hook
 * refuses a requester whose backlog is full before its body is read.
 * Elements are checked where they are evaluated (RFC 9497 §3.3).
 *
 * ## What it persists
 *
 * `blinded_eval_log` (time, account, IP, epoch, element count) and
 * `blinded_bucket_log` (minute, IP, epoch, bucket id, fetch count): never a
 * number, hash, tag, blinded or evaluated element. The per-epoch cache file
 * holds the tags of registered numbers only, which are in the directory anyway.
 *
 * Bucket fetches are anonymous and cheap to repeat, so their log must not
 * grow with the request rate: fetches are counted in memory per (minute, IP,
 * epoch, bucket) and each minute is written once as one row with its count
 * (server/querylog.ts CountingLog; `ts` is the minute's start, so retention
 * purges it like any log). Revalidations (If-None-Match answered 304) are not
 * logged at all: they reveal nothing the first fetch did not. One client
 * fetching one bucket all day adds 1,440 rows, not one per request; the
 * operator still sees which IP fetched which bucket in which minute, and how
 * often, which is what the per-fetch rows said too (to the minute).
 *
 * When the log cannot be written (full disk, I/O error; server/querylog-base.ts):
 * evaluations follow the lookup designs' rule (rows are kept and retried;
 * once the log is failing and its buffer is full, evaluate answers 503 with
 * Retry-After rather than unlogged), bucket fetches keep being answered (the
 * aggregated rows are few) and, past the buffer's bound, the oldest counts
 * are dropped and counted (`GET /v1/health`, and a warning in the server log).
 */
import pino from 'pino';
import { bucketCount } from '../../shared/buckets.ts';
import { CAPABILITIES } from '../../shared/capabilities.ts';
import { route, type DirectoryChange, type ServerDesign } from '../../shared/design.ts';
import { ErrorCode, PcdError, quoteInput } from '../../shared/errors.ts';
import {
  EvaluateRequest,
  PATHS,
  RotateKeyRequest,
  parseIdSegment,
  type BlindedConfigReply,
  type BucketReply,
  type EvaluateReply,
  type RotateKeyReply,
} from '../../shared/messages.ts';
import { BLINDED_BUCKET_LOG, BLINDED_EVAL_LOG, BUCKET_BASE_URL } from '../../shared/designs/blinded.ts';
import { LIMITS } from '../../shared/limits.ts';
import { DEFAULT_BACKEND, SUITE } from '../../shared/suite.ts';
import { loadBackend } from '../../shared/backends.ts';
import type { ServerContext, ServerOptions } from '../context.ts';
import { Directory } from '../directory.ts';
import { SqliteDirectoryStore } from '../directory-store.ts';
import { Epochs } from '../blinded/epochs.ts';
import type { EpochSet } from '../blinded/epochs-serve.ts';
import { SharedEpochs } from '../pg/epochs.ts';
import { PgTokenKeyStorage } from '../pg/tokenkeys.ts';
import { createPool } from '../pg/connect.ts';
import { EvaluatorPool } from '../blinded/pool.ts';
import { countingLog, designLog } from '../querylog.ts';
import { Store } from '../store.ts';
import { acquireFolderLock } from '../lock.ts';
import { TokenKeys } from '../tokens/keys.ts';
import { TokenService } from '../tokens/service.ts';
import { PgSpentTokens, SqliteSpentTokens } from '../tokens/spent.ts';
import { BLINDED_TOKEN_EVAL_LOG, TOKEN_ISSUANCE_LOG } from '../../shared/designs/blinded.ts';
import { DEFAULT_BLINDED_AUTH, DEFAULT_ISSUER_NAME, DEFAULT_SIZE_CLASSES, TokensRequest, type BlindedAuth, type TokensReply } from '../../shared/tokens.ts';
import type { RequesterKey } from '../blinded/fair.ts';


/**
 * Smallest body bytes per element of an evaluate request: JSON (44 base64
 * characters, 2 quotes, a comma); MessagePack needs 34 (bin 8 header + 32).
 * Dividing a Content-Length by it never over-counts in either format, so
 * admission from the headers never refuses a request that would fit.
 */
const MIN_BODY_BYTES_PER_ELEMENT = 47;

/** Fewest bytes an evaluate body spends per element (MessagePack: bin 8 header and 32 bytes) ... */
const FEWEST_BYTES_PER_ELEMENT = 34;
/** ... and on the rest: a map of two, `epoch` and a fixint, `elements` and an array header. */
const FEWEST_FIXED_BODY_BYTES = 1 + 6 + 1 + 9 + 1;

/** Elements an evaluate body of `contentLength` bytes holds at least (1 when the length is not declared). */
export function elementsIn(contentLength: number | undefined): number {
  if (contentLength === undefined) return 1;
  return Math.max(1, Math.min(LIMITS.maxBatch, Math.floor(contentLength / MIN_BODY_BYTES_PER_ELEMENT)));
}

/** The element counts an evaluate body of `contentLength` bytes can hold, in either format; undefined when the length is not declared. */
export function elementsBetween(contentLength: number | undefined): { min: number; max: number } | undefined {
  if (contentLength === undefined) return undefined;
  const min = elementsIn(contentLength);
  return { min, max: Math.max(min, Math.min(LIMITS.maxBatch, Math.floor((contentLength - FEWEST_FIXED_BODY_BYTES) / FEWEST_BYTES_PER_ELEMENT))) };
}

/** Buckets change only with the directory; a minute of staleness in shared caches is the trade. */
export const BUCKET_CACHE_CONTROL = 'public, max-age=60';

/** The server design plus its epochs and evaluator pool (for tests, benchmarks and the audit). */
export interface BlindedServerDesign extends ServerDesign {
  /** The data folder's epochs (server/blinded/epochs.ts), or the shared store's (server/pg/epochs.ts). */
  readonly epochs: EpochSet;
  /** Settles once every epoch is loaded or built (Epochs.ready); until then its routes answer 503. */
  readonly ready: Promise<void>;
  readonly evaluator: EvaluatorPool;
  /** The Privacy Pass issuer and redeemer, with auth 'token' (the default); undefined with auth 'account'. */
  readonly tokens: TokenService | undefined;
}

/**
 * The evaluator's fairness key (server/blinded/fair.ts) of a request paid
 * with a token: there is no account, and the IP is no stand-in for one
 * (through an OHTTP relay every client has the relay's address, and one
 * shared queue would hold all of them to one requester's backlog). So each
 * anonymous request is its own requester for the scheduler: chunks are
 * handed out round-robin over requests, the pool's global backlog bounds
 * the whole, and what bounds one client's share is what it pays, one token
 * per request from its account's allowance. Keys are negative, so no
 * account id can be one.
 */
let anonymousRequests = 0;
export function anonymousFairnessKey(): RequesterKey {
  anonymousRequests = (anonymousRequests + 1) % 0x40000000;
  return -1 - anonymousRequests;
}

/** True when an If-None-Match header names `etag` (or is `*`); weak validators compare by opaque tag. */
export function matchesEtag(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

function parseSegment(what: string, raw: string | undefined): number {
  const n = parseIdSegment(raw ?? '', Number.MAX_SAFE_INTEGER);
  if (n === undefined) throw new PcdError(ErrorCode.InvalidField, `${what} must be a non-negative decimal integer, got ${quoteInput(raw)}`);
  return n;
}

/** What the blinded design's routes serve from: its epochs, evaluator, token service and logs. */
interface BlindedParts {
  ctx: ServerContext;
  /** How evaluate is paid: a Privacy Pass token (the default), or the account. */
  auth: BlindedAuth;
  epochs: EpochSet;
  evaluator: EvaluatorPool;
  tokens: TokenService | undefined;
  evalLog: ReturnType<typeof designLog<typeof BLINDED_EVAL_LOG>>;
  bucketLog: ReturnType<typeof countingLog<typeof BLINDED_BUCKET_LOG>>;
  tokenEvalLog: ReturnType<typeof countingLog<typeof BLINDED_TOKEN_EVAL_LOG>> | undefined;
  issuanceLog: ReturnType<typeof countingLog<typeof TOKEN_ISSUANCE_LOG>> | undefined;
}

export const createBlindedDesign = async (ctx: ServerContext): Promise<BlindedServerDesign> => {
  const base = ctx.options.bucketBaseUrl;
  if (base !== undefined && !BUCKET_BASE_URL.test(base)) {
    throw new PcdError(ErrorCode.InvalidField, `bucketBaseUrl must be an http(s) URL without query, fragment or trailing slash, got '${base.slice(0, 80)}'`);
  }
  // On a shared store the epochs are the store's (server/pg/epochs.ts), else the data folder's.
  const epochs: EpochSet = ctx.shared ? await SharedEpochs.open(ctx) : await Epochs.open(ctx);
  const evalLog = designLog(ctx, BLINDED_EVAL_LOG);
  // Counted per (minute, IP, epoch, bucket): one row per minute however many fetches (module header).
  const bucketLog = countingLog(ctx, BLINDED_BUCKET_LOG);

  // BlindEvaluate runs on worker threads (server/blinded/pool.ts), started now in the background:
  // a request that comes first waits for them; if they cannot start, evaluation is inline (logged).
  const backend = await loadBackend(ctx.options.backend ?? DEFAULT_BACKEND);
  const evaluator = new EvaluatorPool({ backend, logger: ctx.logger, size: ctx.options.evalThreads });
  void evaluator.start();
  // A destroyed epoch's key leaves the pool and its workers' memory at once; its unfinished batches get 410.
  epochs.onDestroyed((epoch) => evaluator.dropKey(epoch));

  const { auth, tokens, spentPool } = await openTokens(ctx, epochs);
  const tokenEvalLog = tokens ? countingLog(ctx, BLINDED_TOKEN_EVAL_LOG) : undefined;
  const issuanceLog = tokens ? countingLog(ctx, TOKEN_ISSUANCE_LOG) : undefined;
  const ready = tokenKeysReady(ctx, epochs, tokens);
  const d: BlindedParts = { ctx, auth, epochs, evaluator, tokens, evalLog, bucketLog, tokenEvalLog, issuanceLog };

  return {
    name: 'blinded',
    epochs,
    ready,
    evaluator,
    tokens,
    routes: [configRoute(d), ...(tokens && tokenEvalLog ? tokenRoutes(d, tokens, tokenEvalLog) : [accountEvaluateRoute(d)]), bucketRoute(d), rotateRoute(d)],

    onDirectoryChange(changes: readonly DirectoryChange[]) {
      epochs.applyChanges(changes);
    },

    async close() {
      await evaluator.close();
      await evalLog.close();
      await bucketLog.close();
      await tokenEvalLog?.close();
      await issuanceLog?.close();
      await epochs.close();
      await spentPool?.end();
    },
  };
};

/**
 * Anonymous requesters (server/tokens/service.ts), with auth 'token': the
 * token keys per size class and live epoch, and the spent set; on a shared
 * store both are the store's.
 */
async function openTokens(ctx: ServerContext, epochs: EpochSet): Promise<{ auth: BlindedAuth; tokens: TokenService | undefined; spentPool: ReturnType<typeof createPool> | undefined }> {
  const auth = ctx.options.blindedAuth ?? DEFAULT_BLINDED_AUTH;
  const spentPool = ctx.shared && auth === 'token' ? createPool(ctx.shared.url, { max: 4, applicationName: 'pcd spends', asyncCommit: true, logger: ctx.logger }) : undefined;
  const tokens =
    auth === 'token'
      ? new TokenService(
          // On a shared store the keys are the store's, the same for every node (server/pg/tokenkeys.ts).
          epochs instanceof SharedEpochs
            ? await TokenKeys.openFrom(new PgTokenKeyStorage(ctx.shared!.pool, ctx.masterKey!), ctx.options.sizeClasses ?? DEFAULT_SIZE_CLASSES)
            : await TokenKeys.open(ctx.options.dataDir, ctx.options.sizeClasses ?? DEFAULT_SIZE_CLASSES),
          // A token spent on one node is refused on every other: the spent set is the shared store's, written by a pool of
          // its own whose commits do not wait for the WAL flush (server/tokens/spent.ts says what that risks).
          spentPool ? new PgSpentTokens(spentPool) : new SqliteSpentTokens(ctx.store.db),
          ctx.options.tokenIssuer ?? DEFAULT_ISSUER_NAME,
        )
      : undefined;
  return { auth, tokens, spentPool };
}

/**
 * Token keys follow the epochs: made in the background for every live
 * epoch (and each new one after a rotation), loaded with an epoch another
 * node made, retired with their epoch. Settles once the epochs are ready
 * and every live one has its keys.
 */
function tokenKeysReady(ctx: ServerContext, epochs: EpochSet, tokens: TokenService | undefined): Promise<void> {
  const ensureTokenKeys = async (): Promise<void> => {
    if (!tokens) return;
    const live = epochs.list().map((e) => e.epoch);
    await Promise.all(live.map((e) => tokens.keys.ensure(e)));
    // Keys of epochs that are no longer live (destroyed while the server was down) retire now. On a shared store
    // this node serves only some epochs for a while: the store's keys go with the epoch (server/pg/epochtables.ts).
    if (epochs instanceof SharedEpochs) return;
    for (const e of tokens.keys.epochs()) if (!live.includes(e)) await tokens.retire(e);
  };
  // The key retires at once (its tokens are refused from then on); the purge of its spent tokens follows, and a
  // failed one is logged (its rows stay, counted by `pcd audit` under no epoch).
  if (tokens) {
    epochs.onDestroyed((epoch) => {
      tokens.retire(epoch).catch((err: unknown) =>
        ctx.logger.error({ epoch, err: err instanceof Error ? err.message : String(err) }, "a retired epoch's spent tokens could not be purged"),
      );
    });
  }
  const ready = Promise.all([epochs.ready, ensureTokenKeys()]).then(ensureTokenKeys); // again: a shared store's epochs load meanwhile
  // An epoch another node made is served here once loaded (server/pg/epochs.ts): its token keys with it.
  epochs.onServed((epoch) => {
    tokens?.keys.ensure(epoch).catch((err: unknown) => ctx.logger.error({ epoch, err: (err as Error).message }, "could not load an epoch's token keys"));
  });
  return ready;
}

/** BlindEvaluate of a checked request on the pool (the workers check every element, RFC 9497 §3.3), under `requester`'s fairness key. */
async function evaluate({ epochs, evaluator }: BlindedParts, body: EvaluateRequest, requester: RequesterKey) {
  const n = body.elements.length;
  if (n < 1 || n > LIMITS.maxBatch) throw new PcdError(ErrorCode.TooManyItems, `elements: 1 to ${LIMITS.maxBatch} per request, got ${n}`);
  const e = epochs.get(body.epoch);
  if (!evaluator.hasKey(e.epoch)) evaluator.setKey(e.epoch, e.params.mode, e.key);
  // The backlog bounds apply again with the real count.
  const { evaluated, proof } = await evaluator.evaluate(e.epoch, body.elements, { requester });
  return { epoch: e.epoch, evaluated, proof };
}

/** GET /v1/blinded/config: the suite, the parameters and every published epoch with its key, root and token keys. */
function configRoute({ ctx, auth, epochs, tokens }: BlindedParts) {
  return route<undefined, BlindedConfigReply>({
    method: 'GET',
    path: PATHS.blindedConfig,
    auth: 'anyone',
    async handle() {
      // Roots and versions read in one step with the rest (server/blinded/epochs.ts published); only served epochs have a root.
      const { current, epochs: published } = await epochs.published();
      // An epoch is published with its token keys: on a shared store one just loaded may not have them here yet.
      if (tokens) await Promise.all(published.map((e) => tokens.keys.ensure(e.epoch)));
      return {
        body: {
          suite: SUITE,
          mode: current.params.mode,
          capabilities: [...CAPABILITIES],
          tagBytes: current.params.tagBytes,
          bucketBits: current.params.bucketBits,
          current: current.epoch,
          auth,
          ...(tokens ? { issuer: tokens.issuerName } : {}),
          ...(ctx.options.bucketBaseUrl !== undefined ? { bucketBaseUrl: ctx.options.bucketBaseUrl } : {}),
          epochs: published.map((e) => ({
            epoch: e.epoch,
            publicKey: e.publicKey,
            root: e.root,
            version: e.version,
            mode: e.mode,
            bucketBits: e.bucketBits,
            tagBytes: e.tagBytes,
            ...(tokens ? { tokenKeys: tokens.keys.of(e.epoch).map((k) => ({ sizeClass: k.sizeClass, tokenKey: k.tokenKey })) } : {}),
            ...(e.retiresAt !== undefined ? { retiresAt: e.retiresAt } : {}),
          })),
        },
        // Changes with rotation and retirement: clients revalidate.
        cacheControl: 'no-cache',
      };
    },
  });
}

/** With auth 'token': evaluate paid with a Privacy Pass token of the request's size class, and issuance (POST /v1/tokens) paid from the account's allowance. */
function tokenRoutes(d: BlindedParts, tokens: TokenService, tokenEvalLog: NonNullable<BlindedParts['tokenEvalLog']>) {
  const { epochs, evaluator, issuanceLog } = d;
  return [
    route<EvaluateRequest, EvaluateReply>({
      method: 'POST',
      path: PATHS.blindedEvaluate,
      auth: 'token',
      request: EvaluateRequest,
      // Steps 1-4 of server/tokens/service.ts, before the body is read; the challenge names the current epoch's keys of the classes the body's length allows.
      async checkToken(authorization, contentLength) {
        const checked = await tokens.check(authorization, epochs.currentNumber, elementsBetween(contentLength));
        return {
          async spend(body) {
            const n = body.elements.length;
            if (n !== checked.key.sizeClass) {
              throw new PcdError(
                ErrorCode.TokenWrongClass,
                `a token of size class ${checked.key.sizeClass} pays for exactly ${checked.key.sizeClass} elements, the request has ${n}: pad the request to its class`,
                { wwwAuthenticate: tokens.wwwAuthenticate(epochs.currentNumber, { min: n, max: n }) },
              );
            }
            return tokens.spend(checked, epochs.currentNumber);
          },
        };
      },
      admit({ contentLength }) {
        evaluator.admit(anonymousFairnessKey(), elementsIn(contentLength));
      },
      async handle({ body, ip }) {
        tokenEvalLog.requireRoom(1);
        const { epoch, evaluated, proof } = await evaluate(d, body, anonymousFairnessKey());
        tokenEvalLog.add([ip, epoch, body.elements.length]);
        return { body: { epoch, evaluated, ...(proof ? { proof } : {}) } };
      },
    }),
    route<TokensRequest, TokensReply>({
      method: 'POST',
      path: PATHS.tokens,
      auth: 'requester',
      request: TokensRequest,
      // The issuer's quota is the account's lookup allowance, in elements (server/ratelimit.ts).
      cost: (b) => b.sizeClass * b.requests.length,
      handle({ body, requester }) {
        issuanceLog?.requireRoom(1);
        epochs.get(body.epoch); // unknown_epoch or epoch_retired, as evaluate would say
        const responses = tokens.issue(body.epoch, body.sizeClass, body.requests);
        issuanceLog?.add([requester.accountId], body.sizeClass * body.requests.length);
        return { body: { responses } };
      },
    }),
  ];
}

/** With auth 'account': evaluate charged to the requester's account and logged with it. */
function accountEvaluateRoute(d: BlindedParts) {
  const { ctx, evaluator, evalLog } = d;
  return route<EvaluateRequest, EvaluateReply>({
    method: 'POST',
    path: PATHS.blindedEvaluate,
    auth: 'requester',
    request: EvaluateRequest,
    cost: (b) => b.elements.length,
    // Before the body is read: refuse (503, Retry-After) when this requester's backlog or the pool's is full.
    admit({ requester, contentLength }) {
      evaluator.admit(requester.accountId, elementsIn(contentLength));
    },
    async handle({ body, requester, ip }) {
      evalLog.requireRoom(1); // 503 while the log cannot be written and its buffer is full (module header)
      const { epoch, evaluated, proof } = await evaluate(d, body, requester.accountId);
      evalLog.append([ctx.now(), requester.accountId, ip, epoch, body.elements.length]);
      return { body: { epoch, evaluated, ...(proof ? { proof } : {}) } };
    },
  });
}

/** GET /v1/blinded/buckets/{epoch}/{bucket}: one bucket with its Merkle path, revalidated by ETag (a 304 is not logged). */
function bucketRoute({ epochs, bucketLog }: BlindedParts) {
  return route<undefined, BucketReply>({
    method: 'GET',
    path: PATHS.blindedBucket.pattern,
    auth: 'anyone',
    async handle({ params, ip, ifNoneMatch }) {
      const epochId = parseSegment('epoch', params.epoch);
      const bucket = parseSegment('bucket', params.bucket);
      const e = epochs.get(epochId);
      const count = bucketCount(e.params.bucketBits);
      if (bucket >= count) {
        throw new PcdError(
          ErrorCode.NotFound,
          `epoch ${epochId} has ${count} bucket${count > 1 ? 's' : ''} (bucketBits ${e.params.bucketBits}): no bucket ${bucket}`,
        );
      }
      const etag = e.table.etag(bucket);
      // A revalidation is not logged; a fetch is counted in its minute's row (module header).
      if (matchesEtag(ifNoneMatch, etag)) return { status: 304, etag, cacheControl: BUCKET_CACHE_CONTROL };
      bucketLog.add([ip, epochId, bucket]);
      // Content, ETag, audit path and version read together, once the epoch's Merkle tree can answer.
      const b = await epochs.provenBucket(epochId, bucket);
      return {
        body: { epoch: epochId, bucket, tags: b.tags, capabilities: b.capabilities, version: b.version, path: b.path, root: b.root },
        etag: b.etag,
        cacheControl: BUCKET_CACHE_CONTROL,
      };
    },
  });
}

/** POST /v1/admin/rotate: the next epoch, its token keys made before clients are told of it. */
function rotateRoute({ epochs, tokens }: BlindedParts) {
  return route<RotateKeyRequest, RotateKeyReply>({
    method: 'POST',
    path: PATHS.adminRotate,
    auth: 'admin',
    request: RotateKeyRequest,
    async handle({ body }) {
      const r = await epochs.rotate({ bucketBits: body.bucketBits, mode: body.mode });
      // The new epoch's token keys, before clients are told of it (they are published with it).
      await tokens?.keys.ensure(r.epoch);
      return { status: 201, body: r };
    },
  });
}

/**
 * `pcd rotate-key` with the server stopped: opens the data folder, builds
 * the next epoch (with options.bucketBits / options.mode when given, else
 * the current epoch's), makes it current and starts the previous one's
 * grace period. On a data folder without epochs it creates the first one.
 * The server must not be running on the same folder (it would not see the
 * new epoch until restarted, and both would write the key file): the
 * folder's lock (server/lock.ts) refuses it with one line naming the server.
 *
 * `repair` (`pcd rotate-key --repair`): where the key file and the database
 * disagree, destroys keys of unknown epochs and retires for good the live
 * epochs whose key is lost or wrong, then rotates; `repaired` says what it did.
 */
export async function rotateKeyOffline(options: ServerOptions & { repair?: boolean }): Promise<RotateKeyReply & { repaired?: string[] }> {
  const logger = options.logger ?? pino({ level: process.env.PCD_LOG_LEVEL ?? 'silent' });
  const lock = acquireFolderLock(options.dataDir, { role: 'rotate-key', logger });
  try {
    const store = Store.open(options.dataDir);
    try {
      // From the directory snapshot where it can (server/directory.ts open): a scan of 10^7 numbers takes 20 s.
      const { directory } = await Directory.open(store, options.dataDir, logger);
      const version = store.directoryVersion();
      const ctx: ServerContext = { store, directoryStore: new SqliteDirectoryStore(store), directory, directoryVersion: () => version, now: options.now ?? Date.now, options, logger };
      const epochs = await Epochs.open(ctx, { build: false, repair: options.repair === true });
      const repaired = epochs.repaired.length > 0 ? { repaired: [...epochs.repaired] } : {};
      try {
        if (epochs.createdAtOpen) {
          await epochs.ready; // the first epoch (or the one replacing those a repair retired), built and cached
          return { epoch: epochs.currentNumber, ...repaired };
        }
        return { ...(await epochs.rotate({})), ...repaired };
      } finally {
        await epochs.close();
      }
    } finally {
      store.close();
    }
  } finally {
    lock.release();
  }
}
