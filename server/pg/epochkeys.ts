/**
 * Epoch keys in the shared store, wrapped under a master key that each node
 * reads from a file of its own (docs/threat-model.md, "Someone who dumps the
 * shared store"): a dump of the database alone cannot evaluate. Built ahead
 * of the blinded design's move onto the shared store, which will keep its
 * epoch keys here instead of in the data folder's key file.
 *
 * - The master key: 32 random bytes in `<dataDir>/master.key` (0600; a file
 *   others may read is refused). Every node of a store needs the same one:
 *   make it once ({@link createMasterKey}) and copy it to each node.
 * - A wrap: AES-256-GCM (node:crypto), a fresh 96-bit nonce each time, the
 *   epoch and the master key's id in the associated data, so a wrapped key
 *   moved to another epoch's row, or opened with another store's master
 *   key, fails its tag instead of yielding a key. Stored as
 *   nonce (12) || ciphertext (32) || tag (16) in `epoch_keys`.
 * - Destroying an epoch deletes its row and vacuums the table. Postgres has
 *   no secure delete: the old bytes may stay in a page until it is reused
 *   and in the WAL until it is recycled, but they are wrapped; rotating the
 *   master key (rewrap every live key, destroy the old master key) makes
 *   such leftovers useless.
 *
 * Key bytes are never strings; the buffers a caller gets are its to zero.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { SCALAR_BYTES, type ScalarBytes } from '../../shared/suite.ts';
import { pgGuarded } from './connect.ts';

export const MASTER_KEY_FILE = 'master.key';
const MASTER_KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** The wrapped form's length: nonce, the scalar encrypted, the tag. */
export const WRAPPED_KEY_BYTES = NONCE_BYTES + SCALAR_BYTES + TAG_BYTES;
const AAD_LABEL = Buffer.from('pcd epoch key v1', 'latin1');

/** A master key and its id (the first 8 bytes of its SHA-256, which names it in the associated data and in rows, never the key). */
export interface MasterKey {
  readonly key: Buffer;
  readonly id: Buffer;
}

function masterOf(key: Buffer): MasterKey {
  return { key, id: crypto.createHash('sha256').update(key).digest().subarray(0, 8) };
}

/** Makes a new master key file (0600); refuses to overwrite one. */
export function createMasterKey(file: string): MasterKey {
  const key = crypto.randomBytes(MASTER_KEY_BYTES);
  fs.writeFileSync(file, key, { mode: 0o600, flag: 'wx' });
  return masterOf(key);
}

/** Reads a master key file: 32 bytes, readable by its owner alone. */
export function readMasterKey(file: string): MasterKey {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    throw new PcdError(ErrorCode.InvalidField, `${file}: no master key there (make one on one node and copy it to every node of the store)`);
  }
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new PcdError(ErrorCode.Forbidden, `${file}: the master key is readable by others (mode ${(st.mode & 0o777).toString(8)}): chmod 600 it`);
  }
  const key = fs.readFileSync(file);
  if (key.length !== MASTER_KEY_BYTES) throw new PcdError(ErrorCode.InvalidField, `${file}: a master key is ${MASTER_KEY_BYTES} bytes, this file has ${key.length}`);
  return masterOf(key);
}

function aad(master: MasterKey, epoch: number): Buffer {
  const e = Buffer.alloc(4);
  e.writeUInt32BE(epoch);
  return Buffer.concat([AAD_LABEL, e, master.id]);
}

/** Wraps one epoch's secret key. */
export function wrapEpochKey(master: MasterKey, epoch: number, secret: ScalarBytes): Buffer {
  if (secret.length !== SCALAR_BYTES) throw new Error(`an epoch key is ${SCALAR_BYTES} bytes`);
  const nonce = crypto.randomBytes(NONCE_BYTES);
  const c = crypto.createCipheriv('aes-256-gcm', master.key, nonce);
  c.setAAD(aad(master, epoch));
  const body = Buffer.concat([c.update(secret), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]);
}

/** Opens one epoch's wrapped key; a wrong master key, epoch or damaged bytes fail as one line, never as a key. */
export function unwrapEpochKey(master: MasterKey, epoch: number, wrapped: Uint8Array): ScalarBytes {
  if (wrapped.length !== WRAPPED_KEY_BYTES) throw new PcdError(ErrorCode.Conflict, `epoch ${epoch}: a wrapped key is ${WRAPPED_KEY_BYTES} bytes, the store has ${wrapped.length}`);
  const w = Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength);
  const d = crypto.createDecipheriv('aes-256-gcm', master.key, w.subarray(0, NONCE_BYTES));
  d.setAAD(aad(master, epoch));
  d.setAuthTag(w.subarray(NONCE_BYTES + SCALAR_BYTES));
  try {
    return new Uint8Array(Buffer.concat([d.update(w.subarray(NONCE_BYTES, NONCE_BYTES + SCALAR_BYTES)), d.final()])) as ScalarBytes;
  } catch {
    throw new PcdError(ErrorCode.Conflict, `epoch ${epoch}: this node's master key does not open the epoch's key (another store's master key, or damaged bytes)`);
  }
}

/** The associated data of a wrapped secret other than an epoch key: its label, its ids (32 bits each) and the master key's id. */
function secretAad(master: MasterKey, label: string, ids: readonly number[]): Buffer {
  const e = Buffer.alloc(4 * ids.length);
  ids.forEach((id, i) => e.writeUInt32BE(id, 4 * i));
  return Buffer.concat([Buffer.from(label, 'latin1'), e, master.id]);
}

/** Wraps a secret of any length (nonce, ciphertext, tag) under `label` and `ids`, which a wrong label or id fails to open. */
function wrapSecret(master: MasterKey, label: string, ids: readonly number[], secret: Uint8Array): Buffer {
  const nonce = crypto.randomBytes(NONCE_BYTES);
  const c = crypto.createCipheriv('aes-256-gcm', master.key, nonce);
  c.setAAD(secretAad(master, label, ids));
  const body = Buffer.concat([c.update(secret), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]);
}

/** Opens a wrapped secret; a wrong master key, label, id or damaged bytes fail as one line naming `what`. */
function unwrapSecret(master: MasterKey, label: string, ids: readonly number[], wrapped: Uint8Array, what: string): Buffer {
  const w = Buffer.from(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength);
  if (w.length <= NONCE_BYTES + TAG_BYTES) throw new PcdError(ErrorCode.Conflict, `${what}: too short to be a wrapped key`);
  const d = crypto.createDecipheriv('aes-256-gcm', master.key, w.subarray(0, NONCE_BYTES));
  d.setAAD(secretAad(master, label, ids));
  d.setAuthTag(w.subarray(w.length - TAG_BYTES));
  try {
    return Buffer.concat([d.update(w.subarray(NONCE_BYTES, w.length - TAG_BYTES)), d.final()]);
  } catch {
    throw new PcdError(ErrorCode.Conflict, `${what}: this node's master key does not open it (another store's master key, or damaged bytes)`);
  }
}

const TOKEN_KEY_LABEL = 'pcd token key v1';
const OHTTP_KEY_LABEL = 'pcd ohttp key v1';

/** Wraps a token issuer key (PKCS#8 DER) of `epoch` and `sizeClass`. */
export function wrapTokenKey(master: MasterKey, epoch: number, sizeClass: number, pkcs8: Uint8Array): Buffer {
  return wrapSecret(master, TOKEN_KEY_LABEL, [epoch, sizeClass], pkcs8);
}

/** Opens a wrapped token key. */
export function unwrapTokenKey(master: MasterKey, epoch: number, sizeClass: number, wrapped: Uint8Array): Buffer {
  return unwrapSecret(master, TOKEN_KEY_LABEL, [epoch, sizeClass], wrapped, `token key of epoch ${epoch}, class ${sizeClass}`);
}

/** Wraps the OHTTP gateway's private key of `keyId` (server/pg/ohttpkeys.ts). */
export function wrapOhttpKey(master: MasterKey, keyId: number, privateKey: Uint8Array): Buffer {
  return wrapSecret(master, OHTTP_KEY_LABEL, [keyId], privateKey);
}

/** Opens a wrapped OHTTP gateway key. */
export function unwrapOhttpKey(master: MasterKey, keyId: number, wrapped: Uint8Array): Buffer {
  return unwrapSecret(master, OHTTP_KEY_LABEL, [keyId], wrapped, `OHTTP gateway key ${keyId}`);
}

/** The master key of a node: `masterKeyFile`, else `<dataDir>/master.key`; made there when absent and the store holds no wrapped key yet. */
export async function nodeMasterKey(pool: pg.Pool, options: { dataDir: string; masterKeyFile?: string }, logger?: { warn(obj: object, msg: string): void }): Promise<MasterKey> {
  const file = options.masterKeyFile ?? path.join(options.dataDir, MASTER_KEY_FILE);
  if (fs.existsSync(file)) return readMasterKey(file);
  const { rows } = await pgGuarded(() => pool.query<{ n: number }>('SELECT count(*)::int AS n FROM epoch_keys'));
  if ((rows[0]?.n ?? 0) > 0) return readMasterKey(file); // one line: copy it from a node of the store
  const made = createMasterKey(file);
  logger?.warn({ file }, "made a master key for the shared store's keys: copy this file (mode 0600) to every node of the store, or pass it with --master-key");
  return made;
}

/** The wrapped epoch keys of a shared store (table `epoch_keys`, disk/sql.ts PG_SCHEMA), opened with one master key. */
export class PgEpochKeys {
  constructor(
    private readonly pool: pg.Pool,
    private readonly master: MasterKey,
  ) {}

  /** The id of the master key these keys are wrapped under (never the key). */
  get masterId(): Buffer {
    return this.master.id;
  }

  /**
   * Stores `epoch`'s key, wrapped; an epoch that has one already is a
   * conflict (keys are made once). `on`: a transaction's client, so the key
   * is written with its epoch's row (server/pg/epochtables.ts createEpoch).
   */
  async put(epoch: number, secret: ScalarBytes, on: Pick<pg.Pool, 'query'> = this.pool): Promise<void> {
    const r = await pgGuarded(() =>
      on.query('INSERT INTO epoch_keys (epoch, master_id, wrapped) VALUES ($1, $2, $3) ON CONFLICT (epoch) DO NOTHING', [epoch, this.master.id, wrapEpochKey(this.master, epoch, secret)]),
    );
    if (r.rowCount !== 1) throw new PcdError(ErrorCode.Conflict, `epoch ${epoch} has a key in the store already`);
  }

  /** `epoch`'s key, unwrapped; undefined when the store has none (never made, or destroyed). */
  async get(epoch: number): Promise<ScalarBytes | undefined> {
    const { rows } = await pgGuarded(() => this.pool.query<{ wrapped: Buffer }>('SELECT wrapped FROM epoch_keys WHERE epoch = $1', [epoch]));
    return rows[0] ? unwrapEpochKey(this.master, epoch, rows[0].wrapped) : undefined;
  }

  /** The epochs whose keys the store holds. */
  async epochs(): Promise<number[]> {
    const { rows } = await pgGuarded(() => this.pool.query<{ epoch: number }>('SELECT epoch FROM epoch_keys ORDER BY epoch'));
    return rows.map((r) => r.epoch);
  }

  /** Destroys `epoch`'s key for every node (module header: what stays in pages and the WAL); true when there was one. */
  async destroy(epoch: number): Promise<boolean> {
    const r = await pgGuarded(() => this.pool.query('DELETE FROM epoch_keys WHERE epoch = $1', [epoch]));
    await pgGuarded(() => this.pool.query('VACUUM epoch_keys'));
    return (r.rowCount ?? 0) > 0;
  }
}
