/**
 * The blinded design's epochs in a shared Postgres store (disk/sql.ts
 * PG_SCHEMA): the `epochs` rows, the wrapped keys (server/pg/epochkeys.ts)
 * and each epoch's table of tags, stored once by the node that built it so
 * that other nodes load it instead of building it again.
 *
 * A table is the epoch cache file's bytes (server/blinded/table.ts
 * serialize: header, counts, tags, masks, SHA-256), cut into parts of
 * {@link PART_BYTES} in `epoch_tables` under a generation number, and named
 * by its row in `epoch_table_heads` (the generation, the directory version
 * it reflects, its length). A newer store writes a new generation, then in
 * one transaction points the head at it (only forward: never to an older
 * directory version) and deletes the other generations; a reader reads the
 * head and its parts in one REPEATABLE READ transaction, so it never sees a
 * half-written table. The tags are those of registered numbers only, which
 * are in the directory anyway; without the epoch's key they cannot be tied
 * to a number (docs/threat-model.md).
 *
 * Creating an epoch and storing a table's first generation take the
 * {@link EPOCHS_LOCK} transaction lock, so two nodes never make the same
 * epoch and at most one epoch waits to be built at a time.
 */
import type pg from 'pg';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import type { KeyPair } from '../../shared/suite.ts';
import type { EpochRow } from '../../disk/epochs.ts';
import { BucketTable, type CacheContent, type CacheExpectation, type EpochParams } from '../blinded/table.ts';
import { inTransaction, pgGuarded } from './connect.ts';
import type { PgEpochKeys } from './epochkeys.ts';

/** The transaction lock of epoch creation and first stores (distinct from the leader's and the directory's). */
export const EPOCHS_LOCK = 0x7063_6411;
/** One stored part of a table: 8 MiB. */
export const PART_BYTES = 8 << 20;

/** An `epochs` row with what the store holds for it. */
export interface SharedEpochRow extends EpochRow {
  /** The directory version of its stored table; null while no node has stored one (it is being built). */
  stored_version: number | null;
  /** Whether its wrapped key is still in the store. */
  has_key: boolean;
  /** The master key id it was wrapped under, when it is. */
  master_id: Buffer | null;
}

/** Every epoch row, oldest first, with its stored table's version and whether its key is there. */
export async function readEpochRows(pool: pg.Pool): Promise<SharedEpochRow[]> {
  const { rows } = await pgGuarded(() =>
    pool.query<SharedEpochRow>(
      `SELECT e.*, h.directory_version AS stored_version, k.epoch IS NOT NULL AS has_key, k.master_id
         FROM epochs e LEFT JOIN epoch_table_heads h USING (epoch) LEFT JOIN epoch_keys k USING (epoch)
        ORDER BY e.epoch`,
    ),
  );
  return rows;
}

/**
 * Creates epoch max+1 with `key` (wrapped, `keys`) and `params`, under
 * the epochs lock, unless `refuse` (given the rows) says why not. Returns the
 * new epoch's number.
 */
export async function createEpoch(
  pool: pg.Pool,
  keys: PgEpochKeys,
  key: KeyPair,
  /** The new epoch's parameters, or a function of the rows (read under the lock, after `refuse`) that gives them. */
  params: EpochParams | ((rows: SharedEpochRow[]) => EpochParams),
  now: number,
  refuse: (rows: SharedEpochRow[]) => PcdError | 'exists' | undefined,
): Promise<number | undefined> {
  return inTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [EPOCHS_LOCK]);
    const { rows } = await c.query<SharedEpochRow>(
      `SELECT e.*, h.directory_version AS stored_version, k.epoch IS NOT NULL AS has_key, k.master_id
         FROM epochs e LEFT JOIN epoch_table_heads h USING (epoch) LEFT JOIN epoch_keys k USING (epoch) ORDER BY e.epoch`,
    );
    const other = rows.find((r) => r.master_id && !r.master_id.equals(keys.masterId));
    if (other) {
      throw new PcdError(
        ErrorCode.Conflict,
        `the shared store's epoch keys are wrapped under another master key (id ${other.master_id!.toString('hex')}, this node's is ${keys.masterId.toString('hex')}): copy master.key from a node of this store`,
      );
    }
    const why = refuse(rows);
    if (why === 'exists') return undefined;
    if (why) throw why;
    const p = typeof params === 'function' ? params(rows) : params;
    // Epoch numbers are never reused: max over every row, destroyed ones too.
    const epoch = rows.reduce((m, r) => Math.max(m, r.epoch), 0) + 1;
    await keys.put(epoch, key.secretKey, c);
    await c.query('INSERT INTO epochs (epoch, public_key, mode, bucket_bits, tag_bytes, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
      epoch,
      Buffer.from(key.publicKey),
      p.mode,
      p.bucketBits,
      p.tagBytes,
      now,
    ]);
    return epoch;
  });
}

/**
 * Stores an epoch's serialized table reflecting `version`. The first store
 * of an epoch also starts the grace period of every older epoch not yet
 * retiring (`retiresAt`), in the same transaction: from then on the new
 * epoch is current everywhere. Returns false when the store kept a newer
 * table, or the epoch was destroyed meanwhile.
 */
export async function storeEpochTable(pool: pg.Pool, epoch: number, bytes: Buffer, version: number, node: string, now: number, retiresAt: number): Promise<boolean> {
  return inTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [EPOCHS_LOCK]);
    const { rows } = await c.query<{ destroyed_at: number | null; generation: number | null; directory_version: number | null }>(
      'SELECT e.destroyed_at, h.generation, h.directory_version FROM epochs e LEFT JOIN epoch_table_heads h USING (epoch) WHERE e.epoch = $1',
      [epoch],
    );
    const row = rows[0];
    if (!row || row.destroyed_at !== null) return false;
    if (row.directory_version !== null && row.directory_version > version) return false;
    const generation = (row.generation ?? 0) + 1;
    const parts = Math.max(1, Math.ceil(bytes.length / PART_BYTES));
    for (let p = 0; p < parts; p++) {
      await c.query('INSERT INTO epoch_tables (epoch, generation, part, bytes) VALUES ($1, $2, $3, $4)', [epoch, generation, p, bytes.subarray(p * PART_BYTES, (p + 1) * PART_BYTES)]);
    }
    await c.query(
      `INSERT INTO epoch_table_heads (epoch, generation, directory_version, parts, bytes, stored_at, stored_by) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (epoch) DO UPDATE SET generation = excluded.generation, directory_version = excluded.directory_version, parts = excluded.parts,
         bytes = excluded.bytes, stored_at = excluded.stored_at, stored_by = excluded.stored_by`,
      [epoch, generation, version, parts, bytes.length, now, node],
    );
    await c.query('DELETE FROM epoch_tables WHERE epoch = $1 AND generation <> $2', [epoch, generation]);
    if (row.generation === null) {
      await c.query('UPDATE epochs SET retires_at = $1 WHERE epoch < $2 AND destroyed_at IS NULL AND retires_at IS NULL', [retiresAt, epoch]);
      await c.query('DELETE FROM epoch_build_parts WHERE epoch = $1', [epoch]); // the build's parts: the table has them
    }
    return true;
  });
}

/** Reads an epoch's stored table, in one snapshot; undefined when none is stored, else the table or why it cannot be used. */
export async function readEpochTable(pool: pg.Pool, expect: CacheExpectation): Promise<CacheContent | { problem: string } | undefined> {
  const bytes = await inTransaction(
    pool,
    async (c) => {
      const head = await c.query<{ generation: number; parts: number; bytes: number }>('SELECT generation, parts, bytes FROM epoch_table_heads WHERE epoch = $1', [expect.epoch]);
      const h = head.rows[0];
      if (!h) return undefined;
      const { rows } = await c.query<{ bytes: Buffer }>('SELECT bytes FROM epoch_tables WHERE epoch = $1 AND generation = $2 ORDER BY part', [expect.epoch, h.generation]);
      if (rows.length !== h.parts) return { problem: `${rows.length} of its ${h.parts} parts are in the store` };
      const buf = Buffer.concat(rows.map((r) => r.bytes));
      return buf.length === h.bytes ? buf : { problem: `it is ${buf.length} bytes, its head says ${h.bytes}` };
    },
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
  if (bytes === undefined || !Buffer.isBuffer(bytes)) return bytes;
  return BucketTable.deserialize(bytes, expect);
}

/**
 * The store's half of an epoch's destruction, idempotent: destroyed_at
 * (when not set), then its wrapped key, its tables, its token keys and any
 * build parts. Returns true when
 * a key was deleted (the caller then vacuums, server/pg/epochkeys.ts).
 */
export async function destroyStoredEpoch(pool: pg.Pool, epoch: number, now: number): Promise<boolean> {
  return inTransaction(pool, async (c) => {
    await c.query('UPDATE epochs SET destroyed_at = $1 WHERE epoch = $2 AND destroyed_at IS NULL', [now, epoch]);
    const k = await c.query('DELETE FROM epoch_keys WHERE epoch = $1', [epoch]);
    await c.query('DELETE FROM epoch_table_heads WHERE epoch = $1', [epoch]);
    await c.query('DELETE FROM epoch_tables WHERE epoch = $1', [epoch]);
    await c.query('DELETE FROM token_keys WHERE epoch = $1', [epoch]);
    await c.query('DELETE FROM epoch_build_parts WHERE epoch = $1', [epoch]);
    return (k.rowCount ?? 0) > 0;
  });
}
