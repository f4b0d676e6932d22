/**
 * Key rotation against every ordering, start-up against a key file that
 * disagrees with the database, and key hygiene:
 * - rotations fired at once are one at a time (one builds, the others get
 *   409, never a 500); a rotation meets directory changes and a start-up
 *   build (held at a gate, so nothing depends on the machine's speed) and
 *   stays right; a commit the database refuses leaves no key behind;
 * - a wrong, missing or unknown key stops the start with one line saying
 *   what and how to recover (PcdError, so the CLI prints it as one line),
 *   and `pcd rotate-key --repair` recovers;
 * - the key file is parsed from bytes (no string ever holds key hex) and
 *   written as bytes; every rewrite scrubs the replaced inode; destroyed
 *   keys are zeroed wherever they were held.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createAdminClient, createClient } from '../client/client.ts';
import type { E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { PATHS } from '../shared/messages.ts';
import { generateKeyPair, publicKeyOf } from '../shared/noble.ts';
import { loadBackend } from '../shared/backends.ts';
import { DEFAULT_BACKEND, type KeyPair } from '../shared/suite.ts';
import { sampleNumbers } from '../synth/directory.ts';
import { rotateKeyOffline } from '../server/designs/blinded.ts';
import { designOf } from '../server/designs/index.ts';
import { KEY_FILE, parseKeyFileBytes, readEpochKeys, serializeKeyFile } from '../disk/keyfile.ts';
import { KeyFile } from '../server/blinded/keys.ts';
import { createHandler, type FromWorker } from '../server/blinded/worker.ts';
import { ADMIN_TOKEN, TEST_SIZE_CLASSES, holdEpochBuilds, raw, runPcd, startTestServer, tempDir, testClock, type TestServer } from './helpers.ts';

const HOUR = 3_600_000;
const numbers = sampleNumbers({ count: 30, seed: 'rotation-test', regions: ['US', 'GB', 'DE'] });
const registered = numbers.slice(0, 12);
const fresh = numbers.slice(12);

const open: TestServer[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => {});
});

async function start(options: Parameters<typeof startTestServer>[0] = {}): Promise<TestServer> {
  const s = await startTestServer({ designs: ['blinded'], graceMs: HOUR, ...options });
  open.push(s);
  return s;
}

async function stop(s: TestServer): Promise<void> {
  await s.close();
  open.splice(open.indexOf(s), 1);
}

const blindedOf = (s: TestServer) => designOf(s.server.designs, 'blinded')!;

/** Registers `list`, one account each; returns a requester token and the account ids. */
async function register(s: TestServer, list: readonly E164[], tag = 'r'): Promise<{ token: string; ids: number[] }> {
  const made = await Promise.all(list.map((n, i) => s.admin.createAccount({ email: `${tag}${i}@example.org`, numbers: [n], capabilities: ['messages'] })));
  return { token: made.at(-1)!.token, ids: made.map((m) => m.accountId) }; // the last: tests delete the first ones
}

/** Which of `list` the blinded design (its current epoch, a fresh client) says are registered. */
async function registeredOf(s: TestServer, token: string, list: readonly E164[]): Promise<boolean[]> {
  const answers = await createClient({ baseUrl: s.server.url, token, design: 'blinded' }).lookupMany([...list]);
  return answers.map((a) => a.capabilities.length > 0);
}

async function epochList(s: TestServer): Promise<{ current: number; epochs: number[] }> {
  const r = await raw(s.server.url + PATHS.blindedConfig, { method: 'GET' });
  expect(r.status).toBe(200);
  return { current: r.json.current, epochs: r.json.epochs.map((e: { epoch: number }) => e.epoch) };
}

function rotateRequest(s: TestServer): Promise<{ status: number; body: any }> {
  return fetch(s.server.url + PATHS.adminRotate, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', accept: 'application/json' },
    body: '{}',
  }).then(async (r) => ({ status: r.status, body: await r.json() }));
}

describe('rotations fired at once', () => {
  it('are one at a time: in one tick exactly one rotates and the others get 409, changing nothing', async () => {
    const s = await start();
    const { token } = await register(s, registered);
    const epochs = blindedOf(s).epochs;
    const calls = Array.from({ length: 5 }, () => epochs.rotate());
    const settled = await Promise.allSettled(calls);
    expect(settled[0]).toEqual({ status: 'fulfilled', value: { epoch: 2, previous: 1, retiresAt: expect.any(Number) } });
    for (const r of settled.slice(1)) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: ErrorCode.Conflict, message: expect.stringMatching(/epoch 2 is being built by another rotation/) });
    }
    expect(await epochList(s)).toEqual({ current: 2, epochs: [1, 2] });
    expect([...readEpochKeys(s.dataDir).keys()]).toEqual([1, 2]);
    expect(await registeredOf(s, token, [registered[0]!, fresh[0]!])).toEqual([true, false]);
  });

  it('over HTTP: every answer is 201 or 409, never a 500; the 201s made consecutive epochs; the folder restarts as served', async () => {
    const s = await start();
    const { token } = await register(s, registered);
    const replies = await Promise.all(Array.from({ length: 6 }, () => rotateRequest(s)));
    for (const r of replies) expect([201, 409], JSON.stringify(r)).toContain(r.status);
    const made = replies.filter((r) => r.status === 201).map((r) => r.body.epoch as number).sort((a, b) => a - b);
    expect(made.length).toBeGreaterThanOrEqual(1);
    expect(made).toEqual(made.map((_, i) => i + 2));
    for (const r of replies.filter((x) => x.status === 409)) expect(r.body.error.code).toBe(ErrorCode.Conflict);
    const want = { current: made.at(-1)!, epochs: [1, ...made] };
    expect(await epochList(s)).toEqual(want);
    expect([...readEpochKeys(s.dataDir).keys()]).toEqual(want.epochs);

    const again = await s.restart();
    open.splice(open.indexOf(s), 1, again);
    expect(await epochList(again)).toEqual(want);
    expect(await registeredOf(again, token, [registered[3]!, fresh[1]!])).toEqual([true, false]);
    expect((await rotateRequest(again)).body).toMatchObject({ epoch: want.current + 1, previous: want.current });
  });
});

describe('a rotation meeting other work', () => {
  it('keeps every directory change made while it builds, through the new epoch and after a restart', async () => {
    const s = await start();
    const { token, ids } = await register(s, registered);
    const epochs = blindedOf(s).epochs;
    const rotation = epochs.rotate();
    expect(epochs.building).toMatchObject({ epoch: 2 });
    // Delivered in the same turn (they arrive while it builds), and over HTTP (whenever they arrive).
    const direct = s.server.store.createAccount({ email: 'direct@example.org', numbers: [fresh[0]!], mask: 1 }, Date.now());
    const delivered = s.server.applyChanges(direct.changes, direct.version);
    const overHttp = Promise.all([
      ...fresh.slice(1, 4).map((n, i) => s.admin.createAccount({ email: `late${i}@example.org`, numbers: [n], capabilities: ['messages'] })),
      s.admin.deleteAccount(ids[0]!),
      s.admin.deleteAccount(ids[1]!),
    ]);
    const [rotated] = await Promise.all([rotation, delivered, overHttp]);
    expect(rotated).toMatchObject({ epoch: 2, previous: 1 });
    const asked = [registered[0]!, registered[1]!, registered[2]!, ...fresh.slice(0, 5)];
    const want = [false, false, true, true, true, true, true, false];
    expect(await registeredOf(s, token, asked)).toEqual(want);
    const again = await s.restart();
    open.splice(open.indexOf(s), 1, again);
    expect((await epochList(again)).current).toBe(2);
    expect(await registeredOf(again, token, asked)).toEqual(want);
  });

  it('a commit the database refuses takes the new key out of the key file; the start then says so in one line, and --repair recovers', async () => {
    const s = await start();
    const { token } = await register(s, registered);
    const rotation = blindedOf(s).epochs.rotate();
    // Another writer (what the folder lock now keeps out) made epoch 2 meanwhile.
    const other = generateKeyPair('voprf');
    s.server.store.db.prepare('INSERT INTO epochs (epoch, public_key, mode, bucket_bits, tag_bytes, created_at) VALUES (2, ?, ?, 0, 8, ?)').run(Buffer.from(other.publicKey), 'voprf', Date.now());
    await expect(rotation).rejects.toMatchObject({ code: ErrorCode.Conflict, message: expect.stringMatching(/has epoch 2 already, which this server did not make/) });
    expect([...readEpochKeys(s.dataDir).keys()]).toEqual([1]);
    expect(await epochList(s)).toEqual({ current: 1, epochs: [1] }); // still serving
    await stop(s);

    const failed = await startTestServer({ dataDir: s.dataDir, designs: ['blinded'] }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(PcdError);
    expect((failed as PcdError).message).toMatch(
      /^epoch 2 is live in \S+ but its secret key is missing from \S+: restore the key file from a backup, or run `pcd rotate-key --data \S+ --repair` to retire epoch 2 and start a new epoch/,
    );
    expect((failed as PcdError).message).not.toContain('\n');

    const repaired = await rotateKeyOffline({ dataDir: s.dataDir, graceMs: HOUR, repair: true });
    expect(repaired).toMatchObject({ epoch: 3, previous: 1, repaired: ['retired epoch 2 for good: its key was missing'] });
    const back = await start({ dataDir: s.dataDir });
    expect(await epochList(back)).toEqual({ current: 3, epochs: [1, 3] });
    expect((await raw(back.server.url + PATHS.blindedBucket(2, 0), { method: 'GET' })).status).toBe(410);
    expect(await registeredOf(back, token, [registered[5]!, fresh[6]!])).toEqual([true, false]);
  });
});

describe('a rotation while the epochs are built at start', () => {
  afterEach(() => {
    vi.doUnmock('../server/blinded/build.ts');
    vi.resetModules();
  });

  it('is refused with 409 until the build is done, then rotates', async () => {
    const { release, startServer } = await holdEpochBuilds();
    const server = await startServer({ dataDir: tempDir(), designs: ['blinded'], adminToken: ADMIN_TOKEN, evalThreads: 0, sizeClasses: TEST_SIZE_CLASSES, port: 0 });
    try {
      const ts = { server } as TestServer;
      const during = await rotateRequest(ts);
      expect(during.status).toBe(409);
      expect(during.body.error.message).toMatch(/epoch 1 is being built; rotate again once it is done/);
      release();
      await server.ready;
      expect((await rotateRequest(ts)).body).toMatchObject({ epoch: 2, previous: 1 });
    } finally {
      release();
      await server.close();
    }
  });
});

describe('a key file that disagrees with the database', () => {
  it('a replaced key: one line from the CLI (exit 2), and `pcd rotate-key --repair` retires the epoch and starts a new one', async () => {
    const s = await start();
    const { token } = await register(s, registered);
    await stop(s);
    const file = path.join(s.dataDir, KEY_FILE);
    fs.writeFileSync(file, serializeKeyFile(new Map([[1, generateKeyPair('voprf').secretKey]])), { mode: 0o600 });

    const direct = await startTestServer({ dataDir: s.dataDir, designs: ['blinded'] }).catch((e: unknown) => e);
    expect(direct).toMatchObject({ code: ErrorCode.Conflict });
    expect((direct as Error).message).toBe(
      `epoch 1 in ${path.join(s.dataDir, 'pcd.sqlite')} has another public key than the key ${file} holds for it: the key file was replaced or edited. ` +
        `Restore it from a backup, or run \`pcd rotate-key --data ${s.dataDir} --repair\` to retire epoch 1 and start a new epoch`,
    );
    // The commands in this process (runPcd prints and exits as bin/pcd.ts does; the binary's own exits are
    // test/cli.test.ts's and test/folder.test.ts's).
    const served = await runPcd(['serve', '--data', s.dataDir, '--port', '0', '--design', 'blinded', '--log-level', 'silent']);
    expect(served.code).toBe(2);
    expect(served.stderr).toMatch(/^pcd: epoch 1 in \S+ has another public key .* --repair` to retire epoch 1 and start a new epoch \(conflict\)\n$/);

    const fixed = await runPcd(['rotate-key', '--data', s.dataDir, '--repair'], { PCD_LOG_LEVEL: 'silent' });
    expect(fixed.code, fixed.stderr).toBe(0);
    expect(fixed.stdout).toBe('repaired: retired epoch 1 for good: its key was not the one its public key belongs to\nnew epoch 2\n');
    const back = await start({ dataDir: s.dataDir });
    expect(await epochList(back)).toEqual({ current: 2, epochs: [2] });
    expect((await raw(back.server.url + PATHS.blindedBucket(1, 0), { method: 'GET' })).status).toBe(410);
    expect(await registeredOf(back, token, [registered[0]!, fresh[0]!])).toEqual([true, false]);
  });

  it('a key of an unknown epoch: one line naming it; --repair destroys it and rotates', async () => {
    const s = await start();
    await stop(s);
    const keys = readEpochKeys(s.dataDir);
    keys.set(7, generateKeyPair('voprf').secretKey);
    fs.writeFileSync(path.join(s.dataDir, KEY_FILE), serializeKeyFile(keys), { mode: 0o600 });
    await expect(startTestServer({ dataDir: s.dataDir, designs: ['blinded'] })).rejects.toMatchObject({
      code: ErrorCode.Conflict,
      message: expect.stringMatching(/holds a key for epoch 7, which the database \S+ does not know: .* --repair` to destroy the keys of unknown epochs$/),
    });
    expect(await rotateKeyOffline({ dataDir: s.dataDir, repair: true })).toMatchObject({
      epoch: 2,
      previous: 1,
      repaired: ['destroyed the key of epoch 7, which the database does not know'],
    });
    expect([...readEpochKeys(s.dataDir).keys()]).toEqual([1, 2]);
  });

  it('a key file that is not one: one line, no key bytes, with the way out', async () => {
    const s = await start();
    await stop(s);
    const file = path.join(s.dataDir, KEY_FILE);
    const hex = Buffer.from(readEpochKeys(s.dataDir).get(1)!).toString('hex');
    fs.writeFileSync(file, `{ "version": 1, "keys": [{ "epoch": 1, "secretKey": "${hex.slice(0, 60)}" }] }`);
    const e = await startTestServer({ dataDir: s.dataDir, designs: ['blinded'] }).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: ErrorCode.Conflict, message: expect.stringMatching(/keys\[0\]\.secretKey \(epoch 1\) must be 64 hex digits\. Restore the key file/) });
    expect((e as Error).message).not.toContain(hex.slice(0, 16));
  });
});

describe('key hygiene', () => {
  const k1 = generateKeyPair('voprf').secretKey;
  const k2 = generateKeyPair('voprf').secretKey;
  const hex = (k: Uint8Array) => Buffer.from(k).toString('hex');

  it('parses the key file from bytes: JSON.parse and every string made on the way never hold key hex', () => {
    const text = `{"version":1,"keys":[ {"secretKey" : "${hex(k1).toUpperCase()}", "epoch": 1},\n{"epoch":2,"secretKey":"${hex(k2)}", "note": "secretKey"}]}`;
    const bytes = Buffer.from(text);
    const parse = vi.spyOn(JSON, 'parse');
    const toString = vi.spyOn(Buffer.prototype, 'toString');
    let keys: Map<number, Uint8Array>;
    let made: string[];
    try {
      keys = parseKeyFileBytes('oprf-keys.json', bytes);
      made = [...parse.mock.calls.map((c) => String(c[0])), ...toString.mock.results.map((r) => String(r.value))];
    } finally {
      parse.mockRestore();
      toString.mockRestore();
    }
    expect([...keys.keys()]).toEqual([1, 2]);
    expect(Buffer.from(keys.get(1)!).equals(Buffer.from(k1))).toBe(true);
    expect(Buffer.from(keys.get(2)!).equals(Buffer.from(k2))).toBe(true);
    expect(made.length).toBeGreaterThan(0);
    expect(made.some((m) => m.includes('"@0"') && m.includes('"@1"'))).toBe(true); // what JSON.parse saw: placeholders
    for (const k of [k1, k2]) for (const s of made) expect(s.toLowerCase()).not.toContain(hex(k).slice(0, 16));
    expect(bytes.toString()).toBe(text); // the caller's bytes are left as they were (the caller zeroes them)
  });

  it('writes the documented format as bytes, read back the same', () => {
    const bytes = serializeKeyFile(new Map([[2, k2], [1, k1]]));
    expect(JSON.parse(bytes.toString())).toEqual({ version: 1, keys: [{ epoch: 1, secretKey: hex(k1) }, { epoch: 2, secretKey: hex(k2) }] });
    expect(bytes.toString()).toBe(JSON.stringify(JSON.parse(bytes.toString()), null, 2) + '\n');
    expect(JSON.parse(serializeKeyFile(new Map()).toString())).toEqual({ version: 1, keys: [] });
    const back = parseKeyFileBytes('f', bytes);
    expect([...back.entries()].map(([e, k]) => [e, hex(k)])).toEqual([[1, hex(k1)], [2, hex(k2)]]);
  });

  it('refuses bad entries naming the entry, never the key', () => {
    for (const [text, msg] of [
      [`{"version":1,"keys":[{"epoch":1,"secretKey":"${hex(k1).slice(2)}zz"}]}`, /keys\[0\]\.secretKey \(epoch 1\) must be 64 hex digits/],
      [`{"version":1,"keys":[{"epoch":1,"secretKey":"${hex(k1)}"},{"epoch":1,"secretKey":"${hex(k2)}"}]}`, /epoch 1 is listed twice/],
      [`{"version":1,"keys":[{"epoch":1,"secretKey":"${'ff'.repeat(32)}"}]}`, /not a valid ristretto255 scalar/],
      [`{"version":1,"keys":[{"epoch":1,"secretKey":"${hex(k1)}"}`, /not valid JSON/],
    ] as const) {
      let err: unknown;
      try {
        parseKeyFileBytes('oprf-keys.json', Buffer.from(text));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PcdError);
      expect((err as Error).message).toMatch(msg);
      expect((err as Error).message).not.toContain(hex(k1).slice(4, 20));
      expect((err as Error).message).not.toContain(hex(k2).slice(4, 20));
    }
  });

  it('scrubs the replaced file on every write, adding a key as well as destroying one: the old inode holds zeros', () => {
    const dir = tempDir('pcd-keys-');
    const kf = KeyFile.open(dir);
    kf.add(1, k1);
    const file = path.join(dir, KEY_FILE);
    const link = path.join(dir, 'old-inode');
    fs.linkSync(file, link); // keeps the inode alive after the rename, so its scrub is observable
    const before = fs.readFileSync(link);
    expect(before.includes(Buffer.from(hex(k1)))).toBe(true);
    kf.add(2, k2);
    const after = fs.readFileSync(link);
    expect(after.length).toBe(before.length);
    expect(after.every((b) => b === 0)).toBe(true);
    expect([...readEpochKeys(dir).keys()]).toEqual([1, 2]);

    fs.rmSync(link);
    fs.linkSync(file, link);
    kf.destroy(1);
    expect(fs.readFileSync(link).every((b) => b === 0)).toBe(true);
    expect(fs.readFileSync(file).includes(Buffer.from(hex(k1)))).toBe(false);
    kf.close();
  });

  it('zeroes a destroyed epoch key wherever it was held: the key file, the epoch, the evaluator pool and its workers; the rest on close', async () => {
    const clock = testClock();
    const s = await start({ now: clock.now, evalThreads: 1 });
    const { token } = await register(s, registered.slice(0, 4));
    await registeredOf(s, token, [registered[0]!]); // the pool and its worker get epoch 1's key
    const design = blindedOf(s);
    const epochs = design.epochs;
    const evaluator = design.evaluator;
    const heldByFile = (epochs as unknown as { keyFile: { keys: Map<number, Uint8Array> } }).keyFile.keys;
    const heldByPool = (evaluator as unknown as { keys: Map<number, { key: KeyPair }> }).keys;
    const copies = [epochs.get(1).key.secretKey, heldByFile.get(1)!, heldByPool.get(1)!.key.secretKey];
    for (const c of copies) expect(c.some((b) => b !== 0)).toBe(true);
    expect(await evaluator.workerEpochs()).toEqual([[1]]);

    await createAdminClient({ baseUrl: s.server.url, adminToken: ADMIN_TOKEN }).rotateKey({});
    await registeredOf(s, token, [registered[0]!]); // epoch 2 in the pool too
    clock.advance(2 * HOUR);
    expect((await raw(s.server.url + PATHS.blindedBucket(1, 0), { method: 'GET' })).status).toBe(410);
    for (const c of copies) expect(c.every((b) => b === 0)).toBe(true);
    expect(heldByFile.has(1)).toBe(false);
    expect(await evaluator.workerEpochs()).toEqual([[2]]);

    const live = [epochs.get(2).key.secretKey, heldByFile.get(2)!, heldByPool.get(2)!.key.secretKey];
    await stop(s);
    for (const c of live) expect(c.every((b) => b === 0)).toBe(true);
    expect([...readEpochKeys(s.dataDir).keys()]).toEqual([2]); // the file keeps the live key
  });

  it('a worker zeroes the key it was sent when told to drop it', async () => {
    const backend = await loadBackend(DEFAULT_BACKEND);
    const out: FromWorker[] = [];
    const handle = createHandler(backend, (m) => out.push(m));
    const secretKey = generateKeyPair('voprf').secretKey;
    handle({ t: 'key', epoch: 3, mode: 'voprf', secretKey, publicKey: publicKeyOf(secretKey) });
    handle({ t: 'epochs', id: 1 });
    handle({ t: 'drop', epoch: 3 });
    handle({ t: 'epochs', id: 2 });
    expect(out).toEqual([{ t: 'epochs', id: 1, epochs: [3] }, { t: 'epochs', id: 2, epochs: [] }]);
    expect(secretKey.every((b) => b === 0)).toBe(true);
  });
});
