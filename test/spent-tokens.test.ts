/**
 * The spent-token store (server/tokens/spent.ts), once over SQLite and once
 * over a real Postgres (test/stores.ts): a token is spent once, on one node
 * or several sharing the database, and a store that cannot be written is a
 * 503.
 */
import crypto from 'node:crypto';
import { expect, it } from 'vitest';
import { isPcdError } from '../shared/errors.ts';
import type { DirectoryStore, SqliteDirectoryStore } from '../server/directory-store.ts';
import type { PgStore } from '../server/pg/store.ts';
import type { TokenKey, TokenKeys } from '../server/tokens/keys.ts';
import { TokenService, type CheckedToken } from '../server/tokens/service.ts';
import { PgSpentTokens, SqliteSpentTokens, type SpentTokenStore } from '../server/tokens/spent.ts';
import { describeStores, type StoreFixture } from './stores.ts';

const keyId = () => new Uint8Array(crypto.randomBytes(32));
const token = (key: Uint8Array, nonceHash: Uint8Array = new Uint8Array(crypto.randomBytes(32))): CheckedToken => ({
  key: { keyId: key, sizeClass: 1 } as TokenKey,
  nonceHash,
});

function spentOf(f: StoreFixture, s: DirectoryStore): SpentTokenStore {
  return f.kind === 'sqlite' ? new SqliteSpentTokens((s as SqliteDirectoryStore).store.db) : new PgSpentTokens((s as PgStore).pool);
}

describeStores('the spent-token store', (f) => {
  it('spends a token once; the same nonce hash under another key is another token; unspend gives it back', async () => {
    const spent = spentOf(f, await f.open());
    const [k1, k2] = [keyId(), keyId()];
    const a = token(k1);
    expect(await spent.size()).toBe(0);
    expect(await spent.spend(a)).toBe(true);
    expect(await spent.spend(a)).toBe(false); // a replay
    expect(await spent.spend(token(k1, Uint8Array.from(a.nonceHash)))).toBe(false); // the same bytes, another object
    const b = token(k2, a.nonceHash);
    expect(await spent.spend(b)).toBe(true);
    expect(await spent.size()).toBe(2);
    await spent.unspend(a);
    expect(await spent.size()).toBe(1);
    expect(await spent.spend(b)).toBe(false); // only a's row went
    expect(await spent.spend(a)).toBe(true); // given back: it pays again
    expect(await spent.size()).toBe(2);
  });

  it('purges only the key\'s rows and says how many', async () => {
    const spent = spentOf(f, await f.open());
    const [k1, k2] = [keyId(), keyId()];
    const ones = Array.from({ length: 5 }, () => token(k1));
    const twos = Array.from({ length: 3 }, () => token(k2));
    for (const t of [...ones, ...twos]) expect(await spent.spend(t)).toBe(true);
    expect(await spent.purge(k1)).toBe(5);
    expect(await spent.purge(k1)).toBe(0);
    expect(await spent.size()).toBe(3);
    for (const t of twos) expect(await spent.spend(t)).toBe(false);
    expect(await spent.purge(keyId())).toBe(0);
  });

  it('a token spent on one node is refused on every other (two stores on one database)', async () => {
    const one = spentOf(f, await f.open());
    const two = spentOf(f, await f.reopen());
    const k = keyId();
    const t = token(k);
    expect(await one.spend(t)).toBe(true);
    expect(await two.spend(t)).toBe(false);
    expect(await two.size()).toBe(1);
    // Given back on the other node: it pays again, once.
    await two.unspend(t);
    expect(await one.spend(t)).toBe(true);
    expect(await two.spend(t)).toBe(false);
    // A purge on one node is seen by the other.
    expect(await two.purge(k)).toBe(1);
    expect(await one.size()).toBe(0);
  });

  it('of 20 concurrent spends of one token across two nodes, exactly one succeeds', async () => {
    const one = spentOf(f, await f.open());
    const two = spentOf(f, await f.reopen());
    for (let round = 0; round < 3; round++) {
      const t = token(keyId());
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? two : one).spend(token(t.key.keyId, Uint8Array.from(t.nonceHash)))));
      expect(results.filter(Boolean)).toHaveLength(1);
    }
    expect(await one.size()).toBe(3);
  });

  it('TokenService: a replay is token_replayed, the refund gives the token back, retire purges the key\'s tokens', async () => {
    const spent = spentOf(f, await f.open());
    const k = keyId();
    const keys = { of: () => [], retire: () => [k] } as unknown as TokenKeys;
    const service = new TokenService(keys, spent, 'pcd.test');
    const t = token(k);
    const refund = await service.spend(t, 1);
    const replay = await service.spend(t, 1).catch((e: unknown) => e);
    expect(isPcdError(replay) && replay.code).toBe('token_replayed');
    await refund();
    const again = await service.spend(t, 1);
    expect(typeof again).toBe('function');
    await service.spend(token(k), 1);
    expect(await service.retire(1)).toBe(2);
    expect(await spent.size()).toBe(0);
  });

  it.runIf(f.kind === 'postgres')('a read-only database refuses a spend with 503 unavailable, and spends again after', async () => {
    const spent = spentOf(f, await f.open());
    const k = keyId();
    const before = token(k);
    expect(await spent.spend(before)).toBe(true);
    const admin = await f.admin!();
    const endSessions = () => admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [f.database!()]);
    try {
      await admin.query(`ALTER DATABASE ${f.database!()} SET default_transaction_read_only = on`);
      await endSessions(); // the pool's idle connections end; new ones are read-only
      // A connection ended under a query is itself a 503 ("cannot be reached"); a client tries again, as this does.
      const t = token(k);
      const attempt = () => spent.spend(t).catch((e: unknown) => e);
      let refused = await attempt();
      for (let i = 0; i < 5 && isPcdError(refused) && /cannot be reached/.test(refused.message); i++) refused = await attempt();
      expect(isPcdError(refused) && refused.code).toBe('unavailable');
      expect(isPcdError(refused) && refused.retryAfterSeconds).toBeGreaterThan(0);
      expect(isPcdError(refused) && refused.message).toMatch(/read-only \(Postgres 25006\)/);
      // Nothing can be given back or purged either; a count still answers.
      const unspent = await spent.unspend(before).catch((e: unknown) => e);
      expect(isPcdError(unspent) && unspent.code).toBe('unavailable');
      const purged = await spent.purge(k).catch((e: unknown) => e);
      expect(isPcdError(purged) && purged.code).toBe('unavailable');
      expect(await spent.size()).toBe(1);
      await admin.query(`ALTER DATABASE ${f.database!()} SET default_transaction_read_only = off`);
      await endSessions();
      let again = await attempt();
      for (let i = 0; i < 5 && isPcdError(again) && again.code === 'unavailable'; i++) again = await attempt();
      expect(again).toBe(true);
      expect(await spent.spend(before)).toBe(false); // the refused unspend left it spent
    } finally {
      await admin.query(`ALTER DATABASE ${f.database!()} RESET default_transaction_read_only`).catch(() => {});
      await admin.end();
    }
  });
});
