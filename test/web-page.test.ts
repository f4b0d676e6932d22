/**
 * The web page, end to end, in a real headless Chromium (puppeteer-core,
 * nothing downloaded): the page built by web/build.ts, served by a real
 * server with the web UI mounted, the client library running in the
 * browser under the server's CSP.
 *
 * - operator link: in each design a registered and an unregistered number,
 *   typed in the box and sent by the button, Ctrl+Enter or Enter; the answers
 *   (messenger with its capabilities, SMS only), the bytes on the wire, and
 *   the log panel: plain the number, email and IP; hashed the hash and its
 *   reversal time; blinded (anonymous, the server's default) the card
 *   naming its variant and what crossed the wire (the token issuance with
 *   the account, the evaluate request with the token only and its padding,
 *   the buckets), the issuance row with the account, the evaluation rows
 *   without one, the bucket ids, and no form of either number anywhere in
 *   that panel (text or HTML);
 * - all three side by side, the blinded card the anonymous variant;
 * - blinded on a server that takes the account: requester, IP, element count;
 * - without the link: answers only with an account token, and a note where
 *   the log would be; a refused token shows its error code;
 * - an invalid number is named, and nothing is sent; an empty box and more
 *   than 200 numbers are said as such, and the box counts as you type;
 * - a long list (150 numbers): each card's progress, done out of total, per
 *   chunk of 50 (on the page opened without the link, with the account
 *   token: no log view, so no hashed trace enumerating 10^6 numbers once
 *   more);
 * - a wrong token: one message on the card;
 * - a login link works once: the second use is refused on the page, in one
 *   sentence naming pcd page-link;
 * - on a phone's width: the design choice on one line, no keyboard hint;
 * - a server that is gone is a network error on the page, not an answer.
 *
 * Skipped, with a warning naming what to install, where there is no Chromium.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'puppeteer-core';
import { bucketOf } from '../shared/buckets.ts';
import type { E164 } from '../shared/e164.ts';
import { hashNumber } from '../shared/designs/hashed.ts';
import { buildWeb } from '../web/build.ts';
import { CHROMIUM_HINT, findChromium, launchChromium, lookupsDone, waitForLookup } from '../web/screenshot.ts';
import { PAGE_ACCOUNT_EMAIL, createWebUi, type WebUi } from '../web/server.ts';
import { startTestServer, tempDir, type TestServer } from './helpers.ts';

const chromium = findChromium();
if (!chromium) {
  const why = process.env.PCD_CHROMIUM ? `PCD_CHROMIUM (${process.env.PCD_CHROMIUM}) is not an executable file` : 'no Chromium found';
  console.warn(`test/web-page.test.ts is skipped: ${why}; ${CHROMIUM_HINT}`);
}

/**
 * The little of the DOM the callbacks below touch: this file is checked
 * for Node (no DOM lib); the callbacks run in the page against its real DOM.
 */
interface El {
  innerText: string;
  className: string;
  max: number;
  value: string;
  textContent: string | null;
  innerHTML: string;
  hidden: boolean;
  dataset: Record<string, string | undefined>;
  querySelectorAll(selector: string): ArrayLike<El>;
  getAttribute(name: string): string | null;
  getClientRects(): ArrayLike<unknown>;
  getBoundingClientRect(): { top: number; height: number; right: number };
  dispatchEvent(event: unknown): boolean;
}
declare const Event: new (type: string, init?: { bubbles?: boolean }) => unknown;
declare const document: { documentElement: { scrollWidth: number } };
declare const location: { hash: string; href: string };
declare const sessionStorage: { getItem(key: string): string | null };

const BUCKET_BITS = 3;
const REGISTERED = '+14155550123' as E164;
const UNREGISTERED = '+14155550199' as E164;
const BOB = '+442079460018' as E164;
const UNREGISTERED_2 = '+14155550177' as E164;

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** Every form of a number that must not be in the blinded log panel. */
function formsOf(n: E164): string[] {
  const digits = n.slice(1);
  const national = n.startsWith('+1') ? digits.slice(1) : digits.slice(2);
  return [n, digits, national, hex(hashNumber(n)), `${national.slice(0, 3)} ${national.slice(3, 6)} ${national.slice(6)}`, `${national.slice(0, 3)}-${national.slice(3, 6)}-${national.slice(6)}`];
}

describe.skipIf(!chromium)('web page in headless Chromium', () => {
  let ts: TestServer;
  let ui: WebUi;
  let dist: string;
  let browser: Browser;
  let aliceToken: string;
  /** What the page must never log: script errors, CSP refusals. */
  const problems: string[] = [];

  beforeAll(async () => {
    dist = tempDir('pcd-web-');
    await buildWeb(dist);
    ui = createWebUi({ distDir: dist });
    ts = await startTestServer({ web: ui.mount, bucketBits: BUCKET_BITS, sizeClasses: [1, 64, 4096] });
    aliceToken = (await ts.admin.createAccount({ email: 'alice@example.com', numbers: [REGISTERED], capabilities: ['messages', 'facetime'] })).token;
    await ts.admin.createAccount({ email: 'bob@example.co.uk', numbers: [BOB], capabilities: ['messages'] });
    browser = await launchChromium(chromium!);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await ts?.close();
  });

  async function open(url: string, viewport: Parameters<Page['setViewport']>[0] = { width: 1280, height: 900 }): Promise<Page> {
    const page = await browser.newPage();
    await page.setViewport(viewport);
    page.on('pageerror', (e) => problems.push(`page error: ${e instanceof Error ? e.message : String(e)}`));
    page.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForSelector('html[data-ready="true"]', { timeout: 30_000 });
    return page;
  }

  const text = (page: Page, selector: string) => page.$eval(selector, (el) => (el as unknown as El).innerText);
  const html = (page: Page, selector: string) => page.$eval(selector, (el) => (el as unknown as El).innerHTML);

  async function typeNumbers(page: Page, typed: string): Promise<void> {
    await page.$eval('#numbers', (el) => void ((el as unknown as El).value = ''));
    await page.type('#numbers', typed);
  }

  /** Pastes a list into the box at once (typing hundreds of numbers key by key is slow), as an input event. */
  async function pasteNumbers(page: Page, list: string): Promise<void> {
    await page.$eval(
      '#numbers',
      (el, v) => {
        const box = el as unknown as El;
        box.value = v;
        box.dispatchEvent(new Event('input', { bubbles: true }));
      },
      list,
    );
  }

  /** n distinct US numbers: +1 415 555 0100, 0101, … */
  const usNumbers = (n: number) => Array.from({ length: n }, (_, i) => `+1 415 555 ${String(100 + i).padStart(4, '0')}`).join('\n');

  type Submit = 'button' | 'ctrl-enter' | 'enter-on-design' | 'enter-on-token';

  /** Chooses the design, sends the lookup the way a person would, and waits for it to finish. */
  async function lookUp(page: Page, design: string, typed: string, submit: Submit): Promise<void> {
    await typeNumbers(page, typed);
    await page.click(`label[for="design-${design}"]`);
    const before = await lookupsDone(page);
    if (submit === 'button') await page.click('#lookup');
    else if (submit === 'ctrl-enter') {
      await page.focus('#numbers');
      await page.keyboard.down('Control');
      await page.keyboard.press('Enter');
      await page.keyboard.up('Control');
    } else {
      await page.focus(submit === 'enter-on-design' ? `#design-${design}` : '#token');
      await page.keyboard.press('Enter');
    }
    await waitForLookup(page, before);
  }

  /** The answers a card shows: [answer kind, text, capability chips]. */
  async function answers(page: Page, design: string): Promise<{ kind: string; text: string; chips: string[] }[]> {
    return page.$$eval(`#card-${design} .answer`, (els) =>
      els.map((e) => {
        const el = e as unknown as El;
        return { kind: el.dataset.answer ?? '', text: el.innerText, chips: Array.from(el.querySelectorAll('.chip')).map((c) => c.innerText) };
      }),
    );
  }

  async function expectTwoAnswers(page: Page, design: string): Promise<void> {
    const a = await answers(page, design);
    expect(a).toHaveLength(2);
    expect(a[0]).toMatchObject({ kind: 'messenger', chips: ['messages', 'facetime'] });
    expect(a[0]!.text).toContain('+1 415 555 0123');
    expect(a[1]).toMatchObject({ kind: 'sms', chips: [] });
    expect(a[1]!.text).toContain('SMS only');
    const wire = await text(page, `#card-${design} .wire`);
    const m = /^(\d+) requests?: ([\d,]+) B sent, ([\d,]+) B received/.exec(wire);
    expect(m, wire).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThan(0);
    expect(Number(m![3]!.replaceAll(',', ''))).toBeGreaterThan(0);
  }

  describe('with the operator login link', () => {
    let page: Page;
    let pageAccountId: number;

    beforeAll(async () => {
      page = await open(ui.loginUrl(ts.server.url));
      expect(await page.evaluate(() => location.hash)).toBe(''); // the code left the address bar
      expect(await text(page, '#session')).toContain('operator view');
      expect(await page.$eval('#token-field', (el) => (el as unknown as El).hidden)).toBe(true);
      const account = ts.server.store.accountByEmail(PAGE_ACCOUNT_EMAIL);
      expect(account).toBeDefined();
      pageAccountId = account!.accountId;
    });

    it('plain: the answers, and the row with number, email and IP', async () => {
      await lookUp(page, 'plain', '(415) 555-0123\n+1 415-555-0199', 'button');
      await expectTwoAnswers(page, 'plain');
      const log = await text(page, '#log-plain');
      expect(log).toContain(REGISTERED);
      expect(log).toContain(UNREGISTERED);
      expect(log).toContain(PAGE_ACCOUNT_EMAIL);
      expect(log).toContain('127.0.0.1');
      expect(log).toContain(String(pageAccountId));
    });

    it('hashed: the hashes, reversed by enumeration, with the time it took and the whole plan extrapolated', async () => {
      await lookUp(page, 'hashed', '(415) 555-0123\n+1 415-555-0199', 'ctrl-enter');
      await expectTwoAnswers(page, 'hashed');
      const log = await text(page, '#log-hashed');
      expect(log).toContain(hex(hashNumber(REGISTERED)));
      expect(log).toContain(hex(hashNumber(UNREGISTERED)));
      expect(log).toMatch(/Reversed 2 of 2 logged hashes by hashing all 10⁶ numbers of \+14155XXXXXX in [\d.]+ (ms|s)/);
      expect(log).toContain(`= ${REGISTERED}`);
      expect(log).toMatch(/the whole \+1 plan, 10¹⁰ numbers, would take ~[\d.]+ (s|min|h|days)/);
    });

    it('blinded, anonymous: the variant, what crossed the wire, the issuance row with the account, the evaluation rows without, and no form of the number', async () => {
      await lookUp(page, 'blinded', '(415) 555-0123\n+1 415-555-0199', 'enter-on-design');
      await expectTwoAnswers(page, 'blinded');
      expect(await page.$eval('#card-blinded .backend', (el) => (el as unknown as El).dataset.backend)).toBe('sodium');
      expect(await text(page, '#card-blinded .facts')).toContain('DLEQ proof verified');

      // The variant, as the server's config says: 2 numbers pay with a token of class 64 (the test server's classes are 1, 64, 4096).
      expect(await text(page, '#card-blinded .card-head h2')).toBe('blinded, anonymous');
      expect(await text(page, '#card-blinded .variant')).toBe('Privacy Pass token, padded to class 64');
      // What crossed the wire: issuance with the account, evaluate with the token only, padded; buckets with nothing.
      const step = (name: string) => text(page, `#card-blinded .crossed [data-step="${name}"]`);
      expect(await step('issuance')).toMatch(/^issuance 1 request for 1 token of class 64, with the account \([\d,]+ B sent, [\d,]+ B received\): on demand/);
      const evaluate = await step('evaluate');
      expect(evaluate).toMatch(/^evaluate with the token only, no account: 2 elements \+ 62 dummy = class 64; token header ([\d,]+) B/);
      expect(Number(/token header ([\d,]+) B/.exec(evaluate)![1]!.replaceAll(',', ''))).toBeGreaterThan(400);
      expect(await step('buckets')).toMatch(/^buckets 2 buckets fetched, no credential, each checked against the epoch’s published Merkle root/);
      const credentials = await page.$$eval('#card-blinded .wire-detail li', (els) =>
        els.map((e) => {
          const el = e as unknown as El;
          // textContent: the list sits in a closed <details>, where innerText is empty.
          return [el.querySelectorAll('code')[0]?.textContent?.split(' ')[1], el.querySelectorAll('[data-credential]')[0]?.getAttribute('data-credential')];
        }),
      );
      expect(credentials).toContainEqual(['/v1/tokens', 'account']);
      expect(credentials).toContainEqual(['/v1/blinded/evaluate', 'token']);
      expect(credentials.filter(([path]) => path?.startsWith('/v1/blinded/buckets/')).every(([, c]) => c === 'none')).toBe(true);

      const log = await text(page, '#log-blinded');
      expect(log).toContain('The number is nowhere in these rows');
      expect(log).toMatch(new RegExp(`account ${pageAccountId} was issued 64 elements’ worth of tokens on \\d{4}-\\d\\d-\\d\\d \\(UTC\\)`));
      expect(log).toMatch(/from 127\.0\.0\.1, someone made 1 request of class 64 to evaluate \(epoch 1\), with no account and no element count/);
      expect(log).toContain(`Nothing in the evaluate row names account ${pageAccountId}`);
      expect(log).toContain('It can be tied to the account only by its time and its IP');
      expect(log).toContain('Through an OHTTP relay the IP is the relay’s');
      const cells = (table: string, holds: string) =>
        page.$$eval(`#log-blinded [data-table="${table}"] [data-holds="${holds}"] .value`, (els) => els.map((e) => (e as unknown as El).innerText));
      // The issuance row names the page's account; the evaluation row names no one and counts no elements.
      expect(await cells('token_issuance_log', 'account')).toEqual([String(pageAccountId)]);
      expect(await cells('token_issuance_log', 'count')).toEqual(['64']);
      expect(await cells('blinded_token_eval_log', 'size-class')).toEqual(['64']);
      expect(await cells('blinded_token_eval_log', 'account')).toEqual([]);
      expect(await cells('blinded_token_eval_log', 'ip')).toEqual(['127.0.0.1']);
      expect(await text(page, '#log-blinded [data-table="blinded_token_eval_log"]')).not.toContain(String(PAGE_ACCOUNT_EMAIL));
      expect(await page.$$('#log-blinded [data-table="blinded_eval_log"]')).toHaveLength(0);
      expect(await text(page, '#log-blinded [data-table-absent="blinded_eval_log"]')).toContain('no row');
      const buckets = await cells('blinded_bucket_log', 'bucket');
      for (const n of [REGISTERED, UNREGISTERED]) expect(buckets).toContain(String(bucketOf(n, BUCKET_BITS)));

      const panelHtml = await html(page, '#log-blinded');
      for (const n of [REGISTERED, UNREGISTERED]) {
        for (const form of formsOf(n)) {
          expect(log, `blinded panel text holds ${form}`).not.toContain(form);
          expect(panelHtml, `blinded panel HTML holds ${form}`).not.toContain(form);
        }
      }
    });

    it('all three side by side, numbers comma separated', async () => {
      await lookUp(page, 'all', '+44 20 7946 0018, 415 555 0177', 'button');
      expect(await page.$eval('#results', (el) => (el as unknown as El).dataset.layout)).toBe('side-by-side');
      expect(await text(page, '#results .agreement')).toContain('same answers');
      for (const design of ['plain', 'hashed', 'blinded']) {
        const a = await answers(page, design);
        expect(a.map((x) => [x.kind, x.chips])).toEqual([
          ['messenger', ['messages']],
          ['sms', []],
        ]);
        expect(await text(page, `#card-${design} .wire`)).toMatch(/^\d+ requests?: /);
      }
      expect(await text(page, '#log-plain')).toContain(BOB);
      expect(await text(page, '#log-hashed')).toContain(`= ${BOB}`);
      // The anonymous variant beside the others: its card says so, and its log holds no account beside the evaluation.
      expect(await text(page, '#card-blinded .card-head h2')).toBe('blinded, anonymous');
      expect(await text(page, '#card-blinded .variant')).toBe('Privacy Pass token, padded to class 64');
      expect(await text(page, '#card-blinded .crossed [data-step="evaluate"]')).toContain('2 elements + 62 dummy = class 64');
      const blinded = await text(page, '#log-blinded');
      expect(blinded).toMatch(/someone made \d+ requests? of class 64 to evaluate/);
      expect(blinded).toContain('Nothing in the evaluate row names account');
      for (const n of [BOB, UNREGISTERED_2]) for (const form of formsOf(n).slice(0, 4)) expect(blinded).not.toContain(form);
    });

    it('an invalid number is named, and nothing is sent', async () => {
      const before = await lookupsDone(page);
      await typeNumbers(page, '+1 415 555 0123\n555-01');
      await page.click('#lookup');
      await page.waitForSelector('#error:not([hidden])');
      const error = await text(page, '#error');
      expect(error).toContain('invalid_number');
      expect(error).toMatch(/number 2: '555-01' is /);
      expect(await page.$eval('#numbers', (el) => (el as unknown as El).getAttribute('aria-invalid'))).toBe('true');
      expect(await lookupsDone(page)).toBe(before);
    });

    it('an empty box and too many numbers say what is wrong; the limit shows as you type', async () => {
      const before = await lookupsDone(page);
      expect(await text(page, '#numbers-hint')).toContain('Ctrl+Enter'); // a wide screen shows the shortcut
      await typeNumbers(page, '');
      await pasteNumbers(page, '');
      expect(await text(page, '#numbers-count')).toBe('up to 200 numbers at a time');
      await page.click('#lookup');
      await page.waitForSelector('#error:not([hidden])');
      expect(await text(page, '#error')).toBe('Type one or more numbers.');

      await typeNumbers(page, '+1 415 555 0123\n+1 415 555 0199, +44 20 7946 0018');
      expect(await text(page, '#numbers-count')).toBe('3 numbers · up to 200');

      await pasteNumbers(page, usNumbers(500));
      expect(await text(page, '#numbers-count')).toBe('500 numbers · up to 200');
      expect(await page.$eval('#numbers-count', (el) => (el as unknown as El).className)).toContain('over');
      await page.click('#lookup');
      const error = await text(page, '#error');
      expect(error).toMatch(/^At most 200 numbers at a time \(you have 500\)\. Nothing was sent/);
      expect(error).not.toContain('Not a phone number');
      expect(await page.$eval('#numbers', (el) => (el as unknown as El).getAttribute('aria-invalid'))).toBe('true');
      expect(await lookupsDone(page)).toBe(before);
    });
  });

  it('?backend=noble: the blinded lookup runs on the pure-JS reference in the browser, with the same answers', async () => {
    const page = await open(ui.loginUrl(ts.server.url).replace('/#login=', '/?backend=noble#login='));
    await lookUp(page, 'blinded', '(415) 555-0123\n+1 415-555-0199', 'button');
    await expectTwoAnswers(page, 'blinded');
    expect(await page.$eval('#card-blinded .backend', (el) => (el as unknown as El).dataset.backend)).toBe('noble');
    expect(await text(page, '#card-blinded .facts')).toContain('DLEQ proof verified');
    await page.close();
  });

  it('blinded on a server that takes the account: requester, IP, element count and bucket ids, and no token', async () => {
    const accountUi = createWebUi({ distDir: dist });
    const server = await startTestServer({ web: accountUi.mount, bucketBits: BUCKET_BITS, blindedAuth: 'account' });
    try {
      await server.admin.createAccount({ email: 'alice@example.com', numbers: [REGISTERED], capabilities: ['messages', 'facetime'] });
      const page = await open(accountUi.loginUrl(server.server.url));
      await lookUp(page, 'blinded', '(415) 555-0123\n+1 415-555-0199', 'button');
      await expectTwoAnswers(page, 'blinded');
      const accountId = server.server.store.accountByEmail(PAGE_ACCOUNT_EMAIL)!.accountId;
      expect(await text(page, '#card-blinded .card-head h2')).toBe('blinded, as the account');
      expect(await text(page, '#card-blinded .variant')).toBe('the account’s token on every evaluate request');
      expect(await page.$$('#card-blinded .crossed [data-step="issuance"]')).toHaveLength(0);
      expect(await text(page, '#card-blinded .crossed [data-step="evaluate"]')).toMatch(/^evaluate with the account: 2 blinded elements/);
      const log = await text(page, '#log-blinded');
      expect(log).toMatch(new RegExp(`account ${accountId} at 127\\.0\\.0\\.1 sent 2 blinded elements \\(epoch 1\\)`));
      const evalCounts = await page.$$eval('#log-blinded [data-table="blinded_eval_log"] [data-holds="count"] .value', (els) => els.map((e) => (e as unknown as El).innerText));
      expect(evalCounts).toEqual(['2']);
      expect(await page.$$('#log-blinded [data-table="blinded_token_eval_log"], #log-blinded [data-table="token_issuance_log"]')).toHaveLength(0);
      for (const n of [REGISTERED, UNREGISTERED]) for (const form of formsOf(n)) expect(log).not.toContain(form);
      await page.close();
    } finally {
      await server.close();
    }
  });

  describe('without the login link', () => {
    let page: Page;

    beforeAll(async () => {
      page = await open(`${ts.server.url}/`);
    });

    afterAll(async () => {
      await page?.close();
    });

    it('answers only, with an account token, and a note where the log would be', async () => {
      expect(await text(page, '#session')).toContain('answers only');
      expect(await page.$eval('#token-field', (el) => (el as unknown as El).hidden)).toBe(false);

      // A token the server does not know: the refusal, with its code.
      await page.type('#token', 'not-a-real-token');
      await lookUp(page, 'plain', '(415) 555-0123', 'enter-on-token');
      // One message: what is wrong and what to do, then the code, and nothing said twice.
      const problem = await text(page, '#card-plain .problem');
      expect(problem).toBe('No answer: the server does not know this account token; paste the requester token that npm start or pcd serve prints. unauthenticated HTTP 401');
      expect(await page.$$('#card-plain .problem p')).toHaveLength(1);
      expect(await page.$eval('#token', (el) => (el as unknown as El).getAttribute('aria-invalid'))).toBe('true');

      await page.$eval('#token', (el) => void ((el as unknown as El).value = ''));
      await page.type('#token', aliceToken);
      await lookUp(page, 'plain', '(415) 555-0123\n+1 415-555-0199', 'enter-on-token');
      await expectTwoAnswers(page, 'plain');
      const log = await text(page, '#log-plain');
      expect(log).toContain('The log view needs the one-time operator link');
      expect(log).not.toContain(REGISTERED);
      expect(log).not.toContain('127.0.0.1');
    });

    it('a long list: each card shows its progress, numbers done out of total, as the chunks are answered', async () => {
      // Answers only, on this page: the log view is not what is checked here, and in it the hashed card's trace would
      // enumerate the list's number block (10^6 hashes) once more; each card's progress is drawn the same in both views.
      // Every state a progress line passes through, as the page draws it (the cards replace it when done).
      await page.evaluate(`
        window.progressSeen = [];
        new MutationObserver(() => {
          for (const line of document.querySelectorAll('[data-progress]')) {
            const bar = line.querySelector('progress');
            const s = line.querySelector('.progress-text').textContent + ' | ' + bar.value + '/' + bar.max + ' | ' + bar.getAttribute('aria-label');
            if (window.progressSeen.at(-1) !== s && !window.progressSeen.includes(s)) window.progressSeen.push(s);
          }
        }).observe(document.querySelector('#results'), { subtree: true, childList: true, characterData: true, attributes: true });
      `);
      await pasteNumbers(page, usNumbers(150));
      await page.click('label[for="design-all"]');
      const before = await lookupsDone(page);
      await page.click('#lookup');
      await waitForLookup(page, before, 120_000);
      const seen = (await page.evaluate('window.progressSeen')) as string[];
      for (const design of ['plain', 'hashed', 'blinded']) {
        for (const done of [50, 100, 150]) expect(seen).toContain(`${design}: ${done} / 150 | ${done}/150 | ${design}: numbers looked up`);
        const a = await answers(page, design);
        expect(a).toHaveLength(150);
        expect(a.filter((x) => x.kind === 'messenger')).toHaveLength(1); // +1 415 555 0123
      }
      expect(await text(page, '#results .agreement')).toContain('same answers');
      // One evaluate request, so one token, per chunk of 50.
      expect(await text(page, '#card-blinded .crossed [data-step="evaluate"]')).toContain('in 3 requests of class 64, 64, 64');
      expect(await text(page, '#card-blinded .variant')).toBe('Privacy Pass token, padded to class 64');
    }, 180_000);
  });

  it('a login link works once: the second use is refused on the page', async () => {
    const link = ui.loginUrl(ts.server.url);
    const first = await open(link);
    expect(await text(first, '#session')).toContain('operator view');
    const second = await open(link);
    await second.waitForSelector('#error:not([hidden])');
    // One sentence, naming pcd page-link as code (no backticks), then the code.
    expect(await text(second, '#error')).toBe('This login link was used already or has expired: run pcd page-link for a fresh one, or go on with answers only. forbidden HTTP 403');
    expect(await second.$$eval('#error code', (els) => els.map((e) => (e as unknown as El).textContent))).toEqual(['pcd page-link', 'forbidden']);
    expect(await html(second, '#error')).not.toContain('`');
    expect(await text(second, '#session')).toContain('answers only');
    expect(await second.evaluate(() => sessionStorage.getItem('pcd.view'))).toBeNull();
    await Promise.all([first.close(), second.close()]);
  });

  it('on a phone (375 px): the design choice on one line, nothing wider than the screen, no keyboard hint', async () => {
    const page = await open(`${ts.server.url}/`, { width: 375, height: 800, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const labels = await page.$$eval('.segmented label', (els) =>
      els.map((e) => {
        const el = e as unknown as El;
        const r = el.getBoundingClientRect();
        return { text: el.innerText, top: r.top, height: r.height, right: r.right, rects: el.getClientRects().length };
      }),
    );
    expect(labels.map((l) => l.text)).toEqual(['plain', 'hashed', 'blinded', 'all three']);
    for (const l of labels) {
      expect(l, 'one line, one row').toMatchObject({ top: labels[0]!.top, height: labels[0]!.height, rects: 1 });
      expect(l.right).toBeLessThanOrEqual(375);
    }
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
    expect(await page.$eval('.kbd-hint', (el) => (el as unknown as El).getClientRects().length)).toBe(0);
    expect(await text(page, '#numbers-hint')).not.toContain('Ctrl');
    expect(await text(page, '#numbers-count')).toBe('up to 200 numbers at a time');
    await page.close();
  });

  // Last but one: it stops the server.
  it('a server that is gone: the lookup shows the network error, not an answer', async () => {
    const page = await open(ui.loginUrl(ts.server.url));
    await ts.close();
    await lookUp(page, 'blinded', '(415) 555-0123', 'button');
    expect(await answers(page, 'blinded')).toEqual([]);
    const problem = await text(page, '#card-blinded .problem');
    expect(problem).toContain('network');
    expect(problem).toContain('cannot reach');
    await page.close();
  });

  it('the page ran without a script error or a CSP refusal', () => {
    expect(problems).toEqual([]);
  });
});
