// One-off measurement (not a bench section yet; node --import tsx bench/adhoc/<file>.ts [size]): registration through node b to the change delivered on node a (PgStore.follow), p50/p99.
import { startEmbeddedPostgres } from '../../server/pg/embedded.ts';
import { PgStore } from '../../server/pg/store.ts';
const pg = await startEmbeddedPostgres({ fast: false });
try {
  const url = await pg.createDatabase('prop');
  const a = await PgStore.open(url, { node: 'a' });
  const b = await PgStore.open(url, { node: 'b' });
  const waiting = new Map<string, number>();
  const lat: number[] = [];
  const f = await a.follow(0, (e) => {
    if (e.kind !== 'changes') return;
    for (const c of e.changes) {
      const t = waiting.get(c.number);
      if (t !== undefined) lat.push(performance.now() - t);
    }
  }, { pollMs: 1000 });
  const N = Number(process.argv[2] ?? 500);
  for (let i = 0; i < N; i++) {
    const number = `+1415${String(1000000 + i)}` as never;
    const res = b.createAccount({ email: `p${i}@x.test`, numbers: [number], mask: 1 }, Date.now());
    waiting.set(number, performance.now());
    await res;
    await new Promise((r) => setTimeout(r, 5));
  }
  while (lat.length < N) await new Promise((r) => setTimeout(r, 10));
  lat.sort((x, y) => x - y);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.ceil(p * lat.length) - 1)]!.toFixed(2);
  console.log(`${N} registrations through node b, delivered on node a: p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, max ${q(1)} ms (listening: ${f.listening})`);
  await f.close();
  await a.close();
  await b.close();
} finally {
  await pg.stop();
}
