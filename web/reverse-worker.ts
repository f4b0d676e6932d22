/**
 * The worker thread of the page's hashed trace (web/reverse.ts): reverses
 * the logged hashes by enumerating the plan (shared/reversal.ts
 * `reverseHashes`, the audit's own enumeration), off the server's main thread, then posts the result
 * once and ends. Loaded through server/blinded/boot.mjs, like the server's
 * other typed worker modules.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { PlanPattern } from '../shared/numbering.ts';
import { reverseHashes } from '../shared/reversal.ts';

/** What the thread is started with (workerData). */
export interface ReverseJob {
  /** This module's URL, for boot.mjs. */
  module: string;
  hashes: Uint8Array[];
  plan: PlanPattern[];
}

/** Its one message: the reversal, or why it failed. */
export type ReverseOutcome =
  | { ok: true; numbers: [hashHex: string, number: string][]; candidates: number; ms: number }
  | { ok: false; error: string };

const job = workerData as ReverseJob;
let outcome: ReverseOutcome;
try {
  const r = reverseHashes(job.hashes, job.plan);
  outcome = { ok: true, numbers: [...r.numbers], candidates: r.candidates, ms: r.ms };
} catch (e) {
  outcome = { ok: false, error: e instanceof Error ? e.message : String(e) };
}
parentPort!.postMessage(outcome);
