/**
 * What every table and chart of a run says about the run itself: the
 * machine, the date, the commit and whether the tree was clean, and, for
 * anything but a full run from a clean commit, a label that travels with
 * each table and chart ("quick run: small sizes, not for citation", "dirty
 * tree"), so that a figure cut out of the report still says what it is.
 */
import { describeTree } from './machine.ts';
import type { BenchResults } from './results.ts';
import { formatBytes } from './stats.ts';

export const PROFILE_LABELS: Record<BenchResults['profile'], string | undefined> = {
  full: undefined,
  quick: 'quick run: small sizes, not for citation',
  tiny: 'tiny run: smoke-test sizes, not for citation',
};

export const DIRTY_LABEL = 'dirty tree: uncommitted changes measured';
export const UNKNOWN_TREE_LABEL = 'tree state unknown';

/** The labels a run carries: its profile when not full, a dirty or unknown tree. */
export function runLabels(r: Pick<BenchResults, 'profile' | 'tree'>): string[] {
  const out: string[] = [];
  const profile = PROFILE_LABELS[r.profile];
  if (profile) out.push(profile);
  if (r.tree?.dirty === true) out.push(DIRTY_LABEL);
  else if (r.tree?.dirty === undefined) out.push(UNKNOWN_TREE_LABEL);
  return out;
}

/** ` (quick run: small sizes, not for citation)`, or '' for a full run from a clean commit. */
export function titleSuffix(r: Pick<BenchResults, 'profile' | 'tree'>): string {
  const labels = runLabels(r);
  return labels.length > 0 ? ` (${labels.join('; ')})` : '';
}

export function machineLine(r: BenchResults): string {
  const m = r.machine;
  return `${m.cpuModel}, ${m.cores} cores${m.cpuMHz ? ` @ ${m.cpuMHz} MHz` : ''}, ${formatBytes(m.memoryBytes)} RAM, ${m.os} ${m.arch}, Node ${m.node} (V8 ${m.v8})`;
}

/** The machine and run in one short line, for a chart's subtitle. */
export function runLine(r: BenchResults): string {
  const m = r.machine;
  return `${m.cpuModel}, ${m.cores} cores, Node ${m.node}; ${r.profile} profile, ${r.date.slice(0, 10)}; ${describeTree(r.tree)}`;
}
