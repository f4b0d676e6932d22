/**
 * Loaded by every Node process the tests start (NODE_OPTIONS --import, set
 * by test/setup-crypto.ts except under PCD_TEST_FULL=1): RSA-2048 token keys
 * from the run's pool (test/rsa-pool.mjs), as in the test process itself.
 * Nothing else of the process changes.
 */
import { usePool } from './rsa-pool.mjs';

if (process.env.PCD_TEST_FULL !== '1') usePool();
