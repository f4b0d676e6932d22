/**
 * What the page shows for one design's lookup: the answers, what went over
 * the wire, and (operator view) what the lookup left in that design's query
 * log, with what that means for a pen-register order:
 *
 *   plain    the row: number, account, email, IP
 *   hashed   the row with the hash, and the hash reversed by enumeration, timed and extrapolated
 *   blinded  the number is nowhere; then, as the server runs it:
 *            anonymous (Privacy Pass tokens, the default): the account's token issuance per day, the
 *              evaluations per minute, IP, epoch and size class (no account, no element count), the bucket ids;
 *              and what ties the two: only the time and the IP
 *            as the account: requester, IP, element count, epoch, bucket ids
 *
 * The blinded card says which variant the server runs and what crossed the
 * wire in it: the issuance with the account, the evaluate request with the
 * token only and its padding, the buckets with nothing.
 *
 * The blinded log panel is built from the trace reply and the wire counts
 * only: nothing the page knows about the looked-up numbers goes into it.
 */
import type { Trace, TraceTable } from './api.ts';
import { code, h, type Child } from './dom.ts';
import { formatBytes, formatCount, formatDuration, formatInt, formatRate, formatTime, formatWindow, plural, windowName } from './format.ts';
import { CAPABILITIES, ErrorCode, PATHS, type DesignName, type PcdError } from './imports.ts';
import { displayNumber, planOf } from './numbers.ts';
import type { BlindedFacts, Credential, DesignRun, WireExchange } from './run.ts';

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
  [ErrorCode.BucketUnproven]: 'a bucket did not lead to the root the server published for its version (a tag dropped or changed?): no answer is trusted',
  [ErrorCode.ViewChanged]: 'the server showed this page another bucket root than before for the same epoch and directory version',
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

/**
 * A problem the page can say in one sentence of its own: the sentence, then the error code and HTTP
 * status if it has one (also as data-code, for scripts), and no server message or hint beside it to say
 * it a second time.
 */
export function problemLine(e: { code: ErrorCode; status?: number } | null, ...sentence: Child[]): HTMLElement {
  return h(
    'div',
    { class: 'problem', 'data-code': e?.code },
    h('p', { class: 'problem-message' }, ...sentence, e ? ' ' : null, e ? h('code', { class: 'code' }, e.code) : null, e?.status ? h('span', { class: 'status' }, ` HTTP ${e.status}`) : null),
  );
}

/** A lookup refused for its account token: the server knows no such account (a token mistyped, or its account deleted). */
export function unknownTokenProblem(e: PcdError): HTMLElement {
  return problemLine(e, h('strong', null, 'No answer:'), ' the server does not know this account token; paste the requester token that ', code('npm start'), ' or ', code('pcd serve'), ' prints.');
}

function wireTotals(wire: readonly WireExchange[]): { requests: number; sent: number; received: number } {
  return wire.reduce((t, x) => ({ requests: t.requests + 1, sent: t.sent + x.sent, received: t.received + x.received }), { requests: 0, sent: 0, received: 0 });
}

function fact(term: string, ...value: Child[]): HTMLElement {
  return h('div', { class: 'fact' }, h('dt', null, term), h('dd', null, ...value));
}

const CREDENTIAL_TEXT: Readonly<Record<Credential, string>> = {
  account: 'with the account',
  token: 'with a token, no account',
  none: 'no credential',
};

function exchangeLine(x: WireExchange): Child[] {
  return [
    h('code', null, `${x.method} ${x.path}`),
    ' ',
    h('span', { class: `credential cred-${x.credential}`, 'data-credential': x.credential }, CREDENTIAL_TEXT[x.credential]),
    ' ',
    h('span', { class: 'muted' }, x.status === 0 ? `failed (${x.error ?? 'error'})` : `${x.status}: ${formatBytes(x.sent)} sent, ${formatBytes(x.received)} received`),
  ];
}

function wireDetails(wire: readonly WireExchange[]): HTMLElement | null {
  if (wire.length === 0) return null;
  return h(
    'details',
    { class: 'wire-detail' },
    h('summary', null, 'each request'),
    h('p', { class: 'muted' }, 'Bytes are the bodies and the Authorization header, the part that says who sends.'),
    h('ol', null, ...wire.map((x) => h('li', null, ...exchangeLine(x)))),
  );
}

function answerList(run: DesignRun): HTMLElement {
  if (run.error?.code === ErrorCode.Unauthenticated) return unknownTokenProblem(run.error);
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
const LOG_VIEWS: { readonly [D in DesignName]: (run: DesignRun, trace: Trace) => Child[] } = {
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
    const ended = e.code === ErrorCode.Forbidden || e.code === ErrorCode.Unauthenticated;
    body.push(
      ended
        ? problemLine(e, h('strong', null, 'Log view:'), ' the operator view has ended (its token expired, or the server restarted): run ', code('pcd page-link'), ' for a fresh link.')
        : errorBlock(e, 'Log view:'),
    );
  } else if (run.trace.trace) {
    const t = run.trace.trace;
    body.push(...LOG_VIEWS[run.design](run, t));
  }
  return h(
    'section',
    { class: 'log-panel', id: `log-${run.design}`, 'data-design': run.design, 'aria-label': `What the ${run.design} lookup left on the server` },
    h('h3', null, 'What the server kept'),
    ...body,
  );
}

/**
 * Which blinded variant the server runs, as its config says: anonymous (a Privacy Pass token on evaluate,
 * the request padded to its token's size class) or as the account.
 */
function variant(b: BlindedFacts, wire: readonly WireExchange[]): { name: string; line: Child[] } | undefined {
  if (b.auth === undefined) return undefined;
  if (b.auth === 'account') return { name: ', as the account', line: ['the account’s token on every evaluate request'] };
  const classes = [...new Set(wire.filter((x) => x.elements !== undefined).map((x) => x.elements!))];
  return {
    name: ', anonymous',
    line:
      classes.length === 0
        ? ['Privacy Pass token (no evaluate this time: every tag was cached)']
        : [classes.length === 1 ? 'Privacy Pass token, padded to class ' : 'Privacy Pass tokens, padded to classes ', h('strong', { class: 'size-class' }, classes.join(', '))],
  };
}

function bytesOf(xs: readonly WireExchange[]): string {
  const t = wireTotals(xs);
  return `${formatBytes(t.sent)} sent, ${formatBytes(t.received)} received`;
}

/** Token issuance requests as the page shows them: "1 request for 8 tokens of class 1". */
function issuanceText(xs: readonly WireExchange[]): string {
  const tokens = xs.map((x) => x.tokens).filter((t) => t !== undefined);
  const byClass = new Map<number, number>();
  for (const t of tokens) byClass.set(t.sizeClass, (byClass.get(t.sizeClass) ?? 0) + t.count);
  const what = [...byClass].map(([c, n]) => `${plural(n, 'token')} of class ${c}`).join(', ');
  return `${plural(xs.length, 'request')}${what ? ` for ${what}` : ''}`;
}

/**
 * The blinded lookup's exchanges by step, each with the credential it carried: what crossed the wire,
 * and what of it says who asks.
 */
function crossedWire(run: DesignRun, b: BlindedFacts): HTMLElement | null {
  const step = (name: string, ...content: Child[]) => h('li', { 'data-step': name }, h('span', { class: 'step' }, name), ' ', ...content);
  const is = (path: string) => (x: WireExchange) => x.path === path;
  const config = run.wire.filter(is(PATHS.blindedConfig));
  const issuance = run.wire.filter(is(PATHS.tokens));
  const evaluate = run.wire.filter(is(PATHS.blindedEvaluate));
  const buckets = run.wire.filter((x) => x.path.startsWith('/v1/blinded/buckets/'));
  const refills = run.between.filter(is(PATHS.tokens));
  const items: HTMLElement[] = [];
  if (refills.length > 0) {
    items.push(
      step('refill', `between lookups, at a random time the client chose: ${issuanceText(refills)}, `, h('span', { class: 'cred-account' }, 'with the account'), ` (${bytesOf(refills)})`),
    );
  }
  if (config.length > 0) items.push(step('config', `${plural(config.length, 'fetch', 'fetches')}, no credential (${bytesOf(config)})`));
  if (b.auth === 'token') {
    if (issuance.length > 0) {
      items.push(
        step(
          'issuance',
          `${issuanceText(issuance)}, `,
          h('span', { class: 'cred-account' }, 'with the account'),
          ` (${bytesOf(issuance)})`,
          b.fetchesOnDemand > 0 ? ': on demand, the pool had none of this class' : '',
          b.tokensHeld !== undefined ? `; ${plural(b.tokensHeld, 'token')} of it left in the pool` : '',
        ),
      );
    } else if (b.tokensSpent > 0) {
      items.push(step('issuance', 'none now: the token came from this page’s pool, fetched earlier', b.tokensHeld !== undefined ? ` (${plural(b.tokensHeld, 'token')} of its class left)` : ''));
    }
  }
  if (evaluate.length > 0) {
    const elements = evaluate.reduce((n, x) => n + (x.elements ?? 0), 0);
    const header = evaluate.reduce((n, x) => n + x.authBytes, 0);
    items.push(
      b.auth === 'token'
        ? step(
            'evaluate',
            h('span', { class: 'cred-token' }, 'with the token only, no account'),
            `: ${plural(elements - b.padding, 'element')} + `,
            h('strong', { class: 'padding' }, `${formatInt(b.padding)} dummy`),
            // A long list goes in chunks (run.ts PAGE_CHUNK): one request, so one token, per chunk.
            evaluate.length === 1
              ? ` = class ${formatInt(elements)}; token header ${formatBytes(header)} (${bytesOf(evaluate)})`
              : ` in ${evaluate.length} requests of class ${evaluate.map((x) => formatInt(x.elements ?? 0)).join(', ')}; token headers ${formatBytes(header)} (${bytesOf(evaluate)})`,
          )
        : step('evaluate', h('span', { class: 'cred-account' }, 'with the account'), `: ${plural(elements, 'blinded element')} (${bytesOf(evaluate)})`),
    );
  }
  if (buckets.length > 0) {
    const fresh = buckets.filter((x) => x.status === 200).length;
    const revalidated = buckets.filter((x) => x.status === 304).length;
    items.push(
      step(
        'buckets',
        `${plural(fresh, 'bucket')} fetched${revalidated ? `, ${formatInt(revalidated)} revalidated (304)` : ''}, no credential`,
        b.bucketsProven > 0 ? ', each checked against the epoch’s published Merkle root' : '',
        ` (${bytesOf(buckets)})`,
      ),
    );
  }
  return items.length > 0 ? h('ol', { class: 'crossed', 'aria-label': 'What crossed the wire, step by step' }, ...items) : null;
}

/** A design's card; without a trace (no operator view) its log panel says how to get one. */
export function designCard(run: DesignRun): HTMLElement {
  const info = DESIGN_INFO[run.design];
  const w = wireTotals(run.wire);
  const b = run.blinded;
  const proved = run.design === 'blinded' && !run.error && run.wire.some((x) => x.path === PATHS.blindedEvaluate);
  const v = b ? variant(b, run.wire) : undefined;
  return h(
    'article',
    { class: `card design-${run.design}`, id: `card-${run.design}`, 'data-design': run.design, 'data-auth': b?.auth },
    h(
      'header',
      { class: 'card-head' },
      h('h2', null, run.design, v ? h('span', { class: 'variant-name' }, v.name) : null),
      v ? h('p', { class: 'variant', 'data-auth': b?.auth }, ...v.line) : null,
      h('p', { class: 'tagline' }, info.tagline),
    ),
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
    b ? crossedWire(run, b) : null,
    wireDetails(run.wire),
    h('div', { class: 'card-body' }, h('section', { class: 'answers', 'aria-label': `Answers (${run.design})` }, h('h3', null, 'Answers'), answerList(run)), logPanel(run)),
  );
}

/**
 * A card while its lookup runs. A list longer than one of the page's chunks (run.ts PAGE_CHUNK) gets a
 * progress bar, numbers done out of total, which {@link showProgress} moves as each chunk's answers come.
 */
export function pendingCard(design: DesignName, total: number, chunk: number): HTMLElement {
  return h(
    'article',
    { class: `card design-${design} pending`, id: `card-${design}`, 'data-design': design, 'aria-busy': 'true' },
    h('header', { class: 'card-head' }, h('h2', null, design), h('p', { class: 'tagline' }, DESIGN_INFO[design].tagline)),
    total > chunk
      ? h(
          'p',
          { class: 'progress-line', 'data-progress': design },
          h('progress', { max: total, value: 0, 'aria-label': `${design}: numbers looked up` }),
          h('span', { class: 'progress-text' }, `${design}: 0 / ${total}`),
        )
      : null,
    h('p', { class: 'muted waiting' }, 'looking up…'),
  );
}

/** Moves a pending card's progress bar: `done` of `total` numbers answered. */
export function showProgress(card: Element | null, done: number, total: number): void {
  const line = card?.querySelector<HTMLElement>('[data-progress]');
  if (!line) return;
  const bar = line.querySelector('progress');
  if (bar) bar.value = done;
  const text = line.querySelector('.progress-text');
  if (text) text.textContent = `${line.dataset.progress}: ${done} / ${total}`;
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
