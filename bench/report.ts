/**
 * Turns results.json into what a writeup pastes: results.md (the machine,
 * the commit and whether the tree was clean, then one Markdown table per
 * section with p50 / p95 / p99 latencies, ratios, projections marked as
 * such). Charts are bench/charts.ts (Vega-Lite specs) and bench/vega.ts.
 *
 * A run that is not a full run from a clean commit says so at the top and
 * above every table (bench/label.ts), so a table pasted alone still does.
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
import { formatBytes, formatNumber, formatPerItem, formatSeconds } from './stats.ts';
import { TOKEN_LIMITS, tokenTargets } from './tokens.ts';

export { machineLine } from './label.ts';

function by<T extends Mark>(r: BenchResults, section: T['section']): T[] {
  return r.marks.filter((m): m is T => m.section === section);
}

export function table(headers: string[], rows: (string | number)[][], align?: ('l' | 'r')[]): string {
  const esc = (c: string | number) => String(c).replace(/\|/g, '\\|');
  const a = align ?? headers.map((_, i) => (i === 0 ? 'l' : 'r'));
  return [
    `| ${headers.map(esc).join(' | ')} |`,
    `|${a.map((x) => (x === 'r' ? '---:' : ':---')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

const n0 = (v: number) => formatNumber(v, 0);
const ms = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) : '–');
const us = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? (v >= 1000 ? formatNumber(v, 0) : v >= 10 ? v.toFixed(1) : v >= 0.1 ? v.toFixed(2) : v.toPrecision(2)) : '–');
const pct = (v: number) => `${Math.round(v * 100)} %`;

/** Marks a value measured from one sample (one request, one call): no spread to speak of. */
export const ONE_SAMPLE = '†';
const ONE_SAMPLE_NOTE = `${ONE_SAMPLE} one sample only (one request, or one timed call): p50 is that sample, p95 and p99 are not shown; not a figure to cite.`;

/** p50, p95, p99 cells (ms); p95 and p99 blank for a single sample, p95 '–' in runs from before it was recorded. */
function percentiles(l: { p50: number; p95?: number; p99: number }, samples: number, scale = 1): string[] {
  if (samples < 2) return [`${ms(l.p50 * scale)} ${ONE_SAMPLE}`, '', ''];
  return [ms(l.p50 * scale), ms(l.p95 === undefined ? undefined : l.p95 * scale), ms(l.p99 * scale)];
}

function projectionTable(p: Projection, t: typeof table): string {
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
  const out: string[] = [];
  const labels = runLabels(r);
  const caption = labels.length > 0 ? `_${titleSuffix(r).trim()}_\n\n` : '';
  /** Every table carries the run's label when it has one. */
  const t = (headers: string[], rows: (string | number)[][], align?: ('l' | 'r')[]) => caption + table(headers, rows, align);
  let oneSample = false;
  const footnote = () => {
    if (!oneSample) return [];
    oneSample = false;
    return [`<sub>${ONE_SAMPLE_NOTE}</sub>`, ''];
  };

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

  if (r.ratios.length > 0) {
    out.push('## Ratios (same run): designs, backends, threads, the peer, fairness', '');
    out.push('Server CPU per lookup is read from the server process itself, so it holds even when other work shared the machine; lookups per second also depend on how much CPU the server was given (see "server CPU / wall time" in the HTTP table).', '');
    out.push(t(['ratio', 'value'], r.ratios.map((x) => [x.name, `${x.value >= 10 ? formatNumber(x.value, 0) : x.value.toFixed(2)}x`])), '');
  }

  const crypto = by<CryptoMark>(r, 'crypto');
  if (crypto.length > 0) out.push(...cryptoTables(r, crypto, t));
  out.push(...tokenCryptoTables(crypto, t));
  const http = by<HttpMark>(r, 'http');
  if (http.length > 0) {
    out.push('## HTTP lookups per design', '');
    for (const [k, v] of Object.entries(r.setup)) out.push(`- ${k}: ${v}`);
    out.push('');
    const designs = http.filter((m) => (m.group ?? 'designs') === 'designs');
    const variants = http.filter((m) => m.group === 'backends' || m.group === 'threads');
    const modes = http.filter((m) => m.group === 'modes');
    /** Latency columns of an HTTP mark; a mark of one request is marked. */
    const latency = (m: HttpMark) => {
      if (m.requests < 2) oneSample = true;
      return percentiles(m.latencyMs, m.requests);
    };
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
      ...footnote(),
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
        ...footnote(),
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
        ...footnote(),
      );
    }
  }

  out.push(...tokenTables(r, t));

  const fair = by<FairnessMark>(r, 'fairness');
  if (fair.length > 0) {
    const lightLatency = (m: FairnessMark) => {
      if (m.light.ok < 2) oneSample = true;
      return percentiles(m.light.latencyMs, m.light.ok);
    };
    out.push('## Fairness: a light requester beside a flood', '');
    out.push(
      t(
        ['phase', 'light: sent', 'light: 200', 'light: 503', 'light p50 (ms)', 'light p95 (ms)', 'light p99 (ms)', 'light max (ms)', 'flooder: 200', 'flooder: 503', 'flooder elements/s', 'Retry-After seen (s)'],
        fair.map((m) => [
          m.phase === 'flood' ? `under a flood (${m.flooder?.inFlight} x ${m.flooder?.elementsPerRequest} elements in flight)` : 'idle server',
          m.light.sent,
          m.light.ok,
          m.light.rejected503,
          ...lightLatency(m),
          ms(m.light.latencyMs.max),
          m.flooder?.ok ?? '',
          m.flooder?.rejected503 ?? '',
          m.flooder ? n0(m.flooder.elementsPerSec) : '',
          m.flooder?.retryAfterSeconds ? `${m.flooder.retryAfterSeconds.min}–${m.flooder.retryAfterSeconds.max}` : '',
        ]),
        ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
      ...footnote(),
    );
  }

  const bw = by<BandwidthMark>(r, 'bandwidth');
  if (bw.length > 0) {
    out.push(`## Bytes on the wire per lookup (directory of ${n0(bw[0]!.directorySize)} numbers)`, '');
    out.push(
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
    );
    for (const p of r.projections.filter((x) => x.section === 'bandwidth')) out.push(projectionTable(p, t), '');
  }

  const build = by<BuildMark>(r, 'build');
  if (build.length > 0) {
    out.push('## Directory build time and server memory', '');
    out.push(
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
    );
    for (const p of r.projections.filter((x) => x.section === 'build')) out.push(projectionTable(p, t), '');
  }

  const scale = by<ScaleMark>(r, 'scale');
  if (scale.length > 0) {
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
  }

  const store = by<StoreMark>(r, 'store');
  if (store.length > 0) out.push(...storeMarkdown(r, store, t));
  const nodes = by<NodesMark>(r, 'nodes');
  if (nodes.length > 0) out.push(...nodesMarkdown(r, nodes, t));

  const rev = by<ReverseMark>(r, 'reverse');
  if (rev.length > 0) {
    out.push('## Reversing a hashed log', '');
    out.push('A log of SHA-256(E.164) hashes, half of numbers inside the range and half outside, reversed by enumerating the range on one core.', '');
    out.push(
      t(
        ['range', 'range size', 'enumerated', 'hasher', 'time', 'hashes/s', 'recovered'],
        rev.map((m) => [m.range, n0(m.rangeSize), n0(m.enumerated), m.hasher, formatSeconds(m.seconds), n0(m.hashesPerSec), `${m.recovered} / ${m.targetsInRange}`]),
        ['l', 'r', 'r', 'l', 'r', 'r', 'r'],
      ),
      '',
    );
    for (const p of r.projections.filter((x) => x.section === 'reverse')) out.push(projectionTable(p, t), '');
  }

  if (r.workload && r.workload.length > 0) {
    // Every table carries the run's label, as the others do.
    const lines = workloadMarkdown(r.workload).split('\n');
    out.push(lines.map((l, i) => (caption && l.startsWith('|') && !lines[i - 1]?.startsWith('|') ? caption + l : l)).join('\n'), '');
  }

  if (charts.length > 0) {
    out.push('## Charts', '');
    out.push('Each chart is a Vega-Lite spec (`<name>.vl.json`, data inline) beside its SVG rendering: restyle the spec and re-render it with `npx vl2svg <name>.vl.json <name>.svg`, or redraw them all from `results.json` with `npm run bench -- --render --out <this folder>`.', '');
    for (const c of charts) out.push(`![${c}](${c})  `, `[Vega-Lite spec](${c.replace(/\.svg$/, '.vl.json')})`, '');
  }
  if (r.notes.length > 0) {
    out.push('## Notes', '');
    for (const n of r.notes) out.push(`- ${n}`);
    out.push('');
  }
  return out.join('\n');
}

/**
 * The crypto section: the two suite backends side by side per operation,
 * then the peers side by side (noble, sodium and OpenMined psi.js on the
 * like-for-like operations of one request), then every mark with p50 / p95
 * / p99 per call.
 */
function cryptoTables(r: BenchResults, crypto: CryptoMark[], t: typeof table): string[] {
  const out: string[] = [];
  out.push('## Crypto per operation, backends side by side', '');
  out.push(
    'One core, through the suite interface the server and the client call (shared/suite.ts): `noble` is @noble/curves (pure JS, the reference), `sodium` libsodium\'s WASM ristretto255. ' +
      'The backends of one operation were timed in alternation. Batch rows: one call handles the whole batch (one DLEQ proof per batch in voprf); time is per element or number. ' +
      '"sodium / noble" is how many times faster sodium is.' +
      (r.setup.psiJs ? ` psi.js: ${r.setup.psiJs}.` : ''),
    '',
  );
  let oneSample = false;
  const mark = (m: CryptoMark | undefined) => {
    if (!m) return '';
    if (m.samples < 2) oneSample = true;
    return `${us(m.usPerItem)}${m.samples < 2 ? ` ${ONE_SAMPLE}` : ''}`;
  };
  const footnote = () => (oneSample ? ((oneSample = false), [`<sub>${ONE_SAMPLE_NOTE}</sub>`, '']) : []);
  const impls = [...new Set(crypto.map((m) => m.backend))].filter((b) => b !== 'any' && b !== 'psi.js');
  const both = impls.includes('noble') && impls.includes('sodium');
  const operations = [...new Set(crypto.map((m) => m.operation))];
  const get = (operation: string, b: string) => crypto.find((m) => m.operation === operation && m.backend === b);
  const speedup = (slow: CryptoMark | undefined, fast: CryptoMark | undefined) => (slow && fast ? `${(slow.usPerItem / fast.usPerItem).toFixed(1)}x` : '');
  const sideBySide = operations.filter((o) => impls.some((b) => get(o, b)));
  if (sideBySide.length > 0) {
    out.push(
      t(
        ['operation', 'batch', ...impls.map((b) => `${b} µs/item`), ...impls.map((b) => `${b} items/s`), ...(both ? ['sodium / noble'] : [])],
        sideBySide.map((o) => {
          const ms_ = impls.map((b) => get(o, b));
          return [
            o,
            ms_.find(Boolean)?.batch ?? '',
            ...ms_.map(mark),
            ...ms_.map((m) => (m ? n0(m.itemsPerSec) : '')),
            ...(both ? [speedup(get(o, 'noble'), get(o, 'sodium'))] : []),
          ];
        }),
      ),
      '',
      ...footnote(),
    );
  }

  // The peers side by side: what one request of N costs each implementation, per item.
  const psi = crypto.filter((m) => m.backend === 'psi.js');
  const psiServer = psi.find((m) => m.operation.startsWith('psi.js server processRequest'));
  const psiClient = psi.find((m) => m.operation.startsWith('psi.js client createRequest'));
  const configured = (r.parameters.crypto as { psiItems?: number } | undefined)?.psiItems;
  const n = psiServer?.batch ?? configured ?? 100;
  const rows: { role: string; ops: Record<string, string>; peer?: CryptoMark; peerWhy?: string }[] = [
    { role: `server: evaluate a request of ${n}, OPRF (no proof, as psi.js)`, ops: { noble: `server BlindEvaluate (oprf, batch ${n})`, sodium: `server BlindEvaluate (oprf, batch ${n})` }, peer: psiServer },
    { role: `server: evaluate a request of ${n}, VOPRF (one DLEQ proof)`, ops: { noble: `server BlindEvaluate (voprf, batch ${n})`, sodium: `server BlindEvaluate (voprf, batch ${n})` }, peerWhy: 'no verifiable mode' },
    { role: `client: blind the numbers of a request (per number)`, ops: { noble: 'client blind (voprf)', sodium: 'client blind (voprf)' }, peer: psiClient },
  ];
  const peerRows = rows.filter((x) => impls.some((b) => get(x.ops[b] ?? '', b)) || x.peer);
  out.push('### Peers side by side: noble, sodium and OpenMined psi.js', '');
  out.push(
    `µs per item on one core, the same run; psi.js is OpenMined's ECDH PSI over P-256 (WASM), ${psi.length > 0 ? 'timed in alternation with BlindEvaluate of the same batch' : '**not measured in this run** (set `PCD_BENCH_PSI_JS`, see the README)'}. "sodium vs psi.js" is how many times faster sodium is than psi.js per item (below 1x: slower).`,
    '',
  );
  if (peerRows.length > 0) {
    out.push(
      t(
        ['what one request costs', ...impls.map((b) => `${b} µs/item`), 'psi.js µs/item', ...(both ? ['sodium / noble'] : []), ...(impls.includes('sodium') ? ['sodium vs psi.js'] : [])],
        peerRows.map((x) => {
          const ours = impls.map((b) => get(x.ops[b] ?? '', b));
          const sodium = get(x.ops.sodium ?? '', 'sodium');
          return [
            x.role,
            ...ours.map(mark),
            x.peer ? mark(x.peer) : x.peerWhy ? `– (${x.peerWhy})` : psi.length > 0 ? '–' : 'not measured',
            ...(both ? [speedup(get(x.ops.noble ?? '', 'noble'), sodium)] : []),
            ...(impls.includes('sodium') ? [speedup(x.peer, sodium)] : []),
          ];
        }),
        ['l', ...impls.map(() => 'r' as const), 'r', ...(both ? ['r' as const] : []), ...(impls.includes('sodium') ? ['r' as const] : [])],
      ),
      '',
      ...footnote(),
    );
  }
  if (psi.length > 0) {
    out.push(t(['psi.js mark (measured in this run)', 'per item (µs)', 'items/s', 'batch', 'calls timed'], psi.map((m) => [m.name, mark(m), n0(m.itemsPerSec), m.batch, m.ops])), '', ...footnote());
  }
  for (const ref of r.references) {
    out.push(`> **Not measured:** ${ref.name}: ${n0(ref.low)}–${n0(ref.high)} ${ref.unit} (${ref.source}).${ref.why ? ` Why not measured: ${ref.why}.` : ''}`, '');
  }

  out.push('### All crypto marks', '');
  out.push('Per call (one call = one batch). Cheap operations are timed several calls to a sample, so their percentiles are of per-sample averages ("calls per sample" > 1).', '');
  out.push(
    t(
      ['mark', 'backend', 'per item (µs)', 'items/s', 'batch', 'samples', 'calls per sample', 'p50 per call (ms)', 'p95 per call (ms)', 'p99 per call (ms)'],
      crypto.map((m) => {
        if (m.samples < 2) oneSample = true;
        return [m.name, m.backend, us(m.usPerItem), n0(m.itemsPerSec), m.batch, m.samples, m.opsPerSample, ...percentiles({ p50: m.p50Us ?? m.medianUs, p95: m.p95Us, p99: m.p99Us }, m.samples, 1 / 1000)];
      }),
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    ...footnote(),
  );
  out.push('```', ...crypto.map((m) => `${m.name} x ${formatNumber(m.itemsPerSec, m.itemsPerSec >= 100 ? 0 : 1)} ${m.op}s/sec @ ${formatPerItem(m.usPerItem)}/${m.op}`), '```', '');
  return out;
}

/** The crypto section's Privacy Pass marks (bench/crypto.ts), one token per item. */
function tokenCryptoTables(crypto: CryptoMark[], t: typeof table): string[] {
  const marks = crypto.filter((m) => m.group === 'tokens');
  if (marks.length === 0) return [];
  let oneSample = false;
  const rows = marks.map((m) => {
    if (m.samples < 2) oneSample = true;
    return [m.operation, m.impl ?? '', `${us(m.usPerItem)}${m.samples < 2 ? ` ${ONE_SAMPLE}` : ''}`, formatNumber(m.itemsPerSec), m.samples, ...percentiles({ p50: m.p50Us, p95: m.p95Us, p99: m.p99Us }, m.samples, 1 / 1000)];
  });
  return [
    '### Privacy Pass tokens, per token',
    '',
    'One core. The server redeems a token with TokenService.check and then the spend\'s insert, and issues one with BlindSign; the client makes a token request and finalises the response (privacypass-ts over blindrsa-ts, JavaScript big numbers). "bench: mint" is how the benchmark makes the tokens its HTTP load spends (not a cost of the protocol). Percentiles are per call (of per-sample averages when a sample holds several calls).',
    '',
    t(['operation', 'computed by', 'µs per token', 'tokens/s', 'samples', 'p50 (ms)', 'p95 (ms)', 'p99 (ms)'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r']),
    '',
    ...(oneSample ? [`<sub>${ONE_SAMPLE_NOTE}</sub>`, ''] : []),
  ];
}

/** Anonymous requesters: blinded evaluate with a token against the account, issuance, padding, and the issue's targets. */
function tokenTables(r: BenchResults, t: typeof table): string[] {
  const out: string[] = [];
  const http = by<HttpMark>(r, 'http');
  const auth = http.filter((m) => m.group === 'auth');
  const issuance = http.filter((m) => m.group === 'issuance');
  const padding = r.padding ?? [];
  const targets = tokenTargets(r);
  if (auth.length + issuance.length + padding.length + targets.length === 0) return out;
  let oneSample = false;
  const latency = (m: HttpMark) => {
    if (m.requests < 2) oneSample = true;
    return percentiles(m.latencyMs, m.requests);
  };
  const footnote = () => (oneSample ? ((oneSample = false), [`<sub>${ONE_SAMPLE_NOTE}</sub>`, '']) : []);
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
      ...footnote(),
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
      ...footnote(),
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
