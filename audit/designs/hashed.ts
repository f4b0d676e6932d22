/**
 * The hashed design's audit: the same rows as plain, after reversing the
 * SHA-256 hashes its declared log holds (shared/designs/hashed.ts
 * HASHED_LOG) by enumerating a numbering-plan range. The rate is measured:
 * it is the point.
 */
import path from 'node:path';
import { maskToCapabilities } from '../../shared/capabilities.ts';
import type { E164 } from '../../shared/e164.ts';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { HASHED_LOG, hashNumber } from '../../shared/designs/hashed.ts';
import { columnNames } from '../../shared/logs.ts';
import { csvRecord, fmtCount, isoTime, rangeText, renderTable, targetsText, warningsText } from '../format.ts';
import { requireTable, withSnapshot, type LogDbRow } from '../image.ts';
import { parsePlan, planContains, surroundingRange } from '../../shared/numbering.ts';
import { reverseHashes } from '../../shared/reversal.ts';
import { bounds, rangeOf, type AuditOptions } from '../plan.ts';
import { byTsThenId, type PlainRow } from './plain.ts';

export interface Reversal {
  plan: string[];
  /** Numbers of the plan hashed. */
  candidates: number;
  /** Distinct hashes in hashed_log within the range. */
  distinctHashes: number;
  /** Of those, how many the enumeration turned back into numbers. */
  reversed: number;
  /** Enumeration time (hashing and matching), ms. */
  ms: number;
  /** Candidates hashed per second, one core. */
  ratePerSecond: number;
}

export interface HashedRow extends PlainRow {
  /** SHA-256 as logged, hex. */
  hash: string;
  /** 'enumeration': reversed by hashing the plan; 'target-hash': the target is outside the plan, matched by hashing it. */
  via: 'enumeration' | 'target-hash';
}

export interface HashedTarget {
  target: E164;
  hash: string;
  inPlan: boolean;
  reversed: boolean;
  rows: number;
}

export interface HashedAudit {
  design: 'hashed';
  dataDir: string;
  range: { since: number | null; until: number | null };
  targets: HashedTarget[];
  reversal: Reversal;
  rows: HashedRow[];
  requesters: number;
  warnings: string[];
}

type HashedDbRow = LogDbRow<typeof HASHED_LOG>;

/**
 * The hashed design's answer to the order: every distinct hash logged in the
 * range is matched against SHA-256 of every number of `plan`, and the rows
 * of the targets come back as numbers. Without targets, every reversed row.
 */
export function auditHashed(dataDir: string, options: AuditOptions & { plan: string }): HashedAudit {
  const plan = parsePlan(options.plan);
  return withSnapshot(dataDir, ({ db }) => {
    const log = HASHED_LOG.name;
    requireTable(db, log);
    const [since, until] = bounds(options);
    const distinctHashes = function* () {
      const q = db.prepare<[number, number], { hash: Buffer }>(`SELECT DISTINCT hash FROM ${log} WHERE ts >= ? AND ts < ?`);
      for (const r of q.iterate(since, until)) yield r.hash;
    };
    const { numbers, candidates, distinct, ms } = reverseHashes(distinctHashes(), plan);
    const reversal: Reversal = {
      plan: plan.map((p) => p.pattern),
      candidates,
      distinctHashes: distinct,
      reversed: numbers.size,
      ms: Math.round(ms * 1000) / 1000,
      ratePerSecond: ms > 0 ? Math.round((candidates / ms) * 1000) : 0,
    };
    const warnings: string[] = [];
    const cols = ['id', ...columnNames(HASHED_LOG)].join(', ');
    const toRow = (r: HashedDbRow, target: E164, via: HashedRow['via']): HashedRow => ({
      ts: r.ts,
      target,
      number: target,
      accountId: r.account_id,
      email: r.email,
      ip: r.ip,
      answer: maskToCapabilities(r.answer),
      hash: r.hash.toString('hex'),
      via,
    });

    const targets: HashedTarget[] = [];
    let rows: HashedRow[];
    if (options.targets.length === 0) {
      const all = db.prepare<[number, number], HashedDbRow>(`SELECT ${cols} FROM ${log} WHERE ts >= ? AND ts < ? ORDER BY ts, id`);
      rows = [];
      for (const r of all.iterate(since, until)) {
        const n = numbers.get(r.hash.toString('hex'));
        if (n !== undefined) rows.push(toRow(r, n, 'enumeration'));
      }
    } else {
      const byHash = db.prepare<[Buffer, number, number], HashedDbRow>(`SELECT ${cols} FROM ${log} WHERE hash = ? AND ts >= ? AND ts < ?`);
      const found: (HashedRow & { id: number })[] = [];
      for (const target of new Set(options.targets)) {
        const hash = hashNumber(target);
        const hex = Buffer.from(hash).toString('hex');
        const inPlan = planContains(plan, target);
        const reversed = numbers.get(hex) === target;
        const matched = byHash.all(Buffer.from(hash), since, until);
        for (const r of matched) found.push({ ...toRow(r, target, reversed ? 'enumeration' : 'target-hash'), id: r.id });
        targets.push({ target, hash: hex, inPlan, reversed, rows: matched.length });
        if (!inPlan) {
          warnings.push(
            `${target} is outside the plan ${reversal.plan.join(',')}: its ${matched.length} row(s) were matched by hashing the target itself; ` +
              `enumerating a range that covers it (e.g. ${surroundingRange(target)}) reverses them as well`,
          );
        }
      }
      rows = found.sort(byTsThenId).map(({ id: _id, ...r }) => r);
    }
    if (reversal.reversed < reversal.distinctHashes) {
      warnings.push(
        `${reversal.distinctHashes - reversal.reversed} of ${reversal.distinctHashes} distinct hashes are outside the plan and stay unreversed here; a larger plan reverses them too`,
      );
    }
    return {
      design: 'hashed',
      dataDir: path.resolve(dataDir),
      range: rangeOf(options),
      targets,
      reversal,
      rows,
      requesters: new Set(rows.map((r) => r.accountId)).size,
      warnings,
    };
  });
}

/** The hashed plan used when none is given: every target's surrounding 10^4 range (last four digits as X). */
export function defaultHashedPlan(targets: readonly E164[]): string {
  if (targets.length === 0) {
    throw new PcdError(ErrorCode.InvalidField, 'the hashed audit needs --plan (a numbering-plan range such as +1415555XXXX) when no --target is given');
  }
  return [...new Set(targets.map((t) => surroundingRange(t)))].join(',');
}

export function hashedTable(r: HashedAudit): string {
  const v = r.reversal;
  const head =
    `hashed design: what a pen-register order yields after reversing the hashes\n` +
    `targets: ${targetsText(r.targets.map((t) => t.target))}\nrange:   ${rangeText(r.range)}\n` +
    `reversal: plan ${v.plan.join(',')}: ${fmtCount(v.candidates)} candidates hashed in ${(v.ms / 1000).toFixed(3)} s ` +
    `(${fmtCount(v.ratePerSecond)} hashes/s, one core); ${v.reversed} of ${v.distinctHashes} distinct logged hashes reversed\n` +
    `${r.rows.length} row(s) from ${r.requesters} requester account(s)\n\n`;
  return (
    head +
    renderTable(
      ['time', 'number', 'account', 'email', 'ip', 'answer', 'via', 'hash'],
      r.rows.map((x) => [isoTime(x.ts), x.number, String(x.accountId), x.email, x.ip, x.answer.join('+') || 'sms', x.via, x.hash.slice(0, 16) + '…']),
    ) +
    warningsText(r.warnings)
  );
}

export function hashedCsv(r: HashedAudit): string {
  return [
    csvRecord(['ts', 'time', 'target', 'number', 'account_id', 'email', 'ip', 'answer', 'hash', 'via']),
    ...r.rows.map((x) => csvRecord([x.ts, isoTime(x.ts), x.target, x.number, x.accountId, x.email, x.ip, x.answer.join(' '), x.hash, x.via])),
  ].join('\n');
}
