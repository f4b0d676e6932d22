// One-off measurement (not a bench section yet; node --import tsx bench/adhoc/<file>.ts [size] [designs]): a shared store of
// 10^7 numbers; node 1 joins (no snapshot: the COPY scan) and, leading, builds the blinded epoch and stores it; node 2 joins
// (the scan, the epoch loaded from the store, not rebuilt); then node 2 restarts (its snapshot and the journal, the epoch loaded).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startEmbeddedPostgres } from '../../server/pg/embedded.ts';
import { PgStore } from '../../server/pg/store.ts';
import { seedStore } from '../../server/seed.ts';
import { startServer, type RunningServer } from '../../server/server.ts';
import { designOf } from '../../server/designs/index.ts';
import type { DesignName } from '../../shared/messages.ts';

const SIZE = Number(process.argv[2] ?? 1e7);
const DESIGNS = (process.argv[3] ?? 'plain,hashed,blinded').split(',') as DesignName[];
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-pgstart-'));
fs.chmodSync(root, 0o711);
const pg = await startEmbeddedPostgres({ fast: false });
const running: RunningServer[] = [];
try {
  const url = await pg.createDatabase('start');
  const s = await PgStore.open(url);
  let t = performance.now();
  await seedStore(s, 'pg', path.join(root, 'c'), { size: SIZE, requesters: 0 });
  console.log(`seeded ${SIZE} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  await s.close();
  const logger = pino({ level: 'warn' });
  const masterKeyFile = path.join(root, 'master.key');
  const start = async (what: string, dir: string) => {
    t = performance.now();
    const srv = await startServer({ store: url, designs: DESIGNS, dataDir: path.join(root, dir), nodeName: dir, masterKeyFile, port: 0, rateLimits: false, adminToken: 'x'.repeat(43), logger, bucketBits: 8 });
    await srv.ready;
    const secs = (performance.now() - t) / 1000;
    const blinded = designOf(srv.designs, 'blinded');
    const st = blinded?.epochs.stats;
    console.log(
      `${what}: serving in ${secs.toFixed(1)} s (${srv.directory.size} numbers, directory from ${srv.directorySource}` +
        (st ? `; epochs built ${st.builds}, loaded ${st.cacheLoads}${st.lastBuild ? `, build ${st.lastBuild.seconds.toFixed(1)} s` : ''}${st.lastLoad ? `, load ${st.lastLoad.seconds.toFixed(1)} s` : ''}` : '') +
        `; rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB)`,
    );
    return srv;
  };
  running.push(await start('node 1 joining, leading (scan, build, store)', 'n1'));
  // The leader stores the table right after its build; give the store a moment to commit before node 2 reads it.
  for (let i = 0; i < 600; i++) {
    const { rows } = await running[0]!.context.shared!.pool.query('SELECT count(*)::int AS n FROM epoch_table_heads');
    if (rows[0].n > 0) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const n2 = await start('node 2 joining (scan, epoch loaded from the store)', 'n2');
  await n2.close();
  running.push(await start('node 2 restarting (snapshot + journal, epoch loaded)', 'n2'));
} finally {
  for (const r of running) await r.close().catch(() => {});
  await pg.stop();
  fs.rmSync(root, { recursive: true, force: true });
}
