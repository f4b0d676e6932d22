// Entry of every worker thread of the server (and of the page's hash
// reversal, web/reverse.ts): loads the worker module workerData.module (a file
// URL of its source) from its bundle while fresh, else the source through tsx's
// module API, since loader hooks are not inherited by worker threads
// (launch/launch.mjs).
import { workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { bundled, entryOf } from '../../launch/launch.mjs';

const entry = entryOf(workerData.module);
const bundle = entry && bundled(entry);
if (bundle) {
  await import(pathToFileURL(bundle).href);
} else {
  const { tsImport } = await import('tsx/esm/api');
  await tsImport(workerData.module, import.meta.url);
}
