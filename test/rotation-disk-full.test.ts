/**
 * A key rotation on a full disk (issue 17, item 4): the write of the new
 * key file fails with ENOSPC. The admin call gets 503 `unavailable` with
 * Retry-After (not a 500), the temporary key file is gone, the key file and
 * the epochs are as they were, and the same rotation succeeds once there is
 * room. The failure is injected at the one write of the key file's
 * temporary file (fs.writeSync on its descriptor), as a full file system
 * answers it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KEY_FILE } from '../disk/files.ts';
import { PATHS } from '../shared/messages.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { ADMIN_TOKEN, raw, startTestServer, type TestServer } from './helpers.ts';

const open: TestServer[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const s of open.splice(0)) await s.close().catch(() => {});
});

/** Makes every write to a file named `name` fail with ENOSPC until restored. */
function fillDiskFor(name: string): { failures: () => number } {
  const fds = new Set<number>();
  let failures = 0;
  const openSync = fs.openSync.bind(fs);
  const writeSync = fs.writeSync.bind(fs) as (...a: unknown[]) => number;
  vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
    const fd = (openSync as (...a: unknown[]) => number)(p, ...rest);
    if (path.basename(String(p)) === name) fds.add(fd);
    return fd;
  }) as typeof fs.openSync);
  vi.spyOn(fs, 'writeSync').mockImplementation(((fd: number, ...rest: unknown[]) => {
    if (fds.has(fd)) {
      failures++;
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    }
    return writeSync(fd, ...rest);
  }) as typeof fs.writeSync);
  return { failures: () => failures };
}

async function rotate(s: TestServer): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(s.server.url + PATHS.adminRotate, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json' },
    body: '{}',
  });
  return { status: res.status, json: await res.json(), headers: res.headers };
}

describe('a key rotation on a full disk', () => {
  it('is 503 with Retry-After, leaves no temporary key file and changes nothing; it succeeds once there is room', async () => {
    const s = await startTestServer({ designs: ['blinded'], bucketBits: 1 });
    open.push(s);
    const [n] = sampleNumbers({ count: 1, seed: 'rotation-disk-full', regions: ['US'] });
    const { token } = await s.admin.createAccount({ email: 'a@example.org', numbers: [n!], capabilities: ['messages'] });
    const keyFile = path.join(s.dataDir, KEY_FILE);
    const before = fs.readFileSync(keyFile);

    const full = fillDiskFor(`${KEY_FILE}.tmp`);
    const r = await rotate(s);
    expect(full.failures()).toBeGreaterThan(0);
    vi.restoreAllMocks();
    expect(r.status).toBe(503);
    expect(r.json.error).toMatchObject({ code: 'unavailable', message: expect.stringMatching(/storage is full \(ENOSPC\)/) });
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(fs.existsSync(`${keyFile}.tmp`)).toBe(false);
    expect(fs.readFileSync(keyFile).equals(before)).toBe(true);
    const config = await raw(s.server.url + PATHS.blindedConfig, { method: 'GET', headers: { accept: 'application/json' } });
    expect(config.json.current).toBe(1);
    expect([...(await s.client(token, 'blinded').lookup(n!)).capabilities]).toEqual(['messages']);

    const again = await rotate(s);
    expect(again.status).toBe(201);
    expect(again.json).toMatchObject({ epoch: 2, previous: 1 });
    expect([...(await s.client(token, 'blinded').lookup(n!)).capabilities]).toEqual(['messages']);
  });
});
