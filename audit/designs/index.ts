/**
 * The audit's design registry: what a pen-register order yields under each
 * design (docs/threat-model.md), computed on the server's real persisted data, one
 * entry per design of the protocol (shared/designs/index.ts DESIGNS). The
 * type checker demands an entry for every design; {@link runAudit} and
 * {@link formatAudit} dispatch through it, and nothing else names designs.
 *
 * - `plain` (plain.ts): the exact rows of the target numbers.
 * - `hashed` (hashed.ts): the same rows, after reversing the logged hashes
 *   by enumerating a numbering-plan range; the rate is measured.
 * - `blinded` (blinded.ts): no row derived from a number (declared, and
 *   checked on the data: linked rows); the target's bucket, its fetches,
 *   the evaluation rows and the anonymity set.
 *
 * Every audit reads the data folder through audit/image.ts (nothing under
 * it is opened for writing) and returns a structured result;
 * {@link formatAudit} renders it. The companion scan (audit/scan/) searches
 * every persisted byte of the data folder for the numbers themselves.
 */
import type { DesignName } from '../../shared/designs/index.ts';
import type { AuditFormat } from '../format.ts';
import type { AuditOptions } from '../plan.ts';
import { auditBlinded, blindedCsv, blindedTable, type BlindedAudit } from './blinded.ts';
import { auditHashed, defaultHashedPlan, hashedCsv, hashedTable, type HashedAudit } from './hashed.ts';
import { auditPlain, plainCsv, plainTable, type PlainAudit } from './plain.ts';

export type AuditResult = PlainAudit | HashedAudit | BlindedAudit;

/** One design's audit: how it runs on a data folder, and how its result reads as a table and as CSV (JSON is the result itself). */
export interface DesignAudit<R extends AuditResult> {
  run(dataDir: string, options: AuditOptions & { plan?: string }): R;
  table(result: R): string;
  csv(result: R): string;
}

type ResultOf<D extends DesignName> = Extract<AuditResult, { design: D }>;

/** Every design's audit: a `Record<DesignName, ...>` with each entry typed by its own result. */
export const DESIGN_AUDITS: { readonly [D in DesignName]: DesignAudit<ResultOf<D>> } = {
  plain: { run: auditPlain, table: plainTable, csv: plainCsv },
  // The plan enumerated defaults to every target's surrounding 10^4 numbers.
  hashed: { run: (dataDir, o) => auditHashed(dataDir, { ...o, plan: o.plan ?? defaultHashedPlan(o.targets) }), table: hashedTable, csv: hashedCsv },
  blinded: { run: auditBlinded, table: blindedTable, csv: blindedCsv },
};

function auditOf<R extends AuditResult>(result: R): DesignAudit<R> {
  return DESIGN_AUDITS[result.design] as unknown as DesignAudit<R>;
}

/** Runs one design's audit; `plan`: hashed, the range enumerated (default: the targets' surrounding ranges); blinded, the plan the anonymity set is counted in. */
export function runAudit(dataDir: string, design: DesignName, options: AuditOptions & { plan?: string }): AuditResult {
  return DESIGN_AUDITS[design].run(dataDir, options);
}

/** Renders an audit result: 'table' (aligned, for humans), 'csv' (rows with a header) or 'json'. */
export function formatAudit(result: AuditResult, format: AuditFormat): string {
  if (format === 'json') return JSON.stringify(result, null, 2);
  const audit = auditOf(result);
  return format === 'csv' ? audit.csv(result) : audit.table(result);
}
