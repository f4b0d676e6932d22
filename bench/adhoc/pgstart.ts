// One-off measurement (not a bench section yet; node --import tsx bench/adhoc/<file>.ts [size]): a node joining a 10^7 shared store (no snapshot: the COPY scan), then its restart (snapshot + journal).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startEmbeddedPostgres } from '../../server/pg/embedded.ts';
import { PgStore } from '../../server/pg/store.ts';
import { seedStore } from '../../server/cli.ts';
import { startServer } from '../../server/server.ts';
const SIZE = Number(process.argv[2] ?? 1e7);
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-pgstart-'));
fs.chmodSync(root, 0o711);
const pg = await startEmbeddedPostgres({ fast: false });
try {
  const url = await pg.createDatabase('start');
  const s = await PgStore.open(url);
  let t = performance.now();
  await seedStore(s, 'pg', path.join(root, 'c'), { size: SIZE, requesters: 0 });
  console.log(`seeded ${SIZE} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  await s.close();
  const logger = pino({ level: 'warn' });
  for (const [what, dir] of [['joining (no snapshot: scan)', 'n1'], ['restart (snapshot + journal)', 'n1'], ['second node joining', 'n2']] as const) {
    t = performance.now();
    const srv = await startServer({ store: url, designs: ['plain', 'hashed'], dataDir: path.join(root, dir), port: 0, rateLimits: false, adminToken: 'x'.repeat(43), logger });
    await srv.ready;
    const secs = (performance.now() - t) / 1000;
    console.log(`${what}: serving in ${secs.toFixed(1)} s (${srv.directory.size} numbers, source ${srv.directorySource}, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB)`);
    await srv.close();
  }
} finally {
  await pg.stop();
  fs.rmSync(root, { recursive: true, force: true });
}
