/**
 * SIGTERM under load, on the real command: `pcd serve` in a child process,
 * clients keep looking numbers up in every design, the server gets SIGTERM
 * mid-load. It must stop accepting, finish what is in flight, flush its
 * query logs and exit 0, and every lookup it acknowledged (a 200 the client
 * received) must be in the log it leaves behind. Requests that come after
 * the signal are refused with a coded 503, or find the port closed: never a
 * 500 and never an answer that was not logged.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { createClient } from '../client/client.ts';
import type { E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/designs/hashed.ts';
import { PATHS } from '../shared/messages.ts';
import { REQUESTERS_FILE, seedDataFolder } from '../server/seed.ts';
import { ADMIN_TOKEN, TEST_SIZE_CLASSES, spawnServe, stopChild, tempDir } from './helpers.ts';

describe('SIGTERM under load', () => {
  const root = tempDir('pcd-shutdown-');
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('finishes in-flight requests, flushes the logs and exits 0; no acknowledged lookup is missing from the log', async () => {
    const data = path.join(root, 'data');
    const contacts = path.join(root, 'contacts');
    await seedDataFolder(data, contacts, { size: 500, requesters: 1 });
    const token = (JSON.parse(fs.readFileSync(path.join(contacts, REQUESTERS_FILE), 'utf8')) as { token: string }[])[0]!.token;
    // Four token size classes (test/helpers.ts TEST_SIZE_CLASSES): the default thirty-one are as many RSA keys to make at start.
    const server = await spawnServe(['--data', data, '--no-rate-limit', '--shutdown-timeout', '5', '--eval-threads', '1', '--size-classes', TEST_SIZE_CLASSES.join(',')], { PCD_ADMIN_TOKEN: ADMIN_TOKEN });

    const acked = { plain: new Set<string>(), hashed: new Set<string>(), blindedElements: 0, blindedRequests: 0 };
    const refusals: number[] = [];
    let next = 0;
    let signalled = false;
    const fresh = () => `+1415555${String(next++).padStart(4, '0')}`;
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };

    /** One client loop: a design's lookups, back to back, until the server is gone. */
    const loop = async (design: 'plain' | 'hashed' | 'blinded'): Promise<void> => {
      const blinded = createClient({ baseUrl: server.url, token, design: 'blinded', backend: 'sodium' });
      for (;;) {
        const numbers = [fresh(), fresh(), fresh()];
        try {
          if (design === 'blinded') {
            const stats = (blinded.design as unknown as { stats: { elementsEvaluated: number; evaluateRequests: number } }).stats;
            const before = { elements: stats.elementsEvaluated, requests: stats.evaluateRequests };
            await blinded.lookupMany(numbers);
            acked.blindedElements += stats.elementsEvaluated - before.elements;
            acked.blindedRequests += stats.evaluateRequests - before.requests;
            continue;
          }
          const body = design === 'plain' ? { numbers } : { hashes: numbers.map((n) => Buffer.from(hashNumber(n as E164)).toString('base64')) };
          const res = await fetch(server.url + (design === 'plain' ? PATHS.plainLookup : PATHS.hashedLookup), { method: 'POST', headers, body: JSON.stringify(body) });
          if (res.status === 200) {
            await res.arrayBuffer();
            for (const n of numbers) acked[design].add(n);
          } else {
            refusals.push(res.status);
            await res.arrayBuffer();
            if (signalled) return;
          }
        } catch (e) {
          const code = (e as { code?: string }).code;
          if (code !== undefined && code !== 'network' && code !== 'unavailable') throw e;
          if (!signalled && code === undefined) throw e;
          if (signalled) return; // connection refused or cut: the server is going
        }
      }
    };

    const loops = [loop('plain'), loop('plain'), loop('hashed'), loop('hashed'), loop('blinded')];
    while (acked.plain.size < 300 || acked.hashed.size < 300 || acked.blindedElements < 30) await new Promise((r) => setTimeout(r, 20));
    signalled = true;
    const exit = await stopChild(server.child, 'SIGTERM');
    await Promise.all(loops);

    expect(exit, server.output()).toBe(0);
    expect(server.output()).toMatch(/SIGTERM: finishing in-flight requests/);
    expect(refusals.filter((s) => s !== 503), `statuses after SIGTERM: ${refusals.join(',')}`).toEqual([]);

    const db = new Database(path.join(data, 'pcd.sqlite'), { readonly: true });
    try {
      const plain = new Set(db.prepare<[], { number: string }>('SELECT number FROM plain_log').all().map((r) => r.number));
      const missingPlain = [...acked.plain].filter((n) => !plain.has(n));
      expect(missingPlain).toEqual([]);
      const hashed = new Set(db.prepare<[], { hash: Buffer }>('SELECT hash FROM hashed_log').all().map((r) => r.hash.toString('hex')));
      const missingHashed = [...acked.hashed].filter((n) => !hashed.has(Buffer.from(hashNumber(n as E164)).toString('hex')));
      expect(missingHashed).toEqual([]);
      // Evaluate is paid with tokens (the default): its log counts requests per minute and size class, and every
      // acknowledged request's token is in the spent store.
      const requests = db.prepare<[], { n: number | null }>('SELECT sum(count) AS n FROM blinded_token_eval_log').get()!.n ?? 0;
      expect(requests).toBeGreaterThanOrEqual(acked.blindedRequests);
      const spent = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM spent_tokens').get()!.n;
      expect(spent).toBeGreaterThanOrEqual(acked.blindedRequests);
      expect(db.prepare<[], { n: number }>('SELECT count(*) AS n FROM blinded_eval_log').get()!.n).toBe(0);
    } finally {
      db.close();
    }
  });
});
