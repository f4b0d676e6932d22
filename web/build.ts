/**
 * Builds the web page (web/page/) into `dist/web/`:
 *
 *   index.html   copied as is (it names /app.js and /app.css: no inline script or style, for the CSP), and favicon.svg
 *   app.js       web/page/main.ts and the client library, bundled for the browser (ESM, minified)
 *   app.css      web/page/style.css
 *   chunk-*.js   code loaded on demand: libsodium's WASM glue (~540 KB) comes through the
 *                client's dynamic import of shared/sodium.ts, so the page starts without it
 *   *.map        source maps
 *
 *   node --import tsx web/build.ts [outDir]
 *
 * Nothing here reads the network; the server (web/server.ts) serves outDir.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const PAGE_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'page');
/** Copied as they are. */
const STATIC_FILES = ['index.html', 'favicon.svg'];

/** Files a previous build left in outDir (stale chunks would otherwise pile up). */
function cleanOutputs(outDir: string): void {
  if (!fs.existsSync(outDir)) return;
  for (const name of fs.readdirSync(outDir)) {
    if (/^(index\.html|favicon\.svg|(app|chunk-[\w-]+)\.(js|css)(\.map|\.LEGAL\.txt)?)$/.test(name)) fs.rmSync(path.join(outDir, name));
  }
}

export async function buildWeb(outDir = 'dist/web'): Promise<void> {
  const out = path.resolve(outDir);
  fs.mkdirSync(out, { recursive: true });
  cleanOutputs(out);
  await esbuild.build({
    entryPoints: [
      { in: path.join(PAGE_DIR, 'main.ts'), out: 'app' },
      { in: path.join(PAGE_DIR, 'style.css'), out: 'app' },
    ],
    outdir: out,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: 'linked',
    chunkNames: 'chunk-[hash]',
    legalComments: 'linked',
    logLevel: 'warning',
    // platform 'browser': package.json browser conditions, and a node: import anywhere in the graph is a build
    // error naming its file (the client reaches Node only at run time, for a pin file).
    define: { 'process.env.NODE_ENV': '"production"' },
  });
  for (const f of STATIC_FILES) fs.copyFileSync(path.join(PAGE_DIR, f), path.join(out, f));
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const outDir = process.argv[2] ?? 'dist/web';
  buildWeb(outDir).then(
    () => console.log(`web page built into ${outDir}`),
    (e: unknown) => {
      // esbuild has printed its errors already
      console.error(`web build failed: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      process.exit(1);
    },
  );
}
