/**
 * The page's login reply carries what the page uses and nothing more
 * (issue 17, item 7): `{ viewToken, requester: { email, accountId, token } }`
 * (shared/page.ts, read by web/page/api.ts and web/page/main.ts), even when
 * the account handed to the web UI carries more, as `pcd start`'s seeded
 * requester does (its contact list's server path, the list's counts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createWebUi } from '../web/server.ts';
import { fakeWebDist, raw, startTestServer, tempDir, type TestServer } from './helpers.ts';

const open: TestServer[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close().catch(() => {});
});


async function login(url: string, link: string) {
  return raw(`${url}/v1/ui/login`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: link.split('#login=')[1]! }) });
}

describe('POST /v1/ui/login', () => {
  it('replies with the view token and the account the page looks up as (email, id, token) only', async () => {
    const ui = createWebUi({ distDir: fakeWebDist() });
    const s = await startTestServer({ designs: ['plain'], web: ui.mount });
    open.push(s);
    const { accountId, token } = await s.admin.createAccount({ email: 'demo@example.org', numbers: ['+14155550111'], capabilities: ['messages'] });
    // What pcd start hands over for a seeded requester: more than the page needs.
    const seeded = { email: 'demo@example.org', accountId, token, contacts: '/srv/pcd/contacts/demo.txt', registered: 100, total: 200, numbers: ['+14155550111'], created: false };
    ui.usePageAccount(seeded);

    const r = await login(s.server.url, ui.loginUrl(s.server.url));
    expect(r.status).toBe(200);
    expect(Object.keys(r.json).sort()).toEqual(['requester', 'viewToken']);
    expect(r.json.requester).toEqual({ email: 'demo@example.org', accountId, token });
    expect(r.text).not.toContain('/srv/pcd');
    expect(r.text).not.toContain('+14155550111');

    // Configured through the options too, and for the page's own account (created on first login).
    const own = createWebUi({ distDir: fakeWebDist(), pageAccount: seeded });
    const s2 = await startTestServer({ designs: ['plain'], web: own.mount, dataDir: tempDir() });
    open.push(s2);
    const r2 = await login(s2.server.url, own.loginUrl(s2.server.url));
    expect(Object.keys(r2.json.requester).sort()).toEqual(['accountId', 'email', 'token']);
    const plainUi = createWebUi({ distDir: fakeWebDist() });
    const s3 = await startTestServer({ designs: ['plain'], web: plainUi.mount });
    open.push(s3);
    const r3 = await login(s3.server.url, plainUi.loginUrl(s3.server.url));
    expect(Object.keys(r3.json.requester).sort()).toEqual(['accountId', 'email', 'token']);
  });
});
