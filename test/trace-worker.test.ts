/**
 * The page's hashed trace off the main thread (issue 17, item 6; web/reverse.ts):
 * - while two traces each enumerate 10^6 numbers, /v1/health answers (the
 *   reversals run in worker threads; before, six of them held every request
 *   for about 10 s), and the traces still reverse the hash they found;
 * - a third trace while two run is refused with 503 `unavailable` and
 *   Retry-After, not queued;
 * - a view token reads the log view for VIEW_TOKEN_TTL_MS after its login
 *   (the server's clock), then answers 403 saying it expired.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createClient } from '../client/client.ts';
import { PATHS } from '../shared/messages.ts';
import { createWebUi, VIEW_TOKEN_TTL_MS } from '../web/server.ts';
import { MAX_CONCURRENT_REVERSALS, reversalsRunning } from '../web/reverse.ts';
import { fakeWebDist, raw, startTestServer, testClock, type TestServer } from './helpers.ts';

const open: TestServer[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => {});
});


/** A server with the page, its page account, one hashed lookup of `asked` made as that account, and a view token. */
async function setUp(asked: string, now?: () => number) {
  const ui = createWebUi({ distDir: fakeWebDist() });
  const s = await startTestServer({ designs: ['plain', 'hashed'], web: ui.mount, ...(now ? { now } : {}) });
  open.push(s);
  const account = await s.admin.createAccount({ email: 'page@example.org', numbers: ['+14155550100'], capabilities: ['messages'] });
  ui.usePageAccount({ ...account, email: 'page@example.org' });
  await createClient({ baseUrl: s.server.url, token: account.token, design: 'hashed' }).lookup(asked);
  const link = ui.loginUrl(s.server.url);
  const login = await raw(`${s.server.url}${PATHS.pageLogin}`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: link.split('#login=')[1] }) });
  expect(login.status).toBe(200);
  return { s, viewToken: login.json.viewToken as string };
}

async function trace(s: TestServer, viewToken: string, plan?: string): Promise<{ status: number; json: any; retryAfter: string | null }> {
  const q = new URLSearchParams({ design: 'hashed', since: '0', ...(plan ? { plan } : {}) });
  const res = await fetch(`${s.server.url}${PATHS.pageTrace}?${q}`, { headers: { authorization: `Bearer ${viewToken}`, accept: 'application/json' } });
  return { status: res.status, json: await res.json(), retryAfter: res.headers.get('retry-after') };
}

describe('the hashed trace', () => {
  it('reverses in worker threads, at most two at once: /v1/health answers meanwhile, a third is 503 with Retry-After', async () => {
    const asked = '+14155550123';
    const { s, viewToken } = await setUp(asked);
    const plan = '+14155XXXXXX'; // 10^6 numbers, the most a trace enumerates
    expect(MAX_CONCURRENT_REVERSALS).toBe(2);
    const traces = [trace(s, viewToken, plan), trace(s, viewToken, plan)];
    for (let i = 0; i < 2000 && reversalsRunning() < 2; i++) await new Promise((r) => setTimeout(r, 5));
    expect(reversalsRunning()).toBe(2);

    // Sent at once while both threads start or enumerate (each costs about a second of CPU): the cap is checked before any work,
    // and the main thread is free, so health answers while the reversals are still under way.
    const [third, health] = await Promise.all([trace(s, viewToken, plan), raw(`${s.server.url}${PATHS.health}`, { method: 'GET' })]);
    const stillRunning = reversalsRunning();
    expect(health.status).toBe(200);
    expect(stillRunning).toBeGreaterThan(0);
    expect(third.status).toBe(503);
    expect(third.json.error).toMatchObject({ code: 'unavailable', message: expect.stringMatching(/at most 2 at once/) });
    expect(Number(third.retryAfter)).toBeGreaterThanOrEqual(1);

    for (const r of await Promise.all(traces)) {
      expect(r.status).toBe(200);
      expect(r.json.reversal.candidates).toBe(1_000_000);
      expect(Object.values(r.json.reversal.numbers)).toContain(asked);
    }
    expect(reversalsRunning()).toBe(0);
    // A trace without a plan, and one with a small plan, as before.
    expect((await trace(s, viewToken)).status).toBe(200);
    const small = await trace(s, viewToken, '+141555501XX');
    expect(Object.values(small.json.reversal.numbers)).toEqual([asked]);
  });
});

describe('a view token', () => {
  it('reads the log view for its lifetime on the server clock, then is refused with 403 saying it expired', async () => {
    const clock = testClock();
    const { s, viewToken } = await setUp('+14155550125', clock.now);
    expect(VIEW_TOKEN_TTL_MS).toBeLessThanOrEqual(24 * 3600_000);
    clock.advance(VIEW_TOKEN_TTL_MS - 1000);
    expect((await trace(s, viewToken)).status).toBe(200);
    clock.advance(2000);
    const r = await trace(s, viewToken);
    expect(r.status).toBe(403);
    expect(r.json.error).toMatchObject({ code: 'forbidden', message: expect.stringMatching(/expired.*new login link/) });
    expect((await trace(s, viewToken)).status).toBe(403); // forgotten, not revived
  });
});
