/**
 * The client library as a package: `pcd/client` and `pcd/protocol` through
 * package.json `exports`, as built by `npm run build` (dist/lib, what
 * `npm install` leaves), imported by a plain Node child process with no tsx,
 * doing real lookups against a real server; and a browser bundle of it that
 * holds no Node import.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import * as esbuild from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DESIGNS } from '../shared/messages.ts';
import { startTestServer, tempDir, type TestServer } from './helpers.ts';

const run = promisify(execFile);
const ROOT = path.resolve('.');

/** Runs an ES module in a plain node child (no loader), from the repository root so that `pcd/...` resolves by the package's own name. */
async function node(source: string, env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, ['--input-type=module', '-e', source], { cwd: ROOT, env: { ...process.env, ...env, NODE_OPTIONS: '' }, timeout: 60_000 });
}

describe('the package entries (dist/lib, built by npm run build)', () => {
  let ts: TestServer;
  let token: string;
  const registered = '+14155550123';
  const unregistered = '+14155550199';

  beforeAll(async () => {
    for (const f of ['dist/lib/client/index.js', 'dist/lib/client/index.d.ts', 'dist/lib/shared/index.js', 'dist/lib/shared/index.d.ts']) {
      expect(fs.existsSync(f), `${f} is missing: run npm run build`).toBe(true);
    }
    ts = await startTestServer();
    ({ token } = await ts.admin.createAccount({ email: 'lib@example.org', numbers: [registered], capabilities: ['messages'] }));
  });
  afterAll(() => ts?.close());

  it("import('pcd/client') gives createClient to plain node", async () => {
    const { stdout } = await node("import('pcd/client').then(m => console.log(typeof m.createClient, typeof m.PcdError, typeof m.KeyPins))");
    expect(stdout.trim()).toBe('function function function');
  });

  it.each(['noble', 'sodium', 'default'])('a plain node child looks numbers up in every design through pcd/client (%s backend)', async (backend) => {
    const { stdout } = await node(
      `import { createClient } from 'pcd/client';
       const out = {};
       for (const design of ${JSON.stringify(DESIGNS)}) {
         const c = createClient({ baseUrl: process.env.URL, token: process.env.TOKEN, design, defaultRegion: 'US'${backend === 'default' ? '' : `, backend: '${backend}'`} });
         out[design] = await c.lookupMany(['(415) 555-0123', '415-555-0199']);
       }
       console.log(JSON.stringify(out));`,
      { URL: ts.server.url, TOKEN: token },
    );
    const out = JSON.parse(stdout) as Record<string, { number: string; capabilities: string[] }[]>;
    for (const d of DESIGNS) {
      expect(out[d], d).toEqual([
        { number: registered, capabilities: ['messages'] },
        { number: unregistered, capabilities: [] },
      ]);
    }
  });

  it('a wrong token is a PcdError with its code in the child, and the pin file works from the built code', async () => {
    const pins = path.join(tempDir(), 'pins.json');
    const { stdout } = await node(
      `import { createClient, PcdError } from 'pcd/client';
       const bad = createClient({ baseUrl: process.env.URL, token: 'not-a-token', design: 'plain' });
       let code;
       try { await bad.lookup('+14155550123'); } catch (e) { code = e instanceof PcdError ? e.code : 'not a PcdError: ' + e; }
       const c = createClient({ baseUrl: process.env.URL, token: process.env.TOKEN, design: 'blinded', pinFile: process.env.PINS });
       await c.lookup('+14155550123');
       console.log(JSON.stringify({ code }));`,
      { URL: ts.server.url, TOKEN: token, PINS: pins },
    );
    expect(JSON.parse(stdout)).toEqual({ code: 'unauthenticated' });
    const file = JSON.parse(fs.readFileSync(pins, 'utf8')) as { version: number; servers: Record<string, Record<string, string>> };
    expect(file.version).toBe(1);
    expect(Object.values(file.servers[ts.server.url] ?? {})[0]).toMatch(/^[A-Za-z0-9+/]{43}=$/);
  });

  it('pcd/protocol gives the protocol module: normalisation, bucket ids, the codec, the noble suite', async () => {
    const { stdout } = await node(
      `import * as p from 'pcd/protocol';
       const n = p.normalizeNumber('(415) 555-0123', 'US');
       const body = p.decodeBody(p.encodeBody({ a: new Uint8Array([1, 2, 3]) }, 'json'), 'json');
       const kp = p.nobleBackend.generateKeyPair();
       console.log(JSON.stringify({ n, bucket: p.bucketOf(n, 8), body, designs: p.DESIGNS, pk: kp.publicKey.length, paths: p.PATHS.blindedConfig }));`,
    );
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ n: registered, body: { a: 'AQID' }, designs: [...DESIGNS], pk: 32, paths: '/v1/blinded/config' });
    const { bucketOf } = await import('../shared/buckets.ts');
    expect(out.bucket).toBe(bucketOf(registered as never, 8));
  });

  it('bundles for the browser with no Node import; libsodium is a chunk of its own, loaded only when asked for', async () => {
    const dir = tempDir('pcd-bundle-');
    // A consumer's project: the package under node_modules, as npm would place it.
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'pcd'), 'dir');
    const entry = path.join(dir, 'entry.mjs');
    fs.writeFileSync(entry, "import { createClient } from 'pcd/client';\nexport default createClient;\n");
    const r = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'browser',
      outdir: path.join(dir, 'out'),
      absWorkingDir: dir,
      logLevel: 'silent',
      write: false,
      metafile: true,
    });
    expect(r.errors).toEqual([]);
    const files = r.outputFiles.map((f) => ({ name: path.basename(f.path), text: f.text }));
    for (const f of files) expect(f.text, f.name).not.toMatch(/\bimport\s*(?:[\w{}*\s,]+from\s*)?["']node:/);
    const main = files.find((f) => f.name === 'entry.js')!;
    expect(main.text).not.toContain('crypto_scalarmult_ristretto255');
    expect(files.some((f) => f.text.includes('crypto_scalarmult_ristretto255'))).toBe(true);
  });
});
