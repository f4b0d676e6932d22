/**
 * RSA-2048 key generation for the in-process servers, from a pool made
 * ahead. Every blinded server makes one RSA-2048 token key per size class
 * and epoch (server/tokens/keys.ts), ~0.2 s of CPU each in OpenSSL's prime
 * search: two minutes of the suite's CPU went on it. The pool is made once
 * (node:crypto generateKeyPair, the same call and parameters as the
 * server's) by the global setup into node_modules/.cache, and the setup
 * file (test/setup-crypto.ts) answers the server's generateKeyPair('rsa',
 * 2048, 65537) from it: the same callback, with fresh KeyObjects of a key
 * never handed out before in this process; once the pool is used up, or
 * under PCD_TEST_FULL=1, every key is generated as it would be.
 *
 * What changes is only which random key the server gets: it still writes,
 * wraps, publishes, loads and retires its keys as ever, and no two keys of
 * one test process are the same.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const POOL_FILE = path.resolve('node_modules/.cache/pcd-test/rsa-2048-pool.json');
export const POOL_SIZE = 160;
const BITS = 2048;
const EXPONENT = 65537;

interface PoolFile {
  version: 1;
  bits: number;
  keys: string[]; // PKCS#8 DER, base64
}

function readPool(): string[] {
  try {
    const p = JSON.parse(fs.readFileSync(POOL_FILE, 'utf8')) as PoolFile;
    return p.version === 1 && p.bits === BITS && Array.isArray(p.keys) ? p.keys : [];
  } catch {
    return [];
  }
}

/** Global setup: the pool file holds POOL_SIZE keys (made here when it does not). */
export async function ensurePool(): Promise<void> {
  const have = readPool();
  if (have.length >= POOL_SIZE) return;
  const made = await Promise.all(
    Array.from(
      { length: POOL_SIZE - have.length },
      () =>
        new Promise<string>((resolve, reject) =>
          crypto.generateKeyPair('rsa', { modulusLength: BITS, publicExponent: EXPONENT }, (err, _pub, priv) =>
            err ? reject(err) : resolve(priv.export({ type: 'pkcs8', format: 'der' }).toString('base64')),
          ),
        ),
    ),
  );
  fs.mkdirSync(path.dirname(POOL_FILE), { recursive: true });
  const tmp = `${POOL_FILE}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify({ version: 1, bits: BITS, keys: [...have, ...made] } satisfies PoolFile), { mode: 0o600 });
  fs.renameSync(tmp, POOL_FILE);
}

/** The next key of the pool not handed out in this process (the count survives vitest's module resets), or undefined. */
function nextPooled(): crypto.KeyObject | undefined {
  const g = globalThis as { __pcdRsaPool?: { keys: string[]; next: number } };
  g.__pcdRsaPool ??= { keys: readPool(), next: 0 };
  const der = g.__pcdRsaPool.keys[g.__pcdRsaPool.next];
  if (der === undefined) return undefined;
  g.__pcdRsaPool.next++;
  return crypto.createPrivateKey({ key: Buffer.from(der, 'base64'), format: 'der', type: 'pkcs8' });
}

/** Setup file: node:crypto's generateKeyPair answers RSA-2048/65537 from the pool while it lasts. */
export function usePool(): void {
  const real = crypto.generateKeyPair;
  if ((real as { pooled?: boolean }).pooled) return;
  const pooled = function (this: unknown, ...args: unknown[]) {
    const [type, options, callback] = args as [string, { modulusLength?: number; publicExponent?: number; publicKeyEncoding?: unknown; privateKeyEncoding?: unknown }, (...r: unknown[]) => void];
    const plain = type === 'rsa' && options?.modulusLength === BITS && (options.publicExponent ?? EXPONENT) === EXPONENT && !options.publicKeyEncoding && !options.privateKeyEncoding;
    const key = plain && typeof callback === 'function' ? nextPooled() : undefined;
    if (!key) return (real as (...a: unknown[]) => void).apply(this, args);
    setImmediate(() => callback(null, crypto.createPublicKey(key), key));
  };
  (pooled as { pooled?: boolean }).pooled = true;
  crypto.generateKeyPair = pooled as typeof crypto.generateKeyPair;
}
