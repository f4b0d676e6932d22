/**
 * The token key file's format (disk/files.ts TOKEN_KEY_FILE): written by
 * the server (server/tokens/keys.ts), read by it and by the audit
 * (audit/tokenkeys.ts), which must agree on it.
 *
 *   { "version": 1, "epochs": [{ "epoch": 1, "keys": [{ "sizeClass": 1, "pkcs8": "<base64 DER>" }] }] }
 *
 * One RSA-2048 private key (PKCS#8 DER) per size class and live epoch. The
 * published token key is derived from it: the RSASSA-PSS
 * SubjectPublicKeyInfo of RFC 9578 §6.5, whose SHA-256 is the
 * token_key_id. Messages name the file, epochs and classes, never key bytes.
 */
import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { publicVerif } from '@cloudflare/privacypass-ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { tokenKeyId } from '../shared/tokens.ts';
import { TOKEN_KEY_FILE } from './files.ts';

export const TOKEN_KEY_FILE_VERSION = 1;
const MAX_FILE_BYTES = 4 << 20;

/** One stored key: its epoch and class, and the private key's PKCS#8 DER (the caller zeroes it when done). */
export interface StoredTokenKey {
  epoch: number;
  sizeClass: number;
  pkcs8: Buffer;
}

export function tokenKeyFilePath(dataDir: string): string {
  return path.join(dataDir, TOKEN_KEY_FILE);
}

export function badTokenKeyFile(file: string, why: string): PcdError {
  return new PcdError(
    ErrorCode.InvalidField,
    `${file} is not a pcd token key file (${why}): restore it from a backup, or remove it to make new token keys (tokens already issued are then refused)`,
  );
}

/** The keys of a token key file; throws badTokenKeyFile naming the file and the entry. */
export function readTokenKeyFile(file: string): StoredTokenKey[] {
  const st = fs.statSync(file);
  if (!st.isFile()) throw badTokenKeyFile(file, 'not a regular file');
  if (st.size > MAX_FILE_BYTES) throw badTokenKeyFile(file, `${st.size} bytes, more than a token key file holds`);
  let doc: unknown;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    throw badTokenKeyFile(file, 'not JSON');
  }
  const d = doc as { version?: unknown; epochs?: unknown };
  if (typeof doc !== 'object' || doc === null || d.version !== TOKEN_KEY_FILE_VERSION || !Array.isArray(d.epochs)) {
    throw badTokenKeyFile(file, `expected { "version": ${TOKEN_KEY_FILE_VERSION}, "epochs": [...] }`);
  }
  const out: StoredTokenKey[] = [];
  for (const e of d.epochs as unknown[]) {
    const { epoch, keys } = (e ?? {}) as { epoch?: unknown; keys?: unknown };
    if (typeof epoch !== 'number' || !Number.isInteger(epoch) || epoch < 1 || !Array.isArray(keys)) throw badTokenKeyFile(file, 'an epoch entry is not { epoch, keys }');
    for (const k of keys as unknown[]) {
      const { sizeClass, pkcs8 } = (k ?? {}) as { sizeClass?: unknown; pkcs8?: unknown };
      if (typeof sizeClass !== 'number' || !Number.isInteger(sizeClass) || sizeClass < 1) throw badTokenKeyFile(file, `epoch ${epoch}: a key without a size class`);
      if (typeof pkcs8 !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(pkcs8)) throw badTokenKeyFile(file, `epoch ${epoch}, class ${sizeClass}: the key is not base64`);
      out.push({ epoch, sizeClass, pkcs8: Buffer.from(pkcs8, 'base64') });
    }
  }
  return out;
}

export function serializeTokenKeyFile(keys: Iterable<StoredTokenKey>): string {
  const byEpoch = new Map<number, StoredTokenKey[]>();
  for (const k of keys) byEpoch.set(k.epoch, [...(byEpoch.get(k.epoch) ?? []), k]);
  const epochs = [...byEpoch]
    .sort((a, b) => a[0] - b[0])
    .map(([epoch, ks]) => ({ epoch, keys: ks.sort((a, b) => a.sizeClass - b.sizeClass).map((k) => ({ sizeClass: k.sizeClass, pkcs8: k.pkcs8.toString('base64') })) }));
  return JSON.stringify({ version: TOKEN_KEY_FILE_VERSION, epochs }, null, 1) + '\n';
}

/** The published token key (RSASSA-PSS SPKI, RFC 9578 §6.5) of an RSA private key, its id, and the rsaEncryption SPKI. */
export function publishedTokenKey(privateKey: KeyObject): { publicKey: KeyObject; spki: Uint8Array; tokenKey: Uint8Array; keyId: Uint8Array } {
  const publicKey = crypto.createPublicKey(privateKey);
  const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  const tokenKey = publicVerif.convertEncToRSASSAPSS(spki);
  return { publicKey, spki, tokenKey, keyId: tokenKeyId(tokenKey) };
}
