/**
 * `describeBackends`: runs a test body once per crypto backend (after
 * voprf-ts's describeCryptoTests), so every backend test is written once.
 */
import { beforeAll, describe } from 'vitest';
import { loadBackend } from '../shared/backends.ts';
import { BACKENDS, type BackendName, type OprfBackend } from '../shared/suite.ts';

export function describeBackends(title: string, body: (get: () => OprfBackend, name: BackendName) => void): void {
  for (const name of BACKENDS) {
    describe(`${title} [${name}]`, () => {
      let backend: OprfBackend | undefined;
      beforeAll(async () => {
        backend = await loadBackend(name);
      });
      body(() => {
        if (!backend) throw new Error(`backend ${name} is not loaded yet`);
        return backend;
      }, name);
    });
  }
}

/** Both backends, loaded. */
export async function bothBackends(): Promise<{ noble: OprfBackend; sodium: OprfBackend }> {
  const [noble, sodium] = await Promise.all([loadBackend('noble'), loadBackend('sodium')]);
  return { noble, sodium };
}
