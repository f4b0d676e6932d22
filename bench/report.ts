/**
 * Turns results.json into what a writeup pastes: results.md (the machine,
 * then one Markdown table per section, ratios, projections marked as such)
 * and SVG charts with titles, axis labels and units.
 */
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
} from './results.ts';
import { formatBytes, formatNumber, formatSeconds } from './stats.ts';
import { barChart, lineChart } from './svg.ts';

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
const ms = (v: number) => (Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) : '–');
const us = (v: number) => (Number.isFinite(v) ? (v >= 1000 ? formatNumber(v, 0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) : '–');

export function machineLine(r: BenchResults): string {
  const m = r.machine;
  return `${m.cpuModel}, ${m.cores} cores${m.cpuMHz ? ` @ ${m.cpuMHz} MHz` : ''}, ${formatBytes(m.memoryBytes)} RAM, ${m.os} ${m.arch}, Node ${m.node} (V8 ${m.v8})`;
}

function projectionTable(p: Projection): string {
  const value = (row: Projection['rows'][number]) => (row.unit === 's' ? formatSeconds(row.value) : formatBytes(row.value));
  return [
    `**${p.name}** _(projection, not a measurement)_  `,
    `Basis: ${p.basis}.  `,
    `Assumption: ${p.assumption}.`,
    '',
    table(['', 'projected'], p.rows.map((row) => [row.label, value(row)])),
  ].join('\n');
}

export function renderMarkdown(r: BenchResults, charts: readonly string[]): string {
  const out: string[] = [];
  out.push('# pcd benchmark results', '');
  out.push(`Measured ${r.date} on **${machineLine(r)}** (host \`${r.machine.hostname}\`, load average at start ${r.machine.loadavgAtStart.join(' / ')}).  `);
  out.push(
    `Profile \`${r.profile}\`, commit \`${r.tree.commit?.slice(0, 12) ?? 'unknown'}\`${r.tree.dirty ? ' with uncommitted changes' : ''}; ` +
      `${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.  `,
  );
  out.push(`Total run time ${formatSeconds(r.durationSeconds)}. Regenerate with \`npm run bench${r.profile === 'quick' ? ' -- --quick' : ''}\`; machine-readable results in \`results.json\`.`, '');
  out.push('The machines are shared and noisy: compare designs by the ratios below, formed from marks of this same run, rather than by absolute figures across runs.', '');
  for (const s of r.sections.filter((x) => x.carriedOverFrom || x.error)) {
    out.push(`> Section \`${s.section}\`: ${s.error ? `FAILED: ${s.error}` : `carried over from the run of ${s.carriedOverFrom}`}.`);
  }
  if (r.sections.some((x) => x.carriedOverFrom || x.error)) out.push('');

  if (r.ratios.length > 0) {
    out.push('## Ratios (same run): designs, backends, threads, the peer, fairness', '');
    out.push('Server CPU per lookup is read from the server process itself, so it holds even when other work shared the machine; lookups per second also depend on how much CPU the server was given (see "server CPU / wall time" in the HTTP table).', '');
    out.push(table(['ratio', 'value'], r.ratios.map((x) => [x.name, `${x.value >= 10 ? formatNumber(x.value, 0) : x.value.toFixed(2)}x`])), '');
  }

  const crypto = by<CryptoMark>(r, 'crypto');
  if (crypto.length > 0) {
    out.push('## Crypto per operation, backends side by side', '');
    out.push(
      'One core, through the suite interface the server and the client call (shared/suite.ts): `noble` is @noble/curves (pure JS, the reference), `sodium` libsodium\'s WASM ristretto255. ' +
        'The backends of one operation were timed in alternation. Batch rows: one call handles the whole batch (one DLEQ proof per batch in voprf); time is per element or number. ' +
        '"sodium / noble" is how many times faster sodium is.' +
        (r.setup.psiJs ? ` psi.js: ${r.setup.psiJs}.` : ''),
      '',
    );
    const impls = [...new Set(crypto.map((m) => m.backend))].filter((b) => b !== 'any' && b !== 'psi.js');
    const operations = [...new Set(crypto.map((m) => m.operation))];
    const get = (operation: string, b: string) => crypto.find((m) => m.operation === operation && m.backend === b);
    const sideBySide = operations.filter((o) => impls.some((b) => get(o, b)));
    if (sideBySide.length > 0) {
      out.push(
        table(
          ['operation', 'batch', ...impls.map((b) => `${b} µs/item`), ...impls.map((b) => `${b} items/s`), ...(impls.includes('noble') && impls.includes('sodium') ? ['sodium / noble'] : [])],
          sideBySide.map((o) => {
            const ms_ = impls.map((b) => get(o, b));
            const n = get(o, 'noble');
            const sd = get(o, 'sodium');
            return [
              o,
              ms_.find(Boolean)?.batch ?? '',
              ...ms_.map((m) => (m ? us(m.usPerItem) : '')),
              ...ms_.map((m) => (m ? n0(m.itemsPerSec) : '')),
              ...(impls.includes('noble') && impls.includes('sodium') ? [n && sd ? `${(n.usPerItem / sd.usPerItem).toFixed(1)}x` : ''] : []),
            ];
          }),
        ),
        '',
      );
    }
    const peers = crypto.filter((m) => m.backend === 'psi.js');
    if (peers.length > 0 || r.references.length > 0) {
      out.push('### The peer: OpenMined psi.js', '');
      if (peers.length > 0) {
        out.push(table(['mark (measured in this run)', 'per item (µs)', 'items/s', 'batch', 'calls timed'], peers.map((m) => [m.name, us(m.usPerItem), n0(m.itemsPerSec), m.batch, m.ops])), '');
      }
      for (const ref of r.references) {
        out.push(`> **Not measured:** ${ref.name}: ${n0(ref.low)}–${n0(ref.high)} ${ref.unit} (${ref.source}).${ref.why ? ` Why not measured: ${ref.why}.` : ''}`, '');
      }
    }
    out.push('All crypto marks:', '');
    out.push(
      table(
        ['mark', 'backend', 'per item (µs)', 'items/s', 'batch', 'calls timed', 'median per call (ms)', 'p99 per call (ms)'],
        crypto.map((m) => [m.name, m.backend, us(m.usPerItem), n0(m.itemsPerSec), m.batch, m.ops, ms(m.medianUs / 1000), ms(m.p99Us / 1000)]),
        ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
    );
    out.push('```', ...crypto.map((m) => `${m.name} x ${formatNumber(m.itemsPerSec, m.itemsPerSec >= 100 ? 0 : 1)} ${m.op}s/sec @ ${us(m.usPerItem)} µs/${m.op}`), '```', '');
  }

  const http = by<HttpMark>(r, 'http');
  if (http.length > 0) {
    out.push('## HTTP lookups per design', '');
    for (const [k, v] of Object.entries(r.setup)) out.push(`- ${k}: ${v}`);
    out.push('');
    const designs = http.filter((m) => (m.group ?? 'designs') === 'designs');
    const variants = http.filter((m) => m.group === 'backends' || m.group === 'threads');
    const modes = http.filter((m) => m.group === 'modes');
    out.push(
      table(
        ['design', 'request', 'endpoint', 'c', 'requests', 'failed', 'lookups/s', 'requests/s', 'p50 (ms)', 'p99 (ms)', 'server CPU per lookup (µs)', 'server CPU / wall time'],
        designs.map((m) => [
          m.design,
          m.shape + (m.phase === 'latency' ? ' (idle)' : ''),
          m.endpoint,
          m.concurrency,
          m.requests,
          m.errors,
          n0(m.lookupsPerSec),
          formatNumber(m.requestsPerSec),
          ms(m.latencyMs.p50),
          ms(m.latencyMs.p99),
          us(m.serverCpuUsPerLookup),
          `${Math.round(m.serverCpuShare * 100)} %`,
        ]),
        ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
    );
    if (modes.length > 0) {
      out.push('### Single lookups with the epoch in the other OPRF mode', '');
      out.push('A second server, the same backend, threads, directory and prepared requests, whose blinded epochs are in the other mode; plain and blinded single lookups on it take turns.', '');
      out.push(
        table(
          ['design', 'request', 'c', 'requests', 'failed', 'lookups/s', 'p50 (ms)', 'p99 (ms)', 'server CPU per lookup (µs)', 'server CPU / wall time'],
          modes.map((m) => [m.name, m.shape, m.concurrency, m.requests, m.errors, n0(m.lookupsPerSec), ms(m.latencyMs.p50), ms(m.latencyMs.p99), us(m.serverCpuUsPerLookup), `${Math.round(m.serverCpuShare * 100)} %`]),
          ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
        ),
        '',
      );
    }
    if (variants.length > 0) {
      out.push('### Blinded evaluate: backend and evaluator threads', '');
      out.push('Servers that differ in one setting (`--backend`, `--eval-threads`), the same directory and prepared requests, taking turns. elements/s = evaluated elements per second.', '');
      out.push(
        table(
          ['comparing', 'backend', 'eval threads', 'elements / request', 'c', 'requests', 'failed', 'elements/s', 'p50 (ms)', 'p99 (ms)', 'server CPU per element (µs)', 'server CPU / wall time'],
          variants.map((m) => [
            m.group === 'backends' ? 'backend' : 'threads',
            m.backend,
            m.evalThreads,
            m.numbersPerRequest,
            m.concurrency,
            m.requests,
            m.errors,
            n0(m.lookupsPerSec),
            ms(m.latencyMs.p50),
            ms(m.latencyMs.p99),
            us(m.serverCpuUsPerLookup),
            `${Math.round(m.serverCpuShare * 100)} %`,
          ]),
          ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
        ),
        '',
      );
    }
  }

  const fair = by<FairnessMark>(r, 'fairness');
  if (fair.length > 0) {
    out.push('## Fairness: a light requester beside a flood', '');
    out.push(
      table(
        ['phase', 'light: sent', 'light: 200', 'light: 503', 'light p50 (ms)', 'light p99 (ms)', 'light max (ms)', 'flooder: 200', 'flooder: 503', 'flooder elements/s', 'Retry-After seen (s)'],
        fair.map((m) => [
          m.phase === 'flood' ? `under a flood (${m.flooder?.inFlight} x ${m.flooder?.elementsPerRequest} elements in flight)` : 'idle server',
          m.light.sent,
          m.light.ok,
          m.light.rejected503,
          ms(m.light.latencyMs.p50),
          ms(m.light.latencyMs.p99),
          ms(m.light.latencyMs.max),
          m.flooder?.ok ?? '',
          m.flooder?.rejected503 ?? '',
          m.flooder ? n0(m.flooder.elementsPerSec) : '',
          m.flooder?.retryAfterSeconds ? `${m.flooder.retryAfterSeconds.min}–${m.flooder.retryAfterSeconds.max}` : '',
        ]),
        ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
      ),
      '',
    );
  }

  const bw = by<BandwidthMark>(r, 'bandwidth');
  if (bw.length > 0) {
    out.push(`## Bytes on the wire per lookup (directory of ${n0(bw[0]!.directorySize)} numbers)`, '');
    out.push(
      table(
        ['design', 'lookups', 'requests', 'wire bytes / lookup', 'body bytes / lookup', 'wire sent', 'wire received', 'config fetch (once per epoch)'],
        bw.map((m) => [
          m.design === 'blinded' ? `blinded b=${m.bucketBits}` : m.design,
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
    for (const p of r.projections.filter((x) => x.section === 'bandwidth')) out.push(projectionTable(p), '');
  }

  const build = by<BuildMark>(r, 'build');
  if (build.length > 0) {
    out.push('## Directory build time and server memory', '');
    out.push(
      table(
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
    for (const p of r.projections.filter((x) => x.section === 'build')) out.push(projectionTable(p), '');
  }

  const scale = by<ScaleMark>(r, 'scale');
  if (scale.length > 0) {
    out.push('## Scale: seeding, serving, kill -9 and restart', '');
    out.push(
      table(
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
      out.push(table(['target', 'limit', 'measured', 'met'], targets.map((t) => [t.target, t.limit, t.measured, t.met ? 'met' : '**not met**']), ['l', 'l', 'l', 'l']), '');
    }
    const judged = new Set(scale.map((m) => m.numbers));
    const missing = [1_000_000, 10_000_000].filter((n) => !judged.has(n));
    if (missing.length > 0) out.push(`Not judged in this run (size not run): ${missing.map((n) => `${n0(n)} numbers`).join(', ')}.`, '');
  }

  const rev = by<ReverseMark>(r, 'reverse');
  if (rev.length > 0) {
    out.push('## Reversing a hashed log', '');
    out.push('A log of SHA-256(E.164) hashes, half of numbers inside the range and half outside, reversed by enumerating the range on one core.', '');
    out.push(
      table(
        ['range', 'range size', 'enumerated', 'hasher', 'time', 'hashes/s', 'recovered'],
        rev.map((m) => [m.range, n0(m.rangeSize), n0(m.enumerated), m.hasher, formatSeconds(m.seconds), n0(m.hashesPerSec), `${m.recovered} / ${m.targetsInRange}`]),
        ['l', 'r', 'r', 'l', 'r', 'r', 'r'],
      ),
      '',
    );
    for (const p of r.projections.filter((x) => x.section === 'reverse')) out.push(projectionTable(p), '');
  }

  if (charts.length > 0) {
    out.push('## Charts', '');
    for (const c of charts) out.push(`![${c}](${c})`, '');
  }
  if (r.notes.length > 0) {
    out.push('## Notes', '');
    for (const n of r.notes) out.push(`- ${n}`);
    out.push('');
  }
  return out.join('\n');
}

/** The charts this run's marks support: file name to SVG text. */
export function renderCharts(r: BenchResults): Map<string, string> {
  const charts = new Map<string, string>();
  const machine = `${r.machine.cpuModel}, ${r.machine.cores} cores, Node ${r.machine.node}, ${r.date.slice(0, 10)}`;

  const http = by<HttpMark>(r, 'http').filter((m) => m.phase === 'throughput' && m.shape !== 'bucket' && (m.group ?? 'designs') === 'designs');
  if (http.length > 0) {
    const shapes = [...new Set(http.map((m) => m.shape))];
    const designs = [...new Set(http.map((m) => m.design))];
    const categories = shapes.map((s) => (s === 'single' ? 'single lookup' : `contact sync of ${s.slice(5)}`));
    charts.set(
      'http-lookups.svg',
      barChart({
        title: 'HTTP lookups per second, by design',
        subtitle: machine,
        xLabel: 'request shape (numbers per request)',
        yLabel: 'lookups per second (log scale)',
        categories,
        series: designs.map((d) => ({ name: d, values: shapes.map((s) => http.find((m) => m.design === d && m.shape === s)?.lookupsPerSec) })),
        log: true,
        note: 'Server in its own process on 127.0.0.1; blinded = evaluate requests (elements blinded ahead); bucket fetches separate.',
      }),
    );
    charts.set(
      'http-server-cpu.svg',
      barChart({
        title: 'Server CPU time per lookup, by design',
        subtitle: machine,
        xLabel: 'request shape (numbers per request)',
        yLabel: 'server CPU per lookup, µs (log scale)',
        categories,
        series: designs.map((d) => ({ name: d, values: shapes.map((s) => http.find((m) => m.design === d && m.shape === s)?.serverCpuUsPerLookup) })),
        log: true,
        note: 'process.cpuUsage() of the server process (user + system) over each phase, divided by the numbers answered.',
      }),
    );
  }

  const crypto = by<CryptoMark>(r, 'crypto');
  if (crypto.length > 0) {
    // One implementation per operation: the server's default backend, and the backend-independent work.
    const main = crypto.filter((m) => m.backend === 'sodium' || m.backend === 'any');
    const shown = main.length > 0 ? main : crypto;
    charts.set(
      'crypto.svg',
      barChart({
        title: 'Crypto cost per number or element, by operation',
        subtitle: `${shown.some((m) => m.backend === 'sodium') ? 'sodium backend (libsodium WASM)' : 'one backend'}; ${machine}`,
        xLabel: 'operation',
        yLabel: 'µs per item, one core (log scale)',
        categories: shown.map((m) => shortCryptoName(m.operation)),
        series: [{ name: 'µs per item', values: shown.map((m) => m.usPerItem) }],
        log: true,
        note: 'Batch operations: one call per batch; one DLEQ proof per batch in voprf, so its cost per element falls with the batch.',
      }),
    );
    const impls: string[] = [...new Set(crypto.map((m) => m.backend))].filter((b) => b !== 'any' && b !== 'psi.js');
    const ops = [...new Set(crypto.filter((m) => impls.includes(m.backend)).map((m) => m.operation))];
    const psi = crypto.filter((m) => m.backend === 'psi.js');
    if (impls.length > 0 && ops.length > 0) {
      const categories = [...ops.map(shortCryptoName), ...psi.map((m) => shortCryptoName(m.operation))];
      charts.set(
        'crypto-backends.svg',
        barChart({
          title: 'Crypto per item: noble vs sodium (and psi.js, measured in the same run)',
          subtitle: machine,
          xLabel: 'operation',
          yLabel: 'µs per item, one core (log scale)',
          categories,
          series: [
            ...impls.map((b) => ({ name: b, values: [...ops.map((o) => crypto.find((m) => m.operation === o && m.backend === b)?.usPerItem), ...psi.map(() => undefined)] })),
            ...(psi.length > 0 ? [{ name: 'psi.js', values: [...ops.map(() => undefined), ...psi.map((m) => m.usPerItem)] }] : []),
          ],
          log: true,
          slantLabels: true,
          note: 'Backends of one operation timed in alternation; psi.js = OpenMined ECDH PSI over P-256 (WASM), per item of a 100-item request.',
        }),
      );
    }
  }

  const variants = by<HttpMark>(r, 'http').filter((m) => m.group === 'backends' || m.group === 'threads');
  if (variants.length > 0) {
    const label = (m: HttpMark) => `${m.numbersPerRequest}/req, c=${m.concurrency}`;
    const categories = [...new Set(variants.map((m) => `${m.group === 'backends' ? 'backend' : 'threads'}: ${label(m)}`))];
    const seriesNames = [...new Set(variants.map((m) => `${m.backend}, ${m.evalThreads} thread${m.evalThreads === 1 ? '' : 's'}`))];
    charts.set(
      'http-backends.svg',
      barChart({
        title: 'Blinded evaluate over HTTP: elements per second by backend and evaluator threads',
        subtitle: machine,
        xLabel: 'comparison: elements per request, requests in flight',
        yLabel: 'elements evaluated per second',
        categories,
        series: seriesNames.map((name) => ({
          name,
          values: categories.map((c) => variants.find((m) => `${m.group === 'backends' ? 'backend' : 'threads'}: ${label(m)}` === c && `${m.backend}, ${m.evalThreads} thread${m.evalThreads === 1 ? '' : 's'}` === name)?.lookupsPerSec),
        })),
        note: 'One server child per setting (--backend, --eval-threads), the same prepared requests; the load generator shares the cores.',
      }),
    );
  }

  const fair = by<FairnessMark>(r, 'fairness');
  if (fair.length > 0) {
    charts.set(
      'fairness.svg',
      barChart({
        title: 'Latency of 1-element evaluate requests, idle vs beside a flood',
        subtitle: machine,
        xLabel: 'what the server was doing',
        yLabel: 'latency per request, ms (log scale)',
        categories: fair.map((m) => (m.phase === 'flood' ? `beside ${m.flooder?.inFlight} x ${m.flooder?.elementsPerRequest}-element requests` : 'idle')),
        series: (['p50', 'p99', 'max'] as const).map((k) => ({ name: k, values: fair.map((m) => m.light.latencyMs[k]) })),
        log: true,
        note: 'Another account floods evaluate (retrying on 503); fair admission should keep the light requester answered.',
      }),
    );
  }

  const scale = by<ScaleMark>(r, 'scale');
  if (scale.length > 0) {
    charts.set(
      'scale.svg',
      barChart({
        title: 'Seeding, time to serve and restart after kill -9, by directory size',
        subtitle: machine,
        xLabel: 'registered numbers',
        yLabel: 'seconds (log scale)',
        categories: scale.map((m) => formatNumber(m.numbers, 0)),
        series: [
          { name: 'seed', values: scale.map((m) => m.seedSeconds) },
          { name: 'fork to blinded serving', values: scale.map((m) => m.blindedServingSeconds) },
          { name: 'restart to blinded serving', values: scale.map((m) => m.restart?.blindedServingSeconds) },
        ],
        log: true,
        note: 'One child serving plain, hashed and blinded; serving = first 200 of GET /v1/blinded/config; restart on the same folder after SIGKILL.',
      }),
    );
  }

  const bw = by<BandwidthMark>(r, 'bandwidth');
  const blinded = bw.filter((m) => m.design === 'blinded');
  if (blinded.length > 0) {
    const bits = [...new Set(blinded.map((m) => m.bucketBits!))].sort((a, b) => a - b);
    const lookups = [...new Set(blinded.map((m) => m.lookups))].sort((a, b) => a - b);
    const label = (l: number) => (l === 1 ? 'single lookup' : `sync of ${l}`);
    const projBits = r.projections.filter((p) => p.section === 'bandwidth').flatMap((p) => p.rows.map((x) => x.x));
    const allBits = [...new Set([...bits, ...projBits])].sort((a, b) => a - b);
    const series: { name: string; points: [number, number][]; dashed?: boolean }[] = lookups.map((l) => ({
      name: `blinded, ${label(l)}`,
      points: blinded.filter((m) => m.lookups === l).map((m) => [m.bucketBits!, m.wireBytesPerLookup] as [number, number]),
    }));
    for (const d of ['plain', 'hashed'] as const) {
      const m = bw.find((x) => x.design === d && x.lookups === 1);
      if (m) series.push({ name: `${d}, single lookup`, points: [[allBits[0]!, m.wireBytesPerLookup], [allBits[allBits.length - 1]!, m.wireBytesPerLookup]] });
    }
    for (const p of r.projections.filter((x) => x.section === 'bandwidth')) {
      const n = /at (\S+) registered/.exec(p.name)?.[1] ?? '';
      series.push({ name: `model, ${n} numbers`, points: p.rows.map((x) => [x.x, x.value]), dashed: true });
    }
    charts.set(
      'bandwidth.svg',
      lineChart({
        title: 'Bytes on the wire per lookup vs bucket bits',
        subtitle: `measured over a directory of ${formatNumber(blinded[0]!.directorySize, 0)} numbers; dashed: model for larger directories`,
        xLabel: 'bucketBits b (anonymity set = numbering plan / 2^b)',
        yLabel: 'wire bytes per lookup (log scale)',
        series,
        logY: true,
        xTicks: allBits,
        note: 'HTTP/1.1 headers and bodies both ways, cold client, config fetch excluded. Larger b: smaller buckets, smaller anonymity set.',
      }),
    );
  }

  const build = by<BuildMark>(r, 'build').filter((m) => !m.name.endsWith('(1 thread)'));
  if (build.length > 0) {
    const designs = [...new Set(build.map((m) => m.design))];
    const series: { name: string; points: [number, number][]; dashed?: boolean }[] = designs.map((d) => ({
      name: d === 'directory' ? 'directory index' : d,
      points: build.filter((m) => m.design === d).map((m) => [m.numbers, m.seconds] as [number, number]),
    }));
    const proj = r.projections.filter((p) => p.section === 'build' && p.rows.every((x) => x.unit === 's'));
    const cores = r.machine.cores;
    const projected = proj
      .map((p) => [Number(/at ([\d,]+) numbers/.exec(p.name)?.[1]?.replace(/,/g, '')), p.rows.find((x) => x.x === cores)?.value] as const)
      .filter((x): x is readonly [number, number] => Number.isFinite(x[0]) && x[1] !== undefined);
    const lastBlinded = build.filter((m) => m.design === 'blinded').sort((a, b) => b.numbers - a.numbers)[0];
    if (projected.length > 0 && lastBlinded) {
      series.push({ name: `blinded, projected (${cores} cores)`, points: [[lastBlinded.numbers, lastBlinded.seconds], ...projected.map(([n, s]) => [n, s] as [number, number])], dashed: true });
    }
    charts.set(
      'build-time.svg',
      lineChart({
        title: 'Server open time (directory load + design build) vs directory size',
        subtitle: machine,
        xLabel: 'registered numbers (log scale)',
        yLabel: 'seconds (log scale)',
        series,
        logX: true,
        logY: true,
        note: 'blinded evaluates RFC 9497 Evaluate once per number; dashed: projection at the measured per-core rate.',
      }),
    );
    charts.set(
      'memory.svg',
      lineChart({
        title: 'Server memory for the directory vs directory size',
        subtitle: machine,
        xLabel: 'registered numbers (log scale)',
        yLabel: 'typed-array bytes added (log scale)',
        series: designs.map((d) => ({
          name: d === 'directory' ? 'directory index' : d,
          points: build.filter((m) => m.design === d && m.arrayBuffersDeltaBytes > 0).map((m) => [m.numbers, m.arrayBuffersDeltaBytes] as [number, number]),
        })),
        logX: true,
        logY: true,
        note: 'process.memoryUsage().arrayBuffers after minus before opening the server (after GC): the hash tables and buckets.',
      }),
    );
  }

  const rev = by<ReverseMark>(r, 'reverse').filter((m) => m.hasher.startsWith('node:crypto'));
  if (rev.length > 0) {
    const proj = r.projections.find((p) => p.section === 'reverse');
    const categories = [...rev.map((m) => `${m.range}${m.enumerated < m.rangeSize ? ' (part)' : ''}`), ...(proj?.rows.map((x) => x.label) ?? [])];
    charts.set(
      'reverse.svg',
      barChart({
        title: 'Time to reverse a hashed log, by numbering-plan range',
        subtitle: machine,
        xLabel: 'range enumerated',
        yLabel: 'seconds on one core (log scale)',
        categories: categories.map((c) => (c.endsWith(' (part)') ? c : c.replace(/ \(.*\)$/, ''))),
        series: [
          { name: 'measured', values: [...rev.map((m) => m.seconds), ...(proj?.rows.map(() => undefined) ?? [])] },
          { name: 'projected', values: [...rev.map(() => undefined), ...(proj?.rows.map((x) => x.value) ?? [])] },
        ],
        log: true,
        note: 'SHA-256 via node:crypto on one core; projected = range size / measured rate, divided by the cores or GPUs an attacker brings.',
      }),
    );
  }
  return charts;
}

function shortCryptoName(name: string): string {
  return name
    .replace('normalizeNumber (E.164 input)', 'normalize E.164')
    .replace('normalizeNumber (national input + region)', 'normalize national')
    .replace('hashed: SHA-256 of a number', 'SHA-256')
    .replace(/blinded: bucket id \(b = \d+\)/, 'bucket id')
    .replace('server Evaluate: directory build (voprf)', 'Evaluate')
    .replace(/server BlindEvaluate \((\w+), batch (\d+)\)/, 'BlindEval $1 ×$2')
    .replace(/server evaluateChunk x(\d+) \+ proveComposite \((\w+), batch (\d+)\)/, 'split $2 ×$3 /$1')
    .replace(/psi\.js server processRequest \(batch (\d+)\)/, 'psi.js server ×$1')
    .replace(/psi\.js client createRequest \(batch (\d+)\)/, 'psi.js client ×$1')
    .replace(/client finalize \((\w+), batch (\d+)(, proof verified)?\)/, 'finalize $1 ×$2')
    .replace(/client blind \((\w+)\)/, 'blind $1')
    .replace(/client bucket search \((\d+) tags\)/, 'search $1');
}
