/**
 * The `pcd` program, built once: every command registered (client, server,
 * audit, bench, simulate), and the rule that turns any error into one line
 * and an exit code. bin/pcd.ts runs it on process.argv; tests run it in-process.
 *   client: lookup, sync, page-link
 *   server: serve, start, seed, rotate-key, publish-buckets
 *   audit:  audit (offline: reads a data folder, never runs in the server process)
 *   relay:  relay (an Oblivious HTTP relay in front of a server's gateway, relay/relay.ts)
 *   cluster: cluster (a shared Postgres and several nodes on this machine, server/cluster.ts)
 *   bench:  bench, simulate
 */
import { Command, CommanderError, type OutputConfiguration } from 'commander';
import { registerAuditCommand } from './commands/audit.ts';
import { registerClientCommands } from './commands/client.ts';
import { registerServerCommands } from './commands/server.ts';
import { registerRelayCommand } from './commands/relay.ts';
import { registerClusterCommand } from './commands/cluster.ts';
import { ErrorCode, PcdError } from '../shared/errors.ts';

/**
 * Every command on a fresh program; `output` (tests) is set before the
 * commands are added, which inherit it. Throws on a bad environment variable
 * (PCD_BACKEND=...), found while options are built.
 */
export function buildProgram(output?: OutputConfiguration): Command {
  const program = new Command('pcd')
    .description('private contact discovery: plain, hashed and blinded (RFC 9497 VOPRF) capability lookup')
    .showHelpAfterError()
    .exitOverride();
  if (output) program.configureOutput(output);
  registerClientCommands(program);
  registerServerCommands(program);
  registerAuditCommand(program);
  registerRelayCommand(program);
  registerClusterCommand(program);
  // Commands that parse their own arguments (they have many options of their own), loaded only when run.
  const passThrough = (name: string, description: string, load: () => Promise<{ main(argv: string[]): Promise<void> }>) =>
    program
      .command(name)
      .description(description)
      .allowUnknownOption()
      .allowExcessArguments()
      .helpOption(false)
      // The arguments commander left it (not process.argv, which is another program's when pcd runs in-process).
      .action(async (_options: unknown, command: Command) => (await load()).main(command.args));
  passThrough('bench', 'run the benchmarks (see bench/README in the README)', () => import('../bench/run.ts'));
  passThrough(
    'simulate',
    'simulate a month of lookups against real servers and rebuild the contact graph from their logs (pcd simulate --help)',
    () => import('./commands/simulate.ts'),
  );
  return program;
}

/**
 * What the user sees of an error: one line (empty for commander's own, which
 * it has printed) and the exit code: commander's, 2 for a user error, 3 for
 * a server or storage condition, 1 for anything else.
 */
export function errorOutcome(e: unknown): { line: string; code: number } {
  if (e instanceof CommanderError) return { line: '', code: e.exitCode };
  // A server that cannot be reached (status 0: nobody answered) is a server condition, as a 5xx is.
  if (e instanceof PcdError) return { line: `pcd: ${e.message} (${e.code})`, code: e.status >= 500 || e.code === ErrorCode.Network ? 3 : 2 };
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return { line: `pcd: ${message}${typeof code === 'string' ? ` (${code})` : ''} (PCD_DEBUG=1 shows where)`, code: 1 };
}

/** The line and code of an error found while the program is built (a bad environment variable). */
export function buildErrorOutcome(e: unknown): { line: string; code: number } {
  return { line: `pcd: ${e instanceof Error ? e.message : String(e)}`, code: 2 };
}
