/**
 * Where the admin token comes from when it is not passed explicitly:
 * `PCD_ADMIN_TOKEN`, else the data folder's `admin-token` file (0600),
 * which the server generates on first use (server/server.ts) and
 * `pcd page-link` only reads.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { ADMIN_TOKEN_FILE } from './files.ts';

export const ADMIN_TOKEN_ENV = 'PCD_ADMIN_TOKEN';

/** The token and where it came from; undefined when neither the environment nor the file gives one. */
export function readAdminToken(dataDir: string, env: Readonly<Record<string, string | undefined>> = process.env): { token: string; source: string } | undefined {
  const fromEnv = env[ADMIN_TOKEN_ENV];
  if (fromEnv) return { token: fromEnv, source: `the ${ADMIN_TOKEN_ENV} environment variable` };
  const file = path.join(dataDir, ADMIN_TOKEN_FILE);
  try {
    return { token: fs.readFileSync(file, 'utf8').trim(), source: file };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new PcdError(ErrorCode.InvalidField, `cannot read the admin token from ${file}: ${code ?? (e as Error).message}`);
  }
}
