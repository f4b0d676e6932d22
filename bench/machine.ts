/**
 * What a result is worth without: the machine it was measured on, the
 * versions of everything in the measured path, and the state of the tree.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface MachineInfo {
  hostname: string;
  cpuModel: string;
  /** Logical cores Node may use (os.availableParallelism). */
  cores: number;
  cpuMHz: number | undefined;
  memoryBytes: number;
  os: string;
  arch: string;
  node: string;
  v8: string;
  /** 1, 5, 15 minute load averages when the run started: the machines are shared. */
  loadavgAtStart: number[];
  /** The same at the end of the run. */
  loadavgAtEnd?: number[];
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism?.() ?? cpus.length,
    cpuMHz: cpus[0]?.speed || undefined,
    memoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()}${osPrettyName()}`,
    arch: os.arch(),
    node: process.version,
    v8: process.versions.v8,
    loadavgAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

function osPrettyName(): string {
  try {
    const m = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(fs.readFileSync('/etc/os-release', 'utf8'));
    return m ? ` (${m[1]})` : '';
  } catch {
    return '';
  }
}

/** Packages in the measured path; the version installed, read from node_modules. */
export const MEASURED_PACKAGES = [
  '@noble/curves',
  '@noble/hashes',
  'libsodium-wrappers-sumo',
  '@cloudflare/privacypass-ts',
  '@cloudflare/blindrsa-ts',
  'express',
  'msgpackr',
  'better-sqlite3',
  'libphonenumber-js',
  'pino',
  'tsx',
  'typescript',
] as const;

export function packageVersions(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of MEASURED_PACKAGES) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version?: string };
      out[name] = pkg.version ?? 'unknown';
    } catch {
      out[name] = 'not installed';
    }
  }
  try {
    const own = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { name?: string; version?: string };
    out[own.name ?? 'pcd'] = own.version ?? 'unknown';
  } catch {
    // not fatal: the tree state below still identifies the code
  }
  return out;
}

export interface TreeState {
  commit: string | undefined;
  /**
   * Whether the work tree differed from the commit: changed or staged files,
   * or untracked files git does not ignore (uncommitted work was measured
   * too). Undefined when git could not tell (no git, not a clone).
   */
  dirty: boolean | undefined;
  /** What differed, as `git status --porcelain` lines (the first 20), when dirty. */
  changes?: string[];
  /** How many such lines there were in all. */
  changeCount?: number;
}

const MAX_CHANGES_RECORDED = 20;

export function treeState(): TreeState {
  const git = (...args: string[]): string | undefined => {
    try {
      return execFileSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).trimEnd();
    } catch {
      return undefined;
    }
  };
  const commit = git('rev-parse', 'HEAD')?.trim() || undefined;
  // Untracked files count: a new source file the run imported is measured but in no commit.
  const status = commit === undefined ? undefined : git('status', '--porcelain', '--untracked-files=normal');
  if (status === undefined) return { commit, dirty: undefined };
  const lines = status.split('\n').filter((l) => l.trim().length > 0);
  if (lines.length === 0) return { commit, dirty: false };
  return { commit, dirty: true, changes: lines.slice(0, MAX_CHANGES_RECORDED), changeCount: lines.length };
}

/** One line for a report: `commit abc123def456 (clean tree)`, or what made it dirty. */
export function describeTree(tree: TreeState): string {
  const commit = tree.commit ? `commit ${tree.commit.slice(0, 12)}` : 'commit unknown';
  if (tree.dirty === false) return `${commit} (clean tree)`;
  if (tree.dirty === undefined) return `${commit} (tree state unknown: git could not tell)`;
  const n = tree.changeCount ?? tree.changes?.length;
  return `${commit} + uncommitted changes (DIRTY TREE${n ? `: ${n} file${n === 1 ? '' : 's'} differ` : ''})`;
}
