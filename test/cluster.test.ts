/**
 * `pcd cluster` as a user runs it (a child process): a Postgres from npm
 * and three nodes; a registration through one answers on another in every
 * design, the leader killed (-9) during an epoch build hands the build to
 * another node, and Ctrl-C (SIGINT to the whole process group, as a
 * terminal sends it) stops everything in order: the nodes, each once, write
 * the log rows they hold to the store, then Postgres stops.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createClient } from '../client/index.ts';
import { startEmbeddedPostgres } from '../server/pg/embedded.ts';
import { FULL, PCD_BIN, tempDir } from './helpers.ts';

describe('pcd cluster', () => {
  const dir = path.join(tempDir('pcd-cluster-'), 'cluster');
  // Run as root (CI), Postgres runs as the postgres user, which must pass through the temporary folder (server/pg/embedded.ts).
  if (process.getuid?.() === 0) fs.chmodSync(path.dirname(dir), 0o711);
  afterAll(() => fs.rmSync(path.dirname(dir), { recursive: true, force: true, maxRetries: 5 }));

  it('starts Postgres and three nodes that share one directory and the blinded epochs; the leader killed during a build hands it over; Ctrl-C stops them all, the nodes first', async () => {
    // Evaluation inline in each node (PCD_EVAL_THREADS=0, as spawnServe's): three nodes' worker threads would add only their start;
    // two size classes: the test is not about them, and each class is an RSA-2048 key per epoch made by a node.
    // 5000 numbers: the leader's build of epoch 2 takes about a second (sodium, ~5000/s), and the kill below lands some
    // 10-25 ms after the build's first log line, well inside it. The full 20000 (each build four times as long) under PCD_TEST_FULL=1.
    const size = FULL ? 20_000 : 5_000;
    // A process group of its own, as a shell gives a command it runs: Ctrl-C below signals the whole group, as a terminal does.
    const child = spawn(process.execPath, [PCD_BIN, 'cluster', '--nodes', '3', '--dir', dir, '--port', '0', '--size', String(size), '--size-classes', '16,4096'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PCD_EVAL_THREADS: '0' },
      detached: true,
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    /** Waits until the cluster has printed a line matching `re`, and returns the match; throws, with the output, after `ms` or when the cluster exits. */
    const printed = async (re: RegExp, what: string, ms: number): Promise<RegExpExecArray> => {
      for (const t0 = Date.now(); ; await new Promise((r) => setTimeout(r, 50))) {
        const m = re.exec(out);
        if (m) return m;
        if (child.exitCode !== null || Date.now() - t0 > ms) throw new Error(`${what}: not printed within ${ms / 1000} s${child.exitCode !== null ? ` (the cluster exited with ${child.exitCode})` : ''}:\n${out}`);
      }
    };
    try {
      await printed(/Ctrl-C stops the nodes/, 'the cluster\'s start', 90_000);
      const nodes = [...out.matchAll(/^(node\d): (http:\/\/127\.0\.0\.1:\d+)\s+\(pid (\d+)/gm)].map((m) => ({ name: m[1]!, url: m[2]!, pid: Number(m[3]) }));
      expect(nodes.map((n) => n.name)).toEqual(['node1', 'node2', 'node3']);
      expect(out).toMatch(/^shared store: postgres:\/\/pcd:\*\*\*@127\.0\.0\.1:\d+\/pcd/m);
      expect(out).not.toContain(fs.readFileSync(path.join(dir, 'postgres.password'), 'utf8').trim());
      const adminToken = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
      const requester = (JSON.parse(fs.readFileSync(path.join(dir, 'contacts', 'requesters.json'), 'utf8')) as { token: string }[])[0]!;

      const res = await fetch(`${nodes[0]!.url}/v1/accounts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'new@pcd.example', numbers: ['+14155550123'], capabilities: ['messages'] }),
      });
      expect(res.status).toBe(201);
      const ask = (n: number, design: 'plain' | 'hashed' | 'blinded') => createClient({ baseUrl: nodes[n]!.url, token: requester.token, design }).lookupMany(['+14155550123']);
      let answer = await ask(2, 'plain');
      for (let t = 0; answer[0]!.capabilities.length === 0 && t < 5000; t += 50) {
        await new Promise((r) => setTimeout(r, 50));
        answer = await ask(2, 'plain');
      }
      expect(answer[0]!.capabilities).toEqual(['messages']);
      await printed(/epoch 1 built and stored by node\d/, 'the store of epoch 1', 60_000);
      // Every node serves epoch 1 before the rotation below (and the lookups through them).
      for (const n of nodes) {
        for (let t = 0; (await fetch(`${n.url}/v1/blinded/config`)).status !== 200; t += 50) {
          if (t > 10_000) throw new Error(`${n.name} does not serve epoch 1`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      expect((await ask(2, 'blinded'))[0]!.capabilities).toEqual(['messages']);

      // Rotate through a node that does not lead, and kill -9 the leader while it builds epoch 2.
      const leaderName = [...out.matchAll(/^(node\d) leads the shared store/gm)].at(-1)![1]!;
      const leader = nodes.find((n) => n.name === leaderName)!;
      const asked = nodes.find((n) => n !== leader)!;
      const rotation = fetch(`${asked.url}/v1/admin/rotate-key`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body: '{}' });
      const leaderLog = path.join(dir, `${leaderName}.log`);
      for (let t = 0; !/"epoch":2,[^\n]*"msg":"building epoch buckets"/.test(fs.readFileSync(leaderLog, 'utf8')); t += 20) {
        if (t > 30_000) throw new Error(`${leaderName} did not start building epoch 2`);
        await new Promise((r) => setTimeout(r, 20));
      }
      process.kill(leader.pid, 'SIGKILL');
      const rotated = await rotation;
      expect(rotated.status).toBe(201);
      expect(await rotated.json()).toMatchObject({ epoch: 2, previous: 1 });
      // The cluster prints the exit when it sees it and the stored epoch from its watch of the store, once a second:
      // either may come after the rotation has answered, so both are waited for, not read once.
      await printed(new RegExp(`${leaderName} \\(http://127\\.0\\.0\\.1:\\d+\\) exited \\(SIGKILL\\); the other nodes go on serving`), `${leaderName}'s exit`, 10_000);
      const builder = (await printed(/epoch 2 built and stored by (node\d)/, 'the store of epoch 2', 10_000))[1];
      expect(builder).toBeDefined();
      expect(builder).not.toBe(leaderName);
      for (const n of nodes.filter((x) => x !== leader)) {
        const i = nodes.indexOf(n);
        for (let t = 0; ((await (await fetch(`${n.url}/v1/blinded/config`, { headers: { accept: 'application/json' } })).json()) as { current: number }).current !== 2; t += 50) {
          if (t > 10_000) throw new Error(`${n.name} does not serve epoch 2`);
          await new Promise((r) => setTimeout(r, 50));
        }
        expect((await ask(i, 'blinded'))[0]!.capabilities).toEqual(['messages']);
        expect((await ask(i, 'hashed'))[0]!.capabilities).toEqual(['messages']);
      }

      // Lookups just before Ctrl-C: their log rows wait in the nodes' memory (a second's batch) when it comes.
      const last = '+14155550999';
      const survivors = nodes.filter((x) => x !== leader);
      for (const n of survivors) await createClient({ baseUrl: n.url, token: requester.token, design: 'plain' }).lookupMany([last]);
      // Ctrl-C in a terminal: SIGINT to every process of the foreground group, not only to the cluster.
      process.kill(-child.pid!, 'SIGINT');
      expect(await exited).toBe(0);
      // Every node and Postgres stopped: nothing listens any more.
      for (const n of nodes) await expect(fetch(n.url + '/v1/health')).rejects.toThrow();
      // The nodes stopped first, each once (no second signal cut its requests), and wrote their last rows before Postgres stopped:
      // no write failed, nothing was spilled to a node's folder, and the rows are in the store.
      expect(out).not.toMatch(/again: cutting/);
      for (const n of survivors) {
        expect(fs.readdirSync(path.join(dir, n.name)).filter((f) => f.startsWith('log-spill-'))).toEqual([]);
        expect(fs.readFileSync(path.join(dir, `${n.name}.log`), 'utf8')).not.toMatch(/query log write failed/);
      }
      const pgAgain = await startEmbeddedPostgres({ dataDir: path.join(dir, 'postgres'), password: fs.readFileSync(path.join(dir, 'postgres.password'), 'utf8').trim() });
      try {
        const c = new pg.Client({ connectionString: pgAgain.urlOf('pcd') });
        await c.connect();
        try {
          expect((await c.query('SELECT count(*)::int AS n FROM plain_log WHERE number = $1', [last])).rows[0].n).toBe(survivors.length);
        } finally {
          await c.end();
        }
      } finally {
        await pgAgain.stop();
      }
    } finally {
      // A failed run stops the cluster as Ctrl-C does (its nodes and its Postgres with it), and kills its whole process group
      // only if that hangs: nothing may go on writing into the folder afterAll removes.
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGINT');
        let timer: NodeJS.Timeout | undefined;
        const stopped = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 30_000)))]);
        clearTimeout(timer);
        if (!stopped) process.kill(-child.pid!, 'SIGKILL');
      }
    }
  }, 240_000);
});
