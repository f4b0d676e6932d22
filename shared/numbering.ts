/**
 * Numbering-plan ranges as an operator names them: '+1415555XXXX' (X is any
 * digit), several comma separated. What the hashed design's reversal
 * enumerates (shared/reversal.ts), what a pen-register order's blinded audit
 * counts the anonymity set in, and what the page's hashed trace asks for.
 */
import type { E164 } from './e164.ts';
import { ErrorCode, PcdError } from './errors.ts';

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
