/**
 * The demo requester of `pcd start` (bin/commands/server.ts): the account whose token
 * it prints and whose page it serves. It is recorded in the data folder
 * (`meta.start_demo_account`) and start uses that account only, so it never
 * issues a token to an account it did not make: issuing one revokes the
 * account's own token, and the page would then look up as that user
 * (docs/operations.md, "Commands and environment").
 *
 * - A folder start seeds: the first seeded requester (its token and contact
 *   list are in `contacts/requesters.json`) is recorded.
 * - A folder seeded otherwise (`pcd seed`, the admin API, an earlier pcd):
 *   start creates an account of its own, with no numbers, and records it.
 * - Later starts: the recorded account, with the token from requesters.json
 *   when it still authenticates as that account, else a fresh token for it
 *   (it is start's own account). A recorded account that was deleted is
 *   replaced by a new one of start's own.
 */
import type { Store } from './store.ts';

/** The meta key naming start's demo account. */
export const START_DEMO_META = 'start_demo_account';
/** Email of the account start creates; `+2`, `+3`, ... when taken. */
const DEMO_EMAIL = { local: 'pcd-start-demo', domain: 'example.invalid' } as const;

export interface DemoRequester {
  email: string;
  accountId: number;
  token: string;
  /** Its contact list (a seeded requester's), else ''. */
  contacts: string;
}

/** What start found or made, and whether it made the account now. */
export function startDemoAccount(store: Store, listed: readonly (DemoRequester & Record<string, unknown>)[], now: number): DemoRequester & { created: boolean } {
  const recorded = Number(store.getMeta(START_DEMO_META));
  const account = Number.isSafeInteger(recorded) && recorded > 0 ? store.accountById(recorded) : undefined;
  if (account) {
    const known = listed.find((r) => r.accountId === account.accountId && store.authenticate(r.token)?.accountId === account.accountId);
    if (known) return { email: known.email, accountId: known.accountId, token: known.token, contacts: known.contacts, created: false };
    return { ...account, token: store.issueToken(account.accountId), contacts: '', created: false };
  }
  let email: string = `${DEMO_EMAIL.local}@${DEMO_EMAIL.domain}`;
  for (let i = 2; store.accountByEmail(email); i++) email = `${DEMO_EMAIL.local}+${i}@${DEMO_EMAIL.domain}`;
  const made = store.createAccount({ email, numbers: [], mask: 0 }, now);
  store.setMeta(START_DEMO_META, String(made.accountId));
  return { email, accountId: made.accountId, token: made.token, contacts: '', created: true };
}

/** Records the account start seeded as its demo requester. */
export function recordStartDemo(store: Store, accountId: number): void {
  store.setMeta(START_DEMO_META, String(accountId));
}
