/**
 * `pcd relay`: the Oblivious HTTP relay (relay/relay.ts) on a port, until
 * SIGINT or SIGTERM.
 */
import { Command, Option } from 'commander';
import { ErrorCode, PcdError } from '../../shared/errors.ts';
import { DEFAULT_RELAY_IP_PER_MINUTE, DEFAULT_RELAY_MAX_BODY, DEFAULT_RELAY_PORT, DEFAULT_RELAY_TIMEOUT_MS, startRelay } from '../../relay/relay.ts';
import { int } from '../options.ts';
import { runsUntilStopped } from '../output.ts';

const UNITS: Readonly<Record<string, number>> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 * 1024, mb: 1000 * 1000, mib: 1024 * 1024 };

/** `--max-body 600KiB`: bytes, with an optional unit (B, KiB, MiB, KB, MB, k, m). */
export function parseSize(v: string): number {
  const m = /^\s*(\d{1,12})\s*([a-z]*)\s*$/i.exec(v);
  const unit = UNITS[(m?.[2] ?? '').toLowerCase()];
  const n = m && unit !== undefined ? Number(m[1]) * unit : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 64 || n > 64 * 1024 * 1024) {
    throw new PcdError(ErrorCode.InvalidField, `--max-body must be a size from 64 B to 64 MiB, such as 600KiB, got '${v.slice(0, 40)}'`);
  }
  return n;
}

export function registerRelayCommand(program: Command): void {
  program
    .command('relay')
    .description("an Oblivious HTTP relay (RFC 9458) for a pcd server's gateway: forwards encapsulated requests, sees client addresses and ciphertext only")
    .requiredOption('--gateway <url>', 'the pcd server whose gateway to relay to (its /.well-known/ohttp-gateway)')
    .option('-p, --port <port>', 'port', int('--port', 0, 65535), DEFAULT_RELAY_PORT)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--ip-limit-per-minute <n>', 'requests per minute per client IP', int('--ip-limit-per-minute', 1, 1_000_000_000), DEFAULT_RELAY_IP_PER_MINUTE)
    .addOption(new Option('--max-body <size>', 'largest encapsulated request forwarded (B, KiB, MiB)').argParser(parseSize).default(DEFAULT_RELAY_MAX_BODY, '600KiB'))
    .option('--timeout <s>', 'seconds one forwarded exchange may take', int('--timeout', 1, 3600), DEFAULT_RELAY_TIMEOUT_MS / 1000)
    .action(async (o: { gateway: string; port: number; host: string; ipLimitPerMinute: number; maxBody: number; timeout: number }) => {
      runsUntilStopped();
      const relay = await startRelay({
        gateway: o.gateway,
        port: o.port,
        host: o.host,
        ipLimitPerMinute: o.ipLimitPerMinute,
        maxBodyBytes: o.maxBody,
        timeoutMs: o.timeout * 1000,
      });
      console.log(`pcd relay on ${relay.url} → ${relay.gateway}`);
      const stop = () => {
        void relay.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
