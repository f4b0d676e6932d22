/**
 * One owner per data folder (server/lock.ts) and its permissions:
 * - two opens of a folder conflict, in the same process and across
 *   processes; `pcd rotate-key` and `pcd seed` refuse a served folder in one
 *   line naming the server's pid and URL; the lock is free again after a
 *   graceful stop and after the holder is killed with SIGKILL (a real child);
 * - the folder is 0700 and every file under it 0600 after a server opened
 *   it, whatever existed before (a pre-created 0755 folder, a 0644
 *   pcd.sqlite), and what was tightened is logged as a warning.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { forkServer, type ServerChild } from '../harness/fork.ts';
import { ErrorCode } from '../shared/errors.ts';
import type { E164 } from '../shared/e164.ts';
import { seedDataFolder } from '../server/seed.ts';
import { rotateKeyOffline } from '../server/designs/blinded.ts';
import { LOCK_FILE, OWNER_FILE, acquireFolderLock, type FolderLock } from '../server/lock.ts';
import { DB_FILE, DIRECTORY_SNAPSHOT_FILE, OHTTP_KEY_FILE, TOKEN_KEY_FILE } from '../disk/files.ts';
import { Store } from '../server/store.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { ADMIN_TOKEN, TEST_SIZE_CLASSES, startTestServer, tempDir, type TestServer } from './helpers.ts';

const run = promisify(execFile);
const [n1, n2] = sampleNumbers({ count: 2, seed: 'folder-test', regions: ['US'] }) as [E164, E164];
const PCD = path.resolve('bin/pcd.mjs');

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function held(lock: FolderLock): FolderLock {
  cleanups.push(() => lock.release());
  return lock;
}

async function served(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer({ designs: ['blinded'], ...options });
  cleanups.push(() => s.close().catch(() => {}));
  return s;
}

/** Every entry under `dir` with its permission bits, `dir` itself as '.'. */
function modes(dir: string): Record<string, string> {
  const out: Record<string, string> = { '.': (fs.statSync(dir).mode & 0o777).toString(8) };
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d)) {
      const abs = path.join(d, name);
      const st = fs.lstatSync(abs);
      out[path.relative(dir, abs)] = (st.mode & 0o777).toString(8);
      if (st.isDirectory()) walk(abs);
    }
  };
  walk(dir);
  return out;
}

describe('the data folder lock', () => {
  it('lets one owner in at a time, in the same process too, and is free again once released', () => {
    const dir = tempDir('pcd-lock-');
    const first = held(acquireFolderLock(dir, { role: 'server' }));
    first.setPort(8787, 'http://127.0.0.1:8787');
    let err: unknown;
    try {
      acquireFolderLock(dir, { role: 'rotate-key' });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: ErrorCode.Conflict });
    expect((err as Error).message).toBe(
      `${dir} is in use by pcd serve (pid ${process.pid}, this process, http://127.0.0.1:8787, since ${first.owner.startedAt}): ` +
        'stop it first, or use POST /v1/admin/rotate-key on the running server',
    );
    expect(JSON.parse(fs.readFileSync(path.join(dir, OWNER_FILE), 'utf8'))).toMatchObject({ pid: process.pid, role: 'server', port: 8787 });
    first.release();
    expect(first.held).toBe(false);
    expect(fs.existsSync(path.join(dir, OWNER_FILE))).toBe(false);
    held(acquireFolderLock(dir, { role: 'seed' })).release();
  });

  it('refuses pcd rotate-key, pcd seed and a second server on a served folder, in one line naming the server; all work once it stopped', async () => {
    const s = await served();
    const url = s.server.url;
    const naming = new RegExp(`^\\S+ is in use by pcd serve \\(pid ${process.pid}, this process, ${url.replaceAll('.', '\\.')}, since [^)]+\\): stop it first`);
    await expect(rotateKeyOffline({ dataDir: s.dataDir })).rejects.toMatchObject({ code: ErrorCode.Conflict, message: expect.stringMatching(naming) });
    await expect(rotateKeyOffline({ dataDir: s.dataDir })).rejects.toThrow(/use POST \/v1\/admin\/rotate-key on the running server$/);
    await expect(seedDataFolder(s.dataDir, tempDir(), { size: 10 })).rejects.toThrow(naming);
    await expect(startTestServer({ dataDir: s.dataDir, designs: ['plain'] })).rejects.toThrow(/or serve another data folder$/);
    // The refusals changed nothing: the server serves its one epoch, and rotates online.
    const rotated = await fetch(`${url}/v1/admin/rotate-key`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }, body: '{}' });
    expect(rotated.status).toBe(201);
    await s.close();
    expect(await rotateKeyOffline({ dataDir: s.dataDir })).toMatchObject({ epoch: 3, previous: 2 });
  });

  it('is released by the kernel when its holder is killed with SIGKILL; the CLI refuses a served folder with one line and exit 2', async () => {
    const dataDir = tempDir('pcd-lock-kill-');
    const child: ServerChild = forkServer();
    cleanups.push(() => child.close().catch(() => {}));
    const up = await child.start({ dataDir, adminToken: ADMIN_TOKEN, designs: ['blinded'], evalThreads: 0, sizeClasses: TEST_SIZE_CLASSES }, 120_000);
    const owner = `pcd serve \\(pid ${child.pid}, ${up.url.replaceAll('.', '\\.')}, since [^)]+\\)`;
    // Another process: this one.
    await expect(rotateKeyOffline({ dataDir })).rejects.toThrow(new RegExp(`is in use by ${owner}: stop it first`));
    // The CLI, a third process: one line, no stack trace, exit 2.
    const refused = await run(process.execPath, [PCD, 'rotate-key', '--data', dataDir], { timeout: 60_000 }).catch((e: { code: number; stdout: string; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect((refused as { stderr: string }).stderr).toMatch(new RegExp(`^pcd: \\S+ is in use by ${owner}: stop it first, or use POST /v1/admin/rotate-key on the running server \\(conflict\\)\\n$`));

    await child.kill('SIGKILL');
    // No close ran: the owner file is stale, the lock is not.
    expect(fs.existsSync(path.join(dataDir, OWNER_FILE))).toBe(true);
    const lock = held(acquireFolderLock(dataDir, { role: 'rotate-key' }));
    expect(lock.owner.pid).toBe(process.pid);
    lock.release();
    expect(await rotateKeyOffline({ dataDir })).toMatchObject({ epoch: 2, previous: 1 });
  }, 180_000);
});

describe('data folder permissions', () => {
  it('makes a pre-existing 0755 folder 0700 and its 0644 files 0600, and says so in a warning', async () => {
    const dataDir = tempDir('pcd-modes-');
    const store = Store.open(dataDir);
    store.bulkInsert([{ email: 'a@example.org', numbers: [n1], mask: 1 }], Date.now());
    store.close();
    fs.writeFileSync(path.join(dataDir, 'admin-token'), ADMIN_TOKEN + '\n');
    fs.mkdirSync(path.join(dataDir, 'epochs'));
    fs.writeFileSync(path.join(dataDir, 'epochs', 'stray.tmp'), 'x');
    fs.chmodSync(path.join(dataDir, 'epochs'), 0o755);
    fs.chmodSync(path.join(dataDir, 'epochs', 'stray.tmp'), 0o644);
    fs.chmodSync(path.join(dataDir, DB_FILE), 0o644);
    fs.chmodSync(path.join(dataDir, 'admin-token'), 0o640);
    fs.chmodSync(dataDir, 0o755);

    const warnings: { msg: string; tightened?: string[] }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
    const s = await served({ dataDir, logger, adminToken: undefined });
    const tightened = warnings.find((w) => w.tightened)!;
    expect(tightened.msg).toMatch(/tightened the permissions of the data folder/);
    expect(tightened.tightened).toEqual([`${dataDir} 755 -> 700`, 'admin-token 640 -> 600', `${path.join('epochs')} 755 -> 700`, path.join('epochs', 'stray.tmp') + ' 644 -> 600', `${DB_FILE} 644 -> 600`]);
    expect(JSON.stringify(warnings)).not.toContain(ADMIN_TOKEN);
    await s.admin.createAccount({ email: 'b@example.org', numbers: [n2], capabilities: ['messages'] });
    const m = modes(dataDir);
    expect(m['.']).toBe('700');
    expect(m[DB_FILE]).toBe('600');
    expect(m[`${DB_FILE}-wal`]).toBe('600'); // SQLite gives them the mode of the database file
    expect(m[`${DB_FILE}-shm`]).toBe('600');
    await s.close();
  });

  it('leaves a fresh folder with nothing but 0700 folders and 0600 files, and warns about nothing', async () => {
    const dataDir = path.join(tempDir('pcd-modes-'), 'data');
    const warnings: { msg: string }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
    // No admin token given: the server writes one into the folder.
    const s = await served({ dataDir, logger, adminToken: undefined });
    const m = modes(dataDir); // while it runs: the WAL files are there
    expect(Object.keys(m).sort()).toEqual(
      ['.', DB_FILE, `${DB_FILE}-shm`, `${DB_FILE}-wal`, 'admin-token', 'epochs', path.join('epochs', '1.bin'), 'oprf-keys.json', TOKEN_KEY_FILE, OHTTP_KEY_FILE, LOCK_FILE, OWNER_FILE, DIRECTORY_SNAPSHOT_FILE].sort(),
    );
    for (const [f, mode] of Object.entries(m)) expect(mode, f).toBe(f === '.' || f === 'epochs' ? '700' : '600');
    await s.close();
    expect(warnings.filter((w) => /tightened/.test(w.msg))).toEqual([]);
  });
});
