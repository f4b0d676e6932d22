/**
 * The spent-token store (step 6 of server/tokens/service.ts): one row per
 * spent token, `(key_id, nonce_hash)` under a unique key, deleted when the
 * request it paid for is refused (unspend) or with its key (purge).
 *
 * Behind an async interface so the store can be the shared Postgres of
 * several server nodes: the unique key is the database's, so a token spent
 * on one node is refused on every other, and of concurrent spends of one
 * token exactly one succeeds (the others see the first's row, or wait for
 * its transaction and then see it).
 *
 * - {@link SqliteSpentTokens}: better-sqlite3 statements on the server's
 *   store; the work is done synchronously and the promises are already
 *   settled ({@link SqliteSpentTokens.spendNow} is the bare insert, as the
 *   bench times it).
 * - {@link PgSpentTokens}: a `pg.Pool` (server/pg/store.ts PgStore.pool);
 *   `INSERT … ON CONFLICT DO NOTHING`, whose row count says whether the
 *   token was spent before. A store condition (read-only, unreachable, full)
 *   is the 503 `unavailable` PcdError (server/pg/connect.ts pgGuarded).
 */
import type Database from 'better-sqlite3';
import type pg from 'pg';
import { SPENT_TOKENS_TABLE } from '../../shared/designs/blinded.ts';
import { pgGuarded } from '../pg/connect.ts';
import type { TokenKey } from './keys.ts';

/** What the store needs of a checked token (server/tokens/service.ts CheckedToken): its key's id and SHA-256(key id || nonce). */
export interface SpentToken {
  readonly key: Pick<TokenKey, 'keyId'>;
  readonly nonceHash: Uint8Array;
}

export interface SpentTokenStore {
  /** Records a spend; false when the token was spent before (the unique key refused it). Other store errors reject (503 for a store condition). */
  spend(t: SpentToken): Promise<boolean>;
  /** Gives a spent token back (the request it paid for was refused). */
  unspend(t: SpentToken): Promise<void>;
  /** Deletes the spent tokens of a retired key; resolves to how many. */
  purge(keyId: Uint8Array): Promise<number>;
  /** Spent tokens held, of every key. */
  size(): Promise<number>;
}

/** The spent tokens in the SQLite store's `spent_tokens` (server/store.ts). */
export class SqliteSpentTokens implements SpentTokenStore {
  private readonly stmts;

  constructor(db: Database.Database) {
    this.stmts = {
      insert: db.prepare<[Uint8Array, Uint8Array]>(`INSERT INTO ${SPENT_TOKENS_TABLE} (nonce_hash, key_id) VALUES (?, ?)`),
      remove: db.prepare<[Uint8Array, Uint8Array]>(`DELETE FROM ${SPENT_TOKENS_TABLE} WHERE key_id = ? AND nonce_hash = ?`),
      purge: db.prepare<[Uint8Array]>(`DELETE FROM ${SPENT_TOKENS_TABLE} WHERE key_id = ?`),
      count: db.prepare<[], { n: number }>(`SELECT count(*) AS n FROM ${SPENT_TOKENS_TABLE}`),
    };
  }

  /** The spend, synchronously: false on a replay, other store errors thrown. */
  spendNow(t: SpentToken): boolean {
    try {
      this.stmts.insert.run(t.nonceHash, t.key.keyId);
      return true;
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return false;
      throw e;
    }
  }

  // async: the work is done before the first await, and a thrown error is a rejection.
  async spend(t: SpentToken): Promise<boolean> {
    return this.spendNow(t);
  }

  async unspend(t: SpentToken): Promise<void> {
    this.stmts.remove.run(t.key.keyId, t.nonceHash);
  }

  async purge(keyId: Uint8Array): Promise<number> {
    return this.stmts.purge.run(keyId).changes;
  }

  async size(): Promise<number> {
    return this.stmts.count.get()?.n ?? 0;
  }
}

/** A Buffer over the same bytes (node-postgres sends a Buffer as BYTEA). */
const bytea = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/**
 * The spent tokens in the shared Postgres store's `spent_tokens` (disk/sql.ts PG_SCHEMA).
 *
 * A spend is one INSERT, a named (prepared) statement, on every request
 * paid with a token. Given a pool made with `asyncCommit` (server/pg/connect.ts;
 * the blinded design's own small pool, server/designs/blinded.ts), its
 * commit does not wait for the WAL flush, as SQLite's WAL with synchronous =
 * NORMAL does not: a crash of Postgres (or of its machine) may lose the
 * spends of the last moments (Postgres flushes the WAL every 200 ms by
 * default, at most three times that is lost), and those tokens could each
 * be spent once more. A replay that is answered is refused as ever.
 */
export class PgSpentTokens implements SpentTokenStore {
  constructor(private readonly pool: pg.Pool) {}

  async spend(t: SpentToken): Promise<boolean> {
    const r = await pgGuarded(() =>
      this.pool.query({
        name: 'pcd-spend-token',
        text: `INSERT INTO ${SPENT_TOKENS_TABLE} (nonce_hash, key_id) VALUES ($1, $2) ON CONFLICT (key_id, nonce_hash) DO NOTHING`,
        values: [bytea(t.nonceHash), bytea(t.key.keyId)],
      }),
    );
    return r.rowCount === 1;
  }

  async unspend(t: SpentToken): Promise<void> {
    await pgGuarded(() => this.pool.query(`DELETE FROM ${SPENT_TOKENS_TABLE} WHERE key_id = $1 AND nonce_hash = $2`, [bytea(t.key.keyId), bytea(t.nonceHash)]));
  }

  async purge(keyId: Uint8Array): Promise<number> {
    const r = await pgGuarded(() => this.pool.query(`DELETE FROM ${SPENT_TOKENS_TABLE} WHERE key_id = $1`, [bytea(keyId)]));
    return r.rowCount ?? 0;
  }

  async size(): Promise<number> {
    // count(*) is a BIGINT: a number with the store's pool (server/pg/connect.ts), a string with pg's default parser.
    const r = await pgGuarded(() => this.pool.query<{ n: number | string }>(`SELECT count(*) AS n FROM ${SPENT_TOKENS_TABLE}`));
    return Number(r.rows[0]?.n ?? 0);
  }
}
