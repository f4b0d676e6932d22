/**
 * A vitest reporter that prints, after the run, each test file's time from
 * its start to its end, its hooks included (vitest's own per-file duration
 * leaves beforeAll out), longest first, and their sum: how the per-file
 * times of the README were measured.
 *
 *   npx vitest run --reporter=default --reporter=./test/file-times.mjs
 */
import path from 'node:path';

export default class FileTimes {
  /** @type {Map<string, number>} */
  #started = new Map();
  /** @type {[string, number][]} */
  #times = [];

  onTestModuleStart(module) {
    this.#started.set(module.moduleId, performance.now());
  }

  onTestModuleEnd(module) {
    const start = this.#started.get(module.moduleId) ?? performance.now();
    // Start and end can arrive together for a file whose tests all ran in one go: then vitest's own figure.
    const seconds = Math.max((performance.now() - start) / 1000, module.diagnostic().duration / 1000);
    this.#times.push([path.basename(module.moduleId), seconds]);
  }

  onTestRunEnd() {
    const rows = this.#times.sort((a, b) => b[1] - a[1]);
    const sum = rows.reduce((s, [, t]) => s + t, 0);
    console.log(`\nper-file time (start to end, hooks included), ${rows.length} files, sum ${sum.toFixed(1)} s:`);
    for (const [file, t] of rows) console.log(`${t.toFixed(1).padStart(7)} s  ${file}`);
  }
}
