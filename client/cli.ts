/**
 * Client commands: `pcd lookup NUMBER...` and `pcd sync FILE`.
 * Both take --server, --token (or PCD_SERVER, PCD_TOKEN), --design and
 * --region, and print human lines or, with --json, one JSON document.
 */
import fs from 'node:fs';
import { Command, Option } from 'commander';
import { normalizeNumber, type E164 } from '../shared/e164.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';
import { LIMITS } from '../shared/limits.ts';
import { DESIGNS, type DesignName } from '../shared/messages.ts';
import type { RequestOptions, Transport } from '../shared/design.ts';
import { BACKENDS, DEFAULT_BACKEND, parseBackendName, type BackendName } from '../shared/suite.ts';
import { createClient, type LookupResult } from './client.ts';
import { createTransport } from './transport.ts';

export const DEFAULT_PORT = 8787;
export const DEFAULT_SERVER = `http://127.0.0.1:${DEFAULT_PORT}`;

export function describeAnswer(capabilities: readonly string[]): string {
  return capabilities.length ? `messenger (${capabilities.join(', ')})` : 'SMS only';
}

/** Numbers of a contact file: vCard TEL lines, or one number per line (# comments, blank lines ignored). */
export function parseContactFile(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (/^\s*BEGIN:VCARD/im.test(text)) {
    // vCard 2.1/3.0/4.0: unfold continuation lines first (RFC 6350 §3.2).
    const unfolded = text.replace(/\r?\n[ \t]/g, '').split(/\r?\n/);
    const out: string[] = [];
    for (const line of unfolded) {
      const m = /^(?:[A-Za-z0-9-]+\.)?TEL(?:;[^:]*)?:(.*)$/i.exec(line.trim());
      if (m) out.push(m[1]!.trim().replace(/^tel:/i, '').split(';', 1)[0]!.trim());
    }
    return out;
  }
  return lines.map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

interface CommonOptions {
  server: string;
  token?: string;
  design: DesignName;
  region?: string;
  json?: boolean;
  format: 'msgpack' | 'json';
  backend: BackendName;
}

function addCommon(cmd: Command): Command {
  return cmd
    .option('-s, --server <url>', 'server base URL (env PCD_SERVER)', process.env.PCD_SERVER ?? DEFAULT_SERVER)
    .option('-t, --token <token>', 'requester token (env PCD_TOKEN)', process.env.PCD_TOKEN)
    .addOption(new Option('-d, --design <design>', 'lookup design').choices([...DESIGNS]).default('blinded'))
    .option('-r, --region <CC>', 'default region for numbers without a country code, e.g. US')
    .addOption(new Option('--format <format>', 'wire format').choices(['msgpack', 'json']).default('msgpack'))
    .addOption(backendOption())
    .option('--json', 'print JSON for machines');
}

/** `--backend noble|sodium` (env PCD_BACKEND), shared by the client and server commands. */
export function backendOption(): Option {
  const env = process.env[BACKEND_ENV];
  const fallback = env !== undefined && env !== '' ? parseBackendName(env) : DEFAULT_BACKEND;
  return new Option('--backend <name>', `crypto backend of the blinded design (env ${BACKEND_ENV})`).choices([...BACKENDS]).default(fallback);
}

/** Environment variable naming the crypto backend. */
export const BACKEND_ENV = 'PCD_BACKEND';

/** A transport that counts requests and bytes, for the sync summary. */
export function countingTransport(inner: Transport): { transport: Transport; stats: { requests: number; sent: number; received: number } } {
  const stats = { requests: 0, sent: 0, received: 0 };
  const transport: Transport = {
    async request<T>(o: RequestOptions<T>) {
      const r = await inner.request(o);
      stats.requests++;
      stats.sent += r.bytesSent;
      stats.received += r.bytesReceived;
      return r;
    },
  };
  return { transport, stats };
}

function needToken(o: CommonOptions): string {
  if (!o.token) throw new PcdError(ErrorCode.Unauthenticated, 'no requester token: pass --token or set PCD_TOKEN (npm start prints a demo token)');
  return o.token;
}

export function registerClientCommands(program: Command): void {
  addCommon(
    program
      .command('lookup')
      .description('look numbers up: messenger (with capabilities) or SMS only')
      .argument('<numbers...>', 'phone numbers, E.164 or national with --region'),
  ).action(async (numbers: string[], o: CommonOptions) => {
    const client = createClient({ baseUrl: o.server, token: needToken(o), design: o.design, defaultRegion: o.region, format: o.format, backend: o.backend });
    const results = await client.lookupMany(numbers);
    if (o.json) {
      console.log(JSON.stringify({ design: o.design, results }, null, 2));
      return;
    }
    for (const r of results) console.log(`${r.number.padEnd(16)} ${describeAnswer(r.capabilities)}`);
  });

  addCommon(
    program
      .command('sync')
      .description('check a contact list (one number per line, or a vCard file) in batches')
      .argument('<file>', 'contact file: one number per line, or .vcf')
      .option('-b, --batch <n>', `numbers per request (max ${LIMITS.maxBatch})`, (v) => Number.parseInt(v, 10), 1000),
  ).action(async (file: string, o: CommonOptions & { batch: number }) => {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a contact file' : code === 'EACCES' ? 'not readable' : (e as Error).message;
      throw new PcdError(ErrorCode.InvalidField, `cannot read the contact file ${file}: ${why}`);
    }
    const entries = parseContactFile(text);
    const valid: { entry: string; number: E164 }[] = [];
    const invalid: { entry: string; error: string }[] = [];
    for (const entry of entries) {
      try {
        valid.push({ entry, number: normalizeNumber(entry, o.region) });
      } catch (e) {
        if (!(e instanceof PcdError)) throw e;
        invalid.push({ entry, error: e.message });
      }
    }
    const { transport, stats } = countingTransport(createTransport({ baseUrl: o.server, token: needToken(o), format: o.format }));
    const client = createClient({ baseUrl: o.server, design: o.design, batchSize: o.batch, transport, backend: o.backend });
    const started = performance.now();
    const results: LookupResult[] = valid.length ? await client.lookupMany(valid.map((v) => v.number)) : [];
    const ms = performance.now() - started;
    const messenger = results.filter((r) => r.capabilities.length > 0).length;
    const summary = {
      design: o.design,
      entries: entries.length,
      valid: valid.length,
      unique: new Set(valid.map((v) => v.number)).size,
      invalid: invalid.length,
      messenger,
      smsOnly: results.length - messenger,
      requests: stats.requests,
      bytesSent: stats.sent,
      bytesReceived: stats.received,
      ms: Math.round(ms),
    };
    if (o.json) {
      console.log(
        JSON.stringify(
          { summary, results: results.map((r, i) => ({ entry: valid[i]!.entry, ...r })), invalid },
          null,
          2,
        ),
      );
      return;
    }
    console.log(
      `${summary.entries} entries: ${summary.valid} valid (${summary.unique} unique), ${summary.invalid} invalid; ` +
        `${summary.messenger} messenger, ${summary.smsOnly} SMS only; ` +
        `${summary.requests} requests, ${summary.bytesSent} B sent, ${summary.bytesReceived} B received, ${summary.ms} ms (${o.design})`,
    );
    for (const r of results) console.log(`${r.number.padEnd(16)} ${describeAnswer(r.capabilities)}`);
    for (const x of invalid) console.log(`${x.entry.padEnd(16)} invalid: ${x.error}`);
  });
}
