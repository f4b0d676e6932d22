/**
 * The server core: opens the store, loads the directory, builds the chosen
 * designs and the app, and listens. `openServer` gives the pieces without a
 * socket (tests, the audit); `startServer` listens and returns the URL.
 *
 * Directory changes made through the admin API go to the store first (one
 * transaction, journaled there for the blinded epochs' crash recovery), then
 * to the in-memory directory, then to every design, before the admin call
 * answers: the next lookup sees them.
 *
 * Each design comes up on its own: a factory returns once its design can
 * answer (plain and hashed index the directory at once; blinded checks its
 * keys and loads or builds its epochs in the background, answering 503
 * until then), so the server listens while a large epoch builds.
 * `OpenServer.ready` settles when every design is ready.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import pino from 'pino';
import type express from 'express';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import { route, type DirectoryChange, type Route, type ServerDesign } from '../shared/design.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import {
  CreateAccountRequest,
  DESIGNS,
  PATHS,
  parseIdSegment,
  type CreateAccountReply,
  type DesignName,
  type HealthReply,
  type OkReply,
} from '../shared/messages.ts';
import { createApp } from './app.ts';
import type { ServerContext, ServerDesignFactory, ServerOptions } from './context.ts';
import { Directory } from './directory.ts';
import { DAY_MS, Retention } from './querylog.ts';
import { RateLimiter } from './ratelimit.ts';
import { Store } from './store.ts';
import { createPlainDesign } from './designs/plain.ts';
import { createHashedDesign } from './designs/hashed.ts';
import { createBlindedDesign } from './designs/blinded.ts';

export const DESIGN_FACTORIES: Readonly<Record<DesignName, ServerDesignFactory>> = {
  plain: createPlainDesign,
  hashed: createHashedDesign,
  blinded: createBlindedDesign,
};

export const ADMIN_TOKEN_FILE = 'admin-token';
export const DEFAULT_RETENTION_MS = 30 * DAY_MS;

/** The admin token: the option, else PCD_ADMIN_TOKEN, else the data folder's file (generated on first use). */
export function resolveAdminToken(dataDir: string, explicit?: string): { token: string; source: string } {
  if (explicit) return { token: explicit, source: 'option' };
  const env = process.env.PCD_ADMIN_TOKEN;
  if (env) return { token: env, source: 'the PCD_ADMIN_TOKEN environment variable' };
  const file = path.join(dataDir, ADMIN_TOKEN_FILE);
  if (fs.existsSync(file)) return { token: fs.readFileSync(file, 'utf8').trim(), source: file };
  const token = crypto.randomBytes(32).toString('base64url');
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, token + '\n', { mode: 0o600, flag: 'wx' });
  return { token, source: file };
}

export interface OpenServer {
  readonly app: express.Express;
  readonly store: Store;
  readonly directory: Directory;
  readonly designs: readonly ServerDesign[];
  readonly context: ServerContext;
  readonly adminTokenSource: string;
  /** Settles when every design is ready to answer (the blinded epochs loaded or built); rejects when one cannot be. */
  readonly ready: Promise<void>;
  /**
   * Registers or removes numbers everywhere (store already changed, to
   * directory version `version`; default: the store's version now).
   */
  applyChanges(changes: readonly DirectoryChange[], version?: number): Promise<void>;
  /** Flushes logs, closes designs and the store. Idempotent. */
  close(): Promise<void>;
}

export async function openServer(options: ServerOptions): Promise<OpenServer> {
  const designNames = [...new Set(options.designs ?? DESIGNS)];
  for (const d of designNames) {
    if (!(DESIGNS as readonly string[]).includes(d)) throw new PcdError(ErrorCode.InvalidField, `unknown design '${d}': known are ${DESIGNS.join(', ')}`);
  }
  const logger = options.logger ?? pino({ level: process.env.PCD_LOG_LEVEL ?? 'silent' });
  const now = options.now ?? Date.now;
  const store = Store.open(options.dataDir);
  const { token: adminToken, source: adminTokenSource } = resolveAdminToken(options.dataDir, options.adminToken);
  const directory = Directory.load(store);
  // Read in the same synchronous step as the load: the version the in-memory directory reflects.
  let directoryVersion = store.directoryVersion();
  const context: ServerContext = { store, directory, directoryVersion: () => directoryVersion, now, options, logger };

  const designs: ServerDesign[] = [];
  try {
    for (const name of designNames) designs.push(await DESIGN_FACTORIES[name](context));
  } catch (e) {
    for (const d of designs) await d.close();
    store.close();
    throw e;
  }

  // No design asked for the directory journal (server/store.ts): nobody replays it, so it keeps nothing.
  if (!store.directoryJournal) store.pruneDirectoryChanges(Number.MAX_SAFE_INTEGER);

  const ready = Promise.all(designs.map((d) => d.ready)).then(() => undefined);
  ready.catch(() => {}); // observed by whoever awaits `ready`; the design logs its own failure

  // Serialise directory changes so designs see them in the order the store made them.
  let chain: Promise<void> = Promise.resolve();
  const applyChanges = (changes: readonly DirectoryChange[], version?: number): Promise<void> => {
    const at = version ?? store.directoryVersion();
    const run = chain.then(async () => {
      directory.apply(changes);
      directoryVersion = Math.max(directoryVersion, at);
      for (const d of designs) await d.onDirectoryChange(changes);
    });
    chain = run.catch(() => {});
    return run;
  };

  const coreRoutes: Route<any, any>[] = [
    route<undefined, HealthReply>({
      method: 'GET',
      path: PATHS.health,
      auth: 'anyone',
      handle: () => ({ body: { ok: true, designs: designNames } }),
    }),
    route<CreateAccountRequest, CreateAccountReply>({
      method: 'POST',
      path: PATHS.accounts,
      auth: 'admin',
      request: CreateAccountRequest,
      async handle({ body }) {
        const numbers: E164[] = body.numbers.map((n, i) => {
          try {
            return normalizeNumber(n, body.region?.toUpperCase());
          } catch (e) {
            if (e instanceof PcdError) throw new PcdError(e.code, `numbers[${i}]: ${e.message}`);
            throw e;
          }
        });
        const mask = capabilitiesToMask(body.capabilities);
        const { accountId, token, changes, version } = store.createAccount({ email: body.email, numbers, mask }, now());
        await applyChanges(changes, version);
        return { status: 201, body: { accountId, token } };
      },
    }),
    route<undefined, OkReply>({
      method: 'DELETE',
      path: '/v1/accounts/:accountId',
      auth: 'admin',
      async handle({ params }) {
        const id = parseIdSegment(params.accountId ?? '', Number.MAX_SAFE_INTEGER);
        if (id === undefined) throw new PcdError(ErrorCode.InvalidField, `account id must be a positive integer, got '${String(params.accountId).slice(0, 40)}'`);
        const update = store.deleteAccount(id);
        if (!update) throw new PcdError(ErrorCode.NotFound, `no account ${id}`);
        await applyChanges(update.changes, update.version);
        return { body: { ok: true } };
      },
    }),
  ];

  const rateLimiter = options.rateLimitPerMinute ? new RateLimiter(options.rateLimitPerMinute, now) : undefined;
  const app = createApp({
    routes: [...coreRoutes, ...designs.flatMap((d) => d.routes)],
    designs: designNames,
    authenticate: (t) => store.authenticate(t),
    adminToken,
    rateLimiter,
    trustProxy: options.trustProxy,
    logger,
  });

  const retention = new Retention(store, options.retentionMs ?? DEFAULT_RETENTION_MS, now);
  retention.start();

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      retention.stop();
      await chain;
      for (const d of designs) await d.close();
      store.close();
    })());

  return { app, store, directory, designs, context, adminTokenSource, ready, applyChanges, close };
}

export interface RunningServer extends OpenServer {
  readonly url: string;
  readonly port: number;
  readonly http: Server;
}

/** Opens the server and listens (port 0: an ephemeral port). */
export async function startServer(options: ServerOptions & { port?: number; host?: string }): Promise<RunningServer> {
  const open = await openServer(options);
  const host = options.host ?? '127.0.0.1';
  const http = await new Promise<Server>((resolve, reject) => {
    const s = open.app.listen(options.port ?? 0, host, (err?: Error) => (err ? reject(err) : resolve(s)));
  }).catch(async (e: unknown) => {
    await open.close();
    throw e;
  });
  http.keepAliveTimeout = 5000;
  const { port } = http.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const closeAll = async (): Promise<void> => {
    await new Promise<void>((resolve) => {
      http.close(() => resolve());
      http.closeIdleConnections();
    });
    await open.close();
  };
  return { ...open, url: `http://${urlHost}:${port}`, port, http, close: closeAll };
}
