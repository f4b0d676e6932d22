/**
 * What a pen-register order names, as the audit reads it: the target
 * numbers, the time range, and the numbering-plan range the operator
 * enumerates (hashed) or counts the anonymity set in (blinded). Shared by
 * the CLI (audit/cli.ts), the designs' audits and the workload's operator.
 */
import net from 'node:net';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';

/** Time range in Unix ms: `since <= ts < until`; either end may be open. */
export interface AuditRange {
  since?: number;
  until?: number;
}

export interface AuditOptions extends AuditRange {
  /** Target numbers; empty means every number in the log (the whole graph). */
  targets: readonly E164[];
  /**
   * Accounts the order names (blinded: what the operator can produce about
   * them: token issuance, evaluations paid with the account); empty or
   * absent: every account with a row in the range.
   */
  accounts?: readonly number[];
  /**
   * Addresses the order knows to be OHTTP relays' (`pcd serve --ohttp-relay`):
   * a row from one stands for every client of that relay. The data folder
   * does not record which addresses are relays, so the order has to say.
   */
  relays?: readonly string[];
}

/** The range as SQL bounds: `ts >= since AND ts < until`, open ends as the extreme safe integers. */
export function bounds(r: AuditRange): [number, number] {
  return [r.since ?? Number.MIN_SAFE_INTEGER, r.until ?? Number.MAX_SAFE_INTEGER];
}

/** The range as a result reports it (null: open). */
export function rangeOf(r: AuditRange): { since: number | null; until: number | null } {
  return { since: r.since ?? null, until: r.until ?? null };
}

// ===========================================================================
// Numbering-plan patterns

export interface PlanPattern {
  /** As written, upper-case X: '+1415555XXXX'. */
  pattern: string;
  /** Numbers it spans: 10^(count of X). */
  size: number;
}

/** Largest plan the audit enumerates (10^10 is ~1.5 hours at 2 M hashes/s on one core). */
export const MAX_PLAN_SIZE = 1e10;

/**
 * Parses a numbering-plan range: '+1415555XXXX' (X is any digit), several
 * comma separated. A pattern contained in another one of the list is dropped
 * (it would only be enumerated twice).
 */
export function parsePlan(spec: string): PlanPattern[] {
  const out: PlanPattern[] = [];
  for (const raw of spec.split(',')) {
    const p = raw.trim().replace(/[\s().-]/g, '').toUpperCase();
    if (p === '') continue;
    if (!/^\+[1-9X][0-9X]{6,14}$/.test(p)) {
      throw new PcdError(
        ErrorCode.InvalidField,
        `plan pattern '${raw.trim()}' is not '+' and 7 to 15 digits or X (any digit), the first not 0, e.g. +1415555XXXX`,
      );
    }
    out.push({ pattern: p, size: 10 ** (p.length - p.replaceAll('X', '').length) });
  }
  if (out.length === 0) throw new PcdError(ErrorCode.InvalidField, 'the plan holds no pattern, e.g. +1415555XXXX');
  const kept = out.filter((p, i) => !out.some((q, j) => j !== i && patternCovers(q.pattern, p.pattern) && (!patternCovers(p.pattern, q.pattern) || j < i)));
  const total = kept.reduce((s, p) => s + p.size, 0);
  if (total > MAX_PLAN_SIZE) {
    throw new PcdError(
      ErrorCode.InvalidField,
      `the plan spans ${total.toExponential(1)} numbers; the audit enumerates at most ${MAX_PLAN_SIZE.toExponential(0)} (fix more digits)`,
    );
  }
  return kept;
}

function patternCovers(outer: string, inner: string): boolean {
  if (outer.length !== inner.length) return false;
  for (let i = 0; i < outer.length; i++) if (outer[i] !== 'X' && outer[i] !== inner[i]) return false;
  return true;
}

/** True when `number` is one of the numbers the plan spans. */
export function planContains(plan: readonly PlanPattern[], number: string): boolean {
  return plan.some((p) => p.pattern.length === number.length && [...p.pattern].every((c, i) => c === 'X' || c === number[i]));
}

/** Default hashed plan for a target: its surrounding range of 10^digits numbers, the last `digits` digits as X. */
export function surroundingRange(target: E164, digits = 4): string {
  return target.slice(0, target.length - digits) + 'X'.repeat(digits);
}

export function planSize(plan: readonly PlanPattern[]): number {
  return plan.reduce((s, p) => s + p.size, 0);
}

// ===========================================================================
// Arguments shared by the CLI and tests

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/**
 * A point in time: 'now', a relative age before `now` ('90s', '30m', '12h',
 * '7d', '2w'), or an ISO 8601 date or date-time ('2026-11-01',
 * '2026-11-01T12:00:00Z'). Returns Unix ms.
 */
export function parseTime(input: string, now: number = Date.now()): number {
  const s = input.trim();
  if (s === 'now') return now;
  const rel = /^(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)$/i.exec(s);
  if (rel) return Math.round(now - Number(rel[1]) * UNIT_MS[rel[2]!.toLowerCase()]!);
  if (/^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/i.test(s)) {
    const t = Date.parse(s);
    if (Number.isFinite(t)) return t;
  }
  throw new PcdError(
    ErrorCode.InvalidField,
    `'${input}' is not a time: use ISO 8601 (2026-11-01, 2026-11-01T12:00:00Z), 'now', or an age like 7d, 12h, 30m`,
  );
}

/** Account ids from repeated and/or comma separated arguments: whole numbers from 1. */
export function parseAccounts(values: readonly string[]): number[] {
  const out: number[] = [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const s = part.trim();
      if (s === '') continue;
      if (!/^[1-9][0-9]{0,15}$/.test(s) || !Number.isSafeInteger(Number(s))) {
        throw new PcdError(ErrorCode.InvalidField, `'${s.slice(0, 40)}' is not an account id (a whole number from 1)`);
      }
      out.push(Number(s));
    }
  }
  return [...new Set(out)];
}

/** An address as the server logs it and the audit compares it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as plain IPv4, IPv6 lower-case. */
export function normalizeIp(address: string): string {
  const a = address.trim().toLowerCase();
  return /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a)?.[1] ?? a;
}

/** Relay addresses from repeated and/or comma separated arguments, each an IP address, normalised ({@link normalizeIp}). */
export function parseRelays(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const s = part.trim();
      if (s === '') continue;
      if (net.isIP(s) === 0) throw new PcdError(ErrorCode.InvalidField, `an OHTTP relay is named by its IP address, got '${s.slice(0, 60)}'`);
      out.push(normalizeIp(s));
    }
  }
  return [...new Set(out)];
}

/** Target numbers from repeated and/or comma separated arguments, normalised (PcdError names the bad one). */
export function parseTargets(values: readonly string[], region?: string): E164[] {
  const out: E164[] = [];
  for (const v of values) {
    for (const part of v.split(',')) {
      const s = part.trim();
      if (s === '') continue;
      out.push(normalizeNumber(s, region));
    }
  }
  return [...new Set(out)];
}
