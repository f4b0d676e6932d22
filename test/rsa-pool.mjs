/**
 * RSA-2048 key generation for the test run's servers, from a pool made
 * ahead. Every blinded server makes one RSA-2048 token key per size class
 * and epoch (server/tokens/keys.ts), ~0.1-0.2 s of CPU each in OpenSSL's
 * prime search: with the default 31 classes, about 3 s of a tiny server's
 * start. The pool is made once (node:crypto generateKeyPair, the same call
 * and parameters as the server's) by the global setup into
 * node_modules/.cache, and `usePool` answers generateKeyPair('rsa', 2048,
 * 65537) from it: the same callback, with fresh KeyObjects.
 *
 * Plain JavaScript, so that it runs before tsx: the setup file
 * (test/setup-crypto.ts) installs it in the test process, and
 * test/child-preload.mjs, through NODE_OPTIONS, in every Node process the
 * tests start (`pcd serve`, `pcd start`, the harness's server children).
 *
 * No key is handed out twice in one run: a process claims key i by creating
 * the file `i` in the run's claims folder (PCD_TEST_RSA_CLAIMS, made by the
 * global setup), which only one process can. Once the pool is used up, or
 * under PCD_TEST_FULL=1 (no pool), every key is generated as it would be.
 *
 * What changes is only which random key the server gets: it still writes,
 * wraps, publishes, loads and retires its keys as ever.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

export const POOL_FILE = fileURLToPath(new URL('../node_modules/.cache/pcd-test/rsa-2048-pool.json', import.meta.url));
/** Enough for a run of `npm test`: 647 keys were asked for (in-process servers and children; measured), the rest would be generated. */
export const POOL_SIZE = 800;
/** The environment variable naming the run's claims folder. */
export const CLAIMS_ENV = 'PCD_TEST_RSA_CLAIMS';
const BITS = 2048;
const EXPONENT = 65537;

/** @returns {string[]} PKCS#8 DER keys, base64 */
function readPool() {
  try {
    const p = JSON.parse(fs.readFileSync(POOL_FILE, 'utf8'));
    return p.version === 1 && p.bits === BITS && Array.isArray(p.keys) ? p.keys : [];
  } catch {
    return [];
  }
}

/** The keys the pool file holds (POOL_SIZE or more after ensurePool: a file made by a larger POOL_SIZE is kept). */
export function poolKeyCount() {
  return readPool().length;
}

/** Global setup: the pool file holds POOL_SIZE keys (made here, on every core, when it does not). */
export async function ensurePool() {
  const have = readPool();
  if (have.length >= POOL_SIZE) return;
  const made = await Promise.all(
    Array.from(
      { length: POOL_SIZE - have.length },
      () =>
        new Promise((resolve, reject) =>
          crypto.generateKeyPair('rsa', { modulusLength: BITS, publicExponent: EXPONENT }, (err, _pub, priv) =>
            err ? reject(err) : resolve(priv.export({ type: 'pkcs8', format: 'der' }).toString('base64')),
          ),
        ),
    ),
  );
  fs.mkdirSync(path.dirname(POOL_FILE), { recursive: true });
  const tmp = `${POOL_FILE}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ version: 1, bits: BITS, keys: [...have, ...made] }), { mode: 0o600 });
  fs.renameSync(tmp, POOL_FILE);
}

/**
 * The state of this process: the pool (read at the first key asked for) and where its claims go on from. Kept on
 * globalThis so that it survives vitest's module resets.
 * @returns {{ keys: string[] | undefined; next: number }}
 */
function state() {
  const g = /** @type {{ __pcdRsaPool?: { keys: string[] | undefined; next: number } }} */ (globalThis);
  g.__pcdRsaPool ??= { keys: undefined, next: 0 };
  return g.__pcdRsaPool;
}

/** Claims key i for this process: true when no process of the run has it. Without a claims folder, every key is this process's. */
function claim(i) {
  const dir = process.env[CLAIMS_ENV];
  if (!dir) return true;
  try {
    fs.closeSync(fs.openSync(path.join(dir, String(i)), 'wx'));
    return true;
  } catch (e) {
    if (/** @type {NodeJS.ErrnoException} */ (e).code === 'EEXIST') return false;
    throw e;
  }
}

/** @returns {crypto.KeyObject | undefined} the next key of the pool no process of the run has had, or undefined */
function nextPooled() {
  const s = state();
  s.keys ??= readPool();
  while (s.next < s.keys.length) {
    const i = s.next++;
    if (claim(i)) return crypto.createPrivateKey({ key: Buffer.from(s.keys[i], 'base64'), format: 'der', type: 'pkcs8' });
  }
  return undefined;
}

/** node:crypto's generateKeyPair answers RSA-2048/65537 from the pool while it lasts; idempotent. */
export function usePool() {
  const real = crypto.generateKeyPair;
  if (/** @type {{ pooled?: boolean }} */ (real).pooled) return;
  const pooled = function (...args) {
    const [type, options, callback] = args;
    const plain = type === 'rsa' && options?.modulusLength === BITS && (options.publicExponent ?? EXPONENT) === EXPONENT && !options.publicKeyEncoding && !options.privateKeyEncoding;
    const key = plain && typeof callback === 'function' ? nextPooled() : undefined;
    if (!key) return real.apply(this, args);
    setImmediate(() => callback(null, crypto.createPublicKey(key), key));
  };
  pooled.pooled = true;
  // As node:crypto's own: util.promisify gives { publicKey, privateKey }.
  pooled[promisify.custom] = (...args) =>
    new Promise((resolve, reject) => pooled(...args, (err, publicKey, privateKey) => (err ? reject(err) : resolve({ publicKey, privateKey }))));
  crypto.generateKeyPair = pooled;
}
