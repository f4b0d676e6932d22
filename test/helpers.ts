/**
 * Test harness: a real server on an ephemeral port over a temporary data
 * folder, the real client, and an admin client. Every e2e test builds on it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createAdminClient, createClient, type ClientOptions } from '../client/client.ts';
import type { DesignName } from '../shared/messages.ts';
import type { ServerOptions } from '../server/context.ts';
import { startServer, type RunningServer } from '../server/server.ts';

export const ADMIN_TOKEN = 'test-admin-token-not-a-secret';

export function tempDir(prefix = 'pcd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A clock tests can move. */
export function testClock(start = Date.UTC(2026, 10, 1, 12, 0, 0)) {
  let t = start;
  const now = () => t;
  return { now, advance: (ms: number) => (t += ms), set: (ms: number) => (t = ms) };
}

export interface TestServer {
  server: RunningServer;
  dataDir: string;
  admin: ReturnType<typeof createAdminClient>;
  client(token: string, design: DesignName, extra?: Partial<ClientOptions>): ReturnType<typeof createClient>;
  /** Restarts on the same data folder (graceful close first). */
  restart(overrides?: Partial<ServerOptions>): Promise<TestServer>;
  close(): Promise<void>;
}

export async function startTestServer(options: Partial<ServerOptions> = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? tempDir();
  // One evaluator worker: the pool is exercised, and test servers do not start one per core each.
  const server = await startServer({ adminToken: ADMIN_TOKEN, logIntervalMs: 20, evalThreads: 1, ...options, dataDir, port: 0 });
  // Every design answering (the blinded epochs loaded or built): tests that watch a design come up use startServer.
  await server.ready.catch(async (e: unknown) => {
    await server.close();
    throw e;
  });
  const ts: TestServer = {
    server,
    dataDir,
    admin: createAdminClient({ baseUrl: server.url, adminToken: ADMIN_TOKEN }),
    client: (token, design, extra) => createClient({ baseUrl: server.url, token, design, ...extra }),
    async restart(overrides = {}) {
      await server.close();
      return startTestServer({ ...options, ...overrides, dataDir });
    },
    close: () => server.close(),
  };
  return ts;
}

/** Raw HTTP request for bad-input tests. */
export async function raw(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {},
): Promise<{ status: number; contentType: string | null; json: any; text: string }> {
  const res = await fetch(url, { method: init.method ?? 'POST', headers: { accept: 'application/json', ...init.headers }, body: init.body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType: res.headers.get('content-type'), json, text };
}
