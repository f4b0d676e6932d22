/**
 * The token key file (disk/files.ts TOKEN_KEY_FILE, written by
 * server/tokens/keys.ts) as the audit reads it: which epoch and size class
 * each live token key belongs to, by its token_key_id, so that the spent
 * tokens (`spent_tokens`, which hold the key id and nothing else about the
 * key) can be counted per epoch and class.
 *
 *   { "version": 1, "epochs": [{ "epoch": 1, "keys": [{ "sizeClass": 1, "pkcs8": "<base64 DER>" }] }] }
 *
 * token_key_id = SHA-256 of the published key, the RSASSA-PSS
 * SubjectPublicKeyInfo (RFC 9578 §6.5), derived from the private key as the
 * server does. Read only: the file is never opened for writing nor its mode
 * changed (the server's loader tightens it). The private keys are parsed
 * into node:crypto KeyObjects for the public half and dropped; the DER
 * buffers are zeroed. A key that is gone from the file (its epoch retired)
 * cannot be named: its spent tokens went with it.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { publicVerif } from '@cloudflare/privacypass-ts';
import { TOKEN_KEY_FILE } from '../disk/files.ts';
import { tokenKeyId } from '../shared/tokens.ts';

/** A token key the file holds: its epoch, its class and its id. */
export interface TokenKeyOnDisk {
  epoch: number;
  sizeClass: number;
  /** token_key_id, hex. */
  keyId: string;
}

const MAX_FILE_BYTES = 4 << 20;

/**
 * The token keys in `<dataDir>/token-keys.json`: none when the file is
 * absent (a server with `--blinded-auth account`). Throws an Error naming
 * the file and the entry (never key bytes) when it cannot be read.
 */
export function readTokenKeyIds(dataDir: string): TokenKeyOnDisk[] {
  const file = path.join(dataDir, TOKEN_KEY_FILE);
  if (!fs.existsSync(file)) return [];
  const st = fs.statSync(file);
  if (!st.isFile() || st.size > MAX_FILE_BYTES) throw new Error(`${file} is not a token key file`);
  let doc: unknown;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    throw new Error(`${file} is not JSON`);
  }
  const epochs = (doc as { epochs?: unknown } | null)?.epochs;
  if (!Array.isArray(epochs)) throw new Error(`${file}: no "epochs" list`);
  const out: TokenKeyOnDisk[] = [];
  for (const e of epochs as unknown[]) {
    const { epoch, keys } = (e ?? {}) as { epoch?: unknown; keys?: unknown };
    if (typeof epoch !== 'number' || !Array.isArray(keys)) throw new Error(`${file}: an epoch entry is not { epoch, keys }`);
    for (const k of keys as unknown[]) {
      const { sizeClass, pkcs8 } = (k ?? {}) as { sizeClass?: unknown; pkcs8?: unknown };
      if (typeof sizeClass !== 'number' || typeof pkcs8 !== 'string') throw new Error(`${file}: epoch ${epoch}: a key is not { sizeClass, pkcs8 }`);
      const der = Buffer.from(pkcs8, 'base64');
      try {
        const spki = crypto.createPublicKey(crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ type: 'spki', format: 'der' });
        const tokenKey = publicVerif.convertEncToRSASSAPSS(new Uint8Array(spki));
        out.push({ epoch, sizeClass, keyId: Buffer.from(tokenKeyId(tokenKey)).toString('hex') });
      } catch {
        throw new Error(`${file}: epoch ${epoch}, class ${sizeClass}: not an RSA private key`);
      } finally {
        der.fill(0);
      }
    }
  }
  return out;
}
