/**
 * The accounts and directory half of the store behind one asynchronous
 * interface, so that it can live in SQLite (the embedded default,
 * server/store.ts) or in Postgres shared by several nodes (server/pg/store.ts).
 *
 * Both keep the same guarantees, and test/store.test.ts runs one suite over
 * both (test/stores.ts describeStores):
 * - an account id is never given to a second account, even after a delete
 *   or a rolled-back insert;
 * - a taken email or number is a 409 `conflict`, a number listed twice a
 *   400, and nothing of the refused account is written;
 * - every directory change bumps the directory version by one per changed
 *   number and, while the journal is on, is journaled in the same
 *   transaction with the number's mask before it; a bulk load bumps the
 *   version without journaling, which a replay sees as a gap;
 * - the directory digest in meta follows every change once a scan set it;
 * - a store that cannot take the request (disk full, I/O, read-only, the
 *   connection lost) throws the 503 `unavailable` PcdError with
 *   Retry-After, and works again when the condition ends.
 *
 * The server still calls the SQLite store's synchronous methods; moving its
 * callers onto this interface is the next step of the shared store
 * (docs/operations.md, "Postgres").
 */
import type { DirectoryChange, Requester } from '../shared/design.ts';
import type { E164 } from '../shared/e164.ts';
import type { DirectoryDigest } from './directory-digest.ts';
import type { DirectoryUpdate, JournaledChange, NewAccount, Store } from './store.ts';

export type StoreKind = 'sqlite' | 'postgres';

export interface DirectoryStore {
  readonly kind: StoreKind;
  close(): Promise<void>;

  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  /** Grows by one per changed number. */
  directoryVersion(): Promise<number>;
  directoryDigest(): Promise<DirectoryDigest | undefined>;
  setDirectoryDigest(digest: DirectoryDigest): Promise<void>;
  /** Whether every write to the directory since the last acknowledgement was the store's own. */
  directoryWritesAcknowledged(): Promise<boolean>;
  acknowledgeDirectoryWrites(): Promise<void>;

  /** Journals every directory change from now on (Postgres: always, as any node may follow it). */
  enableDirectoryJournal(): void;
  readonly directoryJournal: boolean;
  /** The journaled changes after `version`, oldest first; undefined when the journal does not reach back that far. */
  directoryChangesSince(version: number): Promise<JournaledChange[] | undefined>;
  /** `holder` no longer needs rows up to `version`; deletes the rows no holder needs. Returns rows deleted. */
  pruneDirectoryChanges(version: number, holder?: string): Promise<number>;
  /** Records that `holder` needs the rows above `version`, deleting nothing. */
  holdDirectoryChanges(version: number, holder: string): Promise<void>;

  authenticate(token: string): Promise<Requester | undefined>;
  createAccount(account: NewAccount, now: number): Promise<{ accountId: number; token: string } & DirectoryUpdate>;
  deleteAccount(accountId: number): Promise<DirectoryUpdate | undefined>;
  issueToken(accountId: number): Promise<string>;
  accountByEmail(email: string): Promise<Requester | undefined>;
  accountById(accountId: number): Promise<Requester | undefined>;

  numberRegistered(number: string): Promise<boolean>;
  sampleNumber(): Promise<E164 | undefined>;
  directorySize(): Promise<number>;
  /** Every reachable number (capabilities not 0) with its mask. */
  directory(): AsyncIterable<DirectoryChange>;
  /**
   * The directory as of one moment: every reachable number to `onEntry`,
   * and the directory version they reflect (SQLite: one synchronous read;
   * Postgres: one REPEATABLE READ transaction, while other nodes write).
   */
  scanDirectory(onEntry: (change: DirectoryChange) => void): Promise<number>;
  /**
   * After a scan: stores `digest` as the directory's, and acknowledges the
   * writes counted so far, in one transaction, if the directory is still at
   * `version`; false (nothing stored) when a change came in between.
   */
  recordDirectoryScan(digest: DirectoryDigest, version: number): Promise<boolean>;
  /** Seeding: accounts without tokens; one version bump per chunk, not journaled. Returns numbers inserted. */
  bulkInsert(accounts: Iterable<NewAccount>, now: number, onProgress?: (numbers: number) => void, chunk?: number): Promise<number>;

  /** Deletes query-log rows older than `cutoff` (Unix ms) from every declared log table; returns rows deleted. */
  purgeLogs(cutoff: number): Promise<number>;
}

/** The SQLite store (server/store.ts) behind the interface: each call runs synchronously and settles at once. */
export class SqliteDirectoryStore implements DirectoryStore {
  readonly kind = 'sqlite' as const;
  constructor(readonly store: Store) {}

  async close(): Promise<void> {
    this.store.close();
  }
  async getMeta(key: string): Promise<string | undefined> {
    return this.store.getMeta(key);
  }
  async setMeta(key: string, value: string): Promise<void> {
    this.store.setMeta(key, value);
  }
  async directoryVersion(): Promise<number> {
    return this.store.directoryVersion();
  }
  async directoryDigest(): Promise<DirectoryDigest | undefined> {
    return this.store.directoryDigest();
  }
  async setDirectoryDigest(digest: DirectoryDigest): Promise<void> {
    this.store.setDirectoryDigest(digest);
  }
  async directoryWritesAcknowledged(): Promise<boolean> {
    return this.store.directoryWritesAcknowledged();
  }
  async acknowledgeDirectoryWrites(): Promise<void> {
    this.store.acknowledgeDirectoryWrites();
  }
  enableDirectoryJournal(): void {
    this.store.enableDirectoryJournal();
  }
  get directoryJournal(): boolean {
    return this.store.directoryJournal;
  }
  async directoryChangesSince(version: number): Promise<JournaledChange[] | undefined> {
    return this.store.directoryChangesSince(version);
  }
  async pruneDirectoryChanges(version: number, holder?: string): Promise<number> {
    return this.store.pruneDirectoryChanges(version, holder);
  }
  async holdDirectoryChanges(version: number, holder: string): Promise<void> {
    this.store.holdDirectoryChanges(version, holder);
  }
  async authenticate(token: string): Promise<Requester | undefined> {
    return this.store.authenticate(token);
  }
  async createAccount(account: NewAccount, now: number): Promise<{ accountId: number; token: string } & DirectoryUpdate> {
    return this.store.createAccount(account, now);
  }
  async deleteAccount(accountId: number): Promise<DirectoryUpdate | undefined> {
    return this.store.deleteAccount(accountId);
  }
  async issueToken(accountId: number): Promise<string> {
    return this.store.issueToken(accountId);
  }
  async accountByEmail(email: string): Promise<Requester | undefined> {
    return this.store.accountByEmail(email);
  }
  async accountById(accountId: number): Promise<Requester | undefined> {
    return this.store.accountById(accountId);
  }
  async numberRegistered(number: string): Promise<boolean> {
    return this.store.numberRegistered(number);
  }
  async sampleNumber(): Promise<E164 | undefined> {
    return this.store.sampleNumber();
  }
  async directorySize(): Promise<number> {
    return this.store.directorySize();
  }
  async *directory(): AsyncIterable<DirectoryChange> {
    yield* this.store.directory();
  }
  async scanDirectory(onEntry: (change: DirectoryChange) => void): Promise<number> {
    const version = this.store.directoryVersion();
    for (const c of this.store.directory()) onEntry(c);
    return version;
  }
  async recordDirectoryScan(digest: DirectoryDigest, version: number): Promise<boolean> {
    return this.store.db.transaction(() => {
      if (this.store.directoryVersion() !== version) return false;
      this.store.setDirectoryDigest(digest);
      this.store.acknowledgeDirectoryWrites();
      return true;
    })();
  }
  async bulkInsert(accounts: Iterable<NewAccount>, now: number, onProgress?: (numbers: number) => void, chunk?: number): Promise<number> {
    return this.store.bulkInsert(accounts, now, onProgress, chunk);
  }
  async purgeLogs(cutoff: number): Promise<number> {
    return this.store.purgeLogs(cutoff);
  }
}
