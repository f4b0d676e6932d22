/**
 * The accounts and directory store in Postgres (server/directory-store.ts
 * has the interface and the guarantees; test/store.test.ts checks them on
 * both stores). The schema is disk/schema.ts PG_SCHEMA, generated from the
 * same declarations as SQLite's, created on open under an advisory lock so
 * that nodes starting together do not race on it.
 *
 * Every transaction that changes the directory first takes one advisory
 * lock ({@link DIRECTORY_LOCK}): the checks before an insert (a taken
 * email or number), the version bump, the journal rows and the digest in
 * meta then see no other writer, from this node or another, and no update
 * is lost. Writers of the directory are few (registrations, deletions,
 * seeding); lookups never take it.
 *
 * Seeding ({@link PgStore.bulkInsert}) uses COPY (pg-copy-streams): per
 * chunk, the account ids are drawn from the identity's sequence in one
 * query, then accounts and numbers are each one COPY, in one transaction.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { CapabilityMask } from '../../shared/capabilities.ts';
import type { DirectoryChange, Requester } from '../../shared/design.ts';
import { e164ToKey, type E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { LOG_TABLES } from '../../shared/designs/index.ts';
import { PG_SCHEMA } from '../../disk/schema.ts';
import { DirectoryDigest } from '../directory.ts';
import type { DirectoryStore } from '../directory-store.ts';
import { hashToken, newToken, type DirectoryUpdate, type JournaledChange, type NewAccount } from '../store.ts';
import { createPool, inTransaction, pgCode, pgGuarded } from './connect.ts';

/** pg_advisory_xact_lock keys: one for the schema, one for directory writes (arbitrary, fixed). */
const SCHEMA_LOCK = 0x7063_6400;
const DIRECTORY_LOCK = 0x7063_6401;

/** Keyset pages of {@link PgStore.directory}. */
const DIRECTORY_PAGE = 50_000;

/** One field of COPY's text format: backslash, tab, newline and carriage return escaped; null as \N. */
function copyField(v: string | number | null): string {
  if (v === null) return '\\N';
  return typeof v === 'number' ? String(v) : v.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

/** COPY ... FROM STDIN of `rows` on `client` (text format). */
async function copyRows(client: pg.PoolClient, sql: string, rows: readonly (readonly (string | number | null)[])[]): Promise<void> {
  const lines = rows.map((r) => r.map(copyField).join('\t') + '\n');
  // Chunks of about 64 KB: one string per row would make the stream's buffering the cost.
  const chunks: string[] = [];
  for (let i = 0; i < lines.length; i += 1024) chunks.push(lines.slice(i, i + 1024).join(''));
  await pipeline(Readable.from(chunks), client.query(copyFrom(sql)));
}

type Queryable = pg.Pool | pg.PoolClient;

export class PgStore implements DirectoryStore {
  readonly kind = 'postgres' as const;
  private journal = false;
  private readonly journalHolds = new Map<string, number>();

  private constructor(readonly pool: pg.Pool) {}

  /** Connects to `url` and creates or completes the schema. */
  static async open(url: string, options: { logger?: { error(obj: object, msg: string): void }; max?: number } = {}): Promise<PgStore> {
    const pool = createPool(url, options);
    try {
      await inTransaction(pool, async (c) => {
        await c.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await c.query(PG_SCHEMA);
      });
    } catch (e) {
      await pool.end().catch(() => {});
      throw e;
    }
    return new PgStore(pool);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  private async one<R extends pg.QueryResultRow>(sql: string, params: unknown[] = [], on: Queryable = this.pool): Promise<R | undefined> {
    return (await pgGuarded(() => on.query<R>(sql, params))).rows[0];
  }

  // ------------------------------------------------------------- metadata

  async getMeta(key: string, on: Queryable = this.pool): Promise<string | undefined> {
    return (await this.one<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key], on))?.value;
  }

  async setMeta(key: string, value: string, on: Queryable = this.pool): Promise<void> {
    await pgGuarded(() => on.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [key, value]));
  }

  async directoryVersion(on: Queryable = this.pool): Promise<number> {
    return Number((await this.getMeta('directory_version', on)) ?? '0');
  }

  async directoryDigest(on: Queryable = this.pool): Promise<DirectoryDigest | undefined> {
    const hex = await this.getMeta('directory_digest', on);
    return hex ? DirectoryDigest.fromBytes(Buffer.from(hex, 'hex')) : undefined;
  }

  async setDirectoryDigest(digest: DirectoryDigest, on: Queryable = this.pool): Promise<void> {
    await this.setMeta('directory_digest', Buffer.from(digest.bytes()).toString('hex'), on);
  }

  async directoryWritesAcknowledged(): Promise<boolean> {
    const row = await this.one<{ w: string | null; s: string | null }>(
      "SELECT (SELECT value FROM meta WHERE key = 'directory_writes') AS w, (SELECT value FROM meta WHERE key = 'directory_writes_seen') AS s",
    );
    return (row?.w ?? '0') === (row?.s ?? '0');
  }

  async acknowledgeDirectoryWrites(on: Queryable = this.pool): Promise<void> {
    await pgGuarded(() =>
      on.query(
        "INSERT INTO meta (key, value) VALUES ('directory_writes_seen', coalesce((SELECT value FROM meta WHERE key = 'directory_writes'), '0')) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ),
    );
  }

  /** Inside a directory transaction: the digest updated by `f` when the store keeps one. */
  private async updateDigest(c: pg.PoolClient, f: (d: DirectoryDigest) => void): Promise<void> {
    const d = await this.directoryDigest(c);
    if (!d) return;
    f(d);
    await this.setDirectoryDigest(d, c);
  }

  /** Inside a directory transaction: one version per change, journaled when the journal is on, the digest and the acknowledgement. */
  private async recordChanges(c: pg.PoolClient, changes: readonly DirectoryChange[], previous: readonly CapabilityMask[]): Promise<number> {
    if (changes.length === 0) return this.directoryVersion(c);
    const version = await this.bumpVersion(c, changes.length);
    if (this.journal) {
      const first = version - changes.length + 1;
      await c.query('INSERT INTO directory_changes (version, number, mask, previous) SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::int[])', [
        changes.map((_, i) => first + i),
        changes.map((ch) => ch.number),
        changes.map((ch) => ch.mask),
        changes.map((_, i) => previous[i] ?? 0),
      ]);
    }
    await this.acknowledgeDirectoryWrites(c);
    await this.updateDigest(c, (d) =>
      changes.forEach((ch, i) => {
        const key = e164ToKey(ch.number);
        d.update(key, previous[i] ?? 0, -1);
        d.update(key, ch.mask, 1);
      }),
    );
    return version;
  }

  private async bumpVersion(c: pg.PoolClient, by: number): Promise<number> {
    const row = await c.query<{ value: string }>(
      "INSERT INTO meta (key, value) VALUES ('directory_version', $1::text) ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + $1::bigint)::text RETURNING value",
      [by],
    );
    return Number(row.rows[0]!.value);
  }

  /** A transaction holding the directory lock (module header). */
  private directoryTransaction<T>(f: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [DIRECTORY_LOCK]);
      return f(c);
    });
  }

  enableDirectoryJournal(): void {
    this.journal = true;
  }

  get directoryJournal(): boolean {
    return this.journal;
  }

  async directoryChangesSince(version: number): Promise<JournaledChange[] | undefined> {
    const current = await this.directoryVersion();
    if (!Number.isSafeInteger(version) || version < 0 || version > current) return undefined;
    if (version === current) return [];
    const { rows } = await pgGuarded(() =>
      this.pool.query<{ version: number; number: string; mask: number; previous: number | null }>(
        'SELECT version, number, mask, previous FROM directory_changes WHERE version > $1 AND version <= $2 ORDER BY version',
        [version, current],
      ),
    );
    // Versions are unique integers in (version, current]: as many rows as versions means none is missing.
    if (rows.length !== current - version) return undefined;
    return rows.map((r) => ({ version: r.version, number: r.number as E164, mask: r.mask, previous: r.previous ?? undefined }));
  }

  async pruneDirectoryChanges(version: number, holder = 'caches'): Promise<number> {
    this.holdDirectoryChanges(version, holder);
    const r = await pgGuarded(() => this.pool.query('DELETE FROM directory_changes WHERE version <= $1', [Math.min(...this.journalHolds.values())]));
    return r.rowCount ?? 0;
  }

  holdDirectoryChanges(version: number, holder: string): void {
    this.journalHolds.set(holder, Math.min(version, Number.MAX_SAFE_INTEGER));
  }

  // ------------------------------------------------------------- accounts

  async authenticate(token: string): Promise<Requester | undefined> {
    const row = await this.one<{ id: number; email: string }>('SELECT id, email FROM accounts WHERE token_hash = $1', [hashToken(token)]);
    return row ? { accountId: row.id, email: row.email } : undefined;
  }

  async createAccount(account: NewAccount, now: number): Promise<{ accountId: number; token: string } & DirectoryUpdate> {
    const token = newToken();
    const seen = new Set<string>();
    for (const n of account.numbers) {
      if (seen.has(n)) throw new PcdError(ErrorCode.InvalidField, `numbers: ${n} is listed twice`);
      seen.add(n);
    }
    try {
      const done = await this.directoryTransaction(async (c) => {
        if ((await c.query('SELECT 1 FROM accounts WHERE email = $1', [account.email])).rowCount) {
          throw new PcdError(ErrorCode.Conflict, `an account with email '${account.email}' exists already`);
        }
        const taken = await c.query<{ number: string }>('SELECT number FROM numbers WHERE number = ANY($1::text[])', [account.numbers]);
        const first = account.numbers.find((n) => taken.rows.some((r) => r.number === n));
        if (first) throw new PcdError(ErrorCode.Conflict, `number ${first} is registered to another account`);
        const { rows } = await c.query<{ id: number }>(
          'INSERT INTO accounts (email, token_hash, capabilities, created_at) VALUES ($1, $2, $3, $4) RETURNING id',
          [account.email, hashToken(token), account.mask, now],
        );
        const id = rows[0]!.id;
        if (account.numbers.length) await c.query('INSERT INTO numbers (number, account_id) SELECT unnest($1::text[]), $2', [account.numbers, id]);
        const changes = account.numbers.map((number) => ({ number, mask: account.mask }));
        return { accountId: id, changes, version: await this.recordChanges(c, changes, changes.map(() => 0)) };
      });
      return { ...done, token };
    } catch (e) {
      // A writer outside pcd (no directory lock) that took the email or a number between the check and the insert.
      if (pgCode(e) === '23505') throw new PcdError(ErrorCode.Conflict, 'the email or a number was taken by another account meanwhile', { cause: e });
      throw e;
    }
  }

  async deleteAccount(accountId: number): Promise<DirectoryUpdate | undefined> {
    return this.directoryTransaction(async (c) => {
      const numbers = await c.query<{ number: string; capabilities: number }>(
        'SELECT n.number, a.capabilities FROM numbers n JOIN accounts a ON a.id = n.account_id WHERE n.account_id = $1',
        [accountId],
      );
      const res = await c.query('DELETE FROM accounts WHERE id = $1', [accountId]);
      if (!res.rowCount) return undefined;
      const changes = numbers.rows.map((r) => ({ number: r.number as E164, mask: 0 }));
      return { changes, version: await this.recordChanges(c, changes, numbers.rows.map((r) => r.capabilities)) };
    });
  }

  async issueToken(accountId: number): Promise<string> {
    const token = newToken();
    await pgGuarded(() => this.pool.query('UPDATE accounts SET token_hash = $1 WHERE id = $2', [hashToken(token), accountId]));
    return token;
  }

  async accountByEmail(email: string): Promise<Requester | undefined> {
    const row = await this.one<{ id: number; email: string }>('SELECT id, email FROM accounts WHERE email = $1', [email]);
    return row ? { accountId: row.id, email: row.email } : undefined;
  }

  async accountById(accountId: number): Promise<Requester | undefined> {
    const row = await this.one<{ id: number; email: string }>('SELECT id, email FROM accounts WHERE id = $1', [accountId]);
    return row ? { accountId: row.id, email: row.email } : undefined;
  }

  // ------------------------------------------------------------- directory

  async numberRegistered(number: string): Promise<boolean> {
    return (await this.one('SELECT 1 AS one FROM numbers WHERE number = $1', [number])) !== undefined;
  }

  async sampleNumber(): Promise<E164 | undefined> {
    return (await this.one<{ number: string }>('SELECT number FROM numbers ORDER BY account_id LIMIT 1'))?.number as E164 | undefined;
  }

  async directorySize(): Promise<number> {
    return (await this.one<{ n: number }>('SELECT count(*) AS n FROM numbers'))!.n;
  }

  /** Keyset pages in number order, each its own query (a page sees the directory as of its query). */
  async *directory(): AsyncIterable<DirectoryChange> {
    let after = '';
    for (;;) {
      const { rows } = await pgGuarded(() =>
        this.pool.query<{ number: string; capabilities: number }>(
          'SELECT n.number, a.capabilities FROM numbers n JOIN accounts a ON a.id = n.account_id WHERE n.number > $1 AND a.capabilities != 0 ORDER BY n.number LIMIT $2',
          [after, DIRECTORY_PAGE],
        ),
      );
      for (const r of rows) yield { number: r.number as E164, mask: r.capabilities };
      if (rows.length < DIRECTORY_PAGE) return;
      after = rows.at(-1)!.number;
    }
  }

  async bulkInsert(accounts: Iterable<NewAccount>, now: number, onProgress?: (numbers: number) => void, chunk = 100_000): Promise<number> {
    let count = 0;
    let batch: NewAccount[] = [];
    const write = (items: NewAccount[]) =>
      this.directoryTransaction(async (c) => {
        const ids = (
          await c.query<{ id: number }>("SELECT nextval(pg_get_serial_sequence('accounts', 'id')) AS id FROM generate_series(1, $1)", [items.length])
        ).rows.map((r) => r.id);
        await copyRows(
          c,
          'COPY accounts (id, email, token_hash, capabilities, created_at) FROM STDIN',
          items.map((a, i) => [ids[i]!, a.email, null, a.mask, now]),
        );
        await copyRows(
          c,
          'COPY numbers (number, account_id) FROM STDIN',
          items.flatMap((a, i) => a.numbers.map((n) => [n, ids[i]!])),
        );
        // Each number is new (the COPY fails on one registered already): it only adds to the digest.
        await this.updateDigest(c, (d) => {
          for (const a of items) for (const n of a.numbers) d.update(e164ToKey(n), a.mask, 1);
        });
        await this.acknowledgeDirectoryWrites(c);
        await this.bumpVersion(c, 1);
      });
    for (const a of accounts) {
      batch.push(a);
      count += a.numbers.length;
      if (batch.length >= chunk) {
        await write(batch);
        batch = [];
        onProgress?.(count);
      }
    }
    if (batch.length) await write(batch);
    onProgress?.(count);
    return count;
  }

  // ------------------------------------------------------------- logs

  async purgeLogs(cutoff: number): Promise<number> {
    return inTransaction(this.pool, async (c) => {
      let n = 0;
      for (const { name } of LOG_TABLES) n += (await c.query(`DELETE FROM ${name} WHERE ts < $1`, [cutoff])).rowCount ?? 0;
      return n;
    });
  }
}
