/**
 * `pcd`: one binary, subcommands for both sides.
 *   client: lookup, sync
 *   server: serve, start, seed, rotate-key
 *   audit:  audit (offline: reads a data folder, never runs in the server process)
 *   bench:  bench, simulate
 */
import { Command, CommanderError } from 'commander';
import { registerAuditCommand } from '../audit/cli.ts';
import { registerClientCommands } from '../client/cli.ts';
import { registerServerCommands } from '../server/cli.ts';
import { PcdError } from '../shared/errors.ts';

// `pcd sync list.txt | head`: a closed pipe ends the command quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const program = new Command('pcd')
  .description('private contact discovery: plain, hashed and blinded (RFC 9497 VOPRF) capability lookup')
  .showHelpAfterError()
  .exitOverride();

try {
  registerClientCommands(program);
  registerServerCommands(program);
  registerAuditCommand(program);
} catch (e) {
  // A bad environment variable (PCD_BACKEND=...) is found while the options are built.
  console.error(`pcd: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(2);
}
program
  .command('bench')
  .description('run the benchmarks (see bench/README in the README)')
  .allowUnknownOption()
  .allowExcessArguments()
  .helpOption(false)
  .action(async () => {
    const { main } = await import('../bench/run.ts');
    await main(process.argv.slice(3));
  });
program
  .command('simulate')
  .description('simulate a month of lookups against real servers and rebuild the contact graph from their logs (pcd simulate --help)')
  .allowUnknownOption()
  .allowExcessArguments()
  .helpOption(false)
  .action(async () => {
    const { main } = await import('../workload/cli.ts');
    await main(process.argv.slice(3));
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  if (e instanceof PcdError) {
    console.error(`pcd: ${e.message} (${e.code})`);
    process.exit(e.status >= 500 ? 3 : 2);
  }
  // Anything else is one line too (a file the OS refused, a database error); the stack only on request.
  if (process.env.PCD_DEBUG) throw e;
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  console.error(`pcd: ${message}${typeof code === 'string' ? ` (${code})` : ''} (PCD_DEBUG=1 shows where)`);
  process.exit(1);
}
