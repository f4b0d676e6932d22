/**
 * How many worker threads the blinded design starts, read in one place: one
 * per core unless an environment variable says otherwise.
 *
 *   PCD_EVAL_THREADS   evaluator pool (server/blinded/pool.ts); 0 = on the main thread
 *   PCD_BUILD_THREADS  epoch builds and replays (server/blinded/build.ts); 1 = on the main thread
 */
import os from 'node:os';

export const EVAL_THREADS_ENV = 'PCD_EVAL_THREADS';
export const BUILD_THREADS_ENV = 'PCD_BUILD_THREADS';

/** Logical cores Node may use. */
export function cores(): number {
  return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/**
 * Threads from an environment value (an integer >= `min`), else one per
 * core; a value that is not such an integer is ignored and reported in `problem`.
 */
export function threadCount(name: string, value: string | undefined, min: number): { threads: number; problem?: string } {
  if (value === undefined || value.trim() === '') return { threads: cores() };
  const n = Number(value);
  if (Number.isInteger(n) && n >= min) return { threads: n };
  return { threads: cores(), problem: `${name} must be an integer >= ${min}${min === 0 ? ' (0: on the main thread)' : ''}, got '${value.slice(0, 40)}'` };
}
