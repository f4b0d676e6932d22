/**
 * What a pen-register order names, as the audit reads it: the target
 * numbers, the accounts, the relays and the time range, and the parsers of
 * the command's arguments for them. The numbering-plan range the operator
 * enumerates (hashed) or counts the anonymity set in (blinded) is
 * shared/numbering.ts. Used by the command (bin/commands/audit.ts) and the
 * designs' audits.
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
