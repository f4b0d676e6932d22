/**
 * The Privacy Pass issuer's keys on a shared store (table `token_keys`,
 * disk/sql.ts PG_SCHEMA): every node issues and redeems with the same
 * keys, so a token issued by one node is accepted by any other and every
 * node's config publishes the same keys. Each key is wrapped under the
 * master key (server/pg/epochkeys.ts), with its epoch and class bound in.
 *
 * Two nodes may make an epoch's keys at the same moment: the first insert
 * wins (ON CONFLICT DO NOTHING) and both take the stored ones.
 */
import type pg from 'pg';
import type { StoredKey, TokenKeyStorage } from '../tokens/keys.ts';
import { pgGuarded } from './connect.ts';
import { unwrapTokenKey, wrapTokenKey, type MasterKey } from './epochkeys.ts';

interface Row {
  epoch: number;
  size_class: number;
  wrapped: Buffer;
}

export class PgTokenKeyStorage implements TokenKeyStorage {
  constructor(
    private readonly pool: pg.Pool,
    private readonly master: MasterKey,
  ) {}

  private open(r: Row): StoredKey {
    return { epoch: r.epoch, sizeClass: r.size_class, pkcs8: unwrapTokenKey(this.master, r.epoch, r.size_class, r.wrapped) };
  }

  async loadAll(): Promise<StoredKey[]> {
    const { rows } = await pgGuarded(() => this.pool.query<Row>('SELECT epoch, size_class, wrapped FROM token_keys ORDER BY epoch, size_class'));
    return rows.map((r) => this.open(r));
  }

  async ofEpoch(epoch: number): Promise<StoredKey[]> {
    const { rows } = await pgGuarded(() => this.pool.query<Row>('SELECT epoch, size_class, wrapped FROM token_keys WHERE epoch = $1 ORDER BY size_class', [epoch]));
    return rows.map((r) => this.open(r));
  }

  async add(epoch: number, made: StoredKey[]): Promise<StoredKey[]> {
    if (made.length > 0) {
      await pgGuarded(() =>
        this.pool.query(
          `INSERT INTO token_keys (epoch, size_class, master_id, wrapped)
           SELECT $1, c, $2, w FROM unnest($3::int[], $4::bytea[]) AS t(c, w)
           ON CONFLICT (epoch, size_class) DO NOTHING`,
          [epoch, this.master.id, made.map((k) => k.sizeClass), made.map((k) => wrapTokenKey(this.master, epoch, k.sizeClass, k.pkcs8))],
        ),
      );
    }
    return this.ofEpoch(epoch);
  }

  async remove(epoch: number): Promise<void> {
    await pgGuarded(() => this.pool.query('DELETE FROM token_keys WHERE epoch = $1', [epoch]));
  }
}
