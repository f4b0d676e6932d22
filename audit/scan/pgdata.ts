/**
 * The raw scan of a Postgres data directory (`pcd audit --pg-data DIR`):
 * the shared store's counterpart of the data folder scan (scan.ts). Every
 * regular file under the cluster's directory is searched for every form of
 * the numbers (forms.ts, the multi-pattern search of search.ts): the
 * relations' files under base/ and global/, the write-ahead log under
 * pg_wal/, the commit log, the statistics, the server's own log files if
 * it writes them there, anything else.
 *
 * What it does not do: attribute a hit to a design. Postgres pages are not
 * SQLite's (no dbstat over them); a hit is placed by its file only: a
 * relation file is named by its database and relfilenode (with the
 * relation's name when a store URL is given: `relations`), a WAL segment
 * by its name. Tags and OPRF outputs are not searched: the blinded design
 * does not run on a shared store, and its keys would be in a node's data
 * folder anyway.
 *
 * Reads only; it does not need Postgres to run, and may run beside it
 * (a file that goes away meanwhile is a warning). Pages still in shared
 * buffers reach the relation files at the next checkpoint: the WAL holds
 * them before that.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { csvRecord, renderTable, type AuditFormat } from '../format.ts';
import { formRank, numberForms } from './forms.ts';
import { outermostHits, type PatternMeta } from './scan.ts';
import { MultiPatternSearcher, type Boundary } from './search.ts';

/** What a file of a Postgres data directory is, by its path. */
export function pgFileKind(rel: string): string {
  const parts = rel.split(path.sep);
  const top = parts[0]!;
  const name = parts[parts.length - 1]!;
  const fork = /^(\d+)(?:_(fsm|vm|init))?(?:\.(\d+))?$/.exec(name);
  if (top === 'base' && parts.length === 3 && fork) {
    return fork[2] ? `relation ${fork[2]} map (database ${parts[1]}, relfilenode ${fork[1]})` : `relation (database ${parts[1]}, relfilenode ${fork[1]}${fork[3] ? `, segment ${fork[3]}` : ''})`;
  }
  if (top === 'global' && parts.length === 2 && fork) return fork[2] ? `shared catalog ${fork[2]} map (relfilenode ${fork[1]})` : `shared catalog (relfilenode ${fork[1]})`;
  if (name === 'pg_filenode.map') return 'relation map';
  if (name === 'pg_internal.init') return 'relation cache';
  if (name === 'pg_control') return 'control file';
  if (name === 'PG_VERSION') return 'version';
  if (top === 'pg_tblspc') return 'relation in a tablespace';
  if (top === 'pg_wal') return /^[0-9A-F]{24}$/.test(name) ? 'WAL segment' : parts[1] === 'archive_status' ? 'WAL archive status' : 'WAL (other)';
  const known: Record<string, string> = {
    pg_xact: 'commit log',
    pg_multixact: 'multixact',
    pg_subtrans: 'subtransactions',
    pg_stat: 'statistics',
    pg_stat_tmp: 'statistics (temporary)',
    pg_logical: 'logical decoding',
    pg_replslot: 'replication slot',
    pg_snapshots: 'exported snapshots',
    pg_serial: 'serializable transactions',
    pg_twophase: 'prepared transactions',
    pg_notify: 'LISTEN/NOTIFY queue',
    pg_commit_ts: 'commit timestamps',
    pg_dynshmem: 'dynamic shared memory',
    log: 'server log',
    pg_log: 'server log',
  };
  if (parts.length > 1 && known[top]) return known[top]!;
  return parts.length === 1 ? 'cluster file' : 'other';
}

/** Where a relation file's hits are: the relation's name per `<database oid>/<relfilenode>` (base/) or `global/<relfilenode>`. */
export type RelationNames = ReadonlyMap<string, string>;

function relationOf(rel: string, names: RelationNames | undefined): string | undefined {
  if (!names) return undefined;
  const parts = rel.split(path.sep);
  const node = /^(\d+)/.exec(parts[parts.length - 1]!)?.[1];
  if (!node) return undefined;
  if (parts[0] === 'base' && parts.length === 3) return names.get(`${parts[1]}/${node}`);
  if (parts[0] === 'global' && parts.length === 2) return names.get(`global/${node}`);
  return undefined;
}

export interface PgScanPlace {
  /** Path relative to the data directory. */
  file: string;
  kind: string;
  /** The relation's name, when known (a store URL was given). */
  relation?: string;
  /** Hits in this file, and their forms. */
  hits: number;
  forms: string[];
}

export interface PgScanNumber {
  number: E164;
  /** Forms found anywhere. */
  forms: string[];
  /** Files with a hit. */
  files: number;
  places: PgScanPlace[];
}

export interface PgScanResult {
  pgData: string;
  files: number;
  bytes: number;
  /** Files per kind (WAL segment, relation, ...). */
  kinds: Record<string, number>;
  forms: string[];
  numbers: PgScanNumber[];
  searchMs: number;
  mbPerSecond: number;
  /** What the scan does not say (no attribution to designs). */
  notes: string[];
  warnings: string[];
}

function listFiles(dir: string, root: string, warnings: string[]): string[] {
  const out: string[] = [];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    warnings.push(`${path.relative(root, dir) || '.'}: not listed (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    return out;
  }
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const abs = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(abs, root, warnings));
    else if (entry.isFile()) out.push(abs);
    else if (entry.isSymbolicLink() && path.relative(root, dir) === 'pg_tblspc') {
      warnings.push(`${path.relative(root, abs)}: a tablespace elsewhere (symbolic link), not searched: scan its folder too`);
    } else if (entry.isSymbolicLink() && path.relative(root, abs) === 'pg_wal') {
      warnings.push('pg_wal is a symbolic link (the WAL elsewhere), not followed: scan its folder too');
    }
  }
  return out;
}

export const PG_SCAN_NOTE =
  "no attribution to designs: Postgres pages are not SQLite's, so a hit is placed by its file only (a relation file by database oid and relfilenode, " +
  'its name with --store; a WAL segment by its name); the query logs, the accounts and the directory are relations of the same cluster';

/** Searches every file under the Postgres data directory `pgData` for every form of `numbers` (module header). */
export function scanPgDataDir(pgData: string, numbers: readonly E164[], options: { national?: boolean; chunkBytes?: number; relations?: RelationNames } = {}): PgScanResult {
  if (!fs.existsSync(path.join(pgData, 'PG_VERSION'))) {
    throw new PcdError(ErrorCode.NotFound, `${pgData} is not a Postgres data directory (no PG_VERSION in it): --pg-data takes the cluster's folder (SHOW data_directory)`);
  }
  const warnings: string[] = [];
  const unique = [...new Set(numbers)];
  const patterns: Uint8Array[] = [];
  const boundaries: Boundary[] = [];
  const meta: PatternMeta[] = [];
  const formNames = new Set<string>();
  unique.forEach((number, i) => {
    for (const f of numberForms(number, { national: options.national })) {
      patterns.push(f.bytes);
      boundaries.push(f.boundary);
      meta.push({ number: i, form: f.form, length: f.bytes.length });
      formNames.add(f.form);
    }
  });
  const searcher = new MultiPatternSearcher(patterns, boundaries);
  const places: Map<string, { hits: number; forms: Set<string> }>[] = unique.map(() => new Map());
  const kinds: Record<string, number> = {};
  let files = 0;
  let bytes = 0;
  let searchMs = 0;
  for (const abs of listFiles(pgData, pgData, warnings)) {
    const rel = path.relative(pgData, abs);
    const raw: { pattern: number; offset: number }[] = [];
    const t0 = performance.now();
    try {
      // Most files of a cluster are small (a relation's 8 KB, its maps): a buffer of the file's size, not 16 MiB per file.
      const chunk = options.chunkBytes ?? Math.min(16 << 20, fs.statSync(abs).size);
      bytes += searcher.searchFile(abs, (pattern, offset) => raw.push({ pattern, offset }), chunk);
    } catch (e) {
      // A running cluster removes and recycles files (WAL segments, temporary statistics) under the scan.
      warnings.push(`${rel}: not searched (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      continue;
    } finally {
      searchMs += performance.now() - t0;
    }
    files++;
    const kind = pgFileKind(rel).replace(/ \(.*\)$/, '');
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    for (const h of outermostHits(raw, meta)) {
      const m = meta[h.pattern]!;
      const at = places[m.number]!;
      const p = at.get(rel) ?? { hits: 0, forms: new Set<string>() };
      p.hits++;
      p.forms.add(m.form);
      at.set(rel, p);
    }
  }
  const byRank = (a: string, b: string) => formRank(a) - formRank(b);
  return {
    pgData: path.resolve(pgData),
    files,
    bytes,
    kinds,
    forms: [...formNames].sort(byRank),
    numbers: unique.map((number, i) => {
      const at = [...places[i]!].map(([file, p]): PgScanPlace => {
        const relation = relationOf(file, options.relations);
        return { file, kind: pgFileKind(file), ...(relation ? { relation } : {}), hits: p.hits, forms: [...p.forms].sort(byRank) };
      });
      return { number, forms: [...new Set(at.flatMap((p) => p.forms))].sort(byRank), files: at.length, places: at };
    }),
    searchMs: Math.round(searchMs * 1000) / 1000,
    mbPerSecond: searchMs > 0 ? Math.round((bytes / 1e6 / (searchMs / 1000)) * 10) / 10 : 0,
    notes: [PG_SCAN_NOTE],
    warnings,
  };
}

export function formatPgScan(r: PgScanResult, format: AuditFormat): string {
  if (format === 'json') return JSON.stringify(r, null, 2);
  if (format === 'csv') {
    const lines = [csvRecord(['number', 'file', 'kind', 'relation', 'hits', 'forms'])];
    for (const n of r.numbers) {
      if (n.places.length === 0) lines.push(csvRecord([n.number, '', '', '', 0, '']));
      for (const p of n.places) lines.push(csvRecord([n.number, p.file, p.kind, p.relation, p.hits, p.forms.join(' ')]));
    }
    return lines.join('\n');
  }
  const found = r.numbers.filter((n) => n.files > 0);
  const parts = [
    `scan of the Postgres data directory ${r.pgData}: ${r.numbers.length} number(s), ${found.length} found; ` +
      `${r.files} file(s), ${(r.bytes / 1e6).toFixed(1)} MB searched in ${(r.searchMs / 1000).toFixed(2)} s (${r.mbPerSecond} MB/s)`,
    `files: ${Object.entries(r.kinds)
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${n} ${k}`)
      .join(', ')}`,
    `forms: ${r.forms.join(' ')}`,
    `note: ${r.notes.join('; ')}`,
    renderTable(
      ['number', 'forms found', 'files', 'WAL segments', 'relation files'],
      r.numbers.map((n) => [
        n.number,
        n.forms.join(' ') || '-',
        String(n.files),
        String(n.places.filter((p) => p.kind === 'WAL segment').length),
        String(n.places.filter((p) => p.kind.startsWith('relation') || p.kind.startsWith('shared catalog')).length),
      ]),
    ),
  ];
  if (found.length) {
    parts.push(
      renderTable(
        ['number', 'file', 'kind', 'hits', 'forms'],
        found.flatMap((n) => n.places.map((p) => [n.number, p.file, p.relation ? `${p.kind}: ${p.relation}` : p.kind, String(p.hits), p.forms.join(' ')])),
      ),
    );
  }
  const none = r.numbers.filter((n) => n.files === 0);
  if (none.length) parts.push(`no trace anywhere in the data directory: ${none.map((n) => n.number).join(', ')}`);
  if (r.warnings.length) parts.push(r.warnings.map((w) => `warning: ${w}`).join('\n'));
  return parts.join('\n\n');
}
