/**
 * vitest global setup: one real Postgres (server/pg/embedded.ts) for the
 * whole run, whose URL the store suites receive through `inject('pgUrl')`
 * and under which each suite makes a database of its own
 * (test/stores.ts). PCD_TEST_PG_URL uses a running server instead.
 *
 * When it cannot start, the suites' Postgres cases fail with the reason
 * (`inject('pgError')`): a store test that skips itself would hide exactly
 * what CI is there to show.
 */
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../server/pg/embedded.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
    pgError: string;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const given = process.env.PCD_TEST_PG_URL;
  if (given) {
    project.provide('pgUrl', given);
    project.provide('pgError', '');
    return undefined;
  }
  let pg: EmbeddedPostgres | undefined;
  try {
    pg = await startEmbeddedPostgres({ fast: true });
    project.provide('pgUrl', pg.url);
    project.provide('pgError', '');
  } catch (e) {
    project.provide('pgUrl', '');
    project.provide('pgError', `the embedded Postgres did not start: ${(e as Error).message}`);
  }
  return async () => {
    await pg?.stop();
  };
}
