/**
 * The pcd web page: look numbers up in one design or all three side by
 * side, with the real client library running in the browser (the blinded
 * design blinds, verifies the DLEQ proof, finalises and searches the bucket
 * here), and, for whoever opened the operator's one-time login link, what
 * each lookup left in the server's query log.
 *
 *   load    #login=CODE -> POST /v1/ui/login (then the fragment is gone); GET /v1/health for the designs served
 *   submit  normalise every number first (a bad one is named, nothing is sent), then per design in turn:
 *           clock, lookup (metered; a long list in chunks, the card showing numbers done out of total), trace
 *           -> a card with the answers, the bytes, the log rows
 *
 * Plain DOM, no framework; elements made with createElement and textContent
 * only (dom.ts), no inline script or style: the server's CSP forbids both.
 */
import { forgetView, saveToken, savedToken, startSession, type View } from './api.ts';
import { byId, code, h, replace, type Child } from './dom.ts';
import { DEFAULT_DESIGN, DESIGNS, ErrorCode, PcdError, type DesignName } from './imports.ts';
import { MAX_PAGE_NUMBERS, checkRegion, countHint, defaultRegion, parseNumbers, regionList, splitNumbers } from './numbers.ts';
import { agreement, announce, designCard, errorBlock, pendingCard, problemLine, showProgress } from './render.ts';
import { PAGE_CHUNK, chooseBackend, runDesign, servedDesigns, type DesignRun } from './run.ts';

const form = byId('lookup-form', HTMLFormElement);
const numbersInput = byId('numbers', HTMLTextAreaElement);
const numbersCount = byId('numbers-count', HTMLParagraphElement);
const regionSelect = byId('region', HTMLSelectElement);
const tokenField = byId('token-field', HTMLDivElement);
const tokenInput = byId('token', HTMLInputElement);
const button = byId('lookup', HTMLButtonElement);
const busy = byId('busy', HTMLSpanElement);
const banner = byId('error', HTMLDivElement);
const status = byId('status', HTMLParagraphElement);
const results = byId('results', HTMLElement);
const session = byId('session', HTMLDivElement);

let view: View | undefined;
let served: DesignName[] = [...DESIGNS];
let running = false;
/** Lookups started; results carries data-run (started) and data-done (finished), which tests and scripts wait on. */
let runCount = 0;
const regions = regionList();

function showBanner(...content: Child[]): void {
  replace(banner, ...content);
  banner.hidden = false;
}

function clearBanner(): void {
  replace(banner);
  banner.hidden = true;
  numbersInput.removeAttribute('aria-invalid');
  tokenInput.removeAttribute('aria-invalid');
}

function showSession(loginError?: PcdError): void {
  const parts: Child[] = [];
  if (view) {
    const r = view.requester;
    parts.push(
      h('span', { class: 'pill on' }, 'operator view'),
      ' ',
      ...(r
        ? ['lookups are made as ', h('strong', null, r.email), ` (account ${r.accountId}); each answer comes with what it left in the query log.`]
        : ['the server has no account to look up as: paste an account token below.']),
      ' ',
    );
    const out = h('button', { type: 'button', class: 'link' }, 'Leave the operator view');
    out.addEventListener('click', () => {
      forgetView();
      view = undefined;
      showSession();
      updateTokenField();
      replace(results);
    });
    parts.push(out);
  } else {
    parts.push(
      h('span', { class: 'pill off' }, 'answers only'),
      ' ',
      'The log view needs the one-time operator link printed by ',
      code('npm start'),
      ' / ',
      code('pcd serve'),
      '.',
    );
  }
  replace(session, ...parts);
  if (loginError?.code === ErrorCode.Forbidden) {
    // Said once, by the page: the server's message (for the API and the log) would repeat it.
    showBanner(problemLine(loginError, 'This login link was used already or has expired: run ', code('pcd page-link'), ' for a fresh one, or go on with answers only.'));
  } else if (loginError) {
    showBanner(errorBlock(loginError, 'The login did not work.'));
  }
}

function updateTokenField(): void {
  const needed = !view?.requester;
  tokenField.hidden = !needed;
  if (needed && tokenInput.value === '') tokenInput.value = savedToken() ?? '';
}

function fillRegions(): void {
  const chosen = defaultRegion(regions);
  replace(regionSelect, ...regions.map((r) => h('option', { value: r.code, selected: r.code === chosen }, r.label)));
  regionSelect.value = chosen;
}

/**
 * A radio for every design of the registry (shared/designs/index.ts): the
 * page's HTML writes the three of today so the first paint has them; a
 * design added to the registry gets its own here, before "all".
 */
function addDesignRadios(): void {
  const all = byId('design-all', HTMLInputElement);
  for (const d of DESIGNS) {
    if (document.getElementById(`design-${d}`)) continue;
    all.before(h('input', { type: 'radio', name: 'design', id: `design-${d}`, value: d }), h('label', { for: `design-${d}` }, d));
  }
}

function designRadios(): HTMLInputElement[] {
  return [...form.querySelectorAll<HTMLInputElement>('input[name="design"]')];
}

function applyServed(): void {
  for (const radio of designRadios()) {
    const d = radio.value;
    const off = d === 'all' ? served.length < 2 : !served.includes(d as DesignName);
    radio.disabled = off;
    const label = form.querySelector<HTMLLabelElement>(`label[for="${radio.id}"]`);
    if (label) {
      label.title = off ? 'this server does not serve it' : '';
      if (d === 'all') label.textContent = served.length === 3 ? 'all three' : `all ${served.length}`;
    }
  }
  const checked = designRadios().find((r) => r.checked && !r.disabled);
  if (!checked) {
    const first = designRadios().find((r) => !r.disabled);
    if (first) first.checked = true;
  }
}

function chosenDesigns(): DesignName[] {
  const v = designRadios().find((r) => r.checked)?.value ?? DEFAULT_DESIGN;
  return v === 'all' ? DESIGNS.filter((d) => served.includes(d)) : [v as DesignName];
}

async function lookup(): Promise<void> {
  if (running) return;
  clearBanner();
  let region: string;
  try {
    region = checkRegion(regionSelect.value, regions);
  } catch (e) {
    showBanner(errorBlock(e as PcdError));
    regionSelect.focus();
    return;
  }
  const parsed = parseNumbers(numbersInput.value, region);
  if (parsed.refused) {
    showBanner(
      parsed.refused === 'empty'
        ? problemLine(null, h('strong', null, 'Type one or more numbers.'))
        : problemLine(null, h('strong', null, `At most ${MAX_PAGE_NUMBERS} numbers at a time (you have ${parsed.entries}).`), ' Nothing was sent; ', code('pcd sync'), ' takes a whole address book.'),
    );
    numbersInput.setAttribute('aria-invalid', 'true');
    numbersInput.focus();
    return;
  }
  if (parsed.problems.length > 0) {
    showBanner(
      h('div', { class: 'problem', 'data-code': ErrorCode.InvalidNumber },
        h('p', { class: 'problem-head' }, h('strong', null, parsed.problems.length === 1 ? 'Not a phone number. ' : `${parsed.problems.length} entries are not phone numbers. `), h('code', { class: 'code' }, ErrorCode.InvalidNumber)),
        h('ul', { class: 'problem-list' }, ...parsed.problems.map((p) => h('li', { class: 'problem-message' }, p))),
        h('p', { class: 'problem-hint' }, `Nothing was sent. Numbers without a country code are read as numbers of ${regionSelect.selectedOptions[0]?.textContent ?? region}.`),
      ),
    );
    numbersInput.setAttribute('aria-invalid', 'true');
    numbersInput.focus();
    return;
  }
  const token = view?.requester?.token ?? tokenInput.value.trim();
  if (token === '') {
    showBanner(
      problemLine(
        { code: ErrorCode.Unauthenticated },
        h('strong', null, 'No account token:'),
        ' paste the requester token that ',
        code('npm start'),
        ' or ',
        code('pcd serve'),
        ' prints, or open the operator link.',
      ),
    );
    tokenInput.setAttribute('aria-invalid', 'true');
    tokenInput.focus();
    return;
  }
  if (!view?.requester) saveToken(token);

  const designs = chosenDesigns();
  running = true;
  const run = ++runCount;
  results.dataset.run = String(run);
  button.disabled = true;
  busy.hidden = false;
  results.setAttribute('aria-busy', 'true');
  results.dataset.layout = designs.length > 1 ? 'side-by-side' : 'single';
  const grid = h('div', { class: 'cards' }, ...designs.map((d) => pendingCard(d, parsed.numbers.length, PAGE_CHUNK)));
  const head = h(
    'p',
    { class: 'results-head' },
    `${parsed.numbers.length === 1 ? '1 number' : `${parsed.numbers.length} numbers`} in ${designs.length === 1 ? `the ${designs[0]} design` : designs.join(', ')}`,
    view?.requester ? `, as account ${view.requester.accountId}` : '',
    '.',
  );
  replace(results, head, grid);
  status.textContent = 'looking up…';
  const runs: DesignRun[] = [];
  try {
    for (const d of designs) {
      const r = await runDesign(d, parsed.numbers, token, view, (done, total) => showProgress(grid.querySelector(`#card-${d}`), done, total));
      runs.push(r);
      if (r.trace?.error && (r.trace.error.code === ErrorCode.Forbidden || r.trace.error.code === ErrorCode.Unauthenticated)) {
        // The view token is gone (server restarted): answers only from here on, still as the same account.
        forgetView();
        view = undefined;
        tokenInput.value = token;
        saveToken(token);
        showSession();
        updateTokenField();
      }
      if (r.error?.code === ErrorCode.Unauthenticated && !view?.requester) tokenInput.setAttribute('aria-invalid', 'true');
      grid.querySelector(`#card-${d}`)?.replaceWith(designCard(r));
    }
    const agree = agreement(runs);
    if (agree) head.after(agree);
    status.textContent = announce(runs);
  } finally {
    running = false;
    button.disabled = false;
    busy.hidden = true;
    results.setAttribute('aria-busy', 'false');
    results.dataset.done = String(run);
  }
}

function submit(): void {
  lookup().catch((e: unknown) => {
    showBanner(errorBlock(e instanceof PcdError ? e : new PcdError(ErrorCode.Internal, e instanceof Error ? e.message : String(e)), 'Something went wrong.'));
  });
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  submit();
});

// Ctrl+Enter (or ⌘+Enter) in the box; Enter on the other fields and the design choice.
form.addEventListener('keydown', (e) => {
  if (e.key !== 'Enter' || e.isComposing) return;
  const t = e.target;
  if (t instanceof HTMLTextAreaElement) {
    if (e.ctrlKey || e.metaKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  } else if (t instanceof HTMLInputElement) {
    e.preventDefault();
    form.requestSubmit();
  }
});

function updateCount(): void {
  const entries = splitNumbers(numbersInput.value).length;
  numbersCount.textContent = countHint(entries);
  numbersCount.classList.toggle('over', entries > MAX_PAGE_NUMBERS);
}

numbersInput.addEventListener('input', () => {
  numbersInput.removeAttribute('aria-invalid');
  updateCount();
});
tokenInput.addEventListener('input', () => tokenInput.removeAttribute('aria-invalid'));

async function init(): Promise<void> {
  addDesignRadios();
  fillRegions();
  updateCount();
  const s = await startSession();
  view = s.view;
  showSession(s.loginError);
  updateTokenField();
  try {
    served = await servedDesigns();
  } catch (e) {
    showBanner(errorBlock(e instanceof PcdError ? e : new PcdError(ErrorCode.Network, String(e)), 'The server does not answer.'));
  }
  applyServed();
  if (served.includes('blinded')) void chooseBackend(); // start libsodium's WASM now, not on the first press
  document.documentElement.dataset.ready = 'true';
  numbersInput.focus();
}

void init();
