/**
 * The spill file of a query log (server/querylog-base.ts, "Shutdown while the
 * database still cannot be written"): `<dataDir>/log-spill-<table>.json`,
 * mode 0600, written atomically; exactly the rows the table would have
 * received, in its columns (a counts table: ts, key columns, count), BLOBs
 * as hex.
 */
import fs from 'node:fs';
import type { Logger } from 'pino';
import { writeFileAtomic } from './atomic.ts';

export type SpillKind = 'rows' | 'counts';

interface SpillFile {
  table: string;
  kind: SpillKind;
  rows: SpillCell[][];
}
type SpillCell = string | number | null | { hex: string };

function toSpillCell(v: unknown): SpillCell {
  if (v instanceof Uint8Array) return { hex: Buffer.from(v).toString('hex') };
  if (typeof v === 'bigint') return Number(v);
  if (v === undefined) return null;
  return v as string | number | null;
}

function fromSpillCell(c: SpillCell): unknown {
  return c !== null && typeof c === 'object' ? Buffer.from(c.hex, 'hex') : c;
}

/**
 * The rows of the spill file of `table`. A file that cannot be read is
 * moved aside (`.unreadable`), with a warning, never deleted: undefined.
 */
export function readSpill(file: string, table: string, kind: SpillKind, logger: Logger | undefined): unknown[][] | undefined {
  try {
    const spill = JSON.parse(fs.readFileSync(file, 'utf8')) as SpillFile;
    if (spill.table !== table || spill.kind !== kind || !Array.isArray(spill.rows)) throw new Error(`not a spill of ${table}`);
    return spill.rows.map((r) => r.map(fromSpillCell));
  } catch (e) {
    const aside = `${file}.unreadable`;
    fs.renameSync(file, aside);
    logger?.warn({ table, file: aside, err: (e as Error).message }, 'query log spill file could not be read: moved aside, not replayed');
    return undefined;
  }
}

/** Writes `rows` to the spill file; its path, or undefined (reported) when it could not be written. */
export function writeSpill(file: string, table: string, kind: SpillKind, rows: unknown[][], logger: Logger | undefined): string | undefined {
  const spill: SpillFile = { table, kind, rows: rows.map((r) => r.map(toSpillCell)) };
  try {
    writeFileAtomic(file, JSON.stringify(spill) + '\n');
    return file;
  } catch (e) {
    logger?.warn({ table, code: (e as NodeJS.ErrnoException).code ?? 'error' }, 'query log spill file could not be written');
    return undefined;
  }
}
