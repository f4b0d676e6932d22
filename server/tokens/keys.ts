/**
 * The issuer's token keys (shared/tokens.ts): one RSA-2048 key pair per
 * size class and live blinded epoch, so that token keys rotate and retire
 * with the epoch key and the client pins them together
 * (client/designs/blinded.ts). Kept in `<dataDir>/token-keys.json`, apart
 * from the database, mode 0600, written atomically (server/blinded/keys.ts
 * writeFileAtomic, which also scrubs a leftover temp file):
 *
 *   { "version": 1, "epochs": [{ "epoch": 1, "keys": [{ "sizeClass": 1, "pkcs8": "<base64 DER>" }] }] }
 *
 * The file's format is disk/tokenkeys.ts's (the audit reads it too).
 * The private keys live as node:crypto KeyObjects (in OpenSSL's memory,
 * which JavaScript cannot zero); a retired epoch's keys are dropped from
 * memory and from the file, and the spent tokens of its keys are deleted
 * (server/tokens/spent.ts), after which a token of that key is refused as
 * unknown (token_key_unknown). No private key appears in a log line, an
 * error message or a reply: messages name epochs, classes and files only.
 *
 * The published key is the RSASSA-PSS SubjectPublicKeyInfo of RFC 9578
 * §6.5 (`convertEncToRSASSAPSS` of the rsaEncryption SPKI), and its
 * token_key_id is SHA-256 of those bytes.
 */
import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import { publicVerif } from '@cloudflare/privacypass-ts';
import { publishedTokenKey, readTokenKeyFile, serializeTokenKeyFile, tokenKeyFilePath, type StoredTokenKey } from '../../disk/tokenkeys.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { writeFileAtomic } from '../atomic.ts';

/** WebCrypto's key type as privacypass-ts takes it. */
type VerifyKey = Parameters<publicVerif.Origin['verify']>[1];

const RSA_BITS = 2048;
export type StoredKey = StoredTokenKey;

/** One token key: its class and epoch, the key pair, what is published and its id. */
export interface TokenKey {
  readonly epoch: number;
  readonly sizeClass: number;
  readonly privateKey: KeyObject;
  /** rsaEncryption form, for node:crypto's raw RSA (issuance). */
  readonly publicKey: KeyObject;
  /** The published token key: RSASSA-PSS SPKI (RFC 9578 §6.5). */
  readonly tokenKey: Uint8Array;
  /** SHA-256(tokenKey). */
  readonly keyId: Uint8Array;
  /** The key for WebCrypto RSA-PSS verification (privacypass-ts Origin.verify). */
  readonly verifyKey: VerifyKey;
}

async function load(s: StoredKey): Promise<TokenKey & { stored: StoredKey }> {
  const privateKey = crypto.createPrivateKey({ key: s.pkcs8, format: 'der', type: 'pkcs8' });
  if (privateKey.asymmetricKeyType !== 'rsa' || privateKey.asymmetricKeyDetails?.modulusLength !== RSA_BITS) {
    throw new PcdError(ErrorCode.InvalidField, `token key of epoch ${s.epoch}, class ${s.sizeClass}: not an RSA-${RSA_BITS} key`);
  }
  const { publicKey, spki, tokenKey, keyId } = publishedTokenKey(privateKey);
  const verifyKey: VerifyKey = await crypto.subtle.importKey('spki', spki, { name: 'RSA-PSS', hash: 'SHA-384' }, true, ['verify']);
  return { epoch: s.epoch, sizeClass: s.sizeClass, privateKey, publicKey, tokenKey, keyId, verifyKey, stored: s };
}

function generate(epoch: number, sizeClass: number): Promise<StoredKey> {
  return new Promise((resolve, reject) => {
    crypto.generateKeyPair('rsa', { modulusLength: RSA_BITS, publicExponent: 65537 }, (err, _pub, priv) => {
      if (err) reject(err);
      else resolve({ epoch, sizeClass, pkcs8: priv.export({ type: 'pkcs8', format: 'der' }) });
    });
  });
}

/**
 * Where token keys are kept: the data folder's key file, or a shared store
 * (server/pg/tokenkeys.ts: wrapped under the master key, the same keys for
 * every node).
 */
export interface TokenKeyStorage {
  /** Every key kept, at open. */
  loadAll(): Promise<StoredKey[]>;
  /**
   * Keeps `made` (keys of `epoch` this node lacks) and returns the keys now
   * kept for `epoch`: on a shared store another node's may have come first,
   * and those win. `all` is every key held once `made` is added (a file is
   * rewritten whole).
   */
  add(epoch: number, made: StoredKey[], all: () => StoredKey[]): Promise<StoredKey[]>;
  /** The keys kept for `epoch` by now (a shared store: made by another node); absent for a file, which only this node writes. */
  ofEpoch?(epoch: number): Promise<StoredKey[]>;
  /** Drops `epoch`'s keys; `all` is every key held without them. */
  remove(epoch: number, all: () => StoredKey[]): Promise<void>;
}

/** The data folder's `token-keys.json` (0600, written atomically). */
export class TokenKeyFile implements TokenKeyStorage {
  constructor(readonly file: string) {}

  async loadAll(): Promise<StoredKey[]> {
    if (!fs.existsSync(this.file)) return [];
    const st = fs.statSync(this.file);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) fs.chmodSync(this.file, 0o600);
    return readTokenKeyFile(this.file);
  }

  async add(_epoch: number, made: StoredKey[], all: () => StoredKey[]): Promise<StoredKey[]> {
    writeFileAtomic(this.file, serializeTokenKeyFile([...all(), ...made]));
    return made;
  }

  async remove(_epoch: number, all: () => StoredKey[]): Promise<void> {
    writeFileAtomic(this.file, serializeTokenKeyFile(all()));
  }
}

/** The token keys of every live epoch, loaded from and written through to their storage. */
export class TokenKeys {
  private readonly keys = new Map<number, Map<number, TokenKey & { stored: StoredKey }>>();
  private readonly byId = new Map<string, TokenKey>();
  private readonly pending = new Map<number, Promise<void>>();

  private constructor(
    readonly storage: TokenKeyStorage,
    readonly classes: readonly number[],
  ) {}

  /** Loads `<dataDir>/token-keys.json` (absent: none yet); a file group or others can read is tightened to 0600. */
  static async open(dataDir: string, classes: readonly number[]): Promise<TokenKeys> {
    return TokenKeys.openFrom(new TokenKeyFile(tokenKeyFilePath(dataDir)), classes);
  }

  /** Loads every key `storage` keeps. */
  static async openFrom(storage: TokenKeyStorage, classes: readonly number[]): Promise<TokenKeys> {
    const t = new TokenKeys(storage, classes);
    for (const s of await storage.loadAll()) t.add(await load(s));
    return t;
  }

  /** Holds `k`, in place of a key of its epoch and class held before. */
  private add(k: TokenKey & { stored: StoredKey }): void {
    let m = this.keys.get(k.epoch);
    if (!m) this.keys.set(k.epoch, (m = new Map()));
    const before = m.get(k.sizeClass);
    if (before) this.byId.delete(Buffer.from(before.keyId).toString('hex'));
    m.set(k.sizeClass, k);
    this.byId.set(Buffer.from(k.keyId).toString('hex'), k);
  }

  private all(): StoredKey[] {
    const all: StoredKey[] = [];
    for (const m of this.keys.values()) for (const k of m.values()) all.push(k.stored);
    return all;
  }

  /** True when `epoch` has a key for every class. */
  has(epoch: number): boolean {
    const m = this.keys.get(epoch);
    return m !== undefined && this.classes.every((c) => m.has(c));
  }

  /** Makes the missing keys of `epoch` (in the background of the event loop: RSA key generation runs in libuv's pool), once; on a shared store, takes those another node made. */
  ensure(epoch: number): Promise<void> {
    if (this.has(epoch)) return Promise.resolve();
    let p = this.pending.get(epoch);
    if (!p) {
      p = (async () => {
        // Keys another node made already are taken, not made again (RSA key generation costs about 0.1 s of CPU per class).
        for (const k of (await this.storage.ofEpoch?.(epoch)) ?? []) if (!this.keys.get(epoch)?.has(k.sizeClass)) this.add(await load(k));
        const missing = this.classes.filter((c) => !this.keys.get(epoch)?.has(c));
        if (missing.length === 0) return;
        const made = await Promise.all(missing.map((c) => generate(epoch, c)));
        const kept = await this.storage.add(epoch, made, () => this.all());
        for (const s of kept) {
          const held = this.keys.get(epoch)?.get(s.sizeClass);
          if (!held || !held.stored.pkcs8.equals(s.pkcs8)) this.add(await load(s));
        }
      })().finally(() => this.pending.delete(epoch));
      this.pending.set(epoch, p);
    }
    return p;
  }

  /** The key of `epoch` and `sizeClass`, or undefined. */
  get(epoch: number, sizeClass: number): TokenKey | undefined {
    return this.keys.get(epoch)?.get(sizeClass);
  }

  /** The keys of `epoch`, by ascending class. */
  of(epoch: number): TokenKey[] {
    return [...(this.keys.get(epoch)?.values() ?? [])].sort((a, b) => a.sizeClass - b.sizeClass);
  }

  /** A live key by its token_key_id, or undefined (never issued here, or retired). */
  byKeyId(keyId: Uint8Array): TokenKey | undefined {
    return this.byId.get(Buffer.from(keyId).toString('hex'));
  }

  /** Epochs that have keys. */
  epochs(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }

  /** Forgets `epoch`'s keys, in memory and in the file; returns their key ids (for the spent store's purge). */
  async retire(epoch: number): Promise<Uint8Array[]> {
    const m = this.keys.get(epoch);
    if (!m) return [];
    const ids = [...m.values()].map((k) => k.keyId);
    for (const id of ids) this.byId.delete(Buffer.from(id).toString('hex'));
    this.keys.delete(epoch);
    await this.storage.remove(epoch, () => this.all());
    return ids;
  }
}
