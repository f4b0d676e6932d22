/**
 * How pcd's processes start (launch/launch.mjs, launch/bundle.ts): from the
 * bundle of `npm run build` only while every file it was built from is as it
 * was, else from the sources; and a bundle (split into chunks) behaves as the sources do: the
 * same help, and a blinded server whose evaluator threads are found by their
 * own file's URL, answering a lookup made through the bundled client as the
 * in-process client answers it.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundles } from '../launch/bundle.ts';
import { bundledIn } from '../launch/launch.mjs';
import { PROJECT_ROOT } from '../bench/machine.ts';
import { PCD_BIN, runPcd, spawnStart, stopChild, tempDir, TEST_SIZE_CLASSES } from './helpers.ts';

describe('bundledIn: a bundle is used only while its inputs are unchanged', () => {
  let root: string;
  let dir: string;
  const input = () => path.join(root, 'src', 'a.ts');

  beforeAll(() => {
    root = tempDir();
    dir = path.join(root, 'dist');
    fs.mkdirSync(path.join(root, 'src'));
    fs.mkdirSync(dir);
    fs.writeFileSync(input(), 'export const a = 1;\n');
    fs.writeFileSync(path.join(dir, 'x.mjs'), '');
  });

  /** Records the input as it is now, as harness/bundle.ts does after a build. */
  const record = () => {
    const st = fs.statSync(input());
    fs.writeFileSync(path.join(dir, 'inputs.json'), JSON.stringify({ x: { 'src/a.ts': [st.size, st.mtimeMs] } }));
  };

  it('is the bundle while every input has its recorded size and mtime', () => {
    record();
    expect(bundledIn(dir, root, 'x')).toBe(path.join(dir, 'x.mjs'));
  });

  it('is undefined after an input is touched, resized or removed, and for a name or inputs file it lacks', () => {
    record();
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(input(), later, later); // same size, another mtime (an edit that keeps the length)
    expect(bundledIn(dir, root, 'x')).toBeUndefined();
    record();
    fs.appendFileSync(input(), '// more\n');
    fs.utimesSync(input(), later, later);
    expect(bundledIn(dir, root, 'x')).toBeUndefined(); // the same mtime, another size
    record();
    expect(bundledIn(dir, root, 'y')).toBeUndefined(); // no such bundle in inputs.json
    fs.rmSync(input());
    expect(bundledIn(dir, root, 'x')).toBeUndefined();
    fs.writeFileSync(input(), 'export const a = 1;\n');
    fs.rmSync(path.join(dir, 'inputs.json'));
    expect(bundledIn(dir, root, 'x')).toBeUndefined();
  });

  it('is undefined under PCD_SOURCES=1', () => {
    record();
    process.env.PCD_SOURCES = '1';
    try {
      expect(bundledIn(dir, root, 'x')).toBeUndefined();
    } finally {
      delete process.env.PCD_SOURCES;
    }
    expect(bundledIn(dir, root, 'x')).toBe(path.join(dir, 'x.mjs'));
  });
});

describe('a bundle of the sources behaves as the sources', () => {
  let out: string;

  beforeAll(async () => {
    // In the project, as dist/bundle is: the packages left outside the bundle load from its node_modules.
    fs.mkdirSync(path.join(PROJECT_ROOT, 'dist'), { recursive: true });
    out = fs.mkdtempSync(path.join(PROJECT_ROOT, 'dist', 'bundle-test-'));
    fs.writeFileSync(path.join(out, 'chunk-OLDBUILD.mjs'), ''); // a chunk of an earlier build, which the build removes
    await buildBundles(out);
  }, 60_000);

  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  it('records every project file it holds, and is fresh right after the build', () => {
    const inputs = JSON.parse(fs.readFileSync(path.join(out, 'inputs.json'), 'utf8')) as Record<string, Record<string, [number, number]>>;
    expect(Object.keys(inputs).sort()).toEqual(['child', 'pcd', 'reverse-worker', 'worker']);
    expect(inputs.pcd).toHaveProperty(['bin/pcd.ts']);
    expect(inputs.pcd).toHaveProperty(['server/blinded/spawn.ts']);
    expect(inputs.child).toHaveProperty(['harness/child.ts']);
    expect(bundledIn(out, PROJECT_ROOT, 'pcd')).toBe(path.join(out, 'pcd.mjs'));
    expect(fs.existsSync(path.join(out, 'pcd.mjs.map'))).toBe(true);
    // Code splitting: the entries' shared and on-demand parts are chunks beside them; none of an earlier build is left.
    const chunks = fs.readdirSync(out).filter((f) => /^chunk-.*\.mjs$/.test(f));
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks).not.toContain('chunk-OLDBUILD.mjs');
  });

  it('prints the same help as the sources, byte for byte', () => {
    const fromBundle = execFileSync(process.execPath, [path.join(out, 'pcd.mjs'), '--help'], { encoding: 'utf8' });
    const fromSources = execFileSync(process.execPath, [PCD_BIN, '--help'], { encoding: 'utf8', env: { ...process.env, PCD_SOURCES: '1' } });
    expect(fromBundle).toMatch(/^Usage: pcd /);
    expect(fromBundle).toBe(fromSources);
  });

  it('serves blinded with evaluator threads, and its client answers as the in-process one', async () => {
    const data = path.join(tempDir(), 'data');
    const { child, stdout: printed, stderr: logged } = await spawnStart(['--port', '0', '--data', data, '--no-ui', '--size', '40', '--size-classes', TEST_SIZE_CLASSES.join(',')], {
      entry: path.join(out, 'pcd.mjs'),
      env: { PCD_EVAL_THREADS: '1' },
    });
    try {
      const stdout = printed();
      const exported = /^\s*export PCD_SERVER=(\S+) PCD_TOKEN=(\S+)$/m.exec(stdout);
      expect(exported, stdout).not.toBeNull();
      const env = { PCD_SERVER: exported![1]!, PCD_TOKEN: exported![2]! };
      const lookup = [...stdout.matchAll(/^\s*npm run pcd -- (.+)$/gm)].map((m) => m[1]!.split(/\s+/)).find((c) => c[0] === 'lookup' && c.includes('blinded'))!;
      const bundled = execFileSync(process.execPath, [path.join(out, 'pcd.mjs'), ...lookup], { encoding: 'utf8', env: { ...process.env, ...env } });
      const inProcess = await runPcd(lookup, env);
      expect(inProcess.code, inProcess.stderr).toBe(0);
      expect(bundled).toMatch(/messenger/);
      expect(bundled).toBe(inProcess.stdout);
      expect(logged()).not.toMatch(/could not start|on the main thread/); // the threads started from their own files (server/blinded/pool.ts)
      expect(await stopChild(child)).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 90_000);
});
