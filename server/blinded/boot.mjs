// Entry of every worker thread of the server: loader hooks are not inherited
// by worker threads, so this plain-JS file loads the typed worker module
// (workerData.module, a file URL) through tsx's module API.
import { workerData } from 'node:worker_threads';
import { tsImport } from 'tsx/esm/api';

await tsImport(workerData.module, import.meta.url);
