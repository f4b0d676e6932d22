/**
 * The embedded store: one SQLite file (better-sqlite3) in the data folder for
 * accounts, registered numbers, the query logs of every design and epoch
 * metadata. OPRF secret keys are NOT here: they live in their own file
 * (server/blinded/keys.ts) so that the database can be copied, audited or
 * handed over without them.
 *
 * The directory version (`meta.directory_version`) grows by one per changed
 * number. While a design that derives caches from the directory asks for it
 * ({@link Store.enableDirectoryJournal}: the blinded epochs do), every
 * change is also journaled in `directory_changes`, one row per version, in
 * the SAME transaction as the account change and the version bump: a cache
 * that reflects version v is brought up to date after a crash by replaying
 * the rows above v ({@link Store.directoryChangesSince}). The journal holds
 * deleted numbers too, so its owner prunes it as soon as no cache needs the
 * rows ({@link Store.pruneDirectoryChanges}); a bulk insert (`pcd seed`)
 * bumps the version without journaling, which a replay sees as a gap.
 *
 * `secure_delete` is on, so rows purged past retention are overwritten on
 * disk rather than left in free pages where `pcd audit --scan` (or a
 * forensic examiner) would still find them.
 *
 * Tokens are stored as SHA-256 hashes: they are 256-bit random values, so a
 * fast hash is enough and the database never holds a usable token.
 *
 * Account ids are never reused (`AUTOINCREMENT`): a log row's account id
 * names the account that asked, even after it is deleted and others are
 * created. Data folders of earlier versions are migrated when opened (see
 * {@link Store.open}): the accounts table is rebuilt with AUTOINCREMENT, its
 * sequence starting above every id in the accounts table and the logs, and
 * the per-fetch bucket log is aggregated into per-minute counts.
 *
 * A full disk or an I/O error is a 503, not a 500: {@link storeErrorToPcdError}
 * maps SQLite's codes, and the account methods the API calls apply it.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import Database from 'better-sqlite3';
import type { CapabilityMask } from '../shared/capabilities.ts';
import type { DirectoryChange, Requester } from '../shared/design.ts';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { BLINDED_BUCKET_LOG } from '../shared/designs/blinded.ts';
import { LOG_TABLES } from '../shared/designs/index.ts';
import { DB_FILE } from '../disk/files.ts';
import { accountsTable, countsTableDdl, SCHEMA, spentTokensTable } from '../disk/sql.ts';
import { DirectoryDigest } from './directory-digest.ts';
import { e164ToKey } from '../shared/e164.ts';

/** The SQLite error code of a thrown error (`SQLITE_FULL`, `SQLITE_IOERR_WRITE`, ...), if it is one. */
export function sqliteCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return err instanceof Error && typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** Codes that say the storage cannot take the request now, not that the request or the data is wrong. */
const UNAVAILABLE_CODES = /^SQLITE_(FULL|IOERR|BUSY|LOCKED|NOMEM|READONLY|CANTOPEN|PROTOCOL)(_|$)/;
/** The same conditions from the file system, for the files beside the database (the key files, the epoch caches). */
const UNAVAILABLE_ERRNOS = new Set(['ENOSPC', 'EDQUOT', 'EIO', 'EROFS']);

/** A file system error's code (`ENOSPC`, ...) when it is one of {@link UNAVAILABLE_ERRNOS}. */
function unavailableErrno(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return err instanceof Error && typeof code === 'string' && UNAVAILABLE_ERRNOS.has(code) ? code : undefined;
}

/**
 * A store error as the API answers it: a full disk, an I/O error, a locked
 * or read-only database, and the same from a file the server writes beside
 * it (ENOSPC, EDQUOT, EIO, EROFS: a key file at rotation), become 503
 * `unavailable` with Retry-After; anything else (a PcdError, a bug, a
 * corrupt file) is not a store condition and gives undefined, for the
 * caller's own mapping.
 */
export function storeErrorToPcdError(err: unknown): PcdError | undefined {
  if (err instanceof PcdError) return undefined;
  const code = sqliteCode(err) ?? unavailableErrno(err);
  if (!code || !(UNAVAILABLE_CODES.test(code) || UNAVAILABLE_ERRNOS.has(code))) return undefined;
  const what =
    code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT'
      ? "the server's storage is full"
      : /^SQLITE_(BUSY|LOCKED)/.test(code)
        ? "the server's storage is busy"
        : "the server's storage cannot be written or read";
  return new PcdError(ErrorCode.Unavailable, `${what} (${code}): try again later`, { cause: err, retryAfterSeconds: 30 });
}

/** Runs a store operation; storage conditions are thrown as their 503 PcdError. */
function guarded<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw storeErrorToPcdError(e) ?? e;
  }
}

export function hashToken(token: string): Buffer {
  return crypto.createHash('sha256').update(token, 'utf8').digest();
}

export function newToken(): string {
  return crypto.randomBytes(32).toString('base64url');
}

export interface NewAccount {
  email: string;
  numbers: readonly E164[];
  mask: CapabilityMask;
}

/** A journaled directory change: the directory version it made, and the number's mask before it (undefined in rows of earlier versions). */
export interface JournaledChange extends DirectoryChange {
  version: number;
  previous: CapabilityMask | undefined;
}

/** What a directory change did: the changes, and the directory version after it. */
export interface DirectoryUpdate {
  changes: DirectoryChange[];
  version: number;
}

export class Store {
  readonly db: Database.Database;
  private readonly stmts;
  private journal = false;
  /** Per holder of the journal (a cache that replays it), the version up to which it no longer needs rows. */
  private readonly journalHolds = new Map<string, number>();

  private constructor(readonly dataDir: string, readonly file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('secure_delete = ON');
    // Off while the schema is created and migrated (a table rebuild must not cascade), on for everything after.
    this.db.pragma('foreign_keys = OFF');
    this.db.exec(SCHEMA);
    this.migrate();
    this.db.pragma('foreign_keys = ON');
    this.stmts = {
      auth: this.db.prepare<[Buffer], { id: number; email: string }>('SELECT id, email FROM accounts WHERE token_hash = ?'),
      insertAccount: this.db.prepare<[string, Buffer | null, number, number]>(
        'INSERT INTO accounts (email, token_hash, capabilities, created_at) VALUES (?, ?, ?, ?)',
      ),
      insertNumber: this.db.prepare<[string, number | bigint]>('INSERT INTO numbers (number, account_id) VALUES (?, ?)'),
      numberOwner: this.db.prepare<[string], { account_id: number }>('SELECT account_id FROM numbers WHERE number = ?'),
      emailExists: this.db.prepare<[string], { id: number }>('SELECT id FROM accounts WHERE email = ?'),
      accountNumbers: this.db.prepare<[number], { number: string; capabilities: number }>(
        'SELECT n.number, a.capabilities FROM numbers n JOIN accounts a ON a.id = n.account_id WHERE n.account_id = ?',
      ),
      deleteAccount: this.db.prepare<[number]>('DELETE FROM accounts WHERE id = ?'),
      setToken: this.db.prepare<[Buffer, number]>('UPDATE accounts SET token_hash = ? WHERE id = ?'),
      accountByEmail: this.db.prepare<[string], { id: number; email: string }>('SELECT id, email FROM accounts WHERE email = ?'),
      getMeta: this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?'),
      setMeta: this.db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
      directorySize: this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM numbers'),
      journalChange: this.db.prepare<[number, string, number, number]>('INSERT INTO directory_changes (version, number, mask, previous) VALUES (?, ?, ?, ?)'),
      changesSince: this.db.prepare<[number], { version: number; number: string; mask: number; previous: number | null }>(
        'SELECT version, number, mask, previous FROM directory_changes WHERE version > ? ORDER BY version',
      ),
      pruneChanges: this.db.prepare<[number]>('DELETE FROM directory_changes WHERE version <= ?'),
    };
  }

  /**
   * Brings a database of an earlier version to this schema, in one
   * transaction (foreign keys are off around it, as SQLite's table rebuild
   * procedure requires: https://www.sqlite.org/lang_altertable.html#otheralter):
   * - accounts without AUTOINCREMENT: rebuilt with it, same ids, and the
   *   sequence set to the largest id in accounts or any log, so no id a log
   *   row holds is given out again;
   * - blinded_bucket_log with one row per fetch: aggregated into counts per
   *   (minute, IP, epoch, bucket);
   * - directory_changes without `previous`: the column is added (NULL in
   *   the old rows, which a start then cannot rewind: it rebuilds).
   */
  private migrate(): void {
    const tableSql = (name: string) =>
      this.db.prepare<[string], { sql: string }>("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?").get(name)?.sql ?? '';
    const columns = (name: string) => this.db.prepare<[], { name: string }>(`SELECT name FROM pragma_table_info('${name}')`).all().map((c) => c.name);
    const accountsOld = !/AUTOINCREMENT/i.test(tableSql('accounts'));
    const bucketLogOld = !columns('blinded_bucket_log').includes('count');
    if (!columns('directory_changes').includes('previous')) this.db.exec('ALTER TABLE directory_changes ADD COLUMN previous INTEGER');
    // Before the key moved to (key_id, nonce_hash): a second index on key_id, whose upkeep doubled a spend's cost.
    const spentOld = /nonce_hash BLOB PRIMARY KEY/i.test(tableSql('spent_tokens'));
    if (!accountsOld && !bucketLogOld && !spentOld) return;
    this.db.transaction(() => {
      if (accountsOld) {
        this.db.exec(`DROP TABLE IF EXISTS accounts_rebuild; ${accountsTable('accounts_rebuild')};
          INSERT INTO accounts_rebuild (id, email, token_hash, capabilities, created_at)
            SELECT id, email, token_hash, capabilities, created_at FROM accounts ORDER BY id;
          DROP TABLE accounts;
          ALTER TABLE accounts_rebuild RENAME TO accounts;`);
        const maxId = this.db
          .prepare<[], { m: number | null }>(
            `SELECT max(m) AS m FROM (SELECT max(id) AS m FROM accounts UNION ALL SELECT max(account_id) FROM plain_log
             UNION ALL SELECT max(account_id) FROM hashed_log UNION ALL SELECT max(account_id) FROM blinded_eval_log)`,
          )
          .get()!.m;
        this.db.prepare("DELETE FROM sqlite_sequence WHERE name IN ('accounts', 'accounts_rebuild')").run();
        this.db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('accounts', ?)").run(maxId ?? 0);
        const broken = this.db.pragma('foreign_key_check') as unknown[];
        if (broken.length) throw new Error(`migrating the accounts table: ${broken.length} row(s) reference a missing account; the database is left unchanged`);
      }
      if (bucketLogOld) {
        this.db.exec(`DROP TABLE IF EXISTS blinded_bucket_log_rebuild; ${countsTableDdl(BLINDED_BUCKET_LOG, 'blinded_bucket_log_rebuild')}
          INSERT INTO blinded_bucket_log_rebuild (ts, ip, epoch, bucket, count)
            SELECT (ts / ${BLINDED_BUCKET_LOG.windowMs}) * ${BLINDED_BUCKET_LOG.windowMs}, ip, epoch, bucket, count(*) FROM blinded_bucket_log GROUP BY 1, 2, 3, 4;
          DROP TABLE blinded_bucket_log;
          ALTER TABLE blinded_bucket_log_rebuild RENAME TO blinded_bucket_log;`);
      }
      if (spentOld) {
        this.db.exec(`DROP TABLE IF EXISTS spent_tokens_rebuild; ${spentTokensTable('spent_tokens_rebuild')};
          INSERT INTO spent_tokens_rebuild (nonce_hash, key_id) SELECT nonce_hash, key_id FROM spent_tokens;
          DROP TABLE spent_tokens;
          ALTER TABLE spent_tokens_rebuild RENAME TO spent_tokens;`);
      }
    })();
    // The old rows' pages are zeroed (secure_delete); leave no copy of them in the write-ahead log either.
    this.db.pragma('wal_checkpoint(TRUNCATE)');
  }

  static open(dataDir: string): Store {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    return new Store(dataDir, path.join(dataDir, DB_FILE));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ------------------------------------------------------------- metadata

  getMeta(key: string): string | undefined {
    return this.stmts.getMeta.get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.stmts.setMeta.run(key, value);
  }

  /** Increases with every directory change; caches derived from the directory record it. */
  directoryVersion(): number {
    return Number(this.getMeta('directory_version') ?? '0');
  }

  private bumpDirectoryVersion(): void {
    this.setMeta('directory_version', String(this.directoryVersion() + 1));
  }

  /**
   * The digest of the directory at the current version (server/directory.ts
   * DirectoryDigest), kept in `meta.directory_digest` in the same transaction
   * as every change; undefined until a start has scanned the directory once
   * and set it ({@link setDirectoryDigest}). The directory snapshot is
   * checked against it (server/directory-snapshot.ts).
   */
  directoryDigest(): DirectoryDigest | undefined {
    const hex = this.getMeta('directory_digest');
    return hex ? DirectoryDigest.fromBytes(Buffer.from(hex, 'hex')) : undefined;
  }

  setDirectoryDigest(digest: DirectoryDigest): void {
    this.setMeta('directory_digest', Buffer.from(digest.bytes()).toString('hex'));
  }

  /**
   * Whether every write to the numbers (and the accounts' capabilities) since
   * the last acknowledgement was the store's own: the schema's triggers count
   * every write in `meta.directory_writes` (disk/sql.ts), the store
   * acknowledges its own in the same transaction. Apart, the file was edited
   * from outside: the digest in meta and the snapshot may not describe it.
   */
  directoryWritesAcknowledged(): boolean {
    return (this.getMeta('directory_writes') ?? '0') === (this.getMeta('directory_writes_seen') ?? '0');
  }

  /** Acknowledges the writes counted so far (inside the writer's transaction, or after a scan). */
  acknowledgeDirectoryWrites(): void {
    this.setMeta('directory_writes_seen', this.getMeta('directory_writes') ?? '0');
  }

  /** Inside a transaction: the digest updated by `f` when the store keeps one (a store that has none keeps none until a scan sets it). */
  private updateDigest(f: (d: DirectoryDigest) => void): void {
    const d = this.directoryDigest();
    if (!d) return;
    f(d);
    this.setDirectoryDigest(d);
  }

  /**
   * Records changes inside the caller's transaction: one version per
   * changed number, each journaled when the journal is on, with the
   * number's mask before it (`previous`, same order). Returns the directory
   * version after them.
   */
  private recordChanges(changes: readonly DirectoryChange[], previous: readonly CapabilityMask[]): number {
    let version = this.directoryVersion();
    if (changes.length === 0) return version;
    changes.forEach((c, i) => {
      version++;
      if (this.journal) this.stmts.journalChange.run(version, c.number, c.mask, previous[i] ?? 0);
    });
    this.setMeta('directory_version', String(version));
    this.acknowledgeDirectoryWrites();
    this.updateDigest((d) =>
      changes.forEach((c, i) => {
        const key = e164ToKey(c.number);
        d.update(key, previous[i] ?? 0, -1);
        d.update(key, c.mask, 1);
      }),
    );
    return version;
  }

  /** Journals every directory change from now on (see the module header). */
  enableDirectoryJournal(): void {
    this.journal = true;
  }

  get directoryJournal(): boolean {
    return this.journal;
  }

  /**
   * The journaled changes after `version`, oldest first, or undefined when
   * the journal does not reach back that far (pruned, or a change that was
   * not journaled, such as a bulk insert): then only a rebuild is right.
   */
  directoryChangesSince(version: number): JournaledChange[] | undefined {
    const current = this.directoryVersion();
    if (!Number.isSafeInteger(version) || version < 0 || version > current) return undefined;
    if (version === current) return [];
    const rows = this.stmts.changesSince.all(version);
    // Versions are unique integers in (version, current]: as many rows as versions means none is missing.
    if (rows.length !== current - version) return undefined;
    return rows.map((r) => ({ version: r.version, number: r.number as E164, mask: r.mask, previous: r.previous ?? undefined }));
  }

  /**
   * Says that `holder` no longer needs the journal rows up to `version`
   * (inclusive), and deletes the rows no holder needs: those up to the
   * smallest version any holder gave (the epoch caches hold as `caches`, the
   * directory snapshot as `snapshot`). Returns how many rows were deleted.
   */
  pruneDirectoryChanges(version: number, holder = 'caches'): number {
    this.holdDirectoryChanges(version, holder);
    return this.stmts.pruneChanges.run(Math.min(...this.journalHolds.values())).changes;
  }

  /** Records that `holder` needs the journal rows above `version`, deleting nothing (yet): a later prune by any holder keeps them. */
  holdDirectoryChanges(version: number, holder: string): void {
    this.journalHolds.set(holder, Math.min(version, Number.MAX_SAFE_INTEGER));
  }

  // ------------------------------------------------------------- accounts

  authenticate(token: string): Requester | undefined {
    const row = guarded(() => this.stmts.auth.get(hashToken(token)));
    return row ? { accountId: row.id, email: row.email } : undefined;
  }

  /** Creates an account with its numbers; conflicts (email or number taken) are 409s. */
  createAccount(account: NewAccount, now: number): { accountId: number; token: string } & DirectoryUpdate {
    const token = newToken();
    const tx = this.db.transaction(() => {
      if (this.stmts.emailExists.get(account.email)) {
        throw new PcdError(ErrorCode.Conflict, `an account with email '${account.email}' exists already`);
      }
      const seen = new Set<string>();
      for (const n of account.numbers) {
        if (seen.has(n)) throw new PcdError(ErrorCode.InvalidField, `numbers: ${n} is listed twice`);
        seen.add(n);
        if (this.stmts.numberOwner.get(n)) throw new PcdError(ErrorCode.Conflict, `number ${n} is registered to another account`);
      }
      const id = Number(this.stmts.insertAccount.run(account.email, hashToken(token), account.mask, now).lastInsertRowid);
      for (const n of account.numbers) this.stmts.insertNumber.run(n, id);
      const changes = account.numbers.map((number) => ({ number, mask: account.mask }));
      // Each number had no owner (checked above): it was not in the directory.
      return { accountId: id, changes, version: this.recordChanges(changes, changes.map(() => 0)) };
    });
    return { ...guarded(tx), token };
  }

  /** Deletes an account; returns the directory changes (its numbers, now unregistered), or undefined if absent. */
  deleteAccount(accountId: number): DirectoryUpdate | undefined {
    const tx = this.db.transaction(() => {
      const numbers = this.stmts.accountNumbers.all(accountId);
      const res = this.stmts.deleteAccount.run(accountId);
      if (res.changes === 0) return undefined;
      const changes = numbers.map((r) => ({ number: r.number as E164, mask: 0 }));
      return { changes, version: this.recordChanges(changes, numbers.map((r) => r.capabilities)) };
    });
    return guarded(tx);
  }

  /** Issues a fresh token for an existing account (the old one stops working). */
  issueToken(accountId: number): string {
    const token = newToken();
    guarded(() => this.stmts.setToken.run(hashToken(token), accountId));
    return token;
  }

  accountByEmail(email: string): Requester | undefined {
    const row = this.stmts.accountByEmail.get(email);
    return row ? { accountId: row.id, email: row.email } : undefined;
  }

  accountById(accountId: number): Requester | undefined {
    const row = this.db.prepare<[number], { id: number; email: string }>('SELECT id, email FROM accounts WHERE id = ?').get(accountId);
    return row ? { accountId: row.id, email: row.email } : undefined;
  }

  // ------------------------------------------------------------- directory

  numberRegistered(number: string): boolean {
    return this.stmts.numberOwner.get(number) !== undefined;
  }

  /** One registered number, for examples. */
  sampleNumber(): E164 | undefined {
    return this.db.prepare<[], { number: string }>('SELECT number FROM numbers ORDER BY account_id LIMIT 1').get()?.number as E164 | undefined;
  }

  directorySize(): number {
    return this.stmts.directorySize.get()!.n;
  }

  /** Every registered number with its capability mask, in storage order. */
  *directory(): Generator<DirectoryChange> {
    const it = this.db
      .prepare<[], { number: string; capabilities: number }>(
        // An account without capabilities is registered but not reachable: not in the directory (mask 0 means absent).
        'SELECT n.number, a.capabilities FROM numbers n JOIN accounts a ON a.id = n.account_id WHERE a.capabilities != 0',
      )
      .iterate();
    for (const row of it) yield { number: row.number as E164, mask: row.capabilities };
  }

  /**
   * Bulk insert for seeding: accounts without tokens (tokens are issued on
   * demand with issueToken), in transactions of `chunk` accounts. Not
   * journaled: one version bump per transaction, so a cache built before
   * it is rebuilt rather than replayed.
   */
  bulkInsert(accounts: Iterable<NewAccount>, now: number, onProgress?: (numbers: number) => void, chunk = 50_000): number {
    let count = 0;
    let batch: NewAccount[] = [];
    const write = this.db.transaction((items: NewAccount[]) => {
      for (const a of items) {
        const id = this.stmts.insertAccount.run(a.email, null, a.mask, now).lastInsertRowid;
        for (const n of a.numbers) this.stmts.insertNumber.run(n, id);
      }
      // Each number is new (the insert fails on one registered already): it only adds to the digest.
      this.updateDigest((d) => {
        for (const a of items) for (const n of a.numbers) d.update(e164ToKey(n), a.mask, 1);
      });
      this.acknowledgeDirectoryWrites();
      this.bumpDirectoryVersion();
    });
    for (const a of accounts) {
      batch.push(a);
      count += a.numbers.length;
      if (batch.length >= chunk) {
        write(batch);
        batch = [];
        onProgress?.(count);
      }
    }
    if (batch.length) write(batch);
    onProgress?.(count);
    return count;
  }

  // ------------------------------------------------------------- logs

  /** Deletes query-log rows older than `cutoff` (Unix ms) from every log table; returns rows deleted. */
  purgeLogs(cutoff: number): number {
    let n = 0;
    const tx = this.db.transaction(() => {
      for (const { name: table } of LOG_TABLES) {
        n += this.db.prepare(`DELETE FROM ${table} WHERE ts < ?`).run(cutoff).changes;
      }
    });
    tx();
    // Purged rows must not linger in the write-ahead log either.
    if (n > 0) this.db.pragma('wal_checkpoint(TRUNCATE)');
    return n;
  }
}
