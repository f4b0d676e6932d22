/** `pcd`: the program of bin/program.ts, run on process.argv. */
import { onOutputError } from './output.ts';
import { buildErrorOutcome, buildProgram, errorOutcome } from './program.ts';

// A closed pipe (`pcd sync list.txt | head`) ends a one-shot command quietly; a server goes on to its own end (bin/output.ts).
process.stdout.on('error', onOutputError);
process.stderr.on('error', onOutputError);

let program;
try {
  program = buildProgram();
} catch (e) {
  const o = buildErrorOutcome(e);
  console.error(o.line);
  process.exit(o.code);
}

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const o = errorOutcome(e);
  // Anything that is not a user error or a server condition is one line too; the stack only on request.
  if (o.code === 1 && process.env.PCD_DEBUG) throw e;
  if (o.line) console.error(o.line);
  process.exit(o.code);
}
