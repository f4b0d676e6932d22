/**
 * Oblivious HTTP (RFC 9458), so the server does not learn which client
 * asked: the client seals a binary HTTP request (shared/bhttp.ts) to the
 * gateway's public key and sends it through a relay; the relay sees the
 * client's address and ciphertext, the gateway (server/ohttp.ts) sees the
 * request and the relay's address. Neither sees both, unless they collude.
 *
 * ## Flow (RFC 9458 §4)
 *
 *   client                         relay (pcd relay)          gateway + target (pcd serve)
 *   GET keys  ------------------>  GET /.well-known/ohttp-gateway  ---->  application/ohttp-keys
 *   enc_request = hdr || enc || Seal(pkR, request)
 *             -- message/ohttp-req -->  forwards the bytes  --------->  Open, dispatch in-process
 *             <-- message/ohttp-res --  forwards the bytes  <---------  nonce || Seal(key, nonce, response)
 *
 * One suite, the one RFC 9458 Appendix A uses: DHKEM(X25519, HKDF-SHA256),
 * HKDF-SHA256, AES-128-GCM. HPKE (RFC 9180) is @hpke/core, on WebCrypto;
 * the response's HKDF is @noble/hashes and its AEAD WebCrypto's AES-GCM, so
 * this module runs in a browser bundle as in Node (no Node import).
 *
 * ## Wire layouts
 *
 *   Key Config (RFC 9458 §3.1) {
 *     Key Identifier (8), HPKE KEM ID (16), HPKE Public Key (Npk * 8),
 *     HPKE Symmetric Algorithms Length (16) = 4..65532,
 *     HPKE Symmetric Algorithms { HPKE KDF ID (16), HPKE AEAD ID (16) } (32) ...,
 *   }
 *   application/ohttp-keys (RFC 9458 §3.2, served at /.well-known/ohttp-gateway by RFC 9540 §3):
 *     { Key Config Length (16), Key Config (..) } ...
 *   Encapsulated Request (RFC 9458 §4.1) {
 *     Key Identifier (8), HPKE KEM ID (16), HPKE KDF ID (16), HPKE AEAD ID (16),
 *     Encapsulated KEM Shared Secret (8 * Nenc), HPKE-Protected Request (..),
 *   }
 *   Encapsulated Response (RFC 9458 §4.2) { Nonce (8 * max(Nn, Nk)), AEAD-Protected Response (..) }
 *
 * ## Randomness
 *
 * The ephemeral key and the response nonce are parameters (`ephemeralKey`,
 * `responseNonce`), as randomness is elsewhere in pcd (shared/suite.ts): the
 * RFC 9458 Appendix A vector runs byte for byte through the real code path.
 * Left out, they are fresh from WebCrypto.
 *
 * ## Errors
 *
 * Every failure is a {@link PcdError}; the reader names the code (who is to
 * blame): the gateway reads with `bad_request`, the client with
 * `malformed_reply`. A request the gateway cannot open gets no detail
 * beyond "cannot be decrypted": which check failed is nobody's business.
 */
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from '@hpke/core';
import { x25519 } from '@noble/curves/ed25519.js';
import { extract, expand } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesEqual, utf8Encode } from './bytes.ts';
import { ErrorCode, PcdError } from './errors.ts';
import { PATHS } from './messages.ts';
import { routePattern } from './paths.ts';

// ------------------------------------------------------------------ the suite

/** HPKE identifiers (RFC 9180 §7) of the one suite pcd speaks. */
export const OHTTP_SUITE = {
  /** DHKEM(X25519, HKDF-SHA256). */
  kemId: 0x0020,
  /** HKDF-SHA256. */
  kdfId: 0x0001,
  /** AES-128-GCM. */
  aeadId: 0x0001,
} as const;

/** Sizes of the suite (RFC 9180 §7.1, §7.3): public key and enc, AEAD key and nonce. */
const NPK = 32;
const NENC = 32;
const NK = 16;
const NN = 12;
/** RFC 9458 §4.2: the response nonce is max(Nn, Nk) bytes. */
export const RESPONSE_NONCE_BYTES = Math.max(NN, NK);
/** AES-GCM's tag. */
const TAG_BYTES = 16;

/** RFC 9458 §4.3 and §4.4: the media types that label the two directions. */
const REQUEST_LABEL = utf8Encode('message/bhttp request');
const RESPONSE_LABEL = utf8Encode('message/bhttp response');

/** Media types of RFC 9458 §9 and the key list of §3.2. */
export const OHTTP_MEDIA = {
  request: 'message/ohttp-req',
  response: 'message/ohttp-res',
  keys: 'application/ohttp-keys',
} as const;

/** RFC 9540 §3: where a gateway publishes its key configurations (GET), and where pcd's gateway takes requests (POST). */
export const OHTTP_GATEWAY_PATH = '/.well-known/ohttp-gateway';

let suite: CipherSuite | undefined;
function hpke(): CipherSuite {
  return (suite ??= new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() }));
}

/** WebCrypto's interface, from the global every runtime pcd runs in has (Node 20+, browsers). */
function subtle() {
  return globalThis.crypto.subtle;
}

function randomBytes(n: number): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

/** A copy in a fresh ArrayBuffer, as the DOM typings of WebCrypto want. */
function buf(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes);
}

// ------------------------------------------------------------------ key configurations (RFC 9458 §3)

export interface SymmetricAlgorithm {
  kdfId: number;
  aeadId: number;
}

export interface KeyConfig {
  /** 0..255; picks the gateway's private key. */
  keyId: number;
  kemId: number;
  publicKey: Uint8Array;
  symmetric: readonly SymmetricAlgorithm[];
}

/** Encodes one key configuration (RFC 9458 §3.1). */
export function encodeKeyConfig(config: KeyConfig): Uint8Array {
  if (!Number.isInteger(config.keyId) || config.keyId < 0 || config.keyId > 255) {
    throw new PcdError(ErrorCode.InvalidField, `an OHTTP key id is one byte, got ${config.keyId}`);
  }
  if (config.symmetric.length < 1 || config.symmetric.length > 16383) {
    throw new PcdError(ErrorCode.InvalidField, 'an OHTTP key configuration lists 1 to 16,383 symmetric algorithms');
  }
  const out = new Uint8Array(1 + 2 + config.publicKey.length + 2 + 4 * config.symmetric.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, config.keyId);
  v.setUint16(1, config.kemId);
  out.set(config.publicKey, 3);
  let at = 3 + config.publicKey.length;
  v.setUint16(at, 4 * config.symmetric.length);
  at += 2;
  for (const a of config.symmetric) {
    v.setUint16(at, a.kdfId);
    v.setUint16(at + 2, a.aeadId);
    at += 4;
  }
  return out;
}

/** Public key length of a KEM this module knows; undefined for any other. */
function publicKeyLength(kemId: number): number | undefined {
  return kemId === OHTTP_SUITE.kemId ? NPK : undefined;
}

/**
 * Decodes exactly one key configuration. A KEM other than X25519 is an
 * error here (its key length is unknown); in a list it is skipped instead.
 */
export function decodeKeyConfig(bytes: Uint8Array, code: ErrorCode): KeyConfig {
  const fail = (why: string): never => {
    throw new PcdError(code, `malformed OHTTP key configuration (RFC 9458 §3.1): ${why}`);
  };
  if (bytes.length < 3) fail('truncated');
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const keyId = v.getUint8(0);
  const kemId = v.getUint16(1);
  const npk = publicKeyLength(kemId) ?? fail(`KEM 0x${kemId.toString(16).padStart(4, '0')} is not one this client speaks`);
  if (bytes.length < 3 + npk + 2) fail('truncated');
  const publicKey = bytes.slice(3, 3 + npk);
  const algLength = v.getUint16(3 + npk);
  // RFC 9458 §3.1: HPKE Symmetric Algorithms Length (16) = 4..65532, whole (KDF, AEAD) pairs.
  if (algLength < 4 || algLength % 4 !== 0) fail(`the symmetric algorithms length ${algLength} is not a positive multiple of 4`);
  if (bytes.length !== 3 + npk + 2 + algLength) fail(`${bytes.length} bytes, expected ${3 + npk + 2 + algLength}`);
  const symmetric: SymmetricAlgorithm[] = [];
  for (let at = 3 + npk + 2; at < bytes.length; at += 4) symmetric.push({ kdfId: v.getUint16(at), aeadId: v.getUint16(at + 2) });
  return { keyId, kemId, publicKey, symmetric };
}

/** The `application/ohttp-keys` form (RFC 9458 §3.2): each configuration after its 2-byte length. */
export function encodeKeyConfigList(configs: readonly KeyConfig[]): Uint8Array {
  const encoded = configs.map(encodeKeyConfig);
  const out = new Uint8Array(encoded.reduce((n, c) => n + 2 + c.length, 0));
  const v = new DataView(out.buffer);
  let at = 0;
  for (const c of encoded) {
    v.setUint16(at, c.length);
    out.set(c, at + 2);
    at += 2 + c.length;
  }
  return out;
}

/** Key lists this large are not key lists. */
const MAX_KEY_LIST_BYTES = 64 * 1024;

/**
 * Decodes an `application/ohttp-keys` list. Configurations of a KEM this
 * module does not speak are skipped (a gateway may offer several); a
 * framing error anywhere discards the whole list.
 */
export function decodeKeyConfigList(bytes: Uint8Array, code: ErrorCode): KeyConfig[] {
  const fail = (why: string): never => {
    throw new PcdError(code, `malformed application/ohttp-keys (RFC 9458 §3.2): ${why}`);
  };
  if (bytes.length === 0) fail('empty');
  if (bytes.length > MAX_KEY_LIST_BYTES) fail(`${bytes.length} bytes`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: KeyConfig[] = [];
  for (let at = 0; at < bytes.length; ) {
    if (at + 2 > bytes.length) fail('truncated length');
    const n = v.getUint16(at);
    if (n < 3 || at + 2 + n > bytes.length) fail(`a configuration of ${n} bytes runs past the end`);
    const one = bytes.subarray(at + 2, at + 2 + n);
    if (publicKeyLength(((one[1] ?? 0) << 8) | (one[2] ?? 0)) !== undefined) out.push(decodeKeyConfig(one, code));
    at += 2 + n;
  }
  return out;
}

/** The first configuration with this module's KEM and its (HKDF-SHA256, AES-128-GCM) pair; undefined when none is. */
export function selectKeyConfig(configs: readonly KeyConfig[]): KeyConfig | undefined {
  return configs.find(
    (c) => c.kemId === OHTTP_SUITE.kemId && c.symmetric.some((a) => a.kdfId === OHTTP_SUITE.kdfId && a.aeadId === OHTTP_SUITE.aeadId),
  );
}

// ------------------------------------------------------------------ keys

/** The X25519 public key of a 32-byte private key (RFC 7748 §6.1). */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(privateKey);
}

/** A fresh 32-byte X25519 private key. */
export function generatePrivateKey(): Uint8Array {
  return randomBytes(NPK);
}

type HpkeKeyPair = Awaited<ReturnType<CipherSuite['kem']['generateKeyPair']>>;

/** An X25519 key pair as HPKE takes it, from the private key's 32 bytes. */
async function importKeyPair(privateKey: Uint8Array): Promise<HpkeKeyPair> {
  const kem = hpke().kem;
  return {
    privateKey: await kem.deserializePrivateKey(buf(privateKey)),
    publicKey: await kem.deserializePublicKey(buf(publicKeyOf(privateKey))),
  };
}

/** The gateway's side of one key: its configuration and its private key, imported. */
export interface GatewayKey {
  readonly config: KeyConfig;
  readonly keyPair: HpkeKeyPair;
}

/** A gateway key from its id and private key bytes; its configuration offers the one suite. */
export async function importGatewayKey(keyId: number, privateKey: Uint8Array): Promise<GatewayKey> {
  const config: KeyConfig = {
    keyId,
    kemId: OHTTP_SUITE.kemId,
    publicKey: publicKeyOf(privateKey),
    symmetric: [{ kdfId: OHTTP_SUITE.kdfId, aeadId: OHTTP_SUITE.aeadId }],
  };
  encodeKeyConfig(config); // checks the key id
  return { config, keyPair: await importKeyPair(privateKey) };
}

// ------------------------------------------------------------------ request (RFC 9458 §4.3)

const HDR_BYTES = 7;

/** hdr = key_id (1), kem_id (2), kdf_id (2), aead_id (2). */
function header(keyId: number): Uint8Array {
  const hdr = new Uint8Array(HDR_BYTES);
  const v = new DataView(hdr.buffer);
  v.setUint8(0, keyId);
  v.setUint16(1, OHTTP_SUITE.kemId);
  v.setUint16(3, OHTTP_SUITE.kdfId);
  v.setUint16(5, OHTTP_SUITE.aeadId);
  return hdr;
}

/** info = concat(encode_str("message/bhttp request"), encode(1, 0), hdr). */
function requestInfo(hdr: Uint8Array): Uint8Array<ArrayBuffer> {
  const info = new Uint8Array(REQUEST_LABEL.length + 1 + hdr.length);
  info.set(REQUEST_LABEL, 0);
  info.set(hdr, REQUEST_LABEL.length + 1);
  return info;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** What either side keeps from the request to seal or open the response: the HPKE context and enc. */
interface ResponseContext {
  readonly exporter: { export(exporterContext: Uint8Array<ArrayBuffer>, length: number): Promise<ArrayBuffer> };
  readonly enc: Uint8Array;
}

/** The client's state between sending a request and reading its response. */
export interface ClientRequestContext extends ResponseContext {
  readonly keyId: number;
}

/**
 * The client's encapsulation (RFC 9458 §4.3): `hdr || enc || ct`, and the
 * context that opens the response. `ephemeralKey` (the 32-byte private key
 * skE) is for test vectors only.
 */
export async function encapsulateRequest(
  config: KeyConfig,
  request: Uint8Array,
  options: { ephemeralKey?: Uint8Array } = {},
): Promise<{ encapsulated: Uint8Array; context: ClientRequestContext }> {
  if (!selectKeyConfig([config])) throw new PcdError(ErrorCode.InvalidField, `OHTTP key ${config.keyId} does not offer DHKEM(X25519), HKDF-SHA256, AES-128-GCM`);
  const hdr = header(config.keyId);
  const s = hpke();
  const sender = await s.createSenderContext({
    recipientPublicKey: await s.kem.deserializePublicKey(buf(config.publicKey)),
    info: requestInfo(hdr),
    ...(options.ephemeralKey ? { ekm: await importKeyPair(options.ephemeralKey) } : {}),
  });
  const enc = new Uint8Array(sender.enc);
  // RFC 9458 §4.3: ct = sctxt.Seal("", request).
  const ct = new Uint8Array(await sender.seal(buf(request)));
  return { encapsulated: concat(hdr, enc, ct), context: { exporter: sender, enc, keyId: config.keyId } };
}

/** The gateway's state between opening a request and sealing its response. */
export type GatewayRequestContext = ResponseContext;

/** Encapsulated requests this large are refused before any crypto. */
export const MAX_ENCAPSULATED_REQUEST_BYTES = 600 * 1024;

/**
 * The gateway's decapsulation (RFC 9458 §4.3): finds the key by its id,
 * checks the suite, opens the request. Always `bad_request` on failure
 * (RFC 9458 §5.2: a request that cannot be opened gets a 4xx, not an
 * encapsulated response).
 */
export async function decapsulateRequest(
  keys: readonly GatewayKey[],
  encapsulated: Uint8Array,
): Promise<{ request: Uint8Array; context: GatewayRequestContext; keyId: number }> {
  const fail = (why: string): never => {
    throw new PcdError(ErrorCode.BadRequest, `the encapsulated request ${why} (RFC 9458 §4.3)`);
  };
  if (encapsulated.length > MAX_ENCAPSULATED_REQUEST_BYTES) fail(`of ${encapsulated.length} bytes exceeds ${MAX_ENCAPSULATED_REQUEST_BYTES}`);
  if (encapsulated.length < HDR_BYTES + NENC + TAG_BYTES) fail(`is truncated (${encapsulated.length} bytes)`);
  const v = new DataView(encapsulated.buffer, encapsulated.byteOffset, encapsulated.byteLength);
  const keyId = v.getUint8(0);
  const key = keys.find((k) => k.config.keyId === keyId) ?? fail(`names key ${keyId}, which this gateway does not have: fetch ${OHTTP_GATEWAY_PATH} again`);
  // RFC 9458 §4.3: the gateway checks that the KEM, KDF and AEAD are ones the key configuration supports.
  const kem = v.getUint16(1);
  const kdf = v.getUint16(3);
  const aead = v.getUint16(5);
  if (kem !== key.config.kemId || !key.config.symmetric.some((a) => a.kdfId === kdf && a.aeadId === aead)) {
    fail(`names a suite (KEM 0x${kem.toString(16)}, KDF 0x${kdf.toString(16)}, AEAD 0x${aead.toString(16)}) that key ${keyId} does not offer`);
  }
  const hdr = encapsulated.subarray(0, HDR_BYTES);
  const enc = encapsulated.slice(HDR_BYTES, HDR_BYTES + NENC);
  const ct = encapsulated.subarray(HDR_BYTES + NENC);
  let request: Uint8Array;
  let recipient: ResponseContext['exporter'];
  try {
    const ctx = await hpke().createRecipientContext({ recipientKey: key.keyPair, enc: buf(enc), info: requestInfo(hdr) });
    recipient = ctx;
    request = new Uint8Array(await ctx.open(buf(ct)));
  } catch (e) {
    if (e instanceof PcdError) throw e;
    return fail('cannot be decrypted');
  }
  return { request, context: { exporter: recipient, enc }, keyId };
}

// ------------------------------------------------------------------ response (RFC 9458 §4.4)

/** aead_key and aead_nonce of RFC 9458 §4.4 from the request's context and the response nonce. */
async function responseKeys(context: ResponseContext, responseNonce: Uint8Array): Promise<{ key: Uint8Array; nonce: Uint8Array }> {
  // secret = context.Export("message/bhttp response", Nk)
  const secret = new Uint8Array(await context.exporter.export(buf(RESPONSE_LABEL), NK));
  // salt = concat(enc, response_nonce); prk = Extract(salt, secret)
  const prk = extract(sha256, secret, concat(context.enc, responseNonce));
  // aead_key = Expand(prk, "key", Nk); aead_nonce = Expand(prk, "nonce", Nn)
  const key = expand(sha256, prk, utf8Encode('key'), NK);
  const nonce = expand(sha256, prk, utf8Encode('nonce'), NN);
  secret.fill(0);
  prk.fill(0);
  return { key, nonce };
}

async function aesGcm(mode: 'encrypt' | 'decrypt', key: Uint8Array, nonce: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const k = await subtle().importKey('raw', buf(key), { name: 'AES-GCM' }, false, [mode]);
  const params = { name: 'AES-GCM', iv: buf(nonce), tagLength: TAG_BYTES * 8 };
  return new Uint8Array(mode === 'encrypt' ? await subtle().encrypt(params, k, buf(data)) : await subtle().decrypt(params, k, buf(data)));
}

/**
 * The gateway's response encapsulation (RFC 9458 §4.4):
 * `response_nonce || Seal(aead_key, aead_nonce, "", response)`.
 * `responseNonce` (max(Nn, Nk) = 16 bytes) is for test vectors only.
 */
export async function encapsulateResponse(context: GatewayRequestContext, response: Uint8Array, options: { responseNonce?: Uint8Array } = {}): Promise<Uint8Array> {
  const responseNonce = options.responseNonce ?? randomBytes(RESPONSE_NONCE_BYTES);
  if (responseNonce.length !== RESPONSE_NONCE_BYTES) throw new PcdError(ErrorCode.InvalidField, `the response nonce is ${RESPONSE_NONCE_BYTES} bytes (RFC 9458 §4.4)`);
  const { key, nonce } = await responseKeys(context, responseNonce);
  try {
    return concat(responseNonce, await aesGcm('encrypt', key, nonce, response));
  } finally {
    key.fill(0);
  }
}

/** The client's response decapsulation (RFC 9458 §4.4); a response that does not open is `malformed_reply`. */
export async function decapsulateResponse(context: ClientRequestContext, encapsulated: Uint8Array): Promise<Uint8Array> {
  if (encapsulated.length < RESPONSE_NONCE_BYTES + TAG_BYTES) {
    throw new PcdError(ErrorCode.MalformedReply, `the encapsulated response is truncated (${encapsulated.length} bytes; RFC 9458 §4.4)`);
  }
  const { key, nonce } = await responseKeys(context, encapsulated.subarray(0, RESPONSE_NONCE_BYTES));
  try {
    return await aesGcm('decrypt', key, nonce, encapsulated.subarray(RESPONSE_NONCE_BYTES));
  } catch {
    throw new PcdError(ErrorCode.MalformedReply, 'the encapsulated response cannot be decrypted (RFC 9458 §4.4)');
  } finally {
    key.fill(0);
  }
}

/** True when two key configurations are the same bytes. */
export function sameKeyConfig(a: KeyConfig, b: KeyConfig): boolean {
  return bytesEqual(encodeKeyConfig(a), encodeKeyConfig(b));
}

// ------------------------------------------------------------------ what pcd sends through a relay

/**
 * The requests of pcd that travel through a relay, and the only ones the
 * gateway dispatches: the blinded design's anonymous reads, its evaluation
 * and health. Everything else goes direct, and the gateway refuses it
 * (403): the plain and hashed designs send the number itself, so hiding the
 * address hides nothing; account and admin calls name their caller; and a
 * relay's address is exempt from the server's per-IP limit
 * (server/ohttp.ts), so carrying them would take them out of that limit
 * for nothing.
 */
export const RELAYED_REQUESTS: readonly { method: 'GET' | 'POST'; path: string }[] = [
  { method: 'GET', path: PATHS.health },
  { method: 'GET', path: PATHS.blindedConfig },
  { method: 'POST', path: PATHS.blindedEvaluate },
  { method: 'GET', path: PATHS.blindedBucket.pattern },
];

/** A route pattern as a regular expression over a request path: each `:param` one decimal segment (every relayed parameter is a number). */
function pathRegExp(pattern: string): RegExp {
  const escaped = routePattern(pattern).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped.replace(/:[A-Za-z]+/g, '(?:0|[1-9][0-9]{0,9})')}$`);
}
const RELAYED = RELAYED_REQUESTS.map((r) => ({ method: r.method, path: pathRegExp(r.path) }));

/** Whether a request (method, path without query) is one that goes through a relay. */
export function isRelayed(method: string, path: string): boolean {
  return RELAYED.some((r) => r.method === method && r.path.test(path));
}
