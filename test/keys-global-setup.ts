/**
 * vitest global setup: the pool of RSA-2048 keys the test run's servers'
 * token keys are taken from (test/rsa-pool.mjs), made once and kept in
 * node_modules/.cache, and the run's claims folder, so that no key goes to
 * two servers of one run; nothing to do under PCD_TEST_FULL=1 (no pool there).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLAIMS_ENV, ensurePool, poolKeyCount } from './rsa-pool.mjs';

export default async function setup(): Promise<() => void> {
  if (process.env.PCD_TEST_FULL === '1') return () => {};
  await ensurePool();
  const pooled = poolKeyCount();
  // The workers, and every process they start, inherit it.
  const claims = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-rsa-claims-'));
  process.env[CLAIMS_ENV] = claims;
  return () => {
    const claimed = fs.readdirSync(claims).length;
    // Not an error: the keys past the pool were generated. But the run was slower than it needs to be.
    if (claimed >= pooled) console.warn(`the RSA key pool (${pooled} keys) ran out during this run: the rest were generated; raise POOL_SIZE in test/rsa-pool.mjs`);
    fs.rmSync(claims, { recursive: true, force: true });
  };
}
