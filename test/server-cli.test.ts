/**
 * Server commands refuse mistakes in one line on stderr with a non-zero
 * exit, never a stack trace: options out of range, a busy port. The real
 * binary for one option mistake and the busy port (its exit code is the
 * point); the other option mistakes in this process (runPcd), which prints
 * and exits as bin/pcd.ts does.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { PCD_BIN, runPcd, tempDir } from './helpers.ts';

const run = promisify(execFile);

/** Runs `pcd args`; resolves with the exit code and output, whatever the code. */
async function pcd(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [PCD_BIN, ...args], { timeout: 60_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

describe('server commands: one line and a non-zero exit for every mistake', () => {
  const root = tempDir('pcd-server-cli-');

  it('pcd serve --port 70000, the real binary', async () => {
    const r = await pcd(['serve', '--port', '70000', '--data', path.join(root, 'never')]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/--port must be a whole number from 0 to 65,535, got '70000'/);
  });

  it.each([
    [['serve', '--port', '70000'], /--port must be a whole number from 0 to 65,535, got '70000'/],
    [['serve', '--port', '1.5'], /--port must be a whole number/],
    [['serve', '--eval-threads', 'two'], /--eval-threads must be a whole number/],
    [['serve', '--limit-per-hour', '0'], /--limit-per-hour must be a number from/],
    [['serve', '--bucket-bits', '25'], /--bucket-bits must be a whole number from 0 to 24/],
    [['seed', '--registered-share', '2'], /--registered-share must be a number from 0 to 1/],
  ])('pcd %j, in-process', async (args, message) => {
    const r = await runPcd([...args, '--data', path.join(root, 'never')]);
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(message);
  });

  it('a busy port is one line naming it', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const r = await pcd(['serve', '--port', String(port), '--design', 'plain', '--data', path.join(root, 'busy')]);
      expect(r.code).toBe(2);
      expect(oneLine(r.stderr)).toMatch(new RegExp(`127\\.0\\.0\\.1:${port} is in use \\(another pcd serve\\?\\): stop it or choose another --port \\(conflict\\)`));
    } finally {
      blocker.close();
    }
  });
});
