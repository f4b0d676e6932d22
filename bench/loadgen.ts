/**
 * A closed-loop HTTP load generator for loopback: `concurrency` requests in
 * flight over keep-alive connections, each worker sending its next request
 * when the previous reply has been read. Bodies are encoded before the clock
 * starts (for the blinded design: blinded before, so the server's evaluate
 * is what is measured), and node:http is used rather than fetch because it
 * costs the generator less per request.
 *
 * A request may carry headers of its own over the phase's (a Privacy Pass
 * token is single-use, so each request pays with its own Authorization
 * header; bench/tokens.ts mints them before the clock starts).
 *
 * Bounded both ways: a phase stops when its duration has passed and it has
 * at least `minRequests` replies, or at `maxRequests`, whichever comes first.
 */
import http from 'node:http';

export interface LoadRequest {
  method: 'GET' | 'POST';
  path: string;
  body?: Buffer;
  /** Headers of this request, over the phase's (e.g. its own single-use token). */
  headers?: Record<string, string>;
}

export interface LoadPhase {
  /** Requests to cycle through (one worker takes the next in turn). */
  requests: readonly LoadRequest[];
  headers: Record<string, string>;
  concurrency: number;
  durationMs: number;
  minRequests: number;
  maxRequests: number;
  /** After a 503, wait this long before the worker's next attempt (a client retrying a full server); default 0. */
  retryDelayMs?: number;
  /** Stop early when this resolves (the phase then ends with the requests in flight). */
  stop?: Promise<unknown>;
}

export interface LoadResult {
  requests: number;
  errors: number;
  /** Status codes other than 2xx/304 seen, with counts. */
  statuses: Record<string, number>;
  durationMs: number;
  latenciesMs: number[];
  requestBodyBytes: number;
  replyBodyBytes: number;
  /** Retry-After values (seconds) of the 503s seen. */
  retryAfterSeconds: number[];
}

export function loopbackOnly(url: string): URL {
  const u = new URL(url);
  if (u.hostname !== '127.0.0.1' && u.hostname !== '[::1]' && u.hostname !== 'localhost') {
    throw new Error(`the load generator only talks to loopback, not ${u.hostname}`);
  }
  return u;
}

/** Per-request bound; far above any request the benchmark sends (a 1,000-element evaluate takes seconds). */
const REQUEST_TIMEOUT_MS = 120_000;

function send(agent: http.Agent, base: URL, req: LoadRequest, phaseHeaders: Record<string, string>): Promise<{ status: number; bytes: number; retryAfter?: string }> {
  const headers = req.headers ? { ...phaseHeaders, ...req.headers } : phaseHeaders;
  return new Promise((resolve, reject) => {
    const r = http.request(
      {
        agent,
        host: base.hostname.replace(/^\[|\]$/g, ''),
        port: base.port,
        method: req.method,
        path: req.path,
        headers: req.body ? { ...headers, 'content-length': String(req.body.length) } : headers,
      },
      (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        const retryAfter = res.headers['retry-after'];
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, ...(retryAfter ? { retryAfter } : {}) }));
        res.on('error', reject);
      },
    );
    r.on('error', reject);
    // A reply that never comes fails this request instead of hanging the run.
    r.setTimeout(REQUEST_TIMEOUT_MS, () => r.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
    r.end(req.body);
  });
}

export async function runLoad(url: string, phase: LoadPhase): Promise<LoadResult> {
  const base = loopbackOnly(url);
  if (phase.requests.length === 0) throw new Error('runLoad: no requests');
  const agent = new http.Agent({ keepAlive: true, maxSockets: phase.concurrency, maxFreeSockets: phase.concurrency });
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let errors = 0;
  let started = 0;
  let done = 0;
  let next = 0;
  let reqBytes = 0;
  let replyBytes = 0;
  const retryAfter: number[] = [];
  let stopped = false;
  void phase.stop?.then(() => (stopped = true));
  const t0 = performance.now();
  const more = () => {
    if (stopped || started >= phase.maxRequests) return false;
    if (performance.now() - t0 < phase.durationMs) return true;
    return started < phase.minRequests;
  };
  const worker = async () => {
    while (more()) {
      started++;
      const req = phase.requests[next]!;
      next = (next + 1) % phase.requests.length;
      const s = performance.now();
      try {
        const r = await send(agent, base, req, phase.headers);
        const ms = performance.now() - s;
        if ((r.status >= 200 && r.status < 300) || r.status === 304) {
          latencies.push(ms);
          reqBytes += req.body?.length ?? 0;
          replyBytes += r.bytes;
        } else {
          errors++;
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
          if (r.status === 503) {
            const seconds = Number(r.retryAfter);
            if (Number.isFinite(seconds)) retryAfter.push(seconds);
            if (phase.retryDelayMs) await new Promise((resolve) => setTimeout(resolve, phase.retryDelayMs));
          }
        }
      } catch (e) {
        errors++;
        const code = (e as NodeJS.ErrnoException).code ?? 'error';
        statuses[code] = (statuses[code] ?? 0) + 1;
      }
      done++;
    }
  };
  await Promise.all(Array.from({ length: phase.concurrency }, worker));
  const durationMs = performance.now() - t0;
  agent.destroy();
  return { requests: done - errors, errors, statuses, durationMs, latenciesMs: latencies, requestBodyBytes: reqBytes, replyBodyBytes: replyBytes, retryAfterSeconds: retryAfter };
}
