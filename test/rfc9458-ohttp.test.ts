/**
 * Oblivious HTTP (RFC 9458), shared/ohttp.ts: the worked example of
 * RFC 9458 Appendix A byte for byte through the real code path (the
 * ephemeral key and the response nonce passed in), the key configuration
 * and its application/ohttp-keys list, and every way a message can be
 * wrong: tampered, for another key, another suite, truncated.
 *
 * The key configuration, the gateway's keys and the binary request and
 * response come from test/vectors/ohttp/rfc9458.json. The client's
 * ephemeral key, the response nonce and the two encapsulated messages are
 * written here from the RFC's Appendix A text: the vector file's
 * `clientEphemeralPrivate` and `responseNonce` are not the RFC's (its
 * nonce is 12 bytes, where §4.4 makes it max(Nn, Nk) = 16), a test below
 * says so, and the RFC's values are what reproduce the RFC's hex.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import {
  OHTTP_SUITE,
  RESPONSE_NONCE_BYTES,
  decapsulateRequest,
  decapsulateResponse,
  decodeKeyConfig,
  decodeKeyConfigList,
  encapsulateRequest,
  encapsulateResponse,
  encodeKeyConfig,
  encodeKeyConfigList,
  generatePrivateKey,
  importGatewayKey,
  isRelayed,
  publicKeyOf,
  selectKeyConfig,
  type KeyConfig,
} from '../shared/ohttp.ts';
import { PATHS } from '../shared/messages.ts';
import { pcdError } from './backends.ts';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

interface OhttpVector {
  keyConfig: string;
  privateKey: string;
  publicKey: string;
  keyId: number;
  kemId: number;
  kdfId: number;
  aeadId: number;
  symmetricAlgorithms: { kdfId: number; aeadId: number }[];
  request: string;
  response: string;
  clientEphemeralPrivate: string;
  responseNonce: string;
}
const V = (JSON.parse(readFileSync(new URL('./vectors/ohttp/rfc9458.json', import.meta.url), 'utf8')) as { vectors: OhttpVector[] }).vectors[0]!;

/** RFC 9458 Appendix A, as printed there. */
const APPENDIX_A = {
  /** "The client then generates an HPKE context": its ephemeral key pair skE, pkE. */
  ephemeralPrivate: 'bc51d5e930bda26589890ac7032f70ad12e4ecb37abb1b65b1256c9c48999c73',
  ephemeralPublic: '4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472',
  /** hdr || enc || ct. */
  encapsulatedRequest:
    '010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472' +
    '6374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525',
  /** max(Nn, Nk) = 16 bytes. */
  responseNonce: 'c789e7151fcba46158ca84b04464910d',
  /** response_nonce || ct. */
  encapsulatedResponse: 'c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd',
};

async function caught(p: Promise<unknown>): Promise<PcdError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(PcdError);
  return e as PcdError;
}

const gatewayKey = () => importGatewayKey(V.keyId, hex(V.privateKey));

describe('RFC 9458 Appendix A, byte for byte', () => {
  it('the key configuration (§3.1) decodes to the vector’s fields and encodes back to its bytes', async () => {
    const config = decodeKeyConfig(hex(V.keyConfig), ErrorCode.MalformedReply);
    expect(config).toEqual({ keyId: V.keyId, kemId: V.kemId, publicKey: hex(V.publicKey), symmetric: V.symmetricAlgorithms });
    expect(toHex(encodeKeyConfig(config))).toBe(V.keyConfig);
    expect(toHex(publicKeyOf(hex(V.privateKey)))).toBe(V.publicKey);
    expect(selectKeyConfig([config])).toBe(config); // it offers (HKDF-SHA256, AES-128-GCM), (HKDF-SHA256, ChaCha20Poly1305)
    expect([OHTTP_SUITE.kemId, OHTTP_SUITE.kdfId, OHTTP_SUITE.aeadId]).toEqual([V.kemId, V.kdfId, V.aeadId]);
    // The gateway's own configuration of this key offers the one suite pcd speaks.
    const own = (await gatewayKey()).config;
    expect(toHex(encodeKeyConfig(own))).toBe(`01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e798155000400010001`);
  });

  it('the client’s encapsulation with the RFC’s ephemeral key is the RFC’s encapsulated request (§4.3)', async () => {
    expect(toHex(publicKeyOf(hex(APPENDIX_A.ephemeralPrivate)))).toBe(APPENDIX_A.ephemeralPublic);
    const config = decodeKeyConfig(hex(V.keyConfig), ErrorCode.MalformedReply);
    const { encapsulated } = await encapsulateRequest(config, hex(V.request), { ephemeralKey: hex(APPENDIX_A.ephemeralPrivate) });
    expect(toHex(encapsulated)).toBe(APPENDIX_A.encapsulatedRequest);
  });

  it('the gateway opens the RFC’s request and seals the RFC’s response with the RFC’s nonce (§4.4); the client opens it', async () => {
    const opened = await decapsulateRequest([await gatewayKey()], hex(APPENDIX_A.encapsulatedRequest));
    expect(toHex(opened.request)).toBe(V.request);
    expect(opened.keyId).toBe(1);
    const sealed = await encapsulateResponse(opened.context, hex(V.response), { responseNonce: hex(APPENDIX_A.responseNonce) });
    expect(toHex(sealed)).toBe(APPENDIX_A.encapsulatedResponse);

    const config = decodeKeyConfig(hex(V.keyConfig), ErrorCode.MalformedReply);
    const { context } = await encapsulateRequest(config, hex(V.request), { ephemeralKey: hex(APPENDIX_A.ephemeralPrivate) });
    expect(toHex(await decapsulateResponse(context, hex(APPENDIX_A.encapsulatedResponse)))).toBe(V.response);
  });

  it('the vector file’s ephemeral key and nonce are not Appendix A’s (reported, not used)', () => {
    expect(toHex(publicKeyOf(hex(V.clientEphemeralPrivate)))).not.toBe(APPENDIX_A.ephemeralPublic);
    expect(hex(V.responseNonce)).not.toHaveLength(RESPONSE_NONCE_BYTES);
  });
});

describe('key configuration lists (application/ohttp-keys, RFC 9458 §3.2, RFC 9540 §3)', () => {
  const config = () => decodeKeyConfig(hex(V.keyConfig), ErrorCode.MalformedReply);

  it('each configuration after its 2-byte length; round trip', () => {
    const list = encodeKeyConfigList([config(), config()]);
    expect(toHex(list)).toBe(`002d${V.keyConfig}002d${V.keyConfig}`);
    expect(decodeKeyConfigList(list, ErrorCode.MalformedReply)).toEqual([config(), config()]);
  });

  it('a configuration of another KEM is skipped; a framing error discards the list', () => {
    const other = hex('020010' + '04'.repeat(65) + '000400010001'); // P-256 (0x0010): a key of 65 bytes
    const list = hex(`${other.length.toString(16).padStart(4, '0')}${toHex(other)}002d${V.keyConfig}`);
    expect(decodeKeyConfigList(list, ErrorCode.MalformedReply)).toEqual([config()]);
    pcdError(() => decodeKeyConfig(other, ErrorCode.MalformedReply), ErrorCode.MalformedReply);
    for (const bad of [
      '',
      `002e${V.keyConfig}`, // the length runs past the end
      `002d${V.keyConfig}00`, // a stray byte
      `002c${V.keyConfig.slice(0, -2)}`, // the configuration itself is cut
      `0002${V.keyConfig.slice(0, 4)}`,
    ]) {
      pcdError(() => decodeKeyConfigList(hex(bad), ErrorCode.MalformedReply), ErrorCode.MalformedReply);
    }
    const odd = hex(V.keyConfig);
    odd[36] = 6; // a symmetric algorithms length that is not whole (KDF, AEAD) pairs
    pcdError(() => decodeKeyConfig(odd, ErrorCode.BadRequest), ErrorCode.BadRequest);
    // A configuration without (HKDF-SHA256, AES-128-GCM) is not selected.
    const chachaOnly: KeyConfig = { ...config(), symmetric: [{ kdfId: 1, aeadId: 3 }] };
    expect(selectKeyConfig([chachaOnly])).toBeUndefined();
  });
});

describe('what the gateway and the client refuse', () => {
  const roundTrip = async () => {
    const key = await importGatewayKey(7, generatePrivateKey());
    const request = hex(V.request);
    const { encapsulated, context } = await encapsulateRequest(key.config, request);
    return { key, request, encapsulated, context };
  };

  it('a fresh encapsulation round-trips, and two of the same request differ', async () => {
    const { key, request, encapsulated, context } = await roundTrip();
    const again = await encapsulateRequest(key.config, request);
    expect(toHex(again.encapsulated)).not.toBe(toHex(encapsulated));
    const opened = await decapsulateRequest([key], encapsulated);
    expect(opened.request).toEqual(request);
    const sealed = await encapsulateResponse(opened.context, hex('0140c8'));
    expect(await decapsulateResponse(context, sealed)).toEqual(hex('0140c8'));
  });

  it('tampered, for another key id, another suite, truncated: bad_request, and never which check failed beyond that', async () => {
    const { key, encapsulated } = await roundTrip();
    for (const at of [10, encapsulated.length - 1, encapsulated.length - 20]) {
      const t = Uint8Array.from(encapsulated);
      t[at] = (t[at] ?? 0) ^ 1;
      const e = await caught(decapsulateRequest([key], t));
      expect(e.code).toBe(ErrorCode.BadRequest);
      expect(e.message).toMatch(/cannot be decrypted/);
    }
    const otherId = Uint8Array.from(encapsulated);
    otherId[0] = 8;
    expect((await caught(decapsulateRequest([key], otherId))).message).toMatch(/key 8/);
    const otherAead = Uint8Array.from(encapsulated);
    otherAead[6] = 3;
    expect((await caught(decapsulateRequest([key], otherAead))).code).toBe(ErrorCode.BadRequest);
    for (const n of [0, 6, 7 + 32, 7 + 32 + 15]) expect((await caught(decapsulateRequest([key], encapsulated.subarray(0, n)))).code).toBe(ErrorCode.BadRequest);
    // The right key id with another gateway's private key.
    const impostor = await importGatewayKey(7, generatePrivateKey());
    expect((await caught(decapsulateRequest([impostor], encapsulated))).message).toMatch(/cannot be decrypted/);
    expect((await caught(decapsulateRequest([key], new Uint8Array(600 * 1024 + 1)))).code).toBe(ErrorCode.BadRequest);
  });

  it('a tampered or truncated response is malformed_reply for the client', async () => {
    const { key, encapsulated, context } = await roundTrip();
    const opened = await decapsulateRequest([key], encapsulated);
    const sealed = await encapsulateResponse(opened.context, hex('0140c8'));
    for (const at of [0, 16, sealed.length - 1]) {
      const t = Uint8Array.from(sealed);
      t[at] = (t[at] ?? 0) ^ 0x80;
      expect((await caught(decapsulateResponse(context, t))).code).toBe(ErrorCode.MalformedReply);
    }
    for (const n of [0, 15, 16 + 15]) expect((await caught(decapsulateResponse(context, sealed.subarray(0, n)))).code).toBe(ErrorCode.MalformedReply);
    // A response sealed for another request does not open.
    const other = await roundTrip();
    const otherOpened = await decapsulateRequest([other.key], other.encapsulated);
    expect((await caught(decapsulateResponse(context, await encapsulateResponse(otherOpened.context, hex('0140c8'))))).code).toBe(ErrorCode.MalformedReply);
    expect((await caught(encapsulateResponse(opened.context, hex('0140c8'), { responseNonce: new Uint8Array(12) }))).code).toBe(ErrorCode.InvalidField);
  });
});

describe('which requests travel through a relay', () => {
  it('the blinded design’s config, evaluate and buckets, and health; nothing else', () => {
    expect(isRelayed('GET', PATHS.blindedConfig)).toBe(true);
    expect(isRelayed('POST', PATHS.blindedEvaluate)).toBe(true);
    expect(isRelayed('GET', PATHS.blindedBucket(3, 0))).toBe(true);
    expect(isRelayed('GET', PATHS.blindedBucket(2 ** 31 - 1, 16_777_215))).toBe(true);
    expect(isRelayed('GET', PATHS.health)).toBe(true);
    for (const [m, p] of [
      ['POST', PATHS.blindedConfig],
      ['GET', PATHS.blindedEvaluate],
      ['GET', `${PATHS.blindedConfig}?x=1`],
      ['GET', '/v1/blinded/buckets/1/2/3'],
      ['GET', '/v1/blinded/buckets/01/2'],
      ['GET', '/v1/blinded/buckets/a/2'],
      ['POST', PATHS.accounts],
      ['POST', PATHS.adminRotate],
      ['POST', PATHS.plainLookup],
      ['GET', '/'],
    ] as const) {
      expect(isRelayed(m, p), `${m} ${p}`).toBe(false);
    }
  });
});
