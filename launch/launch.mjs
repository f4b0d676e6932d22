/**
 * How pcd's Node processes and worker threads start: from the bundles that
 * `npm run build` makes (launch/bundle.ts, dist/bundle/) while every file a
 * bundle was built from is unchanged; otherwise from the TypeScript sources
 * through tsx. An edit to any source takes effect at once, bundle or not;
 * `npm run build` makes the fast start fresh again. Plain JS: it runs before
 * tsx is loaded, and imports nothing of the project.
 *
 *   PCD_SOURCES=1   always the sources, never a bundle
 *   PCD_DEBUG=1     a bundle's stack traces name the source files (its source map)
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread } from 'node:worker_threads';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BUNDLE_DIR = path.join(ROOT, 'dist', 'bundle');

/** The entries, by the name of their bundle: the `pcd` command, the harness's forked server, and the two worker-thread modules. */
export const ENTRIES = {
  pcd: 'bin/pcd.ts',
  child: 'harness/child.ts',
  worker: 'server/blinded/worker.ts',
  'reverse-worker': 'web/reverse-worker.ts',
};

/** True when every file of `files` (path from `root`: [size, mtimeMs]) is as recorded. */
function unchanged(root, files) {
  for (const [file, [size, mtimeMs]] of Object.entries(files)) {
    let st;
    try {
      st = fs.statSync(path.join(root, file));
    } catch {
      return false;
    }
    if (st.size !== size || st.mtimeMs !== mtimeMs) return false;
  }
  return true;
}

/** The file of bundle `name` (a key of ENTRIES) when it exists and is fresh; else undefined. */
export function bundled(name) {
  return bundledIn(BUNDLE_DIR, ROOT, name);
}

/** bundled() over the bundles of `dir`, built from the files under `root`. */
export function bundledIn(dir, root, name) {
  if (process.env.PCD_SOURCES === '1') return undefined;
  const file = path.join(dir, `${name}.mjs`);
  let inputs;
  try {
    inputs = JSON.parse(fs.readFileSync(path.join(dir, 'inputs.json'), 'utf8'))[name];
  } catch {
    return undefined;
  }
  if (!inputs || !fs.existsSync(file) || !unchanged(root, inputs)) return undefined;
  return file;
}

/**
 * Imports the entry `name` in this process or thread: its bundle when fresh,
 * else its source through tsx: registered for the whole process on the main
 * thread; in a worker thread, which does not inherit loader hooks, through
 * tsx's module API.
 */
export async function launch(name) {
  const file = bundled(name);
  if (file) {
    if (process.env.PCD_DEBUG) process.setSourceMapsEnabled(true);
    await import(pathToFileURL(file).href);
    return;
  }
  const source = pathToFileURL(path.join(ROOT, ENTRIES[name])).href;
  const tsx = await import('tsx/esm/api');
  if (isMainThread) {
    tsx.register();
    await import(source);
  } else {
    await tsx.tsImport(source, import.meta.url);
  }
}

/** The name of the entry whose source is the file URL `url`, if it is one. */
export function entryOf(url) {
  const rel = path.relative(ROOT, fileURLToPath(url)).split(path.sep).join('/');
  return Object.keys(ENTRIES).find((name) => ENTRIES[name] === rel);
}
