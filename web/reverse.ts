/**
 * The page's hashed trace reverses the logged hashes by enumerating up to
 * 10^6 numbers (about 1 s of CPU): on the server's main thread, a few of
 * them at once held every request, /v1/health included, for seconds
 * (issue 17, item 6). Each reversal now runs in a worker thread of its own
 * (web/reverse-worker.ts), and at most {@link MAX_CONCURRENT_REVERSALS}
 * run at once: a trace beyond that is refused with 503 and Retry-After
 * rather than queued, so traces can never take the server's cores.
 */
import { Worker } from 'node:worker_threads';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import type { PlanPattern } from '../shared/numbering.ts';
import type { ReverseJob, ReverseOutcome } from './reverse-worker.ts';

/** Reversals running at once; the machine's other cores serve lookups. */
export const MAX_CONCURRENT_REVERSALS = 2;
const BOOT = new URL('../server/blinded/boot.mjs', import.meta.url);
const MODULE = new URL('./reverse-worker.ts', import.meta.url).href;

let running = 0;

/** Reversals under way now (tests, and the 503's message). */
export function reversalsRunning(): number {
  return running;
}

/**
 * Reverses `hashes` over `plan` in a worker thread; 503 `unavailable` with
 * Retry-After when {@link MAX_CONCURRENT_REVERSALS} are running already.
 */
export async function reverseInWorker(hashes: Uint8Array[], plan: PlanPattern[]): Promise<{ numbers: Map<string, E164>; candidates: number; ms: number }> {
  if (running >= MAX_CONCURRENT_REVERSALS) {
    throw new PcdError(ErrorCode.Unavailable, `${running} hashed traces are reversing their hashes already (at most ${MAX_CONCURRENT_REVERSALS} at once): try again in a moment`, {
      retryAfterSeconds: 2,
    });
  }
  running++;
  try {
    const workerData: ReverseJob = { module: MODULE, hashes, plan };
    const worker = new Worker(BOOT, { workerData, stdout: true, stderr: true });
    worker.stdout.resume();
    worker.stderr.resume();
    const outcome = await new Promise<ReverseOutcome>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the trace's reversal thread exited with code ${code} before it answered`)));
    });
    void worker.terminate();
    if (!outcome.ok) throw new Error(`the trace's reversal failed: ${outcome.error}`);
    return { numbers: new Map(outcome.numbers as [string, E164][]), candidates: outcome.candidates, ms: outcome.ms };
  } finally {
    running--;
  }
}
