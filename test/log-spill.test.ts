/**
 * A shutdown while the disk is still full keeps every acknowledged lookup
 * (issue 17, item 5; server/querylog.ts "Shutdown while the database still
 * cannot be written"): the rows the last flush cannot write are spilled to
 * `log-spill-<table>.json` (0600; the table's rows, nothing more), and the
 * next start writes them to the log and removes the file. The disk is
 * filled as test/disk-full.test.ts does: SQLite's `max_page_count` on the
 * server's own connection.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { createClient } from '../client/client.ts';
import { logSpillFile } from '../disk/files.ts';
import { LOG_TABLES } from '../shared/designs/index.ts';
import { columnNames, type RowLogTable } from '../shared/logs.ts';
import { logHealth } from '../server/loghealth.ts';
import { CountingLog } from '../server/querylog.ts';
import { Store } from '../server/store.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { startTestServer, tempDir, testClock, type TestServer } from './helpers.ts';

const open: TestServer[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => {});
});

function captureLogger() {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines, text: () => lines.map((l) => JSON.stringify(l)).join('\n') };
}

const count = (db: Store['db'], table: string) => db.prepare<[], { n: number }>(`SELECT count(*) AS n FROM ${table}`).get()!.n;

describe('a shutdown on a full disk', () => {
  it('spills the rows it cannot write (0600, the rows only), and the next start writes every acknowledged lookup and removes the files', async () => {
    const numbers = sampleNumbers({ count: 40, seed: 'log-spill', regions: ['US'] });
    const secret = numbers[39]!; // looked up, never registered
    const cap = captureLogger();
    const s = await startTestServer({ designs: ['plain', 'hashed'], logger: cap.logger });
    open.push(s);
    const email = `asker-${'x'.repeat(200)}@example.org`; // long rows fill pages fast
    const { token } = await s.admin.createAccount({ email, numbers: [numbers[0]!], capabilities: ['messages'] });
    const plain = createClient({ baseUrl: s.server.url, token, design: 'plain' });
    const hashed = createClient({ baseUrl: s.server.url, token, design: 'hashed' });
    const acked = { plain: 0, hashed: 0 };
    const round = async () => {
      await plain.lookup(secret);
      acked.plain++;
      await hashed.lookup(secret);
      acked.hashed++;
    };
    for (let i = 0; i < 5; i++) await round();
    s.server.store.db.pragma('max_page_count = 1'); // full: no page beyond the current size
    const failing = () => logHealth(s.server.store).filter((l) => l.failing && l.pending > 0).length;
    for (let i = 0; i < 2000 && failing() < 2; i++) await round();
    expect(failing()).toBe(2);
    for (let i = 0; i < 5; i++) await round(); // acknowledged while failing
    const pending = Object.fromEntries(logHealth(s.server.store).map((l) => [l.table, l.pending]));
    expect(pending.plain_log).toBeGreaterThan(0);

    await s.close(); // what SIGTERM runs (bin/commands/server.ts onSignals)
    open.splice(0);
    const spilled = cap.lines.filter((l) => /spilled to a file the next start writes/.test(l.msg));
    expect(spilled.map((l) => [l.table, l.rows]).sort()).toEqual([
      ['hashed_log', pending.hashed_log],
      ['plain_log', pending.plain_log],
    ]);
    expect(cap.lines.some((l) => /they are lost/.test(l.msg))).toBe(false);
    expect(cap.text()).not.toContain(secret); // the server log names no number

    for (const table of ['plain_log', 'hashed_log']) {
      const file = path.join(s.dataDir, logSpillFile(table));
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      const spill = JSON.parse(fs.readFileSync(file, 'utf8'));
      expect(Object.keys(spill).sort()).toEqual(['kind', 'rows', 'table']);
      expect(spill).toMatchObject({ table, kind: 'rows' });
      expect(spill.rows).toHaveLength(pending[table]!);
      const declared = LOG_TABLES.find((t) => t.name === table)!;
      for (const row of spill.rows) expect(row).toHaveLength(columnNames(declared as RowLogTable).length); // the table's columns, nothing more
    }
    expect(fs.readFileSync(path.join(s.dataDir, logSpillFile('plain_log')), 'utf8')).toContain(secret);
    expect(fs.existsSync(path.join(s.dataDir, `${logSpillFile('plain_log')}.tmp`))).toBe(false);

    // The next start (room again: max_page_count belongs to the closed connection) writes them and removes the files.
    const cap2 = captureLogger();
    const again = await startTestServer({ dataDir: s.dataDir, designs: ['plain', 'hashed'], logger: cap2.logger });
    open.push(again);
    expect(count(again.server.store.db, 'plain_log')).toBe(acked.plain);
    expect(count(again.server.store.db, 'hashed_log')).toBe(acked.hashed);
    for (const table of ['plain_log', 'hashed_log']) expect(fs.existsSync(path.join(s.dataDir, logSpillFile(table)))).toBe(false);
    expect(cap2.lines.filter((l) => /spilled at the last shutdown are written/.test(l.msg)).map((l) => l.table).sort()).toEqual(['hashed_log', 'plain_log']);
    // The replayed rows are the acknowledged ones: the number, the account, the hash as a BLOB.
    const hashRow = again.server.store.db.prepare<[], { h: Buffer }>('SELECT hash AS h FROM hashed_log ORDER BY rowid DESC LIMIT 1').get();
    expect(hashRow?.h).toBeInstanceOf(Buffer);
    expect(hashRow?.h.length).toBe(32);
    expect(again.server.store.db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM plain_log WHERE number = ?').get(secret)!.n).toBe(acked.plain);
  });
});

describe('a CountingLog spill', () => {
  it('replays its windows with their counts and removes the file once they are written', () => {
    const dir = tempDir();
    const clock = testClock();
    const store = Store.open(dir);
    try {
      const log = new CountingLog<[string, number, number]>(store.db, 'blinded_bucket_log', ['ip', 'epoch', 'bucket'], clock.now, 60_000, { intervalMs: 60_000, spillDir: dir });
      store.db.pragma('max_page_count = 1');
      for (let i = 0; i < 300; i++) log.add([`198.51.100.${i % 250}`, 1, i % 7]);
      log.flush();
      const before = log.pendingEvents;
      log.close();
      expect(before).toBeGreaterThan(0);
      expect(fs.existsSync(path.join(dir, logSpillFile('blinded_bucket_log')))).toBe(true);
      store.db.pragma('max_page_count = 1073741823');
      const again = new CountingLog<[string, number, number]>(store.db, 'blinded_bucket_log', ['ip', 'epoch', 'bucket'], clock.now, 60_000, { intervalMs: 60_000, spillDir: dir });
      again.replaySpill();
      expect(again.pending).toBe(0);
      expect(store.db.prepare<[], { n: number }>('SELECT coalesce(sum(count), 0) AS n FROM blinded_bucket_log').get()!.n).toBe(300);
      expect(fs.existsSync(path.join(dir, logSpillFile('blinded_bucket_log')))).toBe(false);
      again.close();
    } finally {
      store.close();
    }
  });
});
