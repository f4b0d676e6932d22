/**
 * vitest global setup: the pool of RSA-2048 keys the in-process servers'
 * token keys are taken from (test/rsa-pool.ts), made once and kept in
 * node_modules/.cache; nothing to do under PCD_TEST_FULL=1 (no pool there).
 */
import { ensurePool } from './rsa-pool.ts';

export default async function setup(): Promise<void> {
  if (process.env.PCD_TEST_FULL !== '1') await ensurePool();
}
