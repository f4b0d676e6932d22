/**
 * The database schema (disk/files.ts DB_FILE): the tables every server has
 * (meta, accounts, numbers, the directory journal, epochs) and each design's
 * log tables, generated from their declarations (shared/designs/<name>.ts,
 * shared/logs.ts). The server creates it (server/store.ts); the audit and
 * the scan read databases made by it.
 */
import { LOG_TABLES } from '../shared/designs/index.ts';
import type { ColumnType, CountLogTable, LogTable } from '../shared/logs.ts';

/** The accounts table: AUTOINCREMENT, so an id is never given to a second account. */
export function accountsTable(name: string): string {
  return `CREATE TABLE ${name} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  email TEXT NOT NULL UNIQUE,
  token_hash BLOB UNIQUE,
  capabilities INTEGER NOT NULL,
  created_at INTEGER NOT NULL
)`;
}

/**
 * A log table's DDL under `name` (default its own; a migration builds a copy
 * under another name). `rows`: an integer id, then the declared columns, then
 * its indexes. `counts`: keyed by (ts, key...), WITHOUT ROWID, so that
 * purging by ts uses the key.
 */
export function logTableDdl(table: LogTable, options: { name?: string; ifNotExists?: boolean } = {}): string {
  const name = options.name ?? table.name;
  const ine = options.ifNotExists === false ? '' : 'IF NOT EXISTS ';
  const cols = table.columns.map((c) => `${c.name} ${c.type} NOT NULL`);
  if (table.kind === 'counts') {
    return `CREATE TABLE ${ine}${name} (\n  ${cols.join(', ')},\n  PRIMARY KEY (${['ts', ...table.key].join(', ')})\n) WITHOUT ROWID;`;
  }
  const indexes = table.indexes.map((ix) => `CREATE INDEX ${ine}${name}_${ix[0]} ON ${name}(${ix.join(', ')});`);
  return [`CREATE TABLE ${ine}${name} (\n  id INTEGER PRIMARY KEY, ${cols.join(', ')}\n);`, ...indexes].join('\n');
}

/** The bucket log's copy for the migration from per-fetch rows (server/store.ts). */
export function countsTableDdl(table: CountLogTable, name: string): string {
  return logTableDdl(table, { name, ifNotExists: false });
}

/** The spent-token table under `name` (a migration builds it under another name first). */
export function spentTokensTable(name: string): string {
  return `CREATE TABLE ${name} (nonce_hash BLOB NOT NULL, key_id BLOB NOT NULL, PRIMARY KEY (key_id, nonce_hash)) WITHOUT ROWID`;
}

const COMMON = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
${accountsTable('IF NOT EXISTS accounts')};
CREATE TABLE IF NOT EXISTS numbers (
  number TEXT PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS numbers_account ON numbers(account_id);

-- Every write that can change the directory, by anyone (the server, or an edit of the file with sqlite3), counts
-- in meta.directory_writes; the store acknowledges its own in the same transaction (directory_writes_seen). A start
-- that finds them apart does not trust the directory snapshot and scans (server/directory-snapshot.ts).
${['INSERT ON numbers', 'DELETE ON numbers', 'UPDATE ON numbers', 'UPDATE OF capabilities ON accounts']
  .map(
    (on, i) => `CREATE TRIGGER IF NOT EXISTS directory_writes_${i} AFTER ${on} BEGIN
  INSERT INTO meta (key, value) VALUES ('directory_writes', '1')
    ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT);
END;`,
  )
  .join('\n')}

-- The directory journal: one row per changed number (mask 0: removed), its
-- version the directory version the change made, and the number's mask
-- before it (previous; NULL in rows of earlier versions), which lets a
-- start rewind the directory's digest to a cache's version
-- (server/blinded/recovery.ts). Pruned once every epoch cache reflects it
-- (server/blinded/epochs.ts).
CREATE TABLE IF NOT EXISTS directory_changes (
  version INTEGER PRIMARY KEY,
  number TEXT NOT NULL,
  mask INTEGER NOT NULL,
  previous INTEGER
);

-- Rate-limit buckets per requester (server/ratelimit.ts): account id, the allowance at the start of a day, the day; nothing else.
CREATE TABLE IF NOT EXISTS rate_limits (account_id INTEGER PRIMARY KEY, tokens REAL NOT NULL, at INTEGER NOT NULL);

-- Spent Privacy Pass tokens (server/tokens/service.ts): SHA-256 of each spent token's key id and nonce, and
-- the key id, no time; WITHOUT ROWID so that neither the rowid nor the page order follows the order of spending.
-- Rows go when their token key retires with its epoch: keyed by (key_id, nonce_hash), one B-tree that both
-- refuses a second spend and makes the purge a range delete (a second index on key_id doubled a spend's cost).
${spentTokensTable('IF NOT EXISTS spent_tokens')};

CREATE TABLE IF NOT EXISTS epochs (
  epoch INTEGER PRIMARY KEY,
  public_key BLOB NOT NULL,
  mode TEXT NOT NULL,
  bucket_bits INTEGER NOT NULL,
  tag_bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  retires_at INTEGER,
  destroyed_at INTEGER
);
`;

/** The whole schema: idempotent (IF NOT EXISTS), run on every open. */
export const SCHEMA = [COMMON, ...LOG_TABLES.map((t) => `-- ${t.design}: ${t.description}\n${logTableDdl(t)}`)].join('\n');

// ------------------------------------------------------------- Postgres

/**
 * The same schema for a Postgres store (server/pg/), from the same
 * declarations. INTEGER is BIGINT (times are Unix ms), BLOB is BYTEA.
 * - accounts: an identity column, whose sequence never goes back (not even
 *   on a rolled-back insert), so an id is never given to a second account;
 *   BY DEFAULT, so that the bulk load can COPY ids it drew from the
 *   sequence (server/pg/store.ts).
 * - the directory-write counter: a statement trigger (a COPY of 10^7 rows
 *   counts once), with the same meaning as SQLite's row triggers: the
 *   store acknowledges its own writes, anything else is an outside edit.
 */
const PG_TYPE: Record<ColumnType, string> = { INTEGER: 'BIGINT', TEXT: 'TEXT', BLOB: 'BYTEA' };

/** A log table's Postgres DDL: `rows` with an identity id and its indexes, `counts` keyed by (ts, key...). */
export function pgLogTableDdl(table: LogTable): string {
  const cols = table.columns.map((c) => `${c.name} ${PG_TYPE[c.type]} NOT NULL`);
  if (table.kind === 'counts') return `CREATE TABLE IF NOT EXISTS ${table.name} (\n  ${cols.join(', ')},\n  PRIMARY KEY (${['ts', ...table.key].join(', ')})\n);`;
  const indexes = table.indexes.map((ix) => `CREATE INDEX IF NOT EXISTS ${table.name}_${ix[0]} ON ${table.name}(${ix.join(', ')});`);
  return [`CREATE TABLE IF NOT EXISTS ${table.name} (\n  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ${cols.join(', ')}\n);`, ...indexes].join('\n');
}

const PG_COMMON = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  token_hash BYTEA UNIQUE,
  capabilities INTEGER NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS numbers (
  number TEXT PRIMARY KEY,
  account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS numbers_account ON numbers(account_id);

CREATE OR REPLACE FUNCTION pcd_count_directory_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO meta (key, value) VALUES ('directory_writes', '1')
    ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text;
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER directory_writes_numbers AFTER INSERT OR UPDATE OR DELETE ON numbers
  FOR EACH STATEMENT EXECUTE FUNCTION pcd_count_directory_write();
CREATE OR REPLACE TRIGGER directory_writes_accounts AFTER UPDATE OF capabilities ON accounts
  FOR EACH STATEMENT EXECUTE FUNCTION pcd_count_directory_write();

CREATE TABLE IF NOT EXISTS directory_changes (
  version BIGINT PRIMARY KEY,
  number TEXT NOT NULL,
  mask INTEGER NOT NULL,
  previous INTEGER
);
-- Who still needs journal rows: per node and holder, the version it has, refreshed at each use (server/pg/store.ts).
CREATE TABLE IF NOT EXISTS directory_journal_holds (
  node TEXT NOT NULL,
  holder TEXT NOT NULL,
  version BIGINT NOT NULL,
  at BIGINT NOT NULL,
  PRIMARY KEY (node, holder)
);
CREATE TABLE IF NOT EXISTS rate_limits (account_id BIGINT PRIMARY KEY, tokens DOUBLE PRECISION NOT NULL, at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS spent_tokens (nonce_hash BYTEA NOT NULL, key_id BYTEA NOT NULL, PRIMARY KEY (key_id, nonce_hash));
-- Epoch secret keys wrapped under the nodes' master key (server/pg/epochkeys.ts): a dump alone cannot evaluate.
CREATE TABLE IF NOT EXISTS epoch_keys (epoch INTEGER PRIMARY KEY, master_id BYTEA NOT NULL, wrapped BYTEA NOT NULL);
-- Each epoch's table of tags (server/pg/epochtables.ts), stored once by the node that built it, in parts of one generation.
CREATE TABLE IF NOT EXISTS epoch_tables (epoch INTEGER NOT NULL, generation INTEGER NOT NULL, part INTEGER NOT NULL, bytes BYTEA NOT NULL, PRIMARY KEY (epoch, generation, part));
CREATE TABLE IF NOT EXISTS epoch_table_heads (
  epoch INTEGER PRIMARY KEY,
  generation INTEGER NOT NULL,
  directory_version BIGINT NOT NULL,
  parts INTEGER NOT NULL,
  bytes BIGINT NOT NULL,
  stored_at BIGINT NOT NULL,
  stored_by TEXT NOT NULL
);
-- The parts of a build under way (server/pg/epochbuild.ts): tags by number, for a builder that takes over.
CREATE TABLE IF NOT EXISTS epoch_build_parts (epoch INTEGER NOT NULL, part INTEGER NOT NULL, keys BYTEA NOT NULL, tags BYTEA NOT NULL, PRIMARY KEY (epoch, part));
-- Which query log batches are written (server/pg/logs.ts): a batch's random id and when it was written, nothing of its
-- rows. A batch tried again after a write whose outcome is unknown (the connection lost before the reply) writes its
-- rows only if its id is not here yet, so the logs never hold a batch twice. Kept a day (PgStore.purgeLogs).
CREATE TABLE IF NOT EXISTS log_batches (id UUID PRIMARY KEY, at BIGINT NOT NULL);
-- The OHTTP gateway's private keys (server/pg/ohttpkeys.ts), wrapped under the master key: one configuration for every node.
CREATE TABLE IF NOT EXISTS ohttp_keys (key_id INTEGER PRIMARY KEY, master_id BYTEA NOT NULL, wrapped BYTEA NOT NULL);
-- The Privacy Pass issuer's RSA keys per epoch and size class (server/tokens/keys.ts), wrapped under the master key.
CREATE TABLE IF NOT EXISTS token_keys (epoch INTEGER NOT NULL, size_class INTEGER NOT NULL, master_id BYTEA NOT NULL, wrapped BYTEA NOT NULL, PRIMARY KEY (epoch, size_class));
CREATE TABLE IF NOT EXISTS epochs (
  epoch INTEGER PRIMARY KEY,
  public_key BYTEA NOT NULL,
  mode TEXT NOT NULL,
  bucket_bits INTEGER NOT NULL,
  tag_bytes INTEGER NOT NULL,
  created_at BIGINT NOT NULL,
  retires_at BIGINT,
  destroyed_at BIGINT
);
`;

/** The whole Postgres schema: idempotent, run on every open under an advisory lock (server/pg/store.ts). */
export const PG_SCHEMA = [PG_COMMON, ...LOG_TABLES.map((t) => `-- ${t.design}: ${t.description}\n${pgLogTableDdl(t)}`)].join('\n');
