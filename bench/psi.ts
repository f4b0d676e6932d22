/**
 * The peer the crypto section measures itself against: OpenMined psi.js
 * (ECDH PSI over P-256, private-join-and-compute compiled to WebAssembly),
 * its server `processRequest` and client `createRequest` per item, in the
 * same run as our backends.
 *
 * It is NOT a dependency of the project, on purpose: its package depends on
 * `protoc-gen-js`, whose postinstall downloads a protoc binary from GitHub,
 * so a plain `npm install`/`npm ci` of a project that lists it fails where
 * only the npm registry is reachable (this project's CI). psi.js itself is
 * self-contained (its WASM is inside psi_wasm_node.js; nothing is fetched
 * when it loads), so it is installed beside the project without scripts:
 *
 *   npm install --prefix /tmp/psi --ignore-scripts --no-save @openmined/psi.js
 *   PCD_BENCH_PSI_JS=/tmp/psi/node_modules/@openmined/psi.js npm run bench
 *
 * Found in the project's own node_modules it is used as well. When it is
 * not found or fails to load, the section records why, and the report falls
 * back to an external figure, labelled as not measured ({@link PSI_EXTERNAL}).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { PROJECT_ROOT } from './machine.ts';
import type { ExternalReference } from './results.ts';

/** The figure quoted for psi.js server throughput when it cannot be measured here. */
export const PSI_EXTERNAL: ExternalReference = {
  name: 'psi.js server processRequest per item (external reference)',
  low: 1000,
  high: 1600,
  unit: 'items/s',
  source: 'quoted in the issue for OpenMined psi.js (ECDH over P-256, WASM) on one core; not measured in this run',
  measured: false,
};

/** The part of psi.js the benchmark calls (its own typings are not needed to build the project). */
export interface PsiRequest {
  serializeBinary(): Uint8Array;
}
export interface PsiLibrary {
  package: { version: string };
  request: { deserializeBinary(bytes: Uint8Array): PsiRequest };
  dataStructure: { Raw: unknown; GCS: unknown; BloomFilter: unknown };
  server: { createWithNewKey(revealIntersection?: boolean): PsiServer };
  client: { createWithNewKey(revealIntersection?: boolean): PsiClient };
}
export interface PsiServer {
  processRequest(request: PsiRequest): { serializeBinary(): Uint8Array };
  createSetupMessage(fpr: number, numClientInputs: number, inputs: readonly string[], dataStructure?: unknown): unknown;
  delete(): void;
}
export interface PsiClient {
  createRequest(inputs: readonly string[]): PsiRequest;
  getIntersection(setup: unknown, response: unknown): number[];
  delete(): void;
}

export type PsiLoad = { ok: true; psi: PsiLibrary; version: string; from: string; loadMs: number } | { ok: false; why: string };

/** Where psi.js is: PCD_BENCH_PSI_JS (its package folder or its main file), else the project's node_modules. */
function locate(): { file: string; from: string } | { why: string } {
  const env = process.env.PCD_BENCH_PSI_JS;
  if (env) {
    const dir = fs.existsSync(env) && fs.statSync(env).isDirectory() ? env : undefined;
    const file = dir ? path.join(dir, 'psi_wasm_node.js') : env;
    if (!fs.existsSync(file)) return { why: `PCD_BENCH_PSI_JS=${env}: no psi_wasm_node.js there` };
    return { file, from: `PCD_BENCH_PSI_JS (${file})` };
  }
  try {
    const file = createRequire(path.join(PROJECT_ROOT, 'package.json')).resolve('@openmined/psi.js');
    return { file, from: `the project's node_modules (${path.relative(PROJECT_ROOT, file)})` };
  } catch {
    return {
      why:
        '@openmined/psi.js is not installed: it is kept out of package.json because its dependency protoc-gen-js downloads a binary from GitHub in a postinstall script, ' +
        'which fails `npm ci` where only the npm registry is reachable; install it beside the project with --ignore-scripts and set PCD_BENCH_PSI_JS (bench/psi.ts)',
    };
  }
}

export async function loadPsi(): Promise<PsiLoad> {
  const where = locate();
  if ('why' in where) return { ok: false, why: where.why };
  try {
    const t0 = performance.now();
    const mod = createRequire(import.meta.url)(where.file) as (() => Promise<PsiLibrary>) | { default: () => Promise<PsiLibrary> };
    const init = typeof mod === 'function' ? mod : mod.default;
    const psi = await init();
    const loadMs = performance.now() - t0;
    if (!psi.server || !psi.client) return { ok: false, why: `psi.js from ${where.from} loaded without its server or client` };
    return { ok: true, psi, version: psi.package?.version ?? 'unknown', from: where.from, loadMs };
  } catch (e) {
    return { ok: false, why: `psi.js from ${where.from} failed to load: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/**
 * A server and a client with fresh keys and one prepared request of `items`
 * inputs; checks the protocol end to end once (the intersection of the
 * request with half of it as the server's set) so what is timed is known to work.
 */
export function preparePsi(psi: PsiLibrary, inputs: readonly string[]): { server: PsiServer; client: PsiClient; request: PsiRequest; close(): void } {
  const server = psi.server.createWithNewKey(true);
  const client = psi.client.createWithNewKey(true);
  const request = client.createRequest(inputs);
  const half = inputs.slice(0, Math.ceil(inputs.length / 2));
  const setup = server.createSetupMessage(0.001, inputs.length, half, psi.dataStructure.Raw);
  const found = client.getIntersection(setup, server.processRequest(request)).length;
  if (found !== half.length) throw new Error(`psi.js self-check: intersection of ${found}, expected ${half.length}`);
  return {
    server,
    client,
    request,
    close() {
      server.delete();
      client.delete();
    },
  };
}
