/**
 * The house's rules, read from the sources' own imports (docs/design.md,
 * "Rooms"): every top-level folder is a room on a floor, and a room imports
 * only rooms on lower floors, so no arrow runs back up and no two folders
 * import each other, nor do any two files anywhere. And a process that serves (`pcd serve`, the bench's
 * server child) loads nothing of the offline audit's readers, the benchmarks
 * or the simulation: those load when their command runs (a dynamic import).
 * And no room grows a file over 600 lines or a function of 100 code lines.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/** Floors, lowest first; a room may import only rooms of a lower floor. */
const FLOORS: readonly (readonly string[])[] = [
  ['shared', 'launch'],
  ['disk', 'synth', 'client'],
  ['server', 'relay'],
  ['audit', 'harness', 'web'],
  ['workload'],
  ['bench'],
  ['bin'],
];
const FLOOR = new Map(FLOORS.flatMap((rooms, floor) => rooms.map((r) => [r, floor] as const)));

/** Static `import … from` / `export … from` that load code (not `import type`), and `import('…')` (dynamic); relative specifiers only. */
const STATIC = /(?:^|\n)\s*(?:import|export)\s(?!type\s)[^'";]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|(?:^|\n)\s*import\s*['"](\.{1,2}\/[^'"]+)['"]/g;
const TYPE_ONLY = /(?:^|\n)\s*(?:import|export)\s+type\s[^'";]*?from\s*['"](\.{1,2}\/[^'"]+)['"]/g;
const DYNAMIC = /import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

const SOURCES = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.ts', '*.mjs'], { encoding: 'utf8' })
  .split('\n')
  .filter((f) => f.includes('/') && !/^(test|packages|bench\/scratch)\//.test(f) && fs.existsSync(f));

function imports(file: string, which: RegExp): string[] {
  const text = fs.readFileSync(file, 'utf8');
  return [...text.matchAll(which)].map((m) => path.normalize(path.join(path.dirname(file), (m[1] ?? m[2])!)));
}

const room = (file: string) => file.split('/')[0]!;

describe('rooms', () => {
  it('every room of the tree is on a floor', () => {
    expect([...new Set(SOURCES.map(room))].filter((r) => !FLOOR.has(r))).toEqual([]);
  });

  it('imports run down only: no arrow back up, no cycle between folders', () => {
    const up: string[] = [];
    let arrows = 0;
    for (const file of SOURCES) {
      for (const target of [...imports(file, STATIC), ...imports(file, TYPE_ONLY), ...imports(file, DYNAMIC)]) {
        if (room(target) === room(file) || !FLOOR.has(room(target))) continue;
        arrows++;
        if (FLOOR.get(room(target))! >= FLOOR.get(room(file))!) up.push(`${file} -> ${target}`);
      }
    }
    expect(arrows).toBeGreaterThan(300); // the reader finds the imports
    expect(up).toEqual([]);
  });

  it('no files import each other in a circle, inside a room either', () => {
    const graph = new Map(SOURCES.map((f) => [f, [...new Set([...imports(f, STATIC), ...imports(f, TYPE_ONLY)])].filter((t) => t !== f && fs.existsSync(t))]));
    const state = new Map<string, 'open' | 'done'>();
    const circles: string[] = [];
    const visit = (file: string, path: string[]) => {
      state.set(file, 'open');
      for (const next of graph.get(file) ?? []) {
        if (state.get(next) === 'open') circles.push([...path.slice(path.indexOf(next)), file, next].join(' -> '));
        else if (!state.has(next)) visit(next, [...path, file]);
      }
      state.set(file, 'done');
    };
    for (const f of SOURCES) if (!state.has(f)) visit(f, []);
    expect(circles).toEqual([]);
  });

  it("a serving process loads nothing of the audit's readers, bench/ or workload/ (their commands load them when run)", () => {
    for (const entry of ['bin/pcd.ts', 'harness/child.ts']) {
      const seen = new Set<string>();
      const walk = (file: string) => {
        if (seen.has(file) || !fs.existsSync(file)) return;
        seen.add(file);
        for (const next of imports(file, STATIC)) walk(next);
      };
      walk(entry);
      expect(seen.size, entry).toBeGreaterThan(entry === 'bin/pcd.ts' ? 100 : 50);
      // `pcd audit`'s argument parsers (plan.ts: times, targets, accounts; format.ts: the output formats) are all it registers.
      expect([...seen].filter((f) => /^(audit|bench|workload)\//.test(f) && !['audit/plan.ts', 'audit/format.ts'].includes(f)), entry).toEqual([]);
    }
  });
});

/** Code lines of a function: its text without comments and blank lines. */
function codeLines(node: ts.Node): number {
  return node
    .getText()
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.trim().startsWith('//')).length;
}

describe('room sizes (docs/design.md)', () => {
  const code = SOURCES.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));

  it('no source file is over 600 lines', () => {
    const long = code.map((f) => [f, fs.readFileSync(f, 'utf8').replace(/\n$/, '').split('\n').length] as const).filter(([, n]) => n > 600);
    expect(long).toEqual([]);
  });

  it('no function has 100 code lines or more: a long one is split where its parts have names', () => {
    const long: string[] = [];
    for (const file of code) {
      const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
      const visit = (node: ts.Node): void => {
        const named =
          ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ((ts.isArrowFunction(node) || ts.isFunctionExpression(node)) && ts.isVariableDeclaration(node.parent));
        if (named && (node as ts.FunctionLikeDeclaration).body) {
          const n = codeLines(node);
          if (n >= 100) long.push(`${file}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1} (${n} lines)`);
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(long).toEqual([]);
  });
});
