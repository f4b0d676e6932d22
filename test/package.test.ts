/**
 * What `npm pack` ships. The root package (`pcd`: the CLI, the server and
 * the `pcd/client` and `pcd/protocol` entries) must carry the built entries
 * (dist/lib), the page (dist/web) and every source file the CLI runs through
 * tsx; the client package (packages/client, `@pcd/client`) must carry its
 * built JavaScript and types and depend on exactly the packages that
 * client/index.ts and shared/index.ts import: nothing native, nothing of the
 * server's. Both read the dist/ folders that `npm run build` leaves (as
 * `npm test` does first). Under PCD_TEST_FULL=1 the client's tarball is also
 * installed into a fresh folder with `npm ci --offline` (from npm's cache,
 * filled by the root's own install) and imported by a plain node child.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import * as esbuild from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';
import { FULL, tempDir } from './helpers.ts';

const run = promisify(execFile);
const ROOT = path.resolve('.');
const CLIENT_DIR = path.join(ROOT, 'packages', 'client');
const CLIENT_NAME = '@pcd/client';
/** Packages a client-only consumer must never get: native modules, the server's, the build's. */
const SERVER_SIDE = ['better-sqlite3', 'express', 'vega', 'vega-lite', 'esbuild', 'tsx', 'typescript', 'pino', 'commander'];

interface PackReport {
  name: string;
  filename: string;
  files: { path: string }[];
}

/** `npm pack --dry-run --json` (scripts off: the dist folders are already built), the list of paths it would pack. */
async function packList(args: string[] = []): Promise<{ report: PackReport; files: Set<string> }> {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', ...args], { cwd: ROOT, timeout: 60_000, maxBuffer: 16 << 20 });
  const [report] = JSON.parse(stdout) as PackReport[];
  return { report: report!, files: new Set(report!.files.map((f) => f.path)) };
}

/** The files a module graph reaches (relative to the root) and the packages it imports, by esbuild's metafile: what runs, type-only imports left out. */
async function moduleGraph(entries: string[]): Promise<{ files: string[]; packages: Set<string> }> {
  const r = await esbuild.build({ entryPoints: entries, bundle: true, write: false, metafile: true, platform: 'node', format: 'esm', packages: 'external', outdir: 'out', splitting: true, absWorkingDir: ROOT, logLevel: 'silent' });
  const packages = new Set<string>();
  for (const input of Object.values(r.metafile.inputs)) {
    for (const i of input.imports) {
      if (!i.external || i.path.startsWith('node:')) continue;
      const parts = i.path.split('/');
      packages.add(i.path.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
    }
  }
  return { files: Object.keys(r.metafile.inputs), packages };
}

function readJson<T>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}

interface Manifest {
  name: string;
  version: string;
  exports: Record<string, string | { types: string; default: string }>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  scripts?: Record<string, string>;
  bin?: Record<string, string>;
  overrides?: Record<string, string>;
}

/** The files package.json `exports` points at, without their leading `./`. */
function exportTargets(m: Manifest): string[] {
  return Object.values(m.exports).flatMap((e) => (typeof e === 'string' ? [e] : [e.types, e.default])).map((p) => p.replace(/^\.\//, ''));
}

describe('the root package (pcd): npm pack carries the library and what the CLI runs', () => {
  const root = readJson<Manifest>(path.join(ROOT, 'package.json'));
  let files: Set<string>;

  beforeAll(async () => {
    expect(fs.existsSync('dist/lib/client/index.js'), 'dist/lib is missing: run npm run build').toBe(true);
    ({ files } = await packList());
  });

  it("lists the built entries that package.json's exports name", () => {
    expect(files.has('dist/lib/client/index.js')).toBe(true);
    for (const f of exportTargets(root)) expect(files.has(f), f).toBe(true);
  });

  it("lists every source file the pcd command loads (bin, its import graph, the evaluator's worker, the bench's child) and the built page", async () => {
    const { files: graph } = await moduleGraph(['bin/pcd.ts', 'server/blinded/worker.ts', 'harness/child.ts']);
    const needed = [...Object.values(root.bin ?? {}), 'server/blinded/boot.mjs', ...graph, 'dist/web/index.html'];
    expect(needed.length).toBeGreaterThan(100);
    expect(needed.filter((f) => !files.has(f.replace(/^\.\//, '')))).toEqual([]);
  });

  it('leaves out the tests, the benchmark results and the page sources', () => {
    expect([...files].filter((f) => /^(test|bench\/results|bench\/scratch|web\/page|packages|docs|\.ci)\//.test(f))).toEqual([]);
  });
});

describe(`the client package (${CLIENT_NAME}, packages/client)`, () => {
  const manifest = readJson<Manifest>(path.join(CLIENT_DIR, 'package.json'));
  let files: Set<string>;
  let report: PackReport;

  beforeAll(async () => {
    expect(fs.existsSync(path.join(CLIENT_DIR, 'dist/client/index.js')), 'packages/client/dist is missing: run npm run build').toBe(true);
    ({ files, report } = await packList(['-w', CLIENT_NAME]));
  });

  it('packs its built JavaScript and types, which its exports name, and nothing else', () => {
    expect(report.name).toBe(CLIENT_NAME);
    for (const f of exportTargets(manifest)) expect(files.has(f), f).toBe(true);
    expect(files.has('dist/client/index.js')).toBe(true);
    expect([...files].filter((f) => !/^dist\/(client|shared)\/.+\.(js|d\.ts)$/.test(f) && !['package.json', 'README.md'].includes(f))).toEqual([]);
  });

  it('depends on exactly the packages its module graph imports: no server, no native module, no build tool', async () => {
    const graph = await moduleGraph(['client/index.ts', 'shared/index.ts']);
    expect(graph.files.filter((f) => !/^(client|shared)\//.test(f))).toEqual([]);
    const deps = { ...manifest.dependencies, ...manifest.optionalDependencies, ...manifest.peerDependencies };
    expect(Object.keys(deps).sort()).toEqual([...graph.packages].sort());
    for (const name of SERVER_SIDE) expect(deps, name).not.toHaveProperty(name);
    // The same ranges as the root's, so one lock file serves both.
    const rootDeps = readJson<Manifest>(path.join(ROOT, 'package.json')).dependencies ?? {};
    for (const [name, range] of Object.entries(deps)) expect(rootDeps[name], name).toBe(range);
  });

  it('runs nothing at install and the root builds it', () => {
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) expect(manifest.scripts ?? {}, s).not.toHaveProperty(s);
    const root = readJson<Manifest>(path.join(ROOT, 'package.json'));
    expect(root.scripts?.build).toContain('packages/client');
  });

  // A real install: the tarball into an empty folder, offline. The consumer's
  // lock file is cut from the root's (the same versions, which npm ci has put
  // in npm's cache), so nothing is resolved over the network.
  it.runIf(FULL)('installs from its tarball into an empty folder, offline, with no native build, and a plain node child imports it', { timeout: 120_000 }, async () => {
    const dir = tempDir('pcd-client-consumer-');
    await run('npm', ['pack', '--ignore-scripts', '-w', CLIENT_NAME, '--pack-destination', dir], { cwd: ROOT, timeout: 60_000 });
    const tgz = fs.readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    const spec = `file:${tgz}`;
    const rootLock = readJson<{ packages: Record<string, LockEntry> }>(path.join(ROOT, 'package-lock.json'));
    const rootManifest = readJson<Manifest>(path.join(ROOT, 'package.json'));
    const pkg = { name: 'consumer', version: '1.0.0', private: true, type: 'module', dependencies: { [CLIENT_NAME]: spec }, overrides: rootManifest.overrides };
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify(pkg, null, 2));
    fs.writeFileSync(path.join(dir, 'package-lock.json'), JSON.stringify(consumerLock(rootLock.packages, pkg, manifest, spec), null, 2));
    const { stdout: out, stderr } = await run('npm', ['ci', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: dir, timeout: 100_000 });
    expect(`${out}\n${stderr}`).not.toMatch(/node-gyp rebuild|gyp info|prebuild-install/);
    const installed = fs.readdirSync(path.join(dir, 'node_modules'));
    for (const name of SERVER_SIDE) expect(installed, name).not.toContain(name);
    const { stdout } = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { createClient, normalizeNumber, loadBackend } from '${CLIENT_NAME}';
         import { bucketOf, encodeBody, decodeBody } from '${CLIENT_NAME}/protocol';
         const n = normalizeNumber('(415) 555-0123', 'US');
         const suite = await loadBackend('noble');
         const { blinds, blinded } = suite.blindBatch('voprf', [new TextEncoder().encode(n)]);
         const round = decodeBody(encodeBody({ e: blinded[0] }, 'msgpack'), 'msgpack');
         console.log(JSON.stringify({ client: typeof createClient, n, bucket: typeof bucketOf(n, 8), blind: blinds[0].length, element: blinded[0].length, round: round.e.length }));`,
      ],
      { cwd: dir, env: { ...process.env, NODE_OPTIONS: '' }, timeout: 30_000 },
    );
    expect(JSON.parse(stdout)).toEqual({ client: 'function', n: '+14155550123', bucket: 'number', blind: 32, element: 32, round: 32 });
  });
});

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  link?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
}

/**
 * A consumer's package-lock.json for `@pcd/client` from its tarball: the
 * client's dependencies and theirs, each at the place and version the root's
 * lock file has it (node's resolution, walking up from the dependent), so
 * `npm ci --offline` finds every tarball in the cache the root's install filled.
 */
function consumerLock(rootPackages: Record<string, LockEntry>, pkg: { name: string; version: string; dependencies: Record<string, string> }, client: Manifest, spec: string) {
  const packages: Record<string, LockEntry> = {
    '': { name: pkg.name, version: pkg.version, dependencies: pkg.dependencies },
    [`node_modules/${CLIENT_NAME}`]: { version: client.version, resolved: spec, dependencies: client.dependencies, license: 'MIT', engines: { node: '>=20.19' } },
  };
  const resolve = (from: string, name: string): string => {
    // from: 'node_modules/a/node_modules/b' -> try its own node_modules, then each ancestor's, then the top.
    let base = from;
    for (;;) {
      const at = `${base ? `${base}/` : ''}node_modules/${name}`;
      if (rootPackages[at] && !rootPackages[at]!.link) return at;
      if (!base) throw new Error(`${name} (needed by ${from || 'the consumer'}) is not in the root's lock file`);
      const cut = base.lastIndexOf('/node_modules/');
      base = cut < 0 ? '' : base.slice(0, cut);
    }
  };
  const queue: [string, Record<string, string>][] = [['', { ...client.dependencies }]];
  while (queue.length) {
    const [from, deps] = queue.shift()!;
    for (const name of Object.keys(deps)) {
      const at = resolve(from, name);
      if (packages[at]) continue;
      const entry = { ...rootPackages[at]! };
      delete entry.dev;
      delete entry.peer;
      delete entry.devOptional;
      packages[at] = entry;
      queue.push([at, { ...entry.dependencies, ...entry.optionalDependencies }]);
    }
  }
  return { name: pkg.name, version: pkg.version, lockfileVersion: 3, requires: true, packages };
}
