/**
 * The data folder's owner file, `server.lock.json` (0600): who holds the
 * folder's lock (server/lock.ts takes and releases it) and, for a server
 * once it listens, its port and URL. Read by a command refused the folder,
 * to name the holder, and by `pcd page-link`, to find the folder's server
 * without guessing an address. Advisory: after a crash it may be stale (the
 * lock is what counts), so a reader checks that the pid still runs.
 */
import fs from 'node:fs';
import path from 'node:path';

export const OWNER_FILE = 'server.lock.json';

export type LockRole = 'server' | 'rotate-key' | 'seed' | 'publish-buckets';

/** What the holder writes into {@link OWNER_FILE}. */
export interface LockOwner {
  pid: number;
  role: LockRole;
  /** The script and subcommand that hold it (no other arguments: they may hold paths or values). */
  command: string;
  /** ISO time the lock was taken. */
  startedAt: string;
  port?: number;
  url?: string;
}

/** How each role is named in messages. */
export const ROLE_NAMES: Readonly<Record<LockRole, string>> = { server: 'pcd serve', 'rotate-key': 'pcd rotate-key', seed: 'pcd seed', 'publish-buckets': 'pcd publish-buckets' };

/** The owner file of `dataDir`, or undefined when it is absent or unreadable. */
export function readLockOwner(dataDir: string): LockOwner | undefined {
  try {
    const o = JSON.parse(fs.readFileSync(path.join(dataDir, OWNER_FILE), 'utf8')) as Partial<LockOwner>;
    if (typeof o.pid !== 'number' || typeof o.role !== 'string' || !(o.role in ROLE_NAMES)) return undefined;
    if (o.url !== undefined && typeof o.url !== 'string') return undefined;
    return o as LockOwner;
  } catch {
    return undefined;
  }
}

/** Whether a process with this pid runs (EPERM: it does, as another user). */
export function processRuns(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
