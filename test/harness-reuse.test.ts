/**
 * The harness's reused server processes (harness/fork.ts
 * reuseServerProcesses, the benchmark's tiny profile): a closed server's
 * process serves the next server of the same environment, with its own data
 * folder, port and clock; a ServerChild refuses every command once closed; a
 * killed process, a `fresh` request or another environment gets a new one;
 * and every kept process is ended when the run settles.
 */
import { describe, expect, it } from 'vitest';
import { forkServer, reuseServerProcesses, type ServerChild } from '../harness/fork.ts';
import { tempDir } from './helpers.ts';

const options = (dataDir: string) => ({ dataDir, designs: ['plain' as const], bucketBits: 0, progress: false });
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const health = async (url: string) => (await fetch(new URL('/v1/health', url))).status;

describe('reuseServerProcesses', () => {
  it('hands a closed server\'s process to the next server of the same environment, never a killed one, and ends the kept ones at the end', async () => {
    let kept: number[] = [];
    await reuseServerProcesses(async () => {
      const a: ServerChild = forkServer();
      await a.clock(Date.UTC(2026, 0, 1));
      const first = await a.start(options(tempDir()));
      expect(await health(first.url)).toBe(200);
      await a.close();
      await expect(a.usage()).rejects.toThrow(/already closed/);
      await a.close(); // twice is once
      expect(alive(a.pid)).toBe(true); // kept
      await expect(fetch(new URL('/v1/health', first.url))).rejects.toThrow(); // its server is closed

      const b = forkServer();
      expect(b.pid).toBe(a.pid);
      const second = await b.start(options(tempDir()));
      expect(second.url).not.toBe(first.url);
      expect(second.directorySize).toBe(0);
      const other = forkServer({ PCD_EVAL_THREADS: '0' }); // another environment: another process
      const fresh = forkServer({}, { fresh: true });
      expect(new Set([b.pid, other.pid, fresh.pid]).size).toBe(3);
      await b.kill('SIGKILL');
      await b.close();
      await other.close();
      await fresh.close();
      const c = forkServer();
      expect(c.pid).not.toBe(a.pid); // the killed one is not reused
      expect(c.pid).toBe(fresh.pid);
      await c.close();
      kept = [c.pid, other.pid];
      expect(kept.every(alive)).toBe(true);
    });
    // The run settled: every kept process was ended.
    expect(kept.some(alive)).toBe(false);
    // Outside a run, close ends the process.
    const d = forkServer();
    await d.start(options(tempDir()));
    await d.close();
    expect(alive(d.pid)).toBe(false);
  }, 60_000);
});
