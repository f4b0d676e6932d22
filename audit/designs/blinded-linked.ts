/**
 * Linked rows (audit/designs/blinded.ts, "Linked rows"): the rows of the
 * blinded design's log tables, and of spent_tokens, in which any column
 * holds any form of a target the scan searches for (audit/scan/forms.ts).
 * A server that logs as declared leaves none.
 */
import type Database from 'better-sqlite3';
import type { E164 } from '../../shared/e164.ts';
import type { LogTable } from '../../shared/logs.ts';
import { numberForms, type TagEpoch } from '../scan/forms.ts';
import { MultiPatternSearcher, type Boundary } from '../scan/search.ts';

/** The bytes of an SQLite value as stored: BLOBs as they are, text in UTF-8, numbers in decimal; NULL: none. */
function valueBytes(v: unknown): Uint8Array | undefined {
  if (v === null || v === undefined) return undefined;
  if (v instanceof Uint8Array) return v;
  return Buffer.from(typeof v === 'string' ? v : String(v), 'utf8');
}

interface LinkedRows {
  /** Per target: rows of the tables holding a form of it. */
  rows: number;
  /** Per table: those rows, and the forms found in them. */
  tables: Map<string, { rows: number; forms: Set<string> }>;
}

/**
 * Counts, per target, the rows of `tables` in the range, and every row of
 * `untimed` (tables without a time, such as spent_tokens), in which the
 * value of any column (SELECT *: every column the table has) holds any form
 * of the target (audit/scan/forms.ts, with the tags of `epochs`). One
 * search per value for every form of every target at once
 * (audit/scan/search.ts).
 */
export function linkedRowsOf(
  db: Database.Database,
  tables: readonly LogTable[],
  targets: readonly E164[],
  epochs: readonly TagEpoch[],
  range: [number, number],
  untimed: readonly string[] = [],
): LinkedRows[] {
  const out: LinkedRows[] = targets.map(() => ({ rows: 0, tables: new Map() }));
  const patterns: Uint8Array[] = [];
  const boundaries: Boundary[] = [];
  const owner: { target: number; form: string }[] = [];
  targets.forEach((t, i) => {
    for (const f of numberForms(t, { epochs })) {
      if (f.bytes.length < 4) continue; // below the searcher's minimum; tags are at least 4 bytes (shared/buckets.ts)
      patterns.push(f.bytes);
      boundaries.push(f.boundary);
      owner.push({ target: i, form: f.form });
    }
  });
  if (patterns.length === 0) return out;
  const searcher = new MultiPatternSearcher(patterns, boundaries);
  // Raw rows (every column, in order) and integers exact, as their decimal digits are searched.
  const scans: { name: string; rows: () => Iterable<unknown[]> }[] = [
    ...tables.map((t) => ({
      name: t.name,
      rows: () => db.prepare<[number, number], unknown[]>(`SELECT * FROM ${t.name} WHERE ts >= ? AND ts < ?`).raw(true).safeIntegers(true).iterate(...range),
    })),
    ...untimed.map((name) => ({ name, rows: () => db.prepare<[], unknown[]>(`SELECT * FROM ${name}`).raw(true).safeIntegers(true).iterate() })),
  ];
  for (const table of scans) {
    for (const row of table.rows()) {
      const found = new Map<number, Set<string>>(); // target -> forms in this row
      for (const v of row) {
        const bytes = valueBytes(v);
        if (!bytes) continue;
        searcher.searchBuffer(bytes, (p) => {
          const { target, form } = owner[p]!;
          const forms = found.get(target);
          if (forms) forms.add(form);
          else found.set(target, new Set([form]));
        });
      }
      for (const [target, forms] of found) {
        const r = out[target]!;
        r.rows++;
        const t = r.tables.get(table.name) ?? { rows: 0, forms: new Set<string>() };
        t.rows++;
        for (const f of forms) t.forms.add(f);
        r.tables.set(table.name, t);
      }
    }
  }
  return out;
}
