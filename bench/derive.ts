/**
 * Ratios between designs, formed only from marks of one run (the machines
 * are shared and noisy: a ratio of two numbers measured minutes apart on
 * the same machine says more than either number alone).
 */
import type { BandwidthMark, BuildMark, CryptoMark, ExternalReference, FairnessMark, HttpMark, Mark, NodesMark, Ratio, StoreMark } from './results.ts';
import { TOKEN_OPS } from './tokens.ts';

function by<T extends Mark>(marks: readonly Mark[], section: T['section']): T[] {
  return marks.filter((m): m is T => m.section === section);
}

/** Keeps a ratio when both figures exist and the denominator is neither 0 nor infinite. */
type Push = (section: Ratio['section'], name: string, num: number | undefined, den: number | undefined, formula: string) => void;

export function deriveRatios(marks: readonly Mark[], references: readonly ExternalReference[] = []): Ratio[] {
  const out: Ratio[] = [];
  const push: Push = (section, name, num, den, formula) => {
    if (num === undefined || den === undefined || !Number.isFinite(num) || !Number.isFinite(den) || den === 0) return;
    out.push({ section, name, value: num / den, formula });
  };
  httpRatios(marks, push);
  fairnessRatios(marks, push);
  cryptoRatios(marks, references, push);
  bandwidthRatios(marks, push);
  buildRatios(marks, push);
  storeRatios(marks, push);
  nodesRatios(marks, push);
  return out;
}

/** HTTP: the designs on one server, then the servers of a backend, thread-count, auth or mode comparison. */
function httpRatios(marks: readonly Mark[], push: Push): void {
  // HTTP: throughput and server CPU per lookup, per request shape.
  const allHttp = by<HttpMark>(marks, 'http');
  const http = allHttp.filter((m) => m.phase === 'throughput' && (m.group ?? 'designs') === 'designs');
  for (const shape of [...new Set(http.map((m) => m.shape))]) {
    if (shape === 'bucket') continue;
    const get = (d: string) => http.find((m) => m.shape === shape && m.design === d);
    const plain = get('plain');
    const hashed = get('hashed');
    const blinded = get('blinded');
    // Server CPU per lookup first: it counts the server's work whatever else ran on the
    // machine meanwhile; lookups/s also depends on how much CPU the server was given.
    push('http', `HTTP ${shape}: blinded / plain server CPU per lookup`, blinded?.serverCpuUsPerLookup, plain?.serverCpuUsPerLookup, `server CPU µs/lookup, ${blinded?.name} ÷ ${plain?.name}`);
    push('http', `HTTP ${shape}: blinded / hashed server CPU per lookup`, blinded?.serverCpuUsPerLookup, hashed?.serverCpuUsPerLookup, `server CPU µs/lookup, ${blinded?.name} ÷ ${hashed?.name}`);
    push('http', `HTTP ${shape}: plain / blinded lookups per second`, plain?.lookupsPerSec, blinded?.lookupsPerSec, `${plain?.name} ÷ ${blinded?.name}`);
    push('http', `HTTP ${shape}: hashed / blinded lookups per second`, hashed?.lookupsPerSec, blinded?.lookupsPerSec, `${hashed?.name} ÷ ${blinded?.name}`);
    if (shape === 'single') {
      push('http', `HTTP single (on-demand): blinded ${blinded?.backend ?? ''} / plain p50 latency`, blinded?.latencyMs.p50, plain?.latencyMs.p50, `p50, ${blinded?.name} ÷ ${plain?.name}`);
      push('http', `HTTP single (on-demand): blinded ${blinded?.backend ?? ''} / plain p99 latency`, blinded?.latencyMs.p99, plain?.latencyMs.p99, `p99, ${blinded?.name} ÷ ${plain?.name}`);
    }
  }
  // HTTP: one server per backend, and one per evaluator thread count (blinded evaluate).
  const variant = (group: HttpMark['group']) => allHttp.filter((m) => m.group === group);
  for (const shape of [...new Set(variant('backends').map((m) => m.shape))]) {
    const of = (b: string) => variant('backends').find((m) => m.shape === shape && m.backend === b);
    const sodium = of('sodium');
    const noble = of('noble');
    push('http', `HTTP blinded ${shape}: sodium / noble elements per second`, sodium?.lookupsPerSec, noble?.lookupsPerSec, `${sodium?.name} ÷ ${noble?.name}`);
    push('http', `HTTP blinded ${shape}: noble / sodium server CPU per element`, noble?.serverCpuUsPerLookup, sodium?.serverCpuUsPerLookup, `server CPU µs/element, ${noble?.name} ÷ ${sodium?.name}`);
  }
  for (const shape of [...new Set(variant('threads').map((m) => m.shape))]) {
    const rows = variant('threads').filter((m) => m.shape === shape).sort((a, b) => a.evalThreads - b.evalThreads);
    const one = rows[0];
    for (const m of rows.slice(1)) {
      push('http', `HTTP blinded ${shape} (${m.backend}): ${m.evalThreads} / ${one!.evalThreads} evaluator threads, elements per second`, m.lookupsPerSec, one?.lookupsPerSec, `${m.name} ÷ ${one?.name}`);
    }
  }

  // HTTP: blinded evaluate paid with a token against the account, twin servers taking turns. Lookups count the numbers
  // asked for, so the padding to the token's class is part of the token path's cost; per element sent, the token's own.
  for (const shape of [...new Set(variant('auth').map((m) => m.shape))]) {
    const of = (a: string) => variant('auth').find((m) => m.shape === shape && m.auth === a);
    const token = of('token');
    const account = of('account');
    push('http', `HTTP blinded ${shape}: token / account lookups per second (numbers asked for)`, token?.lookupsPerSec, account?.lookupsPerSec, `${token?.name} ÷ ${account?.name}`);
    push('http', `HTTP blinded ${shape}: token / account server CPU per lookup`, token?.serverCpuUsPerLookup, account?.serverCpuUsPerLookup, `server CPU µs/lookup, ${token?.name} ÷ ${account?.name}`);
    if (token?.elementsPerRequest !== undefined && token.elementsPerRequest !== token.numbersPerRequest) {
      push('http', `HTTP blinded ${shape}: token / account elements per second (elements sent, padding included)`, token.elementsPerSec, account?.elementsPerSec, `elements/s, ${token.name} ÷ ${account?.name}`);
      push('http', `HTTP blinded ${shape}: elements sent / numbers asked for with a token (padding to class ${token.elementsPerRequest})`, token.elementsPerRequest, token.numbersPerRequest, `${token.elementsPerRequest} ÷ ${token.numbersPerRequest}`);
    }
  }

  // HTTP: single lookups against a server whose epochs are in the other mode, plain beside it.
  const modes = variant('modes');
  const modePlain = modes.find((m) => m.design === 'plain');
  const modeBlinded = modes.find((m) => m.design === 'blinded');
  if (modeBlinded) {
    const mode = /\((\w+) epoch/.exec(modeBlinded.name)?.[1] ?? 'other mode';
    push('http', `HTTP single, ${mode} epoch: blinded / plain lookups per second (same server)`, modeBlinded.lookupsPerSec, modePlain?.lookupsPerSec, `${modeBlinded.name} ÷ ${modePlain?.name}`);
    push('http', `HTTP single, ${mode} epoch: blinded / plain p50 latency (same server)`, modeBlinded.latencyMs.p50, modePlain?.latencyMs.p50, `p50, ${modeBlinded.name} ÷ ${modePlain?.name}`);
  }
  const single = http.filter((m) => m.shape === 'single');
  const sPlain = single.find((m) => m.design === 'plain');
  const sBlinded = single.find((m) => m.design === 'blinded');
  push('http', `HTTP single: blinded / plain lookups per second (same server)`, sBlinded?.lookupsPerSec, sPlain?.lookupsPerSec, `${sBlinded?.name} ÷ ${sPlain?.name}`);
}

/** Fairness: what a flood costs the light requester. */
function fairnessRatios(marks: readonly Mark[], push: Push): void {
  const fair = by<FairnessMark>(marks, 'fairness');
  const idle = fair.find((m) => m.phase === 'idle');
  const flood = fair.find((m) => m.phase === 'flood');
  if (idle && flood) {
    push('fairness', 'light requester under a flood / idle: p99 latency', flood.light.latencyMs.p99, idle.light.latencyMs.p99, `p99 of 1-element requests, ${flood.name} ÷ ${idle.name}`);
    push('fairness', 'light requester under a flood / idle: max latency', flood.light.latencyMs.max, idle.light.latencyMs.max, `max, ${flood.name} ÷ ${idle.name}`);
    push('fairness', 'light requester under a flood: share of requests answered 200', flood.light.ok, flood.light.sent, `200s ÷ requests sent, ${flood.name}`);
  }
}

/** Crypto: the proof's cost, a tag against a hash, BlindSign, the backends, and the peer (measured, else quoted). */
function cryptoRatios(marks: readonly Mark[], references: readonly ExternalReference[], push: Push): void {
  // Crypto: per backend, the proof's cost and a tag against a hash; across backends, the speed-up.
  const crypto = by<CryptoMark>(marks, 'crypto');
  const find = (operation: string, backend: string) => crypto.find((m) => m.operation === operation && m.backend === backend);
  const suites = [...new Set(crypto.map((m) => m.backend))].filter((b) => b === 'noble' || b === 'sodium');
  for (const b of suites) {
    for (const n of [...new Set(crypto.filter((m) => m.operation.startsWith('server BlindEvaluate')).map((m) => m.batch))]) {
      const v = find(`server BlindEvaluate (voprf, batch ${n})`, b);
      const o = find(`server BlindEvaluate (oprf, batch ${n})`, b);
      push('crypto', `${b}: BlindEvaluate batch ${n}: voprf / oprf time per element (the proof)`, v?.usPerItem, o?.usPerItem, `${v?.name} ÷ ${o?.name}`);
    }
    for (const n of [...new Set(crypto.filter((m) => m.operation.startsWith('client finalize')).map((m) => m.batch))]) {
      const v = find(`client finalize (voprf, batch ${n}, proof verified)`, b);
      const o = find(`client finalize (oprf, batch ${n})`, b);
      push('crypto', `${b}: finalize batch ${n}: voprf / oprf time per number (proof verification)`, v?.usPerItem, o?.usPerItem, `${v?.name} ÷ ${o?.name}`);
    }
    const evaluate = find('server Evaluate: directory build (voprf)', b);
    const sha = find('hashed: SHA-256 of a number', 'any');
    push('crypto', `${b}: cost of one OPRF tag / one SHA-256 per number (what a guess costs, key in hand)`, evaluate?.usPerItem, sha?.usPerItem, `${evaluate?.name} ÷ ${sha?.name}`);
  }
  // Privacy Pass: the server's BlindSign against blindrsa-ts's, per token.
  const token = (o: string) => crypto.find((m) => m.group === 'tokens' && m.operation === o);
  const nodeSign = token(TOKEN_OPS.blindSign);
  const jsSign = token(TOKEN_OPS.blindSignJs);
  push('crypto', 'Privacy Pass BlindSign: blindrsa-ts / node:crypto time per token', jsSign?.usPerItem, nodeSign?.usPerItem, `${jsSign?.name} ÷ ${nodeSign?.name}`);

  if (suites.includes('noble') && suites.includes('sodium')) {
    for (const operation of [...new Set(crypto.filter((m) => m.backend === 'sodium').map((m) => m.operation))]) {
      const s = find(operation, 'sodium');
      const n = find(operation, 'noble');
      push('crypto', `sodium / noble speed: ${operation}`, n?.usPerItem, s?.usPerItem, `time per item, ${n?.name} ÷ ${s?.name}`);
    }
  }
  // Against the peer: psi.js per item, measured in this run, else the quoted figure (labelled).
  for (const psi of crypto.filter((m) => m.backend === 'psi.js' && m.operation.startsWith('psi.js server processRequest'))) {
    for (const b of suites) {
      for (const mode of ['voprf', 'oprf'] as const) {
        const ours = find(`server BlindEvaluate (${mode}, batch ${psi.batch})`, b);
        push('crypto', `${b} server BlindEvaluate (${mode}) / psi.js processRequest, items per second (batch ${psi.batch})`, ours?.itemsPerSec, psi.itemsPerSec, `${ours?.name} ÷ ${psi.name}`);
      }
    }
  }
  const clientPsi = crypto.find((m) => m.backend === 'psi.js' && m.operation.startsWith('psi.js client createRequest'));
  if (clientPsi) {
    for (const b of suites) {
      const ours = find('client blind (voprf)', b);
      push('crypto', `${b} client blind / psi.js client createRequest, items per second`, ours?.itemsPerSec, clientPsi.itemsPerSec, `${ours?.name} ÷ ${clientPsi.name}`);
    }
  }
  for (const ref of references) {
    for (const b of suites) {
      const ours = crypto.filter((m) => m.backend === b && m.operation.startsWith('server BlindEvaluate (voprf, batch')).sort((x, y) => Math.abs(x.batch - 100) - Math.abs(y.batch - 100))[0];
      if (!ours) continue;
      push('crypto', `${b} server BlindEvaluate (voprf, batch ${ours.batch}) / ${ref.name}, low end ${ref.low.toLocaleString('en-US')} ${ref.unit} (NOT MEASURED)`, ours.itemsPerSec, ref.low, `${ours.name} ÷ ${ref.low} ${ref.unit} (${ref.source})`);
      push('crypto', `${b} server BlindEvaluate (voprf, batch ${ours.batch}) / ${ref.name}, high end ${ref.high.toLocaleString('en-US')} ${ref.unit} (NOT MEASURED)`, ours.itemsPerSec, ref.high, `${ours.name} ÷ ${ref.high} ${ref.unit} (${ref.source})`);
    }
  }
}

/** Bandwidth: blinded per bucket bits against plain, same lookups. */
function bandwidthRatios(marks: readonly Mark[], push: Push): void {
  const bw = by<BandwidthMark>(marks, 'bandwidth');
  for (const m of bw.filter((x) => x.design === 'blinded')) {
    const plain = bw.find((x) => x.design === 'plain' && x.lookups === m.lookups);
    push('bandwidth', `wire bytes per lookup, ${m.lookups === 1 ? 'single lookup' : `sync of ${m.lookups}`}: blinded b=${m.bucketBits} / plain`, m.wireBytesPerLookup, plain?.wireBytesPerLookup, `${m.name} ÷ ${plain?.name}`);
  }
}

/** Build: the blinded epoch build against opening plain, same directory. */
function buildRatios(marks: readonly Mark[], push: Push): void {
  const build = by<BuildMark>(marks, 'build');
  for (const m of build.filter((x) => x.design === 'blinded' && !x.name.endsWith('(1 thread)'))) {
    const plain = build.find((x) => x.design === 'plain' && x.numbers === m.numbers);
    push('build', `open time at ${m.numbers.toLocaleString('en-US')} numbers: blinded / plain`, m.seconds, plain?.seconds, `${m.name} ÷ ${plain?.name}`);
  }
}

/** Store: Postgres against SQLite, same directory size, same run. */
function storeRatios(marks: readonly Mark[], push: Push): void {
  const store = by<StoreMark>(marks, 'store');
  for (const p of store.filter((x) => x.store === 'postgres')) {
    const s = store.find((x) => x.store === 'sqlite' && x.numbers === p.numbers);
    if (!s) continue;
    const at = `at ${p.numbers.toLocaleString('en-US')} numbers`;
    const f = (what: string) => `${what}, ${p.name} ÷ ${s.name}`;
    push('store', `store ${at}: postgres / sqlite seeding numbers per second`, p.seedNumbersPerSec, s.seedNumbersPerSec, f('numbers/s'));
    push('store', `store ${at}: postgres / sqlite scan numbers per second`, p.scanNumbersPerSec, s.scanNumbersPerSec, f('numbers/s'));
    push('store', `store ${at}: postgres / sqlite createAccount mean latency`, p.createLatencyMs.mean, s.createLatencyMs.mean, f('mean ms'));
    push('store', `store ${at}: postgres / sqlite createAccount p50 latency`, p.createLatencyMs.p50, s.createLatencyMs.p50, f('p50 ms'));
    push('store', `store ${at}: postgres / sqlite createAccount p99 latency`, p.createLatencyMs.p99, s.createLatencyMs.p99, f('p99 ms'));
    push('store', `store ${at}: postgres / sqlite authenticate mean time`, p.authenticateMeanUs, s.authenticateMeanUs, f('mean µs'));
    push('store', `store ${at}: postgres / sqlite bytes on disk after seeding`, p.diskBytes, s.diskBytes, f('bytes'));
  }
}

/** Nodes: Postgres-backed nodes against a SQLite-backed one, same design, same run. */
function nodesRatios(marks: readonly Mark[], push: Push): void {
  const nodes = by<NodesMark>(marks, 'nodes');
  for (const m of nodes.filter((x) => x.setup !== 'sqlite')) {
    const s = nodes.find((x) => x.setup === 'sqlite' && x.design === m.design);
    push('nodes', `nodes: ${m.design} single lookups per second, ${m.setup} / sqlite`, m.lookupsPerSec, s?.lookupsPerSec, `lookups/s, ${m.name} ÷ ${s?.name}`);
    push('nodes', `nodes: ${m.design} CPU-seconds per lookup (nodes and Postgres), ${m.setup} / sqlite`, 1 / m.lookupsPerCpuSecond, s && 1 / s.lookupsPerCpuSecond, `CPU per lookup, ${m.name} ÷ ${s?.name}`);
  }
}
