/**
 * The plain design's audit: the exact rows of the target numbers in its
 * declared log (shared/designs/plain.ts PLAIN_LOG): who looked them up,
 * when, from which IP, and what the answer was. Each row carries the
 * requester's email itself, so it is shown against the account as it was
 * when logged.
 */
import path from 'node:path';
import { maskToCapabilities } from '../../shared/capabilities.ts';
import type { E164 } from '../../shared/e164.ts';
import { PLAIN_LOG } from '../../shared/designs/plain.ts';
import { columnNames } from '../../shared/logs.ts';
import { csvRecord, isoTime, rangeText, renderTable, targetsText, warningsText } from '../format.ts';
import { requireTable, withSnapshot, type LogDbRow } from '../image.ts';
import { bounds, rangeOf, type AuditOptions } from '../plan.ts';

export interface PlainRow {
  ts: number;
  target: E164;
  number: E164;
  accountId: number;
  email: string;
  ip: string;
  answer: string[];
}

export interface PlainAudit {
  design: 'plain';
  dataDir: string;
  range: { since: number | null; until: number | null };
  targets: E164[];
  rows: PlainRow[];
  /** Distinct requester accounts among the rows. */
  requesters: number;
  warnings: string[];
}

type PlainDbRow = LogDbRow<typeof PLAIN_LOG>;

/** Orders log rows as they were written: by time, then by id. */
export function byTsThenId<T extends { ts: number; id: number }>(a: T, b: T): number {
  return a.ts - b.ts || a.id - b.id;
}

/** The rows of plain_log for the targets in the range, ordered by time: exactly what the plain design hands over. */
export function auditPlain(dataDir: string, options: AuditOptions): PlainAudit {
  return withSnapshot(dataDir, ({ db }) => {
    const log = PLAIN_LOG.name;
    requireTable(db, log);
    const [since, until] = bounds(options);
    const cols = ['id', ...columnNames(PLAIN_LOG)].join(', ');
    let found: PlainDbRow[];
    if (options.targets.length === 0) {
      found = db.prepare<[number, number], PlainDbRow>(`SELECT ${cols} FROM ${log} WHERE ts >= ? AND ts < ? ORDER BY ts, id`).all(since, until);
    } else {
      const q = db.prepare<[string, number, number], PlainDbRow>(`SELECT ${cols} FROM ${log} WHERE number = ? AND ts >= ? AND ts < ?`);
      found = [...new Set(options.targets)].flatMap((t) => q.all(t, since, until)).sort(byTsThenId);
    }
    const rows = found.map((r) => ({
      ts: r.ts,
      target: r.number as E164,
      number: r.number as E164,
      accountId: r.account_id,
      email: r.email,
      ip: r.ip,
      answer: maskToCapabilities(r.answer),
    }));
    return {
      design: 'plain',
      dataDir: path.resolve(dataDir),
      range: rangeOf(options),
      targets: [...options.targets],
      rows,
      requesters: new Set(rows.map((r) => r.accountId)).size,
      warnings: [],
    };
  });
}

export function plainTable(r: PlainAudit): string {
  return (
    `plain design: what a pen-register order yields\n` +
    `targets: ${targetsText(r.targets)}\nrange:   ${rangeText(r.range)}\n` +
    `${r.rows.length} row(s) from ${r.requesters} requester account(s): each names the number, the requester, the IP, the time and the answer\n\n` +
    renderTable(
      ['time', 'number', 'account', 'email', 'ip', 'answer'],
      r.rows.map((x) => [isoTime(x.ts), x.number, String(x.accountId), x.email, x.ip, x.answer.join('+') || 'sms']),
    ) +
    warningsText(r.warnings)
  );
}

export function plainCsv(r: PlainAudit): string {
  return [
    csvRecord(['ts', 'time', 'target', 'number', 'account_id', 'email', 'ip', 'answer']),
    ...r.rows.map((x) => csvRecord([x.ts, isoTime(x.ts), x.target, x.number, x.accountId, x.email, x.ip, x.answer.join(' ')])),
  ].join('\n');
}
