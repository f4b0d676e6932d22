/**
 * Replies that cannot be turned against a browser or the server (issue 17):
 * `X-Content-Type-Options: nosniff` on every reply, error messages that
 * quote input only bounded and escaped (shared/errors.ts quoteInput), and a
 * body that is refused is never read to its end: the connection closes.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ECHO_CHARS, quoteInput } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { ADMIN_TOKEN, raw, startTestServer, type TestServer } from './helpers.ts';

let ts: TestServer;
beforeAll(async () => {
  ts = await startTestServer({ designs: ['plain', 'blinded'] });
});
afterAll(() => ts.close());

describe('quoteInput', () => {
  it('bounds, quotes and escapes', () => {
    expect(quoteInput('text/html')).toBe('"text/html"');
    expect(quoteInput('<img src=x onerror=alert(1)>')).toBe('"\\u003cimg src=x onerror=alert(1)\\u003e"');
    const long = quoteInput('a'.repeat(15_000));
    expect(long).toBe(`"${'a'.repeat(MAX_ECHO_CHARS)}…"`);
    expect(quoteInput('a\r\nb"c')).toBe('"a\\r\\nb\\"c"');
  });
});

describe('every reply says nosniff', () => {
  it.each([
    ['GET', '/v1/health', {}],
    ['GET', '/no/such/path', {}],
    ['DELETE', '/v1/health', {}],
    ['POST', '/v1/plain/lookup', { authorization: 'Bearer nobody' }],
    ['GET', '/v1/blinded/config', {}],
    ['GET', '/.well-known/ohttp-gateway', {}],
    ['POST', '/.well-known/ohttp-gateway', { 'content-type': 'text/html' }],
    ['GET', '/v1/hashed/anything', {}],
  ] as const)('%s %s', async (method, path, headers) => {
    const res = await fetch(`${ts.server.url}${path}`, { method, headers: { ...headers } });
    await res.arrayBuffer();
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });
});

describe('error messages echo bounded, escaped input', () => {
  const ACCOUNT = JSON.stringify({ email: 'echo@example.org', numbers: ['+14155550199'], capabilities: ['messages'] });
  const junk = `<img src=x onerror=alert(1)>${'a'.repeat(15_000)}`;
  it.each([
    ['Content-Type', { 'content-type': junk }, '/v1/accounts'],
    ['Accept', { 'content-type': 'application/json', accept: junk }, '/v1/accounts'],
    ['the gateway Content-Type', { 'content-type': junk }, '/.well-known/ohttp-gateway'],
    ['Content-Encoding', { 'content-type': 'application/json', 'content-encoding': junk }, '/v1/accounts'],
  ])('%s', async (_what, headers, path) => {
    const r = await raw(`${ts.server.url}${path}`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers }, body: ACCOUNT });
    expect(r.status).toBeGreaterThanOrEqual(400);
    expect(r.status).toBeLessThan(500);
    const message: string = r.json.error.message;
    expect(message).not.toContain('<');
    expect(message.length).toBeLessThan(300);
    expect(message).toContain('\\u003cimg');
  });

  it('a path value', async () => {
    const r = await raw(`${ts.server.url}/v1/accounts/${encodeURIComponent(junk)}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(r.status).toBe(400);
    expect(r.json.error.message).not.toContain('<');
    expect(r.json.error.message.length).toBeLessThan(300);
  });
});

/** Sends `head` and `body` on a raw socket; resolves with what the server wrote and how many body bytes it took before closing. */
function upload(head: string, bodyBytes: number): Promise<{ reply: string; sent: number }> {
  const u = new URL(ts.server.url);
  return new Promise((resolve) => {
    const s = net.connect({ host: u.hostname, port: Number(u.port) });
    let reply = '';
    let sent = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      s.destroy();
      resolve({ reply, sent });
    };
    s.on('data', (d: Buffer) => (reply += d.toString()));
    s.on('error', finish);
    s.on('close', finish);
    s.on('end', finish);
    s.on('connect', () => {
      s.write(head);
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = (): void => {
        while (!done && sent < bodyBytes) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
      };
      pump();
    });
  });
}

describe('a refused upload is not read to its end', () => {
  it('Content-Length over the limit: 413 before a body byte is read, Connection: close, and the socket closed', async () => {
    const big = 100 * 1024 * 1024;
    const r = await upload(`POST /v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: ${big}\r\n\r\n`, big);
    expect(r.reply).toMatch(/^HTTP\/1\.1 413 /);
    expect(r.reply).toMatch(/\r\nconnection: close\r\n/i);
    expect(r.reply).toContain('"code":"body_too_large"');
    expect(r.sent).toBeLessThan(big);
  });

  it('a chunked body that grows past the limit: 413 and the socket closed, the rest never read', async () => {
    const big = 100 * 1024 * 1024;
    const u = new URL(ts.server.url);
    const s = net.connect({ host: u.hostname, port: Number(u.port) });
    let reply = '';
    let sent = 0;
    const closed = new Promise<void>((resolve) => {
      s.on('close', () => resolve());
      s.on('error', () => {});
    });
    s.on('data', (d: Buffer) => (reply += d.toString()));
    await new Promise<void>((resolve) => s.once('connect', resolve));
    s.write(`POST /v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nContent-Type: application/json\r\nAccept: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const frame = Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
    let open = true;
    void closed.then(() => (open = false));
    while (open && sent < big) {
      sent += chunk.length;
      if (!s.write(frame)) await new Promise((r) => setTimeout(r, 5));
    }
    await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 413 /);
    expect(reply).toMatch(/\r\nconnection: close\r\n/i);
    expect(sent).toBeLessThan(big);
    expect(LIMITS.maxBodyBytes).toBeLessThan(big);
  });
});
