/**
 * A server whose output has no reader any more: `pcd serve 2>&1 | tee
 * server.out` stopped with Ctrl-C, which ends tee with the server. The
 * server's next line (the "finishing in-flight requests" one, a log line)
 * meets a closed pipe (EPIPE). It must still finish its shutdown: on a
 * shared Postgres store, whose writes are asynchronous, the query log rows
 * that wait in memory are written before it exits 0, not lost with a
 * crashed process (no write, no spill file, no warning: what it did before).
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { PATHS } from '../shared/messages.ts';
import { PgStore } from '../server/pg/store.ts';
import { REQUESTERS_FILE, seedStore } from '../server/seed.ts';
import { ADMIN_TOKEN, TEST_SIZE_CLASSES, spawnServe, tempDir } from './helpers.ts';
import { freshDatabase } from './stores.ts';

describe('a server whose output pipe is closed', () => {
  const root = tempDir('pcd-output-gone-');
  const drops: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const d of drops) await d();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('stops on SIGINT all the same, and writes every pending log row to the shared store', async () => {
    const db = await freshDatabase('pcd_output_gone');
    drops.push(db.drop);
    const contacts = path.join(root, 'contacts');
    const store = await PgStore.open(db.url);
    try {
      await seedStore(store, 'the test database', contacts, { size: 200, requesters: 1, contactsPerRequester: 20 });
    } finally {
      await store.close();
    }
    const token = (JSON.parse(fs.readFileSync(path.join(contacts, REQUESTERS_FILE), 'utf8')) as { token: string }[])[0]!.token;
    const data = path.join(root, 'node');
    // Log lines on stderr (info), as a terminal's `2>&1 | tee` takes them. The plain log batches its rows for a second
    // (server/querylog.ts): the ones below are still in memory at the signal, sent as soon as they are answered.
    const server = await spawnServe(['--data', data, '--store', db.url, '--design', 'plain', '--log-level', 'info', '--size-classes', TEST_SIZE_CLASSES.join(',')], {
      PCD_ADMIN_TOKEN: ADMIN_TOKEN,
    });
    const numbers = ['+14155550101', '+14155550102', '+14155550103'];
    const res = await fetch(server.url + PATHS.plainLookup, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ numbers }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();

    // tee is gone: the read ends of the server's stdout and stderr close, then the signal.
    server.child.stdout!.destroy();
    server.child.stderr!.destroy();
    const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => server.child.once('exit', (code, signal) => resolve([code, signal])));
    server.child.kill('SIGINT');
    expect(await exit).toEqual([0, null]);

    expect(fs.readdirSync(data).filter((f) => f.startsWith('log-spill-'))).toEqual([]);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const { rows } = await c.query<{ number: string }>('SELECT number FROM plain_log ORDER BY id');
      expect(rows.map((r) => r.number)).toEqual(numbers);
    } finally {
      await c.end();
    }
  });
});
