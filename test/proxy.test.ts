/**
 * The client IP (server/clientip.ts): X-Forwarded-For is believed only from
 * configured proxies, the rightmost entry no trusted proxy added is the
 * client, and only a valid IP address in canonical form ever reaches the
 * per-IP limit or a log (issue 17; docs/operations.md "Binding, proxies and
 * TLS").
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createTransport } from '../client/transport.ts';
import { createClient } from '../client/client.ts';
import { LOG_TABLES } from '../shared/designs/index.ts';
import { ErrorCode } from '../shared/errors.ts';
import { flushLogs } from '../server/loghealth.ts';
import { canonicalIp, clientIp, compileTrust, parseTrustProxy } from '../server/clientip.ts';
import { forwardedFetch } from '../workload/simulate.ts';
import { rejection, runPcd, startTestServer, tempDir, type TestServer } from './helpers.ts';
import { startServer } from '../server/server.ts';

let ts: TestServer | undefined;
afterEach(async () => {
  await ts?.close();
  ts = undefined;
});

const JUNK = ['<img src=x onerror=alert(1)>', 'a'.repeat(15_000), '2130706433', 'fe80::1%eth0', '1.2.3.4.5', ''];

/** Health with a forged X-Forwarded-For, as any client can send it. */
async function healthAs(url: string, xff: string): Promise<number> {
  const res = await fetch(`${url}/v1/health`, { headers: { 'x-forwarded-for': xff, accept: 'application/json' } });
  await res.arrayBuffer();
  return res.status;
}

/** Every value of every column that holds an IP, in every log table this server wrote. */
function storedIps(t: TestServer): string[] {
  flushLogs(t.server.store);
  const out: string[] = [];
  for (const table of LOG_TABLES) {
    for (const c of table.columns.filter((c) => c.holds === 'ip')) {
      try {
        for (const row of t.server.store.db.prepare(`SELECT "${c.name}" AS v FROM "${table.name}"`).all() as { v: unknown }[]) out.push(String(row.v));
      } catch (e) {
        if (!/no such table/.test(String(e))) throw e;
      }
    }
  }
  return out;
}

describe('from an address that is not a trusted proxy', () => {
  it('a forged X-Forwarded-For is ignored: 7 forged addresses against a 5-a-minute limit get 429 after 5', async () => {
    ts = await startTestServer({ designs: ['plain'], rateLimits: { ipPerMinute: 5 } });
    const statuses: number[] = [];
    for (let i = 1; i <= 7; i++) statuses.push(await healthAs(ts.server.url, `203.0.113.${i}`));
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
  });

  it('also when the server trusts a proxy elsewhere (10.0.0.0/8): loopback is not it', async () => {
    ts = await startTestServer({ designs: ['plain'], rateLimits: { ipPerMinute: 5 }, trustProxy: '10.0.0.0/8' });
    const statuses: number[] = [];
    for (let i = 1; i <= 7; i++) statuses.push(await healthAs(ts.server.url, `203.0.113.${i}, 10.0.0.${i}`));
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
  });
});

describe('behind a trusted proxy', () => {
  it('the client is the rightmost address no trusted proxy added; the client-written entries left of it are never read', () => {
    const trusted = compileTrust(parseTrustProxy('127.0.0.1,10.0.0.0/8'));
    const req = (xff: string | undefined, remote = '127.0.0.1') => ({ socket: { remoteAddress: remote } as net.Socket, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } });
    expect(clientIp(req('6.6.6.6, 5.5.5.5, 10.1.2.3'), trusted)).toBe('5.5.5.5');
    expect(clientIp(req('6.6.6.6,5.5.5.5'), trusted)).toBe('5.5.5.5');
    expect(clientIp(req(undefined), trusted)).toBe('127.0.0.1');
    expect(clientIp(req('5.5.5.5', '::ffff:127.0.0.1'), trusted)).toBe('5.5.5.5');
    expect(clientIp(req('5.5.5.5', '192.0.2.9'), trusted)).toBe('192.0.2.9'); // not a trusted proxy: its header is not read
    expect(clientIp(req('::FFFF:1.2.3.4'), trusted)).toBe('1.2.3.4');
    expect(clientIp(req('2001:DB8:0:0:0:0:0:1'), trusted)).toBe('2001:db8::1');
    for (const junk of JUNK) expect(clientIp(req(`5.5.5.5, ${junk}`), trusted)).toBe('127.0.0.1');
    // The same header twice is one list (node joins them).
    expect(clientIp({ socket: { remoteAddress: '127.0.0.1' } as net.Socket, headers: { 'x-forwarded-for': ['6.6.6.6', '5.5.5.5'] as unknown as string } }, trusted)).toBe('5.5.5.5');
  });

  it('the per-IP limit counts the forwarded client, per client', async () => {
    ts = await startTestServer({ designs: ['plain'], rateLimits: { ipPerMinute: 5 }, trustProxy: 'loopback' });
    const a: number[] = [];
    for (let i = 0; i < 6; i++) a.push(await healthAs(ts.server.url, `198.51.100.7, 203.0.113.1`));
    expect(a).toEqual([200, 200, 200, 200, 200, 429]);
    expect(await healthAs(ts.server.url, '203.0.113.2')).toBe(200); // another client behind the same proxy
    expect(await healthAs(ts.server.url, '::ffff:203.0.113.1')).toBe(429); // the same client, spelled otherwise
  });

  it('junk never reaches a log: every IP stored by every design parses as an IP, in canonical form', async () => {
    ts = await startTestServer({ trustProxy: 'loopback' });
    const { token } = await ts.admin.createAccount({ email: 'xff@example.org', numbers: ['+14155550123'], capabilities: ['messages'] });
    const sent = [...JUNK, '::FFFF:198.51.100.23', '2001:DB8::0:7'];
    for (const xff of sent) {
      for (const design of ['plain', 'hashed', 'blinded'] as const) {
        const transport = createTransport({ baseUrl: ts.server.url, token, fetch: forwardedFetch(xff) });
        const r = await createClient({ baseUrl: ts.server.url, token, design, transport }).lookup('+14155550123');
        expect(r.capabilities).toEqual(['messages']);
      }
    }
    const ips = storedIps(ts);
    expect(ips.length).toBeGreaterThan(0);
    for (const ip of ips) expect(canonicalIp(ip), ip.slice(0, 80)).toBe(ip);
    expect(new Set(ips)).toEqual(new Set(['127.0.0.1', '198.51.100.23', '2001:db8::7']));
  });
});

describe('--trust-proxy', () => {
  it('takes addresses, CIDRs and the named ranges, in canonical form', () => {
    expect(parseTrustProxy(' loopback, 10.0.0.0/8 ,::FFFF:10.1.1.1, fd00::/8,UniqueLocal')).toEqual(['loopback', '10.0.0.0/8', '10.1.1.1', 'fd00::/8', 'uniquelocal']);
  });

  it.each(['true', '*', '1', '0.0.0.0/0', '::/0', 'proxy.example.org', '10.0.0.0/33', '10.0.0.0/8/8', '<img src=x>', ''])('refuses %j', (v) => {
    expect(() => parseTrustProxy(v)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidField }));
  });

  it('trusting everyone cannot be reached from code either', async () => {
    const e = await rejection(startServer({ dataDir: tempDir(), trustProxy: true as unknown as string, port: 0 }));
    expect(e.code).toBe(ErrorCode.InvalidField);
  });

  it.each([
    [['serve', '--trust-proxy', 'true'], /trust-proxy: "true" is not a proxy address.*any client claim any IP.*\(invalid_field\)/],
    [['serve', '--trust-proxy', '0.0.0.0/0'], /any client claim any IP/],
  ])('pcd %j is one line and a non-zero exit', async (args, message) => {
    const r = await runPcd(args);
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
  });

  it('the bare flag of old (trust everyone) is now an error: it needs the list', async () => {
    const r = await runPcd(['serve', '--trust-proxy']);
    expect(r.code).not.toBe(0);
    expect(r.stderr.split('\n')[0]).toMatch(/--trust-proxy <list>.*argument missing/); // commander's line, then the usage as for every flag
  });
});
