/**
 * What a closed output pipe does to pcd: `pcd sync list.txt | head` reads a
 * line and goes, and `pcd serve 2>&1 | tee server.out` loses tee to the same
 * Ctrl-C that stops the server. The next write meets the closed pipe (EPIPE;
 * a closed terminal gives EIO).
 *
 * - A one-shot command ends quietly there (exit 0), as `head` asked.
 * - A command that runs until it is stopped (serve, start, cluster, relay)
 *   says so with {@link runsUntilStopped} and goes on without its output:
 *   its shutdown must still finish the requests in flight and write the
 *   query log rows it holds (asynchronously, on a shared Postgres store),
 *   not end with them half done. What it prints from then on goes nowhere;
 *   a server log in a file (--log) is unaffected.
 */
let service = false;

/** Called by a command that serves until it is stopped: a closed output no longer ends the process. */
export function runsUntilStopped(): void {
  service = true;
}

/** The 'error' listener of process.stdout and process.stderr (bin/pcd.ts). */
export function onOutputError(e: NodeJS.ErrnoException): void {
  // EPIPE on the write that met the closed pipe (EIO: a terminal hung up); ERR_STREAM_DESTROYED on every write after it.
  if (e.code !== 'EPIPE' && e.code !== 'EIO' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
  if (!service) process.exit(0);
}
