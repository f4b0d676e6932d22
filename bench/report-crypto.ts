/**
 * The report's crypto tables (bench/report.ts; the marks from bench/crypto.ts):
 * the suite backends side by side per operation, the peers side by side
 * (noble, sodium and OpenMined psi.js), every mark with its percentiles,
 * and the Privacy Pass tokens per token.
 */
import type { BenchResults, CryptoMark } from './results.ts';
import { formatNumber, formatPerItem } from './stats.ts';
import { ONE_SAMPLE, OneSampleNote, n0, us, type Table } from './report-cells.ts';

/**
 * The crypto section: the two suite backends side by side per operation,
 * then the peers side by side (noble, sodium and OpenMined psi.js on the
 * like-for-like operations of one request), then every mark with p50 / p95
 * / p99 per call.
 */
export function cryptoTables(r: BenchResults, crypto: CryptoMark[], t: Table): string[] {
  const note = new OneSampleNote();
  const impls = [...new Set(crypto.map((m) => m.backend))].filter((b) => b !== 'any' && b !== 'psi.js');
  return [
    '## Crypto per operation, backends side by side',
    '',
    'One core, through the suite interface the server and the client call (shared/suite.ts): `noble` is @noble/curves (pure JS, the reference), `sodium` libsodium\'s WASM ristretto255. ' +
      'The backends of one operation were timed in alternation. Batch rows: one call handles the whole batch (one DLEQ proof per batch in voprf); time is per element or number. ' +
      '"sodium / noble" is how many times faster sodium is.' +
      (r.setup.psiJs ? ` psi.js: ${r.setup.psiJs}.` : ''),
    '',
    ...backendsSideBySide(crypto, impls, t, note),
    ...peersSideBySide(r, crypto, impls, t, note),
    ...allCryptoMarks(crypto, t, note),
  ];
}

/** The crypto mark of `operation` by backend `b`, if the run has it. */
function cryptoMark(crypto: readonly CryptoMark[], operation: string, b: string): CryptoMark | undefined {
  return crypto.find((m) => m.operation === operation && m.backend === b);
}

/** How many times faster `fast` is than `slow`, per item. */
function speedup(slow: CryptoMark | undefined, fast: CryptoMark | undefined): string {
  return slow && fast ? `${(slow.usPerItem / fast.usPerItem).toFixed(1)}x` : '';
}

/** A mark's µs per item, marked when of one sample. */
function usCell(m: CryptoMark | undefined, note: OneSampleNote): string {
  if (!m) return '';
  note.see(m.samples);
  return `${us(m.usPerItem)}${m.samples < 2 ? ` ${ONE_SAMPLE}` : ''}`;
}

/** Each operation with a backend: µs per item and items per second per backend, and sodium / noble. */
function backendsSideBySide(crypto: readonly CryptoMark[], impls: readonly string[], t: Table, note: OneSampleNote): string[] {
  const both = impls.includes('noble') && impls.includes('sodium');
  const operations = [...new Set(crypto.map((m) => m.operation))];
  const sideBySide = operations.filter((o) => impls.some((b) => cryptoMark(crypto, o, b)));
  if (sideBySide.length === 0) return [];
  return [
    t(
      ['operation', 'batch', ...impls.map((b) => `${b} µs/item`), ...impls.map((b) => `${b} items/s`), ...(both ? ['sodium / noble'] : [])],
      sideBySide.map((o) => {
        const ms_ = impls.map((b) => cryptoMark(crypto, o, b));
        return [
          o,
          ms_.find(Boolean)?.batch ?? '',
          ...ms_.map((m) => usCell(m, note)),
          ...ms_.map((m) => (m ? n0(m.itemsPerSec) : '')),
          ...(both ? [speedup(cryptoMark(crypto, o, 'noble'), cryptoMark(crypto, o, 'sodium'))] : []),
        ];
      }),
    ),
    '',
    ...note.footnote(),
  ];
}

/** The peers side by side: what one request of N costs each implementation, per item; then the psi.js marks, and the figures not measured. */
function peersSideBySide(r: BenchResults, crypto: readonly CryptoMark[], impls: readonly string[], t: Table, note: OneSampleNote): string[] {
  const out: string[] = [];
  const both = impls.includes('noble') && impls.includes('sodium');
  const get = (operation: string, b: string) => cryptoMark(crypto, operation, b);
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
            ...ours.map((m) => usCell(m, note)),
            x.peer ? usCell(x.peer, note) : x.peerWhy ? `– (${x.peerWhy})` : psi.length > 0 ? '–' : 'not measured',
            ...(both ? [speedup(get(x.ops.noble ?? '', 'noble'), sodium)] : []),
            ...(impls.includes('sodium') ? [speedup(x.peer, sodium)] : []),
          ];
        }),
        ['l', ...impls.map(() => 'r' as const), 'r', ...(both ? ['r' as const] : []), ...(impls.includes('sodium') ? ['r' as const] : [])],
      ),
      '',
      ...note.footnote(),
    );
  }
  if (psi.length > 0) {
    out.push(t(['psi.js mark (measured in this run)', 'per item (µs)', 'items/s', 'batch', 'calls timed'], psi.map((m) => [m.name, usCell(m, note), n0(m.itemsPerSec), m.batch, m.ops])), '', ...note.footnote());
  }
  for (const ref of r.references) {
    out.push(`> **Not measured:** ${ref.name}: ${n0(ref.low)}–${n0(ref.high)} ${ref.unit} (${ref.source}).${ref.why ? ` Why not measured: ${ref.why}.` : ''}`, '');
  }
  return out;
}

/** Every crypto mark with its percentiles per call, then the same as benchmark lines. */
function allCryptoMarks(crypto: readonly CryptoMark[], t: Table, note: OneSampleNote): string[] {
  return [
    '### All crypto marks',
    '',
    'Per call (one call = one batch). Cheap operations are timed several calls to a sample, so their percentiles are of per-sample averages ("calls per sample" > 1).',
    '',
    t(
      ['mark', 'backend', 'per item (µs)', 'items/s', 'batch', 'samples', 'calls per sample', 'p50 per call (ms)', 'p95 per call (ms)', 'p99 per call (ms)'],
      crypto.map((m) => [m.name, m.backend, us(m.usPerItem), n0(m.itemsPerSec), m.batch, m.samples, m.opsPerSample, ...note.percentiles({ p50: m.p50Us ?? m.medianUs, p95: m.p95Us, p99: m.p99Us }, m.samples, 1 / 1000)]),
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
    '',
    ...note.footnote(),
    '```',
    ...crypto.map((m) => `${m.name} x ${formatNumber(m.itemsPerSec, m.itemsPerSec >= 100 ? 0 : 1)} ${m.op}s/sec @ ${formatPerItem(m.usPerItem)}/${m.op}`),
    '```',
    '',
  ];
}

/** The crypto section's Privacy Pass marks (bench/crypto.ts), one token per item. */
export function tokenCryptoTables(crypto: CryptoMark[], t: Table): string[] {
  const marks = crypto.filter((m) => m.group === 'tokens');
  if (marks.length === 0) return [];
  const note = new OneSampleNote();
  const rows = marks.map((m) => [m.operation, m.impl ?? '', usCell(m, note), formatNumber(m.itemsPerSec), m.samples, ...note.percentiles({ p50: m.p50Us, p95: m.p95Us, p99: m.p99Us }, m.samples, 1 / 1000)]);
  return [
    '### Privacy Pass tokens, per token',
    '',
    'One core. The server redeems a token with TokenService.check and then the spend\'s insert, and issues one with BlindSign; the client makes a token request and finalises the response (privacypass-ts over blindrsa-ts, JavaScript big numbers). "bench: mint" is how the benchmark makes the tokens its HTTP load spends (not a cost of the protocol). Percentiles are per call (of per-sample averages when a sample holds several calls).',
    '',
    t(['operation', 'computed by', 'µs per token', 'tokens/s', 'samples', 'p50 (ms)', 'p95 (ms)', 'p99 (ms)'], rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r']),
    '',
    ...note.footnote(),
  ];
}
