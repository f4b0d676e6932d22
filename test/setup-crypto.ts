/**
 * vitest setup file (vitest.config.ts setupFiles): two costs of the suite
 * that are not what it tests, cut in this process, except under
 * PCD_TEST_FULL=1 (CI), where both run as in production:
 * - RSA-2048 token keys for the in-process servers come from a pool made
 *   ahead (test/rsa-pool.ts): ~0.2 s of CPU each otherwise, four per server
 *   and epoch;
 * - the client's blind RSA computes sjcl's mod, mulmod, powermod and inverseMod with
 *   BigInt (test/fast-bignum.ts): ~35 ms of CPU per token otherwise.
 * What the servers and clients do with the keys and tokens is unchanged.
 */
import { useFastBignum } from './fast-bignum.ts';
import { usePool } from './rsa-pool.ts';

// test/helpers.ts FULL, read here without importing the helpers' module graph.
if (process.env.PCD_TEST_FULL !== '1') {
  usePool();
  await useFastBignum();
}
