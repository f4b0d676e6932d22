/**
 * vitest global setup, run first: the run's temporary files (every
 * tempDir, data folder, SQLite file, key file, the run's Postgres, and
 * those of the processes the tests start, which inherit TMPDIR) go to a
 * folder on /dev/shm, a RAM file system, when the machine has one with
 * room: the servers' fsyncs (SQLite commits, atomic key and cache files)
 * then cost nothing, a fifth of some files' time on this machine's disk.
 *
 * The run's folder is removed when the run ends, with whatever the tests
 * left in it (RAM, unlike the disk, is not for leftovers); tsx's transform
 * cache, which tsx keeps under the temporary folder, is a link to one kept
 * beside the runs, so that the processes the tests start find it warm.
 *
 * Under PCD_TEST_FULL=1 (CI keeps a real disk and its fsyncs), or where
 * /dev/shm is missing or short of room, the run's folder is in the system's
 * temporary folder instead, and removed at the end all the same. When the
 * caller set TMPDIR, the run uses it as it is. The folders are the caller's
 * own (mode 0711, so that Postgres, which runs as the postgres user under
 * root, can pass through); another user's, or a link, is not used.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SHM = '/dev/shm';
/** Room the run needs at most, with a margin: its data folders, Postgres and logs. */
const NEEDED_BYTES = 4 * 2 ** 30;

/** A folder of this user's at `dir`, mode 0711: made when missing; false when it is another user's or not a folder. */
function ownFolder(dir: string, uid: number): boolean {
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory() || st.uid !== uid) return false;
  fs.chmodSync(dir, 0o711);
  return true;
}

/** Where the run's folder goes: /dev/shm when it has room (not under PCD_TEST_FULL=1), else the system's temporary folder. */
function base(): string {
  if (process.env.PCD_TEST_FULL === '1') return os.tmpdir();
  try {
    const s = fs.statfsSync(SHM);
    return s.bavail * s.bsize >= NEEDED_BYTES ? SHM : os.tmpdir();
  } catch {
    return os.tmpdir(); // no /dev/shm here
  }
}

export default function setup(): (() => void) | undefined {
  if (process.env.TMPDIR) return undefined;
  try {
    const uid = process.getuid?.() ?? 0;
    const home = path.join(base(), `pcd-test-${uid}`);
    const tsxCache = path.join(home, `tsx-${uid}`);
    if (!ownFolder(home, uid) || !ownFolder(tsxCache, uid)) return undefined;
    const run = fs.mkdtempSync(path.join(home, 'run-'));
    fs.chmodSync(run, 0o711);
    fs.symlinkSync(tsxCache, path.join(run, `tsx-${uid}`));
    process.env.TMPDIR = run; // os.tmpdir() reads it at every call: the workers, and what they start, inherit it
    return () => fs.rmSync(run, { recursive: true, force: true });
  } catch {
    return undefined; // the system's temporary folder itself, as before
  }
}
