/**
 * What a design's query log may hold (docs/threat-model.md), as data: each design
 * declares its log tables once, in shared/designs/<name>.ts, and everything
 * that touches a log reads the declaration:
 *
 * - the store schema (disk/sql.ts turns each table into its DDL);
 * - the server's log writers (server/querylog.ts takes the table's columns);
 * - the retention purge (every declared table, by `ts`);
 * - the audit (audit/: a table a design's report reads, and which columns
 *   could hold a number) and the scan (audit/scan/: which design a
 *   database page belongs to);
 * - the docs and the page (what a lookup leaves on the server).
 *
 * Two kinds of table:
 * - `rows`: one row per event, with an integer `id` and a `ts` (Unix ms);
 * - `counts`: events counted per key and time window, one row per
 *   (window start `ts`, key...) with its `count`: a log whose size does not
 *   grow with the request rate.
 *
 * Every column says what it `holds`. A column that holds the number or a
 * function of it (`number`, `number-hash`) is what makes a log a
 * who-contacts-whom record; {@link numberColumns} lists them.
 */

export type ColumnType = 'INTEGER' | 'TEXT' | 'BLOB';

/** What a column holds, in the terms of the threat model (docs/threat-model.md). */
export type Holds =
  | 'time'
  | 'account'
  | 'email'
  | 'ip'
  | 'number'
  | 'number-hash'
  | 'answer'
  | 'epoch'
  | 'bucket'
  | 'size-class'
  | 'count';

/** What a column holds that is derived from a looked-up number. */
export const NUMBER_DERIVED: ReadonlySet<Holds> = new Set<Holds>(['number', 'number-hash']);

export interface LogColumn {
  readonly name: string;
  readonly type: ColumnType;
  readonly holds: Holds;
}

interface LogTableBase {
  readonly name: string;
  /** One line: what one row stands for. */
  readonly description: string;
  /** The columns after `id`, `ts` first (a `counts` table: `ts`, the key columns, `count`). */
  readonly columns: readonly LogColumn[];
}

export interface RowLogTable extends LogTableBase {
  readonly kind: 'rows';
  /** Secondary indexes, each a list of columns; the index is named after the table and its first column. */
  readonly indexes: readonly (readonly string[])[];
}

export interface CountLogTable extends LogTableBase {
  readonly kind: 'counts';
  /** The key columns between `ts` and `count`. */
  readonly key: readonly string[];
  /** The window a row counts: `ts` is its start. */
  readonly windowMs: number;
}

export type LogTable = RowLogTable | CountLogTable;

/** The value a column of `type` holds in JavaScript; `Blob` is what a BLOB is read as (better-sqlite3: a Buffer, which the server side names). */
export type ColumnValue<C, Blob extends Uint8Array = Uint8Array> = C extends { readonly type: 'INTEGER' } ? number : C extends { readonly type: 'TEXT' } ? string : Blob;

/** A row as a writer appends it: one value per declared column, in order (the type follows the declaration). */
export type LogRow<T extends LogTable> = Extract<ColumnValues<T['columns']>, unknown[]>;
type ColumnValues<Cols> = { -readonly [K in keyof Cols]: ColumnValue<Cols[K]> };

/** A counts table's key: the values of its key columns (`ts` and `count` are the log's). */
export type CountKey<T extends CountLogTable> = Extract<KeyValues<T['key']>, (string | number)[]>;
type KeyValues<Key> = { -readonly [K in keyof Key]: string | number };

/** The column spec every log starts with. */
export const TS_COLUMN = { name: 'ts', type: 'INTEGER', holds: 'time' } as const satisfies LogColumn;

/** Columns a writer fills: every declared column (the store assigns `id`). */
export function columnNames(table: LogTable): string[] {
  return table.columns.map((c) => c.name);
}

/** Columns whose values are the number or a function of it: what a pen-register order is after. */
export function numberColumns(table: LogTable): string[] {
  return table.columns.filter((c) => NUMBER_DERIVED.has(c.holds)).map((c) => c.name);
}

/** Checks a declaration: `ts` first, unique names, a counts table's key and count present. Throws on a mistake in the code. */
export function checkLogTable<const T extends LogTable>(table: T): T {
  const names = columnNames(table);
  const fail = (what: string) => {
    throw new Error(`log table ${table.name}: ${what}`);
  };
  if (!/^[a-z][a-z0-9_]*$/.test(table.name)) fail('not a plain SQL identifier');
  if (names[0] !== 'ts') fail('the first column must be ts');
  if (new Set(names).size !== names.length) fail('a column is declared twice');
  if (names.includes('id')) fail('id is the store’s, not a declared column');
  if (table.kind === 'counts') {
    if (names.at(-1) !== 'count') fail('a counts table ends with count');
    if (table.key.join() !== names.slice(1, -1).join()) fail('the key columns sit between ts and count');
  } else {
    for (const index of table.indexes) for (const c of index) if (!names.includes(c)) fail(`index on unknown column ${c}`);
  }
  return table;
}
