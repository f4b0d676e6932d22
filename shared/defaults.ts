/**
 * Defaults both sides agree on: where a local server listens and a client
 * looks for it, and the environment variable naming the crypto backend.
 */
import { DEFAULT_BACKEND, parseBackendName, type BackendName } from './suite.ts';

/** The port `pcd serve` listens on and `pcd lookup` asks, unless told otherwise. */
export const DEFAULT_PORT = 8787;
/** A local server on the default port: the client commands' default `--server`. */
export const DEFAULT_SERVER = `http://127.0.0.1:${DEFAULT_PORT}`;

/** Environment variable naming the crypto backend (`noble` or `sodium`). */
export const BACKEND_ENV = 'PCD_BACKEND';

/** The backend the environment asks for, else DEFAULT_BACKEND; a bad name throws a PcdError naming it. */
export function backendFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): BackendName {
  const value = env[BACKEND_ENV];
  return value !== undefined && value !== '' ? parseBackendName(value) : DEFAULT_BACKEND;
}
