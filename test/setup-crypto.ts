/**
 * vitest setup file (vitest.config.ts setupFiles): two costs of the suite
 * that are not what it tests, cut, except under PCD_TEST_FULL=1 (CI), where
 * both run as in production:
 * - RSA-2048 token keys come from a pool made ahead (test/rsa-pool.mjs):
 *   ~0.1-0.2 s of CPU each otherwise, one per size class and epoch of every
 *   server. In this process (the in-process servers), and through
 *   NODE_OPTIONS in every Node process the tests start (test/child-preload.mjs):
 *   `pcd serve`, `pcd start`, `pcd cluster`'s nodes, the harness's servers;
 * - the client's blind RSA computes sjcl's mod, mulmod, powermod and inverseMod with
 *   BigInt (test/fast-bignum.ts), in this process: ~35 ms of CPU per token otherwise.
 * What the servers and clients do with the keys and tokens is unchanged.
 */
import { useFastBignum } from './fast-bignum.ts';
import { usePool } from './rsa-pool.mjs';

// test/helpers.ts FULL, read here without importing the helpers' module graph.
if (process.env.PCD_TEST_FULL !== '1') {
  usePool();
  await useFastBignum();
  const preload = `--import=${new URL('./child-preload.mjs', import.meta.url).href}`;
  const options = process.env.NODE_OPTIONS ?? '';
  if (!options.includes(preload)) process.env.NODE_OPTIONS = `${options} ${preload}`.trim();
}
