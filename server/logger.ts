/**
 * The server log of a command: pino JSON on stderr, or appended to a file
 * (0600), so a terminal shows only the human lines (stdout) and progress.
 */
import fs from 'node:fs';
import pino from 'pino';
import { ErrorCode, PcdError } from '../shared/errors.ts';

/**
 * The server log: pino JSON on stderr, or appended to `file` (0600) with
 * --log, so a terminal shows only the human lines (stdout) and progress.
 */
export function loggerFor(level: string, file?: string) {
  if (file === undefined) return pino({ level }, pino.destination(2));
  let fd: number;
  try {
    fd = fs.openSync(file, 'a', 0o600);
  } catch (e) {
    throw new PcdError(ErrorCode.InvalidField, `cannot open the log file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return pino({ level }, pino.destination({ fd, sync: true }));
}
