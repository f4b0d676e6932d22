/**
 * Binary HTTP (RFC 9292), known-length form (shared/bhttp.ts): the RFC's
 * known-length examples of §5 byte for byte, the RFC 9000 §16 varint
 * examples, the request and response of RFC 9458 Appendix A
 * (test/vectors/ohttp/rfc9458.json), and malformed input: truncated at every
 * byte, oversized lengths, trailing bytes, bad fields, random mutations.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, encodeVarint, readVarint, type BhttpRequest } from '../shared/bhttp.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { pcdError } from './backends.ts';
import { runs } from './helpers.ts';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const text = (b: Uint8Array): string => Buffer.from(b).toString('latin1');
const cat = (...parts: (Uint8Array | number[])[]): Uint8Array => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))));

const REQ = { code: ErrorCode.BadRequest } as const;
const RES = { code: ErrorCode.MalformedReply } as const;

/**
 * RFC 9292 §5.1, Figure 8: the known-length encoding of the request of
 * Figure 7 (GET https:///hello.txt with user-agent, host and
 * accept-language; empty content and trailers written out).
 */
const FIGURE_8 = hex(`
  00034745 54056874 74707300 0a2f6865 6c6c6f2e 74787440 6c0a7573 65722d61
  67656e74 34637572 6c2f372e 31362e33 206c6962 6375726c 2f372e31 362e3320
  4f70656e 53534c2f 302e392e 376c207a 6c69622f 312e322e 3304686f 73740f77
  77772e65 78616d70 6c652e63 6f6d0f61 63636570 742d6c61 6e677561 67650665
  6e2c206d 690000`);
const FIGURE_8_REQUEST: BhttpRequest = {
  method: 'GET',
  scheme: 'https',
  authority: '',
  path: '/hello.txt',
  headers: [
    ['user-agent', 'curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3'],
    ['host', 'www.example.com'],
    ['accept-language', 'en, mi'],
  ],
  content: new Uint8Array(0),
  trailers: [],
};

/** RFC 9292 §5.2, Figure 13: a known-length 200 response with content and a trailer, no header fields. */
const FIGURE_13 = hex(`
  0140c800 1d546869 7320636f 6e74656e 7420636f 6e746169 6e732043 524c462e
  0d0a0d07 74726169 6c657204 74657874`);

interface OhttpVectorFile {
  vectors: { request: string; response: string }[];
}
const ohttp = (JSON.parse(readFileSync(new URL('./vectors/ohttp/rfc9458.json', import.meta.url), 'utf8')) as OhttpVectorFile).vectors[0]!;

describe('QUIC variable-length integers (RFC 9000 §16)', () => {
  it('reads the examples of RFC 9000 Appendix A.1 and refuses what exceeds 2^53', () => {
    expect(readVarint(hex('9d7f3e7d'), 0, ErrorCode.BadRequest)).toEqual({ value: 494_878_333, length: 4 });
    expect(readVarint(hex('7bbd'), 0, ErrorCode.BadRequest)).toEqual({ value: 15_293, length: 2 });
    expect(readVarint(hex('25'), 0, ErrorCode.BadRequest)).toEqual({ value: 37, length: 1 });
    expect(readVarint(hex('4025'), 0, ErrorCode.BadRequest)).toEqual({ value: 37, length: 2 }); // not minimal, still 37
    // 0xc2197c5eff14e88c is 151,288,809,941,952,652: no length of ours, and not exact in a double.
    pcdError(() => readVarint(hex('c2197c5eff14e88c'), 0, ErrorCode.BadRequest), ErrorCode.BadRequest);
    pcdError(() => readVarint(hex('c2197c'), 0, ErrorCode.MalformedReply), ErrorCode.MalformedReply); // truncated
  });

  it('writes the minimal encoding, and reads back what it wrote', () => {
    expect(toHex(encodeVarint(494_878_333))).toBe('9d7f3e7d');
    expect(toHex(encodeVarint(15_293))).toBe('7bbd');
    expect(toHex(encodeVarint(37))).toBe('25');
    expect(toHex(encodeVarint(63))).toBe('3f');
    expect(toHex(encodeVarint(64))).toBe('4040');
    fc.assert(
      fc.property(fc.maxSafeNat(), (v) => {
        const b = encodeVarint(v);
        expect(readVarint(b, 0, ErrorCode.BadRequest)).toEqual({ value: v, length: b.length });
      }),
      { numRuns: runs(1000) },
    );
  });
});

describe('RFC 9292 §5 examples (known-length)', () => {
  it('Figure 8: the request decodes to Figure 7, and encodes back byte for byte', () => {
    expect(decodeRequest(FIGURE_8, REQ)).toEqual(FIGURE_8_REQUEST);
    expect(toHex(encodeRequest(FIGURE_8_REQUEST))).toBe(toHex(FIGURE_8));
  });

  it('Figure 13: the response with a trailer decodes, and encodes back byte for byte', () => {
    const r = decodeResponse(FIGURE_13, RES);
    expect(r.status).toBe(200);
    expect(r.headers).toEqual([]);
    expect(text(r.content)).toBe('This content contains CRLF.\r\n');
    expect(r.trailers).toEqual([['trailer', 'text']]);
    expect(toHex(encodeResponse(r))).toBe(toHex(FIGURE_13));
  });

  it('RFC 9292 §3.8: the empty sections at the end may be left out, and padding is zero bytes', () => {
    // Figure 8 without its empty trailers, then without its empty content too.
    for (const cut of [1, 2]) expect(decodeRequest(FIGURE_8.subarray(0, FIGURE_8.length - cut), REQ)).toEqual(FIGURE_8_REQUEST);
    expect(decodeRequest(cat(FIGURE_8, new Uint8Array(10)), REQ)).toEqual(FIGURE_8_REQUEST);
    expect(decodeResponse(cat(FIGURE_13, new Uint8Array(3)), RES).trailers).toEqual([['trailer', 'text']]);
  });
});

describe('RFC 9458 Appendix A: the binary request and response inside the OHTTP example', () => {
  it('the request is GET https://example.com/ with nothing else, and the writer reproduces it truncated', () => {
    const r = decodeRequest(hex(ohttp.request), REQ);
    expect(r).toEqual({ method: 'GET', scheme: 'https', authority: 'example.com', path: '/', headers: [], content: new Uint8Array(0), trailers: [] });
    expect(toHex(encodeRequest(r, { truncate: true }))).toBe(ohttp.request);
    expect(toHex(encodeRequest(r))).toBe(ohttp.request + '000000'); // every section written out
  });

  it('the response is a bare 200, and the writer reproduces it truncated', () => {
    const r = decodeResponse(hex(ohttp.response), RES);
    expect(r).toEqual({ status: 200, headers: [], content: new Uint8Array(0), trailers: [] });
    expect(toHex(encodeResponse(r, { truncate: true }))).toBe(ohttp.response);
  });

  it('a request with content round-trips; truncation keeps a non-empty section', () => {
    const r: BhttpRequest = {
      method: 'POST',
      scheme: 'http',
      authority: '127.0.0.1:8787',
      path: '/v1/blinded/evaluate',
      headers: [
        ['content-type', 'application/msgpack'],
        ['authorization', 'PrivateToken token=abc_-=='],
      ],
      content: new Uint8Array([1, 2, 3, 0]),
    };
    for (const truncate of [false, true]) expect(decodeRequest(encodeRequest(r, { truncate }), REQ)).toEqual({ ...r, trailers: [] });
  });
});

describe('malformed input is a PcdError with the caller’s code, never anything else', () => {
  // Where Figure 8 may end (RFC 9292 §3.8): after the control data, the header section, the content, the trailers.
  const controlEnd = 1 + (1 + 3) + (1 + 5) + (1 + 0) + (1 + 10);
  const headerEnd = controlEnd + 2 + 0x6c;
  const validEnds = new Set([controlEnd, headerEnd, headerEnd + 1, headerEnd + 2]);

  it('Figure 8 cut at every byte: only the section boundaries are whole messages', () => {
    expect(FIGURE_8.length).toBe(headerEnd + 2);
    for (let n = 0; n < FIGURE_8.length; n++) {
      const prefix = FIGURE_8.subarray(0, n);
      if (validEnds.has(n)) expect(() => decodeRequest(prefix, REQ)).not.toThrow();
      else pcdError(() => decodeRequest(prefix, REQ), ErrorCode.BadRequest);
    }
    for (let n = 0; n < FIGURE_13.length; n++) {
      const prefix = FIGURE_13.subarray(0, n);
      try {
        decodeResponse(prefix, RES);
      } catch (e) {
        expect(e).toBeInstanceOf(PcdError);
        expect((e as PcdError).code).toBe(ErrorCode.MalformedReply);
      }
    }
    // Inside the content or the trailer section of Figure 13: malformed.
    pcdError(() => decodeResponse(FIGURE_13.subarray(0, 10), RES), ErrorCode.MalformedReply);
    pcdError(() => decodeResponse(FIGURE_13.subarray(0, FIGURE_13.length - 3), RES), ErrorCode.MalformedReply);
  });

  it('trailing bytes that are not padding', () => {
    pcdError(() => decodeRequest(cat(FIGURE_8, [0, 0, 1]), REQ), ErrorCode.BadRequest);
    pcdError(() => decodeResponse(cat(hex(ohttp.response), [0, 0, 0, 7]), RES), ErrorCode.MalformedReply);
  });

  it('oversized varints and lengths: past the end, past the limits, past 2^53', () => {
    const head = hex('000347455405687474707300012f'); // GET https "" "/"
    pcdError(() => decodeRequest(cat(head, hex('7fff')), REQ), ErrorCode.BadRequest); // a header section of 16,383 bytes, past the end
    pcdError(() => decodeRequest(cat(head, hex('bfffffff')), REQ), ErrorCode.BadRequest); // a section of 2^30 bytes
    pcdError(() => decodeRequest(cat(head, hex('00'), hex('c2197c5eff14e88c')), REQ), ErrorCode.BadRequest); // content length beyond 2^53
    pcdError(() => decodeRequest(cat(head, hex('00'), hex('800fffff')), REQ), ErrorCode.BadRequest); // content of ~1 MiB > 512 KiB
    pcdError(() => decodeRequest(cat(head, hex('00'), hex('04'), [1, 2]), REQ), ErrorCode.BadRequest); // content cut short
    pcdError(() => decodeRequest(cat(hex('00c0'), [0, 0]), REQ), ErrorCode.BadRequest); // the method length's varint is cut
    const big = encodeRequest({ ...FIGURE_8_REQUEST, content: new Uint8Array(1000) });
    pcdError(() => decodeRequest(big, { ...REQ, limits: { maxContentBytes: 999 } }), ErrorCode.BadRequest);
    pcdError(() => decodeRequest(big, { ...REQ, limits: { maxMessageBytes: big.length - 1 } }), ErrorCode.BadRequest);
    expect(decodeRequest(big, { ...REQ, limits: { maxContentBytes: 1000, maxMessageBytes: big.length } }).content).toHaveLength(1000);
  });

  it('framing indicators, statuses and informational responses', () => {
    pcdError(() => decodeRequest(cat([1], FIGURE_8.subarray(1)), REQ), ErrorCode.BadRequest); // a response indicator
    pcdError(() => decodeRequest(cat([2], FIGURE_8.subarray(1)), REQ), ErrorCode.BadRequest); // indeterminate length
    pcdError(() => decodeResponse(FIGURE_8, RES), ErrorCode.MalformedReply);
    pcdError(() => decodeResponse(hex('01'), RES), ErrorCode.MalformedReply);
    for (const status of [0, 99, 600, 1000]) pcdError(() => decodeResponse(cat([1], encodeVarint(status)), RES), ErrorCode.MalformedReply);
    // RFC 9292 §3.5.1: a 103 with a link field, then the final 204; the 103 is read and dropped.
    const link = cat([4], Buffer.from('link'), [9], Buffer.from('</a.css>;'));
    const informational = cat([1], encodeVarint(103), encodeVarint(link.length), link, encodeVarint(204), [0, 0, 0]);
    expect(decodeResponse(informational, RES)).toEqual({ status: 204, headers: [], content: new Uint8Array(0), trailers: [] });
    const nine = cat([1], ...Array.from({ length: 9 }, () => cat(encodeVarint(100), [0])), encodeVarint(200));
    pcdError(() => decodeResponse(nine, RES), ErrorCode.MalformedReply);
    pcdError(() => decodeResponse(cat([1], encodeVarint(100)), RES), ErrorCode.MalformedReply); // nothing after the 100
  });

  it('request lines and fields a reader refuses, and a writer will not write', () => {
    const line = (s: string) => cat(encodeVarint(s.length), Buffer.from(s, 'latin1'));
    const request = (method: string, path: string, fields: [string, string][], authority = '') => {
      const section = cat(...fields.flatMap(([n, v]) => [line(n), line(v)]));
      return cat([0], line(method), line('https'), line(authority), line(path), encodeVarint(section.length), section, [0, 0]);
    };
    expect(decodeRequest(request('GET', '/x', [['accept', '*/*']]), REQ).headers).toEqual([['accept', '*/*']]);
    for (const bad of [
      request('GE T', '/x', []),
      request('GET', '', []),
      request('GET', 'x', []),
      request('GET', '/a b', []),
      request('GET', '/x', [], 'evil/path'),
      request('GET', '/x', [['Accept', '*/*']]), // uppercase
      request('GET', '/x', [[':path', '/y']]), // a pseudo-field
      request('GET', '/x', [['', 'v']]),
      request('GET', '/x', [['x', 'a\r\nset-cookie: b']]),
      request('GET', '/x', [['x', 'a\u0000b']]),
      request('GET', '/x', [['x', ' padded']]),
      request('GET', '/x', Array.from({ length: 65 }, (_, i): [string, string] => [`x-${i}`, 'v'])),
    ]) {
      pcdError(() => decodeRequest(bad, REQ), ErrorCode.BadRequest);
    }
    const ok = { method: 'GET', scheme: 'https', authority: '', path: '/x', headers: [], content: new Uint8Array(0) };
    pcdError(() => encodeRequest({ ...ok, path: '' }), ErrorCode.InvalidField);
    pcdError(() => encodeRequest({ ...ok, headers: [['x', 'a\nb']] }), ErrorCode.InvalidField);
    pcdError(() => encodeResponse({ status: 101, headers: [], content: new Uint8Array(0) }), ErrorCode.InvalidField);
    // Names are written lowercase.
    expect(decodeRequest(encodeRequest({ ...ok, headers: [['Content-Type', 'a/b']] }), REQ).headers).toEqual([['content-type', 'a/b']]);
  });

  it('random and mutated messages decode or fail with a PcdError of the caller’s code', () => {
    const seeds = [FIGURE_8, FIGURE_13, hex(ohttp.request), hex(ohttp.response)];
    const attempt = (b: Uint8Array) => {
      for (const [decode, code] of [
        [decodeRequest, ErrorCode.BadRequest],
        [decodeResponse, ErrorCode.MalformedReply],
      ] as const) {
        try {
          decode(b, { code });
        } catch (e) {
          if (!(e instanceof PcdError) || e.code !== code) throw e;
        }
      }
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(3), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 4 }), fc.nat(), (junk, which, flips, cut) => {
        attempt(junk);
        const b = Uint8Array.from(seeds[which] ?? FIGURE_8);
        for (const [at, v] of flips) b[at % b.length] = v;
        attempt(b);
        attempt(b.subarray(0, cut % (b.length + 1)));
      }),
      { numRuns: runs(3000) },
    );
  });
});
