/**
 * The OHTTP gateway's keys on a shared store (table `ohttp_keys`, disk/sql.ts
 * PG_SCHEMA): every node decapsulates with the same keys and publishes the
 * same key configuration, so behind a load balancer a request encapsulated
 * with the configuration one node gave is opened by any other, and every
 * client is shown one configuration. Each private key is wrapped under the
 * master key (server/pg/epochkeys.ts), its key id bound in. The first node
 * makes key id 1; two nodes making it at once keep the first insert.
 */
import crypto from 'node:crypto';
import type pg from 'pg';
import { pgGuarded } from './connect.ts';
import { unwrapOhttpKey, wrapOhttpKey, type MasterKey } from './epochkeys.ts';

/** The gateway's first key id (as in a data folder's ohttp-key.json, server/ohttp.ts). */
const FIRST_KEY_ID = 1;

/** The store's gateway keys, key id 1 made when there is none: id and private key bytes (the caller zeroes them). */
export async function sharedGatewayKeys(pool: pg.Pool, master: MasterKey): Promise<{ keyId: number; privateKey: Uint8Array }[]> {
  const fresh = new Uint8Array(crypto.randomBytes(32));
  try {
    await pgGuarded(() =>
      pool.query('INSERT INTO ohttp_keys (key_id, master_id, wrapped) VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING', [FIRST_KEY_ID, master.id, wrapOhttpKey(master, FIRST_KEY_ID, fresh)]),
    );
  } finally {
    fresh.fill(0);
  }
  const { rows } = await pgGuarded(() => pool.query<{ key_id: number; wrapped: Buffer }>('SELECT key_id, wrapped FROM ohttp_keys ORDER BY key_id'));
  return rows.map((r) => ({ keyId: r.key_id, privateKey: new Uint8Array(unwrapOhttpKey(master, r.key_id, r.wrapped)) }));
}
