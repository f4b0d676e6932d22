/**
 * A picture of the page for the README: a server on a temporary data
 * folder seeded like `npm start` (a synthetic directory) plus two known
 * accounts, the page opened through a one-time login link in headless
 * Chromium at 1280 px, three numbers looked up in all three designs side by
 * side, and the page written to a PNG.
 *
 *   node --import tsx web/screenshot.ts [out.png]     (default docs/page.png)
 *
 * Chromium: PCD_CHROMIUM, else /usr/bin/chromium (Debian: apt-get install
 * chromium), else chromium or google-chrome on PATH. Nothing is downloaded.
 * {@link findChromium} is also the page test's (test/web-page.test.ts).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { createAdminClient } from '../client/client.ts';
import { seedDataFolder } from '../server/seed.ts';
import { startServer } from '../server/server.ts';
import { buildWeb } from './build.ts';
import { createWebUi } from './server.ts';

/** What to install when no browser is found. */
export const CHROMIUM_HINT = 'install Chromium (Debian/Ubuntu: apt-get install chromium) or set PCD_CHROMIUM to a Chromium or Chrome binary';

/** A Chromium or Chrome binary: PCD_CHROMIUM, /usr/bin/chromium, then chromium, chromium-browser, google-chrome(-stable) on PATH. */
export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const isExe = (f: string) => {
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return fs.statSync(f).isFile();
    } catch {
      return false;
    }
  };
  if (env.PCD_CHROMIUM) return isExe(env.PCD_CHROMIUM) ? env.PCD_CHROMIUM : undefined;
  if (isExe('/usr/bin/chromium')) return '/usr/bin/chromium';
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const name of ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable']) {
      const f = path.join(dir, name);
      if (isExe(f)) return f;
    }
  }
  return undefined;
}

export function launchChromium(executablePath: string): Promise<Browser> {
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return puppeteer.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-gpu', '--lang=en-US'], defaultViewport: null });
}

/**
 * The little of the page's DOM that the callbacks run in the browser touch:
 * this file is type-checked for Node, without the DOM lib, and the
 * callbacks are serialised and run against the page's real `document`.
 */
interface PageElement {
  dataset: Record<string, string | undefined>;
  blur?(): void;
}
declare const document: { querySelector(selector: string): PageElement | null; activeElement: PageElement | null };
declare const window: { scrollTo(x: number, y: number): void };

/** The number of lookups the page has finished (its results' data-done). */
export async function lookupsDone(page: Page): Promise<number> {
  return page.evaluate(() => Number(document.querySelector('#results')?.dataset.done ?? 0));
}

/** Waits until the page has finished more than `before` lookups (every card in, the button enabled again). */
export async function waitForLookup(page: Page, before: number, timeout = 60_000): Promise<void> {
  await page.waitForFunction((n: number) => Number(document.querySelector('#results')?.dataset.done ?? 0) > n, { timeout }, before);
}

const ADMIN = 'screenshot-admin-token';

async function main(out: string): Promise<void> {
  const chromium = findChromium();
  if (!chromium) throw new Error(`no Chromium found: ${CHROMIUM_HINT}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pcd-shot-'));
  const distDir = path.join(tmp, 'web');
  const dataDir = path.join(tmp, 'data');
  await buildWeb(distDir);
  await seedDataFolder(dataDir, path.join(tmp, 'contacts'), { size: 1000, requesters: 1, contactsPerRequester: 20 });
  const ui = createWebUi({ distDir });
  const server = await startServer({ dataDir, adminToken: ADMIN, port: 0, evalThreads: 0, rateLimits: false, logIntervalMs: 20, web: ui.mount });
  let browser: Browser | undefined;
  try {
    await server.ready;
    const admin = createAdminClient({ baseUrl: server.url, adminToken: ADMIN });
    await admin.createAccount({ email: 'alice@example.com', numbers: ['+14155550123'], capabilities: ['messages', 'facetime'] });
    await admin.createAccount({ email: 'bob@example.co.uk', numbers: ['+442079460018'], capabilities: ['messages'] });

    browser = await launchChromium(chromium);
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900, deviceScaleFactor: 1 });
    await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'light' }]);
    await page.goto(ui.loginUrl(server.url), { waitUntil: 'networkidle0' });
    await page.waitForSelector('html[data-ready="true"]');
    await page.type('#numbers', '(415) 555-0123\n+44 20 7946 0018\n415 555 0199');
    await page.click('label[for="design-all"]');
    await page.click('#lookup');
    await waitForLookup(page, 0);
    // The page without its focus ring on the text box, scrolled to the top.
    await page.evaluate(() => {
      document.activeElement?.blur?.();
      window.scrollTo(0, 0);
    });
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await page.screenshot({ path: out as `${string}.png`, fullPage: true });
    console.log(`wrote ${out}`);
  } finally {
    await browser?.close();
    await server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv[2] ?? 'docs/page.png').catch((e: unknown) => {
    console.error(`screenshot: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
