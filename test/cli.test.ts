/**
 * The command line as a user runs it: `pcd seed`, `pcd serve` on that data
 * folder in a child process, `pcd lookup` and `pcd sync` (plain list and
 * vCard, human and --json output) against it, and `pcd serve` on an empty
 * folder serving an empty directory. Every user error (a bad number or
 * --batch, a missing or wrong token, a server that is down or refuses for
 * load) is one line on stderr and a non-zero exit. The real binary where
 * the process is the point (serve, one lookup, one sync, exit codes 2 and
 * 3); the other commands, `pcd seed` among them, in this process
 * (test/helpers.ts runPcd). More checks that need no child process are in
 * test/client-hardening.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { createClient } from '../client/client.ts';
import { parseContactFile } from '../client/contacts.ts';
import { PCD_BIN, TEST_SIZE_CLASSES, describeDesigns, runPcd, spawnServe as serve, stopChild as stop, tempDir, type PcdRun } from './helpers.ts';

const run = promisify(execFile);

/** Runs the real `pcd` binary in a child process; resolves with its exit code and output, whatever the code. */
async function pcdBin(args: string[], env: Record<string, string> = {}): Promise<PcdRun> {
  try {
    const r = await run(process.execPath, [PCD_BIN, ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** A run that failed: a non-zero exit and one line on stderr, no stack trace; returns its exit code and that line. */
function failed(r: PcdRun, what: string): { code: number; stderr: string } {
  expect(r.code, `${what} succeeded: ${r.stdout}`).not.toBe(0);
  const stderr = r.stderr.trim();
  expect(stderr.split('\n'), stderr).toHaveLength(1);
  expect(stderr).toMatch(/^pcd: /);
  expect(stderr).not.toMatch(/\n\s+at /);
  return { code: r.code, stderr };
}

/** What `pcd lookup` prints for these answers. */
function lines(results: readonly { number: string; capabilities: readonly string[] }[]): string {
  return results.map((r) => `${r.number.padEnd(16)} ${r.capabilities.length ? `messenger (${r.capabilities.join(', ')})` : 'SMS only'}\n`).join('');
}

// The real binary where the process is the point: `pcd serve`, one lookup and one sync, the exit codes 2 and 3
// (bin/pcd.ts maps errors to them). The rest, `pcd seed` included, runs the same commands in this process (runPcd):
// the same output and the same one-line errors, without a second of process start each.
describe('pcd command line', () => {
  const root = tempDir('pcd-cli-');
  const data = path.join(root, 'data');
  const pins = path.join(root, 'pins', 'pins.json');
  let server: { child: ChildProcess; url: string };
  let token: string;
  let contacts: string;
  let list: string[];
  /** The first six contacts as the library's plain client answers them. */
  let six: { number: string; capabilities: string[] }[];

  beforeAll(async () => {
    const seeded = await runPcd(['seed', '--data', data, '--size', '300', '--contacts', '40', '--requesters', '1']);
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(seeded.stdout).toMatch(/seeded 300 numbers/);
    const requesters = JSON.parse(fs.readFileSync(path.join(data, 'contacts', 'requesters.json'), 'utf8')) as { token: string; contacts: string }[];
    expect(fs.statSync(path.join(data, 'contacts', 'requesters.json')).mode & 0o777).toBe(0o600);
    token = requesters[0]!.token;
    contacts = requesters[0]!.contacts;
    list = parseContactFile(fs.readFileSync(contacts, 'utf8'));
    // Four token size classes (test/helpers.ts TEST_SIZE_CLASSES): the default thirty-one are as many RSA keys to make at start.
    server = await serve(['--data', data, '--size-classes', TEST_SIZE_CLASSES.join(',')]);
    six = await createClient({ baseUrl: server.url, token, design: 'plain' }).lookupMany(list.slice(0, 6));
  }, 120_000);
  afterAll(async () => {
    if (server) expect(await stop(server.child)).toBe(0);
  });

  describeDesigns('looks numbers up in %s', (design) => {
    it('and prints messenger or SMS only, one line per number, as the directory says', async () => {
      // The server without its scheme works as well (http:// is assumed); blinded pins its epoch key in --pins.
      const target = design === 'hashed' ? server.url.replace(/^http:\/\//, '') : server.url;
      const r = await runPcd(['lookup', ...list.slice(0, 6), '--server', target, '--design', design, '--pins', pins], { PCD_TOKEN: token });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n')).toHaveLength(6);
      expect(r.stdout).toMatch(/^\+\d+ +(messenger \((messages|facetime)(, facetime)?\)|SMS only)$/m);
      expect(r.stdout).toBe(lines(six));
    });
  });

  it('the pcd binary looks numbers up with exit 0, and keeps the blinded epoch key it pinned in --pins', async () => {
    const r = await pcdBin(['lookup', ...list.slice(0, 6), '--server', server.url, '--design', 'blinded', '--pins', pins], { PCD_TOKEN: token });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(lines(six));
    expect(Object.keys((JSON.parse(fs.readFileSync(pins, 'utf8')) as { servers: object }).servers)).toEqual([server.url]);
  });

  it('syncs a contact file and a vCard, with a summary and --json', async () => {
    const { code, stdout } = await pcdBin(['sync', contacts, '--server', server.url, '--design', 'blinded', '--batch', '16'], { PCD_TOKEN: token });
    expect(code).toBe(0);
    expect(stdout).toMatch(/^40 entries: 40 valid \(40 unique\), 0 invalid; 20 messenger, 20 SMS only; \d+ requests/);
    const vcf = path.join(root, 'contacts.vcf');
    fs.writeFileSync(
      vcf,
      `BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nTEL;TYPE=CELL:${list[0]}\r\nitem1.TEL:tel:${list[1]}\r\nEND:VCARD\r\nBEGIN:VCARD\r\nVERSION:4.0\r\nFN:B\r\nTEL;VALUE=uri;TYPE=home:tel:${list[0]}\r\nTEL:not a number\r\nEND:VCARD\r\n`,
    );
    const j = await runPcd(['sync', vcf, '--server', server.url, '--design', 'plain', '--json'], { PCD_TOKEN: token });
    expect(j.code, j.stderr).toBe(0);
    const doc = JSON.parse(j.stdout) as { summary: Record<string, number>; results: { number: string }[]; invalid: unknown[] };
    expect(doc.summary).toMatchObject({ entries: 4, valid: 3, unique: 2, invalid: 1 });
    expect(doc.results.map((r) => r.number)).toEqual([list[0], list[1], list[0]]);
  });

  it('says what is wrong with a bad number, --batch or token in one line, with a non-zero exit', async () => {
    const bad = failed(await pcdBin(['lookup', '12', '--server', server.url], { PCD_TOKEN: token }), 'pcd lookup 12');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/'12' is not a phone number.*invalid_number/);
    // The same error in this process: the in-process runs below say what the binary says.
    expect(failed(await runPcd(['lookup', '12', '--server', server.url], { PCD_TOKEN: token }), 'in-process')).toEqual(bad);
    const noToken = failed(await runPcd(['lookup', '+14155550123', '--server', server.url], { PCD_TOKEN: '' }), 'no token');
    expect(noToken.stderr).toMatch(/no requester token/);
    const wrong = failed(await runPcd(['lookup', '+14155550123', '--server', server.url, '--token', 'not-a-token'], { PCD_TOKEN: undefined }), 'wrong token');
    expect(wrong).toEqual({ code: 2, stderr: 'pcd: the requester token is unknown or revoked (unauthenticated)' });
    // Refused before the file is read or anything is sent (it used to answer nothing, with exit 0).
    const batch = failed(await runPcd(['sync', contacts, '--server', server.url, '--batch', 'abc'], { PCD_TOKEN: token }), '--batch abc');
    expect(batch).toEqual({ code: 2, stderr: "pcd: --batch must be a whole number from 1 to 4096, got 'abc' (invalid_field)" });
  });

  it('says in one line that the server is down, or refusing for load and until when', async () => {
    const down = http.createServer();
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    const closedPort = (down.address() as AddressInfo).port;
    await new Promise<void>((resolve) => down.close(() => resolve()));
    const refused = failed(await pcdBin(['lookup', '+14155550123', '--server', `127.0.0.1:${closedPort}`], { PCD_TOKEN: token }), 'server down');
    expect(refused.code).toBe(3);
    expect(refused.stderr).toBe(`pcd: cannot reach http://127.0.0.1:${closedPort}: connection refused, ECONNREFUSED (is the server running? pcd serve starts one) (network)`);

    const busy = http.createServer((req, res) => {
      const limited = req.url!.startsWith('/v1/plain/');
      res.writeHead(limited ? 429 : 503, { 'content-type': 'application/json', 'retry-after': limited ? '42' : '3' });
      res.end(JSON.stringify({ error: limited ? { code: 'rate_limited', message: 'too many lookups' } : { code: 'unavailable', message: 'epoch 1 is still building' } }));
    });
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(busy.address() as AddressInfo).port}`;
    try {
      expect(failed(await runPcd(['lookup', '+14155550123', '--server', url, '--design', 'plain'], { PCD_TOKEN: token }), '429')).toEqual({
        code: 2,
        stderr: 'pcd: too many lookups; retry after 42 s (rate_limited)',
      });
      expect(failed(await runPcd(['lookup', '+14155550123', '--server', url], { PCD_TOKEN: token }), '503')).toEqual({
        code: 3,
        stderr: 'pcd: epoch 1 is still building; retry after 3 s (unavailable)',
      });
    } finally {
      await new Promise<void>((resolve) => busy.close(() => resolve()));
    }
  });

  it('serves an empty directory from an empty data folder', async () => {
    const empty = await serve(['--data', path.join(root, 'empty'), '--design', 'plain']);
    try {
      const res = await fetch(`${empty.url}/v1/health`, { headers: { accept: 'application/json' } });
      expect(await res.json()).toEqual({ ok: true, designs: ['plain'] });
      expect(fs.existsSync(path.join(root, 'empty', 'admin-token'))).toBe(true);
      expect(fs.statSync(path.join(root, 'empty', 'admin-token')).mode & 0o777).toBe(0o600);
    } finally {
      expect(await stop(empty.child)).toBe(0);
    }
  });
});

describe('contact file parsing', () => {
  it('reads one number per line, skipping comments and blank lines', () => {
    expect(parseContactFile('# friends\n+14155550123\n\n  (415) 555-0124 \r\n')).toEqual(['+14155550123', '(415) 555-0124']);
  });
  it('reads vCard TEL lines, folded lines included', () => {
    expect(parseContactFile('BEGIN:VCARD\nTEL;TYPE=CELL:+1 415\n 555 0123\nNOTE:+19999999999\nEND:VCARD\n')).toEqual(['+1 415555 0123']);
  });
});
