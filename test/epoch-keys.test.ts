/**
 * Epoch keys wrapped under a master key in the shared store
 * (server/pg/epochkeys.ts), on the run's Postgres.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPcdError } from '../shared/errors.ts';
import { PgStore } from '../server/pg/store.ts';
import { createMasterKey, MASTER_KEY_FILE, PgEpochKeys, readMasterKey, unwrapEpochKey, wrapEpochKey, WRAPPED_KEY_BYTES } from '../server/pg/epochkeys.ts';
import { tempDir } from './helpers.ts';
import { freshDatabase } from './stores.ts';

const key = () => new Uint8Array(crypto.randomBytes(32));
const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (e) {
    return isPcdError(e) ? e.code : 'not a PcdError';
  }
  return undefined;
};

describe('the master key and a wrap', () => {
  const dir = tempDir('pcd-master-');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('wraps and opens an epoch key; another master key, another epoch or a flipped bit fail as one line, never as a key', () => {
    const file = path.join(dir, MASTER_KEY_FILE);
    const master = createMasterKey(file);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(() => createMasterKey(file)).toThrow(); // never overwritten
    expect(readMasterKey(file).id).toEqual(master.id);
    const secret = key();
    const wrapped = wrapEpochKey(master, 7, secret);
    expect(wrapped).toHaveLength(WRAPPED_KEY_BYTES);
    expect(Buffer.from(wrapped).includes(Buffer.from(secret))).toBe(false);
    expect(wrapEpochKey(master, 7, secret).equals(wrapped)).toBe(false); // a fresh nonce each time
    expect(unwrapEpochKey(master, 7, wrapped)).toEqual(secret);
    const other = createMasterKey(path.join(dir, 'other.key'));
    expect(codeOf(() => unwrapEpochKey(other, 7, wrapped))).toBe('conflict');
    expect(codeOf(() => unwrapEpochKey(master, 8, wrapped))).toBe('conflict'); // a row moved to another epoch
    const flipped = Buffer.from(wrapped);
    flipped[20]! ^= 1;
    expect(codeOf(() => unwrapEpochKey(master, 7, flipped))).toBe('conflict');
    expect(codeOf(() => unwrapEpochKey(master, 7, wrapped.subarray(1)))).toBe('conflict');
  });

  it('refuses a master key file others can read, a missing one and one of the wrong size', () => {
    const open = path.join(dir, 'open.key');
    fs.writeFileSync(open, crypto.randomBytes(32), { mode: 0o644 });
    fs.chmodSync(open, 0o644);
    expect(codeOf(() => readMasterKey(open))).toBe('forbidden');
    expect(codeOf(() => readMasterKey(path.join(dir, 'none.key')))).toBe('invalid_field');
    const short = path.join(dir, 'short.key');
    fs.writeFileSync(short, crypto.randomBytes(16), { mode: 0o600 });
    expect(codeOf(() => readMasterKey(short))).toBe('invalid_field');
  });
});

describe('wrapped epoch keys in the shared store', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let store: PgStore;
  const dir = tempDir('pcd-epochkeys-');
  beforeAll(async () => {
    db = await freshDatabase('pcd_keys');
    store = await PgStore.open(db.url);
  });
  afterAll(async () => {
    await store?.close();
    await db?.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every node with the master key reads the same key; the database holds only the wrap; destroyed, it is gone for all', async () => {
    const master = createMasterKey(path.join(dir, MASTER_KEY_FILE));
    const [a, b] = [new PgEpochKeys(store.pool, master), new PgEpochKeys(store.pool, readMasterKey(path.join(dir, MASTER_KEY_FILE)))];
    const secret = key();
    await a.put(1, secret);
    await expect(a.put(1, key())).rejects.toMatchObject({ code: 'conflict' }); // made once
    expect(await b.get(1)).toEqual(secret);
    expect(await b.epochs()).toEqual([1]);
    // A dump: the row holds the wrap and the master key's id, not the key.
    const row = (await store.pool.query('SELECT master_id, wrapped FROM epoch_keys WHERE epoch = 1')).rows[0] as { master_id: Buffer; wrapped: Buffer };
    expect(row.wrapped.includes(Buffer.from(secret))).toBe(false);
    expect(row.master_id.equals(master.id)).toBe(true);
    // Another store's master key opens nothing.
    const stranger = new PgEpochKeys(store.pool, createMasterKey(path.join(dir, 'stranger.key')));
    await expect(stranger.get(1)).rejects.toMatchObject({ code: 'conflict' });
    expect(await a.destroy(1)).toBe(true);
    expect(await b.get(1)).toBeUndefined();
    expect(await a.destroy(1)).toBe(false);
  });
});
