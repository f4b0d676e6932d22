/**
 * The token key file (its format: disk/tokenkeys.ts, written by
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
import { publishedTokenKey, readTokenKeyFile, tokenKeyFilePath } from '../disk/tokenkeys.ts';

/** A token key the file holds: its epoch, its class and its id. */
export interface TokenKeyOnDisk {
  epoch: number;
  sizeClass: number;
  /** token_key_id, hex. */
  keyId: string;
}

/**
 * The token keys in `<dataDir>/token-keys.json`: none when the file is
 * absent (a server with `--blinded-auth account`). Throws an Error naming
 * the file and the entry (never key bytes) when it cannot be read.
 */
export function readTokenKeyIds(dataDir: string): TokenKeyOnDisk[] {
  const file = tokenKeyFilePath(dataDir);
  if (!fs.existsSync(file)) return [];
  const out: TokenKeyOnDisk[] = [];
  for (const k of readTokenKeyFile(file)) {
    try {
      const { keyId } = publishedTokenKey(crypto.createPrivateKey({ key: k.pkcs8, format: 'der', type: 'pkcs8' }));
      out.push({ epoch: k.epoch, sizeClass: k.sizeClass, keyId: Buffer.from(keyId).toString('hex') });
    } catch {
      throw new Error(`${file}: epoch ${k.epoch}, class ${k.sizeClass}: not an RSA private key`);
    } finally {
      k.pkcs8.fill(0);
    }
  }
  return out;
}
