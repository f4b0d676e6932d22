/**
 * What every worker thread of the server needs to load shared/oprf.ts, the
 * project's only binding of the RFC 9497 suite: the server runs its
 * TypeScript through tsx, and loader hooks are not inherited by worker
 * threads, so a worker imports tsx's module API itself and loads the module
 * through it. Used by the epoch build workers (server/epochs.ts) and the
 * evaluator pool (server/evaluator.ts).
 *
 * A worker's source is plain CommonJS evaluated with `eval: true`; it starts
 * with {@link IMPORT_OPRF_JS}, which resolves to the module's exports, given
 * the workerData fields of {@link oprfWorkerData} (spread into its workerData).
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

let tsxApi: string | null | undefined;
/** File URL of tsx's ESM module API (`tsx/esm/api`, import condition), or null without tsx. */
export function tsxApiUrl(): string | null {
  if (tsxApi === undefined) {
    try {
      const require = createRequire(import.meta.url);
      const pkgFile = require.resolve('tsx/package.json');
      const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8')) as { exports?: Record<string, { import?: { default?: string } }> };
      const rel = pkg.exports?.['./esm/api']?.import?.default;
      tsxApi = rel ? pathToFileURL(path.join(path.dirname(pkgFile), rel)).href : null;
    } catch {
      tsxApi = null;
    }
  }
  return tsxApi;
}

/** File URL of shared/oprf.ts. */
export const OPRF_MODULE_URL = new URL('../shared/oprf.ts', import.meta.url).href;

/** The workerData fields {@link IMPORT_OPRF_JS} reads. */
export interface OprfWorkerData {
  tsxApi: string;
  oprfUrl: string;
  parentUrl: string;
}

/** workerData for a worker that loads shared/oprf.ts (`parentUrl`: the importing module), or null without tsx. */
export function oprfWorkerData(parentUrl: string): OprfWorkerData | null {
  const api = tsxApiUrl();
  return api ? { tsxApi: api, oprfUrl: OPRF_MODULE_URL, parentUrl } : null;
}

/** JavaScript expression, inside a worker: a promise of shared/oprf.ts's exports (needs `workerData` in scope). */
export const IMPORT_OPRF_JS = `import(workerData.tsxApi).then((tsx) => tsx.tsImport(workerData.oprfUrl, workerData.parentUrl))`;
