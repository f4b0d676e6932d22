// Entry of every worker thread of the server (and of the page's hash
// reversal, web/reverse.ts): loads the worker module workerData.module (the
// file URL of its source) as launch/launch.mjs starts any entry: its bundle
// while fresh, else the source through tsx's module API (loader hooks are
// not inherited by worker threads).
import { workerData } from 'node:worker_threads';
import { entryOf, launch } from '../../launch/launch.mjs';

const entry = entryOf(workerData.module);
if (!entry) throw new Error(`${workerData.module} is not a worker entry of launch/launch.mjs`);
await launch(entry);
