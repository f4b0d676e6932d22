/**
 * The accounts and directory store in Postgres (server/directory-store.ts
 * has the interface and the guarantees; test/store.test.ts checks them on
 * both stores). The schema is disk/sql.ts PG_SCHEMA, generated from the
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
 *
 * ## Several nodes: the journal, its holders, and following it
 *
 * - The journal is always on: any node may be following it, so every
 *   change is journaled (`enableDirectoryJournal` is a no-op). Seeding is
 *   not journaled, as in SQLite: a follower sees a gap and rescans.
 * - Holds are rows of `directory_journal_holds`, one per (node, holder),
 *   with the time of the last refresh, so that a node cannot prune rows
 *   another node has not replayed yet. A hold not refreshed for
 *   {@link HOLD_TTL_MS} (a node that died) no longer counts; with no hold
 *   at all, a prune deletes up to the version it was given.
 * - Every directory transaction sends `NOTIFY pcd_directory, '<version>'`,
 *   delivered at commit. {@link PgStore.follow} LISTENs on its own
 *   connection and reads the journal after each notification, and polls
 *   as the fallback (a lost connection, a proxy that drops notifications),
 *   so another node's registration reaches it within the notification's
 *   delay, or the poll interval at worst.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import os from 'node:os';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { CapabilityMask } from '../../shared/capabilities.ts';
import type { DirectoryChange, Requester } from '../../shared/design.ts';
import { e164ToKey, type E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { LOG_TABLES } from '../../shared/designs/index.ts';
import { PG_SCHEMA } from '../../disk/sql.ts';
import { DirectoryDigest } from '../directory-digest.ts';
import type { DirectoryStore } from '../directory-store.ts';
import { hashToken, newToken, type DirectoryUpdate, type JournaledChange, type NewAccount } from '../store.ts';
import { createPool, inTransaction, pgCode, pgGuarded } from './connect.ts';
import { purgeLogBatches } from './logs.ts';

/** pg_advisory_xact_lock keys: one for the schema, one for directory writes (arbitrary, fixed). */
const SCHEMA_LOCK = 0x7063_6400;
const DIRECTORY_LOCK = 0x7063_6401;

/** The channel every directory transaction notifies, with the version after it. */
export const DIRECTORY_CHANNEL = 'pcd_directory';
/** A journal hold not refreshed for this long (its node died or left) no longer keeps rows. */
export const HOLD_TTL_MS = 24 * 3600_000;
/** How often a follower reads the journal without a notification (the fallback). */
export const DEFAULT_FOLLOW_POLL_MS = 1000;

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

/** What a follower is told: the journaled changes up to `version`, or a gap (seeding, a pruned journal) after which only a rescan is right. */
export type FollowEvent = { kind: 'changes'; changes: JournaledChange[]; version: number } | { kind: 'gap'; version: number };

/** A running {@link PgStore.follow}. */
export interface Follower {
  /** The directory version the follower has delivered up to. */
  readonly version: number;
  /** Whether its LISTEN connection is up (polling goes on either way). */
  readonly listening: boolean;
  /** Reads the journal now (as a notification would). */
  poll(): Promise<void>;
  close(): Promise<void>;
}

interface StoreLogger {
  error(obj: object, msg: string): void;
  warn?(obj: object, msg: string): void;
}

/** How long a node remembers a token's requester (PgStore.authenticate). */
export const AUTH_CACHE_MS = 5000;
/** Tokens remembered at most (past it the memory starts over). */
const AUTH_CACHE_MAX = 100_000;

export class PgStore implements DirectoryStore {
  readonly kind = 'postgres' as const;
  private readonly authCache = new Map<string, { requester: Requester; at: number }>();

  private constructor(
    readonly pool: pg.Pool,
    /** The store's URL, password included: never logged (server/pg/connect.ts redactUrl). */
    readonly url: string,
    /** This process's name in `directory_journal_holds` (several nodes share the table). */
    readonly node: string,
    private readonly logger: StoreLogger | undefined,
  ) {}

  /** Connects to `url` and creates or completes the schema. `node` names this process's journal holds (default host:pid; a server passes the name it keeps in its data folder). */
  static async open(url: string, options: { logger?: StoreLogger; max?: number; node?: string } = {}): Promise<PgStore> {
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
    return new PgStore(pool, url, options.node ?? `${os.hostname()}:${process.pid}`, options.logger);
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
    {
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

  /** Inside a directory transaction: the version after `by` more changes; followers are notified at commit. */
  private async bumpVersion(c: pg.PoolClient, by: number): Promise<number> {
    const row = await c.query<{ value: string }>(
      "INSERT INTO meta (key, value) VALUES ('directory_version', $1::text) ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + $1::bigint)::text RETURNING value",
      [by],
    );
    const version = Number(row.rows[0]!.value);
    await c.query('SELECT pg_notify($1, $2)', [DIRECTORY_CHANNEL, String(version)]);
    return version;
  }

  /** A transaction holding the directory lock (module header). */
  private directoryTransaction<T>(f: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [DIRECTORY_LOCK]);
      return f(c);
    });
  }

  /** Always on (module header): a no-op. */
  enableDirectoryJournal(): void {}

  get directoryJournal(): boolean {
    return true;
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

  /**
   * Holds rows above `version` for (this node, `holder`), then deletes the
   * rows no live hold of any node needs (module header). Returns rows deleted.
   */
  async pruneDirectoryChanges(version: number, holder = 'caches'): Promise<number> {
    return inTransaction(this.pool, async (c) => {
      await this.hold(c, version, holder);
      const { rows } = await c.query<{ m: number | null }>('SELECT min(version) AS m FROM directory_journal_holds WHERE at >= $1', [Date.now() - HOLD_TTL_MS]);
      const upTo = rows[0]?.m ?? version;
      await c.query('DELETE FROM directory_journal_holds WHERE at < $1', [Date.now() - HOLD_TTL_MS]);
      return (await c.query('DELETE FROM directory_changes WHERE version <= $1', [upTo])).rowCount ?? 0;
    });
  }

  /** Records that (this node, `holder`) needs the rows above `version`, deleting nothing. */
  async holdDirectoryChanges(version: number, holder: string): Promise<void> {
    await pgGuarded(() => this.hold(this.pool, version, holder));
  }

  private async hold(on: Queryable, version: number, holder: string): Promise<void> {
    await on.query(
      'INSERT INTO directory_journal_holds (node, holder, version, at) VALUES ($1, $2, $3, $4) ON CONFLICT (node, holder) DO UPDATE SET version = excluded.version, at = excluded.at',
      [this.node, holder, Math.min(version, Number.MAX_SAFE_INTEGER), Date.now()],
    );
  }

  /**
   * Follows the directory from `version`: `onEvent` gets the journaled
   * changes of every node, in version order, one call at a time, or a gap.
   * Woken by NOTIFY on its own connection (reconnected with backoff when it
   * drops), and by a poll every `pollMs` whatever happens to it. The
   * follower holds the journal at what it has delivered (`holder`, default
   * `follower`), so no node prunes rows before it has read them.
   */
  async follow(version: number, onEvent: (e: FollowEvent) => void | Promise<void>, options: { pollMs?: number; holder?: string } = {}): Promise<Follower> {
    const pollMs = options.pollMs ?? DEFAULT_FOLLOW_POLL_MS;
    const holder = options.holder ?? 'follower';
    let delivered = version;
    let listener: pg.Client | undefined;
    let closed = false;
    let running: Promise<void> | undefined;
    let again = false;
    let retryMs = 100;
    await this.holdDirectoryChanges(delivered, holder);

    const read = async (): Promise<void> => {
      const current = await this.directoryVersion();
      if (current === delivered) return;
      const changes = await this.directoryChangesSince(delivered);
      if (changes === undefined) {
        delivered = current;
        await onEvent({ kind: 'gap', version: current });
      } else if (changes.length) {
        delivered = changes.at(-1)!.version;
        await onEvent({ kind: 'changes', changes, version: delivered });
      }
      await this.holdDirectoryChanges(delivered, holder);
    };
    // One read at a time; a wake-up during a read makes one more after it.
    const poll = (): Promise<void> => {
      if (closed) return Promise.resolve();
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        try {
          do {
            again = false;
            await read();
          } while (again && !closed);
        } catch (e) {
          this.logger?.error({ err: (e as Error).message }, 'reading the directory journal failed; the next poll tries again');
        } finally {
          running = undefined;
        }
      })();
      return running;
    };

    const listen = async (): Promise<void> => {
      if (closed) return;
      const client = new pg.Client({ connectionString: this.url, application_name: 'pcd follower' });
      // One retry per connection, whether it ends after listening or never connects ('end' may not come then).
      let retried = false;
      const retry = (): void => {
        if (listener === client) listener = undefined;
        if (retried || closed) return;
        retried = true;
        setTimeout(() => void listen(), retryMs).unref();
        retryMs = Math.min(retryMs * 2, 30_000);
      };
      client.on('error', () => {}); // 'end' follows
      client.on('notification', () => void poll());
      client.on('end', retry);
      try {
        await client.connect();
        await client.query(`LISTEN ${DIRECTORY_CHANNEL}`);
        listener = client;
        retryMs = 100;
        void poll(); // changes between the last read and the LISTEN
      } catch (e) {
        this.logger?.warn?.({ err: (e as Error).message }, 'cannot LISTEN for directory changes; polling meanwhile');
        await client.end().catch(() => {});
        retry();
      }
    };
    await listen();
    const timer = setInterval(() => void poll(), pollMs);
    timer.unref();
    await poll();

    return {
      get version() {
        return delivered;
      },
      get listening() {
        return listener !== undefined;
      },
      poll,
      async close() {
        closed = true;
        clearInterval(timer);
        await running;
        const l = listener;
        listener = undefined;
        await l?.end().catch(() => {});
      },
    };
  }

  // ------------------------------------------------------------- accounts

  /**
   * The requester of a bearer token. Every request of a requester asks, so
   * known tokens are remembered for {@link AUTH_CACHE_MS} (a query costs
   * about 0.3 ms against a few µs): a token revoked or an account deleted
   * through another node still works here for at most that long; through
   * this node it stops at once. Unknown tokens are not remembered.
   */
  async authenticate(token: string): Promise<Requester | undefined> {
    const hash = hashToken(token);
    const key = hash.toString('base64');
    const hit = this.authCache.get(key);
    if (hit && Date.now() - hit.at < AUTH_CACHE_MS) return hit.requester;
    const row = await this.one<{ id: number; email: string }>('SELECT id, email FROM accounts WHERE token_hash = $1', [hash]);
    if (!row) {
      this.authCache.delete(key);
      return undefined;
    }
    if (this.authCache.size >= AUTH_CACHE_MAX) this.authCache.clear();
    const requester = { accountId: row.id, email: row.email };
    this.authCache.set(key, { requester, at: Date.now() });
    return requester;
  }

  /** Forgets the remembered tokens of `accountId` (its token changed, or it was deleted, through this node). */
  private forgetAccount(accountId: number): void {
    for (const [k, v] of this.authCache) if (v.requester.accountId === accountId) this.authCache.delete(k);
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
    this.forgetAccount(accountId);
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
    this.forgetAccount(accountId);
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

  /** One keyset page of reachable numbers after `after`, in number order. */
  private async directoryPage(on: Queryable, after: string): Promise<DirectoryChange[]> {
    const { rows } = await on.query<{ number: string; capabilities: number }>(
      'SELECT n.number, a.capabilities FROM numbers n JOIN accounts a ON a.id = n.account_id WHERE n.number > $1 AND a.capabilities != 0 ORDER BY n.number LIMIT $2',
      [after, DIRECTORY_PAGE],
    );
    return rows.map((r) => ({ number: r.number as E164, mask: r.capabilities }));
  }

  /** Keyset pages in number order, each its own query (a page sees the directory as of its query; {@link scanDirectory} for one moment). */
  async *directory(): AsyncIterable<DirectoryChange> {
    for (let after = ''; ; ) {
      const page = await pgGuarded(() => this.directoryPage(this.pool, after));
      yield* page;
      if (page.length < DIRECTORY_PAGE) return;
      after = page.at(-1)!.number;
    }
  }

  /**
   * One moment of the directory (a REPEATABLE READ transaction: the version
   * and the rows agree while other nodes write), streamed by COPY TO STDOUT:
   * a keyset scan joined page by page ran at about 100,000 numbers/s at
   * 10^7, too slow for a node joining a large directory.
   */
  async scanDirectory(onEntry: (change: DirectoryChange) => void): Promise<number> {
    return inTransaction(
      this.pool,
      async (c) => {
        const version = await this.directoryVersion(c);
        let carry = '';
        const take = (text: string): void => {
          const lines = (carry + text).split('\n');
          carry = lines.pop()!;
          for (const line of lines) {
            const tab = line.indexOf('\t');
            onEntry({ number: line.slice(0, tab) as E164, mask: Number(line.slice(tab + 1)) });
          }
        };
        const stream = c.query(copyTo('COPY (SELECT n.number, a.capabilities FROM numbers n JOIN accounts a ON a.id = n.account_id WHERE a.capabilities != 0) TO STDOUT'));
        stream.setEncoding('utf8');
        for await (const chunk of stream) take(chunk as string);
        if (carry) throw new Error('the directory scan ended inside a row');
        return version;
      },
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    );
  }

  async recordDirectoryScan(digest: DirectoryDigest, version: number): Promise<boolean> {
    return this.directoryTransaction(async (c) => {
      if ((await this.directoryVersion(c)) !== version) return false;
      await this.setDirectoryDigest(digest, c);
      await this.acknowledgeDirectoryWrites(c);
      return true;
    });
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
      await purgeLogBatches(c, cutoff);
      return n;
    });
  }
}
