/**
 * `describeBackends`: runs a test body once per crypto backend (after
 * voprf-ts's describeCryptoTests), so every backend test is written once.
 */
import { beforeAll, describe, expect } from 'vitest';
import { PcdError, type ErrorCode } from '../shared/errors.ts';
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

/** Expects `fn` to throw a PcdError with `code`, and returns it for more checks. */
export function pcdError(fn: () => unknown, code: ErrorCode): PcdError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(PcdError);
  expect((caught as PcdError).code).toBe(code);
  return caught as PcdError;
}
