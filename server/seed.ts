/**
 * Seeding an empty data folder or shared store with a synthetic directory
 * (synth/directory.ts): the numbers and accounts into the store, the
 * requesters' contact lists and tokens into the data folder's `contacts/`.
 * Behind `pcd seed`, `pcd start`, `pcd cluster`, the page's screenshot and
 * the tests.
 */
import fs from 'node:fs';
import path from 'node:path';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { CONTACTS_DIR } from '../disk/files.ts';
import { generateAccounts, generateContactLists, type SeedOptions } from '../synth/directory.ts';
import { SqliteDirectoryStore, type DirectoryStore } from './directory-store.ts';
import { acquireFolderLock } from './lock.ts';
import { loggerFor } from './logger.ts';
import { Store } from './store.ts';

/** Default seeded size for `npm start`: the blinded build evaluates thousands of numbers/s per core (sodium; ~780 with noble), so this builds in about a second. */
export const START_SEED_SIZE = 1000;
/** The requesters' tokens and contact files, beside their lists (0600). */
export const REQUESTERS_FILE = 'requesters.json';

/** Where `pcd seed` and `pcd start` put contact lists and requester tokens: `<data>/contacts/`, so two data folders never share them. */
export function contactsDirFor(dataDir: string): string {
  return path.join(dataDir, CONTACTS_DIR);
}

export interface SeedResult {
  numbers: number;
  ms: number;
  requesters: { email: string; accountId: number; token: string; contacts: string; registered: number; total: number }[];
}

/**
 * Seeds an empty data folder: the directory goes to the store, contact lists
 * and requester tokens to `contactsDir` (by default `<data>/contacts/`, which
 * the audit scan skips: a phone's contacts are not server data). Files 0600,
 * as the folder's lock would make them anyway.
 */
export async function seedDataFolder(dataDir: string, contactsDir: string, options: SeedOptions, log: (s: string) => void = () => {}): Promise<SeedResult> {
  // Refused, in one line naming it, while a server (or another command) holds the folder.
  const lock = acquireFolderLock(dataDir, { role: 'seed', logger: loggerFor(process.env.PCD_LOG_LEVEL ?? 'warn') });
  const store = lock.guard(() => Store.open(dataDir));
  try {
    return await seedStore(new SqliteDirectoryStore(store), dataDir, contactsDir, options, log);
  } finally {
    store.close();
    lock.release();
  }
}

/**
 * Seeds an empty store, SQLite's or a shared Postgres (`pcd seed --store
 * postgres://…`: COPY, server/pg/store.ts), named `where` in messages.
 */
export async function seedStore(store: DirectoryStore, where: string, contactsDir: string, options: SeedOptions, log: (s: string) => void = () => {}): Promise<SeedResult> {
  const existing = await store.directorySize();
  if (existing > 0) {
    throw new PcdError(ErrorCode.Conflict, `${where} already holds a directory of ${existing} numbers; seed an empty ${store.kind === 'sqlite' ? 'data folder' : 'database'}`);
  }
  const started = performance.now();
  const now = Date.now();
  // Contact lists first: options they cannot satisfy are refused before anything is written.
  const lists = [...generateContactLists(options)];
  const numbers = await store.bulkInsert(
    (function* () {
      for (const a of generateAccounts(options)) yield { email: a.email, numbers: a.numbers, mask: capabilitiesToMask(a.capabilities) };
    })(),
    now,
    (n) => log(`  ${n} numbers written`),
  );
  fs.mkdirSync(contactsDir, { recursive: true, mode: 0o700 });
  const requesters: SeedResult['requesters'] = [];
  for (const list of lists) {
    const account = await store.accountByEmail(list.email);
    if (!account) throw new Error(`seed: requester ${list.email} is not among the seeded accounts`);
    const file = path.join(contactsDir, `${list.email.split('@')[0]}.txt`);
    fs.writeFileSync(file, list.numbers.join('\n') + '\n', { mode: 0o600 });
    let registered = 0;
    for (const n of list.numbers) if (await store.numberRegistered(n)) registered++;
    requesters.push({ email: list.email, accountId: account.accountId, token: await store.issueToken(account.accountId), contacts: file, registered, total: list.numbers.length });
  }
  fs.writeFileSync(path.join(contactsDir, REQUESTERS_FILE), JSON.stringify(requesters, null, 2) + '\n', { mode: 0o600 });
  return { numbers, ms: performance.now() - started, requesters };
}
