/**
 * Starts a worker thread that runs the typed worker module
 * (server/blinded/worker.ts) with one crypto backend. The thread's entry is
 * server/blinded/boot.mjs, plain JS, which loads the module from its bundle
 * while fresh, else through tsx's module API (loader hooks are not inherited
 * by worker threads; launch/launch.mjs). Used by the evaluator pool and the
 * epoch build.
 */
import { Worker } from 'node:worker_threads';
import type { BackendName } from '../../shared/suite.ts';
import type { FromWorker, WorkerInit } from './worker.ts';

const BOOT = new URL('./boot.mjs', import.meta.url);
const MODULE = new URL('./worker.ts', import.meta.url).href;

export interface StartedWorker {
  readonly worker: Worker;
  /** Resolves once the module and its backend are loaded; rejects if the thread fails or exits first. */
  readonly ready: Promise<void>;
}

/**
 * Spawns one worker. Its stdout and stderr are drained (a worker's console
 * never reaches the server's output); it is unref'ed, so an idle worker
 * never keeps the process alive: callers ref() it while it works.
 */
export function startWorker(backend: BackendName): StartedWorker {
  const workerData: WorkerInit = { module: MODULE, backend };
  const worker = new Worker(BOOT, { workerData, stdout: true, stderr: true });
  worker.stdout.resume();
  worker.stderr.resume();
  worker.unref();
  const ready = new Promise<void>((resolve, reject) => {
    const onMessage = (m: FromWorker) => {
      if (m.t === 'ready') {
        off();
        resolve();
      } else if (m.t === 'failed') {
        off();
        reject(new Error(m.error));
        void worker.terminate();
      }
    };
    const onError = (e: Error) => {
      off();
      reject(e);
    };
    const onExit = (code: number) => {
      off();
      reject(new Error(`worker thread exited with code ${code} before it was ready`));
    };
    const off = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
  ready.catch(() => {}); // observed by the caller
  return { worker, ready };
}
