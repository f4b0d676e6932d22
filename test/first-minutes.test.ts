/**
 * Issue 18, "the first ten minutes", the command line: what a new user
 * meets first. `pcd page-link` sends the folder's admin token only to an
 * address the user gave or the folder's server recorded (never a default
 * port); `pcd start` on a busy port fails in one line before it seeds or
 * writes; a bare `pcd audit` runs what can run; `pcd simulate --quick`
 * runs in seconds. The real binary where the process is the point (start
 * on a busy port, a server to find, the quick start), the rest in this
 * process (runPcd), `pcd simulate` included (its server children are
 * forked as ever).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createClient } from '../client/client.ts';
import { OWNER_FILE } from '../disk/lockowner.ts';
import { reuseServerProcesses } from '../harness/fork.ts';
import { ErrorCode } from '../shared/errors.ts';
import { PCD_BIN, TEST_SIZE_CLASSES, rejection, runPcd, spawnServe, spawnStart, stopChild, tempDir, type PcdRun } from './helpers.ts';

const run = promisify(execFile);

async function pcdBin(args: string[]): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const started = performance.now();
  try {
    const r = await run(process.execPath, [PCD_BIN, ...args], { timeout: 60_000, env: { ...process.env, PCD_EVAL_THREADS: '0' } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - started };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr, ms: performance.now() - started };
  }
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

const NO_ENV = { PCD_SERVER: undefined, PCD_ADMIN_TOKEN: undefined };

describe('pcd page-link finds the server in the data folder, and nowhere else', () => {
  const root = tempDir('pcd-first-');
  const children: ChildProcess[] = [];
  afterAll(async () => {
    for (const c of children) await stopChild(c);
  });

  it('a server on a non-default port: page-link --data finds it with no --server', async () => {
    const data = path.join(root, 'served');
    const s = await spawnServe(['--data', data, '--design', 'plain']);
    children.push(s.child);
    expect(s.url).not.toMatch(/:8787$/);
    const r = await runPcd(['page-link', '--data', data], NO_ENV);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(new RegExp(`^${s.url.replace(/[.]/g, '\\.')}/#login=[\\w-]+$`));
  }, 60_000);

  it('no server recorded and no --server: one line, and nothing is sent anywhere', async () => {
    const data = path.join(root, 'idle');
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'admin-token'), 'a-token-that-must-not-travel\n', { mode: 0o600 });
    const sent = vi.spyOn(globalThis, 'fetch');
    try {
      const r = await runPcd(['page-link', '--data', data], NO_ENV);
      expect(r.code).toBe(2);
      expect(oneLine(r.stderr)).toMatch(/no server is recorded in .*server\.lock\.json.*pass --server URL/);
      // A stale owner file (a server killed with SIGKILL): its URL is not trusted either.
      fs.writeFileSync(path.join(data, OWNER_FILE), JSON.stringify({ pid: 2 ** 22 + 12345, role: 'server', command: 'pcd serve', startedAt: '', port: 8787, url: 'http://127.0.0.1:8787' }));
      const stale = await runPcd(['page-link', '--data', data], NO_ENV);
      expect(stale.code).toBe(2);
      expect(oneLine(stale.stderr)).toMatch(/is not running/);
      expect(sent).not.toHaveBeenCalled();
    } finally {
      sent.mockRestore();
    }
  });
});

describe('pcd start on a busy port', () => {
  it('fails fast in one line, before it seeds or writes anything in the data folder', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    const data = path.join(tempDir('pcd-first-busy-'), 'data');
    try {
      const r = await pcdBin(['start', '--port', String(port), '--data', data]);
      expect(r.code).toBe(2);
      expect(oneLine(r.stderr)).toMatch(new RegExp(`127\\.0\\.0\\.1:${port} is in use .*choose another --port`));
      expect(r.stdout).toBe('');
      expect(fs.existsSync(data)).toBe(false);
      expect(fs.existsSync(path.join(data, '..', 'contacts'))).toBe(false);
    } finally {
      blocker.close();
    }
  }, 60_000);
});

describe('a bare pcd audit', () => {
  it('runs plain and blinded, and says in one line what hashed needs', async () => {
    const data = path.join(tempDir('pcd-first-audit-'), 'data');
    const seeded = await runPcd(['seed', '--data', data, '--size', '50', '--requesters', '1', '--contacts', '10']);
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(fs.existsSync(path.join(data, 'contacts', 'user0.txt'))).toBe(true); // inside the data folder, never beside it
    const r = await runPcd(['audit', '--data', data]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^plain design: /m);
    expect(r.stdout).toMatch(/^blinded design: /m);
    expect(r.stdout).not.toMatch(/^hashed design: /m);
    expect(r.stdout).toMatch(/^hashed: not audited: .*--target NUMBER.*--plan/m);
    // Asked for by name, hashed still says what it needs, as the one error line.
    const hashed = await runPcd(['audit', '--data', data, '--design', 'hashed']);
    expect(hashed.code).toBe(2);
    expect(oneLine(hashed.stderr)).toMatch(/needs --plan/);
  }, 60_000);
});

describe('the client commands say what to do', () => {
  it('a server that cannot be reached is its own error, with no HTTP status claimed', async () => {
    const down = net.createServer();
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    const port = (down.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => down.close(() => resolve()));
    const e = await rejection(createClient({ baseUrl: `127.0.0.1:${port}`, token: 't', design: 'plain' }).lookup('+14155550123'));
    expect(e.code).toBe(ErrorCode.Network);
    expect(e.status).toBe(0);
    expect(e.message).toMatch(new RegExp(`^cannot reach http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
    const r = await runPcd(['lookup', '+14155550123', '--server', `127.0.0.1:${port}`, '--design', 'plain'], { PCD_TOKEN: 't' });
    expect(r.code).toBe(3);
    expect(oneLine(r.stderr)).toMatch(/^pcd: cannot reach .*ECONNREFUSED.* \(network\)$/);
  });

  it('a national number without --region: the line says to add one or the country code', async () => {
    const r = await runPcd(['lookup', '4155550123', '--server', 'http://127.0.0.1:9', '--design', 'plain'], { PCD_TOKEN: 't' });
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/'4155550123' has no country code .*add --region .*--region US.* country code .*\+1/);
  });
});

describe('pcd simulate for a first look', () => {
  it('in-process, simulate and bench get the arguments pcd was given (not the host program\'s argv)', async () => {
    const r = await runPcd(['simulate', '--days', 'many']);
    expect(r).toEqual({ code: 2, stdout: '', stderr: "pcd: --days 'many' is not a number (invalid_field)\n" });
  });

  it('--help shows list defaults as lists, and --quick runs in seconds with its small profile (flags beside it win)', async () => {
    // In this process: simulate's own parser prints its help with process.stdout.write (commander's default), caught
    // here; and simulate sets process.exitCode as it returns (0 after the help, 1 after a failed lookup), put back.
    const exitCode = process.exitCode;
    let printed = '';
    let help: PcdRun;
    let r: PcdRun;
    try {
      const write = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((printed += String(chunk)), true));
      try {
        help = await runPcd(['simulate', '--help']);
      } finally {
        write.mockRestore();
      }
      // In this process too: the simulation forks its server children as ever (evaluating inline, PCD_EVAL_THREADS=0,
      // as spawnServe's), one process serving its three runs in turn (harness/fork.ts reuseServerProcesses, which the
      // results do not depend on): two process starts saved. Its progress lines go to stderr, the JSON to stdout.
      r = await reuseServerProcesses(() => runPcd(['simulate', '--quick', '--bucket-bits', '0', '--json'], { PCD_EVAL_THREADS: '0' }));
    } finally {
      process.exitCode = exitCode;
    }
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(printed).toMatch(/^Usage: pcd simulate /m);
    expect(printed).toMatch(/\(default: US,GB,DE\)/);
    expect(printed).toMatch(/\(default: 0,4,8,12\)/);
    expect(printed).not.toMatch(/\["/);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^3 run\(s\) in \d+ s$/m);
    const doc = JSON.parse(r.stdout) as { parameters: { script: { days: number }; bucketBits: number[]; designs: string[] }; workload: { label: string; errors: number }[] };
    expect(doc.parameters.script.days).toBe(2);
    expect(doc.parameters.bucketBits).toEqual([0]); // given beside --quick: it wins
    expect(doc.workload.map((w) => w.label)).toEqual(['plain', 'hashed', 'blinded b=0']);
    expect(doc.workload.every((w) => w.errors === 0)).toBe(true);
  }, 120_000);
});

describe('the quick start, pasted in order', () => {
  it('pcd start prints human lines only on stdout, and its commands, run in order, give the same answers in each design and then the audit of each', async () => {
    const dataDir = path.join(tempDir(), 'data');
    // Four token size classes (test/helpers.ts TEST_SIZE_CLASSES): the default thirty-one are as many RSA keys to make at start.
    const { child, stdout: printed } = await spawnStart(['--port', '0', '--data', dataDir, '--no-ui', '--size-classes', TEST_SIZE_CLASSES.join(',')]);
    try {
      const stdout = printed();
      // Item 7: no JSON log line among the human ones.
      expect(stdout.split('\n').filter((l) => l.trimStart().startsWith('{'))).toEqual([]);
      const exported = /^\s*export PCD_SERVER=(\S+) PCD_TOKEN=(\S+)$/m.exec(stdout);
      expect(exported, stdout).not.toBeNull();
      const env = { PCD_SERVER: exported![1]!, PCD_TOKEN: exported![2]! };
      const commands = [...stdout.matchAll(/^\s*npm run pcd -- (.+)$/gm)].map((m) => m[1]!.split(/\s+/));
      const lookups = commands.filter((c) => c[0] === 'lookup' && c.includes('--design'));
      expect(lookups.map((c) => c[c.indexOf('--design') + 1])).toEqual(['plain', 'hashed', 'blinded']);
      const answers: string[] = [];
      for (const c of lookups) {
        const r = await runPcd(c, env);
        expect(r.code, r.stderr).toBe(0);
        answers.push(r.stdout);
      }
      expect(answers[0]).toMatch(/messenger/);
      expect(answers[0]).toMatch(/SMS only/);
      expect(new Set(answers).size).toBe(1); // the same answer in each design
      const audit = commands.find((c) => c[0] === 'audit')!;
      expect(audit).not.toContain('--design'); // one audit, every design
      expect(await stopChild(child)).toBe(0); // flushes the logs (blinded counts per minute)
      const r = await runPcd(audit.map((a) => (a === path.relative(process.cwd(), dataDir) ? dataDir : a)), {});
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^plain design: /m);
      expect(r.stdout).toMatch(/1 row\(s\) from 1 requester account\(s\): each names the number/);
      expect(r.stdout).toMatch(/^hashed design: /m);
      expect(r.stdout).toMatch(/1 of \d+ distinct logged hashes reversed/);
      expect(r.stdout).toMatch(/^blinded design: /m);
      expect(r.stdout).toMatch(/evaluation requests paid with a token \(blinded_token_eval_log\) in the range: 1 /);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 120_000);
});
