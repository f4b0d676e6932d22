/**
 * The web page's server side (web/server.ts): the page at `/` with its
 * headers, the one-time login link, the view token, the trace of what a
 * lookup left (scoped to the page's requester, flushed first, the hashed
 * reversal timed: over the page's largest plan, 10^6 numbers, under
 * PCD_TEST_FULL=1, over 10^4 otherwise), bad input, and `--no-ui` (a
 * `pcd serve` with the page and one without, started side by side).
 * Blinded, both variants: with Privacy Pass tokens (the default) the
 * issuance row names the account and the evaluation rows name no one,
 * found by IP; as the account, the old per-request rows. The page itself,
 * in a real browser: test/web-page.test.ts.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashNumber } from '../shared/designs/hashed.ts';
import { BLINDED_EVAL_LOG, BLINDED_TOKEN_EVAL_LOG, TOKEN_ISSUANCE_LOG } from '../shared/designs/blinded.ts';
import { TraceReply } from '../shared/messages.ts';
import { parseReply } from '../shared/schema.ts';
import type { E164 } from '../shared/e164.ts';
import { createWebUi, PAGE_CSP, PAGE_ACCOUNT_EMAIL, type WebUi } from '../web/server.ts';
import { FULL, fakeWebDist, raw, runPcd, spawnServe, startTestServer, stopChild, tempDir, type TestServer } from './helpers.ts';

const REGISTERED = '+14155550123' as E164;
const UNREGISTERED = '+14155550199' as E164;
/**
 * The plans the hashed trace is reversed over: both numbers inside one, neither inside the other. The reversal
 * enumerates every number of the plan in a worker (about 1 s of CPU per 10^6): the page's largest plan (6 X) under
 * PCD_TEST_FULL=1, 10^4 numbers otherwise; the trace's answer is the same either way.
 */
const PLAN = FULL ? '+14155XXXXXX' : '+1415555XXXX';
const OUTSIDE_PLAN = FULL ? '+14156XXXXXX' : '+1415666XXXX';
const PLAN_SIZE = FULL ? 1_000_000 : 10_000;


async function login(url: string, code: string) {
  return raw(`${url}/v1/ui/login`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) });
}

const codeOf = (link: string) => link.split('#login=')[1]!;

describe('web/server.ts: the page, the login link and the trace', () => {
  let ts: TestServer;
  let ui: WebUi;
  let view: string;
  let page: { accountId: number; email: string; token: string };
  let other: string;

  beforeAll(async () => {
    ui = createWebUi({ distDir: fakeWebDist() });
    ts = await startTestServer({ web: ui.mount, sizeClasses: [1, 64, 4096] });
    await ts.admin.createAccount({ email: 'owner@example.org', numbers: [REGISTERED], capabilities: ['messages', 'facetime'] });
    ({ token: other } = await ts.admin.createAccount({ email: 'other@example.org', numbers: ['+14155550177'], capabilities: ['messages'] }));
    const r = await login(ts.server.url, codeOf(ui.loginUrl(ts.server.url)));
    expect(r.status).toBe(200);
    view = r.json.viewToken;
    page = r.json.requester;
  });
  afterAll(() => ts?.close());

  it('serves the page at / with a strict CSP, and its files', async () => {
    const r = await fetch(`${ts.server.url}/`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/text\/html/);
    expect(r.headers.get('content-security-policy')).toBe(PAGE_CSP);
    expect(r.headers.get('referrer-policy')).toBe('no-referrer');
    expect(await r.text()).toContain('/app.js');
    const js = await fetch(`${ts.server.url}/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    const missing = await raw(`${ts.server.url}/nothing.js`, { method: 'GET' });
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe('not_found');
  });

  it('the login link is in the fragment, works once, and hands out a view token and the page account', async () => {
    const link = ui.loginUrl(ts.server.url);
    expect(link).toMatch(new RegExp(`^${ts.server.url}/#login=[A-Za-z0-9_-]{32}$`));
    expect(page.email).toBe(PAGE_ACCOUNT_EMAIL);
    expect(view).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const first = await login(ts.server.url, codeOf(link));
    expect(first.status).toBe(200);
    expect(first.json.requester.accountId).toBe(page.accountId);
    const again = await login(ts.server.url, codeOf(link));
    expect(again.status).toBe(403);
    expect(again.json.error).toMatchObject({ code: 'forbidden', message: expect.stringMatching(/used already/) });
    const unknown = await login(ts.server.url, 'A'.repeat(32));
    expect(unknown.status).toBe(403);
  });

  it('refuses malformed logins with a coded 4xx', async () => {
    for (const body of ['', 'not json', '{"code": 5}', '{"code": "short"}', JSON.stringify({ code: 'x'.repeat(5000) })]) {
      const r = await raw(`${ts.server.url}/v1/ui/login`, { headers: { 'content-type': 'application/json' }, body });
      expect(r.status, body.slice(0, 30)).toBeGreaterThanOrEqual(400);
      expect(r.status, body.slice(0, 30)).toBeLessThan(500);
      expect(r.json.error.code, body.slice(0, 30)).toMatch(/^(invalid_field|malformed_body|body_too_large)$/);
    }
  });

  it('the trace holds the rows the page account left, per design, and none of another account', async () => {
    const auth = { authorization: `Bearer ${view}` };
    const clock = await raw(`${ts.server.url}/v1/ui/clock`, { method: 'GET', headers: auth });
    expect(clock.status).toBe(200);
    const since = clock.json.now as number;
    for (const design of ['plain', 'hashed', 'blinded'] as const) {
      await ts.client(other, design).lookupMany([REGISTERED]); // another requester: not in the page's trace
      const results = await ts.client(page.token, design).lookupMany([REGISTERED, UNREGISTERED]);
      expect(results.map((r) => r.capabilities.length > 0)).toEqual([true, false]);
    }
    const trace = async (design: string, extra = '') => raw(`${ts.server.url}/v1/ui/trace?design=${design}&since=${since}${extra}`, { method: 'GET', headers: auth });

    const plain = await trace('plain');
    expect(plain.status).toBe(200);
    const pt = plain.json.tables[0];
    expect(pt.name).toBe('plain_log');
    expect(pt.columns.map((c: { holds: string }) => c.holds)).toEqual(['time', 'account', 'email', 'ip', 'number', 'answer']);
    expect(pt.rows.map((r: unknown[]) => r.slice(1, 6)).sort()).toEqual(
      [
        [page.accountId, PAGE_ACCOUNT_EMAIL, '127.0.0.1', REGISTERED, 3],
        [page.accountId, PAGE_ACCOUNT_EMAIL, '127.0.0.1', UNREGISTERED, 0],
      ].sort(),
    );

    // The two reversals at once (each in a worker of its own; the server runs two at a time).
    const [hashed, outside] = await Promise.all([trace('hashed', `&plan=${encodeURIComponent(PLAN)}`), trace('hashed', `&plan=${encodeURIComponent(OUTSIDE_PLAN)}`)]);
    expect(hashed.status).toBe(200);
    const hashes = hashed.json.tables[0].rows.map((r: unknown[]) => r[4]);
    const hex = (n: E164) => Buffer.from(hashNumber(n)).toString('hex');
    expect(hashes.sort()).toEqual([hex(REGISTERED), hex(UNREGISTERED)].sort());
    expect(hashed.json.reversal).toMatchObject({ plan: PLAN, candidates: PLAN_SIZE, numbers: { [hex(REGISTERED)]: REGISTERED, [hex(UNREGISTERED)]: UNREGISTERED } });
    expect(hashed.json.reversal.ms).toBeGreaterThan(0);
    expect(outside.json.reversal.numbers).toEqual({});

    const blinded = await trace('blinded');
    expect(blinded.status).toBe(200);
    // Each reply is what shared/page.ts declares, as the page checks it.
    for (const r of [plain, hashed, blinded]) expect(() => parseReply(TraceReply, r.json, 'json')).not.toThrow();
    // The default server takes Privacy Pass tokens on evaluate: the trace says so, and holds its token logs.
    expect(blinded.json.auth).toBe('token');
    type Table = { name: string; scope: string; windowMs?: number; columns: { name: string; holds: string }[]; rows: unknown[][] };
    const tables = new Map<string, Table>((blinded.json.tables as Table[]).map((t) => [t.name, t]));
    expect([...tables.keys()].sort()).toEqual(['blinded_bucket_log', BLINDED_EVAL_LOG.name, BLINDED_TOKEN_EVAL_LOG.name, TOKEN_ISSUANCE_LOG.name].sort());
    // Nothing reached the per-account evaluate log: the evaluate requests carried tokens.
    expect(tables.get(BLINDED_EVAL_LOG.name)!.rows).toEqual([]);
    // Issuance: per account and UTC day, in elements: one token of class 64 (2 numbers padded to 64), and none of the other account's.
    const issuance = tables.get(TOKEN_ISSUANCE_LOG.name)!;
    expect([issuance.scope, issuance.windowMs]).toEqual(['account', 86_400_000]);
    expect(issuance.rows).toEqual([[expect.any(Number), page.accountId, 64]]);
    expect((issuance.rows[0]![0] as number) % 86_400_000).toBe(0);
    // The anonymous evaluations: found by IP, no account and no element count in them. The other account's
    // single lookup from the same IP (class 1) sits beside the page account's (class 64), told apart by class only.
    const evals = tables.get(BLINDED_TOKEN_EVAL_LOG.name)!;
    expect([evals.scope, evals.windowMs]).toEqual(['ip', 60_000]);
    expect(evals.columns.map((c) => c.holds)).toEqual(['time', 'ip', 'epoch', 'size-class', 'count']);
    expect(evals.columns.some((c) => ['account', 'email', 'number', 'number-hash'].includes(c.holds))).toBe(false);
    expect(evals.rows.map((r) => r.slice(1)).sort()).toEqual([
      ['127.0.0.1', 1, 1, 1],
      ['127.0.0.1', 1, 64, 1],
    ]);
    for (const r of evals.rows) expect((r[0] as number) % 60_000).toBe(0);
    const buckets = tables.get('blinded_bucket_log')!;
    expect(buckets.scope).toBe('ip');
    expect(buckets.rows.length).toBeGreaterThan(0);
    const text = JSON.stringify(blinded.json);
    for (const form of [REGISTERED, REGISTERED.slice(1), '4155550123', hex(REGISTERED), UNREGISTERED.slice(1), PAGE_ACCOUNT_EMAIL]) expect(text).not.toContain(form);
  });

  it('POST /v1/admin/page-link mints a new one-time link for the admin only', async () => {
    const link = await ts.admin.pageLink();
    expect(link).toMatch(new RegExp(`^${ts.server.url}/#login=[A-Za-z0-9_-]{32}$`));
    expect((await login(ts.server.url, codeOf(link))).status).toBe(200);
    expect((await login(ts.server.url, codeOf(link))).status).toBe(403);
    const none = await raw(`${ts.server.url}/v1/admin/page-link`, { method: 'POST' });
    expect([none.status, none.json.error.code]).toEqual([401, 'unauthenticated']);
    const wrong = await raw(`${ts.server.url}/v1/admin/page-link`, { method: 'POST', headers: { authorization: `Bearer ${view}` } });
    expect([wrong.status, wrong.json.error.code]).toEqual([403, 'forbidden']);
    const get = await raw(`${ts.server.url}/v1/admin/page-link`, { method: 'GET', headers: { authorization: `Bearer ${view}` } });
    expect(get.status).toBe(405);
  });

  it('refuses a trace without a view token, with a wrong one, and with bad parameters', async () => {
    const url = `${ts.server.url}/v1/ui/trace?design=plain&since=0`;
    expect((await raw(url, { method: 'GET' })).json.error.code).toBe('unauthenticated');
    const wrong = await raw(url, { method: 'GET', headers: { authorization: 'Bearer not-a-view-token' } });
    expect([wrong.status, wrong.json.error.code]).toEqual([403, 'forbidden']);
    // The admin token's holder uses the audit; a requester token is no view token.
    const requester = await raw(url, { method: 'GET', headers: { authorization: `Bearer ${page.token}` } });
    expect(requester.status).toBe(403);
    const auth = { authorization: `Bearer ${view}` };
    for (const q of ['design=nope', 'design=plain&since=-1', 'design=plain&since=abc', 'design=plain&plan=%2B1415XXXXXXX', 'design=hashed&plan=%2B14XXXXXXXXX', 'design=hashed&plan=nonsense', 'design=plain&design=hashed']) {
      const r = await raw(`${ts.server.url}/v1/ui/trace?${q}`, { method: 'GET', headers: auth });
      expect([r.status, r.json.error.code], q).toEqual([400, 'invalid_field']);
      expect(r.json.error.message.length, q).toBeGreaterThan(10);
    }
  });
});

describe('web/server.ts: the blinded trace of a server that takes the account on evaluate', () => {
  it('holds the per-request row with the account, IP and element count, and no token log', async () => {
    const ui = createWebUi({ distDir: fakeWebDist() });
    const ts = await startTestServer({ web: ui.mount, blindedAuth: 'account' });
    try {
      await ts.admin.createAccount({ email: 'owner@example.org', numbers: [REGISTERED], capabilities: ['messages'] });
      const r = await login(ts.server.url, codeOf(ui.loginUrl(ts.server.url)));
      const { viewToken, requester } = r.json as { viewToken: string; requester: { accountId: number; token: string } };
      const auth = { authorization: `Bearer ${viewToken}` };
      const since = (await raw(`${ts.server.url}/v1/ui/clock`, { method: 'GET', headers: auth })).json.now as number;
      await ts.client(requester.token, 'blinded').lookupMany([REGISTERED, UNREGISTERED]);
      const t = await raw(`${ts.server.url}/v1/ui/trace?design=blinded&since=${since}`, { method: 'GET', headers: auth });
      expect(t.status).toBe(200);
      expect(() => parseReply(TraceReply, t.json, 'json')).not.toThrow();
      expect(t.json.auth).toBe('account');
      const [evals, buckets, ...rest] = t.json.tables;
      expect(rest).toEqual([]); // no token logs: this server keeps none
      expect([evals.name, evals.scope]).toEqual([BLINDED_EVAL_LOG.name, 'account']);
      expect(evals.rows).toEqual([[expect.any(Number), requester.accountId, '127.0.0.1', 1, 2]]);
      expect([buckets.name, buckets.scope]).toEqual(['blinded_bucket_log', 'ip']);
      expect(buckets.rows.length).toBeGreaterThan(0);
    } finally {
      await ts.close();
    }
  });
});

describe('the page in the commands', () => {
  it('pcd serve prints the page and a one-time operator link; --no-ui serves no page', async () => {
    // Two folders seeded alike, so that the two servers (with the page, and --no-ui) start side by side: each child
    // costs a second or so of CPU to start, most of it loading tsx and the module graph.
    const dataDir = tempDir();
    const offDir = tempDir();
    for (const dir of [dataDir, offDir]) await runPcd(['seed', '--data', dir, '--size', '20', '--requesters', '1', '--contacts', '4']);
    const started = await Promise.allSettled([spawnServe(['--data', dataDir, '--design', 'plain']), spawnServe(['--data', offDir, '--design', 'plain', '--no-ui'])]);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      for (const r of started) if (r.status === 'fulfilled') await stopChild(r.value.child);
      throw failed.reason;
    }
    const [on, off] = started.map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof spawnServe>>>).value) as [
      Awaited<ReturnType<typeof spawnServe>>,
      Awaited<ReturnType<typeof spawnServe>>,
    ];
    try {
      // The link is printed right after the line spawnServe waits for.
      for (let i = 0; i < 100 && !on.output().includes('operator link'); i++) await new Promise((r) => setTimeout(r, 20));
      const out = on.output();
      expect(out).toContain(`web page:         ${on.url}/`);
      const link = /operator link: +(\S+)/.exec(out)?.[1];
      expect(link).toMatch(/#login=/);
      const r = await login(on.url, codeOf(link!));
      expect(r.status).toBe(200);
      expect((await login(on.url, codeOf(link!))).status).toBe(403);
      const pageReply = await fetch(`${on.url}/`);
      expect(pageReply.status).toBe(fs.existsSync('dist/web/index.html') ? 200 : 404);
      // A new link without a restart: the admin token from the data folder.
      const again = await runPcd(['page-link', '--server', on.url, '--data', dataDir], { PCD_ADMIN_TOKEN: undefined });
      expect(again.code, again.stderr).toBe(0);
      const fresh = again.stdout.trim();
      expect(fresh).toMatch(new RegExp(`^${on.url}/#login=[A-Za-z0-9_-]{32}$`));
      expect((await login(on.url, codeOf(fresh))).status).toBe(200);
      const noToken = await runPcd(['page-link', '--server', on.url, '--data', tempDir()], { PCD_ADMIN_TOKEN: undefined });
      expect(noToken.code).toBe(2);
      expect(noToken.stderr.trim().split('\n')).toHaveLength(1);
      expect(noToken.stderr).toMatch(/no admin token: set PCD_ADMIN_TOKEN/);

      // --no-ui: no link printed, no page served, and page-link says why.
      expect(off.output()).not.toContain('operator link');
      const offRoot = await raw(`${off.url}/`, { method: 'GET' });
      expect([offRoot.status, offRoot.json.error.code]).toEqual([404, 'not_found']);
      expect((await login(off.url, 'A'.repeat(32))).json.error.code).toBe('not_found');
      const offLink = await runPcd(['page-link', '--server', off.url, '--data', offDir], { PCD_ADMIN_TOKEN: undefined });
      expect(offLink.code).toBe(2);
      expect(offLink.stderr).toMatch(/serves no web page \(started with --no-ui\?\)/);
    } finally {
      await Promise.all([stopChild(on.child), stopChild(off.child)]);
    }
  });
});
