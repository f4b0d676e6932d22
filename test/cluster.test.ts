/**
 * `pcd cluster` as a user runs it (a child process): a Postgres from npm
 * and two nodes; a registration through one answers on the other, a node
 * killed leaves the other serving, and SIGINT stops everything.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createClient } from '../client/index.ts';
import { PCD_BIN, tempDir } from './helpers.ts';

describe('pcd cluster', () => {
  const dir = path.join(tempDir('pcd-cluster-'), 'cluster');
  // Run as root (CI), Postgres runs as the postgres user, which must pass through the temporary folder (server/pg/embedded.ts).
  if (process.getuid?.() === 0) fs.chmodSync(path.dirname(dir), 0o711);
  afterAll(() => fs.rmSync(path.dirname(dir), { recursive: true, force: true }));

  it('starts Postgres and two nodes that share one directory; a node killed leaves the other serving; SIGINT stops them all', async () => {
    const child = spawn(process.execPath, [PCD_BIN, 'cluster', '--nodes', '2', '--dir', dir, '--port', '0', '--size', '300'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      for (let t = 0; !out.includes('Ctrl-C stops the nodes'); t += 100) {
        if (t > 90_000 || child.exitCode !== null) throw new Error(`the cluster did not start:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const nodes = [...out.matchAll(/^(node\d): (http:\/\/127\.0\.0\.1:\d+)\s+\(pid (\d+)/gm)].map((m) => ({ name: m[1]!, url: m[2]!, pid: Number(m[3]) }));
      expect(nodes.map((n) => n.name)).toEqual(['node1', 'node2']);
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
      const ask = () => createClient({ baseUrl: nodes[1]!.url, token: requester.token, design: 'plain' }).lookupMany(['+14155550123']);
      let answer = await ask();
      for (let t = 0; answer[0]!.capabilities.length === 0 && t < 5000; t += 50) {
        await new Promise((r) => setTimeout(r, 50));
        answer = await ask();
      }
      expect(answer[0]!.capabilities).toEqual(['messages']);

      process.kill(nodes[0]!.pid, 'SIGKILL');
      for (let t = 0; !out.includes('node1 (') && t < 5000; t += 50) await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(/node1 \(http:\/\/127\.0\.0\.1:\d+\) exited \(SIGKILL\); the other nodes go on serving/);
      expect((await createClient({ baseUrl: nodes[1]!.url, token: requester.token, design: 'hashed' }).lookupMany(['+14155550123']))[0]!.capabilities).toEqual(['messages']);

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      // Every node and Postgres stopped: nothing listens any more.
      await expect(fetch(nodes[1]!.url + '/v1/health')).rejects.toThrow();
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 150_000);
});
