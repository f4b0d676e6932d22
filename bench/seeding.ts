/**
 * Data folders for the benchmarks: the synthetic directory of synth/
 * written into a fresh store, and a requester with a contact list (half of
 * it registered) whose numbers the load generator looks up.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { capabilitiesToMask } from '../shared/capabilities.ts';
import type { E164 } from '../shared/e164.ts';
import { generateAccounts, generateContactLists } from '../synth/directory.ts';
import { DB_FILE } from '../disk/files.ts';
import { Store } from '../server/store.ts';

export const BENCH_SEED = 'pcd-bench';
export const BENCH_ADMIN_TOKEN = 'pcd-bench-admin-token-not-a-secret';

export interface SeededFolder {
  dataDir: string;
  numbers: number;
  seedSeconds: number;
  /** A requester account's token, when contacts were asked for. */
  token?: string;
  /** Its contact list, with whether each number is registered. */
  contacts: { number: E164; registered: boolean }[];
}

export function tempRoot(prefix = 'pcd-bench-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/**
 * Seeds `dataDir` (must be empty) with `size` numbers; with `contacts` > 0,
 * also gives the first account a token and a contact list of that many
 * numbers, `registeredShare` of them registered.
 */
export function seedFolder(dataDir: string, size: number, contacts = 0, registeredShare = 0.5): SeededFolder {
  const store = Store.open(dataDir);
  try {
    if (store.directorySize() > 0) throw new Error(`${dataDir} is not empty`);
    const t0 = performance.now();
    const opts = { size, seed: BENCH_SEED, requesters: contacts > 0 ? 1 : 0, contactsPerRequester: Math.max(1, contacts), registeredShare };
    const numbers = store.bulkInsert(
      (function* () {
        for (const a of generateAccounts(opts)) yield { email: a.email, numbers: a.numbers, mask: capabilitiesToMask(a.capabilities) };
      })(),
      Date.now(),
    );
    const seedSeconds = (performance.now() - t0) / 1000;
    if (contacts === 0) return { dataDir, numbers, seedSeconds, contacts: [] };
    const [list] = generateContactLists(opts);
    if (!list) throw new Error('seed: no contact list');
    const account = store.accountByEmail(list.email);
    if (!account) throw new Error(`seed: requester ${list.email} is not in the store`);
    const token = store.issueToken(account.accountId);
    return {
      dataDir,
      numbers,
      seedSeconds,
      token,
      contacts: list.numbers.map((number) => ({ number, registered: store.numberRegistered(number) })),
    };
  } finally {
    store.close();
  }
}

/** A fresh data folder holding a copy of `from`'s database (and epochs, when asked). */
export function copyFolder(from: string, to: string, withEpochs = false): string {
  fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  for (const f of fs.readdirSync(from)) {
    if (f.startsWith(DB_FILE)) fs.copyFileSync(path.join(from, f), path.join(to, f));
  }
  if (withEpochs) {
    for (const f of ['oprf-keys.json', 'epochs']) {
      const src = path.join(from, f);
      if (fs.existsSync(src)) fs.cpSync(src, path.join(to, f), { recursive: true });
    }
  }
  return to;
}
