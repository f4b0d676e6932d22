/**
 * The one worker module of the blinded design, run on worker threads by the
 * evaluator pool (server/blinded/pool.ts) and the epoch build
 * (server/blinded/build.ts), started through server/blinded/spawn.ts.
 *
 * It loads one crypto backend (shared/backends.ts) and holds epoch keys in
 * memory only: a key arrives by postMessage (a transferred copy, never
 * workerData, never a file), is zeroed and forgotten on `drop`, and never
 * leaves the thread. Errors name the epoch or the element index, never key
 * bytes.
 *
 * Messages in ({@link ToWorker}) and out ({@link FromWorker}); byte lists
 * travel packed in one transferred buffer, not element by element:
 *
 *   key    epoch, mode, secretKey, publicKey     (no reply)
 *   drop   epoch                                 (no reply)
 *   epochs id                                    -> epochs: the epochs held, for tests
 *   chunk  id, epoch, first, elements n x 32     -> chunk: D_i n x 32 [|| composite 32 (voprf)]
 *          prove (voprf, the chunk is the whole batch) -> chunk: D_i n x 32 || the batch proof 64
 *   tags   id, epoch, tagBytes, numbers (keys)   -> tags: n x tagBytes, truncated Evaluate outputs
 *
 * A failed job answers `error` with the PcdError code when the backend threw
 * one (an invalid element: `invalid_element` naming its index), else no code.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { truncateTag } from '../../shared/buckets.ts';
import { keyToE164 } from '../../shared/e164-key.ts'; // not shared/e164.ts: a worker starts without libphonenumber
import { PcdError } from '../../shared/errors.ts';
import { loadBackend } from '../../shared/backends.ts';
import { ELEMENT_BYTES, type BackendName, type KeyPair, type OprfBackend, type OprfMode } from '../../shared/suite.ts';

/** workerData of a worker thread. */
export interface WorkerInit {
  /** File URL of this module (boot.mjs loads it). */
  module: string;
  backend: BackendName;
}

export type ToWorker =
  | { t: 'key'; epoch: number; mode: OprfMode; secretKey: Uint8Array; publicKey: Uint8Array }
  | { t: 'drop'; epoch: number }
  | { t: 'epochs'; id: number }
  | { t: 'chunk'; id: number; epoch: number; first: number; elements: Uint8Array; prove?: boolean }
  | { t: 'tags'; id: number; epoch: number; tagBytes: number; numbers: Float64Array };

export type FromWorker =
  | { t: 'ready'; backend: BackendName }
  | { t: 'failed'; error: string }
  | { t: 'epochs'; id: number; epochs: number[] }
  | { t: 'chunk'; id: number; out: Uint8Array }
  | { t: 'tags'; id: number; tags: Uint8Array }
  | { t: 'error'; id: number; code?: string; message: string };

/** Splits n x 32 packed bytes into views. */
export function unpackElements(packed: Uint8Array): Uint8Array[] {
  const n = packed.length / ELEMENT_BYTES;
  return Array.from({ length: n }, (_, i) => packed.subarray(i * ELEMENT_BYTES, (i + 1) * ELEMENT_BYTES));
}

/** Packs byte strings of equal length `size` into one new buffer, optionally with room for `extra` bytes after them. */
export function packElements(list: readonly Uint8Array[], size = ELEMENT_BYTES, extra = 0): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(list.length * size + extra);
  list.forEach((b, i) => out.set(b, i * size));
  return out;
}

interface HeldKey {
  mode: OprfMode;
  key: KeyPair;
}

/** The message handler, apart from the thread so tests can drive it in-process. */
export function createHandler(backend: OprfBackend, post: (m: FromWorker, transfer?: ArrayBuffer[]) => void): (m: ToWorker) => void {
  const keys = new Map<number, HeldKey>();
  const forget = (epoch: number) => {
    keys.get(epoch)?.key.secretKey.fill(0);
    keys.delete(epoch);
  };
  const held = (epoch: number): HeldKey => {
    const k = keys.get(epoch);
    if (!k) throw new Error(`this worker holds no key for epoch ${epoch}`);
    return k;
  };
  return (m) => {
    switch (m.t) {
      case 'key':
        forget(m.epoch);
        keys.set(m.epoch, { mode: m.mode, key: { secretKey: m.secretKey, publicKey: m.publicKey } });
        return;
      case 'drop':
        return forget(m.epoch);
      case 'epochs':
        return post({ t: 'epochs', id: m.id, epochs: [...keys.keys()] });
      case 'chunk':
      case 'tags':
        try {
          if (m.t === 'chunk') {
            const { mode, key } = held(m.epoch);
            const r = backend.evaluateChunk(mode, key, unpackElements(m.elements), m.first);
            // A batch of one chunk is proven here too, so a single lookup costs the main thread no crypto.
            const tail = r.composite && m.prove ? backend.proveComposite(key, [r.composite]) : r.composite;
            const out = packElements(r.evaluated, ELEMENT_BYTES, tail?.length ?? 0);
            if (tail) out.set(tail, r.evaluated.length * ELEMENT_BYTES);
            post({ t: 'chunk', id: m.id, out }, [out.buffer]);
          } else {
            const { mode, key } = held(m.epoch);
            const enc = new TextEncoder();
            const tags = new Uint8Array(m.numbers.length * m.tagBytes);
            for (let i = 0; i < m.numbers.length; i++) {
              const output = backend.evaluate(mode, key.secretKey, enc.encode(keyToE164(m.numbers[i]!)));
              tags.set(truncateTag(output, m.tagBytes), i * m.tagBytes);
            }
            post({ t: 'tags', id: m.id, tags }, [tags.buffer]);
          }
        } catch (e) {
          const code = e instanceof PcdError ? e.code : undefined;
          post({ t: 'error', id: m.id, ...(code ? { code } : {}), message: e instanceof Error ? e.message : String(e) });
        }
        return;
    }
  };
}

// Run as a thread: load the backend, then serve messages.
if (parentPort && (workerData as Partial<WorkerInit> | undefined)?.module !== undefined) {
  const port = parentPort;
  const init = workerData as WorkerInit;
  loadBackend(init.backend).then(
    (backend) => {
      const handle = createHandler(backend, (m, transfer) => port.postMessage(m, transfer ?? []));
      port.on('message', handle);
      port.postMessage({ t: 'ready', backend: backend.name } satisfies FromWorker);
    },
    (e: unknown) => port.postMessage({ t: 'failed', error: e instanceof Error ? e.message : String(e) } satisfies FromWorker),
  );
}
