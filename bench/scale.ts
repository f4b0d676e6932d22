/**
 * Scale: a directory of N numbers seeded through the ordinary path
 * (bench/seeding.ts: synth/'s generator into the store's bulk
 * insert, what `pcd seed` runs), then one server child serving all three
 * designs over it, timed from the fork:
 *
 *   fork ── listening ── blinded serving (GET /v1/blinded/config 200)
 *                         │ RSS after a full GC, peak RSS, the epoch build's own report
 *                         │ register one number (admin API), ~1 s, kill -9
 *   fork ── listening ── blinded serving again (epoch cache + journal)
 *                         │ the new number, looked up through the real blinded client
 *
 * and the issue's targets judged from what was measured (met or not; a
 * target whose size was not run is not judged): 10^6 seeded and serving
 * within 240 s; a restart after kill -9 serving within 30 s; 10^7 built
 * within 30 min with RSS <= 1 GB across the three designs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createAdminClient, createClient } from '../client/client.ts';
import { DESIGNS } from '../shared/messages.ts';
import type { BackendName } from '../shared/suite.ts';
import type { E164 } from '../shared/e164.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { Store } from '../server/store.ts';
import { forkServer, openTimeoutMs, waitBlindedServing, type ServerChild } from '../harness/fork.ts';
import type { ScaleMark, ScaleTarget } from './results.ts';
import { BENCH_ADMIN_TOKEN, seedFolder, tempRoot } from './seeding.ts';
import { formatBytes, formatSeconds } from './stats.ts';

export interface ScaleConfig {
  sizes: number[];
  /** Crypto backend of the server (default sodium, the server's default). */
  backend: BackendName;
  bucketBits: number;
  /** Pause between the registration's 201 and kill -9. */
  killAfterMs: number;
}

export interface ScaleOutcome {
  marks: ScaleMark[];
  notes: string[];
}

const GB = 1e9;

/** The issue's targets; `size` is the directory they speak of. */
export function judgeTargets(m: Omit<ScaleMark, 'targets'>): ScaleTarget[] {
  const out: ScaleTarget[] = [];
  if (m.numbers === 1_000_000) {
    const total = m.seedSeconds + m.blindedServingSeconds;
    out.push({
      target: '10^6 numbers seeded and blinded serving',
      limit: '<= 240 s in total',
      measured: `${formatSeconds(total)} (seed ${formatSeconds(m.seedSeconds)} + fork to serving ${formatSeconds(m.blindedServingSeconds)})`,
      met: total <= 240,
    });
  }
  if (m.restart) {
    out.push({
      target: `restart after kill -9 serving again (${m.numbers.toLocaleString('en-US')} numbers)`,
      limit: '<= 30 s',
      measured: `${formatSeconds(m.restart.blindedServingSeconds)} (fork to blinded config 200${m.restart.epochSource ? `, epoch from ${m.restart.epochSource}` : ''})`,
      met: m.restart.blindedServingSeconds <= 30,
    });
    out.push({
      target: 'the number registered just before kill -9 answers after the restart',
      limit: "blinded lookup through the real client shows 'messages'",
      measured: m.restart.capabilities.length > 0 ? m.restart.capabilities.join(', ') : 'SMS only (not registered)',
      met: m.restart.answersMessages,
    });
  }
  if (m.numbers === 10_000_000) {
    out.push({
      target: '10^7 numbers built (fork to blinded serving)',
      limit: '<= 30 min',
      measured: formatSeconds(m.blindedServingSeconds) + (m.buildSeconds !== undefined ? ` (the epoch build ${formatSeconds(m.buildSeconds)})` : ''),
      met: m.blindedServingSeconds <= 1800,
    });
    out.push({
      target: '10^7 numbers: server RSS with plain, hashed and blinded loaded',
      limit: '<= 1 GB',
      measured: `${formatBytes(m.rssBytes)} after GC (${(m.rssBytes / GB).toFixed(2)} GB); peak ${formatBytes(m.peakRssBytes)} during the build`,
      met: m.rssBytes <= GB,
    });
    out.push({
      target: '10^7 numbers: peak server RSS (build included)',
      limit: '<= 1 GB',
      measured: `${formatBytes(m.peakRssBytes)} (${(m.peakRssBytes / GB).toFixed(2)} GB)`,
      met: m.peakRssBytes <= GB,
    });
  }
  return out;
}

interface Served {
  child: ServerChild;
  url: string;
  listeningSeconds: number;
  blindedServingSeconds: number;
}

/** Forks a server child on `dataDir` (all designs) and waits until blinded serves; times from the fork (a new process, never a reused one). */
async function serve(dataDir: string, numbers: number, config: ScaleConfig): Promise<Served> {
  const t0 = performance.now();
  const child = forkServer({}, { fresh: true });
  try {
    const started = await child.start(
      { dataDir, designs: [...DESIGNS], bucketBits: config.bucketBits, adminToken: BENCH_ADMIN_TOKEN, progress: false, backend: config.backend },
      openTimeoutMs(numbers),
      true,
    );
    const listeningSeconds = (performance.now() - t0) / 1000;
    await waitBlindedServing(started.url, openTimeoutMs(numbers));
    return { child, url: started.url, listeningSeconds, blindedServingSeconds: (performance.now() - t0) / 1000 };
  } catch (e) {
    await child.kill('SIGKILL');
    throw e;
  }
}

export async function runScale(config: ScaleConfig, log: (line: string) => void): Promise<ScaleOutcome> {
  const marks: ScaleMark[] = [];
  for (const n of config.sizes) {
    const root = tempRoot('pcd-bench-scale-');
    const dataDir = path.join(root, 'data');
    const children: ServerChild[] = [];
    try {
      const seeded = seedFolder(dataDir, n, 16);
      log(`  n = ${n.toLocaleString('en-US')}: seeded in ${seeded.seedSeconds.toFixed(1)} s (${Math.round(n / seeded.seedSeconds).toLocaleString('en-US')} numbers/s)`);
      // The number to register later: one the directory does not have yet.
      const store = Store.open(dataDir);
      let fresh: E164;
      try {
        fresh = sampleNumbers({ count: 1, seed: 'pcd-bench-scale-new', exclude: (x) => store.numberRegistered(x) })[0]!;
      } finally {
        store.close();
      }

      const first = await serve(dataDir, n, config);
      children.push(first.child);
      const loaded = await first.child.usage({ gc: true });
      const last = loaded.epochStats?.lastBuild;
      log(
        `  listening after ${first.listeningSeconds.toFixed(1)} s, blinded serving after ${first.blindedServingSeconds.toFixed(1)} s` +
          (last ? ` (epoch build ${last.seconds.toFixed(1)} s on ${last.threads} thread${last.threads === 1 ? '' : 's'}, ${Math.round(last.rate).toLocaleString('en-US')} numbers/s)` : '') +
          `; RSS ${formatBytes(loaded.memory.rss)} after GC, peak ${formatBytes(loaded.maxRssBytes)}`,
      );

      // Correctness of what serves: the seeded contact list through the real blinded client.
      const contacts = seeded.contacts;
      const answers = await createClient({ baseUrl: first.url, token: seeded.token!, design: 'blinded' }).lookupMany(contacts.map((c) => c.number));
      const wrong = answers.filter((r, i) => (r.capabilities.length > 0) !== contacts[i]!.registered).length;
      if (wrong > 0) throw new Error(`blinded answered ${wrong} of ${contacts.length} contacts wrongly at n = ${n}`);

      // One registration through the admin API, then kill -9 about a second later.
      await createAdminClient({ baseUrl: first.url, adminToken: BENCH_ADMIN_TOKEN }).createAccount({
        email: `scale-new-${n}@bench.invalid`,
        numbers: [fresh],
        capabilities: ['messages'],
      });
      const registeredAt = performance.now();
      await new Promise((r) => setTimeout(r, config.killAfterMs));
      const killAfterMs = performance.now() - registeredAt;
      await first.child.kill('SIGKILL');
      log(`  registered ${fresh} through the admin API, kill -9 after ${Math.round(killAfterMs)} ms`);

      const second = await serve(dataDir, n, config);
      children.push(second.child);
      const after = await second.child.usage({ gc: true });
      const st = after.epochStats;
      const epochSource = st ? (st.cacheLoads > 0 ? 'cache' : st.builds > 0 ? 'build' : undefined) : undefined;
      const found = await createClient({ baseUrl: second.url, token: seeded.token!, design: 'blinded' }).lookup(fresh);
      const capabilities = [...found.capabilities];
      log(
        `  restarted: listening after ${second.listeningSeconds.toFixed(1)} s, blinded serving after ${second.blindedServingSeconds.toFixed(1)} s` +
          `${epochSource ? ` (epoch from ${epochSource})` : ''}; ${fresh} answers ${capabilities.length > 0 ? capabilities.join(', ') : 'SMS only'}`,
      );

      const base: Omit<ScaleMark, 'targets'> = {
        section: 'scale',
        name: `scale n=${n.toLocaleString('en-US')}`,
        numbers: seeded.numbers,
        backend: config.backend,
        seedSeconds: seeded.seedSeconds,
        listeningSeconds: first.listeningSeconds,
        blindedServingSeconds: first.blindedServingSeconds,
        ...(last ? { buildSeconds: last.seconds, buildThreads: last.threads, buildNumbersPerSec: last.rate } : {}),
        rssBytes: loaded.memory.rss,
        peakRssBytes: loaded.maxRssBytes,
        heapUsedBytes: loaded.memory.heapUsed,
        arrayBuffersBytes: loaded.memory.arrayBuffers,
        restart: {
          killAfterMs,
          blindedServingSeconds: second.blindedServingSeconds,
          listeningSeconds: second.listeningSeconds,
          ...(epochSource ? { epochSource } : {}),
          registered: fresh,
          answersMessages: capabilities.includes('messages'),
          capabilities,
          rssBytes: after.memory.rss,
        },
      };
      const mark: ScaleMark = { ...base, targets: judgeTargets(base) };
      for (const t of mark.targets) log(`  target ${t.met ? 'MET' : 'NOT MET'}: ${t.target} ${t.limit}: ${t.measured}`);
      marks.push(mark);
    } finally {
      for (const c of children) await c.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  }
  return {
    marks,
    notes: [
      `Scale: each size is seeded into a fresh folder (bench/seeding.ts: synth/ into the store's bulk insert, as \`pcd seed\`), then one server child serves plain, hashed and blinded (${config.backend}, bucketBits ${config.bucketBits}, evaluator and build threads at their defaults). Times run from the fork of the child; "serving" is the first 200 of GET /v1/blinded/config (the server listens while the epoch builds and answers 503 until then). RSS is read in the child after a full GC; peak RSS is the process's maximum so far (the build's worker threads included). Then one number is registered through the admin API, the child is killed with SIGKILL about ${config.killAfterMs} ms later, and a new child is started on the same folder.`,
      'Scale: targets are judged only at the sizes they name (10^6, 10^7), the restart targets at every size; 1 GB = 10^9 bytes.',
    ],
  };
}
