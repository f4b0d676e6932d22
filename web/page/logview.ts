/**
 * What each design's query log says of one lookup, in the page's log panel
 * (web/page/render.ts logPanel): the rows the trace returned, and what they
 * mean for a pen-register order:
 *
 *   plain    the row: number, account, email, IP
 *   hashed   the row with the hash, and the hash reversed by enumeration, timed and extrapolated
 *   blinded  the number is nowhere; then, as the server runs it: the token issuance per account and
 *            day and the evaluations per minute and IP (anonymous), or the requester, IP and element
 *            count (as the account); the bucket ids
 *
 * The blinded view is built from the trace reply and the wire counts only:
 * nothing the page knows about the looked-up numbers goes into it.
 */
import type { Trace, TraceTable } from './api.ts';
import { code, h, type Child } from './dom.ts';
import { formatCount, formatDuration, formatInt, formatRate, formatTime, formatWindow, plural, windowName } from './format.ts';
import { CAPABILITIES, PATHS, type DesignName } from './imports.ts';
import { planOf } from './numbers.ts';
import type { DesignRun } from './run.ts';

// ------------------------------------------------------------------ log rows

function capabilityText(mask: number): string {
  if (mask === 0) return '0: not registered (SMS only)';
  const names = CAPABILITIES.filter((_, j) => (mask & (1 << j)) !== 0);
  return `${mask}: ${names.join(', ')}`;
}

function cellText(table: TraceTable, holds: string, v: string | number | null): string {
  if (v === null) return '—';
  if (holds === 'time' && typeof v === 'number') return table.kind === 'counts' ? formatWindow(v, table.windowMs ?? 60_000) : formatTime(v);
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
    h('h4', null, code(table.name), ' ', h('span', { class: 'kind' }, table.kind === 'counts' ? `counts per ${windowName(table.windowMs ?? 60_000)}` : 'one row per event')),
    h('p', { class: 'desc' }, table.description),
    table.scope === 'ip'
      ? h('p', { class: 'scope', 'data-scope': 'ip' }, 'No account column: these are the rows of the IP this page’s trace came from.')
      : null,
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

/** The trace's tables of the blinded design, told apart by what their columns hold (shared/designs/blinded.ts). */
function blindedTables(trace: Trace) {
  const holding = (holds: string) => (t: TraceTable) => t.columns.some((c) => c.holds === holds);
  return {
    /** Evaluate requests as the account (auth account): one row each, with the requester. */
    accountEval: trace.tables.find((t) => t.kind === 'rows' && t.columns.some((c) => c.holds === 'account')),
    /** Evaluate requests paid with a token: per minute, IP, epoch and size class. */
    tokenEval: trace.tables.find(holding('size-class')),
    /** Token issuance: per day and account. */
    issuance: trace.tables.find((t) => t.kind === 'counts' && holding('account')(t)),
    buckets: trace.tables.find(holding('bucket')),
  };
}

/** The numbers in one column of a table's rows. */
function columnValues(table: TraceTable | undefined, holds: string): number[] {
  const i = column(table, holds);
  return table && i >= 0 ? table.rows.map((r) => Number(r[i] ?? 0)) : [];
}

/** Buckets counted for this IP, and the ones this lookup fetched (a 304 revalidation is not counted by the server, nor marked here). */
function bucketFacts(run: DesignRun, bucketTable: TraceTable | undefined) {
  const logged = [...new Set(columnValues(bucketTable, 'bucket'))].sort((a, b) => a - b).map(String);
  const fetched = run.wire.filter((x) => x.path.startsWith('/v1/blinded/buckets/'));
  const mine = new Set(fetched.filter((x) => x.status === 200).map((x) => x.path.split('/').pop() ?? ''));
  const sentence: Child[] =
    logged.length > 0
      ? [
          logged.length === 1 ? 'bucket ' : 'buckets ',
          h('strong', null, logged.join(', ')),
          logged.length === 1 ? ' was' : ' were',
          ' fetched from that IP this minute',
          mine.size > 0 && mine.size < logged.length ? ` (${[...mine].join(', ')} by this lookup)` : '',
        ]
      : ['no bucket fetch was counted'];
  return { fetched, mine, sentence };
}

/** As the account (auth account): the per-request row names the requester, its IP and its element count. */
function accountLearns(trace: Trace, evalTable: TraceTable | undefined, evaluated: boolean, buckets: Child[]): Child[] {
  const elements = columnValues(evalTable, 'count').reduce((a, b) => a + b, 0);
  const epochs = [...new Set(columnValues(evalTable, 'epoch'))];
  return [
    'account ',
    h('strong', null, String(trace.requester.accountId)),
    ' at ',
    h('strong', null, trace.requester.ip),
    ...(evaluated || elements > 0 ? [' sent ', h('strong', null, plural(elements, 'blinded element')), epochs.length ? ` (epoch ${epochs.join(', ')})` : '', '; '] : ['; ']),
    ...buckets,
    '.',
  ];
}

/** Anonymous (auth token): the issuance row names the account and a day's total; the evaluation rows name no one. */
function tokenLearns(trace: Trace, t: ReturnType<typeof blindedTables>, buckets: Child[]): Child[] {
  const issued = columnValues(t.issuance, 'count').reduce((a, b) => a + b, 0);
  const dayCol = column(t.issuance, 'time');
  const day = t.issuance && dayCol >= 0 && t.issuance.rows[0] ? cellText(t.issuance, 'time', t.issuance.rows[0][dayCol] ?? null) : undefined;
  const rows = t.tokenEval?.rows ?? [];
  const classCol = column(t.tokenEval, 'size-class');
  const countCol = column(t.tokenEval, 'count');
  const epochs = [...new Set(columnValues(t.tokenEval, 'epoch'))];
  const perClass = new Map<number, number>();
  for (const r of rows) perClass.set(Number(r[classCol] ?? 0), (perClass.get(Number(r[classCol] ?? 0)) ?? 0) + Number(r[countCol] ?? 0));
  const classes = [...perClass].sort((a, b) => a[0] - b[0]).map(([c, n]) => `${plural(n, 'request')} of class ${c}`);
  return [
    'account ',
    h('strong', null, String(trace.requester.accountId)),
    issued > 0 ? [' was issued ', h('strong', null, `${formatInt(issued)} elements’ worth of tokens`), day ? ` on ${day}` : ' today'] : ' was issued no token today',
    '; from ',
    h('strong', null, trace.requester.ip),
    ', someone made ',
    classes.length > 0 ? [h('strong', null, classes.join(', ')), epochs.length ? ` to evaluate (epoch ${epochs.join(', ')})` : ' to evaluate'] : 'no evaluate request',
    ', with no account and no element count; ',
    ...buckets,
    '.',
  ].flat();
}

function blindedLog(run: DesignRun, trace: Trace): Child[] {
  const auth = trace.auth ?? run.blinded?.auth ?? 'account';
  const t = blindedTables(trace);
  const bits = run.blinded?.bucketBits;
  const evaluate = run.wire.filter((x) => x.path === PATHS.blindedEvaluate);
  const evaluated = evaluate.length > 0;
  const b = bucketFacts(run, t.buckets);
  const out: Child[] = [
    h(
      'p',
      { class: 'verdict-line safe-line' },
      h('strong', null, 'The number is nowhere in these rows: '),
      'not in the clear, not hashed, not as a tag. The server evaluated random-looking elements and cannot tell which number, or whether it is registered: the answer was found on this side, in the bucket.',
    ),
  ];
  if (auth === 'token') {
    const paidClass = evaluate.at(-1)?.elements;
    const onDemand = (run.blinded?.fetchesOnDemand ?? 0) > 0;
    out.push(
      h('p', { class: 'learns' }, 'What the server can tell: ', ...tokenLearns(trace, t, b.sentence)),
      h(
        'p',
        { class: 'verdict-line who-line unlinked' },
        h('strong', null, `Nothing in the evaluate row names account ${trace.requester.accountId}: `),
        'it holds a minute, an IP, an epoch, a size class and a count. It can be tied to the account only by its time and its IP, ',
        'by whoever also saw the account’s token request come in (the issuance row keeps a day and a count: no time of day, no IP). ',
        onDemand
          ? 'Here that request came from the same IP a moment before, since the pool had no token of this class. '
          : 'Here the token came from the pool, fetched earlier from the same IP. ',
        'This page found the row the same way, by the IP its trace came from; anyone else at that IP in that minute is counted in the same row. ',
        'Through an OHTTP relay the IP is the relay’s, shared by all who use it, and only the time is left.',
      ),
    );
    if (t.accountEval) {
      out.push(
        h(
          'p',
          { class: 'muted', 'data-table-absent': t.accountEval.name },
          code(t.accountEval.name),
          t.accountEval.rows.length === 0
            ? ', the per-account evaluate log: no row; this server takes a token on evaluate, not the account.'
            : `, the per-account evaluate log: ${plural(t.accountEval.rows.length, 'row')} (a client that sent its account instead of a token).`,
        ),
      );
    }
    if (bits !== undefined) out.push(bucketBitsNote(bits));
    if (!evaluated && !run.error) out.push(h('p', { class: 'muted' }, 'This lookup sent no evaluate request: every tag was already in this page’s cache, so it spent no token.'));
    if (b.fetched.some((x) => x.status === 304)) out.push(h('p', { class: 'muted' }, 'A bucket this page already held was revalidated (304): revalidations are not counted.'));
    // In the order they were written: issuance, evaluation, buckets.
    for (const table of [t.issuance, t.tokenEval, t.buckets]) {
      if (!table) continue;
      out.push(
        logTable(table, (holds, v) =>
          holds === 'bucket' && b.mine.has(String(v))
            ? h('span', { class: 'mine' }, 'this lookup')
            : holds === 'size-class' && paidClass !== undefined && Number(v) === paidClass
              ? h('span', { class: 'mine' }, 'this lookup’s class')
              : holds === 'account' && table === t.issuance
                ? h('span', { class: 'mine' }, 'the page’s account')
                : null,
        ),
      );
    }
    return out;
  }
  out.push(h('p', { class: 'learns' }, 'What the server can tell: ', ...accountLearns(trace, t.accountEval, evaluated, b.sentence)));
  if (bits !== undefined) out.push(bucketBitsNote(bits));
  if (!evaluated && !run.error) out.push(h('p', { class: 'muted' }, 'This lookup sent no evaluate request: every tag was already in this page’s cache.'));
  if (b.fetched.some((x) => x.status === 304)) out.push(h('p', { class: 'muted' }, 'A bucket this page already held was revalidated (304): revalidations are not counted.'));
  out.push(...trace.tables.map((table) => logTable(table, (holds, v) => (holds === 'bucket' && b.mine.has(String(v)) ? h('span', { class: 'mine' }, 'this lookup') : null))));
  return out;
}

/** What each design's log says of a lookup, beside its answer: a table, so a new design is a missing key, never another design's view. */
export const LOG_VIEWS: { readonly [D in DesignName]: (run: DesignRun, trace: Trace) => Child[] } = {
  plain: plainLog,
  hashed: hashedLog,
  blinded: blindedLog,
};

function bucketBitsNote(bits: number): HTMLElement {
  return h(
    'p',
    { class: 'muted' },
    bits === 0
      ? 'Bucket bits 0: every lookup fetches the whole directory, so the bucket id says nothing.'
      : `A bucket id is ${bits} bits: it narrows a number down to 1 in ${formatInt(2 ** bits)} of its numbering plan, no further.`,
  );
}
