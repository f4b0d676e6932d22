/**
 * The scan (`pcd audit --scan`): searches every persisted byte of a data
 * folder for phone numbers in every form a server could have stored them,
 * and says which design each hit belongs to. It is the evidence behind
 * docs/threat-model.md: a number that was only looked up through the blinded design
 * appears nowhere, not as text, not hashed, not as a tag; registered numbers
 * are in the directory by necessity.
 *
 * - What is searched for: every form of every number (audit/scan/forms.ts:
 *   text, digits, national number, hashes, and tags and OPRF outputs of the
 *   epochs whose key is on disk).
 * - Where: every regular file under the folder, recursively: the SQLite file
 *   and its -wal and -shm, the key files (OPRF, token, OHTTP), epoch bucket
 *   caches, anything else (audit/scan/pages.ts DATA_FILES).
 * - How: one pass per file whatever the number of patterns
 *   (audit/scan/search.ts).
 * - Whose: each hit attributed to a design by the page it is on
 *   (audit/scan/pages.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { E164 } from '../../shared/e164.ts';
import { CONTACTS_DIR } from '../../disk/files.ts';
import { readEpochKeys } from '../../disk/keyfile.ts';
import { csvRecord, renderTable, type AuditFormat } from '../format.ts';
import { openSnapshot } from '../image.ts';
import { formRank, numberForms, tagEpochsOf } from './forms.ts';
import { attributorFor, dataFileOf, SCAN_DESIGNS, type ScanDesign } from './pages.ts';
import { MultiPatternSearcher, type Boundary } from './search.ts';

export { SCAN_DESIGNS, type ScanDesign };

export interface ScanHit {
  /** Path relative to the data folder. */
  file: string;
  offset: number;
  length: number;
  form: string;
  /** e.g. 'plain', 'wal:hashed', 'free-page', 'blinded', 'other:admin-token'. */
  attributedTo: string;
  design: ScanDesign;
  /** SQLite table or index owning the page, when in the database or its WAL. */
  table?: string;
  page?: number;
  /** In a WAL frame past the valid chain: a leftover of an earlier WAL generation (what a checkpoint that does not truncate leaves). */
  staleWalFrame?: true;
}

export interface ScanNumber {
  number: E164;
  /** In the `numbers` table: in the directory by necessity. */
  registered: boolean;
  hits: ScanHit[];
}

export interface ScanSummaryRow {
  design: ScanDesign;
  registeredNumbers: number;
  registeredHits: number;
  /** Numbers not in the directory (only looked up, or never seen) found here. */
  unregisteredNumbers: number;
  unregisteredHits: number;
}

export interface ScanResult {
  dataDir: string;
  files: { file: string; bytes: number; kind: string }[];
  forms: string[];
  /** Epochs in the database, and whether their tags could be searched (key on disk). */
  epochs: { epoch: number; mode: string; tagBytes: number; keyOnDisk: boolean }[];
  numbers: ScanNumber[];
  summary: ScanSummaryRow[];
  bytes: number;
  /** Time of the byte search alone, and its throughput. */
  searchMs: number;
  mbPerSecond: number;
  /** Whole scan, pattern derivation (tags) and attribution included. */
  totalMs: number;
  warnings: string[];
}

export interface ScanOptions {
  /** Also search national significant numbers of 7 digits or more (default true). */
  national?: boolean;
  /** Bytes read per chunk (default 16 MiB). */
  chunkBytes?: number;
  /** Epoch keys to derive tags with (default: the data folder's key file). */
  keys?: ReadonlyMap<number, Uint8Array>;
}

function listFiles(dir: string, warnings: string[], root = dir): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const abs = path.join(dir, entry.name);
    // <data>/contacts/, where pcd seed and pcd start write contact lists (server/seed.ts): client-side data, skipped.
    if (dir === root && entry.name === CONTACTS_DIR && entry.isDirectory()) {
      warnings.push(`${CONTACTS_DIR}/: the synthetic contact lists and requester tokens of pcd seed and pcd start (a phone's data, not the server's), not searched`);
      continue;
    }
    if (entry.isDirectory()) out.push(...listFiles(abs, warnings, root));
    else if (entry.isFile()) out.push(abs);
    else warnings.push(`${path.relative(root, abs)}: not a regular file (${entry.isSymbolicLink() ? 'symbolic link' : 'special file'}), not searched`);
  }
  return out;
}

function fileKind(rel: string): string {
  return dataFileOf(rel).kind;
}

// ===========================================================================
// The scan

/** What a searched pattern is: the index of its number, its form, its length. */
export interface PatternMeta {
  number: number;
  form: string;
  length: number;
}

/**
 * The hits of one file without those inside a longer hit of the same
 * number (the digits inside the E.164 text): the same occurrence.
 */
export function outermostHits<H extends { pattern: number; offset: number }>(raw: readonly H[], meta: readonly PatternMeta[]): H[] {
  const perNumber = new Map<number, H[]>();
  for (const h of raw) {
    const n = meta[h.pattern]!.number;
    const list = perNumber.get(n);
    if (list) list.push(h);
    else perNumber.set(n, [h]);
  }
  const out: H[] = [];
  for (const list of perNumber.values()) {
    for (const h of list) {
      const m = meta[h.pattern]!;
      const inside = list.some((o) => {
        const om = meta[o.pattern]!;
        return o !== h && om.length > m.length && o.offset <= h.offset && h.offset + m.length <= o.offset + om.length;
      });
      if (!inside) out.push(h);
    }
  }
  return out;
}

/**
 * Searches every file under `dataDir` for every form of every number and
 * attributes each hit. Reads only; opens nothing for writing.
 */
export function scanDataFolder(dataDir: string, numbers: readonly E164[], options: ScanOptions = {}): ScanResult {
  const started = performance.now();
  const warnings: string[] = [];
  const unique = [...new Set(numbers)];

  // The directory and the epochs, from the database as a reader sees it.
  const snap = openSnapshot(dataDir);
  let registered: boolean[];
  let epochRows: { epoch: number; mode: string; tag_bytes: number }[];
  try {
    const q = snap.db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM numbers WHERE number = ?');
    registered = unique.map((n) => q.get(n)!.n > 0);
    epochRows = snap.db.prepare<[], { epoch: number; mode: string; tag_bytes: number }>('SELECT epoch, mode, tag_bytes FROM epochs ORDER BY epoch').all();
  } finally {
    snap.close();
  }
  let keys: ReadonlyMap<number, Uint8Array>;
  if (options.keys) keys = options.keys;
  else {
    try {
      keys = readEpochKeys(dataDir);
    } catch (e) {
      keys = new Map();
      warnings.push(`the key file could not be read (${(e as Error).message}): no tag was searched`);
    }
  }
  const tagEpochs = tagEpochsOf(
    epochRows.map((r) => ({ epoch: r.epoch, mode: r.mode, tagBytes: r.tag_bytes })),
    keys,
    warnings,
  );
  for (const e of tagEpochs) {
    if (e.tagBytes < 8) {
      warnings.push(`epoch ${e.epoch} has ${e.tagBytes}-byte tags: a ${e.tagBytes}-byte string occurs in random bytes with probability ~(bytes searched)/2^${8 * e.tagBytes}, so a tag-e${e.epoch}-raw hit alone is weak evidence`);
    }
  }
  for (const k of keys.keys()) {
    if (!epochRows.some((r) => r.epoch === k)) warnings.push(`the key file holds a key for epoch ${k}, which the database does not list: its tags were not searched`);
  }

  const patterns: Uint8Array[] = [];
  const boundaries: Boundary[] = [];
  const meta: PatternMeta[] = [];
  const formNames = new Set<string>();
  try {
    unique.forEach((number, i) => {
      for (const f of numberForms(number, { national: options.national, epochs: tagEpochs })) {
        patterns.push(f.bytes);
        boundaries.push(f.boundary);
        meta.push({ number: i, form: f.form, length: f.bytes.length });
        formNames.add(f.form.replace(/-e\d+-/, '-eN-'));
      }
    });
  } finally {
    // Keys this scan read itself are needed for the patterns only; keys passed in are the caller's to zero.
    if (!options.keys) for (const sk of keys.values()) sk.fill(0);
  }
  const searcher = new MultiPatternSearcher(patterns, boundaries);

  const hits: ScanHit[][] = unique.map(() => []);
  const files: ScanResult['files'] = [];
  let bytes = 0;
  let searchMs = 0;
  for (const abs of listFiles(dataDir, warnings)) {
    const rel = path.relative(dataDir, abs);
    const raw: { pattern: number; offset: number }[] = [];
    const t0 = performance.now();
    const size = searcher.searchFile(abs, (pattern, offset) => raw.push({ pattern, offset }), options.chunkBytes);
    searchMs += performance.now() - t0;
    bytes += size;
    files.push({ file: rel, bytes: size, kind: fileKind(rel) });
    if (raw.length === 0) continue;
    const attribute = attributorFor(abs, rel, warnings);
    for (const h of outermostHits(raw, meta)) {
      const m = meta[h.pattern]!;
      hits[m.number]!.push({ file: rel, offset: h.offset, length: m.length, form: m.form, ...attribute(h.offset) });
    }
  }

  const result: ScanNumber[] = unique.map((number, i) => ({
    number,
    registered: registered[i]!,
    hits: hits[i]!.sort((a, b) => a.file.localeCompare(b.file) || a.offset - b.offset),
  }));
  return {
    dataDir: path.resolve(dataDir),
    files,
    forms: [...formNames].sort((a, b) => formRank(a) - formRank(b)),
    epochs: epochRows.map((r) => ({ epoch: r.epoch, mode: r.mode, tagBytes: r.tag_bytes, keyOnDisk: keys.has(r.epoch) })),
    numbers: result,
    summary: summarize(result),
    bytes,
    searchMs: Math.round(searchMs * 1000) / 1000,
    mbPerSecond: searchMs > 0 ? Math.round((bytes / 1e6 / (searchMs / 1000)) * 10) / 10 : 0,
    totalMs: Math.round((performance.now() - started) * 1000) / 1000,
    warnings,
  };
}

/** Hits per design, registered numbers apart from the rest. */
export function summarize(numbers: readonly ScanNumber[]): ScanSummaryRow[] {
  return SCAN_DESIGNS.map((design) => {
    const row: ScanSummaryRow = { design, registeredNumbers: 0, registeredHits: 0, unregisteredNumbers: 0, unregisteredHits: 0 };
    for (const n of numbers) {
      const k = n.hits.filter((h) => h.design === design).length;
      if (k === 0) continue;
      if (n.registered) {
        row.registeredNumbers++;
        row.registeredHits += k;
      } else {
        row.unregisteredNumbers++;
        row.unregisteredHits += k;
      }
    }
    return row;
  });
}

// ===========================================================================
// Formatting

export function formatScan(r: ScanResult, format: AuditFormat): string {
  if (format === 'json') return JSON.stringify(r, null, 2);
  if (format === 'csv') {
    const lines = [csvRecord(['number', 'registered', 'file', 'offset', 'length', 'form', 'attributed_to', 'design', 'table', 'page'])];
    for (const n of r.numbers) {
      if (n.hits.length === 0) lines.push(csvRecord([n.number, n.registered, '', '', '', '', '', '', '', '']));
      for (const h of n.hits) lines.push(csvRecord([n.number, n.registered, h.file, h.offset, h.length, h.form, h.attributedTo, h.design, h.table, h.page]));
    }
    return lines.join('\n');
  }
  const reg = r.numbers.filter((n) => n.registered).length;
  const parts: string[] = [
    `scan of ${r.dataDir}: ${r.numbers.length} number(s) (${reg} registered, ${r.numbers.length - reg} not), ` +
      `${r.files.length} file(s), ${(r.bytes / 1e6).toFixed(1)} MB searched in ${(r.searchMs / 1000).toFixed(2)} s (${r.mbPerSecond} MB/s)`,
    `forms: ${r.forms.join(' ')}`,
    `epochs: ${r.epochs.length ? r.epochs.map((e) => `${e.epoch} (${e.keyOnDisk ? 'key on disk: tags searched' : 'key destroyed: tags unlinkable'})`).join(', ') : 'none'}`,
    renderTable(
      ['file', 'kind', 'bytes'],
      r.files.map((f) => [f.file, f.kind, String(f.bytes)]),
    ),
    'hits per design (registered numbers are in the directory, and in blinded bucket caches as tags, by necessity):\n' +
      renderTable(
        ['design', 'registered numbers', 'hits', 'numbers not registered', 'hits'],
        r.summary.map((s) => [s.design, String(s.registeredNumbers), String(s.registeredHits), String(s.unregisteredNumbers), String(s.unregisteredHits)]),
      ),
  ];
  const found = r.numbers.filter((n) => n.hits.length > 0);
  if (found.length) {
    parts.push(
      renderTable(
        ['number', 'registered', 'file', 'offset', 'form', 'attributed to', 'table', 'page'],
        found.flatMap((n) => n.hits.map((h) => [n.number, n.registered ? 'yes' : 'no', h.file, String(h.offset), h.form, h.attributedTo, h.table ?? '', h.page === undefined ? '' : String(h.page)])),
      ),
    );
  }
  const none = r.numbers.filter((n) => n.hits.length === 0);
  if (none.length) parts.push(`no trace anywhere in the data folder: ${none.map((n) => n.number).join(', ')}`);
  if (r.warnings.length) parts.push(r.warnings.map((w) => `warning: ${w}`).join('\n'));
  return parts.join('\n\n');
}
