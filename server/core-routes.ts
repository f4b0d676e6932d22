/**
 * The server's own routes, beside the designs': GET /v1/health, and the
 * admin API's accounts (POST /v1/accounts, DELETE /v1/accounts/{id}). An
 * account change goes to the store first; the admin call answers once the
 * change is in memory (server/server.ts, `changed`).
 */
import { capabilitiesToMask } from '../shared/capabilities.ts';
import { route, type DirectoryChange, type Route } from '../shared/design.ts';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError, quoteInput } from '../shared/errors.ts';
import { CreateAccountRequest, PATHS, parseIdSegment, type CreateAccountReply, type DesignName, type HealthReply, type OkReply } from '../shared/messages.ts';
import type { DirectoryStore } from './directory-store.ts';
import { degradedState } from './loghealth.ts';
import type { RateLimiter } from './ratelimit.ts';
import type { Store } from './store.ts';

/** The server's own routes: health, and the admin API's accounts (answered once the change is in memory). */
export function coreRoutes(deps: {
  store: Store;
  directoryStore: DirectoryStore;
  designNames: DesignName[];
  now: () => number;
  rateLimiter: RateLimiter | undefined;
  changed: (update: { changes: readonly DirectoryChange[]; version: number }) => Promise<void>;
}): Route<any, any>[] {
  const { store, directoryStore, designNames, now, rateLimiter, changed } = deps;
  return [
    route<undefined, HealthReply>({
      method: 'GET',
      path: PATHS.health,
      auth: 'anyone',
      // Not ok while a query log cannot be written (server/loghealth.ts): which, and how far behind.
      handle: () => {
        const degraded = degradedState(store);
        return { body: degraded ? { ok: false, designs: designNames, degraded } : { ok: true, designs: designNames } };
      },
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
        const { accountId, token, changes, version } = await directoryStore.createAccount({ email: body.email, numbers, mask }, now());
        await changed({ changes, version });
        return { status: 201, body: { accountId, token } };
      },
    }),
    route<undefined, OkReply>({
      method: 'DELETE',
      path: PATHS.account.pattern,
      auth: 'admin',
      async handle({ params }) {
        const id = parseIdSegment(params.accountId ?? '', Number.MAX_SAFE_INTEGER);
        if (id === undefined) throw new PcdError(ErrorCode.InvalidField, `account id must be a positive integer, got ${quoteInput(params.accountId)}`);
        const update = await directoryStore.deleteAccount(id);
        if (!update) throw new PcdError(ErrorCode.NotFound, `no account ${id}`);
        rateLimiter?.forget(id);
        await changed(update);
        return { body: { ok: true } };
      },
    }),
  ];
}
