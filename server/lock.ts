/**
 * One owner per data folder: `pcd serve` (and `start`), `pcd rotate-key` and
 * `pcd seed` and `pcd publish-buckets` each hold the folder's lock while they use it, so none of them
 * writes a key file or a database that another is using (two writers of the
 * key file lose keys; an offline rotation under a running server leaves
 * epochs the server does not know).
 *
 * ## The lock
 *
 * `<dataDir>/server.lock` is an SQLite file opened with better-sqlite3 in
 * `locking_mode = EXCLUSIVE` with a write transaction left open (`BEGIN
 * EXCLUSIVE`, no busy timeout): SQLite takes an fcntl lock on it, held until
 * the connection closes, and the kernel drops it when the process dies, so a
 * process killed with SIGKILL leaves nothing stuck. SQLite also tracks its
 * locks per file within a process, so a second open in the same process (the
 * tests start servers in-process) conflicts as another process's would.
 *
 * Caveat of fcntl locks: closing ANY descriptor of the lock file in the
 * holding process drops the process's lock. Nothing in the server opens it
 * other than through this module (chmod by path does not); tools that read
 * every file of a folder (the audit scan) run in their own process.
 *
 * ## Who holds it
 *
 * The holder writes `<dataDir>/server.lock.json` (0600): pid, role, command,
 * start time and, for a server once it listens, port and URL. A refused
 * command reads it to say who holds the folder, in one line:
 *
 *   data is in use by pcd serve (pid 1234, http://127.0.0.1:8787, since ...):
 *   stop it first, or use POST /v1/admin/rotate-key on the running server
 *
 * The file is advisory (it may be stale after a crash: the lock is what
 * counts) and holds nothing secret.
 *
 * ## Permissions
 *
 * Right after acquiring, the folder is made 0700 and every file under it
 * 0600 (folders 0700), whatever existed before: pcd.sqlite holds emails,
 * IPs and logs, oprf-keys.json the keys. What had to be tightened is logged
 * as a warning (paths and modes only). The database file is created empty
 * with 0600 when absent, since SQLite gives its -wal and -shm files the
 * mode of the database file.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { writeFileAtomic } from './atomic.ts';
import { DB_FILE } from '../disk/files.ts';
import { OWNER_FILE, ROLE_NAMES, readLockOwner, type LockOwner, type LockRole } from '../disk/lockowner.ts';

export const LOCK_FILE = 'server.lock';
export { OWNER_FILE, type LockOwner, type LockRole } from '../disk/lockowner.ts';

export interface FolderLock {
  readonly dataDir: string;
  readonly owner: Readonly<LockOwner>;
  /** What acquiring tightened, one line each ("pcd.sqlite 644 -> 600"). */
  readonly tightened: readonly string[];
  /** True until {@link release}. */
  readonly held: boolean;
  /** A server records where it listens, so a refused command can name it. */
  setPort(port: number, url?: string): void;
  /** Runs `fn`; if it throws, runs `undo`, releases the lock and rethrows (for a caller's opening steps). */
  guard<T>(fn: () => T, undo?: () => void): T;
  /** {@link guard} for an asynchronous step. */
  guardAsync<T>(fn: () => Promise<T>, undo?: () => void): Promise<T>;
  /** Releases the lock (the owner file goes first). Idempotent. */
  release(): void;
}

/** What a command that found a server on its folder should do instead. */
const INSTEAD: Readonly<Record<LockRole, string>> = {
  'rotate-key': 'stop it first, or use POST /v1/admin/rotate-key on the running server',
  seed: 'stop it first, or register accounts through POST /v1/accounts on the running server',
  server: 'stop it first, or serve another data folder',
  'publish-buckets': 'stop it first (publishing reads the epoch with no server on the folder), then start it again',
};

function commandLine(): string {
  const script = process.argv[1] ? path.basename(process.argv[1]) : 'node';
  const sub = process.argv[2];
  return sub && /^[a-z][a-z-]*$/.test(sub) ? `${script} ${sub}` : script;
}

/** The one-line refusal: who holds `dataDir`, and what the refused `role` should do. */
function inUse(dataDir: string, role: LockRole): PcdError {
  const o = readLockOwner(dataDir);
  if (!o) return new PcdError(ErrorCode.Conflict, `${dataDir} is in use by another pcd process: stop it first (its ${OWNER_FILE} does not say which)`);
  const where = o.url ?? (o.port !== undefined ? `port ${o.port}` : undefined);
  const facts = [`pid ${o.pid}${o.pid === process.pid ? ', this process' : ''}`, ...(where ? [where] : []), ...(o.startedAt ? [`since ${o.startedAt}`] : [])];
  const advice = o.role === 'server' ? INSTEAD[role] : 'wait for it to finish';
  return new PcdError(ErrorCode.Conflict, `${dataDir} is in use by ${ROLE_NAMES[o.role]} (${facts.join(', ')}): ${advice}`);
}

/**
 * Makes `dataDir` 0700 and everything under it 0600 (folders 0700) where
 * group or other had any access; symbolic links under it are neither
 * followed nor changed. Returns what it changed (and what it could not), one line each.
 */
export function tightenFolder(dataDir: string): string[] {
  if (process.platform === 'win32') return [];
  const out: string[] = [];
  const visit = (abs: string, rel: string): void => {
    const st = rel === '.' ? fs.statSync(abs) : fs.lstatSync(abs); // the folder may be reached through a link; nothing under it is followed
    if (st.isSymbolicLink()) return;
    const mode = st.mode & 0o777;
    const want = st.isDirectory() ? 0o700 : 0o600;
    if (mode & 0o077) {
      try {
        fs.chmodSync(abs, want);
        out.push(`${rel === '.' ? dataDir : rel} ${mode.toString(8)} -> ${want.toString(8)}`);
      } catch (e) {
        out.push(`${rel === '.' ? dataDir : rel} ${mode.toString(8)}: could not be tightened (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    }
    if (st.isDirectory()) for (const name of fs.readdirSync(abs).sort()) visit(path.join(abs, name), rel === '.' ? name : path.join(rel, name));
  };
  visit(dataDir, '.');
  return out;
}

/**
 * Takes `dataDir` for `role`, or throws PcdError conflict naming the holder.
 * Creates the folder (0700) when absent, records the owner, tightens the
 * permissions (logged as a warning through `logger` when something changed).
 */
export function acquireFolderLock(dataDir: string, options: { role: LockRole; logger?: Logger }): FolderLock {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, LOCK_FILE);
  // Created 0600 here when absent; when present it is never opened but by SQLite (see the caveat above).
  if (!fs.existsSync(file)) fs.closeSync(fs.openSync(file, 'a', 0o600));
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { timeout: 0 });
    db.pragma('journal_mode = MEMORY'); // no -journal file beside it
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (e) {
    db?.close();
    const code = (e as { code?: string }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') throw inUse(dataDir, options.role);
    throw new PcdError(ErrorCode.Unavailable, `cannot lock ${dataDir} (${file}: ${(e as Error).message})`);
  }
  const lockDb = db;
  const owner: LockOwner = { pid: process.pid, role: options.role, command: commandLine(), startedAt: new Date().toISOString() };
  const ownerFile = path.join(dataDir, OWNER_FILE);
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    fs.rmSync(ownerFile, { force: true }); // before the lock goes: the next holder writes its own
    try {
      lockDb.exec('ROLLBACK');
    } catch {
      // closing drops the lock all the same
    }
    lockDb.close();
  };
  let tightened: string[];
  try {
    writeFileAtomic(ownerFile, JSON.stringify(owner) + '\n');
    const dbFile = path.join(dataDir, DB_FILE);
    if (!fs.existsSync(dbFile)) fs.closeSync(fs.openSync(dbFile, 'a', 0o600));
    tightened = tightenFolder(dataDir);
  } catch (e) {
    release();
    throw e;
  }
  if (tightened.length > 0) {
    options.logger?.warn({ dataDir, tightened }, 'tightened the permissions of the data folder: only the server user may read it');
  }
  /** A guarded step failed: its undo, then the lock released, whatever the undo does. */
  const undoAndRelease = (undo: (() => void) | undefined): void => {
    try {
      undo?.();
    } finally {
      release();
    }
  };
  return {
    dataDir,
    owner,
    tightened,
    get held() {
      return held;
    },
    setPort(port, url) {
      if (!held) return;
      owner.port = port;
      if (url !== undefined) owner.url = url;
      try {
        writeFileAtomic(ownerFile, JSON.stringify(owner) + '\n');
      } catch (e) {
        // Advisory only: a refused command then names the pid without the port.
        options.logger?.warn({ err: (e as Error).message }, `could not record the port in ${ownerFile}`);
      }
    },
    guard(fn, undo) {
      try {
        return fn();
      } catch (e) {
        undoAndRelease(undo);
        throw e;
      }
    },
    async guardAsync(fn, undo) {
      try {
        return await fn();
      } catch (e) {
        undoAndRelease(undo);
        throw e;
      }
    },
    release,
  };
}
