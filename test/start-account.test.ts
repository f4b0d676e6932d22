/**
 * `pcd start`'s demo requester (issue 17, item 3; server/startdemo.ts): on a
 * folder it did not seed, start makes an account of its own instead of
 * issuing account 1 a new token (which revoked the real user's and let the
 * page look up as that user); on a folder it seeded, it uses the seeded
 * requester it recorded; either way a second start uses the same account.
 * Real `pcd start` processes on ephemeral ports. The two cases run side by
 * side (describe.concurrent: separate folders, processes and ports), each
 * stopping its own processes: a child costs a second or so of CPU to start.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it, type TestContext } from 'vitest';
import { createClient } from '../client/client.ts';
import { Store } from '../server/store.ts';
import { START_DEMO_META } from '../server/startdemo.ts';
import { spawnStart, startTestServer, stopChild, tempDir } from './helpers.ts';

/** The `pcd start` processes of one test, stopped when it ends (the tests run concurrently: each its own). */
function childrenOf(context: TestContext): ChildProcess[] {
  const children: ChildProcess[] = [];
  context.onTestFinished(async () => {
    for (const c of children.splice(0)) await stopChild(c);
  });
  return children;
}

interface Started {
  child: ChildProcess;
  url: string;
  token: string;
  accountId: number;
  output: string;
}

/** Runs `pcd start` on `dataDir` (plain only, no page) until it has printed its instructions. */
async function pcdStart(children: ChildProcess[], dataDir: string, extra: string[] = []): Promise<Started> {
  const started = await spawnStart(['--port', '0', '--data', dataDir, '--design', 'plain', '--no-ui', '--log-level', 'warn', ...extra], { blinded: false });
  const { child } = started;
  children.push(child);
  const out = `${started.stdout()}${started.stderr()}`;
  const url = /serving .+? on (http:\/\/[\d.:]+)/.exec(out)![1]!;
  const token = /^requester token:\s+(\S+)$/m.exec(out)![1]!;
  const accountId = Number(/^demo requester:.*\(account (\d+)\)$/m.exec(out)![1]);
  return { child, url, token, accountId, output: out };
}

async function stop(children: ChildProcess[], s: Started): Promise<void> {
  children.splice(children.indexOf(s.child), 1);
  expect(await stopChild(s.child)).toBe(0);
}

function recorded(dataDir: string): string | undefined {
  const store = Store.open(dataDir);
  try {
    return store.getMeta(START_DEMO_META);
  } finally {
    store.close();
  }
}

describe.concurrent('pcd start on a data folder it did not seed', () => {
  it("creates a demo account of its own and leaves every other account's token alone, on this start and the next", async (context) => {
    const children = childrenOf(context);
    // A folder made through the admin API: account 1 is a real user with its own token.
    const s = await startTestServer({ designs: ['plain'] });
    const alice = await s.admin.createAccount({ email: 'alice@example.org', numbers: ['+14155550101'], capabilities: ['messages'] });
    const bob = await s.admin.createAccount({ email: 'bob@example.org', numbers: ['+14155550102'], capabilities: ['messages'] });
    expect(alice.accountId).toBe(1);
    await s.close();

    const first = await pcdStart(children, s.dataDir);
    expect(first.output).toMatch(/created the demo requester pcd-start-demo@example\.invalid \(account 3\): this data folder was not seeded by pcd start/);
    expect(first.accountId).toBe(3);
    expect(first.token).not.toBe(alice.token);
    // Alice's and Bob's tokens still work; the demo token is another account's.
    for (const token of [alice.token, bob.token, first.token]) {
      const r = await createClient({ baseUrl: first.url, token, design: 'plain' }).lookup('+14155550102');
      expect([...r.capabilities]).toEqual(['messages']);
    }
    await stop(children, first);
    expect(recorded(s.dataDir)).toBe('3');

    // The next start: the same account (a fresh token for it, as start made it), no new account, still nobody else's token.
    const second = await pcdStart(children, s.dataDir);
    expect(second.output).not.toMatch(/created the demo requester/);
    expect(second.accountId).toBe(3);
    for (const token of [alice.token, bob.token, second.token]) {
      const r = await createClient({ baseUrl: second.url, token, design: 'plain' }).lookup('+14155550101');
      expect([...r.capabilities]).toEqual(['messages']);
    }
    await stop(children, second);
    const store = Store.open(s.dataDir);
    try {
      expect(store.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM accounts').get()!.n).toBe(3);
    } finally {
      store.close();
    }
  });

  it('on a folder it seeded, uses the seeded requester it recorded (the token in requesters.json), again on the next start', async (context) => {
    const children = childrenOf(context);
    const root = tempDir('pcd-start-');
    const dataDir = path.join(root, 'data');
    const first = await pcdStart(children, dataDir, ['--size', '40']);
    expect(first.output).toMatch(/^seeded 40 numbers/m);
    expect(first.output).not.toMatch(/created the demo requester/);
    const listed = JSON.parse(fs.readFileSync(path.join(dataDir, 'contacts', 'requesters.json'), 'utf8')) as { accountId: number; token: string }[];
    expect({ accountId: first.accountId, token: first.token }).toEqual({ accountId: listed[0]!.accountId, token: listed[0]!.token });
    await stop(children, first);
    expect(recorded(dataDir)).toBe(String(listed[0]!.accountId));

    const second = await pcdStart(children, dataDir);
    expect({ accountId: second.accountId, token: second.token }).toEqual({ accountId: listed[0]!.accountId, token: listed[0]!.token });
    // Every seeded requester's token still authenticates.
    for (const r of listed) expect((await createClient({ baseUrl: second.url, token: r.token, design: 'plain' }).lookup('+14155550101')).capabilities).toBeDefined();
    await stop(children, second);
  });
});
