/**
 * Turns results.json into what a writeup pastes: results.md (the machine,
 * the commit and whether the tree was clean, then one Markdown table per
 * section with p50 / p95 / p99 latencies, ratios, projections marked as
 * such). Charts are bench/charts.ts (Vega-Lite specs) and bench/vega.ts.
 *
 * A run that is not a full run from a clean commit says so at the top and
 * above every table (bench/label.ts), so a table pasted alone still does.
 *
 * Here the sections in their order; the crypto tables are in
 * bench/report-crypto.ts, the cells every table is made of (formats,
 * percentiles, the one-sample footnote) in bench/report-cells.ts.
 */
import { workloadMarkdown } from './workload.ts';
import { designLabel } from '../shared/designs/index.ts';
import { storeMarkdown } from './store.ts';
import { nodesMarkdown } from './nodes.ts';
import { describeTree } from './machine.ts';
import { DIRTY_LABEL, machineLine, runLabels, titleSuffix } from './label.ts';
import type {
  BandwidthMark,
  BenchResults,
  BuildMark,
  CryptoMark,
  FairnessMark,
  HttpMark,
  Mark,
  Projection,
  ReverseMark,
  ScaleMark,
  StoreMark,
  NodesMark,
} from './results.ts';
import { formatBytes, formatNumber, formatSeconds } from './stats.ts';
import { TOKEN_LIMITS, tokenTargets } from './tokens.ts';
import { OneSampleNote, ms, n0, pct, table, us, type Table } from './report-cells.ts';
import { cryptoTables, tokenCryptoTables } from './report-crypto.ts';

export { machineLine } from './label.ts';
export { ONE_SAMPLE, table } from './report-cells.ts';

function by<T extends Mark>(r: BenchResults, section: T['section']): T[] {
  return r.marks.filter((m): m is T => m.section === section);
}

function projectionTable(p: Projection, t: Table): string {
  const value = (row: Projection['rows'][number]) => (row.unit === 's' ? formatSeconds(row.value) : formatBytes(row.value));
  return [
    `**${p.name}** _(projection, not a measurement)_  `,
    `Basis: ${p.basis}.  `,
    `Assumption: ${p.assumption}.`,
    '',
    t(['', 'projected'], p.rows.map((row) => [row.label, value(row)])),
  ].join('\n');
}

/** The command that makes a run like this one. */
function regenerate(r: BenchResults): string {
  return r.profile === 'full' ? '`npm run bench` (from a clean commit)' : `\`npm run bench -- --${r.profile}\``;
}

export function renderMarkdown(r: BenchResults, charts: readonly string[]): string {
  const caption = runLabels(r).length > 0 ? `_${titleSuffix(r).trim()}_\n\n` : '';
  /** Every table carries the run's label when it has one. */
  const t = (headers: string[], rows: (string | number)[][], align?: ('l' | 'r')[]) => caption + table(headers, rows, align);
  const crypto = by<CryptoMark>(r, 'crypto');
  const store = by<StoreMark>(r, 'store');
  const nodes = by<NodesMark>(r, 'nodes');
  return [
    ...preamble(r),
    ...ratioTable(r, t),
    ...(crypto.length > 0 ? cryptoTables(r, crypto, t) : []),
    ...tokenCryptoTables(crypto, t),
    ...httpTables(r, t),
    ...tokenTables(r, t),
    ...fairnessTable(r, t),
    ...bandwidthTable(r, t),
    ...buildTable(r, t),
    ...scaleTables(r, t),
    ...(store.length > 0 ? storeMarkdown(r, store, t) : []),
    ...(nodes.length > 0 ? nodesMarkdown(r, nodes, t) : []),
    ...reverseTable(r, t),
    ...workloadTables(r, caption),
    ...chartLinks(charts),
    ...noteLines(r),
  ].join('\n');
}

/** The title, what kind of run this is (a profile short of full, a dirty tree), the machine and versions, and sections carried over or failed. */
function preamble(r: BenchResults): string[] {
  const out: string[] = [];
  const labels = runLabels(r);
  out.push(`# pcd benchmark results${titleSuffix(r)}`, '');
  if (r.profile !== 'full') {
    out.push(`> **${labels[0]!.replace(/^./, (c) => c.toUpperCase())}.** A \`${r.profile}\` run checks that the benchmark works; its sizes and durations are too small for figures a writeup can cite. The reference run is \`npm run bench\` from a clean commit, in \`bench/results/\`.`, '');
  }
  if (r.tree.dirty !== false) {
    const changes = r.tree.changes ?? [];
    out.push(
      r.tree.dirty
        ? `> **DIRTY TREE: ${DIRTY_LABEL.replace(/^dirty tree: /, '')}.** Measured at ${describeTree(r.tree)}${changes.length > 0 ? `: ${changes.map((c) => `\`${c.trim()}\``).join(', ')}${(r.tree.changeCount ?? 0) > changes.length ? ', …' : ''}` : ''}. Not a reference run.`
        : `> **Tree state unknown:** git could not tell which commit was measured, or whether the tree was clean. Not a reference run.`,
      '',
    );
  }
  out.push(`Measured ${r.date} on **${machineLine(r)}** (host \`${r.machine.hostname}\`, load average at start ${r.machine.loadavgAtStart.join(' / ')}).  `);
  out.push(`Profile \`${r.profile}\`, ${describeTree(r.tree)}; ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.  `);
  out.push(`Total run time ${formatSeconds(r.durationSeconds)}. Regenerate with ${regenerate(r)}; machine-readable results in \`results.json\`; compare two runs with \`pcd bench compare A B\`.`, '');
  out.push('The machines are shared and noisy: compare designs by the ratios below, formed from marks of this same run, rather than by absolute figures across runs. Latency percentiles are nearest-rank: of fewer than 20 samples p95 is the slowest one, of fewer than 100 so is p99.', '');
  for (const s of r.sections.filter((x) => x.carriedOverFrom || x.error)) {
    out.push(`> Section \`${s.section}\`: ${s.error ? `FAILED: ${s.error}` : `carried over from the run of ${s.carriedOverFrom}`}.`);
  }
  if (r.sections.some((x) => x.carriedOverFrom || x.error)) out.push('');
  return out;
}

function ratioTable(r: BenchResults, t: Table): string[] {
  if (r.ratios.length === 0) return [];
  return [
    '## Ratios (same run): designs, backends, threads, the peer, fairness',
    '',
    'Server CPU per lookup is read from the server process itself, so it holds even when other work shared the machine; lookups per second also depend on how much CPU the server was given (see "server CPU / wall time" in the HTTP table).',
    '',
    t(['ratio', 'value'], r.ratios.map((x) => [x.name, `${x.value >= 10 ? formatNumber(x.value, 0) : x.value.toFixed(2)}x`])),
    '',
  ];
}

/** HTTP lookups: the run's setup, the designs on the main server, the other OPRF mode, then the backend and thread-count servers. */
function httpTables(r: BenchResults, t: Table): string[] {
  const http = by<HttpMark>(r, 'http');
  if (http.length === 0) return [];
  const out: string[] = [];
  out.push('## HTTP lookups per design', '');
  for (const [k, v] of Object.entries(r.setup)) out.push(`- ${k}: ${v}`);
  out.push('');
  const designs = http.filter((m) => (m.group ?? 'designs') === 'designs');
  const variants = http.filter((m) => m.group === 'backends' || m.group === 'threads');
  const modes = http.filter((m) => m.group === 'modes');
  const note = new OneSampleNote();
  /** Latency columns of an HTTP mark; a mark of one request is marked. */
  const latency = (m: HttpMark) => note.percentiles(m.latencyMs, m.requests);
  const cpu = (m: HttpMark) => [us(m.serverCpuUsPerLookup), pct(m.serverCpuShare)];
  out.push(
    t(
      ['design', 'request', 'endpoint', 'c', 'requests', 'failed', 'lookups/s', 'requests/s', 'p50 (ms)', 'p95 (ms)', 'p99 (ms)', 'server CPU per lookup (µs)', 'server CPU / wall time'],
      designs.map((m) => [
        m.design,
        m.shape + (m.phase === 'latency' ? ' (idle)' : ''),
        m.endpoint,
        m.concurrency,
        m.requests,
        m.errors,
        n0(m.lookupsPerSec),
        formatNumber(m.requestsPerSec),
        ...latency(m),
        ...cpu(m),
      ]),
      ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    ...note.footnote(),
  );
  if (modes.length > 0) {
    out.push('### Single lookups with the epoch in the other OPRF mode', '');
    out.push('A second server, the same backend, threads, directory and prepared requests, whose blinded epochs are in the other mode; plain and blinded single lookups on it take turns.', '');
    out.push(
      t(
        ['design', 'request', 'c', 'requests', 'failed', 'lookups/s', 'p50 (ms)', 'p95 (ms)', 'p99 (ms)', 'server CPU per lookup (µs)', 'server CPU / wall time'],
        modes.map((m) => [m.name, m.shape, m.concurrency, m.requests, m.errors, n0(m.lookupsPerSec), ...latency(m), ...cpu(m)]),
        ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
      ...note.footnote(),
    );
  }
  if (variants.length > 0) {
    out.push('### Blinded evaluate: backend and evaluator threads', '');
    out.push('Servers that differ in one setting (`--backend`, `--eval-threads`), the same directory and prepared requests, taking turns. elements/s = evaluated elements per second.', '');
    out.push(
      t(
        ['comparing', 'backend', 'eval threads', 'elements / request', 'c', 'requests', 'failed', 'elements/s', 'p50 (ms)', 'p95 (ms)', 'p99 (ms)', 'server CPU per element (µs)', 'server CPU / wall time'],
        variants.map((m) => [
          m.group === 'backends' ? 'backend' : 'threads',
          m.backend,
          m.evalThreads,
          m.numbersPerRequest,
          m.concurrency,
          m.requests,
          m.errors,
          n0(m.lookupsPerSec),
          ...latency(m),
          ...cpu(m),
        ]),
        ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
      ...note.footnote(),
    );
  }
  return out;
}

function fairnessTable(r: BenchResults, t: Table): string[] {
  const fair = by<FairnessMark>(r, 'fairness');
  if (fair.length === 0) return [];
  const note = new OneSampleNote();
  return [
    '## Fairness: a light requester beside a flood',
    '',
    t(
      ['phase', 'light: sent', 'light: 200', 'light: 503', 'light p50 (ms)', 'light p95 (ms)', 'light p99 (ms)', 'light max (ms)', 'flooder: 200', 'flooder: 503', 'flooder elements/s', 'Retry-After seen (s)'],
      fair.map((m) => [
        m.phase === 'flood' ? `under a flood (${m.flooder?.inFlight} x ${m.flooder?.elementsPerRequest} elements in flight)` : 'idle server',
        m.light.sent,
        m.light.ok,
        m.light.rejected503,
        ...note.percentiles(m.light.latencyMs, m.light.ok),
        ms(m.light.latencyMs.max),
        m.flooder?.ok ?? '',
        m.flooder?.rejected503 ?? '',
        m.flooder ? n0(m.flooder.elementsPerSec) : '',
        m.flooder?.retryAfterSeconds ? `${m.flooder.retryAfterSeconds.min}–${m.flooder.retryAfterSeconds.max}` : '',
      ]),
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    ...note.footnote(),
  ];
}

/** The section's projections, each a table of its own. */
function projectionTables(r: BenchResults, section: Projection['section'], t: Table): string[] {
  return r.projections.filter((x) => x.section === section).flatMap((p) => [projectionTable(p, t), '']);
}

function bandwidthTable(r: BenchResults, t: Table): string[] {
  const bw = by<BandwidthMark>(r, 'bandwidth');
  if (bw.length === 0) return [];
  return [
    `## Bytes on the wire per lookup (directory of ${n0(bw[0]!.directorySize)} numbers)`,
    '',
    t(
      ['design', 'lookups', 'requests', 'wire bytes / lookup', 'body bytes / lookup', 'wire sent', 'wire received', 'config fetch (once per epoch)'],
      bw.map((m) => [
        designLabel(m.design, m),
        m.lookups,
        m.requests,
        n0(m.wireBytesPerLookup),
        n0(m.bodyBytesPerLookup),
        n0(m.wireBytesSent),
        n0(m.wireBytesReceived),
        m.configWireBytes !== undefined ? `${n0(m.configWireBytes)} B` : '',
      ]),
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    ...projectionTables(r, 'bandwidth', t),
  ];
}

function buildTable(r: BenchResults, t: Table): string[] {
  const build = by<BuildMark>(r, 'build');
  if (build.length === 0) return [];
  return [
    '## Directory build time and server memory',
    '',
    t(
      ['design', 'numbers', 'open (s)', 'build (s)', 'numbers/s', 'threads', 'RSS', 'RSS growth', 'typed arrays growth', 'directory index', 'epoch cache file', 'peak RSS'],
      build.map((m) => [
        m.design === 'directory' ? 'directory index only' : m.name.endsWith('(1 thread)') ? `${m.design} (1 thread)` : m.design,
        n0(m.numbers),
        ms(m.seconds),
        ms(m.buildSeconds),
        n0(m.numbersPerSec),
        m.threads ?? '',
        formatBytes(m.rssBytes),
        formatBytes(m.rssDeltaBytes),
        formatBytes(m.arrayBuffersDeltaBytes),
        formatBytes(m.directoryIndexBytes),
        m.epochCacheBytes !== undefined ? formatBytes(m.epochCacheBytes) : '',
        formatBytes(m.peakRssBytes),
      ]),
    ),
    '',
    ...projectionTables(r, 'build', t),
  ];
}

/** Seeding, serving, kill -9 and restart by directory size, then the issue's targets judged from them. */
function scaleTables(r: BenchResults, t: Table): string[] {
  const scale = by<ScaleMark>(r, 'scale');
  if (scale.length === 0) return [];
  const out: string[] = [];
  out.push('## Scale: seeding, serving, kill -9 and restart', '');
  out.push(
    t(
      ['numbers', 'seed (s)', 'listening (s)', 'blinded serving (s)', 'epoch build (s)', 'build numbers/s', 'build threads', 'RSS (3 designs, after GC)', 'peak RSS', 'restart: serving (s)', 'restart: epoch from', 'new number answers'],
      scale.map((m) => [
        n0(m.numbers),
        ms(m.seedSeconds),
        ms(m.listeningSeconds),
        ms(m.blindedServingSeconds),
        m.buildSeconds !== undefined ? ms(m.buildSeconds) : '',
        m.buildNumbersPerSec !== undefined ? n0(m.buildNumbersPerSec) : '',
        m.buildThreads ?? '',
        formatBytes(m.rssBytes),
        formatBytes(m.peakRssBytes),
        m.restart ? ms(m.restart.blindedServingSeconds) : '',
        m.restart?.epochSource ?? '',
        m.restart ? (m.restart.answersMessages ? 'messages' : `NO (${m.restart.capabilities.join(', ') || 'SMS only'})`) : '',
      ]),
    ),
    '',
  );
  const targets = scale.flatMap((m) => m.targets);
  if (targets.length > 0) {
    out.push('Targets of the issue, judged from this run:', '');
    out.push(t(['target', 'limit', 'measured', 'met'], targets.map((t) => [t.target, t.limit, t.measured, t.met ? 'met' : '**not met**']), ['l', 'l', 'l', 'l']), '');
  }
  const judged = new Set(scale.map((m) => m.numbers));
  const missing = [1_000_000, 10_000_000].filter((n) => !judged.has(n));
  if (missing.length > 0) out.push(`Not judged in this run (size not run): ${missing.map((n) => `${n0(n)} numbers`).join(', ')}.`, '');
  return out;
}

function reverseTable(r: BenchResults, t: Table): string[] {
  const rev = by<ReverseMark>(r, 'reverse');
  if (rev.length === 0) return [];
  return [
    '## Reversing a hashed log',
    '',
    'A log of SHA-256(E.164) hashes, half of numbers inside the range and half outside, reversed by enumerating the range on one core.',
    '',
    t(
      ['range', 'range size', 'enumerated', 'hasher', 'time', 'hashes/s', 'recovered'],
      rev.map((m) => [m.range, n0(m.rangeSize), n0(m.enumerated), m.hasher, formatSeconds(m.seconds), n0(m.hashesPerSec), `${m.recovered} / ${m.targetsInRange}`]),
      ['l', 'r', 'r', 'l', 'r', 'r', 'r'],
    ),
    '',
    ...projectionTables(r, 'reverse', t),
  ];
}

/** The workload's tables (bench/workload.ts), each carrying the run's label as the others do. */
function workloadTables(r: BenchResults, caption: string): string[] {
  if (!r.workload || r.workload.length === 0) return [];
  const lines = workloadMarkdown(r.workload).split('\n');
  return [lines.map((l, i) => (caption && l.startsWith('|') && !lines[i - 1]?.startsWith('|') ? caption + l : l)).join('\n'), ''];
}

function chartLinks(charts: readonly string[]): string[] {
  if (charts.length === 0) return [];
  return [
    '## Charts',
    '',
    'Each chart is a Vega-Lite spec (`<name>.vl.json`, data inline) beside its SVG rendering: restyle the spec and re-render it with `npx vl2svg <name>.vl.json <name>.svg`, or redraw them all from `results.json` with `npm run bench -- --render --out <this folder>`.',
    '',
    ...charts.flatMap((c) => [`![${c}](${c})  `, `[Vega-Lite spec](${c.replace(/\.svg$/, '.vl.json')})`, '']),
  ];
}

function noteLines(r: BenchResults): string[] {
  if (r.notes.length === 0) return [];
  return ['## Notes', '', ...r.notes.map((n) => `- ${n}`), ''];
}

/** Anonymous requesters: blinded evaluate with a token against the account, issuance, padding, and the issue's targets. */
function tokenTables(r: BenchResults, t: Table): string[] {
  const out: string[] = [];
  const http = by<HttpMark>(r, 'http');
  const auth = http.filter((m) => m.group === 'auth');
  const issuance = http.filter((m) => m.group === 'issuance');
  const padding = r.padding ?? [];
  const targets = tokenTargets(r);
  if (auth.length + issuance.length + padding.length + targets.length === 0) return out;
  const note = new OneSampleNote();
  const latency = (m: HttpMark) => note.percentiles(m.latencyMs, m.requests);
  out.push('## Anonymous requesters: Privacy Pass tokens', '');
  if (auth.length > 0) {
    out.push('### Blinded evaluate: paid with a token against the account', '');
    out.push(
      'Twin servers, the same backend, threads, directory and prepared requests, one taking a Privacy Pass token per request (the default) and one the account (`--blinded-auth account`), taking turns. ' +
        'With a token each request is padded to its size class as the client pads it: lookups/s counts the numbers asked for, elements/s the elements sent. ' +
        `"token / account" is lookups/s of the token row over the account row (the issue's target: at least ${TOKEN_LIMITS.authRatio.toFixed(2)}x).`,
      '',
    );
    const shapes = [...new Set(auth.map((m) => m.shape))];
    const ordered = shapes.flatMap((s) => (['token', 'account'] as const).flatMap((a) => auth.filter((m) => m.shape === s && m.auth === a)));
    const ratio = (m: HttpMark) => {
      const other = auth.find((x) => x.shape === m.shape && x.auth === 'account');
      return m.auth === 'token' && other ? `${(m.lookupsPerSec / other.lookupsPerSec).toFixed(2)}x` : '';
    };
    out.push(
      t(
        ['request', 'paid with', 'numbers / request', 'elements sent / request', 'c', 'requests', 'failed', 'lookups/s', 'elements/s', 'token / account', 'p50 (ms)', 'p95 (ms)', 'p99 (ms)', 'server CPU per lookup (µs)', 'server CPU / wall time'],
        ordered.map((m) => [
          m.shape,
          m.auth ?? '',
          m.numbersPerRequest,
          m.elementsPerRequest ?? m.numbersPerRequest,
          m.concurrency,
          m.requests,
          m.errors,
          n0(m.lookupsPerSec),
          n0(m.elementsPerSec ?? m.lookupsPerSec),
          ratio(m),
          ...latency(m),
          us(m.serverCpuUsPerLookup),
          pct(m.serverCpuShare),
        ]),
        ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
      ...note.footnote(),
    );
  }
  if (issuance.length > 0) {
    out.push('### Issuance: POST /v1/tokens', '');
    out.push(
      `Prepared token requests (random blinded messages below the modulus: the same BlindSign for the server) with the account's bearer token, on the main server, taking turns. Tokens per server CPU second is what one core issues (the issue's target: at least ${n0(TOKEN_LIMITS.issuancePerCore)}).`,
      '',
    );
    out.push(
      t(
        ['tokens / request', 'c', 'requests', 'failed', 'tokens/s', 'p50 (ms)', 'p95 (ms)', 'p99 (ms)', 'server CPU per token (µs)', 'tokens per server CPU second', 'server CPU / wall time'],
        issuance.map((m) => [m.numbersPerRequest, m.concurrency, m.requests, m.errors, n0(m.lookupsPerSec), ...latency(m), us(m.serverCpuUsPerLookup), n0(1e6 / m.serverCpuUsPerLookup), pct(m.serverCpuShare)]),
        ['r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
      ...note.footnote(),
    );
  }
  if (padding.length > 0) {
    out.push('### Padding to size classes', '');
    out.push(
      `Computed, not timed: each request padded with dummy elements to the smallest size class that holds it, so the server's log holds a class, not a count. "sent / asked" is elements evaluated per number asked for (the issue's target on the workload's mix: at most ${TOKEN_LIMITS.padding.toFixed(1)}x); "syncs alone" leaves the single lookups (class 1, never padded) out.`,
      '',
    );
    out.push(
      t(
        ['mix of requests', 'requests', 'single lookups', 'numbers asked for', 'elements sent', 'sent / asked', 'syncs alone', 'sizes from'],
        padding.map((p) => [p.name, n0(p.requests), n0(p.singles), n0(p.asked), n0(p.sent), `${p.ratio.toFixed(3)}x`, p.syncRatio !== undefined ? `${p.syncRatio.toFixed(3)}x` : '', p.basis]),
        ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'l'],
      ),
      '',
    );
  }
  if (targets.length > 0) {
    out.push('### Targets of the issue for anonymous requesters, judged from this run', '');
    out.push(t(['target', 'limit', 'measured', 'met'], targets.map((x) => [x.target, x.limit, x.measured, x.met ? 'met' : '**not met**']), ['l', 'l', 'l', 'l']), '');
  }
  return out;
}
