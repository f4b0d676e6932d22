/**
 * vitest setup file (vitest.config.ts setupFiles), run in each worker
 * before a test file: the suite does not depend on the caller's
 * environment. Every PCD_* variable is deleted except the ones that tune
 * the suite itself, so a shell with PCD_ADMIN_TOKEN, PCD_SERVER or
 * PCD_TOKEN exported (as `pcd start` tells a user to) runs the same tests;
 * children the tests spawn inherit the cleaned environment. A test that
 * wants one of them sets it itself (runPcd's `env`, a child's `env`).
 */
export const SUITE_ENV = new Set([
  'PCD_TEST_FULL', // full strength (test/helpers.ts FULL)
  'PCD_TEST_PG_URL', // a running Postgres instead of the embedded one (test/pg-global-setup.ts)
  'PCD_TEST_RSA_CLAIMS', // the run's claims on the RSA key pool (test/keys-global-setup.ts, test/rsa-pool.mjs)
  'PCD_CROSSCHECK_SEED', // the backend cross-checks' seed (test/backend-crosscheck.ts)
  'PCD_FUZZ_SEED', // the fuzz tests' seed, runs and report (test/fuzz.test.ts)
  'PCD_FUZZ_RUNS',
  'PCD_FUZZ_VERBOSE',
  'PCD_CHROMIUM', // the browser the page test drives (web/screenshot.ts)
  'PCD_SOURCES', // children from the sources through tsx, not the bundle of npm run build (launch/launch.mjs)
]);

for (const name of Object.keys(process.env)) {
  if (name.startsWith('PCD_') && !SUITE_ENV.has(name)) delete process.env[name];
}
