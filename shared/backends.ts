/**
 * Loads an {@link OprfBackend} by name (shared/suite.ts). `sodium` is
 * imported only when asked for, so a noble-only bundle (the browser) never
 * loads libsodium; its WASM module is instantiated once per thread (about
 * 20-40 ms: `await sodium.ready`), after which every call is synchronous.
 */
import { nobleBackend } from './noble.ts';
import { parseBackendName, type BackendName, type OprfBackend } from './suite.ts';

const loaded = new Map<BackendName, Promise<OprfBackend>>();

export function loadBackend(name: BackendName): Promise<OprfBackend> {
  parseBackendName(name);
  let p = loaded.get(name);
  if (!p) {
    p = name === 'noble' ? Promise.resolve(nobleBackend) : import('./sodium.ts').then((m) => m.createSodiumBackend());
    p.catch(() => loaded.delete(name)); // a failed load can be retried
    loaded.set(name, p);
  }
  return p;
}
