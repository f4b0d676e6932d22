/**
 * What the page shows for one design's lookup: the answers, what went over
 * the wire, and (operator view) what the lookup left in that design's query
 * log, with what that means for a pen-register order:
 *
 *   plain    the row: number, account, email, IP
 *   hashed   the row with the hash, and the hash reversed by enumeration, timed and extrapolated
 *   blinded  requester, IP, element count, epoch, bucket ids, and that the number is nowhere
 *
 * The blinded log panel is built from the trace reply and the wire counts
 * only: nothing the page knows about the looked-up numbers goes into it.
 */
import type { Trace, TraceTable } from './api.ts';
import { code, h, type Child } from './dom.ts';
import { formatBytes, formatCount, formatDuration, formatInt, formatMinute, formatRate, formatTime, plural } from './format.ts';
import { CAPABILITIES, ErrorCode, type DesignName, type PcdError } from './lib.ts';
import { displayNumber, planOf } from './numbers.ts';
import type { DesignRun, WireExchange } from './run.ts';

/** One line per design: what leaves the phone for each number. */
export const DESIGN_INFO: Readonly<Record<DesignName, { tagline: string }>> = {
  plain: { tagline: 'the number leaves the phone' },
  hashed: { tagline: 'SHA-256 of the number leaves the phone' },
  blinded: { tagline: 'a blinded element and a bucket id leave the phone' },
};

const ERROR_HINTS: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.RateLimited]: 'the server rate-limits lookups per account and per IP',
  [ErrorCode.Unauthenticated]: 'the lookup needs an account token',
  [ErrorCode.Forbidden]: 'the server refused this token',
  [ErrorCode.Network]: 'is the server running? npm start or pcd serve starts one',
  [ErrorCode.Unavailable]: 'the server is busy or still building the blinded epoch',
  [ErrorCode.DesignDisabled]: 'this server does not serve that design',
  [ErrorCode.ProofInvalid]: 'the server’s answer did not prove it used the published key: no answer is trusted',
  [ErrorCode.KeyChanged]: 'the server published another key for an epoch this page had pinned',
};

/** A PcdError as the page shows it: its code, status and message, a hint, and when to retry. */
export function errorBlock(e: PcdError, heading?: string, hintOverride?: Child): HTMLElement {
  const hint = hintOverride ?? ERROR_HINTS[e.code];
  return h(
    'div',
    { class: 'problem', 'data-code': e.code },
    h('p', { class: 'problem-head' }, heading ? h('strong', null, heading, ' ') : null, h('code', { class: 'code' }, e.code), e.status ? h('span', { class: 'status' }, ` HTTP ${e.status}`) : null),
    h('p', { class: 'problem-message' }, e.message),
    hint || e.retryAfterSeconds !== undefined
      ? h('p', { class: 'problem-hint' }, hint ?? '', e.retryAfterSeconds !== undefined ? `${hint ? '; ' : ''}try again in ${plural(e.retryAfterSeconds, 'second')}.` : '')
      : null,
  );
}

function wireTotals(wire: readonly WireExchange[]): { requests: number; sent: number; received: number } {
  return wire.reduce((t, x) => ({ requests: t.requests + 1, sent: t.sent + x.sent, received: t.received + x.received }), { requests: 0, sent: 0, received: 0 });
}

function fact(term: string, ...value: Child[]): HTMLElement {
  return h('div', { class: 'fact' }, h('dt', null, term), h('dd', null, ...value));
}

function wireDetails(wire: readonly WireExchange[]): HTMLElement | null {
  if (wire.length === 0) return null;
  return h(
    'details',
    { class: 'wire-detail' },
    h('summary', null, 'each request'),
    h(
      'ol',
      null,
      ...wire.map((x) =>
        h(
          'li',
          null,
          h('code', null, `${x.method} ${x.path}`),
          ' ',
          h('span', { class: 'muted' }, x.status === 0 ? `failed (${x.error ?? 'error'})` : `${x.status}: ${formatBytes(x.sent)} sent, ${formatBytes(x.received)} received`),
        ),
      ),
    ),
  );
}

function answerList(run: DesignRun): HTMLElement {
  if (run.error) return errorBlock(run.error, 'No answer:');
  const results = run.results ?? [];
  return h(
    'ol',
    { class: 'answer-list' },
    ...results.map((r) => {
      const messenger = r.capabilities.length > 0;
      return h(
        'li',
        { class: `answer ${messenger ? 'is-messenger' : 'is-sms'}`, 'data-answer': messenger ? 'messenger' : 'sms' },
        h('span', { class: 'num' }, displayNumber(r.number)),
        h(
          'span',
          { class: 'verdict' },
          h('span', { class: 'badge' }, messenger ? 'messenger' : 'SMS only'),
          messenger ? h('ul', { class: 'chips', 'aria-label': 'capabilities' }, ...r.capabilities.map((c) => h('li', { class: 'chip' }, c))) : null,
        ),
      );
    }),
  );
}

// ------------------------------------------------------------------ log rows

function capabilityText(mask: number): string {
  if (mask === 0) return '0: not registered (SMS only)';
  const names = CAPABILITIES.filter((_, j) => (mask & (1 << j)) !== 0);
  return `${mask}: ${names.join(', ')}`;
}

function cellText(table: TraceTable, holds: string, v: string | number | null): string {
  if (v === null) return '—';
  if (holds === 'time' && typeof v === 'number') return table.kind === 'counts' ? `${formatMinute(v)}–${formatMinute(v + 60_000)}` : formatTime(v);
  if (holds === 'answer' && typeof v === 'number') return capabilityText(v);
  return String(v);
}

const HOLDS_CLASS: Readonly<Record<string, string>> = {
  number: 'leak',
  'number-hash': 'leak',
  account: 'who',
  email: 'who',
  ip: 'who',
};

/** One table of the trace, each row a small record (they fit a narrow column, side by side). */
function logTable(table: TraceTable, extra?: (holds: string, v: string | number | null) => Child): HTMLElement {
  // The server sends the newest first; shown in the order they happened, as the answers are.
  const rows = [...table.rows].reverse();
  const shown = rows.slice(0, 20);
  return h(
    'section',
    { class: 'log-table', 'data-table': table.name },
    h('h4', null, code(table.name), ' ', h('span', { class: 'kind' }, table.kind === 'counts' ? 'counts per minute' : 'one row per event')),
    h('p', { class: 'desc' }, table.description),
    rows.length === 0
      ? h('p', { class: 'muted' }, 'no rows for this lookup')
      : h(
          'ol',
          { class: 'log-rows' },
          ...shown.map((row) =>
            h(
              'li',
              { class: 'log-row' },
              h(
                'dl',
                null,
                ...table.columns.map((c, i) => {
                  const v = row[i] ?? null;
                  return h(
                    'div',
                    { class: `kv ${HOLDS_CLASS[c.holds] ?? ''}`.trim(), 'data-holds': c.holds },
                    h('dt', null, c.name),
                    h('dd', null, h('span', { class: 'value' }, cellText(table, c.holds, v)), extra?.(c.holds, v) ?? null),
                  );
                }),
              ),
            ),
          ),
        ),
    rows.length > shown.length ? h('p', { class: 'muted' }, `and ${plural(rows.length - shown.length, 'more row')}`) : null,
  );
}

function column(table: TraceTable | undefined, holds: string): number {
  return table ? table.columns.findIndex((c) => c.holds === holds) : -1;
}

// ------------------------------------------------------------------ per design

function plainLog(run: DesignRun, trace: Trace): Child[] {
  const table = trace.tables[0];
  return [
    h(
      'p',
      { class: 'verdict-line leak-line' },
      h('strong', null, 'The log holds the number. '),
      'Each looked-up number is stored as it was asked, beside who asked (account and email) and from where (IP). A pen-register order is answered by reading these rows.',
    ),
    ...trace.tables.map((t) => logTable(t)),
    table && table.rows.length === 0 && !run.error ? h('p', { class: 'muted' }, 'The logs are written in batches; none has reached the database yet.') : null,
  ];
}

function hashedLog(run: DesignRun, trace: Trace): Child[] {
  const reversals = run.trace?.reversals ?? [];
  const reversed = new Map<string, string>();
  for (const r of reversals) for (const [hash, n] of Object.entries(r.numbers)) reversed.set(hash, n);
  const table = trace.tables[0];
  const hashCol = column(table, 'number-hash');
  const logged = table ? table.rows.map((r) => String(r[hashCol] ?? '')) : [];
  const best = reversals.reduce((m, r) => Math.max(m, r.ratePerSecond), 0);
  const out: Child[] = [
    h(
      'p',
      { class: 'verdict-line leak-line' },
      h('strong', null, 'The hash hides nothing. '),
      'Phone numbers are few enough to try them all: whoever holds the log hashes every number of a range and matches.',
    ),
  ];
  for (const r of reversals) {
    const found = Object.keys(r.numbers).length;
    out.push(
      h(
        'p',
        { class: 'reversal' },
        'Reversed ',
        h('strong', null, `${found} of ${plural(new Set(logged).size, 'logged hash', 'logged hashes')}`),
        ' by hashing all ',
        formatCount(r.candidates),
        ' numbers of ',
        code(r.plan),
        ' in ',
        h('strong', { class: 'reversal-time' }, formatDuration(r.ms)),
        ` (${formatRate(r.ratePerSecond, 'hashes')} on one core).`,
      ),
    );
  }
  if (best > 0) {
    const plans = new Map<string, number>();
    for (const n of run.numbers) {
      const p = planOf(n);
      plans.set(p.callingCode, Math.max(plans.get(p.callingCode) ?? 0, p.nationalDigits));
    }
    for (const [cc, digits] of plans) {
      const size = 10 ** digits;
      out.push(
        h(
          'p',
          { class: 'extrapolation' },
          `At that rate the whole +${cc} plan, ${formatCount(size)} numbers, would take `,
          h('strong', null, `~${formatDuration((size / best) * 1000)}`),
          ' on one core, and a fraction of it on a few GPUs.',
        ),
      );
    }
  }
  if (run.trace?.skippedBlocks.length) {
    out.push(h('p', { class: 'muted' }, `Not enumerated here (the page tries ${reversals.length} blocks per lookup): `, run.trace.skippedBlocks.join(', ')));
  }
  out.push(
    ...trace.tables.map((t) =>
      logTable(t, (holds, v) => {
        if (holds !== 'number-hash' || typeof v !== 'string') return null;
        const n = reversed.get(v);
        return n ? h('span', { class: 'reversed' }, '= ', h('strong', null, n)) : null;
      }),
    ),
  );
  return out;
}

function blindedLog(run: DesignRun, trace: Trace): Child[] {
  const evalTable = trace.tables.find((t) => t.kind === 'rows');
  const bucketTable = trace.tables.find((t) => t.kind === 'counts');
  const countCol = column(evalTable, 'count');
  const epochCol = column(evalTable, 'epoch');
  const elements = evalTable ? evalTable.rows.reduce((s, r) => s + Number(r[countCol] ?? 0), 0) : 0;
  const epochs = evalTable ? [...new Set(evalTable.rows.map((r) => r[epochCol]))] : [];
  const bucketCol = column(bucketTable, 'bucket');
  const logged = bucketTable ? [...new Set(bucketTable.rows.map((r) => Number(r[bucketCol])))].sort((a, b) => a - b).map(String) : [];
  const fetched = run.wire.filter((x) => x.path.startsWith('/v1/blinded/buckets/'));
  /** Buckets this lookup fetched (a 304 revalidation is not counted by the server, nor marked here). */
  const mine = new Set(fetched.filter((x) => x.status === 200).map((x) => x.path.split('/').pop() ?? ''));
  const bits = run.blinded?.bucketBits;
  const evaluated = run.wire.some((x) => x.path === '/v1/blinded/evaluate');
  const learns: Child[] = [
    'account ',
    h('strong', null, String(trace.requester.accountId)),
    ' at ',
    h('strong', null, trace.requester.ip),
    evaluated || elements > 0
      ? [' sent ', h('strong', null, plural(elements, 'blinded element')), epochs.length ? ` (epoch ${epochs.join(', ')})` : '', '; ']
      : '; ',
    logged.length > 0
      ? [
          logged.length === 1 ? 'bucket ' : 'buckets ',
          h('strong', null, logged.join(', ')),
          logged.length === 1 ? ' was' : ' were',
          ' fetched from that IP this minute',
          mine.size > 0 && mine.size < logged.length ? ` (${[...mine].join(', ')} by this lookup)` : '',
        ]
      : 'no bucket fetch was counted',
    '.',
  ].flat();
  const out: Child[] = [
    h(
      'p',
      { class: 'verdict-line safe-line' },
      h('strong', null, 'The number is nowhere in these rows: '),
      'not in the clear, not hashed, not as a tag. The server evaluated random-looking elements and cannot tell which number, or whether it is registered: the answer was found on this side, in the bucket.',
    ),
    h('p', { class: 'learns' }, 'What the server can tell: ', ...learns),
  ];
  if (bits !== undefined) {
    out.push(
      h(
        'p',
        { class: 'muted' },
        bits === 0
          ? 'Bucket bits 0: every lookup fetches the whole directory, so the bucket id says nothing.'
          : `A bucket id is ${bits} bits: it narrows a number down to 1 in ${formatInt(2 ** bits)} of its numbering plan, no further.`,
      ),
    );
  }
  if (!evaluated && !run.error) out.push(h('p', { class: 'muted' }, 'This lookup sent no evaluate request: every tag was already in this page’s cache.'));
  if (fetched.some((x) => x.status === 304)) out.push(h('p', { class: 'muted' }, 'A bucket this page already held was revalidated (304): revalidations are not counted.'));
  out.push(
    ...trace.tables.map((t) =>
      logTable(t, (holds, v) => (holds === 'bucket' && mine.has(String(v)) ? h('span', { class: 'mine' }, 'this lookup') : null)),
    ),
  );
  return out;
}

function logPanel(run: DesignRun): HTMLElement {
  const body: Child[] = [];
  if (!run.trace) {
    body.push(
      h(
        'p',
        { class: 'note needs-login' },
        'The log view needs the one-time operator link that ',
        code('npm start'),
        ' or ',
        code('pcd serve'),
        ' prints (',
        code('http://…/#login=…'),
        '). Without it this page shows answers only.',
      ),
    );
  } else if (run.trace.error) {
    const e = run.trace.error;
    const expired = e.code === ErrorCode.Forbidden || e.code === ErrorCode.Unauthenticated;
    body.push(errorBlock(e, 'Log view:', expired ? 'the operator view has ended: open a new one-time link from npm start / pcd serve' : undefined));
  } else if (run.trace.trace) {
    const t = run.trace.trace;
    body.push(...(run.design === 'plain' ? plainLog(run, t) : run.design === 'hashed' ? hashedLog(run, t) : blindedLog(run, t)));
  }
  return h(
    'section',
    { class: 'log-panel', id: `log-${run.design}`, 'data-design': run.design, 'aria-label': `What the ${run.design} lookup left on the server` },
    h('h3', null, 'What the server kept'),
    ...body,
  );
}

/** A design's card; without a trace (no operator view) its log panel says how to get one. */
export function designCard(run: DesignRun): HTMLElement {
  const info = DESIGN_INFO[run.design];
  const w = wireTotals(run.wire);
  const b = run.blinded;
  const proved = run.design === 'blinded' && !run.error && run.wire.some((x) => x.path === '/v1/blinded/evaluate');
  return h(
    'article',
    { class: `card design-${run.design}`, id: `card-${run.design}`, 'data-design': run.design },
    h('header', { class: 'card-head' }, h('h2', null, run.design), h('p', { class: 'tagline' }, info.tagline)),
    h(
      'dl',
      { class: 'facts' },
      fact(
        'on the wire',
        h('span', { class: 'wire' }, `${plural(w.requests, 'request')}: ${formatBytes(w.sent)} sent, ${formatBytes(w.received)} received`),
      ),
      fact('time', formatDuration(run.ms)),
      b ? fact('crypto', h('span', { class: 'backend', 'data-backend': b.backend }, b.backend === 'sodium' ? 'sodium (libsodium WASM)' : 'noble (pure JS)'), b.fallback ? ` (sodium did not load: ${b.fallback})` : '', proved ? `, ${b.mode === 'oprf' ? 'OPRF: no proof' : 'DLEQ proof verified'}` : '') : null,
    ),
    wireDetails(run.wire),
    h('div', { class: 'card-body' }, h('section', { class: 'answers', 'aria-label': `Answers (${run.design})` }, h('h3', null, 'Answers'), answerList(run)), logPanel(run)),
  );
}

export function pendingCard(design: DesignName): HTMLElement {
  return h(
    'article',
    { class: `card design-${design} pending`, id: `card-${design}`, 'data-design': design, 'aria-busy': 'true' },
    h('header', { class: 'card-head' }, h('h2', null, design), h('p', { class: 'tagline' }, DESIGN_INFO[design].tagline)),
    h('p', { class: 'muted waiting' }, 'looking up…'),
  );
}

/** One line per design for the live region: what a screen reader announces when the answers arrive. */
export function announce(runs: readonly DesignRun[]): string {
  return runs
    .map((r) => {
      if (r.error) return `${r.design}: no answer, ${r.error.code}: ${r.error.message}`;
      const parts = (r.results ?? []).map((x) => `${displayNumber(x.number)} ${x.capabilities.length ? `messenger (${x.capabilities.join(', ')})` : 'SMS only'}`);
      return `${r.design}: ${parts.join('; ')}`;
    })
    .join('. ');
}

/** Side by side: do the designs agree? They answer the same question, so they must. */
export function agreement(runs: readonly DesignRun[]): HTMLElement | null {
  const answered = runs.filter((r) => r.results);
  if (answered.length < 2) return null;
  const key = (r: DesignRun) => (r.results ?? []).map((x) => `${x.number}=${[...x.capabilities].sort().join('+')}`).join(',');
  const same = answered.every((r) => key(r) === key(answered[0]!));
  return h(
    'p',
    { class: `agreement ${same ? 'agree' : 'disagree'}` },
    same
      ? `The ${answered.length} designs gave the same answers; they differ in what crossed the wire and what the server kept.`
      : `The designs disagree: ${answered.map((r) => r.design).join(', ')} answered differently (a directory change between lookups?).`,
  );
}
