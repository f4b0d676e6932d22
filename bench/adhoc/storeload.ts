// One-off measurement (not a bench section yet; node --import tsx bench/adhoc/<file>.ts [size]): plain single lookups over HTTP, a SQLite-backed node against a Postgres-backed node, taking turns.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { startEmbeddedPostgres, freePort } from '../../server/pg/embedded.ts';
import { PgStore } from '../../server/pg/store.ts';
import { seedDataFolder, seedStore } from '../../server/cli.ts';

const SIZE = Number(process.argv[2] ?? 100000);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-storeload-'));
fs.chmodSync(root, 0o711);
const pg = await startEmbeddedPostgres({ fast: false });
const url = await pg.createDatabase('load');
const pgs = await PgStore.open(url);
const pgSeed = await seedStore(pgs, 'pg', path.join(root, 'c-pg'), { size: SIZE, requesters: 1, contactsPerRequester: 200 });
await pgs.close();
const sq = await seedDataFolder(path.join(root, 'data-sqlite'), path.join(root, 'c-sq'), { size: SIZE, requesters: 1, contactsPerRequester: 200 });
const bin = path.resolve('bin/pcd.mjs');
async function node(args: string[]) {
  const port = await freePort();
  const c = spawn(process.execPath, [bin, 'serve', '--port', String(port), '--design', 'plain,hashed', '--no-rate-limit', '--no-ui', '--log-level', 'warn', ...args], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PCD_ADMIN_TOKEN: 'x'.repeat(43) } });
  for (;;) { try { if ((await fetch(`http://127.0.0.1:${port}/v1/health`)).ok) break; } catch {} await new Promise((r) => setTimeout(r, 100)); }
  return { port, c };
}
const a = await node(['--data', path.join(root, 'data-sqlite')]);
const b = await node(['--data', path.join(root, 'data-pg'), '--store', url, '--node-name', 'b']);
// A second node on the same store: on two cores it cannot add throughput, so it shows correctness under load.
const b2 = await node(['--data', path.join(root, 'data-pg2'), '--store', url, '--node-name', 'b2']);
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
const numbers = fs.readFileSync(sq.requesters[0]!.contacts, 'utf8').trim().split('\n');
async function load(port: number | number[], token: string, ms: number): Promise<number> {
  const ports = Array.isArray(port) ? port : [port];
  let n = 0;
  const end = Date.now() + ms;
  const one = () => new Promise<void>((resolve, reject) => {
    const body = JSON.stringify({ numbers: [numbers[n % numbers.length]] });
    const req = http.request({ host: '127.0.0.1', port: ports[n % ports.length], path: '/v1/plain/lookup', method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' } }, (res) => { res.resume(); res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(String(res.statusCode))))); });
    req.on('error', reject);
    req.end(body);
  });
  await Promise.all(Array.from({ length: 4 }, async () => { while (Date.now() < end) { await one(); n++; } }));
  return n / (ms / 1000);
}
const rounds: [number, number, number][] = [];
for (let r = 0; r < 3; r++) {
  const s = await load(a.port, sq.requesters[0]!.token, 8000);
  const p = await load(b.port, pgSeed.requesters[0]!.token, 8000);
  const p2 = await load([b.port, b2.port], pgSeed.requesters[0]!.token, 8000);
  rounds.push([s, p, p2]);
  console.log(`round ${r + 1}: sqlite ${s.toFixed(0)} lookups/s, postgres 1 node ${p.toFixed(0)}, 2 nodes ${p2.toFixed(0)}; ratios ${(p / s).toFixed(3)}, ${(p2 / s).toFixed(3)}`);
}
const sum = (i: number) => rounds.reduce((x, r) => x + r[i]!, 0);
console.log(`plain single lookups, c=4, ${SIZE} numbers: postgres / sqlite = ${(sum(1) / sum(0)).toFixed(3)} (1 node), ${(sum(2) / sum(0)).toFixed(3)} (2 nodes, requests alternating)`);
a.c.kill('SIGTERM'); b.c.kill('SIGTERM'); b2.c.kill('SIGTERM');
await new Promise((r) => setTimeout(r, 3000));
await pg.stop();
fs.rmSync(root, { recursive: true, force: true });
