/**
 * What the page shows for one design's lookup: the answers, what went over
 * the wire, and (operator view) a panel with what the lookup left in that
 * design's query log (web/page/logview.ts says what each log means for a
 * pen-register order).
 *
 * The blinded card says which variant the server runs and what crossed the
 * wire in it: the issuance with the account, the evaluate request with the
 * token only and its padding, the buckets with nothing.
 */
import { code, h, type Child } from './dom.ts';
import { formatBytes, formatDuration, formatInt, plural } from './format.ts';
import { ErrorCode, PATHS, type DesignName, type PcdError } from './imports.ts';
import { displayNumber } from './numbers.ts';
import type { BlindedFacts, Credential, DesignRun, WireExchange } from './run.ts';
import { LOG_VIEWS } from './logview.ts';

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
